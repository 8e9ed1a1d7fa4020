/* kernels_avx512.c: AVX-512 (F, BW, VNNI) paths. Weight-only rows convert
 * 16 codes per register and scale the products once per group; the int4,
 * table and int8 panels take integer dot products against the activations'
 * byte planes (KAct); W8A8
 * runs vpdpbusd on the panel layout, 4 activation rows by 2 panels (32
 * outputs) per tile, so no horizontal sums are needed. */
#if defined(__x86_64__)
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels_impl.h"

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vnni")))

/* 4 bytes of activation codes, as the int32 vpdpbusd broadcasts */
static inline int32_t load4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}
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

/* A table matrix: the same loop with each index looked up among the 16
 * levels in one register (vpermps) instead of converted, and no offset;
 * each row and group its own table when the layer has several (row r,
 * group g: lut + r lut_rs + g lut_gs), loaded once per group. */
INLINE_AVX512 void rows_lut(const uint8_t *q4, const float *lut, int lut_rs, int lut_gs, const float *scales, int G,
                            const float *x_split, int n, const int R, float *out) {
    const int ng = n / G, h = n / 2;
    const float *xe = x_split, *xo = x_split + h;
    const __m512i low = _mm512_set1_epi32(15);
    __m512 a[4], tabs[4];
    for (int r = 0; r < R; r++) a[r] = _mm512_setzero_ps();
    for (int g = 0; g < ng; g++) {
        __m512 t[4][2];
        for (int r = 0; r < R; r++) {
            t[r][0] = t[r][1] = _mm512_setzero_ps();
            tabs[r] = _mm512_loadu_ps(lut + (size_t)r * lut_rs + (size_t)g * lut_gs);
        }
        const int end = (g + 1) * G / 2;
        int j = g * G / 2;
        for (; j + 16 <= end; j += 16) {
            __m512 x0 = _mm512_loadu_ps(xe + j), x1 = _mm512_loadu_ps(xo + j);
            for (int r = 0; r < R; r++) {
                __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(q4 + (size_t)r * h + j)));
                t[r][0] = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_and_si512(v, low), tabs[r]), x0, t[r][0]);
                t[r][1] = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), tabs[r]), x1, t[r][1]);
            }
        }
        if (j < end) {
            __mmask16 m = (__mmask16)((1u << (end - j)) - 1);
            __m512 x0 = _mm512_maskz_loadu_ps(m, xe + j), x1 = _mm512_maskz_loadu_ps(m, xo + j);
            for (int r = 0; r < R; r++) {
                __m512i v = _mm512_cvtepu8_epi32(
                    _mm512_castsi512_si128(_mm512_maskz_loadu_epi8((__mmask64)m, q4 + (size_t)r * h + j)));
                t[r][0] = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_and_si512(v, low), tabs[r]), x0, t[r][0]);
                t[r][1] = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), tabs[r]), x1, t[r][1]);
            }
        }
        for (int r = 0; r < R; r++)
            a[r] = _mm512_fmadd_ps(_mm512_set1_ps(scales[(size_t)r * ng + g]), _mm512_add_ps(t[r][0], t[r][1]), a[r]);
    }
    for (int r = 0; r < R; r++) out[r] = _mm512_reduce_add_ps(a[r]);
}

/* An 8-bit table matrix: 16 levels gathered at a time (vgatherdps from the
 * 1 KiB table, in L1) per row, the rows sharing the loads of x; a group's
 * tail past a multiple of 16 masked. */
