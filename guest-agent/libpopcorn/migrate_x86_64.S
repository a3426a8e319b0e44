/*
 * long __popcorn_migrate_here(long nr, long nid, struct regset_x86_64 *regs)
 *
 * Fills *regs so that the thread, resumed from it on the destination, returns 0 from this
 * function there, then makes system call `nr` (popcorn_migrate) with (nid, regs).
 *
 *   rip     .Lresumed, below
 *   rax     0: what the caller sees on the destination
 *   rdi     regs: .Lresumed reloads xmm0-15 from it
 *   rsp     the stack pointer at entry (pointing at our return address), so `ret` works there
 *   rbx, rbp, r12-r15   the callee-saved registers of the caller, as they are now
 *   the others          their current values (the ABI does not keep them across a call)
 *   xmm0-15, segments, rflags   their current values
 *
 * The stack is untouched between the capture and the system call, so the stack the destination
 * resumes on is this one, byte for byte. On the source the call returns only when it failed
 * (-errno in rax), or when a kernel returned 0 without resuming from *regs (then we return 1).
 * Position independent: links into static, static-PIE, glibc and musl programs alike.
 */
	.text
	.globl __popcorn_migrate_here
	.type __popcorn_migrate_here, @function
	.p2align 4
__popcorn_migrate_here:
	.cfi_startproc
	lea .Lresumed(%rip), %rax
	mov %rax, 0(%rdx)      /* rip */
	movq $0, 8(%rdx)       /* rax */
	mov %rdx, 16(%rdx)     /* rdx */
	mov %rcx, 24(%rdx)     /* rcx */
	mov %rbx, 32(%rdx)     /* rbx */
	mov %rsi, 40(%rdx)     /* rsi */
	mov %rdx, 48(%rdx)     /* rdi: the regset, for .Lresumed */
	mov %rbp, 56(%rdx)     /* rbp */
	mov %rsp, 64(%rdx)     /* rsp */
	mov %r8, 72(%rdx)
	mov %r9, 80(%rdx)
	mov %r10, 88(%rdx)
	mov %r11, 96(%rdx)
	mov %r12, 104(%rdx)
	mov %r13, 112(%rdx)
	mov %r14, 120(%rdx)
	mov %r15, 128(%rdx)
	movdqu %xmm0, 208(%rdx)
	movdqu %xmm1, 224(%rdx)
	movdqu %xmm2, 240(%rdx)
	movdqu %xmm3, 256(%rdx)
	movdqu %xmm4, 272(%rdx)
	movdqu %xmm5, 288(%rdx)
	movdqu %xmm6, 304(%rdx)
	movdqu %xmm7, 320(%rdx)
	movdqu %xmm8, 336(%rdx)
	movdqu %xmm9, 352(%rdx)
	movdqu %xmm10, 368(%rdx)
	movdqu %xmm11, 384(%rdx)
	movdqu %xmm12, 400(%rdx)
	movdqu %xmm13, 416(%rdx)
	movdqu %xmm14, 432(%rdx)
	movdqu %xmm15, 448(%rdx)
	/* Segment selectors: cs, ss, ds, es, fs, gs (u32 each). */
	xor %eax, %eax
	mov %cs, %ax
	mov %eax, 592(%rdx)
	mov %ss, %ax
	mov %eax, 596(%rdx)
	mov %ds, %ax
	mov %eax, 600(%rdx)
	mov %es, %ax
	mov %eax, 604(%rdx)
	mov %fs, %ax
	mov %eax, 608(%rdx)
	mov %gs, %ax
	mov %eax, 612(%rdx)
	pushfq
	.cfi_adjust_cfa_offset 8
	popq 616(%rdx)
	.cfi_adjust_cfa_offset -8
	/* popcorn_migrate(nid, regs) */
	mov %rdi, %rax
	mov %rsi, %rdi
	mov %rdx, %rsi
	syscall
	/* Still on the source: -errno, or 0 from a kernel that ignored uregs (say so: 1). */
	test %rax, %rax
	jnz 1f
	mov $1, %eax
1:	ret
.Lresumed:
	/* On the destination, every register from *regs: rdi is regs. */
	movdqu 208(%rdi), %xmm0
	movdqu 224(%rdi), %xmm1
	movdqu 240(%rdi), %xmm2
	movdqu 256(%rdi), %xmm3
	movdqu 272(%rdi), %xmm4
	movdqu 288(%rdi), %xmm5
	movdqu 304(%rdi), %xmm6
	movdqu 320(%rdi), %xmm7
	movdqu 336(%rdi), %xmm8
	movdqu 352(%rdi), %xmm9
	movdqu 368(%rdi), %xmm10
	movdqu 384(%rdi), %xmm11
	movdqu 400(%rdi), %xmm12
	movdqu 416(%rdi), %xmm13
	movdqu 432(%rdi), %xmm14
	movdqu 448(%rdi), %xmm15
	xor %eax, %eax
	ret
	.cfi_endproc
	.size __popcorn_migrate_here, .-__popcorn_migrate_here

	.section .note.GNU-stack, "", @progbits
