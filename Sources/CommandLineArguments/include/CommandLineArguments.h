#ifndef COMMAND_LINE_ARGUMENTS_H
#define COMMAND_LINE_ARGUMENTS_H

/// The process's argc and argv as glibc hands them to initializers. The static
/// Swift runtime finds them through /proc and loses them when no descriptor is
/// free at start-up (RLIMIT_NOFILE at 3, or a full file table); these never fail.
int command_line_count(void);
char *const *command_line_arguments(void);

#endif
