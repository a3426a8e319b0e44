/* THREADS threads each add 1 to ONE shared word ITERS times with lock-prefixed instructions (half
 * `lock xadd` in inline assembly, half __atomic_fetch_add): the total must be exact.
 *   lockinc [THREADS (4)] [ITERS (100000)] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static long counter __attribute__((aligned(64)));
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
    (void)arg;
    rendezvous(nthreads);
    for (long i = 0; i < iters; i++) {
        if (i & 1) {
            long one = 1;
            __asm__ volatile("lock xaddq %0, %1" : "+r"(one), "+m"(counter) : : "memory");
        } else {
            __atomic_fetch_add(&counter, 1, __ATOMIC_SEQ_CST);
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 4;
    iters = argc > 2 ? atol(argv[2]) : 100000;
    if (n < 1 || n > 256 || iters < 0) {
        fprintf(stderr, "usage: lockinc [THREADS] [ITERS]\n");
        return 2;
    }
    pthread_t *t = calloc(n, sizeof *t);
    nthreads = n;
    for (long i = 0; i < n; i++)
        if (pthread_create(&t[i], NULL, worker, NULL) != 0) {
            perror("pthread_create");
            return 1;
        }
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    printf("lockinc: %d threads x %ld increments\n", n, iters);
    printf("total: %ld (expected %ld)\n", counter, n * iters);
    return counter == n * iters ? 0 : 1;
}
