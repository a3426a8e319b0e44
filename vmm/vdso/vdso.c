/* popvmm's vDSO: clock_gettime, gettimeofday, time, getcpu and clock_getres served in user mode,
 * without an exit, from the island's clock page (vvar, written by popvmm: vmm/src/kernel/vdso.rs)
 * and the guest's TSC. Built by vmm/build.rs (-nostdlib -shared -fPIC, sysv hash), mapped at the
 * same address with the same bytes on every island.
 *
 * No relocation, no global data: the clock page and the counter page are at fixed addresses of
 * the kernel area (memory/layout.rs), the same on every island; their contents are the island's.
 * What the vDSO cannot serve (CPU-time clocks, unknown clocks, a clock page not enabled yet) takes
 * the real `syscall`, as Linux's vDSO does. */
#include <stdint.h>

/* Keep in step with memory/layout.rs (VVAR_ADDR, VDSO_COUNTER_ADDR) and kernel/vdso.rs (the offsets). */
#define VVAR_ADDR 0x8000UL
#define COUNTER_ADDR 0x9000UL
#define NCLOCKS 4 /* lines: 0 REALTIME, 1 MONOTONIC, 2 MONOTONIC_RAW, 3 BOOTTIME */

struct line {
    int64_t base_ns; /* the clock at tsc_base */
    uint64_t mult;   /* ns per tick << shift */
};

struct vvar {
    uint32_t seq;     /* odd while popvmm writes; the same sequence on every island */
    uint32_t enabled; /* 0: every call takes the system call */
    uint32_t island;  /* getcpu's cpu */
    uint32_t shift;
    uint64_t tsc_base;
    struct line line[NCLOCKS];
    int64_t res_ns[NCLOCKS]; /* clock_getres of the fine clocks */
};

/* The offsets popvmm writes at (kernel/vdso.rs: SEQ, ENABLED, ISLAND, SHIFT_AT, TSC_BASE, LINES,
 * LINE_SIZE, RES): a change on one side only fails the build. */
_Static_assert(__builtin_offsetof(struct vvar, seq) == 0, "SEQ");
_Static_assert(__builtin_offsetof(struct vvar, enabled) == 4, "ENABLED");
_Static_assert(__builtin_offsetof(struct vvar, island) == 8, "ISLAND");
_Static_assert(__builtin_offsetof(struct vvar, shift) == 12, "SHIFT_AT");
_Static_assert(__builtin_offsetof(struct vvar, tsc_base) == 16, "TSC_BASE");
_Static_assert(__builtin_offsetof(struct vvar, line) == 24, "LINES");
_Static_assert(sizeof(struct line) == 16, "LINE_SIZE");
_Static_assert(__builtin_offsetof(struct vvar, res_ns) == 24 + 16 * NCLOCKS, "RES");

struct kts {
    int64_t tv_sec;
    int64_t tv_nsec;
};
struct ktv {
    int64_t tv_sec;
    int64_t tv_usec;
};

#define VVAR ((const volatile struct vvar *)VVAR_ADDR)
#define SERVED ((uint64_t *)COUNTER_ADDR)

static inline long sys2(long nr, long a, long b) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "0"(nr), "D"(a), "S"(b) : "rcx", "r11", "memory");
    return r;
}

static inline long sys3(long nr, long a, long b, long c) {
    long r;
    __asm__ volatile("syscall"
                     : "=a"(r)
                     : "0"(nr), "D"(a), "S"(b), "d"(c)
                     : "rcx", "r11", "memory");
    return r;
}

/* Not executed before the loads before it (lfence), as Linux's rdtsc_ordered. */
static inline uint64_t rdtsc_ordered(void) {
    uint32_t lo, hi;
    __asm__ volatile("lfence; rdtsc" : "=a"(lo), "=d"(hi)::"memory");
    return ((uint64_t)hi << 32) | lo;
}

/* The sequence, read again only once the TSC has been read: its address depends on the TSC's
 * value (`and $0` is no zeroing idiom: the CPU waits for its input), which orders the load after
 * rdtsc for a cycle where a second lfence costs tens of nanoseconds here. popvmm's refresh relies
 * on it: a reading accepted with the old lines has a TSC before the one the new lines start at. */
static inline uint32_t seq_after(uint64_t tsc) {
    uint64_t zero = tsc;
    __asm__("and $0, %0" : "+r"(zero));
    return *(const volatile uint32_t *)(VVAR_ADDR + zero);
}

static inline void served(void) { __atomic_fetch_add(SERVED, 1, __ATOMIC_RELAXED); }

