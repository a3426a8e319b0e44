/* Read-ahead on islands: the main thread (island 0) writes large arrays; one thread (island 1
 * with the round-robin placement) then reads them in sequential, strided and descending order,
 * writes a fresh buffer of its own from start to end (first touches), and, after the main thread
 * has rewritten the first array, reads it again. Every sum is printed, so the output is the same
 * natively and on islands. Usage: seqread [PAGES] (default 4096 pages of 4 KiB per array). */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define PAGE 4096
#define WORDS (PAGE / sizeof(uint64_t))

static size_t pages = 4096;
static uint64_t *a, *b, *c;
static pthread_barrier_t bar;

static void fill(uint64_t *x, uint64_t seed) {
    for (size_t i = 0; i < pages * WORDS; i++) x[i] = seed * 1000003 + i * 7919;
}

/* Sums every 8th word of the pages first, first+step, ... (step may be negative). */
static uint64_t sum_pages(const uint64_t *x, long first, long step, size_t n) {
    uint64_t s = 0;
    for (size_t k = 0; k < n; k++) {
        const uint64_t *p = x + (size_t)(first + (long)k * step) * WORDS;
        for (size_t w = 0; w < WORDS; w += 8) s += p[w] ^ (k + w);
    }
    return s;
}

static void *reader(void *arg) {
    (void)arg;
    printf("sequential: %016llx\n", (unsigned long long)sum_pages(a, 0, 1, pages));
    printf("stride 3: %016llx\n", (unsigned long long)sum_pages(b, 0, 3, pages / 3));
    printf("descending: %016llx\n",
           (unsigned long long)sum_pages(c, (long)pages - 1, -1, pages));
    /* First touches: a buffer nobody held, written from start to end, then read. */
    uint64_t *mine = malloc(pages * PAGE);
    if (!mine) return (void *)1;
    fill(mine, 4);
    printf("written here: %016llx\n", (unsigned long long)sum_pages(mine, 0, 1, pages));
    free(mine);
    pthread_barrier_wait(&bar); /* the main thread rewrites a */
    pthread_barrier_wait(&bar);
    printf("rewritten: %016llx\n", (unsigned long long)sum_pages(a, 0, 1, pages));
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1) pages = strtoul(argv[1], NULL, 0);
    if (pages < 3) pages = 3;
    a = malloc(pages * PAGE);
    b = malloc(pages * PAGE);
    c = malloc(pages * PAGE);
    if (!a || !b || !c) return 1;
    fill(a, 1);
    fill(b, 2);
    fill(c, 3);
    pthread_barrier_init(&bar, NULL, 2);
    pthread_t t;
    if (pthread_create(&t, NULL, reader, NULL) != 0) return 2;
    pthread_barrier_wait(&bar);
    fill(a, 5);
    pthread_barrier_wait(&bar);
    void *r;
    pthread_join(t, &r);
    printf("done: %s\n", r == NULL ? "ok" : "failed");
    return r == NULL ? 0 : 3;
}