INLINE_AVX512 void rows_lut8(const uint8_t *q, const float *lut, const float *scales, int G, const float *x, int n, const int R,
                             float *out) {
    const int ng = n / G;
    __m512 a[4];
    for (int r = 0; r < R; r++) a[r] = _mm512_setzero_ps();
    for (int g = 0; g < ng; g++) {
        __m512 t[4];
        for (int r = 0; r < R; r++) t[r] = _mm512_setzero_ps();
        const int end = (g + 1) * G;
        int j = g * G;
        for (; j + 16 <= end; j += 16) {
            __m512 xv = _mm512_loadu_ps(x + j);
            for (int r = 0; r < R; r++) {
                __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(q + (size_t)r * n + j)));
                t[r] = _mm512_fmadd_ps(_mm512_i32gather_ps(v, lut, 4), xv, t[r]);
            }
        }
        if (j < end) {
            __mmask16 m = (__mmask16)((1u << (end - j)) - 1);
            __m512 xv = _mm512_maskz_loadu_ps(m, x + j);
            for (int r = 0; r < R; r++) {
                __m512i v = _mm512_cvtepu8_epi32(_mm512_castsi512_si128(_mm512_maskz_loadu_epi8((__mmask64)m, q + (size_t)r * n + j)));
                t[r] = _mm512_fmadd_ps(_mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, v, lut, 4), xv, t[r]);
            }
        }
        for (int r = 0; r < R; r++) a[r] = _mm512_fmadd_ps(_mm512_set1_ps(scales[(size_t)r * ng + g]), t[r], a[r]);
    }
    for (int r = 0; r < R; r++) out[r] = _mm512_reduce_add_ps(a[r]);
}

AVX512 void krows_lut8_f32_avx512(const uint8_t *idx, const float *lut, const float *scales, int group, const float *x, int n,
                                  int nrows, float *out) {
    switch (nrows) {
    case 4: rows_lut8(idx, lut, scales, group, x, n, 4, out); break;
    case 3: rows_lut8(idx, lut, scales, group, x, n, 3, out); break;
    case 2: rows_lut8(idx, lut, scales, group, x, n, 2, out); break;
    default: rows_lut8(idx, lut, scales, group, x, n, 1, out); break;
    }
}

#ifndef Q4_PREFETCH
#define Q4_PREFETCH 1024 /* bytes ahead in each panel's stream */
#endif

/* Largest |m| two signed byte digits can hold: 127 * (1 + 256). */
#define KACT_M_MAX 32639.0f

/* The power-of-two exponent e that fits max |x| = mx (finite, > 0) to
 * integers m = x / 2^e of 16 bits (|m| <= KACT_M_MAX). */
static int kact_exponent(float mx) {
    int k2;
    float fr = frexpf(mx, &k2); /* mx = fr * 2^k2, fr in [0.5, 1) */
    int e = k2 - 15;
    if (ldexpf(fr, 15) > KACT_M_MAX) e++;
    return e;
}

/* The two signed byte digits of m (m = d0 + 256 d1). */
INLINE_AVX512 void digits2(__m512i m, __m512i *d1, __m512i *d0) {
    *d0 = _mm512_srai_epi32(_mm512_slli_epi32(m, 24), 24);
    *d1 = _mm512_srai_epi32(_mm512_sub_epi32(m, *d0), 8);
}

INLINE_AVX512 float max_abs(const float *x, int n, __mmask16 *bad) {
    __m512 amax = _mm512_setzero_ps();
    for (int k = 0; k < n; k += 16) {
        __mmask16 mk = n - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - k)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(mk, x + k);
        *bad |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        amax = _mm512_max_ps(amax, _mm512_abs_ps(v));
    }
    return _mm512_reduce_max_ps(amax);
}

