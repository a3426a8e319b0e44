/*
 * Register probes around a raw popcorn_migrate system call, for popcorn-migrate and the test
 * programs of images/src (include once per program: it defines functions and data).
 *
 * Each probe loads known values into registers, makes the call and reads them back, so what it
 * checks is the registers the thread has when it resumes on the destination:
 *   probe_gprs_null   every general register but rax, rcx, r11 (uregs NULL: the call returns 0
 *                     on the destination with the thread's own registers, as a system call keeps
 *                     them on Linux);
 *   probe_gprs_uregs  every general register and the user flags come from a struct
 *                     regset_x86_64 whose rip is a probe label (what popvmm resumes from);
 *   probe_xmm         xmm0-15, live across the call (uregs NULL);
 *   probe_x87         the eight x87 registers, live across the call (uregs NULL).
 * A probe returns the call's result: 0 (it migrated), -errno (it did not: natively -ENOSYS; the
 * registers must be intact all the same), or 1 (probe_gprs_uregs: the call returned 0 without
 * resuming from the register set).
 */
#ifndef POPCORN_PROBES_H
#define POPCORN_PROBES_H

#include <stdint.h>
#include <string.h>

#include "popcorn.h"

#define PROBE_PATTERN(i) (0x0123456789abcdefUL ^ ((unsigned long)(i) * 0x1111111111111111UL))

/* What the probes read back (filled by the assembly below). */
__attribute__((used, visibility("hidden"))) unsigned long probe_out[18];

/* long probe_gprs_null(long nr, long nid): probe_out[] gets rbx, rbp, rdx, rsi, rdi, r8, r9,
 * r10, r12, r13, r14, r15 (indices 0-11) after the call; they held PROBE_PATTERN(0..11) before
 * it (rsi 0 and rdi nid: the arguments). */
__attribute__((visibility("hidden"))) long probe_gprs_null(long nr, long nid);
/* long probe_gprs_uregs(long nr, long nid, struct regset_x86_64 *regs): the caller fills the
 * general registers of *regs; the probe sets rip and rsp. probe_out[] gets rax, rdx, rcx, rbx,
 * rsi, rdi, rbp, r8..r15 (in the regset's order, rsp left out: index 7 unused) and rflags (16). */
__attribute__((visibility("hidden"))) long probe_gprs_uregs(long nr, long nid, struct regset_x86_64 *regs);
/* long probe_xmm(long nr, long nid, const void *in, void *out): 256 bytes each. */
__attribute__((visibility("hidden"))) long probe_xmm(long nr, long nid, const void *in, void *out);
/* long probe_x87(long nr, long nid, const long double *in, long double *out): 8 values each,
 * in[0] on top of the stack. */
__attribute__((visibility("hidden"))) long probe_x87(long nr, long nid, const long double *in,
						   long double *out);

