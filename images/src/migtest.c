/*
 * migtest: thread migration scenarios whose output does not depend on where they run, so that a
 * run under popvmm (where the threads move between islands) can be compared with a native run
 * (where Popcorn's calls fail with ENOSYS and nothing moves). Every check prints the same line
 * both ways unless something is wrong; the tests count the migrations that really happened from
 * popvmm's --stats-json (messages of type "migrate").
 *
 *   migtest state N          N migrations cycling through migrate() with a callback, the raw call
 *                            with uregs NULL (general registers) and with a register set; TLS,
 *                            thread pointer, stack and heap after each
 *   migtest fpstate N        the same with xmm0-15 and x87 values live across the raw call
 *   migtest fpctl N          the rounding mode, x87 control word and MXCSR across N migrations
 *   migtest vector N         a thread runs -O2 vectorised SSE and x87 loops while another moves it
 *                            N times with sched_setaffinity: every chunk gives the reference result
 *   migtest signals          a blocked pending signal travels and runs its handler once on the
 *                            destination; signals sent while a thread migrates are all handled
 *   migtest spawn T          pthread_create right after the 1st, 2nd and 3rd migration
 *   migtest backwork P R     back-migration, then more work on the same pages (P pages, R rounds)
 *   migtest segv [thread]    a SIGSEGV raised after migrating: main to island 1, or another
 *                            thread to island 0 and then to the last island
 *   migtest noisland         the main thread goes to the last island (no threads there) and works
 *   migtest away             a thread hops between islands 1..N-1, never through the origin
 *   migtest allaway T        every thread, main included, leaves the origin; exit from island 1
 *   migtest mutex T N        T threads x N increments under one mutex, migrating inside and
 *                            outside the critical section: the count is exact
 *   migtest exitrace [remote]  exit_group while a thread migrates back and forth (status 3)
 *   migtest spin             threads on islands 1..N-1 spin; main prints "ready" and waits
 *   migtest affinity         sched_setaffinity of the caller and of another thread moves them
 *   migtest affstorm N       N pthread_setaffinity_np calls in a row on a spinning thread, each to
 *                            the next CPU, without waiting for it to get there: every call must
 *                            succeed although most find the thread between islands
 *   migtest pingpong N       N back-to-back migrations with migrate(), no retry of EBUSY
 *   migtest meet N           N threads meet 20 times at a barrier (no migration at all)
 *
 * The number of islands comes from popcorn_get_node_info; natively (ENOSYS) it is taken as 4,
 * the calls fail, and the program goes on where it is.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fenv.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "popcorn.h"
#include "probes.h"

static int nodes = 4;     /* islands (4 natively) */
static int under_popvmm;  /* the calls work */