AVX512 bool kact_planes_avx512(const float *x, int n, int block, int8_t *nat, int nat_stride, float *bsum,
                               float *bsum1, float *bscale) {
    /* NaN or Inf anywhere: no planes (the float path then gives NaN/Inf as
     * fake quantization does); max_ps alone would drop a NaN */
    __mmask16 bad = 0;
    float mx = max_abs(x, n, &bad);
    if (bad || !isfinite(mx) || (mx > 0.0f && mx < 1e-30f)) return false;
    int8_t *pl[2] = {nat, nat + nat_stride};
    /* per block of columns its own power of two, m to 16 bits of the
     * block's max, as two signed digits, and the block's sums of m and d1 */
    for (int c0 = 0, b = 0; c0 < n; c0 += block, b++) {
        int len = n - c0 < block ? n - c0 : block;
        float bm = max_abs(x + c0, len, &bad);
        if (bm > 0.0f && bm < 1e-30f) return false;
        int eb = bm > 0.0f ? kact_exponent(bm) : 0;
        bscale[b] = ldexpf(1.0f, eb);
        const __m512 inv = _mm512_set1_ps(ldexpf(1.0f, -eb));
        __m512i sum = _mm512_setzero_si512(), sum1 = _mm512_setzero_si512();
        for (int col = c0; col < c0 + len; col += 16) {
            int left = c0 + len - col;
            __mmask16 mk = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
            __m512i m = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(mk, x + col), inv)), d1, d0;
            digits2(m, &d1, &d0);
            _mm512_mask_cvtepi32_storeu_epi8(pl[0] + col, mk, d1);
            _mm512_mask_cvtepi32_storeu_epi8(pl[1] + col, mk, d0);
            sum = _mm512_add_epi32(sum, m); /* |m| < 2^15: 2^16 columns before it could overflow */
            sum1 = _mm512_add_epi32(sum1, d1);
        }
        bsum[b] = (float)_mm512_reduce_add_epi32(sum);
        bsum1[b] = (float)_mm512_reduce_add_epi32(sum1);
    }
    return true;
}

/* y rows of NP panels from p (rows past n not stored). */
INLINE_AVX512 void store_panels(const __m512 *f, const int NP, int p, int n, float *y) {
    for (int i = 0; i < NP; i++) {
        int r0 = (p + i) * QPANEL;
        __mmask16 mask = r0 + QPANEL <= n ? (__mmask16)0xffff : (__mmask16)((1u << (n - r0)) - 1);
        _mm512_mask_storeu_ps(y + r0, mask, f[i]);
    }
}

/* What a panel line holds: int4 nibbles (8 columns), table indices in the
 * same layout (8 columns) for integer levels or for two-byte ones (a + b /
 * 256), or int8 codes (4 columns, the W8A8 panels). */
enum { PANEL_NIBBLES, PANEL_TABLE, PANEL_TABLE2, PANEL_BYTES, PANEL_TABLES, PANEL_BYTES2 };

/* Bytes j of every 16-byte lane whose dword is row 4L + j of the lane's
 * four (the table panels' layout): where a table of that row applies. */
static const __mmask64 ROW_OF_LANE[4] = {0x000F000F000F000FULL, 0x00F000F000F000F0ULL, 0x0F000F000F000F00ULL,
                                         0xF000F000F000F000ULL};

/* R activation rows (1..4) against NP panels (1 or 2) from panel p: each
 * line of weights is loaded once for all R rows (and split into nibbles),
 * whose digits come as broadcast operands. The weights become unsigned
 * bytes: the nibbles are code + 8; a table's indices go through vpshufb to
 * its levels + 128; int8 codes flip their sign bit to code + 128. The
 * offset comes off as 8 or 128 times the block's sum of m, so no per-weight
 * sums are streamed beside the codes and scales. Per line and row, one
 * vpdpbusd per 4 columns and digit plane into two accumulators kept apart
 * over the activation block (a lane gains at most 4 * 255 * 128 per 4
 * columns); per block, 256 S1 + S0 - offset * sum(m) in float times the
 * block's power of two; per group, the sum times the 16 rows' scales. Each
 * row's arithmetic is the same whatever R, so a row's outputs do not depend
 * on the rows beside it. Two-byte levels add b against the high digit into
 * the low sum: (a + b / 256) m = 256 a d1 + a d0 + b d1 + b d0 / 256, the
 * last term (at most 64 units of the block's step) left out. */
