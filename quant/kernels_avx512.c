/* kernels_avx512.c: AVX-512 (F, BW, VNNI) paths. Weight-only rows convert
 * 16 codes per register and scale the products once per group; W8A8
 * runs vpdpbusd on the panel layout, 4 activation rows by 2 panels (32
 * outputs) per tile, so no horizontal sums are needed. */
#if defined(__x86_64__)
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels_impl.h"

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vnni")))
#define INLINE_AVX512 static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vnni")))

/* R rows at once (two accumulators each): the loads of x are shared and R
 * memory streams are in flight; per group, each row's scale. Group tails
 * (groups not a multiple of 16 columns, or per-channel rows of any length)
 * use masked loads. */
/* int8: the products of a group are summed unscaled, then the sum is scaled
 * (one multiply per group, not per weight: the FP pipes, not memory, are the
 * limit here). */
INLINE_AVX512 __m512 q8_f32(const int8_t *q) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)q)));
}

INLINE_AVX512 void rows_q8(const int8_t *q, const float *scales, int G, const float *x, int n, const int R, float *out) {
    const int ng = n / G;
    __m512 a[4][2];
    for (int r = 0; r < R; r++) a[r][0] = a[r][1] = _mm512_setzero_ps();
    for (int g = 0; g < ng; g++) {
        __m512 t[4][2];
        for (int r = 0; r < R; r++) t[r][0] = t[r][1] = _mm512_setzero_ps();
        const int end = (g + 1) * G;
        int j = g * G;
        for (; j + 32 <= end; j += 32) {
            __m512 x0 = _mm512_loadu_ps(x + j), x1 = _mm512_loadu_ps(x + j + 16);
            for (int r = 0; r < R; r++) {
                _mm_prefetch((const char *)(q + (size_t)r * n + j) + 1024, _MM_HINT_T0);
                t[r][0] = _mm512_fmadd_ps(q8_f32(q + (size_t)r * n + j), x0, t[r][0]);
                t[r][1] = _mm512_fmadd_ps(q8_f32(q + (size_t)r * n + j + 16), x1, t[r][1]);
            }
        }
        if (j + 16 <= end) {
            __m512 x0 = _mm512_loadu_ps(x + j);
            for (int r = 0; r < R; r++) t[r][0] = _mm512_fmadd_ps(q8_f32(q + (size_t)r * n + j), x0, t[r][0]);
            j += 16;
        }
        if (j < end) {
            __mmask16 m = (__mmask16)((1u << (end - j)) - 1);
            __m512 x0 = _mm512_maskz_loadu_ps(m, x + j);
            for (int r = 0; r < R; r++) {
                __m128i b = _mm512_castsi512_si128(_mm512_maskz_loadu_epi8((__mmask64)m, q + (size_t)r * n + j));
                t[r][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b)), x0, t[r][1]);
            }
        }
        for (int r = 0; r < R; r++) {
            __m512 s = _mm512_set1_ps(scales[(size_t)r * ng + g]);
            a[r][0] = _mm512_fmadd_ps(s, t[r][0], a[r][0]);
            a[r][1] = _mm512_fmadd_ps(s, t[r][1], a[r][1]);
        }
    }
    for (int r = 0; r < R; r++) out[r] = _mm512_reduce_add_ps(_mm512_add_ps(a[r][0], a[r][1]));
}

/* int4: the stored nibbles (code + 8) are converted and summed against x
 * unscaled, then each group gives s * (sum - 8 * sum of its x) with one
 * multiply per group. This measured 1.5x the throughput of looking codes up
 * in a 16-entry table of code * scale (vpermps), which the scalar reference's
 * order follows; the results agree to float rounding. */
INLINE_AVX512 void rows_q4(const uint8_t *q4, const float *scales, int G, const float *x_split, int n, const int R,
                            float *out) {
    const int ng = n / G, h = n / 2;
    const float *xe = x_split, *xo = x_split + h;
    const __m512i low = _mm512_set1_epi32(15);
    const __m512 eight = _mm512_set1_ps(8.0f);
    __m512 a[4];
    for (int r = 0; r < R; r++) a[r] = _mm512_setzero_ps();
    for (int g = 0; g < ng; g++) {
        __m512 t[4][2], xs = _mm512_setzero_ps();
        for (int r = 0; r < R; r++) t[r][0] = t[r][1] = _mm512_setzero_ps();
        const int end = (g + 1) * G / 2;
        int j = g * G / 2;
        for (; j + 16 <= end; j += 16) {
            __m512 x0 = _mm512_loadu_ps(xe + j), x1 = _mm512_loadu_ps(xo + j);
            xs = _mm512_add_ps(xs, _mm512_add_ps(x0, x1));
            for (int r = 0; r < R; r++) {
                __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(q4 + (size_t)r * h + j)));
                t[r][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_and_si512(v, low)), x0, t[r][0]);
                t[r][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(v, 4)), x1, t[r][1]);
            }
        }
        if (j < end) {
            __mmask16 m = (__mmask16)((1u << (end - j)) - 1);
            __m512 x0 = _mm512_maskz_loadu_ps(m, xe + j), x1 = _mm512_maskz_loadu_ps(m, xo + j);
            xs = _mm512_add_ps(xs, _mm512_add_ps(x0, x1));
            for (int r = 0; r < R; r++) {
                __m512i v = _mm512_cvtepu8_epi32(
                    _mm512_castsi512_si128(_mm512_maskz_loadu_epi8((__mmask64)m, q4 + (size_t)r * h + j)));
                t[r][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_and_si512(v, low)), x0, t[r][0]);
                t[r][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(v, 4)), x1, t[r][1]);
            }
        }
        for (int r = 0; r < R; r++)
            a[r] = _mm512_fmadd_ps(_mm512_set1_ps(scales[(size_t)r * ng + g]),
                                   _mm512_fnmadd_ps(eight, xs, _mm512_add_ps(t[r][0], t[r][1])), a[r]);
    }
    for (int r = 0; r < R; r++) out[r] = _mm512_reduce_add_ps(a[r]);
}

