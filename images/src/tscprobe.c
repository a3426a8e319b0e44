/* tscprobe: how the TSC reads where this program runs (natively or on an island). Prints the cost
 * of rdtsc, the TSC rate measured against the kernel's CLOCK_MONOTONIC (raw system calls, never a
 * vDSO), and one (TSC, CLOCK_REALTIME) pair, so that a native run and an island run side by side
 * show whether the two TSCs are equal, offset, or run at different rates. Not deterministic: a
 * measurement tool, not a test program. */
#include <stdint.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t rdtsc(void) {
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

static int64_t ns(clockid_t c) {
    struct timespec ts;
    syscall(SYS_clock_gettime, c, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int main(void) {
    enum { N = 10000000 };
    uint64_t a = rdtsc(), x = 0;
    int64_t m0 = ns(CLOCK_MONOTONIC);
    for (int i = 0; i < N; i++) x += rdtsc() & 1;
    int64_t m1 = ns(CLOCK_MONOTONIC);
    uint64_t b = rdtsc();
    printf("rdtsc: %.2f ns per read (%llu odd)\n", (double)(m1 - m0) / N, (unsigned long long)x);
    /* The rate over ~300 ms of sleeping. */
    uint64_t t0 = rdtsc();
    int64_t n0 = ns(CLOCK_MONOTONIC);
    struct timespec s = {0, 300000000};
    nanosleep(&s, 0);
    uint64_t t1 = rdtsc();
    int64_t n1 = ns(CLOCK_MONOTONIC);
    printf("rate: %.6f TSC ticks per ns (%llu ticks in %lld ns); monotonic tsc: %s\n",
           (double)(t1 - t0) / (double)(n1 - n0), (unsigned long long)(t1 - t0), (long long)(n1 - n0),
           b > a && t1 > t0 ? "yes" : "no");
    uint64_t t = rdtsc();
    int64_t r = ns(CLOCK_REALTIME);
    uint64_t u = rdtsc();
    printf("pair: tsc %llu realtime_ns %lld (syscall took %llu ticks)\n", (unsigned long long)t,
           (long long)r, (unsigned long long)(u - t));
    return 0;
}