INLINE_AVX512 void panel_tile(const QMatrix *w, const KAct *x, const int R, int p, const int NP, const int kind,
                              float *y, int ldy) {
    const bool bytes = kind == PANEL_BYTES || kind == PANEL_BYTES2;
    const int cpl = bytes ? 4 : 8; /* columns per line */
    const int N = w->rows, K = w->cols, G = w->group, ng = K / G, lpb = x[0].block / cpl, bpg = G / x[0].block;
    const int L = K / cpl, stride = x[0].nat_stride;
    const __m512i low = _mm512_set1_epi8(15), flip = _mm512_set1_epi8(-128);
    const bool table = kind == PANEL_TABLE || kind == PANEL_TABLE2 || kind == PANEL_TABLES;
    /* PANEL_TABLES: a table per row (or per row and group): for each panel
     * and each j, the levels + 128 of rows 4L + j in lane L, looked up by
     * four masked vpshufb, one per row of a lane */
    const int tps = kind == PANEL_TABLES ? (w->lut_gs ? ng : 1) : 0; /* table sets per panel */
    __m512i tr[2][4] = {{low, low, low, low}, {low, low, low, low}};
    const __m512i tab = table ? _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)w->plevels_u)) : low;
    const __m512i tlo =
        kind == PANEL_TABLE2 ? _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)w->plevels_lo_u)) : low;
    const float offset = kind == PANEL_NIBBLES ? 8.0f : 128.0f;
    const uint8_t *lines = bytes ? (const uint8_t *)w->p8 : table ? w->pl : w->p4;
    /* PANEL_BYTES2 (an 8-bit table's levels in two bytes, a + b / 256): the b lines */
    const uint8_t *lines2 = kind == PANEL_BYTES2 ? (const uint8_t *)w->p8lo : NULL;
    const float *scales = kind == PANEL_NIBBLES ? w->p4scales : w->pscales;
    const uint8_t *lp[2] = {lines + (size_t)p * L * 64, lines + (size_t)(p + NP - 1) * L * 64};
    const float *ps[2] = {scales + (size_t)p * ng * QPANEL, scales + (size_t)(p + NP - 1) * ng * QPANEL};
    __m512 f[4][2];
    for (int r = 0; r < R; r++) f[r][0] = f[r][1] = _mm512_setzero_ps();
    for (int g = 0; g < ng; g++) {
        __m512 tg[4][2];
        for (int r = 0; r < R; r++) tg[r][0] = tg[r][1] = _mm512_setzero_ps();
        if (kind == PANEL_TABLES && (g == 0 || tps > 1))
            for (int i = 0; i < NP; i++)
                for (int j = 0; j < 4; j++)
                    tr[i][j] = _mm512_loadu_si512(w->ptab + (((size_t)(p + i) * tps + (size_t)(tps > 1 ? g : 0)) * 4 + j) * 64);
        for (int b = g * bpg; b < (g + 1) * bpg; b++) {
            __m512i acc[4][2][2];
            for (int r = 0; r < R; r++)
                for (int i = 0; i < NP; i++) acc[r][i][0] = acc[r][i][1] = _mm512_setzero_si512();
            for (int l = b * lpb; l < (b + 1) * lpb; l++) {
                int c = cpl * l;
                __m512i wl[2], wh[2], bl[2], bh[2];
                for (int i = 0; i < NP; i++) {
                    const uint8_t *q = lp[i] + (size_t)l * 64;
                    _mm_prefetch((const char *)q + Q4_PREFETCH, _MM_HINT_T0);
                    __m512i v = _mm512_loadu_si512(q);
                    if (bytes) {
                        wl[i] = _mm512_xor_si512(v, flip);
                        if (kind == PANEL_BYTES2)
                            bl[i] = _mm512_xor_si512(_mm512_loadu_si512(lines2 + (lp[i] - lines) + (size_t)l * 64), flip);
                        continue;
                    }
                    wl[i] = _mm512_and_si512(v, low), wh[i] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
                    if (kind == PANEL_TABLE2) bl[i] = _mm512_shuffle_epi8(tlo, wl[i]), bh[i] = _mm512_shuffle_epi8(tlo, wh[i]);
                    if (kind == PANEL_TABLES) {
                        __m512i el = _mm512_maskz_shuffle_epi8(ROW_OF_LANE[0], tr[i][0], wl[i]);
                        __m512i eh = _mm512_maskz_shuffle_epi8(ROW_OF_LANE[0], tr[i][0], wh[i]);
                        for (int j = 1; j < 4; j++) {
                            el = _mm512_mask_shuffle_epi8(el, ROW_OF_LANE[j], tr[i][j], wl[i]);
                            eh = _mm512_mask_shuffle_epi8(eh, ROW_OF_LANE[j], tr[i][j], wh[i]);
                        }
                        wl[i] = el, wh[i] = eh;
                    } else if (table) {
                        wl[i] = _mm512_shuffle_epi8(tab, wl[i]), wh[i] = _mm512_shuffle_epi8(tab, wh[i]);
                    }
                }
                for (int r = 0; r < R; r++) {
                    const int8_t *n1 = x[r].nat + c, *n0 = n1 + stride;
                    __m512i d10 = _mm512_set1_epi32(load4(n1)), d00 = _mm512_set1_epi32(load4(n0));
                    if (bytes) {
                        for (int i = 0; i < NP; i++) {
                            acc[r][i][0] = _mm512_dpbusd_epi32(acc[r][i][0], wl[i], d10);
                            acc[r][i][1] = _mm512_dpbusd_epi32(acc[r][i][1], wl[i], d00);
                            if (kind == PANEL_BYTES2) acc[r][i][1] = _mm512_dpbusd_epi32(acc[r][i][1], bl[i], d10);
                        }
                        continue;
                    }
                    __m512i d11 = _mm512_set1_epi32(load4(n1 + 4)), d01 = _mm512_set1_epi32(load4(n0 + 4));
                    for (int i = 0; i < NP; i++) {
                        acc[r][i][0] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(acc[r][i][0], wl[i], d10), wh[i], d11);
                        acc[r][i][1] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(acc[r][i][1], wl[i], d00), wh[i], d01);
                        if (kind == PANEL_TABLE2)
                            acc[r][i][1] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(acc[r][i][1], bl[i], d10), bh[i], d11);
                    }
                }
            }
            for (int r = 0; r < R; r++) {
                float corr = offset * x[r].bsum[b] + (kind == PANEL_TABLE2 || kind == PANEL_BYTES2 ? 128.0f * x[r].bsum1[b] : 0.0f);
                const __m512 vc = _mm512_set1_ps(corr), vs = _mm512_set1_ps(x[r].bscale[b]);
                for (int i = 0; i < NP; i++) {
                    __m512 t = _mm512_sub_ps(_mm512_cvtepi32_ps(acc[r][i][1]), vc);
                    t = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r][i][0]), _mm512_set1_ps(256.0f), t);
                    tg[r][i] = _mm512_fmadd_ps(t, vs, tg[r][i]);
                }
            }
        }
        for (int i = 0; i < NP; i++) {
            /* the scales are a second stream per panel, too short for the
             * hardware prefetcher to pick up */
            _mm_prefetch((const char *)(ps[i] + (size_t)g * QPANEL) + Q4_PREFETCH / 2, _MM_HINT_T0);
            __m512 sc = _mm512_loadu_ps(ps[i] + (size_t)g * QPANEL);
            for (int r = 0; r < R; r++) f[r][i] = _mm512_fmadd_ps(tg[r][i], sc, f[r][i]);
        }
    }
    for (int r = 0; r < R; r++) store_panels(f[r], NP, p, N, y + (size_t)r * ldy);
}

