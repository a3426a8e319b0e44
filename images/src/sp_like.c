/* An SP-like kernel: the barrier structure of the NAS Parallel Benchmarks' SP (scalar
 * pentadiagonal ADI solver), not SP itself. Usage: sp_like [S|W]   (default S); threads from
 * OMP_NUM_THREADS.
 *
 * Why it exists: issue 11's futex-heavy target ("1 island / native for the SP-like kernel") is
 * about SP's shape: one parallel region, and in each time step the same 17 `omp for` loops SP's
 * OpenMP version runs (compute_rhs in 8, txinvr, x_solve, ninvr, y_solve, pinvr, z_solve, tzetar,
 * add), each ending in a barrier, over a small grid, so that the threads meet ~1,700 times (class S)
 * and do little work in between. SP carries 5 coupled unknowns per point and solves pentadiagonal
 * systems; this kernel carries one scalar field and solves a tridiagonal system along each grid
 * line (Thomas' algorithm). Grid and steps are SP's: S 12^3 and 100 steps, W 36^3 and 400.
 *
 * Every value is computed the same way whatever the number of threads (each point, and each grid
 * line, is one thread's, with + - * / only: no libm, whose ifuncs may differ between the host and
 * a guest CPU), so the checksums are the same bit for bit natively and on islands. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

static int n, steps;
static double *u, *rhs, *aux, *forcing;

#define IX(i, j, k) (((size_t)(i) * n + (size_t)(j)) * n + (size_t)(k))

static const double dt = 0.015, diff = 0.4, adv = 0.05, implicit_a = 0.3;

/* Solves (1 + 2a) x_m - a x_{m-1} - a x_{m+1} = rhs_m along one grid line (Dirichlet ends: the
 * line's first and last points are kept), in place, with the scratch array c. */
static void solve_line(double *r, size_t stride, double *c) {
    const double a = implicit_a, b = 1.0 + 2.0 * a;
    int m;
    c[0] = 0.0;
    for (m = 1; m < n - 1; m++) {
        double denom = b + a * c[m - 1];
        c[m] = -a / denom;
        r[m * stride] = (r[m * stride] + a * r[(m - 1) * stride]) / denom;
    }
    for (m = n - 3; m >= 1; m--) r[m * stride] -= c[m] * r[(m + 1) * stride];
}

