/* The benchmark's client and backends (bench/run drives it). Loopback only.
 *
 *   client fetch PORT REQUEST-HEX
 *       one connection: send the request, half-close, print the reply (hex)
 *   client latency ROUNDS GAP-US OUT.csv SPEC...
 *       SPEC = LABEL,PORT,REQUEST-HEX,EXPECT-HEX,STOP
 *       ROUNDS rounds of one connection per SPEC, interleaved (A B A B ...),
 *       every other round in reverse order (... B A B A), with GAP-US
 *       microseconds between connections (spent spinning): so that the tail of
 *       one connection's process (its log line, its exit) does not slow the
 *       next, which would favour whichever program follows the lighter one.
 *       Each: connect, send the request, half-close, read to EOF and check the
 *       bytes against EXPECT. The clock runs from just before connect() until
 *       EOF (STOP = -1) or until STOP bytes have arrived (the first byte of a
 *       service after the "+OK" line, say). Appends LABEL,ROUND,MICROSECONDS.
 *   client bulk ROUNDS OUT.csv SPEC...
 *       SPEC = LABEL,PORT,REQUEST-HEX,PREFIX-HEX,BYTES
 *       Send the request (no half-close: a relay may end the other direction on
 *       it), check PREFIX, then receive BYTES bytes; the clock runs from just
 *       before connect() until the last of them. Appends LABEL,ROUND,MICROSECONDS.
 *   client rate SECONDS THREADS PORT REQUEST-HEX EXPECT-HEX
 *       THREADS clients, each making sequential connections as in latency for
 *       SECONDS; prints "CONNECTIONS ERRORS ELAPSED-SECONDS".
 *   client serve-greet
 *   client serve-bulk BYTES
 *       a backend on 127.0.0.1 and a free port (printed on stdout, one line):
 *       each connection gets "hello\r\n" (greet) or BYTES bytes (bulk), then close.
 * Build: gcc -O2 -pthread -o client client.c */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

/* Hex text to bytes; "-" or "" is empty. */
static size_t unhex(const char *text, unsigned char **out) {
    size_t length = strcmp(text, "-") == 0 ? 0 : strlen(text) / 2;
    *out = malloc(length + 1);
    for (size_t i = 0; i < length; i++) sscanf(text + 2 * i, "%2hhx", *out + i);
    return length;
}

static int connect_to(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in address = {0};
    address.sin_family = AF_INET;
    address.sin_port = htons((unsigned short)port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const unsigned char *bytes, size_t length) {
    while (length > 0) {
        ssize_t n = write(fd, bytes, length);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        bytes += n;
        length -= (size_t)n;
    }
    return 0;
}

struct spec {
    char label[64];
    int port;
    unsigned char *request, *expect;
    size_t request_length, expect_length;
    long stop;
};

static void parse_spec(const char *text, struct spec *spec) {
    char request[2048], expect[8192];
    if (sscanf(text, "%63[^,],%d,%2047[^,],%8191[^,],%ld", spec->label, &spec->port, request, expect, &spec->stop) != 5) {
        fprintf(stderr, "client: bad spec %s\n", text);
        exit(64);
    }
    spec->request_length = unhex(request, &spec->request);
    spec->expect_length = unhex(expect, &spec->expect);
}

/* One connection of the latency kind. Returns microseconds, or -1 on a wrong
 * reply (reported on stderr when `loud`). */
static double one_connection(const struct spec *spec, int loud) {
    unsigned char reply[8192];
    size_t received = 0;
    double start = now_us(), stopped = -1;
    int fd = connect_to(spec->port);
    if (fd < 0) {
        if (loud) perror("connect");
        return -1;
    }
    if (send_all(fd, spec->request, spec->request_length) != 0 || shutdown(fd, SHUT_WR) != 0) {
        if (loud) perror("send");
        close(fd);
        return -1;
    }
    for (;;) {
        ssize_t n = read(fd, reply + received, sizeof reply - received);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            if (loud) perror("read");
            close(fd);
            return -1;
        }
        if (n == 0) break;
        received += (size_t)n;
        if (stopped < 0 && spec->stop >= 0 && received >= (size_t)spec->stop) stopped = now_us();
        if (received == sizeof reply) break;
    }
    if (stopped < 0) stopped = now_us();
    close(fd);
    if (received != spec->expect_length || memcmp(reply, spec->expect, received) != 0) {
        if (loud) {
            fprintf(stderr, "client: %s: unexpected reply (%zu bytes): ", spec->label, received);
            fwrite(reply, 1, received, stderr);
            fprintf(stderr, "\n");
        }
        return -1;
    }
    return stopped - start;
}

static int latency(int rounds, long gap_us, const char *output, int count, char **texts) {
    struct spec *specs = calloc((size_t)count, sizeof *specs);
    for (int i = 0; i < count; i++) parse_spec(texts[i], &specs[i]);
    FILE *out = fopen(output, "a");
    if (!out) die(output);
    for (int round = 0; round < rounds; round++) {
        for (int k = 0; k < count; k++) {
            int i = round % 2 ? count - 1 - k : k;
            /* Spin, not sleep: an idle CPU of a virtual machine wakes slowly,
             * which would add its own noise to every connection. */
            for (double until = now_us() + (double)gap_us; now_us() < until;) {}
            double us = one_connection(&specs[i], 1);
            if (us < 0) return 1;
            fprintf(out, "%s,%d,%.1f\n", specs[i].label, round, us);
        }
    }
    fclose(out);
    return 0;
}

