/* NAS Parallel Benchmarks FT (3-D FFT PDE solver), OpenMP, written from the NPB 3.x
 * specification. Usage: npb_ft [S|W]   (default S); threads from OMP_NUM_THREADS.
 *
 * u(x, 0): NX x NY x NZ complex numbers from the NPB generator x_{k+1} = 5^13 x_k mod 2^46 (seed
 * 314159265), real and imaginary parts interleaved, x fastest. Forward 3-D FFT once; then for
 * t = 1..6: multiply the spectrum by exp(-4 alpha pi^2 |k|^2) (alpha = 1e-6, so after t steps the
 * factor is exp(-4 alpha pi^2 |k|^2 t)), inverse 3-D FFT (unnormalized), and the checksum
 * sum_{j=1..1024} u(j mod NX, 3j mod NY, 5j mod NZ) / (NX NY NZ), checked against the published
 * values (relative error <= 1e-12).
 *
 * Parallel structure: one parallel region. The x and y transforms, the evolution and the initial
 * conditions work on whole z-planes, each thread on its static slice of planes; the z transforms
 * on whole y-rows of every plane, each thread on its slice of y; barriers between the two kinds.
 * Each line transform is the same code whatever the thread count, and the checksum is added by
 * one thread in a fixed order, so the output does not depend on the thread count. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MASK46 ((1ULL << 46) - 1)
#define NITER 6
#define ALPHA 1.0e-6

typedef struct {
    double re, im;
} dcomplex;

static char cls;
static int nx, ny, nz;
static long ntotal;
static dcomplex *u0, *u1;  /* spectrum; work array */
static double *twiddle;    /* exp(-4 alpha pi^2 |k|^2) */
static dcomplex *wx, *wy, *wz; /* roots of unity exp(2 pi i m / n), m < n/2 */
static dcomplex sums[NITER + 1];

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

static dcomplex *roots(int n) {
    dcomplex *w = malloc(sizeof(dcomplex) * (size_t)(n / 2 > 0 ? n / 2 : 1));
    for (int m = 0; m < n / 2; m++) {
        double th = 2.0 * M_PI * m / n;
        w[m].re = cos(th);
        w[m].im = sin(th);
    }
    return w;
}

/* In-place radix-2 FFT of a[0..n): sign -1 (forward) or +1 (inverse), no scaling. */
static void fft_line(dcomplex *a, int n, const dcomplex *w, int sign) {
    for (int i = 1, j = 0; i < n; i++) {
        int bit = n >> 1;
        for (; j & bit; bit >>= 1)
            j ^= bit;
        j ^= bit;
        if (i < j) {
            dcomplex tmp = a[i];
            a[i] = a[j];
            a[j] = tmp;
        }
    }
    for (int len = 2; len <= n; len <<= 1) {
        int half = len >> 1, step = n / len;
        for (int i = 0; i < n; i += len)
            for (int k = 0; k < half; k++) {
                double wr = w[k * step].re, wi = sign * w[k * step].im;
                dcomplex u = a[i + k], v = a[i + k + half];
                double tr = v.re * wr - v.im * wi, ti = v.re * wi + v.im * wr;
                a[i + k].re = u.re + tr;
                a[i + k].im = u.im + ti;
                a[i + k + half].re = u.re - tr;
                a[i + k + half].im = u.im - ti;
            }
    }
}

static size_t idx(int i, int j, int k) { return ((size_t)k * ny + j) * nx + i; }

/* x and y transforms of planes [klo, khi) of u. */
static void fft_xy(dcomplex *u, int klo, int khi, int sign, dcomplex *buf) {
    for (int k = klo; k < khi; k++) {
        for (int j = 0; j < ny; j++)
            fft_line(u + idx(0, j, k), nx, wx, sign);
        for (int i = 0; i < nx; i++) {
            for (int j = 0; j < ny; j++)
                buf[j] = u[idx(i, j, k)];
            fft_line(buf, ny, wy, sign);
            for (int j = 0; j < ny; j++)
                u[idx(i, j, k)] = buf[j];
        }
    }
}

/* z transforms of rows [jlo, jhi) of every plane of u. */
static void fft_z(dcomplex *u, int jlo, int jhi, int sign, dcomplex *buf) {
    for (int j = jlo; j < jhi; j++)
        for (int i = 0; i < nx; i++) {
            for (int k = 0; k < nz; k++)
                buf[k] = u[idx(i, j, k)];
            fft_line(buf, nz, wz, sign);
            for (int k = 0; k < nz; k++)
                u[idx(i, j, k)] = buf[k];
        }
}

static void checksum(int it) {
    dcomplex chk = {0.0, 0.0};
    for (int j = 1; j <= 1024; j++) {
        int q = j % nx, r = (3 * j) % ny, s = (5 * j) % nz;
        chk.re += u1[idx(q, r, s)].re;
        chk.im += u1[idx(q, r, s)].im;
    }
    chk.re /= (double)ntotal;
    chk.im /= (double)ntotal;
    sums[it] = chk;
}

