/* NAS Parallel Benchmarks MG (multigrid), OpenMP, written from the NPB 3.x specification.
 * Usage: npb_mg [S|W]   (default S); threads from OMP_NUM_THREADS.
 *
 * V-cycle multigrid on the periodic 3-D Poisson problem A u = v on an N^3 grid (S: 32^3, W: 128^3,
 * 4 iterations). v is zero except +1 at the ten largest and -1 at the ten smallest of N^3 numbers
 * from the NPB generator x_{k+1} = 5^13 x_k mod 2^46 (seed 314159265, x fastest). Each iteration:
 * mg3P (restrict the residual down to the 2^3 grid, smooth, interpolate and smooth back up), then
 * r = v - A u. Check: the L2 norm of the final residual against the published value (relative
 * error <= 1e-8). Operators as in the reference: A = a(0..3) = (-8/3, 0, 1/6, 1/12), smoother
 * c = (-3/8, 1/32, -1/64, 0), trilinear restriction (rprj3) and interpolation (interp), ghost
 * layers refreshed by periodic copies (comm3). Arrays are (n)^3 with n = 2^k + 2 per level.
 *
 * Parallel structure: one parallel region; every grid operator is a worksharing loop over z-planes
 * (schedule(static), implied barrier at its end), every output point computed by exactly one
 * thread with the same arithmetic whatever the thread count. The norms: per-thread partial sums
 * over a hand-computed static slice of planes, added in thread order by every thread after a
 * barrier. zran3's extremes: each thread keeps the ten largest and smallest of its planes, one
 * thread merges them (the values are distinct, so the result is unique). */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MASK46 ((1ULL << 46) - 1)
#define MAXLEVEL 12
#define MM 10 /* charges of each sign */
#define PAD 8

static char cls;
static int lt, nit;
static int m[MAXLEVEL + 1];     /* grid points per dimension at level k, ghosts included */
static size_t ir[MAXLEVEL + 1]; /* offset of level k in u and r */
static double *u, *v, *r;
static double a_coef[4], c_coef[4];
static double *red; /* reduction slots: maxthreads x PAD */

/* zran3's candidates: per thread MM largest (ascending) and MM smallest (descending) */
static double *cand_val[2];
static long *cand_pos[2];
static long charge_pos[2][MM];

static uint64_t lcg_mul(uint64_t x, uint64_t a) { return (x * a) & MASK46; }
static uint64_t lcg_pow(uint64_t a, uint64_t n) {
    uint64_t rr = 1;
    while (n) {
        if (n & 1) rr = lcg_mul(rr, a);
        a = lcg_mul(a, a);
        n >>= 1;
    }
    return rr;
}

#define I(i1, i2, i3) (((size_t)(i3) * n + (i2)) * n + (i1))

/* Periodic boundary: ghost layers copied from the opposite interior layer. */
static void comm3(double *x, int n) {
#pragma omp for schedule(static)
    for (int i3 = 1; i3 < n - 1; i3++) {
        for (int i2 = 1; i2 < n - 1; i2++) {
            x[I(0, i2, i3)] = x[I(n - 2, i2, i3)];
            x[I(n - 1, i2, i3)] = x[I(1, i2, i3)];
        }
        for (int i1 = 0; i1 < n; i1++) {
            x[I(i1, 0, i3)] = x[I(i1, n - 2, i3)];
            x[I(i1, n - 1, i3)] = x[I(i1, 1, i3)];
        }
    }
#pragma omp for schedule(static)
    for (int i2 = 0; i2 < n; i2++)
        for (int i1 = 0; i1 < n; i1++) {
            x[I(i1, i2, 0)] = x[I(i1, i2, n - 2)];
            x[I(i1, i2, n - 1)] = x[I(i1, i2, 1)];
        }
}

static void zero3(double *x, int n) {
#pragma omp for schedule(static)
    for (int i3 = 0; i3 < n; i3++)
        memset(x + I(0, 0, i3), 0, sizeof(double) * (size_t)n * n);
}

