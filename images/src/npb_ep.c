/* NAS Parallel Benchmarks EP (embarrassingly parallel), OpenMP, written from the NPB 3.x
 * specification. Usage: npb_ep [S|W]   (default S); threads from OMP_NUM_THREADS.
 *
 * 2^(M+1) uniform numbers from the NPB generator x_{k+1} = 5^13 x_k mod 2^46 (seed 271828183),
 * taken in pairs (x1, x2) = 2u - 1; pairs inside the unit circle give Gaussian deviates by the
 * Marsaglia polar method. The benchmark sums them (sx, sy) and counts them by the square annulus
 * they fall in. The work is split into 2^(M-16) batches of 2^16 pairs; batch k starts at seed
 * S * a^(2^17 k). Verification: |sx - ref|/|ref| and |sy - ref|/|ref| <= 1e-8.
 *
 * Parallel structure: each thread takes a static slice of the batches, keeps its own sums and
 * counts, and stores them in its own slot; after the parallel region, one thread adds the slots in
 * thread order. A batch is generated 2048 numbers at a time (the generator continues across the
 * pieces), so a thread needs a 16 KiB buffer, not 1 MiB. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define MASK46 ((1ULL << 46) - 1)
#define MK 16
#define NK (1 << MK)
#define NQ 10
#define PIECE 2048 /* numbers generated at a time (PIECE/2 pairs) */

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

struct part {
    double sx, sy;
    long q[NQ];
    char pad[64];
};

int main(int argc, char **argv) {
    char cls = argc > 1 ? argv[1][0] : 'S';
    int m;
    double sx_verify_value, sy_verify_value;
    if (cls == 's') cls = 'S';
    if (cls == 'w') cls = 'W';
    if (cls == 'S') {
        m = 24;
        sx_verify_value = -3.247834652034740e+3;
        sy_verify_value = -6.958407078382297e+3;
    } else if (cls == 'W') {
        m = 25;
        sx_verify_value = -2.863319731645753e+3;
        sy_verify_value = -6.320053679109499e+3;
    } else {
        fprintf(stderr, "usage: npb_ep [S|W]\n");
        return 2;
    }
    const uint64_t a = 1220703125ULL, s = 271828183ULL;
    long nn = 1L << (m - MK); /* batches */
    int maxt = omp_get_max_threads();
    struct part *parts = calloc((size_t)maxt, sizeof(struct part));
    if (!parts) {
        fprintf(stderr, "npb_ep: out of memory\n");
        return 1;
    }

    printf(" NAS Parallel Benchmarks (NPB 3.x spec, OpenMP C) - EP Benchmark\n");
    printf(" Class           = %c\n", cls);
    printf(" Size            = 2^%d random numbers\n", m + 1);
    printf(" Threads         = %d\n", maxt);

    /* an = a^(2 NK): the seed step from one batch to the next */
    uint64_t an = lcg_pow(a, 2 * (uint64_t)NK);
    int team = 0;

#pragma omp parallel
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        long lo = nn * t / nt, hi = nn * (t + 1) / nt;
        double xb[PIECE];
        double sx = 0.0, sy = 0.0;
        long q[NQ] = {0};
#pragma omp master
        team = nt;
        for (long k = lo; k < hi; k++) {
            uint64_t seed = lcg_mul(s, lcg_pow(an, (uint64_t)k));
            for (int piece = 0; piece < 2 * NK / PIECE; piece++) {
                for (int i = 0; i < PIECE; i++) {
                    seed = lcg_mul(seed, a);
                    xb[i] = seed * 0x1p-46;
                }
                for (int i = 0; i < PIECE / 2; i++) {
                    double x1 = 2.0 * xb[2 * i] - 1.0;
                    double x2 = 2.0 * xb[2 * i + 1] - 1.0;
                    double t1 = x1 * x1 + x2 * x2;
                    if (t1 <= 1.0) {
                        double t2 = sqrt(-2.0 * log(t1) / t1);
                        double t3 = x1 * t2;
                        double t4 = x2 * t2;
                        int l = (int)fmax(fabs(t3), fabs(t4));
                        q[l < NQ ? l : NQ - 1]++;
                        sx = sx + t3;
                        sy = sy + t4;
                    }
                }
            }
        }
        parts[t].sx = sx;
        parts[t].sy = sy;
        for (int i = 0; i < NQ; i++)
            parts[t].q[i] = q[i];
    }

    double sx = 0.0, sy = 0.0;
    long q[NQ] = {0}, gc = 0;
    for (int t = 0; t < team; t++) {
        sx += parts[t].sx;
        sy += parts[t].sy;
        for (int i = 0; i < NQ; i++)
            q[i] += parts[t].q[i];
    }
    for (int i = 0; i < NQ; i++)
        gc += q[i];

    double sx_err = fabs((sx - sx_verify_value) / sx_verify_value);
    double sy_err = fabs((sy - sy_verify_value) / sy_verify_value);
    int ok = sx_err <= 1.0e-8 && sy_err <= 1.0e-8;

    printf(" Gaussian pairs  = %ld\n", gc);
    printf(" Sums            = %25.15e %25.15e\n", sx, sy);
    printf(" Reference sums  = %25.15e %25.15e\n", sx_verify_value, sy_verify_value);
    printf(" Counts:\n");
    for (int i = 0; i < NQ; i++)
        printf("%3d %15ld\n", i, q[i]);
    printf(" Verification    = %s\n", ok ? "SUCCESSFUL" : "UNSUCCESSFUL");
    return ok ? 0 : 1;
}
