/* Bad pointers handed to the kernel must get EFAULT, not crash anybody. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static void report(const char *what, long r) {
    printf("%-28s -> %ld %s\n", what, r, r < 0 ? strerror(errno) : "ok");
}

int main(void) {
    report("write(1, NULL, 10)", syscall(SYS_write, 1, (void *)0, 10));
    report("write(1, kernel area, 10)", syscall(SYS_write, 1, (void *)0x1000, 10));
    report("write(1, wild, 10)", syscall(SYS_write, 1, (void *)0x7654321000ul, 10));
    report("write(1, non-canonical, 10)", syscall(SYS_write, 1, (void *)0x8000000000000000ul, 10));
    report("clock_gettime(bad)", syscall(SYS_clock_gettime, CLOCK_MONOTONIC, (void *)16));
    report("open(bad path)", syscall(SYS_openat, -100, (void *)0x123, 0));
    report("uname(bad)", syscall(SYS_uname, (void *)0x10));
    static const char ro[64] = "read only";
    report("uname(read-only)", syscall(SYS_uname, (void *)ro));
    report("write(1, huge length)", syscall(SYS_write, 1, "x", -1L));
    report("bogus syscall 999", syscall(999));
    return 0;
}
