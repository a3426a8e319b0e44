/* malloc-heavy: small and large blocks (brk and mmap), realloc (mremap), calloc, free. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

int main(void) {
    enum { SLOTS = 512 };
    unsigned char *p[SLOTS] = {0};
    size_t sz[SLOTS] = {0};
    uint64_t sum = 0;
    for (int round = 0; round < 20000; round++) {
        int i = next() % SLOTS;
        if (p[i]) {
            for (size_t k = 0; k < sz[i]; k += 61)
                sum += p[i][k];
            free(p[i]);
            p[i] = NULL;
        } else {
            size_t n = (next() % 8 == 0) ? 100000 + next() % 400000 : 1 + next() % 2000;
            p[i] = malloc(n);
            if (!p[i]) {
                printf("malloc failed\n");
                return 1;
            }
            memset(p[i], (int)(n & 0xff), n);
            sz[i] = n;
        }
    }
    /* realloc a large block up and down: glibc uses mremap for mmapped chunks. */
    char *big = malloc(1 << 20);
    memset(big, 7, 1 << 20);
    big = realloc(big, 8 << 20);
    memset(big + (1 << 20), 9, 7 << 20);
    for (size_t k = 0; k < (8 << 20); k += 4096)
        sum += (unsigned char)big[k];
    big = realloc(big, 1 << 16);
    sum += (unsigned char)big[100];
    free(big);
    int *z = calloc(1 << 18, sizeof(int));
    for (int k = 0; k < (1 << 18); k++)
        sum += z[k];
    free(z);
    for (int i = 0; i < SLOTS; i++)
        free(p[i]);
    printf("checksum: %llu\n", (unsigned long long)sum);
    return 0;
}
