/* For the /pages test: while stdin stays open, one page (`shared_page`) is read over and over by
 * every thread, each on its own island (Shared everywhere), and another (`hot_page`) is written
 * over and over by one thread after every thread read it once (Modified on that thread's island,
 * Invalid on the others). At end of file on stdin everything stops and the program exits 0.
 * Prints nothing variable.
 *   pagewatch [THREADS (3): the threads besides main] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 63

static long shared_page[512] __attribute__((aligned(4096))) = {1, 2, 3};
static volatile long hot_page[512] __attribute__((aligned(4096))) = {7};
static volatile int stop __attribute__((aligned(4096)));
static pthread_barrier_t read_once, go;
static volatile long sink;

static void nap(void) {
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
}

static long read_shared(void) {
    long s = 0;
    for (int i = 0; i < 512; i++)
        s += ((volatile long *)shared_page)[i];
    return s;
}

static void *reader(void *arg) {
    long id = (long)arg;
    sink += hot_page[0] * 0; /* a copy of hot_page on this island too */
    read_shared();
    pthread_barrier_wait(&read_once);
    pthread_barrier_wait(&go);
    if (id == 0) {
        /* The writer: hot_page becomes Modified here and stays so. */
        long n = 0;
        while (!stop) {
            hot_page[n % 512] = n;
            n++;
            nap();
        }
        return (void *)n;
    }
    long s = 0;
    while (!stop) {
        s += read_shared();
        nap();
    }
    return (void *)s;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 3;
    if (n < 1 || n > MAX_THREADS) {
        fprintf(stderr, "usage: pagewatch [THREADS 1-%d]\n", MAX_THREADS);
        return 2;
    }
    pthread_t t[MAX_THREADS];
    pthread_barrier_init(&read_once, NULL, n + 1);
    pthread_barrier_init(&go, NULL, n + 1);
    for (long i = 0; i < n; i++)
        pthread_create(&t[i], NULL, reader, (void *)i);
    sink += hot_page[0];
    long want = read_shared();
    pthread_barrier_wait(&read_once);
    pthread_barrier_wait(&go);
    printf("pagewatch: %d threads running\n", n);
    fflush(stdout);
    char buf[256];
    while (read(0, buf, sizeof buf) > 0)
        if (read_shared() != want)
            return 1;
    stop = 1;
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    printf("pagewatch: done\n");
    return 0;
}
