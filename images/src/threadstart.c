/* Threads started back to back, each allocating with malloc as soon as it runs (so that glibc
 * creates an arena for it: mmap, munmap, mprotect) while the next threads are being created.
 * For a bug of several islands: now and then a thread faults on its own stack (SIGSEGV).
 *   threadstart [THREADS (32)] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_THREADS 256

static void *work(void *arg) {
    long id = (long)arg, s = 0;
    unsigned char *p = malloc(1000);
    if (!p)
        return NULL;
    memset(p, (int)id, 1000);
    for (int i = 0; i < 1000; i++)
        s += p[i];
    free(p);
    return (void *)s;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 32;
    if (n < 1 || n > MAX_THREADS) {
        fprintf(stderr, "usage: threadstart [THREADS 1-%d]\n", MAX_THREADS);
        return 2;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 2 << 20);
    pthread_t t[MAX_THREADS];
    for (long i = 0; i < n; i++)
        if (pthread_create(&t[i], &attr, work, (void *)(i + 1)) != 0) {
            perror("pthread_create");
            return 1;
        }
    long total = 0;
    for (int i = 0; i < n; i++) {
        void *v;
        pthread_join(t[i], &v);
        total += (long)v;
    }
    printf("threadstart: %d threads, total %ld\n", n, total);
    return 0;
}
