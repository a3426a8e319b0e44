/* NAS Parallel Benchmarks CG (conjugate gradient), OpenMP, written from the NPB 3.x specification.
 * Usage: npb_cg [S|W]   (default S); threads from OMP_NUM_THREADS.
 *
 * The inverse power method estimates the smallest eigenvalue of a random sparse symmetric matrix
 * A (NA x NA, built by makea from the NPB generator x_{k+1} = 5^13 x_k mod 2^46): NITER outer
 * iterations, each solving A z = x with 25 CG steps, then zeta = SHIFT + 1/(x.z), x = z/||z||.
 * The final zeta is checked against the published value (relative error <= 1e-10).
 *
 * Parallel structure: one parallel region over the iterations; each thread owns the static slice
 * [lo, hi) of the rows and vector entries, computed by hand (no reliance on omp for schedules).
 * Dot products: each thread stores its partial sum in its own slot, a barrier, then every thread
 * adds all the slots in thread order (so every thread gets the same bits, and the result only
 * depends on the thread count). Two slot buffers alternate, so one barrier per reduction
 * suffices: a buffer is rewritten only after the barrier of the other buffer's reduction, which
 * every thread reaches after it has read the buffer. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MASK46 ((1ULL << 46) - 1)
#define CGITMAX 25
#define PAD 512 /* doubles per reduction slot: one 4 KiB page per thread (under popvmm a page is
                     the unit of coherency, so slots on one page would bounce between islands) */

static char cls;
static int na, nonzer, niter;
static double shift, zeta_verify_value;
static const double rcond = 0.1;

static int *colidx, *rowstr;
static double *a, *x, *z, *p, *q, *r;
static double *red; /* 2 buffers x maxthreads slots x PAD */

static uint64_t tran;
static const uint64_t amult = 1220703125ULL;

static double randlc(void) {
    tran = (tran * amult) & MASK46;
    return tran * 0x1p-46;
}

/* A sparse n-vector (v, iv) with nz distinct nonzeros at random positions < n. */
static void sprnvc(int n, int nz, int nn1, double *v, int *iv) {
    int nzv = 0;
    while (nzv < nz) {
        double vecelt = randlc();
        double vecloc = randlc();
        int i = (int)(nn1 * vecloc);
        if (i >= n) continue;
        int dup = 0;
        for (int ii = 0; ii < nzv; ii++)
            if (iv[ii] == i) {
                dup = 1;
                break;
            }
        if (dup) continue;
        v[nzv] = vecelt;
        iv[nzv] = i;
        nzv++;
    }
}

/* Sets element i of the sparse vector (v, iv) with *nzv nonzeros to val. */
static void vecset(double *v, int *iv, int *nzv, int i, double val) {
    int set = 0;
    for (int k = 0; k < *nzv; k++)
        if (iv[k] == i) {
            v[k] = val;
            set = 1;
        }
    if (!set) {
        v[*nzv] = val;
        iv[*nzv] = i;
        (*nzv)++;
    }
}

/* Builds A in compressed rows (a, colidx, rowstr) as the sum over i of size_i * v_i v_i^T
 * (v_i: sprnvc plus 0.5 at i; size_i = rcond^(i/n)), plus (rcond - shift) on the diagonal. */
