/*
 * popcorn-migrate: the guest-side helper for thread migration under popvmm (a static program
 * linked with libpopcorn).
 *
 *   popcorn-migrate nodes                what popcorn_get_node_info says, from node 0 and node 1
 *   popcorn-migrate status               popcorn_get_status, a proposal, check_migrate
 *   popcorn-migrate basic                to another node and back: general registers (uregs NULL
 *                                        and from a register set), xmm0-15, x87, rounding mode,
 *                                        TLS, stack and heap survive
 *   popcorn-migrate mt THREADS ROUNDS    every thread migrates back and forth between barriers;
 *                                        shared and private data checked
 *   popcorn-migrate tour                 one thread visits every island in turn and comes back
 *                                        (Popcorn's nodes 0-31 with migrate(), islands 32-63
 *                                        with CPU affinity: Popcorn's calls stop at 32 nodes)
 *   popcorn-migrate errors               the calls' errors for bad input, then a migration
 *   popcorn-migrate bench N              migration latency measured in the guest (one way and
 *                                        round trip, median and p99, microseconds)
 *
 * Output is deterministic (no addresses, no timings) except for bench. Exit status 0 when every
 * check passed, 1 otherwise (with the reason on stderr). Natively the calls fail with ENOSYS:
 * the subcommands say so and exit 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fenv.h>
#include <pthread.h>
#include <sched.h>
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

static void die(const char *fmt, ...)
{
	va_list ap;
	fflush(stdout);
	fputs("popcorn-migrate: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static const char *errname(int e)
{
	static __thread char buf[32];
	switch (e) {
	case 0: return "ok";
	case ENOSYS: return "ENOSYS";
	case EINVAL: return "EINVAL";
	case EBUSY: return "EBUSY";
	case EAGAIN: return "EAGAIN";
	case ESRCH: return "ESRCH";
	case EFAULT: return "EFAULT";
	case EPERM: return "EPERM";
	}
	snprintf(buf, sizeof buf, "errno %d", e);
	return buf;
}

static int cpu(void)
{
	unsigned c = 0xffffffff;
	syscall(SYS_getcpu, &c, NULL, NULL);
	return (int)c;
}

static pid_t gettid_(void)
{
	return (pid_t)syscall(SYS_gettid);
}

/* The number of nodes online (they are 0..n-1) and the caller's node; dies natively. */
static int online_nodes(int *me)
{
	struct popcorn_node_info info[POPCORN_MAX_NODES];
	int my = -1, n = 0;
	if (popcorn_get_node_info(&my, info) < 0)
		die("popcorn_get_node_info: %s (not under popvmm, or the wrong --popcorn-abi?)",
		    errname(errno));
	for (int i = 0; i < POPCORN_MAX_NODES; i++)
		if (info[i].status == 1)
			n = i + 1;
	if (me)
		*me = my;
	return n;
}

/* migrate() to `nid`, checked: popcorn_getnid and getcpu say `nid` afterwards. */
static void hop(int nid)
{
	if (migrate(nid, NULL, NULL) < 0)
		die("migrate to node %d: %s", nid, errname(errno));
	int now = popcorn_getnid(), c = cpu();
	if (now != nid || c != nid)
		die("after migrate(%d): popcorn_getnid %d, getcpu %d", nid, now, c);
}

/* ---------------------------------------------------------------------------------------- */