__asm__(
    ".text\n"
    ".p2align 4\n"
    "probe_gprs_null:\n"
    "  push %rbx\n push %rbp\n push %r12\n push %r13\n push %r14\n push %r15\n"
    "  mov %rdi, %rax\n"
    "  mov %rsi, %rdi\n"
    "  xor %esi, %esi\n"
    "  movabs $0x0123456789abcdef, %rbx\n"
    "  movabs $0x1032547698badcfe, %rbp\n"
    "  movabs $0x2301674520efcdab, %rdx\n"
    "  movabs $0x54761032dcfe98ba, %r8\n"
    "  movabs $0x45670123cdef89ab, %r9\n"
    "  movabs $0x76543210fedcba98, %r10\n"
    "  movabs $0x6789abcdef012345, %r12\n"
    "  movabs $0x98badcfe10325476, %r13\n"
    "  movabs $0x89abcdef01234567, %r14\n"
    "  movabs $0xbadcfe1032547698, %r15\n"
    "  syscall\n"
    "  mov %rbx, probe_out+0(%rip)\n"
    "  mov %rbp, probe_out+8(%rip)\n"
    "  mov %rdx, probe_out+16(%rip)\n"
    "  mov %rsi, probe_out+24(%rip)\n"
    "  mov %rdi, probe_out+32(%rip)\n"
    "  mov %r8, probe_out+40(%rip)\n"
    "  mov %r9, probe_out+48(%rip)\n"
    "  mov %r10, probe_out+56(%rip)\n"
    "  mov %r12, probe_out+64(%rip)\n"
    "  mov %r13, probe_out+72(%rip)\n"
    "  mov %r14, probe_out+80(%rip)\n"
    "  mov %r15, probe_out+88(%rip)\n"
    "  pop %r15\n pop %r14\n pop %r13\n pop %r12\n pop %rbp\n pop %rbx\n"
    "  ret\n"

    ".p2align 4\n"
    "probe_gprs_uregs:\n"
    "  push %rbx\n push %rbp\n push %r12\n push %r13\n push %r14\n push %r15\n"
    "  lea 1f(%rip), %rax\n"
    "  mov %rax, 0(%rdx)\n"
    "  mov %rsp, 64(%rdx)\n"
    "  mov %rdi, %rax\n"
    "  mov %rsi, %rdi\n"
    "  mov %rdx, %rsi\n"
    "  syscall\n"
    "  test %rax, %rax\n"
    "  jnz 2f\n"
    "  mov $1, %eax\n"
    "  jmp 2f\n"
    "1:\n"
    "  mov %rax, probe_out+0(%rip)\n"
    "  mov %rdx, probe_out+8(%rip)\n"
    "  mov %rcx, probe_out+16(%rip)\n"
    "  mov %rbx, probe_out+24(%rip)\n"
    "  mov %rsi, probe_out+32(%rip)\n"
    "  mov %rdi, probe_out+40(%rip)\n"
    "  mov %rbp, probe_out+48(%rip)\n"
    "  mov %r8, probe_out+64(%rip)\n"
    "  mov %r9, probe_out+72(%rip)\n"
    "  mov %r10, probe_out+80(%rip)\n"
    "  mov %r11, probe_out+88(%rip)\n"
    "  mov %r12, probe_out+96(%rip)\n"
    "  mov %r13, probe_out+104(%rip)\n"
    "  mov %r14, probe_out+112(%rip)\n"
    "  mov %r15, probe_out+120(%rip)\n"
    "  pushfq\n"
    "  popq probe_out+128(%rip)\n"
    "  cld\n"
    "  xor %eax, %eax\n"
    "2:\n"
    "  pop %r15\n pop %r14\n pop %r13\n pop %r12\n pop %rbp\n pop %rbx\n"
    "  ret\n"

    ".p2align 4\n"
    "probe_xmm:\n"
    "  movdqu 0(%rdx), %xmm0\n  movdqu 16(%rdx), %xmm1\n  movdqu 32(%rdx), %xmm2\n"
    "  movdqu 48(%rdx), %xmm3\n  movdqu 64(%rdx), %xmm4\n  movdqu 80(%rdx), %xmm5\n"
    "  movdqu 96(%rdx), %xmm6\n  movdqu 112(%rdx), %xmm7\n  movdqu 128(%rdx), %xmm8\n"
    "  movdqu 144(%rdx), %xmm9\n  movdqu 160(%rdx), %xmm10\n  movdqu 176(%rdx), %xmm11\n"
    "  movdqu 192(%rdx), %xmm12\n  movdqu 208(%rdx), %xmm13\n  movdqu 224(%rdx), %xmm14\n"
    "  movdqu 240(%rdx), %xmm15\n"
    "  push %rcx\n"
    "  mov %rdi, %rax\n"
    "  mov %rsi, %rdi\n"
    "  xor %esi, %esi\n"
    "  syscall\n"
    "  pop %rcx\n"
    "  movdqu %xmm0, 0(%rcx)\n  movdqu %xmm1, 16(%rcx)\n  movdqu %xmm2, 32(%rcx)\n"
    "  movdqu %xmm3, 48(%rcx)\n  movdqu %xmm4, 64(%rcx)\n  movdqu %xmm5, 80(%rcx)\n"
    "  movdqu %xmm6, 96(%rcx)\n  movdqu %xmm7, 112(%rcx)\n  movdqu %xmm8, 128(%rcx)\n"
    "  movdqu %xmm9, 144(%rcx)\n  movdqu %xmm10, 160(%rcx)\n  movdqu %xmm11, 176(%rcx)\n"
    "  movdqu %xmm12, 192(%rcx)\n  movdqu %xmm13, 208(%rcx)\n  movdqu %xmm14, 224(%rcx)\n"
    "  movdqu %xmm15, 240(%rcx)\n"
    "  ret\n"

    ".p2align 4\n"
    "probe_x87:\n"
    "  fldt 112(%rdx)\n  fldt 96(%rdx)\n  fldt 80(%rdx)\n  fldt 64(%rdx)\n"
    "  fldt 48(%rdx)\n  fldt 32(%rdx)\n  fldt 16(%rdx)\n  fldt 0(%rdx)\n"
    "  push %rcx\n"
    "  mov %rdi, %rax\n"
    "  mov %rsi, %rdi\n"
    "  xor %esi, %esi\n"
    "  syscall\n"
    "  pop %rcx\n"
    "  fstpt 0(%rcx)\n  fstpt 16(%rcx)\n  fstpt 32(%rcx)\n  fstpt 48(%rcx)\n"
    "  fstpt 64(%rcx)\n  fstpt 80(%rcx)\n  fstpt 96(%rcx)\n  fstpt 112(%rcx)\n"
    "  ret\n");

