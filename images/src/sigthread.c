/* Signals between threads: to a thread computing, to one blocked on a condition variable, to one
 * asleep, and pthread_cancel of a sleeping thread. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t flag1, flag2;
static volatile int started;
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t c = PTHREAD_COND_INITIALIZER;
static int done;

static void on_usr1(int s) { flag1 = s; }
static void on_usr2(int s) { flag2 = s; }

static void *spinner(void *arg) {
    (void)arg;
    started = 1;
    volatile unsigned long n = 0;
    while (!flag1)
        n++; /* pure computation: the signal must interrupt guest code */
    return NULL;
}

static void *waiter(void *arg) {
    (void)arg;
    pthread_mutex_lock(&m);
    started = 1;
    while (!done)
        pthread_cond_wait(&c, &m);
    pthread_mutex_unlock(&m);
    return NULL;
}

static void *sleeper(void *arg) {
    (void)arg;
    started = 1;
    struct timespec ts = {30, 0}, rem = {0, 0};
    int r = nanosleep(&ts, &rem);
    return (void *)(long)(r == -1 && rem.tv_sec > 0 && rem.tv_sec <= 30);
}

static void *cancellee(void *arg) {
    (void)arg;
    started = 1;
    for (;;)
        sleep(30);
    return NULL;
}

static void wait_started(void) {
    while (!started)
        sched_yield();
    started = 0;
    usleep(50000); /* let it reach its loop or its blocking call */
}

int main(void) {
    signal(SIGUSR1, on_usr1);
    signal(SIGUSR2, on_usr2);
    pthread_t t;
    void *ret;

    pthread_create(&t, NULL, spinner, NULL);
    wait_started();
    pthread_kill(t, SIGUSR1);
    pthread_join(t, NULL);
    printf("spinner stopped by signal %d\n", (int)flag1);

    pthread_create(&t, NULL, waiter, NULL);
    wait_started();
    pthread_kill(t, SIGUSR2);
    while (!flag2)
        usleep(1000);
    printf("handler ran in the waiting thread: signal %d\n", (int)flag2);
    pthread_mutex_lock(&m);
    done = 1;
    pthread_cond_broadcast(&c);
    pthread_mutex_unlock(&m);
    pthread_join(t, NULL);

    pthread_create(&t, NULL, sleeper, NULL);
    wait_started();
    pthread_kill(t, SIGUSR1);
    pthread_join(t, &ret);
    printf("sleep interrupted with time left: %ld\n", (long)ret);

    pthread_create(&t, NULL, cancellee, NULL);
    wait_started();
    pthread_cancel(t);
    pthread_join(t, &ret);
    printf("cancelled: %d\n", ret == PTHREAD_CANCELED);
    return 0;
}