AVX512 void krows_q8_f32_avx512(const int8_t *q, const float *scales, int group, const float *x, int n, int nrows,
                                float *out) {
    switch (nrows) {
    case 4: rows_q8(q, scales, group, x, n, 4, out); break;
    case 3: rows_q8(q, scales, group, x, n, 3, out); break;
    case 2: rows_q8(q, scales, group, x, n, 2, out); break;
    default: rows_q8(q, scales, group, x, n, 1, out); break;
    }
}

AVX512 void krows_q4_f32_avx512(const uint8_t *q4, const float *scales, int group, const float *x_split, int n, int nrows,
                                float *out) {
    switch (nrows) {
    case 4: rows_q4(q4, scales, group, x_split, n, 4, out); break;
    case 3: rows_q4(q4, scales, group, x_split, n, 3, out); break;
    case 2: rows_q4(q4, scales, group, x_split, n, 2, out); break;
    default: rows_q4(q4, scales, group, x_split, n, 1, out); break;
    }
}

AVX512 void kquant_row_i8_avx512(const float *x, int K, int8_t *xq, float *xs) {
    __m512 amax = _mm512_setzero_ps();
    int k = 0;
    for (; k + 16 <= K; k += 16) amax = _mm512_max_ps(amax, _mm512_abs_ps(_mm512_loadu_ps(x + k)));
    float m = _mm512_reduce_max_ps(amax);
    for (int i = k; i < K; i++) m = fmaxf(m, fabsf(x[i]));
    QuantSpec s = {.bits = 8, .sym = true, .gran = QG_CHANNEL};
    quant_params_from_range(&s, -m, m, xs, NULL);
    /* quant_code: rint(x * (1/scale)), half to even, clamped to +-127 */
    const float inv = *xs > 0.0f ? 1.0f / *xs : 0.0f;
    const __m512 vinv = _mm512_set1_ps(inv), lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    for (k = 0; k + 16 <= K; k += 16) {
        __m512 v = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_loadu_ps(x + k), vinv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
        _mm_storeu_si128((__m128i *)(xq + k), _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(v)));
    }
    for (; k < K; k++) xq[k] = (int8_t)quant_code(x[k], *xs, 0.0f, -127, 127);
}

/* 4 bytes of activation codes, as the int32 vpdpbusd broadcasts */
static inline int32_t load4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* One tile: activation rows m0..m0+MR-1 by panels p..p+NR-1. Activations are
 * made unsigned by flipping the sign bit (x + 128); 128 * psum undoes it. */
INLINE_AVX512 void tile_w8a8(const QMatrix *w, const int8_t *xq, const float *xs, int m0, int p, const int MR,
                             const int NR, float *y) {
    const int N = w->rows, K = w->cols, G = w->group, ng = K / G, L = K / 4;
    const __m512i flip = _mm512_set1_epi32((int32_t)0x80808080u);
    __m512 f[4][2];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) f[i][j] = _mm512_setzero_ps();
    const int8_t *wp[2] = {w->p8 + (size_t)p * L * 64, w->p8 + (size_t)(p + NR - 1) * L * 64};
    for (int g = 0; g < ng; g++) {
        __m512i acc[4][2];
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++) acc[i][j] = _mm512_setzero_si512();
        for (int l = g * (G / 4); l < (g + 1) * (G / 4); l++) {
            __m512i wv[2];
            for (int j = 0; j < NR; j++) wv[j] = _mm512_loadu_si512(wp[j] + (size_t)l * 64);
            for (int i = 0; i < MR; i++) {
                __m512i xb = _mm512_xor_si512(_mm512_set1_epi32(load4(xq + (size_t)(m0 + i) * K + 4 * l)), flip);
                for (int j = 0; j < NR; j++) acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], xb, wv[j]);
            }
        }
        for (int j = 0; j < NR; j++) {
            size_t o = ((size_t)(p + j) * ng + g) * QPANEL;
            __m512 sc = _mm512_loadu_ps(w->pscales + o);
            __m512i corr = _mm512_slli_epi32(_mm512_loadu_si512(w->psums + o), 7);
            for (int i = 0; i < MR; i++)
                f[i][j] = _mm512_fmadd_ps(sc, _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[i][j], corr)), f[i][j]);
        }
    }
    for (int j = 0; j < NR; j++) {
        int n0 = (p + j) * QPANEL;
        __mmask16 mask = n0 + QPANEL <= N ? (__mmask16)0xffff : (__mmask16)((1u << (N - n0)) - 1);
        for (int i = 0; i < MR; i++)
            _mm512_mask_storeu_ps(y + (size_t)(m0 + i) * N + n0, mask, _mm512_mul_ps(_mm512_set1_ps(xs[m0 + i]), f[i][j]));
    }
}

AVX512 void kw8a8_panels_avx512(const QMatrix *w, const int8_t *xq, const float *xs, int M, int p0, int np, float *y) {
    for (int p = p0; p < p0 + np; p += 2) {
        int two = p + 1 < p0 + np;
        int m = 0;
        for (; m + 4 <= M; m += 4) {
            if (two) tile_w8a8(w, xq, xs, m, p, 4, 2, y);
            else tile_w8a8(w, xq, xs, m, p, 4, 1, y);
        }
        for (; m < M; m++) {
            if (two) tile_w8a8(w, xq, xs, m, p, 1, 2, y);
            else tile_w8a8(w, xq, xs, m, p, 1, 1, y);
        }
    }
}
#endif