/* Panels [p0, p0+np) in tiles of up to 4 activation rows by 2 panels (R
 * and NP constants in each call, so that a tile's accumulators stay in
 * registers); 16 rows per int32 lane set, so no sums are horizontal. */
INLINE_AVX512 void panel_tiles(const QMatrix *w, const KAct *x, int M, int p0, int np, float *y, int ldy,
                               const int kind) {
    for (int m = 0; m < M; m += 4) {
        int R = M - m < 4 ? M - m : 4;
        float *ym = y + (size_t)m * ldy;
        for (int p = p0; p < p0 + np; p += 2) {
            switch (R * 2 + (p + 2 <= p0 + np)) {
            case 9: panel_tile(w, x + m, 4, p, 2, kind, ym, ldy); break;
            case 8: panel_tile(w, x + m, 4, p, 1, kind, ym, ldy); break;
            case 7: panel_tile(w, x + m, 3, p, 2, kind, ym, ldy); break;
            case 6: panel_tile(w, x + m, 3, p, 1, kind, ym, ldy); break;
            case 5: panel_tile(w, x + m, 2, p, 2, kind, ym, ldy); break;
            case 4: panel_tile(w, x + m, 2, p, 1, kind, ym, ldy); break;
            case 3: panel_tile(w, x + m, 1, p, 2, kind, ym, ldy); break;
            default: panel_tile(w, x + m, 1, p, 1, kind, ym, ldy); break;
            }
        }
    }
}