static int cmd_nodes(void)
{
	struct popcorn_node_info info[POPCORN_MAX_NODES];
	int me = -1;
	if (popcorn_get_node_info(&me, info) < 0)
		die("popcorn_get_node_info: %s (not under popvmm?)", errname(errno));
	int n = 0;
	for (int i = 0; i < POPCORN_MAX_NODES; i++)
		if (info[i].status == 1)
			n = i + 1;
	printf("nodes: %d online, this thread on node %d\n", n, me);
	for (int i = 0; i < n; i++)
		printf("node %d: status %u, arch %d, distance %d\n", i, info[i].status, info[i].arch,
		       info[i].distance);
	int odd = 0;
	for (int i = n; i < POPCORN_MAX_NODES; i++)
		if (info[i].status != 0 || info[i].arch != -1 || info[i].distance != -1) {
			printf("node %d: unexpected status %u, arch %d, distance %d\n", i,
			       info[i].status, info[i].arch, info[i].distance);
			odd = 1;
		}
	if (n < POPCORN_MAX_NODES)
		printf("nodes %d-%d: offline (status 0, arch -1, distance -1)\n", n,
		       POPCORN_MAX_NODES - 1);
	if (n > 1) {
		int there = me == 1 ? 0 : 1;
		hop(there);
		int me2 = -1;
		if (popcorn_get_node_info(&me2, info) < 0)
			die("popcorn_get_node_info on node %d: %s", there, errname(errno));
		printf("from node %d: my_nid %d, distances", there, me2);
		for (int i = 0; i < n; i++)
			printf(" %d", info[i].distance);
		printf("\n");
		hop(me);
	}
	return odd;
}

static void print_status(void)
{
	struct popcorn_thread_status st;
	if (popcorn_get_status(&st) < 0)
		die("popcorn_get_status: %s (not under popvmm?)", errname(errno));
	printf("status: current_nid %d, proposed_nid %d, peer_nid %d, peer_pid ", st.current_nid,
	       st.proposed_nid, st.peer_nid);
	if (st.peer_pid != 0 && st.peer_pid == getpid())
		printf("getpid()\n");
	else
		printf("%d\n", (int)st.peer_pid);
}

static void note_node(void *arg)
{
	*(int *)arg = popcorn_getnid();
}

struct proposee {
	pthread_barrier_t proposed, moved;
	pid_t tid;
	int result, nid;
};

static void *proposee_main(void *p)
{
	struct proposee *s = p;
	s->tid = gettid_();
	pthread_barrier_wait(&s->proposed); /* tid published */
	pthread_barrier_wait(&s->proposed); /* proposal made */
	s->result = check_migrate(NULL, NULL);
	s->nid = popcorn_getnid();
	pthread_barrier_wait(&s->moved);
	return NULL;
}

