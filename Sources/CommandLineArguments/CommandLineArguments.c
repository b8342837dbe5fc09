#include "CommandLineArguments.h"

static int count;
static char *const *arguments;

/* glibc calls .init_array functions with (argc, argv, envp), in static and
   dynamic executables alike. */
static void remember(int argc, char **argv, char **envp) {
    (void)envp;
    count = argc;
    arguments = argv;
}

__attribute__((section(".init_array"), used))
static void (*const remember_arguments)(int, char **, char **) = remember;

int command_line_count(void) { return count; }
char *const *command_line_arguments(void) { return arguments; }