AVX512 void kq4_panels_avx512(const QMatrix *w, const KAct *x, int M, int p0, int np, float *y, int ldy) {
    panel_tiles(w, x, M, p0, np, y, ldy, PANEL_NIBBLES);
}

AVX512 void klut_panels_avx512(const QMatrix *w, const KAct *x, int M, int p0, int np, float *y, int ldy) {
    if (w->ptab) panel_tiles(w, x, M, p0, np, y, ldy, PANEL_TABLES);
    else if (w->plevels_two) panel_tiles(w, x, M, p0, np, y, ldy, PANEL_TABLE2);
    else panel_tiles(w, x, M, p0, np, y, ldy, PANEL_TABLE);
}

AVX512 void kq8_panels_avx512(const QMatrix *w, const KAct *x, int M, int p0, int np, float *y, int ldy) {
    if (w->p8lo) panel_tiles(w, x, M, p0, np, y, ldy, PANEL_BYTES2);
    else panel_tiles(w, x, M, p0, np, y, ldy, PANEL_BYTES);
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

AVX512 void krows_lut_f32_avx512(const uint8_t *q4, const float *lut, int lut_rs, int lut_gs, const float *scales, int group, const float *x_split,
                                 int n, int nrows, float *out) {
    switch (nrows) {
    case 4: rows_lut(q4, lut, lut_rs, lut_gs, scales, group, x_split, n, 4, out); break;
    case 3: rows_lut(q4, lut, lut_rs, lut_gs, scales, group, x_split, n, 3, out); break;
    case 2: rows_lut(q4, lut, lut_rs, lut_gs, scales, group, x_split, n, 2, out); break;
    default: rows_lut(q4, lut, lut_rs, lut_gs, scales, group, x_split, n, 1, out); break;
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

/* One tile: activation rows m0..m0+MR-1 by panels p..p+NR-1. Activations are
 * made unsigned by flipping the sign bit (x + 128); 128 * psum undoes it. */
INLINE_AVX512 void tile_w8a8(const QMatrix *w, const int8_t *xq, const float *xs, int m0, int p, const int MR,
                             const int NR, float *y) {
    const int N = w->rows, K = w->cols, G = w->group, ng = K / G, L = K / 4;
    const __m512i flip = _mm512_set1_epi32((int32_t)0x80808080u);
    const bool blocks = w->act_q8_0;
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
            for (int i = 0; i < MR; i++) {
                __m512 s = blocks ? _mm512_mul_ps(sc, _mm512_set1_ps(xs[(size_t)(m0 + i) * ng + g])) : sc;
                f[i][j] = _mm512_fmadd_ps(s, _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[i][j], corr)), f[i][j]);
            }
        }
    }
    for (int j = 0; j < NR; j++) {
        int n0 = (p + j) * QPANEL;
        __mmask16 mask = n0 + QPANEL <= N ? (__mmask16)0xffff : (__mmask16)((1u << (N - n0)) - 1);
        for (int i = 0; i < MR; i++)
            _mm512_mask_storeu_ps(y + (size_t)(m0 + i) * N + n0, mask,
                                  _mm512_mul_ps(_mm512_set1_ps(blocks ? 1.0f : xs[m0 + i]), f[i][j]));
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
/* A table matrix (iq4_nl) on its table panels against q8_0 activation
 * blocks: tile_w8a8's arithmetic, each 64-byte line of indices giving two
 * W8A8 lines of int8 levels through vpshufb (llama.cpp's iq4_nl x q8_0,
 * the same integer sums and float steps as kw4a8_panels_scalar). */
INLINE_AVX512 void tile_lut_w8a8(const QMatrix *w, const int8_t *xq, const float *xs, int m0, int p, const int MR,
                                 const int NR, float *y) {
    const int N = w->rows, K = w->cols, G = w->group, ng = K / G, L2 = K / 8;
    const __m512i flip = _mm512_set1_epi32((int32_t)0x80808080u), low = _mm512_set1_epi8(15);
    const __m512i tab = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)w->plevels));
    __m512 f[4][2];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) f[i][j] = _mm512_setzero_ps();
    const uint8_t *lp[2] = {w->pl + (size_t)p * L2 * 64, w->pl + (size_t)(p + NR - 1) * L2 * 64};
    for (int g = 0; g < ng; g++) {
        __m512i acc[4][2];
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++) acc[i][j] = _mm512_setzero_si512();
        for (int l = g * (G / 4); l < (g + 1) * (G / 4); l += 2) {
            __m512i wl[2], wh[2];
            for (int j = 0; j < NR; j++) {
                const uint8_t *q = lp[j] + (size_t)(l / 2) * 64;
                _mm_prefetch((const char *)q + Q4_PREFETCH, _MM_HINT_T0);
                __m512i v = _mm512_loadu_si512(q);
                wl[j] = _mm512_shuffle_epi8(tab, _mm512_and_si512(v, low));
                wh[j] = _mm512_shuffle_epi8(tab, _mm512_and_si512(_mm512_srli_epi16(v, 4), low));
            }
            for (int i = 0; i < MR; i++) {
                const int8_t *c = xq + (size_t)(m0 + i) * K + 4 * l;
                __m512i x0 = _mm512_xor_si512(_mm512_set1_epi32(load4(c)), flip);
                __m512i x1 = _mm512_xor_si512(_mm512_set1_epi32(load4(c + 4)), flip);
                for (int j = 0; j < NR; j++)
                    acc[i][j] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(acc[i][j], x0, wl[j]), x1, wh[j]);
            }
        }
        for (int j = 0; j < NR; j++) {
            size_t o = ((size_t)(p + j) * ng + g) * QPANEL;
            __m512 sc = _mm512_loadu_ps(w->pscales + o);
            __m512i corr = _mm512_slli_epi32(_mm512_loadu_si512(w->psums + o), 7);
            for (int i = 0; i < MR; i++) {
                __m512 s = _mm512_mul_ps(sc, _mm512_set1_ps(xs[(size_t)(m0 + i) * ng + g]));
                f[i][j] = _mm512_fmadd_ps(s, _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[i][j], corr)), f[i][j]);
            }
        }
    }
    for (int j = 0; j < NR; j++) {
        int n0 = (p + j) * QPANEL;
        __mmask16 mask = n0 + QPANEL <= N ? (__mmask16)0xffff : (__mmask16)((1u << (N - n0)) - 1);
        for (int i = 0; i < MR; i++) _mm512_mask_storeu_ps(y + (size_t)(m0 + i) * N + n0, mask, f[i][j]);
    }
}

