/* timecalls [THREADS [ITERATIONS]]: the time calls as a program makes them (through libc, which
 * uses the vDSO when there is one) from several threads, checked against the kernel's own answers
 * (raw system calls, never the vDSO). Each thread, each iteration: clock_gettime of every clock
 * (never backwards for this thread), and every 16th iteration a sandwich libc / syscall / libc
 * for each clock, gettimeofday, time and getcpu (the system call's answer lies between the two
 * libc answers, within a tolerance), and clock_getres against the syscall's. Prints only what
 * does not depend on timing: the counts of checks and of failures (and the first failures).
 *
 * timecalls migrate ROUNDS: one thread loops on clock_gettime(CLOCK_MONOTONIC) and sched_getcpu
 * (where a thread spends its time inside the vDSO) while the main thread moves it from CPU to CPU
 * (island to island under popvmm) with pthread_setaffinity_np, ROUNDS times: the clock never
 * goes backwards for it, stays within the tolerance of the kernel's, and it sees every CPU.
 *
 * timecalls vdso: whether the program has a vDSO: AT_SYSINFO_EHDR points at an ELF header that
 * /proc/self/maps names [vdso] (prints "vdso: yes" or "vdso: no").
 *
 * timecalls bench N: N calls of clock_gettime(CLOCK_MONOTONIC) in a loop, timed by the program
 * itself; prints the nanoseconds per call (scripts/bench-island; not deterministic). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const struct {
    clockid_t id;
    const char *name;
    int coarse;
} CLOCKS[] = {
    {CLOCK_REALTIME, "REALTIME", 0},
    {CLOCK_MONOTONIC, "MONOTONIC", 0},
    {CLOCK_MONOTONIC_RAW, "MONOTONIC_RAW", 0},
    {CLOCK_BOOTTIME, "BOOTTIME", 0},
    {CLOCK_REALTIME_COARSE, "REALTIME_COARSE", 1},
    {CLOCK_MONOTONIC_COARSE, "MONOTONIC_COARSE", 1},
    {CLOCK_PROCESS_CPUTIME_ID, "PROCESS_CPUTIME_ID", 0},
};
#define NCLOCKS (int)(sizeof CLOCKS / sizeof CLOCKS[0])
/* How far libc's answer may be from the kernel's: the vDSO's line against the host's clock (a
 * few microseconds) on a loaded machine, plus a coarse clock's tick. */
#define TOLERANCE_NS 2000000LL
#define COARSE_TOLERANCE_NS 20000000LL

static long iterations;
static int ncpus;

struct result {
    long checks, failures;
    char first[256];
};

static int64_t ns(struct timespec t) { return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec; }

static void fail(struct result *r, const char *what, long long a, long long b, long long c) {
    if (r->failures++ == 0)
        snprintf(r->first, sizeof r->first, "%s: %lld %lld %lld", what, a, b, c);
}

static void check(struct result *r, int ok, const char *what, long long a, long long b,
                  long long c) {
    r->checks++;
    if (!ok)
        fail(r, what, a, b, c);
}

static void *worker(void *arg) {
    struct result *r = arg;
    int64_t last[NCLOCKS];
    for (int c = 0; c < NCLOCKS; c++) last[c] = INT64_MIN;
    for (long i = 0; i < iterations; i++) {
        for (int c = 0; c < NCLOCKS; c++) {
            struct timespec t;
            if (clock_gettime(CLOCKS[c].id, &t) != 0) {
                fail(r, CLOCKS[c].name, -1, 0, 0);
                continue;
            }
            int64_t v = ns(t);
            /* Per thread, every clock only goes forward (REALTIME too: nobody sets it here). */
            check(r, v >= last[c] && t.tv_nsec >= 0 && t.tv_nsec < 1000000000, CLOCKS[c].name,
                  last[c], v, 0);
            last[c] = v;
        }
        if (i % 16 != 0)
            continue;
        for (int c = 0; c < NCLOCKS; c++) {
            if (CLOCKS[c].id == CLOCK_PROCESS_CPUTIME_ID)
                continue; /* other threads' CPU time moves it between the calls */
            struct timespec a, b, d;
            clock_gettime(CLOCKS[c].id, &a);
            syscall(SYS_clock_gettime, CLOCKS[c].id, &b);
            clock_gettime(CLOCKS[c].id, &d);
            int64_t tol = CLOCKS[c].coarse ? COARSE_TOLERANCE_NS : TOLERANCE_NS;
            check(r, ns(a) <= ns(b) + tol && ns(b) <= ns(d) + tol, CLOCKS[c].name, ns(a), ns(b),
                  ns(d));
            struct timespec lr, kr;
            int e1 = clock_getres(CLOCKS[c].id, &lr);
            int e2 = syscall(SYS_clock_getres, CLOCKS[c].id, &kr);
            check(r, e1 == 0 && e2 == 0 && ns(lr) == ns(kr), "clock_getres", ns(lr), ns(kr), c);
        }
        struct timeval tv;
        struct timespec k;
        gettimeofday(&tv, NULL);
        syscall(SYS_clock_gettime, CLOCK_REALTIME, &k);
        int64_t tv_us = (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
        check(r, tv_us <= ns(k) / 1000 + TOLERANCE_NS / 1000 && tv.tv_usec < 1000000,
              "gettimeofday", tv_us, ns(k) / 1000, 0);
        time_t t1 = time(NULL);
        long t2 = syscall(SYS_time, NULL);
        time_t t3 = time(NULL);
        check(r, t1 <= t2 + 1 && t2 <= t3 + 1, "time", t1, t2, t3);
        int c1 = sched_getcpu();
        unsigned c2 = ~0u, node = ~0u;
        syscall(SYS_getcpu, &c2, &node, NULL);
        unsigned c3 = (unsigned)sched_getcpu();
        /* The same CPU from libc and the kernel, unless the thread moved in between (then libc's
         * two answers differ too). */
        check(r, c1 >= 0 && c1 < ncpus && node == 0 && ((unsigned)c1 != c3 || c2 == c3),
              "getcpu", c1, c2, c3);
    }
    return NULL;
}

static volatile int stop_looping;
struct looper {
    long iterations, backwards, off;
    uint64_t seen; /* CPUs seen by sched_getcpu */
    int now;       /* the last one */
};

static void *looper(void *arg) {
    struct looper *l = arg;
    int64_t last = INT64_MIN;
    while (!stop_looping) {
        struct timespec t, k, u;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (ns(t) < last)
            l->backwards++;
        last = ns(t);
        int c = sched_getcpu();
        if (c >= 0 && c < 64)
            __atomic_fetch_or(&l->seen, 1ull << c, __ATOMIC_RELAXED);
        __atomic_store_n(&l->now, c, __ATOMIC_RELAXED);
        if (++l->iterations % 256 == 0) {
            syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &k);
            clock_gettime(CLOCK_MONOTONIC, &u);
            if (ns(t) > ns(k) + TOLERANCE_NS || ns(k) > ns(u) + TOLERANCE_NS)
                l->off++;
            if (ns(u) < last)
                l->backwards++;
            last = ns(u);
        }
    }
    return NULL;
}

