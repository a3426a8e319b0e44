/*
 * ompplaces: an ordinary OpenMP program (no Popcorn calls) that says where its threads ran.
 * With OMP_PLACES="{0},{1},{2},{3}" OMP_PROC_BIND=true, libgomp binds thread i to place i with
 * sched_setaffinity / pthread_setaffinity_np, which under popvmm moves it to island i.
 *
 * stdout: a "result: ..." line (the same wherever it runs), then "places: N" and one
 * "thread I: cpu C, place P" line per thread (where it ran: the tests check these only under
 * popvmm).
 */
#define _GNU_SOURCE
#include <omp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

#define N (1 << 20)

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 3;
	static double x[N], y[N];
	int cpu[64], place[64], team = 0;
	for (int i = 0; i < 64; i++)
		cpu[i] = place[i] = -1;
	double sum = 0;
	long isum = 0;
	for (int r = 0; r < rounds; r++) {
#pragma omp parallel
		{
			int id = omp_get_thread_num();
#pragma omp single
			team = omp_get_num_threads();
			if (id < 64) {
				cpu[id] = sched_getcpu();
				place[id] = omp_get_place_num();
			}
#pragma omp for schedule(static)
			for (int i = 0; i < N; i++) {
				x[i] = (double)(i % 1000) * 0.001 + r;
				y[i] = (double)(i % 777) * 0.002;
			}
#pragma omp for schedule(static) reduction(+ : sum, isum)
			for (int i = 0; i < N; i++) {
				sum += x[i] * y[i];
				isum += (long)(i % 13) * (r + 1);
			}
		}
	}
	printf("result: team %d, rounds %d, dot %.6f, isum %ld\n", team, rounds, sum, isum);
	printf("places: %d\n", omp_get_num_places());
	for (int i = 0; i < team && i < 64; i++)
		printf("thread %d: cpu %d, place %d\n", i, cpu[i], place[i]);
	return 0;
}
