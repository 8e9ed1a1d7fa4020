/* kernels_avx2.c: AVX2 + FMA paths, compiled for those ISAs function by
 * function so the rest of the binary stays baseline x86-64. W8A8 has no
 * vpdpbusd here: maddubs takes |x| against w carrying x's sign (|x| <= 127
 * keeps the 16-bit pair sums below 2*127*127, so nothing saturates). */
#if defined(__x86_64__)
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels_impl.h"

#define AVX2 __attribute__((target("avx2,fma")))
#define INLINE_AVX2 static inline __attribute__((always_inline, target("avx2,fma")))

INLINE_AVX2 float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

INLINE_AVX2 __m256 q8_chunk(const int8_t *q, __m256 scale) {
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)q))), scale);
}

AVX2 static float row_q8(const int8_t *q, const float *scales, int group, const float *x, int n) {
    if (group % 16) {
        float r;
        krows_q8_f32_scalar(q, scales, group, x, n, 1, &r);
        return r;
    }
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (int g0 = 0; g0 < n; g0 += group) {
        const __m256 s = _mm256_set1_ps(scales[g0 / group]);
        for (int j = g0; j < g0 + group; j += 16) {
            a0 = _mm256_fmadd_ps(q8_chunk(q + j, s), _mm256_loadu_ps(x + j), a0);
            a1 = _mm256_fmadd_ps(q8_chunk(q + j + 8, s), _mm256_loadu_ps(x + j + 8), a1);
        }
    }
    return hsum256(_mm256_add_ps(a0, a1));
}

AVX2 static float row_q4(const uint8_t *q4, const float *scales, int group, const float *x_split, int n) {
    if (group % 16) {
        float r;
        krows_q4_f32_scalar(q4, scales, group, x_split, n, 1, &r);
        return r;
    }
    const float *xe = x_split, *xo = x_split + n / 2;
    const __m256i low = _mm256_set1_epi32(15), eight = _mm256_set1_epi32(8);
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (int g0 = 0; g0 < n; g0 += group) {
        const __m256 s = _mm256_set1_ps(scales[g0 / group]);
        for (int b = g0 / 2; b < (g0 + group) / 2; b += 8) { /* 8 bytes = 16 codes */
            __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(q4 + b)));
            __m256 we = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_and_si256(v, low), eight)), s);
            __m256 wo = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(v, 4), eight)), s);
            a0 = _mm256_fmadd_ps(we, _mm256_loadu_ps(xe + b), a0);
            a1 = _mm256_fmadd_ps(wo, _mm256_loadu_ps(xo + b), a1);
        }
    }
    return hsum256(_mm256_add_ps(a0, a1));
}

/* 8 of the 16 levels (t0: 0..7, t1: 8..15) for indices 0..15: two
 * permutes, the index's bit 3 (moved to the sign) choosing between them */
INLINE_AVX2 __m256 lut8(__m256 t0, __m256 t1, __m256i idx) {
    return _mm256_blendv_ps(_mm256_permutevar8x32_ps(t0, idx), _mm256_permutevar8x32_ps(t1, idx),
                            _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}

AVX2 static float row_lut(const uint8_t *q4, const float *lut, int lut_gs, const float *scales, int group,
                          const float *x_split, int n) {
    if (group % 16) {
        float r;
        krows_lut_f32_scalar(q4, lut, 0, lut_gs, scales, group, x_split, n, 1, &r);
        return r;
    }
    const float *xe = x_split, *xo = x_split + n / 2;
    const __m256i low = _mm256_set1_epi32(15);
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (int g0 = 0; g0 < n; g0 += group) {
        const float *lg = lut + (size_t)(g0 / group) * lut_gs; /* this group's table (the layer's one: lut_gs 0) */
        const __m256 t0 = _mm256_loadu_ps(lg), t1 = _mm256_loadu_ps(lg + 8);
        const __m256 s = _mm256_set1_ps(scales[g0 / group]);
        for (int b = g0 / 2; b < (g0 + group) / 2; b += 8) { /* 8 bytes = 16 indices */
            __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(q4 + b)));
            __m256 we = _mm256_mul_ps(lut8(t0, t1, _mm256_and_si256(v, low)), s);
            __m256 wo = _mm256_mul_ps(lut8(t0, t1, _mm256_srli_epi32(v, 4)), s);
            a0 = _mm256_fmadd_ps(we, _mm256_loadu_ps(xe + b), a0);
            a1 = _mm256_fmadd_ps(wo, _mm256_loadu_ps(xo + b), a1);
        }
    }
    return hsum256(_mm256_add_ps(a0, a1));
}

