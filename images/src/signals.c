/* Signal handlers: raise with a handler, SIGSEGV/SIGFPE/SIGILL recovered with siglongjmp, a
 * sigaltstack, sa_mask, a signal pending while blocked, FPU state preserved across a handler, and
 * a handler that gives up (re-raises with the default action). */
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static volatile sig_atomic_t got;
static sigjmp_buf env;
static char altstack[65536];

static void on_usr1(int s) {
    volatile double x = 0;
    for (int i = 1; i < 100; i++)
        x += 1.0 / i; /* clobbers FPU/SSE registers */
    got = s;
}

static void on_usr2(int s, siginfo_t *si, void *uc) {
    (void)uc;
    sigset_t now;
    sigprocmask(SIG_BLOCK, NULL, &now);
    int on_alt = (char *)&s >= altstack && (char *)&s < altstack + sizeof altstack;
    printf("usr2: signo %d code %s, USR1 blocked in handler %d, on altstack %d\n", si->si_signo,
           si->si_code == SI_TKILL ? "SI_TKILL" : "other", sigismember(&now, SIGUSR1), on_alt);
    got = s;
}

static void on_fault(int s, siginfo_t *si, void *uc) {
    (void)si;
    (void)uc;
    siglongjmp(env, s);
}

static void on_segv_give_up(int s) {
    printf("giving up on signal %d\n", s);
    fflush(stdout);
    signal(s, SIG_DFL); /* returning re-executes the fault, which now kills */
}

static void install(int sig, void (*fn)(int, siginfo_t *, void *), int flags) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = fn;
    sa.sa_flags = SA_SIGINFO | flags;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGUSR1);
    sigaction(sig, &sa, NULL);
}

int main(void) {
    volatile double keep = 3.25;
    signal(SIGUSR1, on_usr1);
    raise(SIGUSR1);
    printf("after raise: got %d, keep %.2f\n", (int)got, keep);

    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
    sigaltstack(&ss, NULL);
    install(SIGUSR2, on_usr2, SA_ONSTACK);
    raise(SIGUSR2);

    /* Pending while blocked, delivered when unblocked. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    got = 0;
    sigprocmask(SIG_BLOCK, &set, NULL);
    raise(SIGUSR1);
    printf("while blocked: got %d\n", (int)got);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    printf("after unblock: got %d\n", (int)got);

    install(SIGSEGV, on_fault, 0);
    install(SIGFPE, on_fault, 0);
    install(SIGILL, on_fault, 0);
    int s;
    if ((s = sigsetjmp(env, 1)) == 0)
        *(volatile int *)0 = 1;
    else
        printf("recovered from signal %d (null write)\n", s);
    char *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if ((s = sigsetjmp(env, 1)) == 0)
        *(volatile char *)ro = 1;
    else
        printf("recovered from signal %d (read-only page)\n", s);
    volatile int zero = 0;
    if ((s = sigsetjmp(env, 1)) == 0)
        printf("%d\n", 100 / zero);
    else
        printf("recovered from signal %d (divide by zero)\n", s);
    if ((s = sigsetjmp(env, 1)) == 0)
        __asm__ volatile("ud2");
    else
        printf("recovered from signal %d (ud2)\n", s);
    printf("keep %.2f\n", keep);

    signal(SIGSEGV, on_segv_give_up);
    volatile int *volatile bad = (int *)16;
    *bad = 1;
    printf("not reached\n");
    return 0;
}
