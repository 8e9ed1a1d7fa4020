/* gemm.c: dispatch of the float product (own kernel or OpenBLAS), the
 * reference triple loop, and the blocked driver. A is read in place (only
 * the last, partial row block is copied, zero-padded); so is B when its rows
 * are B's rows (no transpose). A transposed B is packed slab by slab into
 * GEMM_NR-wide panels the threads share. Threads split over row blocks or
 * over panels, whichever divides more evenly; without packing they never
 * wait for each other. */
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "fastmath.h"
#include "gemm_impl.h"
#include "util/util.h"

static int g_kernel = -1; /* -1: not decided yet */

bool gemm_kernel_available(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
#else
    return false;
#endif
}

void gemm_use_kernel(bool on) { g_kernel = on && gemm_kernel_available(); }

static bool kernel_on(void) {
    if (g_kernel < 0) {
        const char *env = getenv("QAT_GEMM");
        g_kernel = gemm_kernel_available() && !(env && !strcmp(env, "blas"));
    }
    return g_kernel;
}

/* Products below this many multiply-adds stay on OpenBLAS: packing and the
 * fork are not worth it there. */
#define GEMM_MIN_FMAS (1u << 15)

static bool use_kernel(const Gemm *g) {
    return kernel_on() && g->K > 0 && g->M > 0 && g->N > 0 && (double)g->M * g->N * g->K >= GEMM_MIN_FMAS;
}

static int round_up(int x, int m) { return (x + m - 1) / m * m; }

static int threads_for(const Gemm *g) {
    if (omp_in_parallel()) return 1;
    int nt = omp_get_max_threads();
    if ((double)g->M * g->N * g->K < (1u << 18)) nt = 1; /* a fork costs more than it saves */
    return nt;
}

size_t gemm_kernel_ws_floats(const Gemm *g) {
    int kc = g->K < GEMM_KC ? g->K : GEMM_KC;
    /* the shared slab (transposed B only), then per thread a zero-padded
     * edge block of A and the last, partial panel of B (B in place) */
    return (g->tb ? (size_t)kc * round_up(g->N, GEMM_NR) : 0) + (size_t)threads_for(g) * (GEMM_MR + GEMM_NR) * kc;
}

size_t gemm_ws_floats(const Gemm *g) { return use_kernel(g) ? gemm_kernel_ws_floats(g) : 0; }

/* asum[i] += sum over k in [k0, k0+kc) of A(i, k), for rows [i0, i1) */
QAT_CLONES static void asum_add(const Gemm *g, int i0, int i1, int k0, int kc) {
    if (g->ta) { /* rows of A are columns of the stored matrix: add stored rows */
        for (int k = k0; k < k0 + kc; k++) {
            const float *a = g->A + (size_t)k * g->lda;
#pragma omp simd
            for (int i = i0; i < i1; i++) g->asum[i] += a[i];
        }
    } else {
        for (int i = i0; i < i1; i++) {
            const float *a = g->A + (size_t)i * g->lda + k0;
            float s = 0.0f;
#pragma omp simd reduction(+ : s)
            for (int k = 0; k < kc; k++) s += a[k];
            g->asum[i] += s;
        }
    }
}

/* The epilogue on rows [i0, i0+mr), columns [j0, j0+nr) of the finished C. */
QAT_CLONES static void epilogue(const Gemm *g, int i0, int mr, int j0, int nr) {
    for (int i = i0; i < i0 + mr; i++) {
        float *c = g->C + (size_t)i * g->ldc + j0, *x = g->aux + (size_t)i * g->ldc + j0;
        if (g->epi == GEMM_EPI_GELU)
            for (int j = 0; j < nr; j++) x[j] = fast_gelu(c[j]);
        else if (g->epi == GEMM_EPI_GELU_D)
            for (int j = 0; j < nr; j++) fast_gelu_both(c[j], &x[j], &c[j]);
        else
            for (int j = 0; j < nr; j++) c[j] *= x[j];
    }
}

