/* Robust mutexes: a thread that dies holding one leaves it EOWNERDEAD for the next locker, also
 * when that locker is already waiting. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static pthread_mutex_t m;
static volatile int locked;

static void *die_holding(void *arg) {
    pthread_mutex_lock(&m);
    locked = 1;
    if (arg)
        usleep(100000); /* main is blocked on the mutex by now */
    return NULL; /* exits without unlocking */
}

static void round_trip(int wait_first) {
    pthread_t t;
    locked = 0;
    pthread_create(&t, NULL, die_holding, wait_first ? (void *)1 : NULL);
    if (!wait_first)
        pthread_join(t, NULL);
    else
        while (!locked)
            usleep(1000);
    int r = pthread_mutex_lock(&m);
    printf("%s: lock -> %s\n", wait_first ? "waiting" : "after exit", r == EOWNERDEAD ? "EOWNERDEAD" : "other");
    if (r == EOWNERDEAD)
        pthread_mutex_consistent(&m);
    pthread_mutex_unlock(&m);
    if (wait_first)
        pthread_join(t, NULL);
}

int main(void) {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&m, &a);
    round_trip(0);
    round_trip(1);
    printf("relock: %d\n", pthread_mutex_lock(&m));
    return 0;
}
