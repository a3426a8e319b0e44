/* pthreads: atomics, a mutex, a condition variable, thread-local storage, joins. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#define THREADS 4
#define ITERS 200000

static atomic_long counter;
static long locked_counter;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int ready;
static __thread long tls_value;

static void *worker(void *arg) {
    long id = (long)arg;
    pthread_mutex_lock(&lock);
    while (!ready)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < ITERS; i++) {
        atomic_fetch_add(&counter, 1);
        tls_value += id;
        if (i % 16 == 0) {
            pthread_mutex_lock(&lock);
            locked_counter++;
            pthread_mutex_unlock(&lock);
        }
    }
    return (void *)tls_value;
}

int main(void) {
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)(i + 1)) != 0) {
            perror("pthread_create");
            return 1;
        }
    pthread_mutex_lock(&lock);
    ready = 1;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    long tls_sum = 0;
    for (int i = 0; i < THREADS; i++) {
        void *ret;
        pthread_join(t[i], &ret);
        tls_sum += (long)ret;
    }
    printf("atomic counter: %ld\n", atomic_load(&counter));
    printf("locked counter: %ld\n", locked_counter);
    printf("tls sum: %ld\n", tls_sum);
    printf("main tls: %ld\n", tls_value);
    return 0;
}
