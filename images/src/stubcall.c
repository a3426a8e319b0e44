/* The one page of the kernel area a program can reach under popvmm besides the vDSO's (0x8000 to
 * 0xbfff, see vmm/src/kernel/vdso.rs): the system-call stub, read-only and executable at user
 * level (PVM runs `syscall`'s target at CPL3). Calling it directly is a
 * system call like any other, with the caller's own rcx as the return address: nothing the
 * `syscall` instruction does not give already. Writing to it is a fault. Natively the page is not
 * mapped: the program says so and checks nothing else. */
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define STUB 0x7000UL

static sigjmp_buf back;
static void on_segv(int sig) { siglongjmp(back, sig); }

static long call_stub(long nr) {
    long r;
    asm volatile("lea 1f(%%rip), %%rcx\n\t"
                 "pushfq\n\tpop %%r11\n\t"
                 "jmp *%2\n"
                 "1:"
                 : "=a"(r)
                 : "a"(nr), "r"(STUB)
                 : "rcx", "r11", "memory");
    return r;
}

int main(void) {
    signal(SIGSEGV, on_segv);
    if (sigsetjmp(back, 1) == 0) {
        volatile unsigned char *p = (volatile unsigned char *)STUB;
        unsigned char b0 = p[0], b1 = p[1];
        printf("stub page readable: %02x %02x\n", b0, b1);
    } else {
        printf("stub page not mapped (natively)\n");
        return 0;
    }
    long pid = call_stub(SYS_getpid);
    printf("getpid through the stub %s getpid\n", pid == getpid() ? "equals" : "DIFFERS FROM");
    if (sigsetjmp(back, 1) == 0) {
        *(volatile unsigned char *)STUB = 0x90;
        printf("the stub page took a write\n");
        return 1;
    }
    printf("a write to the stub page faults\n");
    /* The exception stubs just below, the GDT, and the page tables after the vDSO. */
    static const unsigned long kernel[] = {STUB - 0x1000, 0x1000, 0x10000};
    for (unsigned i = 0; i < sizeof kernel / sizeof kernel[0]; i++) {
        if (sigsetjmp(back, 1) == 0) {
            volatile unsigned char v = *(volatile unsigned char *)kernel[i];
            printf("the kernel area at %#lx is readable (%02x)\n", kernel[i], v);
            return 1;
        }
    }
    printf("the rest of the kernel area faults\n");
    return 0;
}