/* An 8-bit table row: 8 levels gathered at a time (vgatherdps from the
 * 1 KiB table), times x, summed per group, then scaled. */
AVX2 static float row_lut8(const uint8_t *q, const float *lut, const float *scales, int group, const float *x, int n) {
    if (group % 8) {
        float r;
        krows_lut8_f32_scalar(q, lut, scales, group, x, n, 1, &r);
        return r;
    }
    __m256 a = _mm256_setzero_ps();
    for (int g0 = 0; g0 < n; g0 += group) {
        __m256 t = _mm256_setzero_ps();
        for (int j = g0; j < g0 + group; j += 8) {
            __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(q + j)));
            t = _mm256_fmadd_ps(_mm256_i32gather_ps(lut, v, 4), _mm256_loadu_ps(x + j), t);
        }
        a = _mm256_fmadd_ps(_mm256_set1_ps(scales[g0 / group]), t, a);
    }
    return hsum256(a);
}

AVX2 void krows_lut8_f32_avx2(const uint8_t *idx, const float *lut, const float *scales, int group, const float *x, int n,
                              int nrows, float *out) {
    for (int r = 0; r < nrows; r++) out[r] = row_lut8(idx + (size_t)r * n, lut, scales + (size_t)r * (n / group), group, x, n);
}

/* one row at a time: AVX2 machines are not the tuning target */
AVX2 void krows_q8_f32_avx2(const int8_t *q, const float *scales, int group, const float *x, int n, int nrows, float *out) {
    for (int r = 0; r < nrows; r++) out[r] = row_q8(q + (size_t)r * n, scales + (size_t)r * (n / group), group, x, n);
}

AVX2 void krows_q4_f32_avx2(const uint8_t *q4, const float *scales, int group, const float *x_split, int n, int nrows,
                            float *out) {
    for (int r = 0; r < nrows; r++)
        out[r] = row_q4(q4 + (size_t)r * (n / 2), scales + (size_t)r * (n / group), group, x_split, n);
}

AVX2 void krows_lut_f32_avx2(const uint8_t *q4, const float *lut, int lut_rs, int lut_gs, const float *scales, int group,
                             const float *x_split, int n, int nrows, float *out) {
    for (int r = 0; r < nrows; r++)
        out[r] = row_lut(q4 + (size_t)r * (n / 2), lut + (size_t)r * lut_rs, lut_gs, scales + (size_t)r * (n / group), group,
                         x_split, n);
}

AVX2 void kquant_row_i8_avx2(const float *x, int K, int8_t *xq, float *xs) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 amax = _mm256_setzero_ps();
    int k = 0;
    for (; k + 8 <= K; k += 8) amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + k)));
    float t[8], m = 0.0f;
    _mm256_storeu_ps(t, amax);
    for (int i = 0; i < 8; i++) m = fmaxf(m, t[i]);
    for (int i = k; i < K; i++) m = fmaxf(m, fabsf(x[i]));
    QuantSpec s = {.bits = 8, .sym = true, .gran = QG_CHANNEL};
    quant_params_from_range(&s, -m, m, xs, NULL);
    const float inv = *xs > 0.0f ? 1.0f / *xs : 0.0f;
    const __m256 vinv = _mm256_set1_ps(inv), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    for (k = 0; k + 8 <= K; k += 8) {
        __m256 v = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + k), vinv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m256i q = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, lo), hi));
        __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
        _mm_storel_epi64((__m128i *)(xq + k), _mm_packs_epi16(w, w));
    }
    for (; k < K; k++) xq[k] = (int8_t)quant_code(x[k], *xs, 0.0f, -127, 127);
}

