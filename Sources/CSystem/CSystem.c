#include "CSystem.h"

int csystem_errno(void) { return errno; }

int csystem_open(const char *path, int flags) { return open(path, flags); }

int csystem_fcntl(int fd, int command, int argument) { return fcntl(fd, command, argument); }

void csystem_syslog(int priority, const char *message) { syslog(priority, "%s", message); }

static int set_disposition(int signal_number, void (*handler)(int)) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = handler;
    sigemptyset(&action.sa_mask);
    return sigaction(signal_number, &action, NULL);
}

int csystem_signal_default(int signal_number) { return set_disposition(signal_number, SIG_DFL); }
int csystem_signal_ignore(int signal_number) { return set_disposition(signal_number, SIG_IGN); }

int csystem_signal_count(void) { return NSIG; }

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