/* r = v - A u (v and r may be the same array: each point reads v only at itself). */
static void resid(const double *uu, const double *vv, double *rr, int n) {
#pragma omp for schedule(static)
    for (int i3 = 1; i3 < n - 1; i3++) {
        double u1[n], u2[n];
        for (int i2 = 1; i2 < n - 1; i2++) {
            for (int i1 = 0; i1 < n; i1++) {
                u1[i1] = uu[I(i1, i2 - 1, i3)] + uu[I(i1, i2 + 1, i3)] + uu[I(i1, i2, i3 - 1)] +
                         uu[I(i1, i2, i3 + 1)];
                u2[i1] = uu[I(i1, i2 - 1, i3 - 1)] + uu[I(i1, i2 + 1, i3 - 1)] +
                         uu[I(i1, i2 - 1, i3 + 1)] + uu[I(i1, i2 + 1, i3 + 1)];
            }
            for (int i1 = 1; i1 < n - 1; i1++)
                rr[I(i1, i2, i3)] = vv[I(i1, i2, i3)] - a_coef[0] * uu[I(i1, i2, i3)] -
                                    a_coef[2] * (u2[i1] + u1[i1 - 1] + u1[i1 + 1]) -
                                    a_coef[3] * (u2[i1 - 1] + u2[i1 + 1]);
        }
    }
    comm3(rr, n);
}

/* u = u + C r (the smoother). */
static void psinv(const double *rr, double *uu, int n) {
#pragma omp for schedule(static)
    for (int i3 = 1; i3 < n - 1; i3++) {
        double r1[n], r2[n];
        for (int i2 = 1; i2 < n - 1; i2++) {
            for (int i1 = 0; i1 < n; i1++) {
                r1[i1] = rr[I(i1, i2 - 1, i3)] + rr[I(i1, i2 + 1, i3)] + rr[I(i1, i2, i3 - 1)] +
                         rr[I(i1, i2, i3 + 1)];
                r2[i1] = rr[I(i1, i2 - 1, i3 - 1)] + rr[I(i1, i2 + 1, i3 - 1)] +
                         rr[I(i1, i2 - 1, i3 + 1)] + rr[I(i1, i2 + 1, i3 + 1)];
            }
            for (int i1 = 1; i1 < n - 1; i1++)
                uu[I(i1, i2, i3)] = uu[I(i1, i2, i3)] + c_coef[0] * rr[I(i1, i2, i3)] +
                                    c_coef[1] * (rr[I(i1 - 1, i2, i3)] + rr[I(i1 + 1, i2, i3)] +
                                                 r1[i1]) +
                                    c_coef[2] * (r2[i1] + r1[i1 - 1] + r1[i1 + 1]);
        }
    }
    comm3(uu, n);
}

/* s = P r: restriction from the fine grid (nf points per dimension) to the coarse one (nc). */
static void rprj3(const double *rr, int nf, double *s, int nc) {
    int n = nf;
#define S(j1, j2, j3) s[((size_t)(j3) * nc + (j2)) * nc + (j1)]
#pragma omp for schedule(static)
    for (int j3 = 1; j3 < nc - 1; j3++) {
        double x1[nf], y1[nf];
        int i3 = 2 * j3;
        for (int j2 = 1; j2 < nc - 1; j2++) {
            int i2 = 2 * j2;
            for (int j1 = 1; j1 < nc; j1++) {
                int i1 = 2 * j1;
                x1[i1 - 1] = rr[I(i1 - 1, i2 - 1, i3)] + rr[I(i1 - 1, i2 + 1, i3)] +
                             rr[I(i1 - 1, i2, i3 - 1)] + rr[I(i1 - 1, i2, i3 + 1)];
                y1[i1 - 1] = rr[I(i1 - 1, i2 - 1, i3 - 1)] + rr[I(i1 - 1, i2 - 1, i3 + 1)] +
                             rr[I(i1 - 1, i2 + 1, i3 - 1)] + rr[I(i1 - 1, i2 + 1, i3 + 1)];
            }
            for (int j1 = 1; j1 < nc - 1; j1++) {
                int i1 = 2 * j1;
                double y2 = rr[I(i1, i2 - 1, i3 - 1)] + rr[I(i1, i2 - 1, i3 + 1)] +
                            rr[I(i1, i2 + 1, i3 - 1)] + rr[I(i1, i2 + 1, i3 + 1)];
                double x2 = rr[I(i1, i2 - 1, i3)] + rr[I(i1, i2 + 1, i3)] +
                            rr[I(i1, i2, i3 - 1)] + rr[I(i1, i2, i3 + 1)];
                S(j1, j2, j3) = 0.5 * rr[I(i1, i2, i3)] +
                                0.25 * (rr[I(i1 - 1, i2, i3)] + rr[I(i1 + 1, i2, i3)] + x2) +
                                0.125 * (x1[i1 - 1] + x1[i1 + 1] + y2) +
                                0.0625 * (y1[i1 - 1] + y1[i1 + 1]);
            }
        }
    }
#undef S
    comm3(s, nc);
}