/* The line of a clock id, or -1 for one the vDSO leaves to the kernel. Coarse clocks read as
 * their fine clock (never behind the kernel's coarse value, and monotonic with the fine one). */
static inline int line_of(long clock) {
    switch (clock) {
    case 0: /* CLOCK_REALTIME */
    case 5: /* CLOCK_REALTIME_COARSE */
        return 0;
    case 1: /* CLOCK_MONOTONIC */
    case 6: /* CLOCK_MONOTONIC_COARSE */
        return 1;
    case 4: /* CLOCK_MONOTONIC_RAW */
        return 2;
    case 7: /* CLOCK_BOOTTIME */
        return 3;
    default:
        return -1;
    }
}

/* Nanoseconds of line `l` now; 0 with *ok = 0 when the clock page is not enabled. A sequence
 * change (popvmm refreshing the page, or the thread migrating to an island whose page was
 * refreshed) makes it read again. */
static inline int64_t now_ns(int l, int *ok) {
    for (;;) {
        uint32_t seq = VVAR->seq;
        if (seq & 1) {
            __builtin_ia32_pause();
            continue;
        }
        __atomic_signal_fence(__ATOMIC_ACQUIRE);
        if (!VVAR->enabled) {
            *ok = 0;
            return 0;
        }
        uint64_t base = VVAR->tsc_base;
        int64_t ns = VVAR->line[l].base_ns;
        uint64_t mult = VVAR->line[l].mult;
        uint32_t shift = VVAR->shift;
        uint64_t tsc = rdtsc_ordered();
        /* A TSC before the base (read in the same sequence, so never by more than the time it
         * took to publish it) counts as the base. */
        uint64_t delta = tsc > base ? tsc - base : 0;
        if (seq_after(tsc) != seq)
            continue;
        *ok = 1;
        return ns + (int64_t)(((unsigned __int128)delta * mult) >> shift);
    }
}

int __vdso_clock_gettime(long clock, struct kts *ts) {
    int l = line_of(clock), ok = 0;
    if (l >= 0) {
        int64_t ns = now_ns(l, &ok);
        if (ok) {
            ts->tv_sec = ns / 1000000000;
            ts->tv_nsec = ns % 1000000000;
            served();
            return 0;
        }
    }
    return (int)sys2(228 /* SYS_clock_gettime */, clock, (long)ts);
}

int __vdso_gettimeofday(struct ktv *tv, void *tz) {
    int ok = 0;
    int64_t ns = now_ns(0, &ok);
    if (!ok)
        return (int)sys2(96 /* SYS_gettimeofday */, (long)tv, (long)tz);
    if (tv) {
        tv->tv_sec = ns / 1000000000;
        tv->tv_usec = ns % 1000000000 / 1000;
    }
    if (tz) {
        /* The island kernel's answer: UTC, no DST. */
        ((int32_t *)tz)[0] = 0;
        ((int32_t *)tz)[1] = 0;
    }
    served();
    return 0;
}

int64_t __vdso_time(int64_t *t) {
    int ok = 0;
    int64_t ns = now_ns(0, &ok);
    if (!ok)
        return sys2(201 /* SYS_time */, (long)t, 0);
    int64_t s = ns / 1000000000;
    if (t)
        *t = s;
    served();
    return s;
}

int __vdso_getcpu(uint32_t *cpu, uint32_t *node, void *cache) {
    if (!VVAR->enabled)
        return (int)sys3(309 /* SYS_getcpu */, (long)cpu, (long)node, (long)cache);
    /* The island is the CPU (as the island kernel's getcpu says); one NUMA node. */
    if (cpu)
        *cpu = VVAR->island;
    if (node)
        *node = 0;
    served();
    return 0;
}

int __vdso_clock_getres(long clock, struct kts *res) {
    int l = line_of(clock);
    /* Coarse clocks have the kernel's coarse resolution: the system call says it. */
    if (l < 0 || clock == 5 || clock == 6 || !VVAR->enabled)
        return (int)sys2(229 /* SYS_clock_getres */, clock, (long)res);
    if (res) {
        res->tv_sec = 0;
        res->tv_nsec = VVAR->res_ns[l];
    }
    served();
    return 0;
}

int clock_gettime(long, struct kts *) __attribute__((weak, alias("__vdso_clock_gettime")));
int gettimeofday(struct ktv *, void *) __attribute__((weak, alias("__vdso_gettimeofday")));
int64_t time(int64_t *) __attribute__((weak, alias("__vdso_time")));
int getcpu(uint32_t *, uint32_t *, void *) __attribute__((weak, alias("__vdso_getcpu")));
int clock_getres(long, struct kts *) __attribute__((weak, alias("__vdso_clock_getres")));
