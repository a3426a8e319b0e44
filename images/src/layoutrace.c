/* Layout changes racing with accesses on other islands: one thread changes the layout of a small
 * region over and over while other threads read and write it.
 *   layoutrace MODE USERS CHANGES
 * MODE:
 *   dontneed, free  madvise(MADV_DONTNEED / MADV_FREE) of one page at a time; users write and
 *                   read their own word of every page directly: a read gives the value the user
 *                   wrote last or zero, never an older value; another user's word holds zero or
 *                   a value that user wrote; clock_gettime into the page and write() from it
 *                   (the island kernel's and the origin's accesses) always work
 *   mapfixed        mmap(MAP_FIXED) of a fresh page over one page at a time; users as above
 *   mprotect        mprotect(PROT_NONE) then back to read-write; users write into the region
 *                   with clock_gettime and read it with write() to /dev/null (0 or EFAULT)
 *   munmap          munmap then mmap(MAP_FIXED) again; users as for mprotect; a fresh page
 *                   reads zero
 *   mremap          the region moves between two addresses (MREMAP_FIXED); users as for
 *                   mprotect, at both addresses; the changer's words move with the region, and
 *                   so does every clock_gettime a user saw succeed
 *   brk             the break grows by the region and shrinks back; users as for mprotect; the
 *                   grown pages read zero
 * The changer is the first thread created, the users the next ones (placement decides their
 * islands); main only starts and joins them. Prints one line: what ran and "ok", or the first
 * failure (exit 1). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define PAGES 4
#define MAX_USERS 7
/* Each thread's word of a page: its own cache line. Thread 0 is the changer. */
#define WORD(base, page, t) ((volatile uint64_t *)((base) + (page) * PAGE + (t) * 64))

enum mode { DONTNEED, FREE, MAPFIXED, MPROTECT, MUNMAP, MREMAP, BRK };
static const char *names[] = {"dontneed", "free", "mapfixed", "mprotect", "munmap", "mremap", "brk"};

static enum mode mode;
static int users, changes;
static char *region;           /* where the region is now (mremap: one of two addresses) */
static char *homes[2];         /* mremap: the two addresses */
static volatile int started, stop;
static volatile int failed;
static char failure[200];
static int devnull;
/* mremap: per user, a lower bound of the last timestamp its clock_gettime wrote into the region
 * successfully (a write that succeeded landed in the region before a move, so the move carries
 * it, or after it). */
static volatile uint64_t last_ok[MAX_USERS + 1];

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void fail(const char *what, int t, int page, uint64_t got, uint64_t want) {
    pthread_mutex_lock(&lock);
    if (!failed) {
        snprintf(failure, sizeof failure, "%s (thread %d, page %d: %#llx, expected %#llx)", what,
                 t, page, (unsigned long long)got, (unsigned long long)want);
        failed = 1;
    }
    pthread_mutex_unlock(&lock);
}

static int direct(void) { return mode == DONTNEED || mode == FREE || mode == MAPFIXED; }

/* A user of a region it may touch directly: its own word of every page holds what it wrote last
 * or zero (the page was dropped); another user's word holds zero or that user's tag. */
static void use_directly(int t) {
    uint64_t last[PAGES] = {0};
    uint64_t seq = 0;
    while (!stop && !failed) {
        for (int p = 0; p < PAGES; p++) {
            volatile uint64_t *w = WORD(region, p, t);
            uint64_t now = *w;
            if (now != last[p] && now != 0)
                fail("own word changed to an older value", t, p, now, last[p]);
            uint64_t v = ((uint64_t)t << 48) | ++seq;
            *w = v;
            last[p] = v;
            now = *w;
            if (now != v && now != 0)
                fail("own word read back wrong", t, p, now, v);
            for (int u = 1; u <= users; u++) {
                uint64_t o = *WORD(region, p, u);
                if (o != 0 && o >> 48 != (uint64_t)u)
                    fail("another user's word holds a foreign value", t, p, o, (uint64_t)u << 48);
            }
            /* The kernel touches the page too: it writes a timespec beside the word (on this
             * island) and reads the page for write() (on the origin); the mapping stays, so
             * both must work. */
            if (syscall(SYS_clock_gettime, CLOCK_MONOTONIC,
                        (struct timespec *)((char *)w + 32)) != 0)
                fail("clock_gettime into the region", t, p, (uint64_t)errno, 0);
            if (write(devnull, region + p * PAGE, PAGE) != PAGE)
                fail("write() from the region", t, p, (uint64_t)errno, PAGE);
        }
    }
}

/* A user of a region that may be unmapped or PROT_NONE at any time: only system calls touch
 * it, and each either works or fails with EFAULT. */
static void use_by_syscalls(int t) {
    while (!stop && !failed) {
        for (int p = 0; p < PAGES; p++) {
            for (int b = 0; b < (mode == MREMAP ? 2 : 1); b++) {
                char *base = mode == MREMAP ? homes[b] : region;
                uint64_t before = now_ns();
                long r = syscall(SYS_clock_gettime, CLOCK_MONOTONIC,
                                 (struct timespec *)WORD(base, p, t));
                if (r == 0 && mode == MREMAP && p == 0)
                    last_ok[t] = before;
                if (r != 0 && errno != EFAULT)
                    fail("clock_gettime into the region: neither 0 nor EFAULT", t, p, (uint64_t)errno, 0);
                ssize_t n = write(devnull, base + p * PAGE, PAGE);
                if (n != PAGE && !(n < 0 && errno == EFAULT))
                    fail("write() from the region: neither a page nor EFAULT", t, p, (uint64_t)n, PAGE);
            }
        }
    }
}