static int cmd_status(void)
{
	int me, n = online_nodes(&me);
	print_status();
	if (n < 2) {
		printf("status: one node, nothing to propose\n");
		return 0;
	}
	int there = me == 1 ? 0 : 1;
	int r = check_migrate(NULL, NULL);
	printf("check_migrate with nothing proposed: %d\n", r);
	r = popcorn_propose_migration(0, there);
	printf("popcorn_propose_migration(0, %d): %s\n", there, r ? errname(errno) : "ok");
	print_status();
	int ran_on = -1;
	r = check_migrate(note_node, &ran_on);
	if (r < 0)
		die("check_migrate: %s", errname(errno));
	printf("check_migrate: %d, now on node %d, callback ran on node %d\n", r, popcorn_getnid(),
	       ran_on);
	print_status();
	hop(me);
	printf("migrate(%d): ok\n", me);
	print_status();
	/* A proposal for another thread, followed by that thread. */
	struct proposee s = {.result = -2, .nid = -2};
	pthread_t t;
	pthread_barrier_init(&s.proposed, NULL, 2);
	pthread_barrier_init(&s.moved, NULL, 2);
	pthread_create(&t, NULL, proposee_main, &s);
	pthread_barrier_wait(&s.proposed);
	int target = n - 1;
	r = popcorn_propose_migration(s.tid, target);
	printf("popcorn_propose_migration(another thread, %d): %s\n", target,
	       r ? errname(errno) : "ok");
	pthread_barrier_wait(&s.proposed);
	pthread_barrier_wait(&s.moved);
	pthread_join(t, NULL);
	printf("that thread's check_migrate: %d, now on node %d\n", s.result, s.nid);
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* basic: the state of one thread across migrations. */

static __thread unsigned long tls_word;
static __thread unsigned char tls_bytes[512];

struct state {
	unsigned long *tls_word_at;
	void *thread_pointer;
	unsigned char *stack;
	size_t stack_len;
	unsigned char *heap;
	size_t heap_len;
	unsigned short fcw;
	unsigned mxcsr;
	int round;
	unsigned seed;
};

static void *thread_pointer(void)
{
	void *p;
	__asm__ volatile("mov %%fs:0, %0" : "=r"(p));
	return p;
}

static unsigned char pat(unsigned seed, size_t i)
{
	return (unsigned char)(seed * 37 + i * 13 + (i >> 8));
}

static void state_fill(struct state *s, unsigned seed)
{
	s->seed = seed;
	tls_word = 0x7715000000000000UL + seed;
	for (size_t i = 0; i < sizeof tls_bytes; i++)
		tls_bytes[i] = pat(seed + 1, i);
	for (size_t i = 0; i < s->stack_len; i++)
		s->stack[i] = pat(seed + 2, i);
	for (size_t i = 0; i < s->heap_len; i++)
		s->heap[i] = pat(seed + 3, i);
	s->tls_word_at = &tls_word;
	s->thread_pointer = thread_pointer();
	fesetround(FE_UPWARD);
	__asm__ volatile("fnstcw %0" : "=m"(s->fcw));
	__asm__ volatile("stmxcsr %0" : "=m"(s->mxcsr));
	s->round = fegetround();
}

#define BAD(x) (strlen(what) + strlen(x) + 2 < len ? (void)strcat(strcat(what, " "), x) : (void)0)

/* What differs in memory from the state recorded by state_fill (empty: nothing). */
static void state_check(const struct state *s, char *what, size_t len)
{
	what[0] = 0;
	if (tls_word != 0x7715000000000000UL + s->seed || &tls_word != s->tls_word_at)
		BAD("tls");
	for (size_t i = 0; i < sizeof tls_bytes; i++)
		if (tls_bytes[i] != pat(s->seed + 1, i)) {
			BAD("tls-bytes");
			break;
		}
	if (thread_pointer() != s->thread_pointer)
		BAD("thread-pointer");
	for (size_t i = 0; i < s->stack_len; i++)
		if (s->stack[i] != pat(s->seed + 2, i)) {
			BAD("stack");
			break;
		}
	for (size_t i = 0; i < s->heap_len; i++)
		if (s->heap[i] != pat(s->seed + 3, i)) {
			BAD("heap");
			break;
		}
}

/* What differs in the FPU control state (rounding mode, x87 control word, MXCSR). */
static void fpctl_check(const struct state *s, char *what, size_t len)
{
	what[0] = 0;
	unsigned short fcw;
	unsigned mxcsr;
	__asm__ volatile("fnstcw %0" : "=m"(fcw));
	__asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
	if (fcw != s->fcw)
		BAD("x87-control-word");
	if ((mxcsr & 0xffc0) != (s->mxcsr & 0xffc0))
		BAD("mxcsr");
	if (fegetround() != s->round)
		BAD("rounding-mode");
	/* Rounding upwards: 1/3 rounds up in double and long double. */
	volatile double one = 1.0, three = 3.0;
	volatile long double lone = 1.0L, lthree = 3.0L;
	double d = one / three;
	long double ld = lone / lthree;
	if (!(d * 3.0 > 1.0) || !(ld * 3.0L > 1.0L))
		BAD("rounding-result");
}
#undef BAD

static int cmd_basic(void)
{
	int a, n = online_nodes(&a);
	if (n < 2)
		die("basic needs 2 nodes or more (popvmm launch --islands 2)");
	int b = a == 0 ? 1 : 0;
	long nr = popcorn_syscall_base() + POPCORN_SYS_MIGRATE;
	char what[256];
	int bad, migrations = 0, failed = 0;
	unsigned char stack[8192];
	struct state s = {.stack = stack, .stack_len = sizeof stack, .heap_len = 1 << 20};
	s.heap = malloc(s.heap_len);
	if (!s.heap)
		die("malloc");
	state_fill(&s, 7);
	printf("basic: node %d -> %d -> %d\n", a, b, a);

	int ran_on = -1;
	if (migrate(b, note_node, &ran_on) < 0)
		die("migrate(%d): %s", b, errname(errno));
	migrations++;
	if (ran_on != b || popcorn_getnid() != b || cpu() != b)
		die("migrate(%d): callback on node %d, now node %d, cpu %d", b, ran_on,
		    popcorn_getnid(), cpu());
	printf("migrate(%d) with a callback: the callback ran on node %d\n", b, ran_on);
	state_check(&s, what, sizeof what);
	failed |= what[0] != 0;
	printf("on node %d: TLS, thread pointer, stack, heap:%s\n", b, what[0] ? what : " intact");
	fpctl_check(&s, what, sizeof what);
	failed |= what[0] != 0;
	printf("on node %d: rounding mode (upward), x87 control word, MXCSR:%s\n", b,
	       what[0] ? what : " intact");

	long r = check_gprs_null(nr, a, &bad, what, sizeof what);
	if (r != 0 || popcorn_getnid() != a)
		die("popcorn_migrate(%d, NULL): %s, on node %d", a, errname((int)-r), popcorn_getnid());
	migrations++;
	failed |= bad != 0;
	printf("popcorn_migrate(%d, NULL): general registers (all but rax, rcx, r11):%s\n", a,
	       bad ? what : " intact");

	r = check_gprs_uregs(nr, b, &bad, what, sizeof what);
	if (r != 0 || popcorn_getnid() != b)
		die("popcorn_migrate(%d, regs): %s (1: returned without resuming from regs), on node %d",
		    b, r == 1 ? "1" : errname((int)-r), popcorn_getnid());
	migrations++;
	failed |= bad != 0;
	printf("popcorn_migrate(%d, regs): resumed at regs.rip, general registers and flags from "
	       "regs:%s\n",
	       b, bad ? what : " as set");

	r = check_xmm(nr, a, 1, &bad);
	if (r != 0 || popcorn_getnid() != a)
		die("popcorn_migrate(%d, NULL) (xmm): %s", a, errname((int)-r));
	migrations++;
	failed |= bad != 0;
	printf("popcorn_migrate(%d, NULL): xmm0-15 live across it: %s\n", a,
	       bad ? "CHANGED" : "intact");

	r = check_x87(nr, b, 2, &bad);
	if (r != 0 || popcorn_getnid() != b)
		die("popcorn_migrate(%d, NULL) (x87): %s", b, errname((int)-r));
	migrations++;
	failed |= bad != 0;
	printf("popcorn_migrate(%d, NULL): x87 st0-7 live across it: %s\n", b,
	       bad ? "CHANGED" : "intact");

	hop(a);
	migrations++;
	state_check(&s, what, sizeof what);
	failed |= what[0] != 0;
	printf("back on node %d: TLS, thread pointer, stack, heap:%s\n", a,
	       what[0] ? what : " intact");
	fpctl_check(&s, what, sizeof what);
	failed |= what[0] != 0;
	printf("back on node %d: rounding mode (upward), x87 control word, MXCSR:%s\n", a,
	       what[0] ? what : " intact");
	fesetround(FE_TONEAREST);
	free(s.heap);
	printf("basic: %d migrations\n", migrations);
	return failed;
}

/* ---------------------------------------------------------------------------------------- */
/* mt THREADS ROUNDS */

struct mt {
	int threads, rounds, nodes;
	pthread_barrier_t barrier;
	unsigned long *shared; /* one slot per thread, written by its thread, read by all */
	atomic_ulong total;
	atomic_int private_bad, shared_bad, place_bad, migrations;
};

struct mt_arg {
	struct mt *mt;
	int idx;
};

static __thread unsigned long mt_tls;

static void *mt_thread(void *p)
{
	struct mt_arg *arg = p;
	struct mt *m = arg->mt;
	int idx = arg->idx;
	unsigned long stack[512];
	unsigned long *heap = malloc(8192);
	for (int i = 0; i < 512; i++)
		stack[i] = (unsigned long)idx * 100000 + i;
	for (int i = 0; i < 1024; i++)
		heap[i] = ~((unsigned long)idx * 100000 + i);
	int home = popcorn_getnid();
	int away = (home + 1 + idx % (m->nodes - 1)) % m->nodes;
	for (int r = 0; r < m->rounds; r++) {
		mt_tls = (unsigned long)idx * 1000 + r;
		pthread_barrier_wait(&m->barrier);
		int to = r % 2 == 0 ? away : home;
		if (migrate(to, NULL, NULL) < 0)
			die("thread %d, round %d: migrate(%d): %s", idx, r, to, errname(errno));
		atomic_fetch_add(&m->migrations, 1);
		if (popcorn_getnid() != to || cpu() != to)
			atomic_fetch_add(&m->place_bad, 1);
		m->shared[idx] += 1;
		atomic_fetch_add(&m->total, 1);
		if (mt_tls != (unsigned long)idx * 1000 + r)
			atomic_fetch_add(&m->private_bad, 1);
		for (int i = 0; i < 512; i++)
			if (stack[i] != (unsigned long)idx * 100000 + i) {
				atomic_fetch_add(&m->private_bad, 1);
				break;
			}
		for (int i = 0; i < 1024; i++)
			if (heap[i] != ~((unsigned long)idx * 100000 + i)) {
				atomic_fetch_add(&m->private_bad, 1);
				break;
			}
		pthread_barrier_wait(&m->barrier);
		/* Everybody's slot says r + 1 now. */
		for (int t = 0; t < m->threads; t++)
			if (m->shared[t] != (unsigned long)r + 1) {
				atomic_fetch_add(&m->shared_bad, 1);
				break;
			}
	}
	free(heap);
	return NULL;
}

static int cmd_mt(int threads, int rounds)
{
	int me, n = online_nodes(&me);
	if (n < 2)
		die("mt needs 2 nodes or more");
	if (threads < 1 || rounds < 0)
		die("usage: mt THREADS ROUNDS");
	struct mt m = {.threads = threads, .rounds = rounds, .nodes = n};
	m.shared = calloc((size_t)threads, sizeof *m.shared);
	pthread_barrier_init(&m.barrier, NULL, (unsigned)threads);
	pthread_t *t = calloc((size_t)threads, sizeof *t);
	struct mt_arg *args = calloc((size_t)threads, sizeof *args);
	for (int i = 0; i < threads; i++) {
		args[i] = (struct mt_arg){&m, i};
		if (pthread_create(&t[i], NULL, mt_thread, &args[i]))
			die("pthread_create");
	}
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	int ok = 1;
	for (int i = 0; i < threads; i++)
		if (m.shared[i] != (unsigned long)rounds)
			ok = 0;
	printf("mt: %d threads x %d rounds on %d nodes: %d migrations\n", threads, rounds, n,
	       atomic_load(&m.migrations));
	printf("shared data: %s (total %lu, expected %lu)\n",
	       ok && !atomic_load(&m.shared_bad) ? "ok" : "WRONG", atomic_load(&m.total),
	       (unsigned long)threads * rounds);
	printf("private data (stack, TLS, heap): %s\n", atomic_load(&m.private_bad) ? "WRONG" : "ok");
	printf("each thread on the node it migrated to: %s\n",
	       atomic_load(&m.place_bad) ? "NO" : "yes");
	return !(ok && !m.shared_bad && !m.private_bad && !m.place_bad);
}

/* ---------------------------------------------------------------------------------------- */

/* Islands beyond Popcorn's 32 nodes: sched_getaffinity's mask counts them (island i is CPU i). */
static int all_islands(int popcorn_nodes)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	if (sched_getaffinity(0, sizeof set, &set) < 0)
		return popcorn_nodes;
	int n = 0;
	for (int i = 0; i < CPU_SETSIZE; i++)
		if (CPU_ISSET(i, &set))
			n = i + 1;
	return n > popcorn_nodes ? n : popcorn_nodes;
}