static int migrate(long rounds) {
    struct looper l = {.now = -1};
    pthread_t t;
    if (pthread_create(&t, NULL, looper, &l) != 0) {
        perror("pthread_create");
        return 1;
    }
    uint64_t want = 0;
    for (long r = 0; r < rounds; r++) {
        int cpu = (int)(r % ncpus);
        want |= 1ull << cpu;
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        /* Never an error for a live thread, even one between islands (popvmm answered ESRCH or
         * EINVAL then, before its thread directory was asked again). */
        struct timespec ms = {0, 1000000};
        int e = pthread_setaffinity_np(t, sizeof set, &set);
        if (e != 0) {
            printf("pthread_setaffinity_np failed: %d\n", e);
            return 1;
        }
        /* Until the looper runs there (at most 2 s), then a little longer. */
        for (int i = 0; i < 2000 && __atomic_load_n(&l.now, __ATOMIC_RELAXED) != cpu; i++)
            nanosleep(&ms, NULL);
        nanosleep(&ms, NULL);
    }
    stop_looping = 1;
    pthread_join(t, NULL);
    printf("migrate: %ld rounds: every CPU seen: %s, backwards: %ld, off the kernel's clock: %ld, "
           "looped: %s\n",
           rounds, (l.seen & want) == want ? "yes" : "no", l.backwards, l.off,
           l.iterations > rounds ? "yes" : "no");
    return l.backwards != 0 || l.off != 0 || (l.seen & want) != want;
}

int main(int argc, char **argv) {
    ncpus = get_nprocs();
    if (ncpus > 64)
        ncpus = 64;
    if (argc > 2 && strcmp(argv[1], "migrate") == 0)
        return migrate(atol(argv[2]));
    if (argc > 1 && strcmp(argv[1], "vdso") == 0) {
        unsigned long at = getauxval(AT_SYSINFO_EHDR);
        int elf = at != 0 && memcmp((const void *)at, "\177ELF", 4) == 0;
        int named = 0;
        FILE *f = fopen("/proc/self/maps", "r");
        char line[512];
        while (f && fgets(line, sizeof line, f))
            if (strstr(line, "[vdso]") && strtoul(line, NULL, 16) == at)
                named = 1;
        if (f)
            fclose(f);
        printf("vdso: %s\n", elf && named ? "yes" : "no");
        return 0;
    }
    if (argc > 2 && strcmp(argv[1], "bench") == 0) {
        long n = atol(argv[2]);
        struct timespec a, b, t;
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (long i = 0; i < n; i++)
            clock_gettime(CLOCK_MONOTONIC, &t);
        clock_gettime(CLOCK_MONOTONIC, &b);
        printf("%.1f\n", n > 0 ? (double)(ns(b) - ns(a)) / n : 0.0);
        return 0;
    }
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    iterations = argc > 2 ? atol(argv[2]) : 2000;
    if (threads < 1 || threads > 64 || iterations < 1) {
        fprintf(stderr, "usage: timecalls [THREADS 1-64 [ITERATIONS]]\n");
        return 2;
    }
    pthread_t t[64];
    struct result r[64] = {0};
    for (int i = 0; i < threads; i++)
        if (pthread_create(&t[i], NULL, worker, &r[i]) != 0) {
            perror("pthread_create");
            return 1;
        }
    long checks = 0, failures = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        checks += r[i].checks;
        failures += r[i].failures;
        if (r[i].failures)
            printf("thread %d: %ld failures, first %s\n", i, r[i].failures, r[i].first);
    }
    printf("timecalls: %d threads x %ld iterations: %ld checks, %ld failures\n", threads,
           iterations, checks, failures);
    return failures != 0;
}
