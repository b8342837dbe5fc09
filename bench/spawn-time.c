/* Spawn-to-exit time of programs, the cost every inetd connection pays.
 * usage: spawn-time ROUNDS INPUT-FILE PROGRAM [PROGRAM...]
 * Rounds are interleaved (A B A B ...) so machine drift hits all alike; each
 * program gets INPUT-FILE on fd 0 and /dev/null on fd 1 and 2.
 * Prints per program: median and p90 in microseconds, and ratio to the first. */
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: spawn-time ROUNDS INPUT-FILE PROGRAM [PROGRAM...]\n");
        return 64;
    }
    int rounds = atoi(argv[1]), programs = argc - 3;
    double *times = calloc((size_t)rounds * programs, sizeof *times);
    for (int round = 0; round < rounds; round++) {
        for (int p = 0; p < programs; p++) {
            int in = open(argv[2], O_RDONLY), out = open("/dev/null", O_WRONLY);
            posix_spawn_file_actions_t actions;
            posix_spawn_file_actions_init(&actions);
            posix_spawn_file_actions_adddup2(&actions, in, 0);
            posix_spawn_file_actions_adddup2(&actions, out, 1);
            posix_spawn_file_actions_adddup2(&actions, out, 2);
            char *child_argv[] = {argv[3 + p], NULL};
            pid_t pid;
            double start = now_us();
            if (posix_spawn(&pid, argv[3 + p], &actions, NULL, child_argv, environ) != 0) {
                perror(argv[3 + p]);
                return 1;
            }
            int status;
            waitpid(pid, &status, 0);
            times[p * rounds + round] = now_us() - start;
            posix_spawn_file_actions_destroy(&actions);
            close(in);
            close(out);
        }
    }
    double first = 0;
    for (int p = 0; p < programs; p++) {
        double *t = times + p * rounds;
        qsort(t, rounds, sizeof *t, compare);
        double median = t[rounds / 2], p90 = t[rounds * 9 / 10];
        if (p == 0) first = median;
        printf("%-40s median %8.1f us  p90 %8.1f us  ratio %5.2f\n", argv[3 + p], median, p90, median / first);
    }
    return 0;
}