/* To island `to`: migrate() for Popcorn's nodes 0-31, CPU affinity beyond them. */
static void visit(int to)
{
	if (to < POPCORN_MAX_NODES) {
		hop(to);
		return;
	}
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(to, &set);
	if (sched_setaffinity(0, sizeof set, &set) < 0)
		die("sched_setaffinity({%d}): %s", to, errname(errno));
	if (cpu() != to)
		die("after sched_setaffinity({%d}): getcpu %d", to, cpu());
}

static int cmd_tour(void)
{
	int me, nodes = online_nodes(&me);
	int n = all_islands(nodes);
	unsigned long stack[256];
	unsigned long *heap = malloc(4096);
	for (int i = 0; i < 256; i++)
		stack[i] = 3 * i + 1;
	for (int i = 0; i < 512; i++)
		heap[i] = 5 * i + 2;
	if (n > nodes)
		printf("tour: %d islands (Popcorn nodes 0-%d, the others by CPU affinity), starting on "
		       "node %d\n",
		       n, nodes - 1, me);
	else
		printf("tour: %d islands, starting on node %d\n", n, me);
	int bad = 0;
	for (int k = 1; k <= n; k++) {
		int to = (me + k) % n;
		visit(to);
		struct popcorn_thread_status st;
		popcorn_get_status(&st);
		stack[k % 256] += 1;
		heap[k % 512] += 1;
		printf("node %d: getcpu %d, current_nid %d, peer_nid %d\n", to, cpu(), st.current_nid,
		       st.peer_nid);
		if (cpu() != to || st.current_nid != to)
			bad = 1;
	}
	if (n > POPCORN_MAX_NODES) {
		/* Every island again, as the mask allowed before. */
		cpu_set_t set;
		CPU_ZERO(&set);
		for (int i = 0; i < n; i++)
			CPU_SET(i, &set);
		sched_setaffinity(0, sizeof set, &set);
	}
	/* Each slot got one increment per visit whose number maps to it. */
	unsigned long want_stack[256], want_heap[512];
	for (int i = 0; i < 256; i++)
		want_stack[i] = 3 * i + 1;
	for (int i = 0; i < 512; i++)
		want_heap[i] = 5 * i + 2;
	for (int k = 1; k <= n; k++) {
		want_stack[k % 256]++;
		want_heap[k % 512]++;
	}
	if (memcmp(stack, want_stack, sizeof stack) || memcmp(heap, want_heap, sizeof want_heap))
		bad = 1;
	printf("tour: visited %d islands, back on node %d: %s\n", n - 1, popcorn_getnid(),
	       bad ? "WRONG" : "ok");
	free(heap);
	return bad;
}

