/* Threads for transparent migration (`popvmm ctl migrate`): a spinner in a tight arithmetic
 * loop, and a waiter blocked on a condition variable (a futex wait). Each prints its tid on a
 * line of its own when it starts, and the island it ends on. The spinner stops after it has seen
 * `moves` changes of island (sched_getcpu, checked every few million iterations); the main thread
 * then wakes the waiter and joins both. The arithmetic is checked against a second computation,
 * so a register lost in a migration shows. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int go;
static int moves = 2;

static void *spinner(void *a) {
    (void)a;
    printf("spinner %ld\n", (long)syscall(SYS_gettid));
    fflush(stdout);
    unsigned long x = 1, y = 1, n = 0;
    double f = 1.0;
    int seen = sched_getcpu(), changes = 0;
    while (changes < moves) {
        for (int i = 0; i < 4000000; i++) {
            x = x * 6364136223846793005UL + 1442695040888963407UL;
            f = f * 1.0000001 + 0.5;
            n++;
        }
        int c = sched_getcpu();
        if (c != seen) {
            seen = c;
            changes++;
            printf("spinner sees island %d\n", c);
            fflush(stdout);
        }
    }
    for (unsigned long i = 0; i < n; i++) y = y * 6364136223846793005UL + 1442695040888963407UL;
    double g = 1.0;
    for (unsigned long i = 0; i < n; i++) g = g * 1.0000001 + 0.5;
    if (x == y && f == g)
        printf("spinner ends on island %d, arithmetic intact\n", sched_getcpu());
    else
        printf("spinner ends on island %d, ARITHMETIC WRONG: integer %s (%lx %lx), floating point "
               "%s (%a %a), %lu iterations\n",
               sched_getcpu(), x == y ? "right" : "wrong", x, y, f == g ? "right" : "wrong", f, g,
               n);
    return NULL;
}

static void *waiter(void *a) {
    (void)a;
    pthread_mutex_lock(&m);
    printf("waiter %ld\n", (long)syscall(SYS_gettid));
    fflush(stdout);
    while (!go) pthread_cond_wait(&cv, &m);
    pthread_mutex_unlock(&m);
    printf("waiter woke on island %d\n", sched_getcpu());
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1) moves = atoi(argv[1]);
    pthread_t s, w;
    pthread_create(&w, NULL, waiter, NULL);
    usleep(50000);
    pthread_create(&s, NULL, spinner, NULL);
    pthread_join(s, NULL);
    pthread_mutex_lock(&m);
    go = 1;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&m);
    pthread_join(w, NULL);
    return 0;
}