/* The patterns probe_gprs_null loads (rsi and rdi: the call's arguments). */
static const unsigned long probe_null_want[12] = {
    0x0123456789abcdefUL, 0x1032547698badcfeUL, 0x2301674520efcdabUL, 0, 0,
    0x54761032dcfe98baUL, 0x45670123cdef89abUL, 0x76543210fedcba98UL, 0x6789abcdef012345UL,
    0x98badcfe10325476UL, 0x89abcdef01234567UL, 0xbadcfe1032547698UL,
};
static const char *const probe_null_names[12] = {
    "rbx", "rbp", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r12", "r13", "r14", "r15",
};

/* probe_gprs_null, checked: returns the call's result, and in *bad the registers that changed
 * (0: none). */
static long check_gprs_null(long nr, int nid, int *bad, char *what, size_t len)
{
	long r;
	r = probe_gprs_null(nr, nid);
	*bad = 0;
	if (what && len)
		what[0] = 0;
	for (int i = 0; i < 12; i++) {
		unsigned long want = i == 4 ? (unsigned long)(long)nid : probe_null_want[i];
		if (probe_out[i] != want) {
			(*bad)++;
			if (what && strlen(what) + 8 < len) {
				strcat(what, " ");
				strcat(what, probe_null_names[i]);
			}
		}
	}
	return r;
}

/* The user flags probe_gprs_uregs asks for: CF, PF, ZF, SF, OF (and IF, bit 1). */
#define PROBE_FLAGS 0x8c7UL
#define PROBE_FLAGS_MASK 0x8d5UL

/* probe_gprs_uregs, checked (meaningful when it returns 0). */
static long check_gprs_uregs(long nr, int nid, int *bad, char *what, size_t len)
{
	static const char *const names[16] = {"rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp",
					       "r8",  "r9",  "r10", "r11", "r12", "r13", "r14", "r15"};
	struct regset_x86_64 regs;
	unsigned long *g = &regs.rax;
	memset(&regs, 0, sizeof regs);
	for (int i = 0; i < 16; i++)
		g[i] = PROBE_PATTERN(i + 1);
	regs.rflags = PROBE_FLAGS;
	memset(probe_out, 0, sizeof probe_out);
	long r;
	r = probe_gprs_uregs(nr, nid, &regs);
	*bad = 0;
	if (what && len)
		what[0] = 0;
	if (r != 0)
		return r;
	for (int i = 0; i < 16; i++) {
		if (i == 7)
			continue;
		if (probe_out[i] != PROBE_PATTERN(i + 1)) {
			(*bad)++;
			if (what && strlen(what) + 8 < len) {
				strcat(what, " ");
				strcat(what, names[i]);
			}
		}
	}
	if ((probe_out[16] & PROBE_FLAGS_MASK) != (PROBE_FLAGS & PROBE_FLAGS_MASK)) {
		(*bad)++;
		if (what && strlen(what) + 8 < len)
			strcat(what, " rflags");
	}
	return r;
}

/* probe_xmm, checked: *bad = the xmm registers that changed. */
static long check_xmm(long nr, int nid, unsigned seed, int *bad)
{
	unsigned char in[256], out[256];
	for (int i = 0; i < 256; i++)
		in[i] = (unsigned char)(seed * 131 + i * 7 + (i >> 4));
	memset(out, 0, sizeof out);
	long r;
	r = probe_xmm(nr, nid, in, out);
	*bad = 0;
	for (int i = 0; i < 16; i++)
		if (memcmp(in + 16 * i, out + 16 * i, 16) != 0)
			(*bad)++;
	return r;
}

/* probe_x87, checked: *bad = the x87 registers that changed (compared as 80-bit values). */
static long check_x87(long nr, int nid, unsigned seed, int *bad)
{
	long double in[8], out[8];
	for (int i = 0; i < 8; i++)
		in[i] = (long double)(seed + 1) / (long double)(3 + i) + (long double)i * 1e300L * 1e300L;
	memset(out, 0, sizeof out);
	long r;
	r = probe_x87(nr, nid, in, out);
	*bad = 0;
	for (int i = 0; i < 8; i++)
		if (memcmp(&in[i], &out[i], 10) != 0)
			(*bad)++;
	return r;
}

#endif
