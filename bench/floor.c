/* The floor: the least a per-connection TCPMUX process can do, for the
 * benchmark (bench/run) to measure in.tcpmuxd against. Run by a superserver with
 * the connection on fd 0 (requests) and fd 1 (replies), like in.tcpmuxd.
 *
 *   floor [-e NAME PATH]
 *
 * It reads the request one byte at a time up to CRLF (so that nothing past the
 * request leaves the socket), under one total deadline (alarm, 10 s), and
 * answers as in.tcpmuxd does on its built-in table, byte for byte:
 *   HELP (any case)    the service names, one per line, then close
 *   tcpmux (any case)  "+OK", then read the next request (at most 16 deep)
 *   NAME (-e)          "+OK", then exec PATH on the connection (the exec hand-off)
 *   anything else      "-Service not available" (or the parser's reason), close
 * and closes as in.tcpmuxd does: half-close, then drain the client for at most
 * 2 s and 1 MiB. No configuration, no log, no allocation.
 * Build: gcc -O2 -static -o floor floor.c */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *exec_name, *exec_path;

static void put(const char *text) {
    size_t length = strlen(text), done = 0;
    while (done < length) {
        ssize_t n = write(1, text + done, length - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        done += (size_t)n;
    }
}

static void finish(void) {
    if (shutdown(1, SHUT_WR) == -1) close(1);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    char buffer[4096];
    long drained = 0;
    while (drained < (1 << 20)) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long left = 2000 - ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000);
        if (left <= 0) break;
        struct pollfd entry = {0, POLLIN, 0};
        if (poll(&entry, 1, (int)left) <= 0) break;
        ssize_t n = read(0, buffer, sizeof buffer);
        if (n <= 0) break;
        drained += n;
    }
    _exit(0);
}

static void reject(const char *reason) {
    put("-");
    put(reason);
    put("\r\n");
    finish();
}

static void timed_out(int signal_number) {
    (void)signal_number;
    reject("Timed out waiting for the request");
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "-e") == 0) {
        exec_name = argv[2];
        exec_path = argv[3];
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, timed_out);
    alarm(10);
    for (int nesting = 0;; nesting++) {
        char name[257];
        size_t length = 0;
        for (;;) {
            char byte;
            ssize_t n = read(0, &byte, 1);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) _exit(0);
            if (n == 0) reject(length ? "Connection closed before the end of the request line" : "No request received");
            if (byte == '\r') {
                do n = read(0, &byte, 1); while (n < 0 && errno == EINTR);
                if (n <= 0) reject("Connection closed before the end of the request line");
                if (byte != '\n') reject("Carriage return not followed by line feed");
                break;
            }
            if (byte == '\n') reject("Request line must end with CRLF, not a bare LF");
            if (byte == ' ' || byte == '\t') reject("Service name contains white space");
            if ((unsigned char)byte < 0x20 || byte == 0x7f) reject("Service name contains a control character");
            if ((unsigned char)byte >= 0x80) reject("Service name contains a non-ASCII byte");
            if (length == 256) reject("Service name longer than 256 bytes");
            name[length++] = byte;
        }
        name[length] = 0;
        if (length == 0) reject("Empty service name");
        if (strcasecmp(name, "help") == 0) {
            put("tcpmux\r\n");
            if (exec_name) { put(exec_name); put("\r\n"); }
            finish();
        }
        if (strcasecmp(name, "tcpmux") == 0) {
            if (nesting == 16) reject("Too many nested tcpmux requests");
            put("+OK\r\n");
            continue;
        }
        if (exec_name && strcasecmp(name, exec_name) == 0) {
            alarm(0);
            signal(SIGPIPE, SIG_DFL);
            signal(SIGALRM, SIG_DFL);
            put("+OK\r\n");
            dup2(1, 2);
            char *child_argv[] = {(char *)exec_path, 0};
            char *child_environment[] = {0};
            execve(exec_path, child_argv, child_environment);
            _exit(1);
        }
        reject("Service not available");
    }
}
