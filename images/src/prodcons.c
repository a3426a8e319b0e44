/* A contended producer/consumer: one pthread mutex and two condition variables around a 16-slot
 * ring buffer. Usage: prodcons [THREADS [ITEMS]]   (defaults 4 and 100000)
 * THREADS/2 producers (at least one) and the rest consumers (at least one). The items are split
 * among the producers as evenly as possible; a producer with a share of n pushes 1, 2, ..., n.
 * Consumers pop until every item has been popped and add up what they popped. Prints the total
 * count and sum, which must equal ITEMS and the sum of n(n+1)/2 over the shares; exit 0 if so. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define SLOTS 16

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t not_full = PTHREAD_COND_INITIALIZER;
static pthread_cond_t not_empty = PTHREAD_COND_INITIALIZER;
static long ring[SLOTS];
static int head, count; /* guarded by lock */
static long popped;     /* items popped so far, guarded by lock */
static long items;
static long total_count, total_sum; /* guarded by lock */

struct producer {
    pthread_t th;
    long share;
};

static void *produce(void *arg) {
    struct producer *p = arg;
    for (long v = 1; v <= p->share; v++) {
        pthread_mutex_lock(&lock);
        while (count == SLOTS)
            pthread_cond_wait(&not_full, &lock);
        ring[(head + count) % SLOTS] = v;
        count++;
        pthread_cond_signal(&not_empty);
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

static void *consume(void *arg) {
    (void)arg;
    long n = 0, sum = 0;
    pthread_mutex_lock(&lock);
    for (;;) {
        while (count == 0 && popped < items)
            pthread_cond_wait(&not_empty, &lock);
        if (count == 0) /* popped == items: everything has been consumed */
            break;
        long v = ring[head];
        head = (head + 1) % SLOTS;
        count--;
        popped++;
        n++;
        sum += v;
        pthread_cond_signal(&not_full);
        if (popped == items) /* wake the other consumers so they see the end */
            pthread_cond_broadcast(&not_empty);
    }
    total_count += n;
    total_sum += sum;
    pthread_mutex_unlock(&lock);
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    items = argc > 2 ? atol(argv[2]) : 100000;
    if (threads < 2) threads = 2;
    if (items < 0) items = 0;
    int nprod = threads / 2, ncons = threads - nprod;

    struct producer *prod = calloc((size_t)nprod, sizeof *prod);
    pthread_t *cons = calloc((size_t)ncons, sizeof *cons);
    if (!prod || !cons) {
        fprintf(stderr, "prodcons: out of memory\n");
        return 1;
    }
    long expect_sum = 0;
    for (int i = 0; i < nprod; i++) {
        prod[i].share = items / nprod + (i < items % nprod);
        expect_sum += prod[i].share * (prod[i].share + 1) / 2;
    }
    for (int i = 0; i < ncons; i++)
        if (pthread_create(&cons[i], NULL, consume, NULL) != 0) {
            fprintf(stderr, "prodcons: pthread_create failed\n");
            return 1;
        }
    for (int i = 0; i < nprod; i++)
        if (pthread_create(&prod[i].th, NULL, produce, &prod[i]) != 0) {
            fprintf(stderr, "prodcons: pthread_create failed\n");
            return 1;
        }
    for (int i = 0; i < nprod; i++)
        pthread_join(prod[i].th, NULL);
    for (int i = 0; i < ncons; i++)
        pthread_join(cons[i], NULL);

    int ok = total_count == items && total_sum == expect_sum;
    printf("prodcons: %d producers, %d consumers, %d slots\n", nprod, ncons, SLOTS);
    printf("items %ld (expected %ld), sum %ld (expected %ld): %s\n", total_count, items, total_sum,
           expect_sum, ok ? "ok" : "MISMATCH");
    return ok ? 0 : 1;
}
