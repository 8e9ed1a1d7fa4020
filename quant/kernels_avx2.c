/* kernels_avx2.c: AVX2 + FMA paths, compiled for those ISAs function by
 * function so the rest of the binary stays baseline x86-64. */
#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels_impl.h"

#define AVX2 __attribute__((target("avx2,fma")))

AVX2 static float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

AVX2 float kdot_q8_f32_avx2(const int8_t *q, const float *x, int n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i b = _mm_loadu_si128((const __m128i *)(q + i));
        __m256 w0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
        __m256 w1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(b, 8)));
        acc0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + i), acc0);
        acc1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + i + 8), acc1);
    }
    float s = hsum256(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) s += (float)q[i] * x[i];
    return s;
}

AVX2 float kdot_q4_f32_avx2(const uint8_t *q4, const float *x, int n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    const __m128i mask = _mm_set1_epi8(15), eight = _mm_set1_epi8(8);
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i b = _mm_loadl_epi64((const __m128i *)(q4 + i / 2)); /* 8 bytes = 16 codes */
        __m128i lo = _mm_and_si128(b, mask), hi = _mm_and_si128(_mm_srli_epi16(b, 4), mask);
        __m128i v = _mm_sub_epi8(_mm_unpacklo_epi8(lo, hi), eight); /* codes in column order */
        __m256 w0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
        __m256 w1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(v, 8)));
        acc0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + i), acc0);
        acc1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + i + 8), acc1);
    }
    float s = hsum256(_mm256_add_ps(acc0, acc1));
    if (i < n) s += kdot_q4_f32_scalar(q4 + i / 2, x + i, n - i);
    return s;
}

AVX2 int32_t kdot_i8_i8_avx2(const int8_t *a, const int8_t *b, int n) {
    /* maddubs needs an unsigned operand: |a| times b with a's sign moved onto
     * b; |a| <= 127 keeps the 16-bit pair sums below 2*127*127 (no saturation) */
    __m256i acc = _mm256_setzero_si256();
    const __m256i ones = _mm256_set1_epi16(1);
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i va = _mm256_loadu_si256((const __m256i *)(a + i)), vb = _mm256_loadu_si256((const __m256i *)(b + i));
        __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(va, va), _mm256_sign_epi8(vb, va));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, ones));
    }
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    int32_t r = _mm_cvtsi128_si32(s);
    for (; i < n; i++) r += (int32_t)a[i] * b[i];
    return r;
}
#endif