/* u = u + Q z: trilinear interpolation from the coarse grid (nc) to the fine one (nf = 2nc - 2).
 * Iteration i3 writes the fine planes 2 i3 and 2 i3 + 1 only. */
static void interp(const double *z, int nc, double *uu, int nf) {
    int n = nf;
#define Z(j1, j2, j3) z[((size_t)(j3) * nc + (j2)) * nc + (j1)]
#pragma omp for schedule(static)
    for (int i3 = 0; i3 < nc - 1; i3++) {
        double z1[nc], z2[nc], z3[nc];
        for (int i2 = 0; i2 < nc - 1; i2++) {
            for (int i1 = 0; i1 < nc; i1++) {
                z1[i1] = Z(i1, i2 + 1, i3) + Z(i1, i2, i3);
                z2[i1] = Z(i1, i2, i3 + 1) + Z(i1, i2, i3);
                z3[i1] = Z(i1, i2 + 1, i3 + 1) + Z(i1, i2, i3 + 1) + z1[i1];
            }
            for (int i1 = 0; i1 < nc - 1; i1++) {
                uu[I(2 * i1, 2 * i2, 2 * i3)] += Z(i1, i2, i3);
                uu[I(2 * i1 + 1, 2 * i2, 2 * i3)] += 0.5 * (Z(i1 + 1, i2, i3) + Z(i1, i2, i3));
            }
            for (int i1 = 0; i1 < nc - 1; i1++) {
                uu[I(2 * i1, 2 * i2 + 1, 2 * i3)] += 0.5 * z1[i1];
                uu[I(2 * i1 + 1, 2 * i2 + 1, 2 * i3)] += 0.25 * (z1[i1] + z1[i1 + 1]);
            }
            for (int i1 = 0; i1 < nc - 1; i1++) {
                uu[I(2 * i1, 2 * i2, 2 * i3 + 1)] += 0.5 * z2[i1];
                uu[I(2 * i1 + 1, 2 * i2, 2 * i3 + 1)] += 0.25 * (z2[i1] + z2[i1 + 1]);
            }
            for (int i1 = 0; i1 < nc - 1; i1++) {
                uu[I(2 * i1, 2 * i2 + 1, 2 * i3 + 1)] += 0.25 * z3[i1];
                uu[I(2 * i1 + 1, 2 * i2 + 1, 2 * i3 + 1)] += 0.125 * (z3[i1] + z3[i1 + 1]);
            }
        }
    }
#undef Z
}

/* L2 norm (sqrt(sum r^2 / dn)) and max norm of the interior; every thread gets the same values. */
static void norm2u3(const double *rr, int n, double dn, double *rnm2, double *rnmu, int t,
                    int nt) {
    int lo = 1 + (n - 2) * t / nt, hi = 1 + (n - 2) * (t + 1) / nt;
    double s = 0.0, mx = 0.0;
    for (int i3 = lo; i3 < hi; i3++)
        for (int i2 = 1; i2 < n - 1; i2++)
            for (int i1 = 1; i1 < n - 1; i1++) {
                double x = rr[I(i1, i2, i3)];
                s += x * x;
                if (fabs(x) > mx) mx = fabs(x);
            }
    red[t * PAD] = s;
    red[t * PAD + 1] = mx;
#pragma omp barrier
    s = 0.0;
    mx = 0.0;
    for (int i = 0; i < nt; i++) {
        s += red[i * PAD];
        if (red[i * PAD + 1] > mx) mx = red[i * PAD + 1];
    }
#pragma omp barrier /* every thread has read the slots before they are reused */
    *rnm2 = sqrt(s / dn);
    *rnmu = mx;
}

