/* kernels_avx512.c: AVX-512 (F, BW, VNNI) paths; vpdpbusd does the int8 dot
 * products four bytes at a time into int32. */
#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels_impl.h"

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vnni")))

AVX512 float kdot_q8_f32_avx512(const int8_t *q, const float *x, int n) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 w0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(q + i))));
        __m512 w1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(q + i + 16))));
        acc0 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + i), acc0);
        acc1 = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + i + 16), acc1);
    }
    if (i + 16 <= n) {
        __m512 w0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(q + i))));
        acc0 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + i), acc0);
        i += 16;
    }
    if (i < n) { /* masked tail: no scalar loop */
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m128i b = _mm512_castsi512_si128(_mm512_maskz_loadu_epi8((__mmask64)m, q + i)); /* no AVX512VL needed */
        __m512 w = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b));
        acc1 = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(m, x + i), acc1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

AVX512 float kdot_q4_f32_avx512(const uint8_t *q4, const float *x, int n) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    const __m128i mask = _mm_set1_epi8(15), eight = _mm_set1_epi8(8);
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        __m128i b = _mm_loadu_si128((const __m128i *)(q4 + i / 2)); /* 16 bytes = 32 codes */
        __m128i lo = _mm_and_si128(b, mask), hi = _mm_and_si128(_mm_srli_epi16(b, 4), mask);
        __m128i v0 = _mm_sub_epi8(_mm_unpacklo_epi8(lo, hi), eight), v1 = _mm_sub_epi8(_mm_unpackhi_epi8(lo, hi), eight);
        acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(v0)), _mm512_loadu_ps(x + i), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(v1)), _mm512_loadu_ps(x + i + 16), acc1);
    }
    float s = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    if (i < n) s += kdot_q4_f32_scalar(q4 + i / 2, x + i, n - i);
    return s;
}

AVX512 int32_t kdot_i8_i8_avx512(const int8_t *a, const int8_t *b, int n) {
    /* vpdpbusd multiplies unsigned by signed bytes: feed |a| and b with a's
     * sign applied (codes are in [-127,127], so |a| fits a byte) */
    __m512i acc = _mm512_setzero_si512();
    const __m512i zero = _mm512_setzero_si512();
    int i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512i va = _mm512_loadu_si512(a + i), vb = _mm512_loadu_si512(b + i);
        __mmask64 neg = _mm512_movepi8_mask(va);
        __m512i sb = _mm512_mask_sub_epi8(vb, neg, zero, vb);
        acc = _mm512_dpbusd_epi32(acc, _mm512_abs_epi8(va), sb);
    }
    if (i < n) {
        __mmask64 m = n - i >= 64 ? ~0ull : ((1ull << (n - i)) - 1);
        __m512i va = _mm512_maskz_loadu_epi8(m, a + i), vb = _mm512_maskz_loadu_epi8(m, b + i);
        __mmask64 neg = _mm512_movepi8_mask(va);
        __m512i sb = _mm512_mask_sub_epi8(vb, neg, zero, vb);
        acc = _mm512_dpbusd_epi32(acc, _mm512_abs_epi8(va), sb);
    }
    return _mm512_reduce_add_epi32(acc);
}
#endif