AVX512 void kw4a8_lut_panels_avx512(const QMatrix *w, const int8_t *xq, const float *xs, int M, int p0, int np,
                                    float *y) {
    for (int p = p0; p < p0 + np; p += 2) {
        int two = p + 1 < p0 + np, m = 0;
        for (; m + 4 <= M; m += 4) {
            if (two) tile_lut_w8a8(w, xq, xs, m, p, 4, 2, y);
            else tile_lut_w8a8(w, xq, xs, m, p, 4, 1, y);
        }
        for (; m < M; m++) {
            if (two) tile_lut_w8a8(w, xq, xs, m, p, 1, 2, y);
            else tile_lut_w8a8(w, xq, xs, m, p, 1, 1, y);
        }
    }
}

/* The sum of 32 signed bytes: unsigned sums of the bytes + 128, less 32 * 128. */
INLINE_AVX512 int32_t sum32_i8(const int8_t *c) {
    __m256i v = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)c), _mm256_set1_epi8((char)0x80));
    __m256i s = _mm256_sad_epu8(v, _mm256_setzero_si256());
    __m128i t = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    return (int32_t)(_mm_cvtsi128_si64(t) + _mm_extract_epi64(t, 1)) - 32 * 128;
}

/* int4 panels against q8_0 activation blocks, MR activation rows by NP
 * panels: per line (8 columns) the nibbles are split once and take two
 * vpdpbusd per row against 4 broadcast activation codes each; per group the
 * + 8 comes off as 8 times the block's code sum, then (scale x activation
 * scale) x dot as kw4a8_panels_scalar forms it. */
