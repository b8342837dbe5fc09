#ifndef CSYSTEM_H
#define CSYSTEM_H

/* The POSIX interface of in.tcpmuxd's shell, and the few calls Swift cannot
   make cleanly: errno (a macro over a thread-local), variadic functions (open,
   fcntl, syslog), signal dispositions (SIG_DFL and SIG_IGN are casts), and the
   permission bits that <sys/stat.h> defines as expressions. The shell imports
   this module and no other C library module, in the Embedded build (which has
   no Glibc module) and the full-runtime build alike. */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <grp.h>

/* The calling thread's errno. */
int csystem_errno(void);

/* open(2) without a mode: the shell never creates files. */
int csystem_open(const char *path, int flags);

/* openat(2) without a mode. */
int csystem_openat(int directory, const char *path, int flags);

/* fcntl(2) with an int argument (F_GETFL, F_SETFL, F_GETFD, F_SETFD). */
int csystem_fcntl(int fd, int command, int argument);

/* syslog(3) with the message as "%s": never interpreted as a format. */
void csystem_syslog(int priority, const char *message);

/* SIG_IGN as the disposition of a signal. */
int csystem_signal_ignore(int signal_number);

/* Every signal to SIG_DFL and an empty signal mask, for a program about to be
   exec'd: execve(2) resets handlers, not ignored dispositions nor the mask. The
   raw rt_sigaction system call, since glibc's sigaction refuses the two signals
   it reserves (32 and 33), which a superserver may have left ignored too. */
void csystem_reset_signals(void);

/* FD_CLOEXEC on every descriptor from `first` up, in one close_range(2) call
   (CLOSE_RANGE_CLOEXEC, Linux 5.11): 0, or -1 with errno for the caller to
   fall back on (ENOSYS before 5.9, EINVAL where the flag is unknown, EPERM
   under a seccomp filter that predates the call). */
int csystem_close_on_exec_from(unsigned int first);

/* File types and permission bits as mode_t (<sys/stat.h> defines some as
   expressions, which Swift does not import, and the others as int). */
static const mode_t csystem_type_mask = S_IFMT;
static const mode_t csystem_type_regular = S_IFREG;
static const mode_t csystem_type_directory = S_IFDIR;
static const mode_t csystem_type_symbolic_link = S_IFLNK;
static const mode_t csystem_sticky = S_ISVTX;
static const mode_t csystem_write_group = S_IWGRP;
static const mode_t csystem_write_other = S_IWOTH;

/* Linux's O_PATH, which <fcntl.h> declares only with _GNU_SOURCE: a descriptor
   that names an entry without opening it. */
static const int csystem_open_path_only = 010000000;

/* The process's argc and argv as glibc hands them to initializers. The static
   Swift runtime finds them through /proc and loses them when no descriptor is
   free at start-up (RLIMIT_NOFILE at 3, or a full file table); these never fail.
   Embedded Swift has no CommandLine at all. */
int csystem_argument_count(void);
char *const *csystem_arguments(void);

#endif
