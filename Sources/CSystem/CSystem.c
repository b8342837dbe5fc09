#include "CSystem.h"

int csystem_errno(void) { return errno; }

int csystem_open(const char *path, int flags) { return open(path, flags); }

int csystem_openat(int directory, const char *path, int flags) { return openat(directory, path, flags); }

int csystem_fcntl(int fd, int command, int argument) { return fcntl(fd, command, argument); }

void csystem_syslog(int priority, const char *message) { syslog(priority, "%s", message); }

int csystem_signal_ignore(int signal_number) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = SIG_IGN;
    return sigaction(signal_number, &action, NULL);
}

/* The kernel's struct sigaction (include/uapi/asm-generic/signal.h, x86 and
   arm64 alike): with SIG_DFL, no flags and no restorer are needed. */
struct kernel_sigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    unsigned long mask;
};

void csystem_reset_signals(void) {
    struct kernel_sigaction action = { SIG_DFL, 0, NULL, 0 };
    for (int number = 1; number < _NSIG; number++) {
        if (number == SIGKILL || number == SIGSTOP) continue;
        syscall(SYS_rt_sigaction, number, &action, NULL, sizeof action.mask);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

/* include/uapi/linux/close_range.h. glibc declares close_range(2) only with
   _GNU_SOURCE, so the raw system call (436 on every architecture). */
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

int csystem_close_on_exec_from(unsigned int first) {
    return (int)syscall(SYS_close_range, first, ~0U, CLOSE_RANGE_CLOEXEC);
}

static int argument_count;
static char *const *arguments;

/* glibc calls .init_array functions with (argc, argv, envp), in static and
   dynamic executables alike. */
static void remember(int argc, char **argv, char **envp) {
    (void)envp;
    argument_count = argc;
    arguments = argv;
}

__attribute__((section(".init_array"), used))
static void (*const remember_arguments)(int, char **, char **) = remember;

int csystem_argument_count(void) { return argument_count; }
char *const *csystem_arguments(void) { return arguments; }