static inline int32_t load4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Rows m0..m0+MR-1 by one panel (its 16 outputs as two 8-lane halves). */
INLINE_AVX2 void tile_w8a8(const QMatrix *w, const int8_t *xq, const float *xs, int m0, int p, const int MR, float *y) {
    const int N = w->rows, K = w->cols, G = w->group, ng = K / G, L = K / 4;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 f[2][2];
    for (int i = 0; i < MR; i++) f[i][0] = f[i][1] = _mm256_setzero_ps();
    const int8_t *wp = w->p8 + (size_t)p * L * 64;
    for (int g = 0; g < ng; g++) {
        __m256i acc[2][2];
        for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm256_setzero_si256();
        for (int l = g * (G / 4); l < (g + 1) * (G / 4); l++) {
            __m256i w0 = _mm256_loadu_si256((const __m256i *)(wp + (size_t)l * 64));
            __m256i w1 = _mm256_loadu_si256((const __m256i *)(wp + (size_t)l * 64 + 32));
            for (int i = 0; i < MR; i++) {
                __m256i xb = _mm256_set1_epi32(load4(xq + (size_t)(m0 + i) * K + 4 * l));
                __m256i ax = _mm256_sign_epi8(xb, xb);
                acc[i][0] = _mm256_add_epi32(acc[i][0], _mm256_madd_epi16(_mm256_maddubs_epi16(ax, _mm256_sign_epi8(w0, xb)), ones));
                acc[i][1] = _mm256_add_epi32(acc[i][1], _mm256_madd_epi16(_mm256_maddubs_epi16(ax, _mm256_sign_epi8(w1, xb)), ones));
            }
        }
        const float *sc = w->pscales + ((size_t)p * ng + g) * QPANEL;
        __m256 s0 = _mm256_loadu_ps(sc), s1 = _mm256_loadu_ps(sc + 8);
        for (int i = 0; i < MR; i++) {
            __m256 b = _mm256_set1_ps(w->act_q8_0 ? xs[(size_t)(m0 + i) * ng + g] : 1.0f);
            __m256 t0 = w->act_q8_0 ? _mm256_mul_ps(s0, b) : s0, t1 = w->act_q8_0 ? _mm256_mul_ps(s1, b) : s1;
            f[i][0] = _mm256_fmadd_ps(t0, _mm256_cvtepi32_ps(acc[i][0]), f[i][0]);
            f[i][1] = _mm256_fmadd_ps(t1, _mm256_cvtepi32_ps(acc[i][1]), f[i][1]);
        }
    }
    int n0 = p * QPANEL;
    for (int i = 0; i < MR; i++) {
        float out[QPANEL];
        __m256 xsv = _mm256_set1_ps(w->act_q8_0 ? 1.0f : xs[m0 + i]);
        _mm256_storeu_ps(out, _mm256_mul_ps(xsv, f[i][0]));
        _mm256_storeu_ps(out + 8, _mm256_mul_ps(xsv, f[i][1]));
        int cnt = N - n0 < QPANEL ? N - n0 : QPANEL;
        memcpy(y + (size_t)(m0 + i) * N + n0, out, (size_t)cnt * sizeof(float));
    }
}

AVX2 void kw4a8_lut_avx2(const QMatrix *w, const int8_t *xq, const float *xs, int M, int p0, int np, float *y) {
    int N = w->rows, K = w->cols, ng = K / QBLOCK;
    int8_t levels[16];
    for (int i = 0; i < 16; i++) levels[i] = (int8_t)w->lut[i];
    const __m128i tab = _mm_loadu_si128((const __m128i *)levels), low = _mm_set1_epi8(15);
    const __m256i ones = _mm256_set1_epi16(1);
    for (int n = p0 * QPANEL; n < (p0 + np) * QPANEL && n < N; n++) {
        const uint8_t *wn = w->q4 + (size_t)n * K / 2;
        for (int m = 0; m < M; m++) {
            const int8_t *xm = xq + (size_t)m * K;
            float acc = 0.0f;
            for (int g = 0; g < ng; g++) {
                /* 16 bytes: even columns in the low nibbles, odd in the high */
                __m128i b = _mm_loadu_si128((const __m128i *)(wn + g * QBLOCK / 2));
                __m128i e = _mm_shuffle_epi8(tab, _mm_and_si128(b, low));
                __m128i o = _mm_shuffle_epi8(tab, _mm_and_si128(_mm_srli_epi16(b, 4), low));
                __m256i wv = _mm256_set_m128i(_mm_unpackhi_epi8(e, o), _mm_unpacklo_epi8(e, o)); /* column order */
                __m256i xv = _mm256_loadu_si256((const __m256i *)(xm + g * QBLOCK));
                /* |w| <= 127 against x carrying w's sign: pair sums stay below 2 * 127 * 127 */
                __m256i d = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv)), ones);
                __m128i h = _mm_add_epi32(_mm256_castsi256_si128(d), _mm256_extracti128_si256(d, 1));
                h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
                h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
                acc = fmaf(w->scales[(size_t)n * ng + g] * xs[(size_t)m * ng + g], (float)_mm_cvtsi128_si32(h), acc);
            }
            y[(size_t)m * N + n] = 1.0f * acc;
        }
    }
}

AVX2 void kw8a8_panels_avx2(const QMatrix *w, const int8_t *xq, const float *xs, int M, int p0, int np, float *y) {
    for (int p = p0; p < p0 + np; p++) {
        int m = 0;
        for (; m + 2 <= M; m += 2) tile_w8a8(w, xq, xs, m, p, 2, y);
        for (; m < M; m++) tile_w8a8(w, xq, xs, m, p, 1, y);
    }
}
#endif
