/* Mutual exclusion across islands.
 * 1. Peterson's algorithm for 2 threads with plain (volatile) loads and stores and a sequentially
 *    consistent fence (mfence): each thread enters the critical section K times.
 * 2. A pthread mutex shared by THREADS threads, each entering K times.
 * Inside the critical section each thread checks that nobody else is inside (a violation
 * otherwise) and increments a shared, unprotected counter: violations must be 0 and the totals exact.
 *   peterson [K (2000)] [THREADS (4)] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static long k_iters;
static int nthreads;

/* Every thread spins here until all have arrived, so that they really run at the same time (a
 * futex barrier lets the first woken thread finish before the last one wakes). */
static volatile int arrived[2] __attribute__((aligned(4096)));
static void rendezvous(volatile int *count, int n) {
    __atomic_fetch_add(count, 1, __ATOMIC_SEQ_CST);
    while (*count < n)
        __asm__ volatile("pause" ::: "memory");
}

/* Peterson's variables, one page apart from the mutex test's. */
static struct {
    volatile int flag[2];
    volatile int turn;
    volatile int inside;
    volatile long counter;
    volatile long violations;
} pt __attribute__((aligned(4096)));

static struct {
    pthread_mutex_t m;
    volatile int inside;
    volatile long counter;
    volatile long violations;
} mx __attribute__((aligned(4096))) = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0};

static void critical(volatile int *inside, volatile long *counter, volatile long *violations) {
    if (*inside != 0)
        (*violations)++;
    *inside = *inside + 1;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    long c = *counter;
    *counter = c + 1;
    if (*inside != 1)
        (*violations)++;
    *inside = *inside - 1;
}

static void *peterson(void *arg) {
    int me = (int)(long)arg, other = 1 - me;
    rendezvous(&arrived[0], 2);
    for (long i = 0; i < k_iters; i++) {
        pt.flag[me] = 1;
        pt.turn = other;
        __asm__ volatile("mfence" ::: "memory");
        while (pt.flag[other] && pt.turn == other)
            __asm__ volatile("pause" ::: "memory");
        critical(&pt.inside, &pt.counter, &pt.violations);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        pt.flag[me] = 0;
    }
    return NULL;
}

static void *mutexed(void *arg) {
    (void)arg;
    rendezvous(&arrived[1], nthreads);
    for (long i = 0; i < k_iters; i++) {
        pthread_mutex_lock(&mx.m);
        critical(&mx.inside, &mx.counter, &mx.violations);
        pthread_mutex_unlock(&mx.m);
    }
    return NULL;
}

int main(int argc, char **argv) {
    k_iters = argc > 1 ? atol(argv[1]) : 2000;
    int n = argc > 2 ? atoi(argv[2]) : 4;
    if (k_iters < 0 || n < 1 || n > 64) {
        fprintf(stderr, "usage: peterson [K] [THREADS]\n");
        return 2;
    }
    nthreads = n;
    pthread_t t[64];
    for (long i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, peterson, (void *)i);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    printf("peterson: 2 threads x %ld entries: violations %ld, total %ld (expected %ld)\n",
           k_iters, pt.violations, pt.counter, 2 * k_iters);

    for (long i = 0; i < n; i++)
        pthread_create(&t[i], NULL, mutexed, NULL);
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    printf("mutex: %d threads x %ld entries: violations %ld, total %ld (expected %ld)\n", n,
           k_iters, mx.violations, mx.counter, n * k_iters);
    int ok = pt.violations == 0 && pt.counter == 2 * k_iters && mx.violations == 0 &&
             mx.counter == n * k_iters;
    return ok ? 0 : 1;
}