int main(int argc, char **argv) {
    char cls = argc > 1 ? argv[1][0] : 'S';
    if (cls == 'S') {
        n = 12;
        steps = 100;
    } else if (cls == 'W') {
        n = 36;
        steps = 400;
    } else {
        fprintf(stderr, "usage: sp_like [S|W]\n");
        return 2;
    }
    size_t cells = (size_t)n * n * n;
    u = malloc(cells * sizeof *u);
    rhs = malloc(cells * sizeof *rhs);
    aux = malloc(cells * sizeof *aux);
    forcing = malloc(cells * sizeof *forcing);
    if (!u || !rhs || !aux || !forcing) {
        fprintf(stderr, "sp_like: out of memory\n");
        return 1;
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            for (int k = 0; k < n; k++) {
                u[IX(i, j, k)] = 1.0 + (double)((i * 7 + j * 13 + k * 17) % 23) / 46.0;
                forcing[IX(i, j, k)] = 0.01 * (double)((i + 2 * j + 3 * k) % 5);
                rhs[IX(i, j, k)] = 0.0;
            }
    printf(" SP-like kernel (the barrier structure of NPB SP, one scalar field), class %c\n", cls);
    printf(" Size: %d x %d x %d, %d steps, 17 parallel loops per step\n", n, n, n, steps);

#pragma omp parallel
    {
        double c[64]; /* n <= 36 */
        for (int step = 0; step < steps; step++) {
            /* compute_rhs: auxiliary field, forcing, then each direction's fluxes and dissipation. */
#pragma omp for
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++)
                    for (int k = 0; k < n; k++) aux[IX(i, j, k)] = u[IX(i, j, k)] * u[IX(i, j, k)];
#pragma omp for
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++)
                    for (int k = 0; k < n; k++) rhs[IX(i, j, k)] = forcing[IX(i, j, k)];
#pragma omp for
            for (int i = 1; i < n - 1; i++)
                for (int j = 1; j < n - 1; j++)
                    for (int k = 1; k < n - 1; k++)
                        rhs[IX(i, j, k)] += diff * (u[IX(i + 1, j, k)] - 2.0 * u[IX(i, j, k)] +
                                                    u[IX(i - 1, j, k)]) -
                                            adv * (aux[IX(i + 1, j, k)] - aux[IX(i - 1, j, k)]);
#pragma omp for
            for (int i = 1; i < n - 1; i++)
                for (int j = 1; j < n - 1; j++)
                    for (int k = 1; k < n - 1; k++)
                        rhs[IX(i, j, k)] += diff * (u[IX(i, j + 1, k)] - 2.0 * u[IX(i, j, k)] +
                                                    u[IX(i, j - 1, k)]);
#pragma omp for
            for (int i = 1; i < n - 1; i++)
                for (int j = 1; j < n - 1; j++)
                    for (int k = 1; k < n - 1; k++)
                        rhs[IX(i, j, k)] -= adv * (aux[IX(i, j + 1, k)] - aux[IX(i, j - 1, k)]);
#pragma omp for
            for (int i = 1; i < n - 1; i++)
                for (int j = 1; j < n - 1; j++)
                    for (int k = 1; k < n - 1; k++)
                        rhs[IX(i, j, k)] += diff * (u[IX(i, j, k + 1)] - 2.0 * u[IX(i, j, k)] +
                                                    u[IX(i, j, k - 1)]);
#pragma omp for
            for (int i = 1; i < n - 1; i++)
                for (int j = 1; j < n - 1; j++)
                    for (int k = 1; k < n - 1; k++)
                        rhs[IX(i, j, k)] -= adv * (aux[IX(i, j, k + 1)] - aux[IX(i, j, k - 1)]);
#pragma omp for
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++)
                    for (int k = 0; k < n; k++) rhs[IX(i, j, k)] *= dt;
            /* txinvr, then the x sweep: one tridiagonal solve per (j, k) line. */
#pragma omp for
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++)
                    for (int k = 0; k < n; k++) rhs[IX(i, j, k)] /= 1.0 + 0.1 * aux[IX(i, j, k)];
#pragma omp for
            for (int j = 1; j < n - 1; j++)
                for (int k = 1; k < n - 1; k++) solve_line(&rhs[IX(0, j, k)], (size_t)n * n, c);
            /* ninvr, the y sweep, pinvr, the z sweep, tzetar. */
#pragma omp for
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++)
                    for (int k = 0; k < n; k++) rhs[IX(i, j, k)] *= 0.999;
#pragma omp for
            for (int i = 1; i < n - 1; i++)
                for (int k = 1; k < n - 1; k++) solve_line(&rhs[IX(i, 0, k)], (size_t)n, c);
#pragma omp for
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++)
                    for (int k = 0; k < n; k++) rhs[IX(i, j, k)] *= 1.001;
#pragma omp for
            for (int i = 1; i < n - 1; i++)
                for (int j = 1; j < n - 1; j++) solve_line(&rhs[IX(i, j, 0)], 1, c);
#pragma omp for
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++)
                    for (int k = 0; k < n; k++) rhs[IX(i, j, k)] *= 1.0 + 0.1 * aux[IX(i, j, k)];
            /* add */
#pragma omp for
            for (int i = 1; i < n - 1; i++)
                for (int j = 1; j < n - 1; j++)
                    for (int k = 1; k < n - 1; k++) u[IX(i, j, k)] += rhs[IX(i, j, k)];
        }
    }

    double sum = 0.0, sq = 0.0;
    for (size_t p = 0; p < cells; p++) {
        sum += u[p];
        sq += rhs[p] * rhs[p];
    }
    printf(" Checksum u     = %.15e\n", sum);
    printf(" Checksum rhs^2 = %.15e\n", sq);
    /* The field stays bounded: the implicit sweeps damp, the forcing adds dt * 0.04 at most. */
    int ok = sum > 0.9 * (double)cells && sum < 2.0 * (double)cells;
    printf(" Verification   = %s\n", ok ? "SUCCESSFUL" : "UNSUCCESSFUL");
    return ok ? 0 : 1;
}
