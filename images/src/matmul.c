/* Compute-bound benchmark: C = A * B with 2 pthreads, each computing half of the rows. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static int n;
static double *a, *b, *c;

static void *work(void *arg) {
    long half = (long)arg;
    int lo = half ? n / 2 : 0, hi = half ? n : n / 2;
    for (int i = lo; i < hi; i++)
        for (int k = 0; k < n; k++) {
            double aik = a[i * n + k];
            for (int j = 0; j < n; j++)
                c[i * n + j] += aik * b[k * n + j];
        }
    return NULL;
}

int main(int argc, char **argv) {
    n = argc > 1 ? atoi(argv[1]) : 256;
    if (n < 2 || n > 4096)
        return 2;
    a = malloc(sizeof(double) * n * n);
    b = malloc(sizeof(double) * n * n);
    c = calloc((size_t)n * n, sizeof(double));
    for (int i = 0; i < n * n; i++) {
        a[i] = (i % 17) * 0.25;
        b[i] = (i % 13) * 0.5;
    }
    pthread_t t;
    pthread_create(&t, NULL, work, (void *)1);
    work((void *)0);
    pthread_join(t, NULL);
    double s = 0;
    for (int i = 0; i < n * n; i++)
        s += c[i];
    printf("n = %d, checksum = %.1f\n", n, s);
    return 0;
}
