/* NAS Parallel Benchmarks IS (integer sort), OpenMP, written from the NPB 3.x specification.
 * Usage: npb_is [S|W]   (default S); threads from OMP_NUM_THREADS.
 *
 * Keys: NUM_KEYS integers in [0, MAX_KEY), key i = (MAX_KEY/4) * (r[4i]+r[4i+1]+r[4i+2]+r[4i+3])
 * where r is the NPB generator x_{k+1} = 5^13 x_k mod 2^46 from 314159265. Each of 10 iterations
 * modifies two keys, ranks all keys (counting sort), and checks the rank of five test keys against
 * the published values; a full verification sorts the keys with the last ranking and checks the
 * order. Everything is integer, so the output does not depend on the thread count.
 *
 * Parallel structure (one parallel region, explicit barriers, no atomics): each thread counts the
 * keys of its static slice into its own histogram row; each thread then sums the histogram columns
 * of its slice of the key range, prefix-sums them, and adds the totals of the slices before it. */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ITERATIONS 10
#define TEST_ARRAY_SIZE 5
#define MASK46 ((1ULL << 46) - 1)

static char cls;
static int total_keys_log2, max_key_log2;
static long num_keys;
static int max_key;
static int test_index_array[TEST_ARRAY_SIZE], test_rank_array[TEST_ARRAY_SIZE];

static const int S_test_index_array[TEST_ARRAY_SIZE] = {48427, 17148, 23627, 62548, 4431};
static const int S_test_rank_array[TEST_ARRAY_SIZE] = {0, 18, 346, 64917, 65463};
static const int W_test_index_array[TEST_ARRAY_SIZE] = {357773, 934767, 875723, 898999, 404505};
static const int W_test_rank_array[TEST_ARRAY_SIZE] = {1249, 11698, 1039987, 1043896, 1048018};

static int *key_array;  /* the keys */
static int *sorted;     /* full verification: the keys in order */
static int *key_buff1;  /* key_buff1[k] = number of keys <= k, after a ranking */
static int **hist;      /* hist[t][k]: keys of value k in thread t's slice */
static long *slice_tot; /* per thread: the keys in its slice of the key range (padded) */

static uint64_t lcg_mul(uint64_t x, uint64_t a) { return (x * a) & MASK46; }
static uint64_t lcg_pow(uint64_t a, uint64_t n) {
    uint64_t r = 1;
    while (n) {
        if (n & 1) r = lcg_mul(r, a);
        a = lcg_mul(a, a);
        n >>= 1;
    }
    return r;
}

/* [lo, hi) of thread t's static slice of n items. */
static void slice(long n, int t, int nt, long *lo, long *hi) {
    *lo = n * t / nt;
    *hi = n * (t + 1) / nt;
}

static void create_seq(int t, int nt) {
    const uint64_t a = 1220703125ULL;
    long lo, hi;
    slice(num_keys, t, nt, &lo, &hi);
    uint64_t x = lcg_mul(314159265ULL, lcg_pow(a, 4 * (uint64_t)lo));
    int k = max_key / 4;
    for (long i = lo; i < hi; i++) {
        double s;
        x = lcg_mul(x, a);
        s = x * 0x1p-46;
        x = lcg_mul(x, a);
        s += x * 0x1p-46;
        x = lcg_mul(x, a);
        s += x * 0x1p-46;
        x = lcg_mul(x, a);
        s += x * 0x1p-46;
        key_array[i] = (int)(k * s);
    }
}

/* Ranks all keys into key_buff1 (cumulative counts). Called by every thread of the team; starts
 * and ends with all threads past a barrier. */
static void rank_keys(int t, int nt) {
    long lo, hi;
    int *h = hist[t];
    memset(h, 0, sizeof(int) * (size_t)max_key);
    slice(num_keys, t, nt, &lo, &hi);
    for (long i = lo; i < hi; i++)
        h[key_array[i]]++;
#pragma omp barrier
    long klo, khi, run = 0;
    slice(max_key, t, nt, &klo, &khi);
    for (long k = klo; k < khi; k++) {
        long c = 0;
        for (int u = 0; u < nt; u++)
            c += hist[u][k];
        run += c;
        key_buff1[k] = (int)run;
    }
    slice_tot[t * 8] = run;
#pragma omp barrier
    long off = 0;
    for (int u = 0; u < t; u++)
        off += slice_tot[u * 8];
    for (long k = klo; k < khi; k++)
        key_buff1[k] += (int)off;
#pragma omp barrier
}

/* The partial verification of one iteration (run by one thread). Returns the number passed. */
static int partial_verify(int iteration, const int *pv) {
    int passed = 0;
    for (int i = 0; i < TEST_ARRAY_SIZE; i++) {
        int k = pv[i];
        if (0 < k && k <= num_keys - 1) {
            int key_rank = key_buff1[k - 1];
            int want;
            if (cls == 'S')
                want = i <= 2 ? test_rank_array[i] + iteration : test_rank_array[i] - iteration;
            else
                want = i < 2 ? test_rank_array[i] + (iteration - 2) : test_rank_array[i] - iteration;
            if (key_rank != want)
                printf(" Failed partial verification: iteration %d, test key %d\n", iteration, i);
            else
                passed++;
        }
    }
    return passed;
}