/* v: +1 at the MM largest, -1 at the MM smallest of the random interior values, 0 elsewhere. */
static void zran3(double *z, int n, int t, int nt) {
    const uint64_t a = 1220703125ULL, x = 314159265ULL;
    int nx = n - 2;
    uint64_t a1 = lcg_pow(a, (uint64_t)nx), a2 = lcg_pow(a, (uint64_t)nx * nx);
    zero3(z, n);
    /* own slice of the interior planes: fill, then look for candidates */
    int lo = 1 + nx * t / nt, hi = 1 + nx * (t + 1) / nt;
    double *hv = cand_val[1] + (size_t)t * MM, *lv = cand_val[0] + (size_t)t * MM;
    long *hp = cand_pos[1] + (size_t)t * MM, *lp = cand_pos[0] + (size_t)t * MM;
    for (int i = 0; i < MM; i++) {
        hv[i] = 0.0;
        hp[i] = -1;
        lv[i] = 1.0;
        lp[i] = -1;
    }
    uint64_t plane = lcg_mul(x, lcg_pow(a2, (uint64_t)(lo - 1)));
    for (int i3 = lo; i3 < hi; i3++) {
        uint64_t row = plane;
        for (int i2 = 1; i2 < n - 1; i2++) {
            uint64_t xx = row;
            for (int i1 = 1; i1 < n - 1; i1++) {
                xx = lcg_mul(xx, a);
                z[I(i1, i2, i3)] = xx * 0x1p-46;
            }
            row = lcg_mul(row, a1);
        }
        plane = lcg_mul(plane, a2);
        for (int i2 = 1; i2 < n - 1; i2++)
            for (int i1 = 1; i1 < n - 1; i1++) {
                double val = z[I(i1, i2, i3)];
                long pos = (long)I(i1, i2, i3);
                if (val > hv[0]) {
                    hv[0] = val;
                    hp[0] = pos;
                    for (int i = 0; i < MM - 1 && hv[i] > hv[i + 1]; i++) {
                        double tv = hv[i];
                        hv[i] = hv[i + 1];
                        hv[i + 1] = tv;
                        long tp = hp[i];
                        hp[i] = hp[i + 1];
                        hp[i + 1] = tp;
                    }
                }
                if (val < lv[0]) {
                    lv[0] = val;
                    lp[0] = pos;
                    for (int i = 0; i < MM - 1 && lv[i] < lv[i + 1]; i++) {
                        double tv = lv[i];
                        lv[i] = lv[i + 1];
                        lv[i + 1] = tv;
                        long tp = lp[i];
                        lp[i] = lp[i + 1];
                        lp[i + 1] = tp;
                    }
                }
            }
    }
#pragma omp barrier
#pragma omp master
    {
        /* the MM best of all threads' candidates, for each sign (candidates never touch z) */
        for (int sign = 0; sign < 2; sign++) {
            int total = nt * MM;
            char used[total];
            memset(used, 0, (size_t)total);
            for (int c = 0; c < MM; c++) {
                int best = -1;
                for (int i = 0; i < total; i++) {
                    if (used[i] || cand_pos[sign][i] < 0) continue;
                    if (best < 0 || (sign ? cand_val[sign][i] > cand_val[sign][best]
                                          : cand_val[sign][i] < cand_val[sign][best]))
                        best = i;
                }
                used[best] = 1;
                charge_pos[sign][c] = cand_pos[sign][best];
            }
        }
    }
    zero3(z, n); /* its barrier also publishes charge_pos */
#pragma omp master
    {
        for (int c = 0; c < MM; c++)
            z[charge_pos[0][c]] = -1.0;
        for (int c = 0; c < MM; c++)
            z[charge_pos[1][c]] = +1.0;
    }
#pragma omp barrier
    comm3(z, n);
}

static void mg3P(int t, int nt) {
    (void)t;
    (void)nt;
    for (int k = lt; k >= 2; k--)
        rprj3(r + ir[k], m[k], r + ir[k - 1], m[k - 1]);
    zero3(u + ir[1], m[1]);
    psinv(r + ir[1], u + ir[1], m[1]);
    for (int k = 2; k <= lt - 1; k++) {
        zero3(u + ir[k], m[k]);
        interp(u + ir[k - 1], m[k - 1], u + ir[k], m[k]);
        resid(u + ir[k], r + ir[k], r + ir[k], m[k]);
        psinv(r + ir[k], u + ir[k], m[k]);
    }
    interp(u + ir[lt - 1], m[lt - 1], u, m[lt]);
    resid(u, v, r, m[lt]);
    psinv(r, u, m[lt]);
}

