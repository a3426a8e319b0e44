/*
 * libpopcorn: Popcorn Linux's user API for thread migration, for static x86-64 programs run by
 * popvmm (glibc or musl).
 *
 * A node is an island. Every call returns 0 (or a value >= 0) on success and -1 with errno on
 * failure; outside popvmm (natively) the calls fail with ENOSYS, so a program can run both ways.
 *
 * System call numbers: popvmm serves the four calls at 900-903 by default and at Popcorn's own
 * 330-333 with `popvmm launch --popcorn-abi 4.4`. The library uses 900-903 unless
 *   - it was built with -DPOPCORN_ABI_4_4 (libpopcorn44.a), or
 *   - the environment variable POPCORN_ABI is "4.4" (or "popvmm") when the first call is made:
 *     the variable, read once per process, overrides the built-in choice.
 * Never use the 4.4 numbers natively or under popvmm without --popcorn-abi 4.4: on Linux 330 is
 * pkey_alloc and 332 statx, not Popcorn calls.
 */
#ifndef POPCORN_H
#define POPCORN_H

#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Popcorn's node limit: the size of popcorn_get_node_info's table. */
#define POPCORN_MAX_NODES 32

/* System call numbers: popvmm's default ABI, and Popcorn's 4.4 kernel (--popcorn-abi 4.4). */
#define POPCORN_SYS_BASE_POPVMM 900
#define POPCORN_SYS_BASE_4_4 330
/* Offsets from the base. */
#define POPCORN_SYS_MIGRATE 0
#define POPCORN_SYS_PROPOSE_MIGRATION 1
#define POPCORN_SYS_GET_THREAD_STATUS 2
#define POPCORN_SYS_GET_NODE_INFO 3

struct popcorn_thread_status {
	int current_nid;  /* the node (island) the thread runs on */
	int proposed_nid; /* the node proposed for its next migration, -1: none */
	int peer_nid;     /* away from the origin: the origin (0); on the origin: -1 */
	pid_t peer_pid;   /* away from the origin: the program's pid on the origin; else 0 */
};

struct popcorn_node_info {
	unsigned int status; /* 1: a node of the program, 0: offline */
	int arch;            /* 1: x86-64; -1 offline */
	int distance;        /* 0 to the caller's own node, 1 to the others; -1 offline */
};

/*
 * Popcorn's x86-64 register set (struct regset_x86_64), 624 bytes: what popcorn_migrate resumes
 * from on the destination. popvmm takes rip, the 16 general registers and rflags (the user flags)
 * from it; the x87, MMX and SSE state travels from the thread itself, and migrate() reloads
 * xmm0-15 from the copy it saved here.
 */
struct regset_x86_64 {
	void *rip;
	unsigned long rax, rdx, rcx, rbx, rsi, rdi, rbp, rsp;
	unsigned long r8, r9, r10, r11, r12, r13, r14, r15;
	unsigned long mmx[8];
	unsigned __int128 xmm[16];
	long double st[8];
	unsigned int cs, ss, ds, es, fs, gs;
	unsigned long rflags;
};

/* The current node, or -1 with errno. */
int popcorn_getnid(void);

/* The calling thread's status (popcorn_get_thread_status). */
int popcorn_get_status(struct popcorn_thread_status *status);

/* The caller's node in *my_nid (may be NULL) and a table of POPCORN_MAX_NODES nodes. */
int popcorn_get_node_info(int *my_nid, struct popcorn_node_info info[POPCORN_MAX_NODES]);

/*
 * Proposes node `nid` for thread `tid`'s next migration (tid 0: the caller). The thread follows
 * the proposal when it calls check_migrate(), or popcorn_migrate(-1, ...).
 * Errors: ESRCH no such thread, EINVAL nid outside 0..31, EAGAIN no such island.
 */
int popcorn_propose_migration(pid_t tid, int nid);

/*
 * The raw call: moves the calling thread to node `nid` (-1: the proposed one). With `uregs`, the
 * thread resumes on the destination from that register set (it must be complete: rip, rsp and
 * every register the code at rip needs); without (NULL), the call returns 0 on the destination.
 * Errors: EINVAL nid outside 0..31 (or -1 with nothing proposed) or a bad uregs pointer,
 * EBUSY nid is the current node, EAGAIN no such island, ENOSYS not under popvmm (or the wrong ABI).
 */
int popcorn_migrate(int nid, struct regset_x86_64 *uregs);

/*
 * Popcorn's migrate(): moves the calling thread to node `nid` (-1: the proposed one) with its
 * registers saved in a struct regset_x86_64 whose rip is the instruction after the system call;
 * on the destination it reloads xmm0-15 from that struct, runs callback(arg) if callback is not
 * NULL, and returns 0 to the caller, which carries on there. On failure nothing runs: -1, errno.
 * (Popcorn's own migrate() returns void; this one tells the caller what happened.)
 */
int migrate(int nid, void (*callback)(void *), void *arg);

/*
 * Migrates to the node proposed for the calling thread, if there is one and it is not the
 * current node, as migrate() does. Returns 1 if the thread moved, 0 if nothing was proposed,
 * -1 with errno on failure.
 */
int check_migrate(void (*callback)(void *), void *arg);

/*
 * The system call number base in use (900 or 330), as chosen at build time or by POPCORN_ABI.
 */
long popcorn_syscall_base(void);

/*
 * The low-level step under migrate(): fills *regs (rip = a label after the system call, rax = 0,
 * the callee-saved registers, rsp, xmm0-15, segments, rflags) and makes system call `nr`
 * (popcorn_migrate) with (nid, regs). Returns 0 when the thread resumed from *regs on the
 * destination, -errno on failure, and 1 if the call returned 0 without resuming from *regs (a
 * kernel that ignored uregs: the thread moved, but not as Popcorn says).
 */
long __popcorn_migrate_here(long nr, long nid, struct regset_x86_64 *regs);

#ifdef __cplusplus
}
#endif

#endif /* POPCORN_H */