static void fail(const char *fmt, ...)
{
	va_list ap;
	fflush(stdout);
	fputs("migtest: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void init_nodes(void)
{
	struct popcorn_node_info info[POPCORN_MAX_NODES];
	int me;
	if (popcorn_get_node_info(&me, info) < 0) {
		if (errno != ENOSYS)
			fail("popcorn_get_node_info: errno %d", errno);
		return;
	}
	under_popvmm = 1;
	nodes = 0;
	for (int i = 0; i < POPCORN_MAX_NODES; i++)
		if (info[i].status == 1)
			nodes = i + 1;
}

static pid_t gettid_(void)
{
	return (pid_t)syscall(SYS_gettid);
}

/* Moves the caller to `nid`: 1 if it moved, 0 if it was there already or the calls are not
 * there (natively). Anything else is an error that ends the program. */
static int go(int nid)
{
	if (under_popvmm && popcorn_getnid() == nid)
		return 0; /* already there (placement put it there) */
	if (migrate(nid, NULL, NULL) < 0) {
		if (errno == ENOSYS && !under_popvmm)
			return 0;
		fail("thread %d: migrate(%d): errno %d", (int)gettid_(), nid, errno);
	}
	int now = popcorn_getnid();
	if (now != nid)
		fail("after migrate(%d): on node %d", nid, now);
	return 1;
}

/* The node the caller is on (0 natively). */
static int here(void)
{
	int n = popcorn_getnid();
	return n < 0 ? 0 : n;
}

static int next_node(int from)
{
	return (from + 1) % nodes;
}

/* ---------------------------------------------------------------------------------------- */
/* state N */

static __thread unsigned long tls_word;
static __thread unsigned char tls_bytes[256];

static unsigned char pat(unsigned seed, size_t i)
{
	return (unsigned char)(seed * 37 + i * 13 + (i >> 8));
}

static void *thread_pointer(void)
{
	void *p;
	__asm__ volatile("mov %%fs:0, %0" : "=r"(p));
	return p;
}

struct cb {
	int ran, wrong_node, want;
};

static void callback(void *p)
{
	struct cb *c = p;
	c->ran++;
	if (popcorn_getnid() != c->want)
		c->wrong_node++;
}

/* state N (fp 0): general registers, register set, callbacks, memory; fpstate N (fp 1): the
 * same with xmm0-15 and x87 live across the call in place of the general register probes. */
static int cmd_state(int n, int fp)
{
	unsigned char stack[16384];
	size_t heap_len = 256 << 10;
	unsigned char *heap = malloc(heap_len);
	long nr = popcorn_syscall_base() + POPCORN_SYS_MIGRATE;
	void *tp = thread_pointer();
	unsigned long *tls_at = &tls_word;
	int bad_gprs = 0, bad_uregs = 0, bad_xmm = 0, bad_x87 = 0, bad_mem = 0, moved = 0;
	struct cb cb = {0};
	char what[256];
	printf("state: %d migrations asked\n", n);
	for (int k = 0; k < n; k++) {
		unsigned seed = (unsigned)k * 7 + 1;
		tls_word = 0xabcd000000000000UL + seed;
		for (size_t i = 0; i < sizeof tls_bytes; i++)
			tls_bytes[i] = pat(seed, i);
		for (size_t i = 0; i < sizeof stack; i++)
			stack[i] = pat(seed + 1, i);
		for (size_t i = 0; i < heap_len; i++)
			heap[i] = pat(seed + 2, i);
		int to = next_node(here()), bad = 0;
		long r = 0;
		int kind = k % 3 == 0 ? 0 : (fp ? 2 : 0) + k % 3;
		switch (kind) {
		case 0: {
			int before = cb.ran;
			cb.want = to;
			if (migrate(to, callback, &cb) == 0)
				moved++;
			else if (errno != ENOSYS || under_popvmm)
				fail("migrate(%d): errno %d", to, errno);
			if (under_popvmm && cb.ran != before + 1)
				cb.wrong_node++;
			if (!under_popvmm && cb.ran != before)
				cb.wrong_node++;
			break;
		}
		case 1:
			r = check_gprs_null(nr, to, &bad, what, sizeof what);
			bad_gprs += bad;
			break;
		case 2:
			r = check_gprs_uregs(nr, to, &bad, what, sizeof what);
			bad_uregs += bad;
			break;
		case 3:
			r = check_xmm(nr, to, seed, &bad);
			bad_xmm += bad;
			break;
		case 4:
			r = check_x87(nr, to, seed, &bad);
			bad_x87 += bad;
			break;
		}
		if (kind) {
			if (r == 0)
				moved++;
			else if (!(r == -ENOSYS && !under_popvmm))
				fail("migration %d (kind %d) to node %d: %ld", k + 1, kind, to, r);
			if (r == 0 && popcorn_getnid() != to)
				fail("migration %d: on node %d, not %d", k + 1, popcorn_getnid(), to);
		}
		int mem = 0;
		if (tls_word != 0xabcd000000000000UL + seed || &tls_word != tls_at)
			mem = 1;
		for (size_t i = 0; i < sizeof tls_bytes && !mem; i++)
			mem |= tls_bytes[i] != pat(seed, i);
		for (size_t i = 0; i < sizeof stack && !mem; i++)
			mem |= stack[i] != pat(seed + 1, i);
		for (size_t i = 0; i < heap_len && !mem; i++)
			mem |= heap[i] != pat(seed + 2, i);
		mem |= thread_pointer() != tp;
		bad_mem += mem;
	}
	if (under_popvmm && moved != n)
		fail("%d of %d migrations happened", moved, n);
	printf("migrate() callbacks: once per migration, on the destination: %s\n",
	       cb.wrong_node ? "NO" : "yes");
	if (fp) {
		printf("xmm0-15 live across popcorn_migrate(nid, NULL): %s\n",
		       bad_xmm ? "CHANGED" : "intact");
		printf("x87 st0-7 live across popcorn_migrate(nid, NULL): %s\n",
		       bad_x87 ? "CHANGED" : "intact");
	} else {
		printf("general registers across popcorn_migrate(nid, NULL): %s\n",
		       bad_gprs ? "CHANGED" : "intact");
		printf("general registers and flags from the register set: %s\n",
		       bad_uregs ? "WRONG" : "as set");
	}
	printf("TLS, thread pointer, stack and heap: %s\n", bad_mem ? "CHANGED" : "intact");
	free(heap);
	return bad_gprs || bad_uregs || bad_xmm || bad_x87 || bad_mem || cb.wrong_node;
}

/* ---------------------------------------------------------------------------------------- */
/* fpctl N */

static int cmd_fpctl(int n)
{
	static const int modes[4] = {FE_UPWARD, FE_DOWNWARD, FE_TOWARDZERO, FE_TONEAREST};
	int bad = 0;
	for (int k = 0; k < n; k++) {
		int mode = modes[k % 4];
		fesetround(mode);
		unsigned short fcw, fcw2;
		unsigned mxcsr, mxcsr2;
		__asm__ volatile("fnstcw %0" : "=m"(fcw));
		__asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
		go(next_node(here()));
		__asm__ volatile("fnstcw %0" : "=m"(fcw2));
		__asm__ volatile("stmxcsr %0" : "=m"(mxcsr2));
		if (fegetround() != mode || fcw != fcw2 || (mxcsr & 0xffc0) != (mxcsr2 & 0xffc0))
			bad++;
	}
	fesetround(FE_TONEAREST);
	printf("fpctl: rounding mode, x87 control word and MXCSR across %d migrations: %s\n", n,
	       bad ? "CHANGED" : "intact");
	return bad != 0;
}

/* ---------------------------------------------------------------------------------------- */
/* vector N: live SSE and x87 registers while another thread moves this one. */

#define VN 4096
static float va[VN], vb[VN], vc[VN];
static unsigned vi[VN], vj[VN];

/* One chunk of -O2 vectorised work: float a*x+y passes (the factors live in xmm registers for
 * the whole loop), an unsigned reduction (vector accumulators), and an x87 long double
 * recurrence (values on the x87 stack). Returns a hash of the results. */
__attribute__((noinline)) static unsigned long chunk(int passes)
{
	for (int i = 0; i < VN; i++) {
		va[i] = (float)(i % 97) * 0.25f;
		vb[i] = (float)(i % 89) * 0.5f;
		vi[i] = (unsigned)i * 2654435761u;
		vj[i] = (unsigned)i ^ 0x5bd1e995u;
	}
	unsigned acc = 0;
	for (int p = 0; p < passes; p++) {
		float k = 0.5f + (float)p * 0.001f;
		for (int i = 0; i < VN; i++)
			vc[i] = va[i] * k + vb[i];
		for (int i = 0; i < VN; i++)
			va[i] = vc[i] * 0.75f - vb[i] * 0.125f;
		for (int i = 0; i < VN; i++)
			acc += vi[i] * vj[i] + (unsigned)p;
	}
	long double x = 1.0L, y = 0.5L;
	for (int p = 0; p < passes * 64; p++) {
		x = x * 1.0000001L + y;
		y = y * 0.9999999L - x * 1e-9L;
	}
	unsigned long h = acc;
	for (int i = 0; i < VN; i++) {
		unsigned u;
		memcpy(&u, &va[i], 4);
		h = h * 1099511628211UL ^ u;
	}
	unsigned char xb[10];
	memcpy(xb, &x, 10);
	for (int i = 0; i < 10; i++)
		h = h * 1099511628211UL ^ xb[i];
	memcpy(xb, &y, 10);
	for (int i = 0; i < 10; i++)
		h = h * 1099511628211UL ^ xb[i];
	return h;
}

struct vec {
	atomic_int tid_ready, done;
	pid_t tid;
	unsigned long reference;
	int chunks, wrong;
};

static void *vec_worker(void *p)
{
	struct vec *v = p;
	v->tid = gettid_();
	atomic_store(&v->tid_ready, 1);
	while (!atomic_load(&v->done)) {
		if (chunk(40) != v->reference)
			v->wrong++;
		v->chunks++;
	}
	/* One more after the last move. */
	if (chunk(40) != v->reference)
		v->wrong++;
	return NULL;
}

static int cmd_vector(int n)
{
	struct vec v = {0};
	v.reference = chunk(40);
	pthread_t t;
	pthread_create(&t, NULL, vec_worker, &v);
	while (!atomic_load(&v.tid_ready))
		sched_yield();
	for (int k = 0; k < n; k++) {
		cpu_set_t set;
		CPU_ZERO(&set);
		/* Every island in turn, from island 1 (natively CPUs 0-3: those the machine lacks
		 * fail, which changes nothing). */
		CPU_SET((k + 1) % nodes, &set);
		sched_setaffinity(v.tid, sizeof set, &set);
		struct timespec ts = {0, 3 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	atomic_store(&v.done, 1);
	pthread_join(t, NULL);
	printf("vector: a thread moved %d times while computing: every chunk gave the reference "
	       "result: %s\n",
	       n, v.wrong ? "NO" : "yes");
	return v.wrong != 0;
}

/* ---------------------------------------------------------------------------------------- */
/* signals */

static atomic_int usr1_handled, usr2_handled, usr1_wrong_node;
static volatile int usr1_want_node = -1;

static void on_usr1(int sig)
{
	(void)sig;
	if (usr1_want_node >= 0 && here() != usr1_want_node)
		atomic_fetch_add(&usr1_wrong_node, 1);
	atomic_fetch_add(&usr1_handled, 1);
}

static void on_usr2(int sig)
{
	(void)sig;
	atomic_fetch_add(&usr2_handled, 1);
}

struct sigs {
	pthread_barrier_t b;
	atomic_int stop, hops;
	int handled_before, handled_after_move, handled_after, moved;
};

static void *blocked_thread(void *p)
{
	struct sigs *s = p;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	pthread_barrier_wait(&s->b); /* blocked */
	pthread_barrier_wait(&s->b); /* main sent SIGUSR1 */
	raise(SIGUSR2);              /* one more, pending too */
	s->handled_before = atomic_load(&usr1_handled) + atomic_load(&usr2_handled);
	int to = next_node(here());
	s->moved = go(to);
	s->handled_after_move = atomic_load(&usr1_handled) + atomic_load(&usr2_handled);
	usr1_want_node = here();
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	s->handled_after = atomic_load(&usr1_handled) * 10 + atomic_load(&usr2_handled);
	return NULL;
}

static void *bouncing_thread(void *p)
{
	struct sigs *s = p;
	int home = here();
	pthread_barrier_wait(&s->b);
	while (!atomic_load(&s->stop)) {
		int to = here() == home ? next_node(home) : home;
		go(to);
		atomic_fetch_add(&s->hops, 1);
	}
	return NULL;
}

static int cmd_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = on_usr2;
	sigaction(SIGUSR2, &sa, NULL);

	/* (a) Pending blocked signals travel with the thread. */
	struct sigs s;
	memset(&s, 0, sizeof s);
	pthread_barrier_init(&s.b, NULL, 2);
	pthread_t t;
	pthread_create(&t, NULL, blocked_thread, &s);
	pthread_barrier_wait(&s.b);
	pthread_kill(t, SIGUSR1);
	pthread_barrier_wait(&s.b);
	pthread_join(t, NULL);
	printf("SIGUSR1 (pthread_kill) and SIGUSR2 (raise) blocked: not handled before the "
	       "migration: %s, nor after it while blocked: %s\n",
	       s.handled_before == 0 ? "yes" : "no", s.handled_after_move == 0 ? "yes" : "no");
	printf("unblocked on the destination: SIGUSR1 handled %d time(s), SIGUSR2 %d, on the "
	       "thread's node: %s\n",
	       s.handled_after / 10, s.handled_after % 10,
	       atomic_load(&usr1_wrong_node) ? "no" : "yes");

	int a_ok = s.handled_before == 0 && s.handled_after_move == 0 && s.handled_after == 11 &&
		   !atomic_load(&usr1_wrong_node);

	/* (b) Signals sent to a thread while it migrates back and forth: each handled once. */
	usr1_want_node = -1;
	atomic_store(&usr1_handled, 0);
	memset(&s, 0, sizeof s);
	pthread_barrier_init(&s.b, NULL, 2);
	pthread_create(&t, NULL, bouncing_thread, &s);
	pthread_barrier_wait(&s.b);
	const int sent = 50;
	int lost = 0;
	for (int i = 0; i < sent; i++) {
		pthread_kill(t, SIGUSR1);
		/* Wait for the handler (a signal is not sent again before the last one ran). */
		struct timespec ts = {0, 200 * 1000};
		int waited = 0;
		while (atomic_load(&usr1_handled) < i + 1 && waited < 50000) {
			nanosleep(&ts, NULL);
			waited++;
		}
		if (atomic_load(&usr1_handled) < i + 1) {
			lost = 1;
			break;
		}
	}
	atomic_store(&s.stop, 1);
	pthread_join(t, NULL);
	printf("signals sent to a thread migrating back and forth: %d sent, %d handled%s\n", sent,
	       atomic_load(&usr1_handled), lost ? " (one never arrived)" : "");
	return !(a_ok && atomic_load(&usr1_handled) == sent);
}

/* ---------------------------------------------------------------------------------------- */
/* spawn T */

struct work {
	int idx;
	unsigned long result;
	int node_ok;
};

static unsigned long work_of(int idx)
{
	unsigned long h = (unsigned long)idx + 1;
	for (int i = 0; i < 20000; i++)
		h = h * 6364136223846793005UL + 1442695040888963407UL;
	return h;
}

static void *spawned(void *p)
{
	struct work *w = p;
	unsigned long *buf = malloc(64 * 1024);
	for (int i = 0; i < 8192; i++)
		buf[i] = (unsigned long)i * (unsigned long)(w->idx + 1);
	unsigned long h = work_of(w->idx);
	for (int i = 0; i < 8192; i++)
		h += buf[i];
	/* And a migration of its own. */
	go(next_node(here()));
	for (int i = 0; i < 8192; i++)
		h -= buf[i];
	w->result = h;
	free(buf);
	return NULL;
}

static int cmd_spawn(int threads)
{
	int bad = 0;
	for (int m = 1; m <= 3; m++) {
		go(m % nodes);
		/* Right after arriving. */
		pthread_t *t = calloc((size_t)threads, sizeof *t);
		struct work *w = calloc((size_t)threads, sizeof *w);
		for (int i = 0; i < threads; i++) {
			w[i].idx = i + m * 100;
			if (pthread_create(&t[i], NULL, spawned, &w[i]))
				fail("pthread_create");
		}
		for (int i = 0; i < threads; i++)
			pthread_join(t[i], NULL);
		int ok = 1;
		for (int i = 0; i < threads; i++)
			ok &= w[i].result == work_of(i + m * 100);
		printf("after migration %d: %d threads created at once, each migrated and gave its "
		       "result: %s\n",
		       m, threads, ok ? "yes" : "NO");
		bad |= !ok;
		free(t);
		free(w);
	}
	go(0);
	return bad;
}

/* ---------------------------------------------------------------------------------------- */
/* backwork PAGES ROUNDS */

static int cmd_backwork(int pages, int rounds)
{
	size_t words = (size_t)pages * 512;
	unsigned long *buf = malloc(words * sizeof *buf);
	int home = here(), bad = 0;
	for (size_t i = 0; i < words; i++)
		buf[i] = i;
	for (int r = 0; r < rounds; r++) {
		int away = next_node(home);
		go(away);
		for (size_t i = 0; i < words; i++) {
			if (buf[i] != i + (unsigned long)r * 2)
				bad++;
			buf[i] += 1;
		}
		go(home);
		/* Back home: more work on the same pages. */
		for (size_t i = 0; i < words; i++) {
			if (buf[i] != i + (unsigned long)r * 2 + 1)
				bad++;
			buf[i] += 1;
		}
	}
	unsigned long sum = 0;
	for (size_t i = 0; i < words; i++)
		sum += buf[i];
	printf("backwork: %d pages, %d rounds away and back: sum %lu, mismatches %d\n", pages,
	       rounds, sum, bad);
	free(buf);
	return bad != 0;
}

/* ---------------------------------------------------------------------------------------- */
/* segv [thread] */

/* A bad address the compiler does not see as one. */
static int *volatile bad_address = (int *)16;

static void say(const char *s)
{
	ssize_t r = write(1, s, strlen(s));
	(void)r;
}

static void *segv_thread(void *p)
{
	(void)p;
	/* Through the origin to the last island (the thread starts where placement put it). */
	go(0);
	go(nodes - 1);
	say("thread: migrated, now faulting\n");
	*bad_address = 1;
	return NULL;
}

static int cmd_segv(int in_thread)
{
	if (in_thread) {
		pthread_t t;
		pthread_create(&t, NULL, segv_thread, NULL);
		pthread_join(t, NULL);
		say("not reached\n");
		return 0;
	}
	go(1 % nodes);
	say("main: migrated, now faulting\n");
	*bad_address = 1;
	say("not reached\n");
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* noisland */

static void *helper_thread(void *p)
{
	unsigned long *x = p;
	*x = work_of(7);
	return NULL;
}

static int cmd_noisland(void)
{
	int last = nodes - 1;
	go(last);
	/* Work there: memory, a file, a thread created from there. */
	char *m = malloc(1 << 20);
	memset(m, 0x5a, 1 << 20);
	unsigned long s = 0;
	for (int i = 0; i < 1 << 20; i += 4096)
		s += (unsigned char)m[i];
	FILE *f = fopen("data/poem.txt", "r");
	int lines = 0;
	if (f) {
		char line[256];
		while (fgets(line, sizeof line, f))
			lines++;
		fclose(f);
	}
	unsigned long x = 0;
	pthread_t t;
	pthread_create(&t, NULL, helper_thread, &x);
	pthread_join(t, NULL);
	printf("noisland: on the last island: memory sum %lu, file lines %d, thread result %s\n", s,
	       lines, x == work_of(7) ? "ok" : "WRONG");
	free(m);
	go(0);
	printf("noisland: back\n");
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* away: island to island, never through the origin */

static void *away_thread(void *p)
{
	int *visits = p;
	unsigned long local[512];
	for (int i = 0; i < 512; i++)
		local[i] = (unsigned long)i * 3;
	int n = nodes > 2 ? nodes - 1 : 1;
	/* Islands 1..N-1 in turn, three times: never 0. */
	for (int k = 0; k < 3 * n; k++) {
		int to = 1 + (k + 1) % n;
		if (nodes > 2 && to != here())
			*visits += go(to);
		for (int i = 0; i < 512; i++)
			local[i] += 1;
	}
	for (int i = 0; i < 512; i++)
		if (local[i] != (unsigned long)i * 3 + (unsigned long)(3 * n))
			*visits = -1000;
	return NULL;
}

static int cmd_away(void)
{
	int visits = 0;
	pthread_t t;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_create(&t, &attr, away_thread, &visits);
	pthread_join(t, NULL);
	printf("away: a thread hopped between islands 1..N-1 without the origin: %s\n",
	       visits >= 0 ? "ok" : "WRONG");
	return visits < 0;
}

/* ---------------------------------------------------------------------------------------- */
/* allaway T: every thread leaves the origin */

struct allaway {
	pthread_mutex_t m;
	pthread_barrier_t b;
	long counter;
	int threads, on_origin;
};

static void *allaway_thread(void *p)
{
	struct allaway *a = p;
	/* Somewhere other than the origin. */
	int idx;
	pthread_mutex_lock(&a->m);
	idx = (int)a->counter++;
	pthread_mutex_unlock(&a->m);
	if (nodes > 1)
		go(1 + idx % (nodes - 1));
	pthread_barrier_wait(&a->b);
	/* Everybody is away now: work together. */
	for (int i = 0; i < 1000; i++) {
		pthread_mutex_lock(&a->m);
		a->counter++;
		pthread_mutex_unlock(&a->m);
	}
	if (under_popvmm && here() == 0)
		a->on_origin++;
	pthread_barrier_wait(&a->b);
	return NULL;
}

static int cmd_allaway(int threads)
{
	struct allaway a;
	memset(&a, 0, sizeof a);
	pthread_mutex_init(&a.m, NULL);
	pthread_barrier_init(&a.b, NULL, (unsigned)threads + 1);
	a.threads = threads;
	go(1 % nodes);
	pthread_t *t = calloc((size_t)threads, sizeof *t);
	for (int i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, allaway_thread, &a);
	pthread_barrier_wait(&a.b);
	pthread_barrier_wait(&a.b);
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	printf("allaway: %d threads and main away from the origin: counter %ld (expected %ld)%s\n",
	       threads, a.counter, (long)threads * 1001, a.on_origin ? ", but some on the origin" : "");
	free(t);
	/* main returns on island 1: exit_group from there. */
	return a.counter == (long)threads * 1001 ? 0 : 1;
}

/* ---------------------------------------------------------------------------------------- */
/* mutex T N */

struct mtx {
	pthread_mutex_t m;
	long counter;
	int iters;
	atomic_int inside, overlap;
};

static void *mutex_thread(void *p)
{
	struct mtx *x = p;
	for (int i = 0; i < x->iters; i++) {
		pthread_mutex_lock(&x->m);
		if (atomic_fetch_add(&x->inside, 1) != 0)
			atomic_fetch_add(&x->overlap, 1);
		long c = x->counter;
		if (i % 25 == 0)
			go(next_node(here())); /* holding the mutex */
		x->counter = c + 1;
		atomic_fetch_sub(&x->inside, 1);
		pthread_mutex_unlock(&x->m);
		if (i % 40 == 7)
			go(next_node(here())); /* outside it */
	}
	return NULL;
}

static int cmd_mutex(int threads, int iters)
{
	struct mtx x;
	memset(&x, 0, sizeof x);
	pthread_mutex_init(&x.m, NULL);
	x.iters = iters;
	pthread_t *t = calloc((size_t)threads, sizeof *t);
	for (int i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, mutex_thread, &x);
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	printf("mutex: %d threads x %d increments, migrating inside and outside the lock: %ld "
	       "(expected %ld), overlaps %d\n",
	       threads, iters, x.counter, (long)threads * iters, atomic_load(&x.overlap));
	free(t);
	return x.counter != (long)threads * iters;
}

/* ---------------------------------------------------------------------------------------- */
/* exitrace [remote] */

static atomic_int race_hops;

static void *racer(void *p)
{
	(void)p;
	int home = here();
	for (;;) {
		go(here() == home ? next_node(home) : home);
		atomic_fetch_add(&race_hops, 1);
		if (!under_popvmm)
			sched_yield();
	}
	return NULL;
}

static void *remote_exit(void *p)
{
	(void)p;
	go(nodes > 2 ? 2 : 1 % nodes);
	while (under_popvmm && atomic_load(&race_hops) < 20)
		sched_yield();
	say("exitrace: exit_group from another island\n");
	_exit(3);
}

static int cmd_exitrace(int remote)
{
	pthread_t t[2];
	pthread_create(&t[0], NULL, racer, NULL);
	pthread_create(&t[1], NULL, racer, NULL);
	if (remote) {
		pthread_t r;
		pthread_create(&r, NULL, remote_exit, NULL);
		pthread_join(r, NULL);
		return 1;
	}
	while (under_popvmm && atomic_load(&race_hops) < 20)
		sched_yield();
	say("exitrace: exit_group while threads migrate\n");
	exit(3);
}

/* ---------------------------------------------------------------------------------------- */
/* spin: threads on islands 1..N-1 spin; main says "ready" and waits */

static atomic_int spinners_ready;

static void *spinner(void *p)
{
	int to = (int)(intptr_t)p;
	go(to);
	atomic_fetch_add(&spinners_ready, 1);
	volatile unsigned long x = 0;
	for (;;)
		x++;
	return NULL;
}

static int cmd_spin(void)
{
	int n = nodes > 1 ? nodes - 1 : 1;
	for (int i = 0; i < n; i++) {
		pthread_t t;
		pthread_create(&t, NULL, spinner, (void *)(intptr_t)(1 + i % (nodes > 1 ? nodes - 1 : 1)));
	}
	while (atomic_load(&spinners_ready) < n)
		sched_yield();
	go(1 % nodes);
	say("ready\n");
	for (;;)
		pause();
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* affinity */

struct aff {
	pthread_barrier_t b;
	int cpu_after;
};

static void *aff_thread(void *p)
{
	struct aff *a = p;
	pthread_barrier_wait(&a->b); /* main sets our affinity */
	pthread_barrier_wait(&a->b);
	a->cpu_after = sched_getcpu();
	return NULL;
}

static int cmd_affinity(void)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(1, &set);
	int r = sched_setaffinity(0, sizeof set, &set);
	printf("sched_setaffinity(0, {1}): %d, getcpu %d\n", r, sched_getcpu());
	cpu_set_t got;
	CPU_ZERO(&got);
	sched_getaffinity(0, sizeof got, &got);
	printf("sched_getaffinity: %d CPU(s), CPU 1 in it: %s\n", CPU_COUNT(&got),
	       CPU_ISSET(1, &got) ? "yes" : "no");
	CPU_ZERO(&set);
	CPU_SET(0, &set);
	r = sched_setaffinity(0, sizeof set, &set);
	printf("sched_setaffinity(0, {0}): %d, getcpu %d\n", r, sched_getcpu());
	struct aff a = {.cpu_after = -1};
	pthread_barrier_init(&a.b, NULL, 2);
	pthread_t t;
	pthread_create(&t, NULL, aff_thread, &a);
	pthread_barrier_wait(&a.b);
	CPU_ZERO(&set);
	CPU_SET(1, &set);
	r = pthread_setaffinity_np(t, sizeof set, &set);
	pthread_barrier_wait(&a.b);
	pthread_join(t, NULL);
	printf("pthread_setaffinity_np(another thread, {1}): %d, its getcpu then %d\n", r,
	       a.cpu_after);
	return 0;
}

/* affstorm N */

static volatile int storm_stop;

static void *storm_thread(void *p)
{
	(void)p;
	while (!storm_stop)
		; /* spins wherever it is put */
	return NULL;
}

static int cmd_affstorm(int n)
{
	pthread_t t;
	pthread_create(&t, NULL, storm_thread, NULL);
	int failed = 0, first_error = 0;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN); /* the islands under popvmm */
	if (cpus < 1)
		cpus = 1;
	for (int i = 0; i < n; i++) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(i % cpus, &set);
		int r = pthread_setaffinity_np(t, sizeof set, &set);
		if (r != 0 && !failed++)
			first_error = r;
	}
	storm_stop = 1;
	pthread_join(t, NULL);
	printf("affstorm: %d calls, %d failed (first error %d)\n", n, failed, first_error);
	return failed != 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Reproducers of popvmm problems (see tests/tests/migration.rs, the #[ignore]d tests). */

/* pingpong N: N back-to-back migrations 0 -> 1 -> 0 ... with migrate(), no retry. */
static int cmd_pingpong(int n)
{
	for (int i = 0; i < n; i++) {
		int to = (i + 1) % 2;
		if (migrate(to, NULL, NULL) < 0) {
			printf("pingpong: migration %d, node %d -> %d: errno %d\n", i + 1, here(), to,
			       errno);
			return 1;
		}
	}
	printf("pingpong: %d migrations: ok\n", n);
	return 0;
}

static pthread_barrier_t meet_barrier;

static void *meeter(void *p)
{
	(void)p;
	for (int i = 0; i < 20; i++)
		pthread_barrier_wait(&meet_barrier);
	return NULL;
}

/* meet N: N threads meet 20 times at a barrier (no migration). */
static int cmd_meet(int n)
{
	pthread_t t[256];
	if (n < 1 || n > 256)
		fail("meet: 1 to 256 threads");
	pthread_barrier_init(&meet_barrier, NULL, (unsigned)n);
	for (int i = 0; i < n; i++)
		pthread_create(&t[i], NULL, meeter, NULL);
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	printf("meet: %d threads met 20 times\n", n);
	return 0;
}

/* ---------------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	init_nodes();
	if (argc < 2)
		fail("usage: see the comment at the top of images/src/migtest.c");
	const char *c = argv[1];
	int a1 = argc > 2 ? atoi(argv[2]) : 0, a2 = argc > 3 ? atoi(argv[3]) : 0;
	if (!strcmp(c, "state"))
		return cmd_state(a1 ? a1 : 1, 0);
	if (!strcmp(c, "fpstate"))
		return cmd_state(a1 ? a1 : 1, 1);
	if (!strcmp(c, "fpctl"))
		return cmd_fpctl(a1 ? a1 : 1);
	if (!strcmp(c, "vector"))
		return cmd_vector(a1 ? a1 : 10);
	if (!strcmp(c, "signals"))
		return cmd_signals();
	if (!strcmp(c, "spawn"))
		return cmd_spawn(a1 ? a1 : 4);
	if (!strcmp(c, "backwork"))
		return cmd_backwork(a1 ? a1 : 64, a2 ? a2 : 4);
	if (!strcmp(c, "segv"))
		return cmd_segv(argc > 2 && !strcmp(argv[2], "thread"));
	if (!strcmp(c, "noisland"))
		return cmd_noisland();
	if (!strcmp(c, "away"))
		return cmd_away();
	if (!strcmp(c, "allaway"))
		return cmd_allaway(a1 ? a1 : 6);
	if (!strcmp(c, "mutex"))
		return cmd_mutex(a1 ? a1 : 4, a2 ? a2 : 200);
	if (!strcmp(c, "exitrace"))
		return cmd_exitrace(argc > 2 && !strcmp(argv[2], "remote"));
	if (!strcmp(c, "spin"))
		return cmd_spin();
	if (!strcmp(c, "affinity"))
		return cmd_affinity();
	if (!strcmp(c, "affstorm"))
		return cmd_affstorm(a1 ? a1 : 200);
	if (!strcmp(c, "pingpong"))
		return cmd_pingpong(a1 ? a1 : 1000);
	if (!strcmp(c, "meet"))
		return cmd_meet(a1 ? a1 : 18);
	fail("unknown subcommand %s", c);
	return 2;
}