int main(int argc, char **argv) {
    double verify_value;
    int nx;
    cls = argc > 1 ? argv[1][0] : 'S';
    if (cls == 's') cls = 'S';
    if (cls == 'w') cls = 'W';
    if (cls == 'S') {
        nx = 32;
        nit = 4;
        verify_value = 0.5307707005734e-04;
    } else if (cls == 'W') {
        nx = 128;
        nit = 4;
        verify_value = 0.6467329375339e-05;
    } else {
        fprintf(stderr, "usage: npb_mg [S|W]\n");
        return 2;
    }
    for (lt = 0; (1 << lt) < nx; lt++)
        ;
    a_coef[0] = -8.0 / 3.0;
    a_coef[1] = 0.0;
    a_coef[2] = 1.0 / 6.0;
    a_coef[3] = 1.0 / 12.0;
    /* the S(a) smoother of classes S, W and A */
    c_coef[0] = -3.0 / 8.0;
    c_coef[1] = +1.0 / 32.0;
    c_coef[2] = -1.0 / 64.0;
    c_coef[3] = 0.0;

    size_t total = 0;
    for (int k = lt; k >= 1; k--) {
        m[k] = (1 << k) + 2;
        ir[k] = total;
        total += (size_t)m[k] * m[k] * m[k];
    }
    size_t top = (size_t)m[lt] * m[lt] * m[lt];
    int maxt = omp_get_max_threads();
    u = malloc(sizeof(double) * total);
    r = malloc(sizeof(double) * total);
    v = malloc(sizeof(double) * top);
    red = calloc((size_t)maxt * PAD, sizeof(double));
    for (int s = 0; s < 2; s++) {
        cand_val[s] = malloc(sizeof(double) * (size_t)maxt * MM);
        cand_pos[s] = malloc(sizeof(long) * (size_t)maxt * MM);
    }
    if (!u || !r || !v || !red || !cand_val[0] || !cand_val[1] || !cand_pos[0] || !cand_pos[1]) {
        fprintf(stderr, "npb_mg: out of memory\n");
        return 1;
    }

    printf(" NAS Parallel Benchmarks (NPB 3.x spec, OpenMP C) - MG Benchmark\n");
    printf(" Class           = %c\n", cls);
    printf(" Size            = %dx%dx%d\n", nx, nx, nx);
    printf(" Iterations      = %d\n", nit);
    printf(" Threads         = %d\n", maxt);

    double dn = (double)nx * nx * nx;
    double rnm2_0 = 0.0, rnmu_0 = 0.0, rnm2 = 0.0, rnmu = 0.0;
#pragma omp parallel
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        double n2, nu;
        zran3(v, m[lt], t, nt);
        zero3(u, m[lt]);
        resid(u, v, r, m[lt]);
        norm2u3(r, m[lt], dn, &n2, &nu, t, nt);
#pragma omp master
        {
            rnm2_0 = n2;
            rnmu_0 = nu;
        }
        for (int it = 1; it <= nit; it++) {
            mg3P(t, nt);
            resid(u, v, r, m[lt]);
        }
        norm2u3(r, m[lt], dn, &n2, &nu, t, nt);
#pragma omp master
        {
            rnm2 = n2;
            rnmu = nu;
        }
    }

    double err = fabs(rnm2 - verify_value) / verify_value;
    int ok = err <= 1.0e-8;
    printf(" Initial norms   = %20.13e %20.13e\n", rnm2_0, rnmu_0);
    printf(" Final norms     = %20.13e %20.13e\n", rnm2, rnmu);
    printf(" Reference L2    = %20.13e\n", verify_value);
    printf(" Relative error  = %20.13e\n", err);
    printf(" Verification    = %s\n", ok ? "SUCCESSFUL" : "UNSUCCESSFUL");
    return ok ? 0 : 1;
}
