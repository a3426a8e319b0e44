/* FPU/SSE state across signal handlers: the main thread computes in xmm registers while another
 * thread interrupts it with signals whose handler does floating-point work of its own. The
 * result must be the one computed without interruptions (the kernel restores the interrupted
 * FPU state at sigreturn). */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

static volatile sig_atomic_t handled;
static volatile double sink;
static volatile int done;
static pid_t main_tid;

static void handler(int sig) {
    (void)sig;
    double a[16];
    for (int i = 0; i < 16; i++) a[i] = i * 3.25 + sig;
    double s = 0;
    for (int r = 0; r < 100; r++)
        for (int i = 0; i < 16; i++) s = s * 0.5 + a[i] * 1.0001;
    sink = s;
    handled++;
}

static double compute(long n) {
    double x = 1.0, y = 2.0, z = 0.5;
    for (long i = 0; i < n; i++) {
        x = x * 1.0000001 + y * 0.25;
        y = y * 0.9999999 + z;
        z = z * 1.00000005 - 0.0000001;
    }
    return x + y * 3 + z * 7;
}

static void *pester(void *arg) {
    (void)arg;
    while (!done) {
        syscall(SYS_tgkill, getpid(), main_tid, SIGUSR1);
        usleep(2000);
    }
    return NULL;
}

int main(void) {
    const long n = 40000000;
    double expect = compute(n);
    signal(SIGUSR1, handler);
    main_tid = (pid_t)syscall(SYS_gettid);
    pthread_t t;
    pthread_create(&t, NULL, pester, NULL);
    double got;
    do {
        got = compute(n);
    } while (handled < 5);
    done = 1;
    pthread_join(t, NULL);
    printf("interrupted computation %s the uninterrupted one\n",
           got == expect ? "equals" : "DIFFERS FROM");
    return got == expect ? 0 : 1;
}
