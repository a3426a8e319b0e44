/*
 * libpopcorn: Popcorn Linux's user API (migrate, check_migrate, popcorn_*) for popvmm's guests.
 * See popcorn.h. Builds with gcc (glibc, static or static-PIE) and musl-gcc alike.
 */
#define _GNU_SOURCE
#include "popcorn.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The layout popvmm reads (vmm/src/kernel/syscall/popcorn.rs, mod regset). */
_Static_assert(offsetof(struct regset_x86_64, rip) == 0, "rip");
_Static_assert(offsetof(struct regset_x86_64, rax) == 8, "rax");
_Static_assert(offsetof(struct regset_x86_64, rsp) == 64, "rsp");
_Static_assert(offsetof(struct regset_x86_64, r15) == 128, "r15");
_Static_assert(offsetof(struct regset_x86_64, mmx) == 136, "mmx");
_Static_assert(offsetof(struct regset_x86_64, xmm) == 208, "xmm");
_Static_assert(offsetof(struct regset_x86_64, st) == 464, "st");
_Static_assert(offsetof(struct regset_x86_64, cs) == 592, "segments");
_Static_assert(offsetof(struct regset_x86_64, rflags) == 616, "rflags");
_Static_assert(sizeof(struct regset_x86_64) == 624, "size");
_Static_assert(sizeof(struct popcorn_thread_status) == 16, "status");
_Static_assert(sizeof(struct popcorn_node_info) == 12, "node info");

#ifdef POPCORN_ABI_4_4
#define BUILT_IN_BASE POPCORN_SYS_BASE_4_4
#else
#define BUILT_IN_BASE POPCORN_SYS_BASE_POPVMM
#endif

/* 0: not chosen yet. Threads racing the first call compute the same value. */
static volatile long syscall_base;

long popcorn_syscall_base(void)
{
	long base = __atomic_load_n(&syscall_base, __ATOMIC_RELAXED);
	if (base)
		return base;
	base = BUILT_IN_BASE;
	const char *abi = getenv("POPCORN_ABI");
	if (abi && strcmp(abi, "4.4") == 0)
		base = POPCORN_SYS_BASE_4_4;
	else if (abi && strcmp(abi, "popvmm") == 0)
		base = POPCORN_SYS_BASE_POPVMM;
	__atomic_store_n(&syscall_base, base, __ATOMIC_RELAXED);
	return base;
}

static long nr(int call)
{
	return popcorn_syscall_base() + call;
}

int popcorn_get_status(struct popcorn_thread_status *status)
{
	return (int)syscall(nr(POPCORN_SYS_GET_THREAD_STATUS), status);
}

int popcorn_getnid(void)
{
	struct popcorn_thread_status st;
	if (popcorn_get_status(&st) < 0)
		return -1;
	return st.current_nid;
}

int popcorn_get_node_info(int *my_nid, struct popcorn_node_info info[POPCORN_MAX_NODES])
{
	return (int)syscall(nr(POPCORN_SYS_GET_NODE_INFO), my_nid, info);
}

int popcorn_propose_migration(pid_t tid, int nid)
{
	return (int)syscall(nr(POPCORN_SYS_PROPOSE_MIGRATION), (long)tid, (long)nid);
}

int popcorn_migrate(int nid, struct regset_x86_64 *uregs)
{
	return (int)syscall(nr(POPCORN_SYS_MIGRATE), (long)nid, uregs);
}

int migrate(int nid, void (*callback)(void *), void *arg)
{
	struct regset_x86_64 regs;
	memset(&regs, 0, sizeof regs);
	long r = __popcorn_migrate_here(nr(POPCORN_SYS_MIGRATE), nid, &regs);
	if (r < 0) {
		errno = (int)-r;
		return -1;
	}
	/* Here on the destination (r == 1: the kernel returned without resuming from regs). */
	if (callback)
		callback(arg);
	return 0;
}

int check_migrate(void (*callback)(void *), void *arg)
{
	struct popcorn_thread_status st;
	if (popcorn_get_status(&st) < 0)
		return -1;
	if (st.proposed_nid < 0 || st.proposed_nid == st.current_nid)
		return 0;
	if (migrate(st.proposed_nid, callback, arg) < 0)
		return -1;
	return 1;
}
