/* The default demo of `popvmm launch --islands N`: one worker thread per island working on shared
 * arrays. Each worker fills its slice of a large array, waits at a barrier, then reads the other
 * workers' slices (checksums, a neighbour stencil into a second array), and adds its part to a
 * shared total under a mutex. main checks everything serially at the end. The output depends only on
 * the arguments: it is byte-identical to the native run.
 *   demo [THREADS (4)] [ELEMENTS PER THREAD (16384)] */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_THREADS 64

static int nthreads;
static long per; /* elements per thread */
static uint32_t *data, *smooth;
static pthread_barrier_t barrier;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t total;       /* the shared reduction, under lock */
static long contributions;   /* under lock */
static uint64_t seen[MAX_THREADS]; /* seen[t]: thread t's checksum of every other slice */
static uint64_t own[MAX_THREADS];  /* own[t]: checksum of slice t written by thread t */

static uint32_t value(long i) {
    uint32_t x = (uint32_t)i * 2654435761u + 12345u;
    x ^= x >> 15;
    x *= 2246822519u;
    x ^= x >> 13;
    return x;
}

static uint64_t checksum(const uint32_t *a, long n) {
    uint64_t h = 1469598103934665603ull;
    for (long i = 0; i < n; i++)
        h = (h ^ a[i]) * 1099511628211ull;
    return h;
}

static void *worker(void *arg) {
    long t = (long)arg, lo = t * per, n = per * nthreads;
    /* 1. fill my slice */
    for (long i = lo; i < lo + per; i++)
        data[i] = value(i);
    own[t] = checksum(data + lo, per);
    pthread_barrier_wait(&barrier);
    /* 2. read every other slice, starting with my right neighbour's */
    uint64_t h = 0;
    for (int k = 1; k < nthreads; k++) {
        long s = (t + k) % nthreads;
        h = h * 31 + checksum(data + s * per, per);
    }
    seen[t] = h;
    /* 3. a stencil that reads across the slice boundaries */
    for (long i = lo; i < lo + per; i++)
        smooth[i] = data[(i + n - 1) % n] / 4 + data[i] / 2 + data[(i + 1) % n] / 4;
    pthread_barrier_wait(&barrier);
    /* 4. a reduction over my slice of the result, added under the mutex */
    uint64_t local = 0;
    for (long i = lo; i < lo + per; i++)
        local += smooth[i] % 1000003;
    pthread_mutex_lock(&lock);
    total += local;
    contributions++;
    pthread_mutex_unlock(&lock);
    return NULL;
}

int main(int argc, char **argv) {
    nthreads = argc > 1 ? atoi(argv[1]) : 4;
    per = argc > 2 ? atol(argv[2]) : 16384;
    if (nthreads < 1 || nthreads > MAX_THREADS || per < 1 || per > (1L << 22)) {
        fprintf(stderr, "usage: demo [THREADS 1-%d] [ELEMENTS PER THREAD]\n", MAX_THREADS);
        return 2;
    }
    long n = per * nthreads;
    data = malloc(sizeof *data * n);
    smooth = malloc(sizeof *smooth * n);
    if (!data || !smooth) {
        perror("malloc");
        return 1;
    }
    pthread_barrier_init(&barrier, NULL, nthreads);
    pthread_t th[MAX_THREADS];
    for (long t = 0; t < nthreads; t++)
        if (pthread_create(&th[t], NULL, worker, (void *)t) != 0) {
            perror("pthread_create");
            return 1;
        }
    for (int t = 0; t < nthreads; t++)
        pthread_join(th[t], NULL);

    printf("demo: %d threads, %ld elements each, %ld KiB of shared arrays\n", nthreads, per,
           (long)(2 * sizeof *data * n / 1024));
    /* Serial check of what the threads computed. */
    int ok = contributions == nthreads;
    uint64_t want_total = 0;
    for (long i = 0; i < n; i++) {
        uint32_t v = value(i);
        ok &= data[i] == v;
        uint32_t s = value((i + n - 1) % n) / 4 + v / 2 + value((i + 1) % n) / 4;
        ok &= smooth[i] == s;
        want_total += s % 1000003;
    }
    for (int t = 0; t < nthreads; t++) {
        uint64_t h = 0;
        for (int k = 1; k < nthreads; k++)
            h = h * 31 + checksum(data + ((t + k) % nthreads) * per, per);
        ok &= seen[t] == h && own[t] == checksum(data + t * per, per);
        printf("thread %d: own slice %016llx, the others' %016llx\n", t,
               (unsigned long long)own[t], (unsigned long long)seen[t]);
    }
    ok &= total == want_total;
    printf("reduction under a mutex: %llu from %ld threads\n", (unsigned long long)total,
           contributions);
    printf("serial check: %s\n", ok ? "ok" : "MISMATCH");
    return ok ? 0 : 1;
}
