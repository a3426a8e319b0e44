/* OpenMP with a fixed team (argv[1], default 4; 0 keeps OMP_NUM_THREADS or the default): parallel
 * for reductions (integer and floating point, static schedule so the result does not depend on
 * timing), a dynamic schedule over a shared array, a critical section, an atomic and a barrier. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#define N 20000

static double x[N], y[N];

int main(int argc, char **argv) {
    int want = argc > 1 ? atoi(argv[1]) : 4;
    if (want > 0)
        omp_set_num_threads(want);
    int team = 0, hits = 0;
    long atomics = 0;
#pragma omp parallel
    {
#pragma omp single
        team = omp_get_num_threads();
#pragma omp critical
        hits++;
#pragma omp barrier
        for (int i = 0; i < 1000; i++) {
#pragma omp atomic
            atomics++;
        }
    }
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++)
        x[i] = (i % 101) * 0.5;
#pragma omp parallel for schedule(dynamic, 1000)
    for (int i = 0; i < N; i++)
        y[i] = x[(i * 7919L) % N] * 2 + 1;
    long isum = 0;
#pragma omp parallel for schedule(static) reduction(+ : isum)
    for (long i = 0; i < 5000000; i++)
        isum += (i * i) % 13;
    double dot = 0;
#pragma omp parallel for schedule(static) reduction(+ : dot)
    for (int i = 0; i < N; i++)
        dot += x[i] * y[i];
    printf("team: %d threads, all checked in: %d, atomics: %ld\n", team, hits == team, atomics);
    printf("integer sum: %ld\n", isum);
    printf("dot product: %.1f\n", dot);
    return 0;
}