static void makea(int n, int nzmax) {
    int w = nonzer + 1;
    int *arow = malloc(sizeof(int) * (size_t)n);
    int *acol = malloc(sizeof(int) * (size_t)n * w);
    double *aelt = malloc(sizeof(double) * (size_t)n * w);
    int *nzloc = malloc(sizeof(int) * (size_t)n);
    int ivc[64];
    double vc[64];
    int nn1 = 1;
    do
        nn1 *= 2;
    while (nn1 < n);

    for (int iouter = 0; iouter < n; iouter++) {
        int nzv = nonzer;
        sprnvc(n, nzv, nn1, vc, ivc);
        vecset(vc, ivc, &nzv, iouter, 0.5);
        arow[iouter] = nzv;
        for (int k = 0; k < nzv; k++) {
            acol[iouter * w + k] = ivc[k];
            aelt[iouter * w + k] = vc[k];
        }
    }

    /* sparse(): count the triples of each row */
    int nrows = n;
    for (int j = 0; j <= nrows; j++)
        rowstr[j] = 0;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < arow[i]; k++)
            rowstr[acol[i * w + k] + 1] += arow[i];
    for (int j = 1; j <= nrows; j++)
        rowstr[j] += rowstr[j - 1];
    int nza = rowstr[nrows];
    if (nza > nzmax) {
        fprintf(stderr, "npb_cg: space for matrix elements exceeded (%d > %d)\n", nza, nzmax);
        exit(1);
    }
    for (int j = 0; j < nrows; j++) {
        for (int k = rowstr[j]; k < rowstr[j + 1]; k++) {
            a[k] = 0.0;
            colidx[k] = -1;
        }
        nzloc[j] = 0;
    }
    /* generate the values, summing duplicates; each row kept sorted by column */
    double size = 1.0;
    double ratio = pow(rcond, 1.0 / (double)n);
    for (int i = 0; i < n; i++) {
        for (int nz = 0; nz < arow[i]; nz++) {
            int j = acol[i * w + nz];
            double scale = size * aelt[i * w + nz];
            for (int nzrow = 0; nzrow < arow[i]; nzrow++) {
                int jcol = acol[i * w + nzrow];
                double va = aelt[i * w + nzrow] * scale;
                if (jcol == j && j == i)
                    va = va + rcond - shift;
                int k, found = 0;
                for (k = rowstr[j]; k < rowstr[j + 1]; k++) {
                    if (colidx[k] > jcol) {
                        for (int kk = rowstr[j + 1] - 2; kk >= k; kk--)
                            if (colidx[kk] >= 0) {
                                a[kk + 1] = a[kk];
                                colidx[kk + 1] = colidx[kk];
                            }
                        colidx[k] = jcol;
                        a[k] = 0.0;
                        found = 1;
                        break;
                    } else if (colidx[k] == -1) {
                        colidx[k] = jcol;
                        found = 1;
                        break;
                    } else if (colidx[k] == jcol) {
                        nzloc[j]++;
                        found = 1;
                        break;
                    }
                }
                if (!found) {
                    fprintf(stderr, "npb_cg: internal error in sparse: i=%d\n", i);
                    exit(1);
                }
                a[k] += va;
            }
        }
        size *= ratio;
    }
    /* remove the empty entries left by the duplicates */
    for (int j = 1; j < nrows; j++)
        nzloc[j] += nzloc[j - 1];
    for (int j = 0; j < nrows; j++) {
        int j1 = j > 0 ? rowstr[j] - nzloc[j - 1] : 0;
        int j2 = rowstr[j + 1] - nzloc[j];
        int src = rowstr[j];
        for (int k = j1; k < j2; k++) {
            a[k] = a[src];
            colidx[k] = colidx[src];
            src++;
        }
    }
    for (int j = 1; j <= nrows; j++)
        rowstr[j] -= nzloc[j - 1];
    free(arow);
    free(acol);
    free(aelt);
    free(nzloc);
}

/* Zeroed memory starting on a page boundary and rounded up to whole pages. */
static void *page_alloc(size_t bytes) {
    size_t size = (bytes + 4095) / 4096 * 4096;
    void *mem = aligned_alloc(4096, size);
    if (mem) memset(mem, 0, size);
    return mem;
}

/* Sum over the team of (v0, v1), in thread order; see the header comment. */
static void reduce2(double v0, double v1, double *s0, double *s1, int *k, int t, int nt) {
    double *b = red + (size_t)((*k)++ & 1) * nt * PAD;
    b[t * PAD] = v0;
    b[t * PAD + 1] = v1;
#pragma omp barrier
    double a0 = 0.0, a1 = 0.0;
    for (int i = 0; i < nt; i++) {
        a0 += b[i * PAD];
        a1 += b[i * PAD + 1];
    }
    *s0 = a0;
    *s1 = a1;
}

static double reduce1(double v, int *k, int t, int nt) {
    double s, dummy;
    reduce2(v, 0.0, &s, &dummy, k, t, nt);
    return s;
}

/* One CG solve of A z = x (25 steps); returns ||x - A z||. Called by every thread; lo, hi: the
 * thread's rows. Entered and left with x and z of other threads' slices possibly in flight only
 * through barriers, see the comments. */
static double conj_grad(int lo, int hi, int *k, int t, int nt) {
    for (int j = lo; j < hi; j++) {
        q[j] = 0.0;
        z[j] = 0.0;
        r[j] = x[j];
        p[j] = r[j];
    }
    double s = 0.0;
    for (int j = lo; j < hi; j++)
        s += r[j] * r[j];
    double rho = reduce1(s, k, t, nt); /* its barrier also publishes p */

    for (int cgit = 1; cgit <= CGITMAX; cgit++) {
        /* q = A p (reads all of p) */
        for (int j = lo; j < hi; j++) {
            double sum = 0.0;
            for (int kk = rowstr[j]; kk < rowstr[j + 1]; kk++)
                sum += a[kk] * p[colidx[kk]];
            q[j] = sum;
        }
        double d = 0.0;
        for (int j = lo; j < hi; j++)
            d += p[j] * q[j];
        d = reduce1(d, k, t, nt);
        double alpha = rho / d;
        double rho0 = rho;
        s = 0.0;
        for (int j = lo; j < hi; j++) {
            z[j] = z[j] + alpha * p[j];
            r[j] = r[j] - alpha * q[j];
        }
        for (int j = lo; j < hi; j++)
            s += r[j] * r[j];
        rho = reduce1(s, k, t, nt); /* its barrier also publishes z */
        double beta = rho / rho0;
        for (int j = lo; j < hi; j++)
            p[j] = r[j] + beta * p[j];
#pragma omp barrier /* p complete before the next q = A p reads it */
    }
    /* ||x - A z||: r = A z (reads all of z, published by the last rho barrier) */
    s = 0.0;
    for (int j = lo; j < hi; j++) {
        double d = 0.0;
        for (int kk = rowstr[j]; kk < rowstr[j + 1]; kk++)
            d += a[kk] * z[colidx[kk]];
        r[j] = d;
    }
    for (int j = lo; j < hi; j++) {
        double d = x[j] - r[j];
        s += d * d;
    }
    return sqrt(reduce1(s, k, t, nt));
}

