/* gemm_impl.h: the blocking of gemm.c and the register tile behind it
 * (private to autograd/). */
#ifndef QAT_GEMM_IMPL_H
#define QAT_GEMM_IMPL_H

#include <stddef.h>

#include "gemm.h"

#define GEMM_MR 12  /* rows of A per register tile */
#define GEMM_NR 32  /* columns of B per register tile (two zmm) */
#define GEMM_KC 256 /* depth of a packed slab of B: a tile's panel, 32 KiB, stays in L1 */
#define GEMM_MC 96  /* rows of A that sweep a slab's panels while they sit in L2 */

/* C[mr x nr] = alpha * A[mr x kc] B + beta * C (+ bias[nr]) for mr <= GEMM_MR,
 * nr <= GEMM_NR; A(i, k) = a[i*rs + k*cs] for all GEMM_MR rows (rs or cs is
 * 1), B(k, j) = bp[k*bs + j] for all GEMM_NR columns (a packed panel,
 * bs = GEMM_NR, or B in place, bs = ldb). */
void gemm_tile_avx512(int kc, const float *a, ptrdiff_t rs, ptrdiff_t cs, const float *bp, ptrdiff_t bs, float *c,
                      int ldc, int mr, int nr, float alpha, float beta, const float *bias);

#endif