/* ---------------------------------------------------------------------------------------- */

static void expect(const char *what, int r, int want_errno)
{
	int e = r < 0 ? errno : 0;
	printf("%s: %s%s\n", what, errname(e), e == want_errno ? "" : "  <-- UNEXPECTED");
}

static int unexpected;

static void expect_errors_here(int n)
{
	int me = popcorn_getnid();
	char what[128];
	errno = 0;
	printf("on node %d:\n", me);
	expect("  popcorn_propose_migration(unknown tid, 0)", popcorn_propose_migration(0x7ffffff0, 0),
	       ESRCH);
	expect("  popcorn_propose_migration(0, 32)", popcorn_propose_migration(0, 32), EINVAL);
	expect("  popcorn_propose_migration(0, -5)", popcorn_propose_migration(0, -5), EINVAL);
	if (n < POPCORN_MAX_NODES) {
		snprintf(what, sizeof what, "  popcorn_propose_migration(0, %d) (no such island)", n);
		expect(what, popcorn_propose_migration(0, n), EAGAIN);
	}
	expect("  popcorn_migrate(32, NULL)", popcorn_migrate(32, NULL), EINVAL);
	expect("  popcorn_migrate(-2, NULL)", popcorn_migrate(-2, NULL), EINVAL);
	if (n < POPCORN_MAX_NODES) {
		snprintf(what, sizeof what, "  popcorn_migrate(%d, NULL) (no such island)", n);
		expect(what, popcorn_migrate(n, NULL), EAGAIN);
	}
	expect("  popcorn_migrate(-1, NULL) (nothing proposed)", popcorn_migrate(-1, NULL), EINVAL);
	snprintf(what, sizeof what, "  popcorn_migrate(%d, NULL) (the current node)", me);
	expect(what, popcorn_migrate(me, NULL), EBUSY);
	int other = me == 0 ? 1 : 0;
	snprintf(what, sizeof what, "  popcorn_migrate(%d, (void *)8) (bad uregs)", other);
	expect(what, popcorn_migrate(other, (struct regset_x86_64 *)8), EINVAL);
	/* A register set that runs off the end of a mapping. */
	long page = sysconf(_SC_PAGESIZE);
	char *m = aligned_alloc((size_t)page, (size_t)page);
	(void)m;
	snprintf(what, sizeof what, "  popcorn_migrate(%d, (void *)-4096) (bad uregs)", other);
	expect(what, popcorn_migrate(other, (struct regset_x86_64 *)-4096L), EINVAL);
	/* Through a volatile, so that the compiler does not see the bad pointers. */
	void *volatile bad = (void *)8;
	expect("  popcorn_get_status((void *)8)", popcorn_get_status(bad), EINVAL);
	expect("  popcorn_get_node_info(NULL, (void *)8)", popcorn_get_node_info(NULL, bad), EINVAL);
	free(m);
	if (popcorn_getnid() != me) {
		printf("  the thread moved!\n");
		unexpected = 1;
	}
}

