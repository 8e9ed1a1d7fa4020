/* gemm_avx512.c: the register tile of the blocked float product: 12 rows of
 * A by 32 columns of B (24 zmm accumulators), fed by broadcasts of A read in
 * place, either row-major (one stream per row) or k-major (12 contiguous
 * floats per k: transposed A and packed edge rows). B rows are read from a
 * packed panel or in place (masked at the right edge). */
#if defined(__x86_64__)
#include <immintrin.h>

#include "gemm_impl.h"

#define AVX512 __attribute__((target("avx512f")))
#define INLINE_AVX512 static inline __attribute__((always_inline, target("avx512f")))

/* Multiply-accumulate over kc: NV vectors of 16 columns of B (row k at
 * bp + k*BS); broadcasts of A(i, k) from A_AT(i) (see the two modes below). */
#define TILE_LOOP(NV, BS, A_AT, A_STEP)                                                              \
    for (int k = 0; k < kc; k++) {                                                                   \
        __m512 b0 = _mm512_loadu_ps(bp), b1;                                                         \
        if (NV == 2) b1 = _mm512_loadu_ps(bp + 16);                                                  \
        bp += (BS);                                                                                  \
        _Pragma("GCC unroll 12") for (int i = 0; i < GEMM_MR; i++) {                                 \
            __m512 ai = _mm512_set1_ps(A_AT(i));                                                     \
            acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);                                          \
            if (NV == 2) acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);                            \
        }                                                                                            \
        A_STEP;                                                                                      \
    }

/* k-major A: the tile's 12 values of one k are contiguous, k steps by cs */
#define KM_AT(i) a[i]
#define KM_STEP a += cs
/* row-major A: three row pointers (rows 0, 4, 8) and offsets rs, 2rs, 3rs,
 * so the 12 streams need five registers whatever the compiler keeps */
#define RM_AT(i) (i % 4 == 0 ? r[i / 4][0] : i % 4 == 1 ? r[i / 4][rs] : i % 4 == 2 ? r[i / 4][2 * rs] : r[i / 4][rs3])
#define RM_STEP r[0]++, r[1]++, r[2]++

INLINE_AVX512 void tile_store(__m512 acc[GEMM_MR][2], int nv, float *c, int ldc, int mr, int nr, float alpha,
                              float beta, const float *bias) {
    __mmask16 m0 = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
    __mmask16 m1 = nr >= 32 ? 0xFFFF : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1);
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    __m512 bias0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
    __m512 bias1 = bias && nv == 2 ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
    for (int i = 0; i < mr; i++) {
        float *ci = c + (size_t)i * ldc;
        __m512 v0 = _mm512_fmadd_ps(acc[i][0], va, bias0);
        if (beta != 0.0f) v0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, ci), v0);
        _mm512_mask_storeu_ps(ci, m0, v0);
        if (nv == 2) {
            __m512 v1 = _mm512_fmadd_ps(acc[i][1], va, bias1);
            if (beta != 0.0f) v1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, ci + 16), v1);
            _mm512_mask_storeu_ps(ci + 16, m1, v1);
        }
    }
}

#define TILE_BODY(NV, BS, MODE)                                                                      \
    do {                                                                                             \
        __m512 acc[GEMM_MR][2];                                                                      \
        for (int i = 0; i < GEMM_MR; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();              \
        TILE_LOOP(NV, BS, MODE##_AT, MODE##_STEP)                                                    \
        tile_store(acc, NV, c, ldc, mr, nr, alpha, beta, bias);                                      \
    } while (0)

AVX512 void gemm_tile_avx512(int kc, const float *a, ptrdiff_t rs, ptrdiff_t cs, const float *bp, ptrdiff_t bs,
                             float *c, int ldc, int mr, int nr, float alpha, float beta, const float *bias) {
    if (rs == 1) {
        if (bs == GEMM_NR) {
            if (nr > 16) TILE_BODY(2, GEMM_NR, KM);
            else TILE_BODY(1, GEMM_NR, KM);
        } else {
            if (nr > 16) TILE_BODY(2, bs, KM);
            else TILE_BODY(1, bs, KM);
        }
    } else {
        const float *r[3] = {a, a + 4 * rs, a + 8 * rs};
        ptrdiff_t rs3 = 3 * rs;
        if (bs == GEMM_NR) {
            if (nr > 16) TILE_BODY(2, GEMM_NR, RM);
            else TILE_BODY(1, GEMM_NR, RM);
        } else {
            if (nr > 16) TILE_BODY(2, bs, RM);
            else TILE_BODY(1, bs, RM);
        }
    }
}

#endif