int main(int argc, char **argv) {
    cls = argc > 1 ? argv[1][0] : 'S';
    if (cls == 's') cls = 'S';
    if (cls == 'w') cls = 'W';
    if (cls == 'S') {
        total_keys_log2 = 16;
        max_key_log2 = 11;
        memcpy(test_index_array, S_test_index_array, sizeof test_index_array);
        memcpy(test_rank_array, S_test_rank_array, sizeof test_rank_array);
    } else if (cls == 'W') {
        total_keys_log2 = 20;
        max_key_log2 = 16;
        memcpy(test_index_array, W_test_index_array, sizeof test_index_array);
        memcpy(test_rank_array, W_test_rank_array, sizeof test_rank_array);
    } else {
        fprintf(stderr, "usage: npb_is [S|W]\n");
        return 2;
    }
    num_keys = 1L << total_keys_log2;
    max_key = 1 << max_key_log2;
    int maxt = omp_get_max_threads();

    key_array = malloc(sizeof(int) * (size_t)num_keys);
    sorted = malloc(sizeof(int) * (size_t)num_keys);
    key_buff1 = malloc(sizeof(int) * (size_t)max_key);
    hist = malloc(sizeof(int *) * (size_t)maxt);
    for (int t = 0; t < maxt; t++)
        hist[t] = malloc(sizeof(int) * (size_t)max_key);
    slice_tot = calloc((size_t)maxt * 8, sizeof(long));
    long *bad_part = calloc((size_t)maxt * 8, sizeof(long));
    if (!key_array || !sorted || !key_buff1 || !slice_tot || !bad_part) {
        fprintf(stderr, "npb_is: out of memory\n");
        return 1;
    }

    printf(" NAS Parallel Benchmarks (NPB 3.x spec, OpenMP C) - IS Benchmark\n");
    printf(" Class           = %c\n", cls);
    printf(" Size            = %ld\n", num_keys);
    printf(" Max key         = %d\n", max_key);
    printf(" Iterations      = %d\n", MAX_ITERATIONS);
    printf(" Threads         = %d\n", maxt);

    int passed_verification = 0;
    int pv[TEST_ARRAY_SIZE];
    long full_bad = 0;
    int team = 0;

#pragma omp parallel
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
#pragma omp master
        team = nt;
        create_seq(t, nt);
#pragma omp barrier
        for (int it = 1; it <= MAX_ITERATIONS; it++) {
#pragma omp master
            {
                key_array[it] = it;
                key_array[it + MAX_ITERATIONS] = max_key - it;
                for (int i = 0; i < TEST_ARRAY_SIZE; i++)
                    pv[i] = key_array[test_index_array[i]];
            }
#pragma omp barrier
            rank_keys(t, nt);
#pragma omp master
            passed_verification += partial_verify(it, pv);
            /* The next iteration's master section and barrier order this before any rewrite. */
        }
        /* Full verification: sort with the last ranking (stable counting-sort scatter). Each thread
         * turns the columns of its key range into starting positions per thread. */
#pragma omp barrier
        long klo, khi;
        slice(max_key, t, nt, &klo, &khi);
        for (long k = klo; k < khi; k++) {
            long pos = k > 0 ? key_buff1[k - 1] : 0;
            for (int u = 0; u < nt; u++) {
                int c = hist[u][k];
                hist[u][k] = (int)pos;
                pos += c;
            }
        }
#pragma omp barrier
        long lo, hi;
        slice(num_keys, t, nt, &lo, &hi);
        int *h = hist[t];
        for (long i = lo; i < hi; i++)
            sorted[h[key_array[i]]++] = key_array[i];
#pragma omp barrier
        long bad = 0;
        for (long i = lo > 0 ? lo : 1; i < hi; i++)
            if (sorted[i - 1] > sorted[i])
                bad++;
        bad_part[t * 8] = bad;
    }
    for (int u = 0; u < team; u++)
        full_bad += bad_part[u * 8];
    if (full_bad != 0)
        printf(" Full_verify: number of keys out of sort: %ld\n", full_bad);
    else
        passed_verification++;

    long checksum = 0;
    for (long i = 0; i < num_keys; i += num_keys / 64)
        checksum += (i + 1) * (long)sorted[i];

    int ok = passed_verification == TEST_ARRAY_SIZE * MAX_ITERATIONS + 1;
    printf(" Partial verif.  = %d of %d\n", passed_verification - (full_bad == 0),
           TEST_ARRAY_SIZE * MAX_ITERATIONS);
    printf(" Full verif.     = %s\n", full_bad == 0 ? "sorted" : "NOT sorted");
    printf(" Sample checksum = %ld\n", checksum);
    printf(" Verification    = %s\n", ok ? "SUCCESSFUL" : "UNSUCCESSFUL");
    return ok ? 0 : 1;
}
