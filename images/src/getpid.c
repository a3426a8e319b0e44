/* System call round trip: getpid in a loop (through syscall(2): glibc does not cache it). */
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 100000;
    long x = 0;
    for (long i = 0; i < n; i++)
        x += syscall(SYS_getpid) > 0;
    printf("%ld calls\n", x);
    return 0;
}
