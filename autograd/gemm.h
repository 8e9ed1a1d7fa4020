/* gemm.h: the engine's float matrix product, C = alpha op(A) op(B) + beta C
 * (+ bias per column), row-major. On AVX-512 machines it runs qat's own
 * blocked kernel (gemm_avx512.c); elsewhere, and for tiny products, it calls
 * OpenBLAS. Debian's OpenBLAS 0.3.21 does not know recent AMD cores and runs
 * its AVX2 kernels there, at about a third of the FMA peak.
 *
 * The kernel packs B (and the edges of A) into a caller-owned workspace of
 * gemm_ws_floats() floats, so nothing is allocated per call. Called inside an
 * OpenMP parallel region it runs on the calling thread alone. */
#ifndef QAT_GEMM_H
#define QAT_GEMM_H

#include <stdbool.h>
#include <stddef.h>

/* One product. A is M x K (stored K x M when ta), B is K x N (stored N x K
 * when tb); bias [N] or NULL is added to every row of C. asum [M] or NULL
 * gets the row sums of A added (asum[i] += sum_k A(i, k)): a linear layer's
 * bias grad alongside dW = dY^T X, while dY is in cache. epi fuses a GELU
 * (or its grad) into the product, applied to each tile while it is in L1. */
/* What happens to each finished element of C (after alpha, beta and bias). */
typedef enum {
    GEMM_EPI_NONE,
    GEMM_EPI_GELU,   /* aux[i*ldc + j] = gelu(C(i, j)); C keeps the pre-activation */
    GEMM_EPI_GELU_D, /* aux = gelu(C) and C = gelu'(C): all a backward through the GELU needs */
    GEMM_EPI_MUL     /* C(i, j) *= aux[i*ldc + j] (e.g. times the saved gelu') */
} GemmEpi;

typedef struct {
    bool ta, tb;
    int M, N, K;
    float alpha, beta;
    const float *A, *B, *bias;
    int lda, ldb, ldc;
    float *C;
    float *asum;
    GemmEpi epi;
    float *aux; /* [M x ldc] for the epilogue */
} Gemm;

/* Workspace floats gemm_run needs for g (0 when it will use OpenBLAS). */
size_t gemm_ws_floats(const Gemm *g);
/* ws: gemm_ws_floats(g) floats, 64-byte aligned (NULL when that is 0). */
void gemm_run(const Gemm *g, float *ws);
/* The blocked kernel at any size (K > 0; AVX-512 only) on a workspace of
 * gemm_kernel_ws_floats(g) floats, and the plain triple loop (double
 * accumulation): for tests. */
size_t gemm_kernel_ws_floats(const Gemm *g);
void gemm_run_kernel(const Gemm *g, float *ws);
void gemm_ref(const Gemm *g);
/* The blocked kernel on the AVX-512 path is available on this CPU. */
bool gemm_kernel_available(void);
/* Off: every product goes to OpenBLAS (for A/B comparisons; QAT_GEMM=blas). */
void gemm_use_kernel(bool on);

#endif
