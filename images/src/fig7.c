/* The micro-benchmark of the paper's figure 7 (§6), as coherency/src/figure7.rs simulates it.
 * Usage: fig7 SIZE PATTERN ITERS
 *   SIZE     half (512 4-byte ints), page (1024), 64pages (65536)
 *   PATTERN  rr (both threads read), rw (the main thread writes, the second reads), ww (both write)
 *   ITERS    passes over the array per thread (the figure: 1, 10, 30, 60, 90)
 *
 * The main thread maps the array on its own pages (mmap, page-aligned, nothing else on them), fills
 * it, then creates exactly one pthread (under popvmm the second thread is placed on island 1, so
 * the array's pages start on island 0). Both threads meet at a start flag, then each streams over
 * the whole array ITERS times from element 0, concurrently: a read loads every element, a write
 * stores every element. Writers store the value the element already holds (the fill value), so a
 * reader's sum does not depend on the interleaving and the output is deterministic; the stores
 * still make the writer take the pages for writing. The start flag, the arrival counter and the
 * second thread's result live on a separate page, so the array's pages carry only the benchmark's
 * accesses. Prints the array's page range (start, end exclusive) and a checksum line; no timing. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define PAGE 4096L

struct sync_page {
    atomic_int arrived; /* threads at the start line */
    long second_sum;    /* the second thread's result, read after pthread_join */
};

static volatile int *arr;
static long elements, iters;
static int main_writes, second_writes;
static struct sync_page *sp;

static int fill_value(long i) { return (int)(i * 7 + 1); }

/* ITERS passes over the array; returns the sum of the values read or written. */
static long stream(int write) {
    long sum = 0;
    for (long it = 0; it < iters; it++) {
        if (write)
            for (long i = 0; i < elements; i++) {
                int val = fill_value(i);
                arr[i] = val;
                sum += val;
            }
        else
            for (long i = 0; i < elements; i++)
                sum += arr[i];
    }
    return sum;
}

/* Both threads arrive, then both go: a two-thread spin barrier on the sync page. */
static void start_line(void) {
    atomic_fetch_add(&sp->arrived, 1);
    long spins = 0;
    while (atomic_load(&sp->arrived) < 2)
        if (++spins % 1024 == 0)
            sched_yield();
}

static void *second(void *unused) {
    (void)unused;
    start_line();
    sp->second_sum = stream(second_writes);
    return NULL;
}

static void usage(void) {
    fprintf(stderr, "usage: fig7 half|page|64pages rr|rw|ww ITERS\n");
    exit(2);
}

int main(int argc, char **argv) {
    if (argc != 4) usage();
    if (!strcmp(argv[1], "half"))
        elements = 512;
    else if (!strcmp(argv[1], "page"))
        elements = 1024;
    else if (!strcmp(argv[1], "64pages"))
        elements = 65536;
    else
        usage();
    if (!strcmp(argv[2], "rr"))
        main_writes = 0, second_writes = 0;
    else if (!strcmp(argv[2], "rw"))
        main_writes = 1, second_writes = 0; /* figure7.rs: kernel 0 writes, kernel 1 reads */
    else if (!strcmp(argv[2], "ww"))
        main_writes = 1, second_writes = 1;
    else
        usage();
    char *end;
    iters = strtol(argv[3], &end, 10);
    if (*argv[3] == 0 || *end != 0 || iters < 0) usage();

    long bytes = elements * (long)sizeof(int);
    long mapped = (bytes + PAGE - 1) / PAGE * PAGE;
    void *mem = mmap(NULL, (size_t)mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    void *sync = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED || sync == MAP_FAILED) {
        perror("fig7: mmap");
        return 1;
    }
    arr = mem;
    sp = sync;
    atomic_store(&sp->arrived, 0);
    sp->second_sum = 0;
    for (long i = 0; i < elements; i++)
        arr[i] = fill_value(i);

    printf("array 0x%lx 0x%lx\n", (unsigned long)mem, (unsigned long)mem + (unsigned long)mapped);
    fflush(stdout);

    pthread_t th;
    if (pthread_create(&th, NULL, second, NULL) != 0) {
        fprintf(stderr, "fig7: pthread_create failed\n");
        return 1;
    }
    start_line();
    long main_sum = stream(main_writes);
    pthread_join(th, NULL);

    long expect = 0;
    for (long i = 0; i < elements; i++)
        expect += fill_value(i);
    expect *= iters;
    /* no further access to the array: its pages carry only the fill and the two streams */
    int ok = main_sum == expect && sp->second_sum == expect;
    printf("fig7 %s %s %ld: elements %ld pages %ld main %s sum %ld, second %s sum %ld: %s\n", argv[1],
           argv[2], iters, elements, mapped / PAGE, main_writes ? "wrote" : "read", main_sum,
           second_writes ? "wrote" : "read", sp->second_sum, ok ? "ok" : "MISMATCH");
    return ok ? 0 : 1;
}
