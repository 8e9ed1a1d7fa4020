/* gemm_avx512.c: the register tile of the blocked float product: 12 rows of
 * A by 32 columns of packed B (24 zmm accumulators), fed by broadcasts of A
 * read in place, either row-major (one stream per row) or k-major (12
 * contiguous floats per k: transposed A and packed edge rows). */
#if defined(__x86_64__)
#include <immintrin.h>

#include "gemm_impl.h"

#define AVX512 __attribute__((target("avx512f")))
#define INLINE_AVX512 static inline __attribute__((always_inline, target("avx512f")))

/* Multiply-accumulate over kc: NV vectors of 16 columns; element (i, k) of A
 * at a[i*rs + k*cs], where one of rs, cs is 1 and known at compile time. */
#define TILE_LOOP(NV, RS, CS)                                                                        \
    for (int k = 0; k < kc; k++) {                                                                   \
        __m512 b0 = _mm512_load_ps(bp + (size_t)k * GEMM_NR), b1;                                    \
        if (NV == 2) b1 = _mm512_load_ps(bp + (size_t)k * GEMM_NR + 16);                            \
        const float *ak = a + (size_t)k * (CS);                                                      \
        _Pragma("GCC unroll 12") for (int i = 0; i < GEMM_MR; i++) {                                 \
            __m512 ai = _mm512_set1_ps(ak[(size_t)i * (RS)]);                                        \
            acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);                                          \
            if (NV == 2) acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);                            \
        }                                                                                            \
    }

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

#define TILE_BODY(NV, RS, CS)                                                                        \
    do {                                                                                             \
        __m512 acc[GEMM_MR][2];                                                                      \
        for (int i = 0; i < GEMM_MR; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();              \
        TILE_LOOP(NV, RS, CS)                                                                        \
        tile_store(acc, NV, c, ldc, mr, nr, alpha, beta, bias);                                      \
    } while (0)

AVX512 void gemm_tile_avx512(int kc, const float *a, ptrdiff_t rs, ptrdiff_t cs, const float *bp, float *c, int ldc,
                             int mr, int nr, float alpha, float beta, const float *bias) {
    if (rs == 1) {
        if (nr > 16) TILE_BODY(2, 1, cs);
        else TILE_BODY(1, 1, cs);
    } else {
        if (nr > 16) TILE_BODY(2, rs, 1);
        else TILE_BODY(1, rs, 1);
    }
}

#endif