static void gemm_blas(const Gemm *g) {
    if (g->asum) asum_add(g, 0, g->M, 0, g->K);
    float beta = g->beta;
    if (g->bias) {
        for (int i = 0; i < g->M; i++) {
            float *c = g->C + (size_t)i * g->ldc;
            for (int j = 0; j < g->N; j++) c[j] = (beta != 0.0f ? beta * c[j] : 0.0f) + g->bias[j];
        }
        beta = 1.0f;
    }
    if (g->K == 0) {
        if (!g->bias)
            for (int i = 0; i < g->M; i++)
                for (int j = 0; j < g->N; j++) {
                    float *c = g->C + (size_t)i * g->ldc + j;
                    *c = beta != 0.0f ? beta * *c : 0.0f;
                }
        if (g->epi != GEMM_EPI_NONE) epilogue(g, 0, g->M, 0, g->N);
        return;
    }
    cblas_sgemm(CblasRowMajor, g->ta ? CblasTrans : CblasNoTrans, g->tb ? CblasTrans : CblasNoTrans, g->M, g->N, g->K,
                g->alpha, g->A, g->lda, g->B, g->ldb, beta, g->C, g->ldc);
    if (g->epi != GEMM_EPI_NONE) epilogue(g, 0, g->M, 0, g->N);
}

void gemm_ref(const Gemm *g) {
    for (int i = 0; i < g->M; i++)
        for (int j = 0; j < g->N; j++) {
            double s = 0.0;
            for (int k = 0; k < g->K; k++) {
                float a = g->ta ? g->A[(size_t)k * g->lda + i] : g->A[(size_t)i * g->lda + k];
                float b = g->tb ? g->B[(size_t)j * g->ldb + k] : g->B[(size_t)k * g->ldb + j];
                s += (double)a * b;
            }
            float *c = g->C + (size_t)i * g->ldc + j;
            double v = g->alpha * s + (g->bias ? g->bias[j] : 0.0);
            if (g->beta != 0.0f) v += (double)g->beta * *c;
            *c = (float)v;
        }
    if (g->epi != GEMM_EPI_NONE) epilogue(g, 0, g->M, 0, g->N);
    if (g->asum)
        for (int i = 0; i < g->M; i++) {
            double s = 0.0;
            for (int k = 0; k < g->K; k++) s += g->ta ? g->A[(size_t)k * g->lda + i] : g->A[(size_t)i * g->lda + k];
            g->asum[i] += (float)s;
        }
}

/* Panel p of the slab [pc, pc+kc): kc rows of GEMM_NR columns, zero past N. */
static void pack_panel(const Gemm *g, int pc, int kc, int p, float *dst) {
    int j0 = p * GEMM_NR, nr = g->N - j0 < GEMM_NR ? g->N - j0 : GEMM_NR;
    if (g->tb) { /* B(k, j) = B[j*ldb + k]: walk each stored row, scatter */
        if (nr < GEMM_NR) memset(dst, 0, (size_t)kc * GEMM_NR * sizeof(float));
        for (int j = 0; j < nr; j++) {
            const float *src = g->B + (size_t)(j0 + j) * g->ldb + pc;
            for (int k = 0; k < kc; k++) dst[(size_t)k * GEMM_NR + j] = src[k];
        }
    } else {
        for (int k = 0; k < kc; k++) {
            float *d = dst + (size_t)k * GEMM_NR;
            memcpy(d, g->B + (size_t)(pc + k) * g->ldb + j0, (size_t)nr * sizeof(float));
            for (int j = nr; j < GEMM_NR; j++) d[j] = 0.0f;
        }
    }
}

/* Rows [i0, i0+mr) of the slab, k-major (GEMM_MR floats per k), zero-padded. */
static void pack_edge(const Gemm *g, int i0, int mr, int pc, int kc, float *dst) {
    for (int k = 0; k < kc; k++)
        for (int i = 0; i < GEMM_MR; i++)
            dst[(size_t)k * GEMM_MR + i] =
                i >= mr ? 0.0f : g->ta ? g->A[(size_t)(pc + k) * g->lda + i0 + i] : g->A[(size_t)(i0 + i) * g->lda + pc + k];
}

/* Share t of n items split into nt near-equal runs. */
static void share(int n, int nt, int t, int *lo, int *hi) {
    *lo = (int)((long)n * t / nt);
    *hi = (int)((long)n * (t + 1) / nt);
}

