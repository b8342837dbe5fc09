/* The trivial service of the hand-off benchmarks: writes one line on the
 * connection (fd 1) and exits. Build: gcc -O2 -static -o greet greet.c */
#include <unistd.h>

int main(void) {
    static const char line[] = "hello\r\n";
    return write(1, line, sizeof line - 1) == sizeof line - 1 ? 0 : 1;
}
