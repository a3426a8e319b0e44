/* Page fault costs under popvmm's coherency layer, measured inside the guest.
 *
 *   faultbench first PAGES     main thread touches PAGES fresh pages (no other thread):
 *                              with --islands 1 --dsm, each is a fault served locally by the
 *                              userfaultfd handler with no protocol message (the floor)
 *   faultbench remote PAGES    a thread (on island 1 with round-robin placement) writes PAGES
 *                              pages; then the main thread (island 0) reads them: each read is a
 *                              remote read fault (Fetch -> Copy)
 *   faultbench upgrade PAGES   3 threads (islands 1-3) read PAGES pages written by main, then
 *                              main writes them again: each write upgrades a page Shared on 4
 *                              islands to Modified on one (Invalid to 3, 3 Acks)
 *
 * Prints "<mode> <pages> <ns per page>". */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define PAGE 4096

static volatile char *buf;
static long pages;
static atomic_int phase;

static long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static void wait_phase(int p) {
    while (atomic_load(&phase) < p)
        ;
}

static void *writer(void *arg) {
    (void)arg;
    for (long i = 0; i < pages; i++)
        buf[i * PAGE] = (char)(i + 1);
    /* Exit rather than spin: on a 2-core host a spinning guest thread takes the core the island
     * kernels need. */
    atomic_store(&phase, 1);
    return NULL;
}

static atomic_int readers_done;

static void *reader(void *arg) {
    (void)arg;
    wait_phase(1);
    long sum = 0;
    for (long i = 0; i < pages; i++)
        sum += buf[i * PAGE];
    if (sum == -1)
        puts("impossible");
    atomic_fetch_add(&readers_done, 1);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: faultbench first|remote|upgrade PAGES\n");
        return 2;
    }
    const char *mode = argv[1];
    pages = atol(argv[2]);
    if (pages <= 0) {
        fprintf(stderr, "faultbench: PAGES must be positive\n");
        return 2;
    }
    buf = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    long t0, t1;
    if (strcmp(mode, "first") == 0) {
        t0 = now_ns();
        long sum = 0;
        for (long i = 0; i < pages; i++)
            sum += buf[i * PAGE];
        t1 = now_ns();
        if (sum != 0)
            puts("impossible");
    } else if (strcmp(mode, "remote") == 0) {
        pthread_t t;
        pthread_create(&t, NULL, writer, NULL);
        wait_phase(1);
        t0 = now_ns();
        long sum = 0;
        for (long i = 0; i < pages; i++)
            sum += buf[i * PAGE];
        t1 = now_ns();
        pthread_join(t, NULL);
        if (sum == -1)
            puts("impossible");
    } else if (strcmp(mode, "upgrade") == 0) {
        pthread_t t[3];
        for (long i = 0; i < pages; i++)
            buf[i * PAGE] = (char)i;
        for (int i = 0; i < 3; i++)
            pthread_create(&t[i], NULL, reader, NULL);
        atomic_store(&phase, 1);
        while (atomic_load(&readers_done) < 3)
            ;
        t0 = now_ns();
        for (long i = 0; i < pages; i++)
            buf[i * PAGE] = (char)(i + 7);
        t1 = now_ns();
        for (int i = 0; i < 3; i++)
            pthread_join(t[i], NULL);
    } else {
        fprintf(stderr, "faultbench: unknown mode %s\n", mode);
        return 2;
    }
    printf("%s %ld %ld\n", mode, pages, (t1 - t0) / pages);
    return 0;
}
