/* False sharing: THREADS threads each increment their own word of ONE page ITERS times with plain
 * (volatile, non-atomic) increments; every word must end exact. The words are spread over the
 * page, one per cache line.
 *   falseshare [THREADS (4)] [ITERS (100000)] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_THREADS 64

static volatile long page[512] __attribute__((aligned(4096)));
static long iters;
static int nthreads;

/* Every thread spins here until all have arrived, so that they really run at the same time (a
 * futex barrier lets the first woken thread finish before the last one wakes). */
static volatile int arrived __attribute__((aligned(4096)));
static void rendezvous(int n) {
    __atomic_fetch_add(&arrived, 1, __ATOMIC_SEQ_CST);
    while (arrived < n)
        __asm__ volatile("pause" ::: "memory");
}

static void *worker(void *arg) {
    long t = (long)arg;
    volatile long *mine = &page[t * 8];
    rendezvous(nthreads);
    for (long i = 0; i < iters; i++)
        *mine = *mine + 1;
    return NULL;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 4;
    iters = argc > 2 ? atol(argv[2]) : 100000;
    if (n < 1 || n > MAX_THREADS || iters < 0) {
        fprintf(stderr, "usage: falseshare [THREADS 1-%d] [ITERS]\n", MAX_THREADS);
        return 2;
    }
    pthread_t t[MAX_THREADS];
    nthreads = n;
    for (long i = 0; i < n; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)i) != 0) {
            perror("pthread_create");
            return 1;
        }
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    int ok = 1;
    for (int i = 0; i < n; i++) {
        printf("word %d: %ld\n", i, page[i * 8]);
        ok &= page[i * 8] == iters;
    }
    long others = 0;
    for (int i = 0; i < 512; i++)
        if (i % 8 != 0 || i / 8 >= n)
            others |= page[i];
    printf("untouched words still zero: %s\n", others == 0 ? "yes" : "NO");
    return ok && others == 0 ? 0 : 1;
}
