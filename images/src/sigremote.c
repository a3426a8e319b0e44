/* A signal to a thread on another island: pthread_kill (tgkill) must find the thread and its
 * handler must run there. Does not hang when the signal is lost: main gives up after a while and
 * stops the thread through memory.
 *   sigremote */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t got;
static volatile int started, stop;

static void on_usr1(int s) { got = s; }

static void nap(void) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
}

static void *target(void *arg) {
    (void)arg;
    started = 1;
    while (!got && !stop)
        nap();
    return NULL;
}

int main(void) {
    signal(SIGUSR1, on_usr1);
    pthread_t t;
    pthread_create(&t, NULL, target, NULL);
    while (!started)
        nap();
    int r = pthread_kill(t, SIGUSR1);
    printf("pthread_kill: %s\n", r == 0 ? "0" : strerror(r));
    for (int i = 0; i < 10000 && !got; i++) /* up to ~10 s */
        nap();
    stop = 1;
    pthread_join(t, NULL);
    printf("handler ran: signal %d\n", (int)got);
    return 0;
}