int main(int argc, char **argv) {
    cls = argc > 1 ? argv[1][0] : 'S';
    if (cls == 's') cls = 'S';
    if (cls == 'w') cls = 'W';
    if (cls == 'S') {
        na = 1400;
        nonzer = 7;
        niter = 15;
        shift = 10.0;
        zeta_verify_value = 8.5971775078648;
    } else if (cls == 'W') {
        na = 7000;
        nonzer = 8;
        niter = 15;
        shift = 12.0;
        zeta_verify_value = 10.362595087124;
    } else {
        fprintf(stderr, "usage: npb_cg [S|W]\n");
        return 2;
    }
    int nz = na * (nonzer + 1) * (nonzer + 1);
    int maxt = omp_get_max_threads();
    colidx = malloc(sizeof(int) * (size_t)nz);
    rowstr = malloc(sizeof(int) * (size_t)(na + 1));
    a = malloc(sizeof(double) * (size_t)nz);
    /* the vectors and the reduction slots on pages of their own */
    x = page_alloc(sizeof(double) * (size_t)(na + 2));
    z = page_alloc(sizeof(double) * (size_t)(na + 2));
    p = page_alloc(sizeof(double) * (size_t)(na + 2));
    q = page_alloc(sizeof(double) * (size_t)(na + 2));
    r = page_alloc(sizeof(double) * (size_t)(na + 2));
    red = page_alloc(sizeof(double) * (size_t)2 * maxt * PAD);
    if (!colidx || !rowstr || !a || !x || !z || !p || !q || !r || !red) {
        fprintf(stderr, "npb_cg: out of memory\n");
        return 1;
    }

    printf(" NAS Parallel Benchmarks (NPB 3.x spec, OpenMP C) - CG Benchmark\n");
    printf(" Class           = %c\n", cls);
    printf(" Size            = %d\n", na);
    printf(" Iterations      = %d\n", niter);
    printf(" Threads         = %d\n", maxt);

    tran = 314159265ULL;
    randlc(); /* zeta = randlc(tran, amult) in the reference: advances the seed once */
    makea(na, nz);
    printf(" Nonzeros        = %d\n", rowstr[na]);
    for (int i = 0; i < na + 2; i++) {
        x[i] = 1.0;
        z[i] = q[i] = r[i] = p[i] = 0.0;
    }

    double zeta = 0.0;
    printf("\n   iteration           ||r||                 zeta\n");
#pragma omp parallel
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int lo = (int)((long)na * t / nt), hi = (int)((long)na * (t + 1) / nt);
        int k = 0;
        double my_zeta = 0.0;
        for (int it = 1; it <= niter; it++) {
            double rnorm = conj_grad(lo, hi, &k, t, nt);
            double n1 = 0.0, n2 = 0.0;
            for (int j = lo; j < hi; j++) {
                n1 += x[j] * z[j];
                n2 += z[j] * z[j];
            }
            reduce2(n1, n2, &n1, &n2, &k, t, nt);
            n2 = 1.0 / sqrt(n2);
            my_zeta = shift + 1.0 / n1;
#pragma omp master
            printf("    %5d       %20.14e%20.13f\n", it, rnorm, my_zeta);
            for (int j = lo; j < hi; j++)
                x[j] = n2 * z[j];
            /* the next conj_grad reads only this thread's x before its first barrier */
        }
#pragma omp master
        zeta = my_zeta;
    }

    double err = fabs(zeta - zeta_verify_value) / zeta_verify_value;
    int ok = err <= 1.0e-10;
    printf("\n Zeta            = %20.13e\n", zeta);
    printf(" Reference zeta  = %20.13e\n", zeta_verify_value);
    printf(" Relative error  = %20.13e\n", err);
    printf(" Verification    = %s\n", ok ? "SUCCESSFUL" : "UNSUCCESSFUL");
    return ok ? 0 : 1;
}
