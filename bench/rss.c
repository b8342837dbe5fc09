/* Peak resident memory of a program run by a superserver, for the benchmark.
 *   rss OUTPUT-FILE PROGRAM [ARG...]
 * Runs PROGRAM on the wrapper's fd 0, 1 and 2, waits for it and appends its peak
 * RSS (wait4's ru_maxrss, KiB) as one line to OUTPUT-FILE. The child's figure
 * also counts the forked copy of this wrapper before the exec, so the wrapper
 * is static and tiny; the floor, measured through it too, bounds what it adds.
 * Build: gcc -O2 -static -o rss rss.c */
#include <fcntl.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: rss OUTPUT-FILE PROGRAM [ARG...]\n");
        return 64;
    }
    pid_t pid = fork();
    if (pid == 0) {
        execv(argv[2], argv + 2);
        _exit(127);
    }
    /* Only the child holds the connection: its close is the client's EOF. */
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(null, 1);
    dup2(null, 2);
    int status;
    struct rusage usage;
    if (pid < 0 || wait4(pid, &status, 0, &usage) != pid) return 1;
    char line[32];
    int length = snprintf(line, sizeof line, "%ld\n", usage.ru_maxrss);
    int out = open(argv[1], O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (out < 0 || write(out, line, (size_t)length) != length) return 1;
    return 0;
}