INLINE_AVX512 void tile_w4a8(const QMatrix *w, const int8_t *xq, const float *xs, int m0, int p, const int MR,
                             const int NP, float *y) {
    const int N = w->rows, K = w->cols, G = w->group, ng = K / G, lpg = G / 8, L = K / 8;
    const __m512i low = _mm512_set1_epi8(15);
    const uint8_t *lp[2] = {w->p4 + (size_t)p * L * 64, w->p4 + (size_t)(p + NP - 1) * L * 64};
    const float *ps[2] = {w->p4scales + (size_t)p * ng * QPANEL, w->p4scales + (size_t)(p + NP - 1) * ng * QPANEL};
    __m512 f[4][2];
    for (int r = 0; r < MR; r++) f[r][0] = f[r][1] = _mm512_setzero_ps();
    for (int g = 0; g < ng; g++) {
        __m512i acc[4][2];
        for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_si512();
        for (int l = g * lpg; l < (g + 1) * lpg; l++) {
            __m512i wl[2], wh[2];
            for (int i = 0; i < NP; i++) {
                const uint8_t *q = lp[i] + (size_t)l * 64;
                _mm_prefetch((const char *)q + Q4_PREFETCH, _MM_HINT_T0);
                __m512i v = _mm512_load_si512(q);
                wl[i] = _mm512_and_si512(v, low), wh[i] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
            }
            for (int r = 0; r < MR; r++) {
                const int8_t *c = xq + (size_t)(m0 + r) * K + 8 * l;
                __m512i d0 = _mm512_set1_epi32(load4(c)), d1 = _mm512_set1_epi32(load4(c + 4));
                for (int i = 0; i < NP; i++) acc[r][i] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(acc[r][i], wl[i], d0), wh[i], d1);
            }
        }
        for (int r = 0; r < MR; r++) {
            const __m512i corr = _mm512_set1_epi32(8 * sum32_i8(xq + (size_t)(m0 + r) * K + (size_t)g * G));
            const __m512 xg = _mm512_set1_ps(xs[(size_t)(m0 + r) * ng + g]);
            for (int i = 0; i < NP; i++) {
                __m512 sc = _mm512_mul_ps(_mm512_loadu_ps(ps[i] + (size_t)g * QPANEL), xg);
                f[r][i] = _mm512_fmadd_ps(sc, _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][i], corr)), f[r][i]);
            }
        }
    }
    for (int r = 0; r < MR; r++) store_panels(f[r], NP, p, N, y + (size_t)(m0 + r) * N);
}

AVX512 void kw4a8_panels_avx512(const QMatrix *w, const int8_t *xq, const float *xs, int M, int p0, int np, float *y) {
    if (w->group != 32) { /* q8_0 blocks are 32 */
        kw4a8_panels_scalar(w, xq, xs, M, p0, np, y);
        return;
    }
    for (int p = p0; p < p0 + np; p += 2) {
        int two = p + 1 < p0 + np, m = 0;
        for (; m + 4 <= M; m += 4) {
            if (two) tile_w4a8(w, xq, xs, m, p, 4, 2, y);
            else tile_w4a8(w, xq, xs, m, p, 4, 1, y);
        }
        for (; m < M; m++) {
            if (two) tile_w4a8(w, xq, xs, m, p, 1, 2, y);
            else tile_w4a8(w, xq, xs, m, p, 1, 1, y);
        }
    }
}
#endif