#if defined(__x86_64__)
static void gemm_blocked(const Gemm *g, float *ws) {
    int nt = threads_for(g);
    int mb = (g->M + GEMM_MR - 1) / GEMM_MR, nb = (g->N + GEMM_NR - 1) / GEMM_NR;
    /* split rows or panels: the larger share over the even share, less is better */
    bool split_m = (double)((mb + nt - 1) / nt) / mb <= (double)((nb + nt - 1) / nt) / nb;
    int kcmax = g->K < GEMM_KC ? g->K : GEMM_KC;
    float *slab = ws;
    size_t slab_floats = g->tb ? (size_t)kcmax * nb * GEMM_NR : 0;
    ptrdiff_t rs = g->ta ? 1 : g->lda, cs = g->ta ? g->lda : 1;
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), tn = omp_get_num_threads();
        int b0 = 0, b1 = mb, p0 = 0, p1 = nb, q0, q1;
        if (split_m) share(mb, tn, t, &b0, &b1);
        else share(nb, tn, t, &p0, &p1);
        share(nb, tn, t, &q0, &q1); /* panels this thread packs */
        float *edge = slab + slab_floats + (size_t)t * (GEMM_MR + GEMM_NR) * kcmax, *bedge = edge + GEMM_MR * kcmax;
        bool own_edge = !g->tb && g->N % GEMM_NR && p1 == nb; /* B in place ends in a partial panel of ours */
        for (int pc = 0; pc < g->K; pc += GEMM_KC) {
            int kc = g->K - pc < GEMM_KC ? g->K - pc : GEMM_KC;
            bool first = pc == 0;
            float beta = first ? g->beta : 1.0f;
            const float *bias = first ? g->bias : NULL;
            if (g->tb)
                for (int p = q0; p < q1; p++) pack_panel(g, pc, kc, p, slab + (size_t)p * kc * GEMM_NR);
            /* the last row block, if partial and ours, once per slab */
            int mr_last = g->M - (mb - 1) * GEMM_MR;
            if (mr_last < GEMM_MR && b1 == mb) pack_edge(g, (mb - 1) * GEMM_MR, mr_last, pc, kc, edge);
            if (own_edge) pack_panel(g, pc, kc, nb - 1, bedge);
            if (g->tb) {
#pragma omp barrier
            }
            for (int ib = b0; ib < b1; ib += GEMM_MC / GEMM_MR) {
                int ie = ib + GEMM_MC / GEMM_MR < b1 ? ib + GEMM_MC / GEMM_MR : b1;
                for (int p = p0; p < p1; p++) {
                    int j0 = p * GEMM_NR, nr = g->N - j0 < GEMM_NR ? g->N - j0 : GEMM_NR;
                    const float *bp = g->tb ? slab + (size_t)p * kc * GEMM_NR
                                      : nr < GEMM_NR ? bedge
                                                     : g->B + (size_t)pc * g->ldb + j0;
                    ptrdiff_t bs = g->tb || nr < GEMM_NR ? GEMM_NR : g->ldb;
                    for (int b = ib; b < ie; b++) {
                        int i0 = b * GEMM_MR, mr = g->M - i0 < GEMM_MR ? g->M - i0 : GEMM_MR;
                        float *c = g->C + (size_t)i0 * g->ldc + j0;
                        if (mr == GEMM_MR)
                            gemm_tile_avx512(kc, g->A + (size_t)i0 * rs + (size_t)pc * cs, rs, cs, bp, bs, c, g->ldc, mr,
                                             nr, g->alpha, beta, bias ? bias + j0 : NULL);
                        else
                            gemm_tile_avx512(kc, edge, 1, GEMM_MR, bp, bs, c, g->ldc, mr, nr, g->alpha, beta,
                                             bias ? bias + j0 : NULL);
                    }
                }
                /* the epilogue on the finished block, while it is in L2 */
                if (g->epi != GEMM_EPI_NONE && pc + kc == g->K && p1 > p0) {
                    int i0 = ib * GEMM_MR, i1 = ie * GEMM_MR < g->M ? ie * GEMM_MR : g->M;
                    int j0 = p0 * GEMM_NR, j1 = p1 * GEMM_NR < g->N ? p1 * GEMM_NR : g->N;
                    epilogue(g, i0, i1 - i0, j0, j1 - j0);
                }
                /* the block's row sums while its slab of A is in cache, by
                 * the thread that has the first panel */
                if (g->asum && p0 == 0 && p1 > 0) {
                    int i1 = ie * GEMM_MR < g->M ? ie * GEMM_MR : g->M;
                    asum_add(g, ib * GEMM_MR, i1, pc, kc);
                }
            }
            if (g->tb) {
#pragma omp barrier /* before the next slab overwrites this one */
            }
        }
    }
}
#endif

void gemm_run(const Gemm *g, float *ws) {
#if defined(__x86_64__)
    if (use_kernel(g)) {
        gemm_blocked(g, ws);
        return;
    }
#else
    (void)ws;
#endif
    gemm_blas(g);
}

void gemm_run_kernel(const Gemm *g, float *ws) {
    if (!gemm_kernel_available() || g->K <= 0) qat_fail("gemm_run_kernel: no AVX-512 on this CPU, or K = %d", g->K);
#if defined(__x86_64__)
    if (g->M > 0 && g->N > 0) gemm_blocked(g, ws);
#else
    (void)ws;
#endif
}