static int fetch(int port, const char *request_hex) {
    struct spec spec = {.port = port, .stop = -1};
    strcpy(spec.label, "fetch");
    spec.request_length = unhex(request_hex, &spec.request);
    int fd = connect_to(port);
    if (fd < 0) die("connect");
    if (send_all(fd, spec.request, spec.request_length) != 0 || shutdown(fd, SHUT_WR) != 0) die("send");
    unsigned char buffer[4096];
    ssize_t n;
    while ((n = read(fd, buffer, sizeof buffer)) > 0)
        for (ssize_t i = 0; i < n; i++) printf("%02x", buffer[i]);
    printf("\n");
    return 0;
}

static int bulk(int rounds, const char *output, int count, char **texts) {
    struct spec *specs = calloc((size_t)count, sizeof *specs);
    for (int i = 0; i < count; i++) parse_spec(texts[i], &specs[i]);
    size_t size = 1 << 20;
    unsigned char *buffer = malloc(size);
    FILE *out = fopen(output, "a");
    if (!out) die(output);
    for (int round = 0; round < rounds; round++) {
        for (int i = 0; i < count; i++) {
            const struct spec *spec = &specs[i];
            double start = now_us();
            int fd = connect_to(spec->port);
            if (fd < 0) die("connect");
            if (send_all(fd, spec->request, spec->request_length) != 0) die("send");
            size_t prefix = 0;
            while (prefix < spec->expect_length) {
                ssize_t n = read(fd, buffer + prefix, spec->expect_length - prefix);
                if (n <= 0) die("read prefix");
                prefix += (size_t)n;
            }
            if (memcmp(buffer, spec->expect, prefix) != 0) {
                fprintf(stderr, "client: %s: unexpected prefix\n", spec->label);
                return 1;
            }
            long left = spec->stop;
            while (left > 0) {
                ssize_t n = read(fd, buffer, left < (long)size ? (size_t)left : size);
                if (n < 0 && errno == EINTR) continue;
                if (n <= 0) {
                    fprintf(stderr, "client: %s: %ld bytes missing\n", spec->label, left);
                    return 1;
                }
                left -= n;
            }
            double us = now_us() - start;
            close(fd);
            fprintf(out, "%s,%d,%.1f\n", spec->label, round, us);
        }
    }
    fclose(out);
    return 0;
}

struct rate_state {
    const struct spec *spec;
    double until;
    long connections, errors;
};

static void *rate_worker(void *argument) {
    struct rate_state *state = argument;
    while (now_us() < state->until) {
        if (one_connection(state->spec, 0) < 0) state->errors++;
        else state->connections++;
    }
    return NULL;
}

static int rate(double seconds, int threads, int port, const char *request, const char *expect) {
    struct spec spec = {.port = port, .stop = -1};
    strcpy(spec.label, "rate");
    spec.request_length = unhex(request, &spec.request);
    spec.expect_length = unhex(expect, &spec.expect);
    pthread_t *ids = calloc((size_t)threads, sizeof *ids);
    struct rate_state *states = calloc((size_t)threads, sizeof *states);
    double start = now_us(), until = start + seconds * 1e6;
    for (int i = 0; i < threads; i++) {
        states[i] = (struct rate_state){&spec, until, 0, 0};
        if (pthread_create(&ids[i], NULL, rate_worker, &states[i]) != 0) die("pthread_create");
    }
    long connections = 0, errors = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(ids[i], NULL);
        connections += states[i].connections;
        errors += states[i].errors;
    }
    printf("%ld %ld %.6f\n", connections, errors, (now_us() - start) / 1e6);
    return 0;
}

static int listener(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0), on = 1;
    if (fd < 0) die("socket");
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    struct sockaddr_in address = {0};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (bind(fd, (struct sockaddr *)&address, sizeof address) != 0) die("bind");
    if (listen(fd, 1024) != 0) die("listen");
    if (getsockname(fd, (struct sockaddr *)&address, &length) != 0) die("getsockname");
    printf("%d\n", ntohs(address.sin_port));
    fflush(stdout);
    return fd;
}

static _Noreturn void serve(long bytes) {
    signal(SIGPIPE, SIG_IGN);
    int fd = listener();
    size_t size = 1 << 20;
    unsigned char *buffer = calloc(1, size);
    for (;;) {
        int connection = accept(fd, NULL, NULL);
        if (connection < 0) continue;
        if (bytes < 0) {
            send_all(connection, (const unsigned char *)"hello\r\n", 7);
        } else {
            for (long left = bytes; left > 0;) {
                size_t chunk = left < (long)size ? (size_t)left : size;
                if (send_all(connection, buffer, chunk) != 0) break;
                left -= (long)chunk;
            }
        }
        close(connection);
    }
}

int main(int argc, char **argv) {
    if (argc >= 4 && strcmp(argv[1], "fetch") == 0) return fetch(atoi(argv[2]), argv[3]);
    if (argc >= 6 && strcmp(argv[1], "latency") == 0)
        return latency(atoi(argv[2]), atol(argv[3]), argv[4], argc - 5, argv + 5);
    if (argc >= 5 && strcmp(argv[1], "bulk") == 0) return bulk(atoi(argv[2]), argv[3], argc - 4, argv + 4);
    if (argc == 7 && strcmp(argv[1], "rate") == 0)
        return rate(atof(argv[2]), atoi(argv[3]), atoi(argv[4]), argv[5], argv[6]);
    if (argc == 2 && strcmp(argv[1], "serve-greet") == 0) serve(-1);
    if (argc == 3 && strcmp(argv[1], "serve-bulk") == 0) serve(atol(argv[2]));
    fprintf(stderr, "usage: see the comment at the top of bench/client.c\n");
    return 64;
}
