/* The wake-up floor: how long a thread asleep in read(2) on an eventfd takes to run after another
 * thread writes the eventfd, as an island's parked vCPU thread sleeps until a migration wakes it.
 * Between wake-ups both threads sleep GAP microseconds, so that the machine's cores go idle as they
 * do between migrations (waking an idle core is what costs, on a nested VM most of all; a tight
 * ping-pong never lets them idle and measures far less). Prints the median and p99, in
 * microseconds. Run natively on the host: scripts/bench-migration uses it as half of the
 * migration floor.
 *   wakeping [ROUNDS [GAP_US]]     defaults: 2000 rounds, 500 us */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

static int ping, pong;
static long rounds;
static _Atomic uint64_t woke_ns;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void pass(int fd)
{
	uint64_t one = 1;
	if (write(fd, &one, sizeof one) != sizeof one) {
		perror("wakeping: write");
		exit(1);
	}
}

static void take(int fd)
{
	uint64_t v;
	if (read(fd, &v, sizeof v) != sizeof v) {
		perror("wakeping: read");
		exit(1);
	}
}

static void *sleeper(void *arg)
{
	(void)arg;
	for (long i = 0; i < rounds; i++) {
		take(ping);
		atomic_store(&woke_ns, now_ns());
		pass(pong);
	}
	return NULL;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	rounds = argc > 1 ? atol(argv[1]) : 2000;
	long gap_us = argc > 2 ? atol(argv[2]) : 500;
	if (rounds < 1 || gap_us < 0) {
		fputs("usage: wakeping [ROUNDS [GAP_US]]\n", stderr);
		return 2;
	}
	ping = eventfd(0, 0);
	pong = eventfd(0, 0);
	double *wake = malloc(sizeof(double) * (size_t)rounds);
	if (ping < 0 || pong < 0 || !wake) {
		perror("wakeping");
		return 1;
	}
	pthread_t t;
	pthread_create(&t, NULL, sleeper, NULL);
	struct timespec gap = {gap_us / 1000000, (gap_us % 1000000) * 1000};
	for (long i = 0; i < rounds; i++) {
		nanosleep(&gap, NULL);
		uint64_t t0 = now_ns();
		pass(ping);
		take(pong);
		wake[i] = (double)(atomic_load(&woke_ns) - t0) / 1000;
	}
	pthread_join(t, NULL);
	qsort(wake, (size_t)rounds, sizeof *wake, cmp);
	printf("wake-up of a sleeping thread: median %.1f us, p99 %.1f us (%ld wake-ups, %ld us apart)\n",
	       wake[rounds / 2], wake[(rounds * 99) / 100], rounds, gap_us);
	return 0;
}
