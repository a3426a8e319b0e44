/* Robustness: system calls with hostile arguments. Only ever run on an island (natively it would
 * do random things to the host). The program may kill itself; popvmm must survive and report it.
 *
 *   fuzz                 the fixed run of the test suite (3 rounds of every number, one thread)
 *   fuzz SEED [ROUNDS]   a seeded run (scripts/fuzz): more argument kinds (iovec arrays, paths,
 *                        zero timespecs, small counts, Popcorn's calls), made by a second thread,
 *                        which a program on 2 islands runs on island 1: every file call then
 *                        travels to the origin as a message. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int skipped(long nr) {
    switch (nr) {
    case SYS_rt_sigreturn: case SYS_clone: case SYS_clone3: case SYS_fork: case SYS_vfork:
    case SYS_exit: case SYS_exit_group: case SYS_kill: case SYS_tkill: case SYS_tgkill:
    case SYS_futex: case SYS_nanosleep: case SYS_clock_nanosleep: case SYS_poll: case SYS_ppoll:
    case SYS_pause: case SYS_select: case SYS_pselect6: case SYS_rt_sigsuspend: case SYS_wait4:
    case SYS_munmap: case SYS_mremap: case SYS_mprotect: case SYS_arch_prctl:
    case SYS_set_tid_address: case 900:
        return 1;
    }
    return 0;
}

static char *scratch;
static long rounds = 3;
static int extended;
static long calls;

static void *run(void *arg) {
    (void)arg;
    /* Planted structures at the start of the scratch area (extended runs): an iovec array over the
     * scratch, a zero timespec, and paths. */
    if (extended) {
        uint64_t *iov = (uint64_t *)scratch;
        for (int i = 0; i < 16; i++) {
            iov[2 * i] = (uint64_t)scratch + 4096 + next() % 60000;
            iov[2 * i + 1] = next() % 5 == 0 ? next() : next() % 512;
        }
        memset(scratch + 512, 0, 16);
        strcpy(scratch + 1024, "/data/poem.txt");
        strcpy(scratch + 1280, "/proc/self/maps");
        strcpy(scratch + 1536, "/sys/devices/system/cpu/online");
    }
    const uint64_t values[] = {
        0, 1, (uint64_t)-1, 2, 64, 4096, 0xffffffffull, 0x1000, 0x7000, 0x7654321000ull,
        1ull << 47, 0x8000000000000000ull, (uint64_t)scratch, (uint64_t)scratch + 4096,
        (uint64_t)scratch + 65530, (uint64_t)-100,
        /* extended only */
        (uint64_t)scratch, (uint64_t)scratch + 512, (uint64_t)scratch + 1024,
        (uint64_t)scratch + 1280, (uint64_t)scratch + 1536, 3, 8, 16, 24, 0x22,
    };
    const int nv = extended ? sizeof values / sizeof values[0] : 16;
    const long last = extended ? 463 : 460;
    for (long r = 0; r < rounds; r++)
        for (long nr = 0; nr < last; nr++) {
            long n = nr < 460 ? nr : 901 + (nr - 460); /* 901-903: Popcorn's calls */
            if (skipped(n))
                continue;
            uint64_t a[6];
            for (int k = 0; k < 6; k++)
                a[k] = values[next() % nv];
            syscall(n, a[0], a[1], a[2], a[3], a[4], a[5]);
            calls++;
        }
    /* Memory calls on the scratch area only (the program's own mappings stay intact). */
    for (int i = 0; i < 200; i++) {
        uint64_t off = (next() % 16) * 4096, len = (next() % 20) * 4096 + (next() % 2);
        if (extended && off < 4096)
            off = 4096; /* keep the planted structures */
        switch (next() % 4) {
        case 0: syscall(SYS_mprotect, scratch + off, len, next() % 8); break;
        case 1: syscall(SYS_madvise, scratch + off, len, next() % 30); break;
        case 2: syscall(SYS_munmap, scratch + off, len); break;
        case 3: syscall(SYS_mmap, scratch + off, len, next() % 8, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0); break;
        }
        calls++;
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1) {
        extended = 1;
        rng = (strtoull(argv[1], NULL, 0) + 1) * 0x9e3779b97f4a7c15ull;
        rounds = argc > 2 ? atol(argv[2]) : 3;
    }
    scratch = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (int i = 0; i < (1 << 16); i++)
        scratch[i] = (char)next();
    if (extended) {
        pthread_t t;
        if (pthread_create(&t, NULL, run, NULL) != 0)
            return 2;
        pthread_join(t, NULL);
    } else {
        run(NULL);
    }
    /* The calls above may have closed stdout and stderr: the exit status says we got here. */
    return calls > 0 ? 42 : 1;
}