static int cmd_errors(void)
{
	int me, n = online_nodes(&me);
	if (n < 2)
		die("errors needs 2 nodes or more");
	printf("errors: %d nodes\n", n);
	expect_errors_here(n);
	int other = me == 0 ? 1 : 0;
	hop(other);
	expect_errors_here(n);
	hop(me);
	printf("after the errors: migrate(%d) and back: ok\n", other);
	fflush(stdout);
	return unexpected;
}

/* ---------------------------------------------------------------------------------------- */

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;
	return (a > b) - (a < b);
}

static void report(const char *what, double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	int p99 = (int)((n * 99 + 99) / 100) - 1;
	if (p99 < 0)
		p99 = 0;
	if (p99 >= n)
		p99 = n - 1;
	double median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	printf("%s: median %.1f us, p99 %.1f us, min %.1f us, max %.1f us\n", what, median, v[p99],
	       v[0], v[n - 1]);
}

static int cmd_bench(int iters)
{
	int a, n = online_nodes(&a);
	if (n < 2)
		die("bench needs 2 nodes or more");
	if (iters < 1)
		die("usage: bench N");
	int b = a == 0 ? 1 : 0;
	double *there = malloc(sizeof(double) * (size_t)iters);
	double *back = malloc(sizeof(double) * (size_t)iters);
	double *round = malloc(sizeof(double) * (size_t)iters);
	/* Warm-up: the first migration brings the layout and the stack's pages. */
	for (int i = 0; i < 10; i++) {
		hop(b);
		hop(a);
	}
	for (int i = 0; i < iters; i++) {
		double t0 = now_us();
		if (migrate(b, NULL, NULL) < 0)
			die("migrate(%d): %s", b, errname(errno));
		double t1 = now_us();
		if (migrate(a, NULL, NULL) < 0)
			die("migrate(%d): %s", a, errname(errno));
		double t2 = now_us();
		there[i] = t1 - t0;
		back[i] = t2 - t1;
		round[i] = t2 - t0;
	}
	printf("bench: %d round trips node %d -> %d -> %d (migrate(), measured in the guest)\n",
	       iters, a, b, a);
	char label[64];
	snprintf(label, sizeof label, "one way, node %d -> %d", a, b);
	report(label, there, iters);
	snprintf(label, sizeof label, "one way, node %d -> %d", b, a);
	report(label, back, iters);
	report("round trip", round, iters);
	return 0;
}

/* ---------------------------------------------------------------------------------------- */

static void usage(void)
{
	fputs("usage: popcorn-migrate nodes | status | basic | mt THREADS ROUNDS | tour | errors | "
	      "bench N\n",
	      stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2)
		usage();
	const char *c = argv[1];
	if (!strcmp(c, "nodes"))
		return cmd_nodes();
	if (!strcmp(c, "status"))
		return cmd_status();
	if (!strcmp(c, "basic"))
		return cmd_basic();
	if (!strcmp(c, "mt") && argc == 4)
		return cmd_mt(atoi(argv[2]), atoi(argv[3]));
	if (!strcmp(c, "tour"))
		return cmd_tour();
	if (!strcmp(c, "errors"))
		return cmd_errors();
	if (!strcmp(c, "bench") && argc == 3)
		return cmd_bench(atoi(argv[2]));
	usage();
	return 2;
}