static void *user(void *arg) {
    int t = (int)(intptr_t)arg;
    __atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
    if (direct())
        use_directly(t);
    else
        use_by_syscalls(t);
    return NULL;
}

static void check_zero_then_mark(char *base, int p, uint64_t mark) {
    volatile uint64_t *w = WORD(base, p, 0);
    if (*w != 0)
        fail("a fresh page does not read zero", 0, p, *w, 0);
    *w = mark;
}

static void *changer(void *arg) {
    (void)arg;
    __atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
    while (started < users + 1)
        sched_yield();
    uint64_t marks[PAGES] = {0};
    for (int i = 0; i < changes && !failed; i++) {
        int p = i % PAGES;
        char *page = region + p * PAGE;
        uint64_t mark = 0xc0de000000000000ull | (uint64_t)i;
        switch (mode) {
        case DONTNEED:
        case FREE:
            *WORD(region, p, 0) = mark;
            if (madvise(page, PAGE, mode == FREE ? MADV_FREE : MADV_DONTNEED) != 0)
                fail("madvise", 0, p, (uint64_t)errno, 0);
            break;
        case MAPFIXED:
            *WORD(region, p, 0) = mark;
            if (mmap(page, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1,
                     0) != page)
                fail("mmap MAP_FIXED", 0, p, (uint64_t)errno, 0);
            break;
        case MPROTECT:
            *WORD(region, p, 0) = mark;
            if (mprotect(page, PAGE, PROT_NONE) != 0 ||
                mprotect(page, PAGE, PROT_READ | PROT_WRITE) != 0)
                fail("mprotect", 0, p, (uint64_t)errno, 0);
            if (*WORD(region, p, 0) != mark)
                fail("mprotect changed the contents", 0, p, *WORD(region, p, 0), mark);
            break;
        case MUNMAP:
            if (munmap(page, PAGE) != 0)
                fail("munmap", 0, p, (uint64_t)errno, 0);
            if (mmap(page, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1,
                     0) != page)
                fail("mmap MAP_FIXED", 0, p, (uint64_t)errno, 0);
            check_zero_then_mark(region, p, mark);
            break;
        case MREMAP: {
            char *to = region == homes[0] ? homes[1] : homes[0];
            *WORD(region, p, 0) = mark;
            marks[p] = mark;
            void *r = mremap(region, PAGES * PAGE, PAGES * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, to);
            if (r != to) {
                fail("mremap", 0, p, (uint64_t)errno, 0);
                break;
            }
            region = to;
            for (int q = 0; q < PAGES; q++)
                if (*WORD(region, q, 0) != marks[q])
                    fail("mremap lost the contents", 0, q, *WORD(region, q, 0), marks[q]);
            /* Every write a user saw succeed is in the region now. */
            for (int u = 1; u <= users; u++) {
                uint64_t bound = last_ok[u];
                volatile uint64_t *ts = WORD(region, 0, u);
                uint64_t got = ts[0] * 1000000000ull + ts[1];
                if (got < bound)
                    fail("mremap lost a write another thread saw succeed", u, 0, got, bound);
            }
            break;
        }
        case BRK: {
            char *top = sbrk(PAGES * PAGE);
            if (top != region) {
                fail("sbrk grow", 0, p, (uint64_t)(uintptr_t)top, (uint64_t)(uintptr_t)region);
                break;
            }
            for (int q = 0; q < PAGES; q++)
                check_zero_then_mark(region, q, mark);
            if (sbrk(-PAGES * PAGE) == (void *)-1)
                fail("sbrk shrink", 0, p, (uint64_t)errno, 0);
            break;
        }
        }
    }
    stop = 1;
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: layoutrace dontneed|free|mapfixed|mprotect|munmap|mremap|brk USERS CHANGES\n");
        return 2;
    }
    int found = 0;
    for (int m = 0; m <= BRK; m++)
        if (strcmp(argv[1], names[m]) == 0) {
            mode = m;
            found = 1;
        }
    users = atoi(argv[2]);
    changes = atoi(argv[3]);
    if (!found || users < 1 || users > MAX_USERS || changes < 1) {
        fprintf(stderr, "layoutrace: bad arguments\n");
        return 2;
    }
    devnull = open("/dev/null", O_WRONLY);
    if (devnull < 0) {
        perror("open /dev/null");
        return 1;
    }
    /* stdout's buffer is allocated now, before the break moves (brk mode). */
    printf("layoutrace %s: %d users, %d changes\n", names[mode], users, changes);
    fflush(stdout);
    if (mode == BRK) {
        char *cur = sbrk(0);
        uintptr_t pad = (PAGE - (uintptr_t)cur % PAGE) % PAGE;
        region = (char *)sbrk(pad) + pad; /* page-aligned break; the region lies above it */
    } else {
        region = mmap(NULL, 2 * PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                      -1, 0);
        if (region == MAP_FAILED) {
            perror("mmap");
            return 1;
        }
        homes[0] = region;
        homes[1] = region + PAGES * PAGE;
        if (mode == MREMAP)
            munmap(homes[1], PAGES * PAGE);
        else
            homes[1] = NULL;
        memset(region, 0, PAGES * PAGE); /* resident on the origin: its pages start there */
    }
    pthread_t threads[MAX_USERS + 1];
    pthread_create(&threads[0], NULL, changer, NULL);
    for (int t = 1; t <= users; t++)
        pthread_create(&threads[t], NULL, user, (void *)(intptr_t)t);
    for (int t = 0; t <= users; t++)
        pthread_join(threads[t], NULL);
    if (failed) {
        printf("FAILED: %s\n", failure);
        return 1;
    }
    printf("ok\n");
    return 0;
}