int main(int argc, char **argv) {
    static const double ref_s[NITER][2] = {
        {5.546087004964e+02, 4.845363331978e+02}, {5.546385409189e+02, 4.865304269511e+02},
        {5.546148406171e+02, 4.883910722336e+02}, {5.545423607415e+02, 4.901273169046e+02},
        {5.544255039624e+02, 4.917475857993e+02}, {5.542683411902e+02, 4.932597244941e+02}};
    static const double ref_w[NITER][2] = {
        {5.673612178944e+02, 5.293246849175e+02}, {5.631436885271e+02, 5.282149986629e+02},
        {5.594024089970e+02, 5.270996558037e+02}, {5.560698047020e+02, 5.260027904925e+02},
        {5.530898991250e+02, 5.249400845633e+02}, {5.504159734538e+02, 5.239212247086e+02}};
    const double(*ref)[2];

    cls = argc > 1 ? argv[1][0] : 'S';
    if (cls == 's') cls = 'S';
    if (cls == 'w') cls = 'W';
    if (cls == 'S') {
        nx = ny = nz = 64;
        ref = ref_s;
    } else if (cls == 'W') {
        nx = ny = 128;
        nz = 32;
        ref = ref_w;
    } else {
        fprintf(stderr, "usage: npb_ft [S|W]\n");
        return 2;
    }
    ntotal = (long)nx * ny * nz;
    u0 = malloc(sizeof(dcomplex) * (size_t)ntotal);
    u1 = malloc(sizeof(dcomplex) * (size_t)ntotal);
    twiddle = malloc(sizeof(double) * (size_t)ntotal);
    if (!u0 || !u1 || !twiddle) {
        fprintf(stderr, "npb_ft: out of memory\n");
        return 1;
    }
    wx = roots(nx);
    wy = roots(ny);
    wz = roots(nz);
    int maxt = omp_get_max_threads();

    printf(" NAS Parallel Benchmarks (NPB 3.x spec, OpenMP C) - FT Benchmark\n");
    printf(" Class           = %c\n", cls);
    printf(" Size            = %dx%dx%d\n", nx, ny, nz);
    printf(" Iterations      = %d\n", NITER);
    printf(" Threads         = %d\n", maxt);

    const uint64_t a = 1220703125ULL, seed = 314159265ULL;
    const double ap = -4.0 * ALPHA * M_PI * M_PI;

#pragma omp parallel
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int klo = nz * t / nt, khi = nz * (t + 1) / nt;
        int jlo = ny * t / nt, jhi = ny * (t + 1) / nt;
        dcomplex *buf = malloc(sizeof(dcomplex) * (size_t)(ny > nz ? ny : nz));

        /* initial conditions and the evolution factors, own planes */
        uint64_t x0 = lcg_mul(seed, lcg_pow(a, 2 * (uint64_t)nx * ny * klo));
        for (int k = klo; k < khi; k++) {
            double *d = (double *)(u0 + idx(0, 0, k));
            for (long m = 0; m < 2L * nx * ny; m++) {
                x0 = lcg_mul(x0, a);
                d[m] = x0 * 0x1p-46;
            }
            int kk = ((k + nz / 2) % nz) - nz / 2;
            for (int j = 0; j < ny; j++) {
                int jj = ((j + ny / 2) % ny) - ny / 2;
                for (int i = 0; i < nx; i++) {
                    int ii = ((i + nx / 2) % nx) - nx / 2;
                    twiddle[idx(i, j, k)] = exp(ap * (double)(ii * ii + jj * jj + kk * kk));
                }
            }
        }
        /* forward transform of u0, in place */
        fft_xy(u0, klo, khi, -1, buf);
#pragma omp barrier
        fft_z(u0, jlo, jhi, -1, buf);
#pragma omp barrier
        for (int it = 1; it <= NITER; it++) {
            /* evolve: u0 = u0 * twiddle, u1 = u0 (own planes) */
            for (size_t m = idx(0, 0, klo); m < idx(0, 0, khi); m++) {
                u0[m].re *= twiddle[m];
                u0[m].im *= twiddle[m];
                u1[m] = u0[m];
            }
#pragma omp barrier
            fft_z(u1, jlo, jhi, +1, buf);
#pragma omp barrier
            fft_xy(u1, klo, khi, +1, buf);
#pragma omp barrier
#pragma omp master
            checksum(it);
#pragma omp barrier /* the checksum has read u1 before the next evolve rewrites it */
        }
        free(buf);
    }

    int ok = 1;
    for (int it = 1; it <= NITER; it++) {
        printf(" T = %5d     Checksum = %22.12e %22.12e\n", it, sums[it].re, sums[it].im);
        double dr = sums[it].re - ref[it - 1][0], di = sums[it].im - ref[it - 1][1];
        double err = hypot(dr, di) / hypot(ref[it - 1][0], ref[it - 1][1]);
        if (!(err <= 1.0e-12))
            ok = 0;
    }
    printf(" Verification    = %s\n", ok ? "SUCCESSFUL" : "UNSUCCESSFUL");
    return ok ? 0 : 1;
}
