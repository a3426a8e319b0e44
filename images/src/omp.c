/* OpenMP: a parallel reduction and a parallel for with a critical section. */
#include <omp.h>
#include <stdio.h>

int main(void) {
    long n = 20000000, sum = 0;
#pragma omp parallel for reduction(+ : sum)
    for (long i = 1; i <= n; i++)
        sum += i % 7;
    double pi = 0;
#pragma omp parallel for reduction(+ : pi)
    for (long i = 0; i < 1000000; i++)
        pi += (i % 2 ? -4.0 : 4.0) / (2.0 * i + 1);
    int hits = 0;
#pragma omp parallel
    {
#pragma omp critical
        hits++;
    }
    printf("sum = %ld\n", sum);
    printf("pi ~ %.6f\n", pi);
    printf("every thread checked in: %d\n", hits == omp_get_max_threads());
    return 0;
}
