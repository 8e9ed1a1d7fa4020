/* blocks.c: ggml's block formats and their reference quantizers (see
 * blocks.h). Scalar on purpose: these are the references the export, the
 * fake quantization and the tests compare against; they run once per
 * weight per step at most. */
#include "blocks.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "util/util.h"

uint16_t fp16_from_f32(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u, a = x & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu)); /* NaN stays NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);                      /* rounds past 65504: inf */
    if (a >= 0x38800000u) {                                                      /* normal half */
        /* rebias the exponent, then round the 13 dropped bits to nearest even;
         * a carry out of the mantissa correctly bumps the exponent */
        uint32_t h = (a - (112u << 23) + 0xfffu + ((a >> 13) & 1u)) >> 13;
        return (uint16_t)(sign | h);
    }
    /* subnormal half: units of 2^-24 */
    uint32_t e = a >> 23;
    if (e < 102) return (uint16_t)sign; /* below half of the smallest subnormal */
    uint32_t m = (a & 0x7fffffu) | 0x800000u, shift = 126 - e;
    uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u))) r++;
    return (uint16_t)(sign | r);
}

float fp16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, x;
    if (e == 31) {
        x = sign | 0x7f800000u | (m << 13);
    } else if (e) {
        x = sign | ((e + 112u) << 23) | (m << 13);
    } else if (m) { /* subnormal: m * 2^-24, exact in float */
        float v = (float)m * 0x1p-24f;
        memcpy(&x, &v, 4);
        x |= sign;
    } else {
        x = sign;
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

const int8_t IQ4NL_LEVELS[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
/* the same levels as floats, for the table search (quant_level_index) */
const float IQ4NL_LEVELS_F[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

static const char *const NAMES[] = {NULL, "q8_0", "q4_0", "q4_1", "iq4_nl"};

const char *qformat_name(QFormat f) { return f > QF_NONE && f <= QF_IQ4_NL ? NAMES[f] : NULL; }

QFormat qformat_of(const char *name) {
    for (int f = QF_Q8_0; f <= QF_IQ4_NL; f++)
        if (!strcmp(name, NAMES[f])) return (QFormat)f;
    return QF_NONE;
}

size_t qformat_block_bytes(QFormat f) {
    return f == QF_Q8_0 ? sizeof(BlockQ8_0) : f == QF_Q4_0 ? sizeof(BlockQ4_0) : f == QF_Q4_1 ? sizeof(BlockQ4_1)
           : f == QF_IQ4_NL ? sizeof(BlockIQ4_NL) : 0;
}

double qformat_bpw(QFormat f) { return 8.0 * (double)qformat_block_bytes(f) / QBLOCK; }

/* Where ggml's cast is defined the clamp changes nothing (|x / d| <= 127, or
 * 8.5 + x / d in [0.5, 16.5]); a scale whose reciprocal overflows (a
 * subnormal d, as a hand-made file can hold) would give inf or NaN, whose
 * conversion to int is undefined: clamped, and NaN taken as 0. */
static float clampf(float v, float lo, float hi) { return v >= lo ? (v <= hi ? v : hi) : v < lo ? lo : 0.0f; }

/* iq4_nl: ggml's search (blocks.h), its float arithmetic in its order */
static void iq4nl_codes(const float *x, int *q, float *d) {
    float amax = 0.0f, max = 0.0f, w[QBLOCK];
    for (int j = 0; j < QBLOCK; j++) {
        w[j] = x[j] * x[j];
        if (fabsf(x[j]) > amax) amax = fabsf(x[j]), max = x[j];
    }
    if (amax < 1e-15f) { /* ggml's GROUP_MAX_EPS: d = 0, every index the level nearest 0 */
        *d = 0.0f;
        for (int j = 0; j < QBLOCK; j++) q[j] = iq4nl_index(0.0f);
        return;
    }
    const float l0 = (float)IQ4NL_LEVELS[0];
    float id = 1.0f / (-max / l0), sumqx = 0.0f, sumq2 = 0.0f;
    for (int j = 0; j < QBLOCK; j++) {
        float lv = (float)IQ4NL_LEVELS[iq4nl_index(id * x[j])];
        sumqx += w[j] * lv * x[j];
        sumq2 += w[j] * lv * lv;
    }
    float best_d = sumq2 > 0.0f ? sumqx / sumq2 : 0.0f, best = best_d * sumqx;
    for (int t = -7; t <= 7; t++) {
        id = (float)(t + IQ4NL_LEVELS[0]) / max;
        sumqx = sumq2 = 0.0f;
        for (int j = 0; j < QBLOCK; j++) {
            float lv = (float)IQ4NL_LEVELS[iq4nl_index(id * x[j])];
            sumqx += w[j] * lv * x[j];
            sumq2 += w[j] * lv * lv;
        }
        if (sumq2 > 0.0f && sumqx * sumqx > best * sumq2) best_d = sumqx / sumq2, best = best_d * sumqx;
    }
    *d = best_d;
    id = best_d != 0.0f ? 1.0f / best_d : 0.0f;
    for (int j = 0; j < QBLOCK; j++) q[j] = iq4nl_index(id * x[j]);
}

/* codes of one block as ggml computes them; d and m before half rounding */
static void block_codes(QFormat f, const float *x, int *q, float *d, float *m) {
    *m = 0.0f;
    if (f == QF_IQ4_NL) {
        iq4nl_codes(x, q, d);
    } else if (f == QF_Q8_0) {
        float amax = 0.0f;
        for (int j = 0; j < QBLOCK; j++) amax = fmaxf(amax, fabsf(x[j]));
        *d = amax / 127.0f;
        float id = *d != 0.0f ? 1.0f / *d : 0.0f;
        for (int j = 0; j < QBLOCK; j++) q[j] = (int)roundf(clampf(x[j] * id, -127.0f, 127.0f));
    } else if (f == QF_Q4_0) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QBLOCK; j++)
            if (amax < fabsf(x[j])) amax = fabsf(x[j]), max = x[j];
        *d = max / -8.0f;
        float id = *d != 0.0f ? 1.0f / *d : 0.0f;
        for (int j = 0; j < QBLOCK; j++) {
            int v = (int)(int8_t)clampf(x[j] * id + 8.5f, 0.0f, 16.0f);
            q[j] = v < 15 ? v : 15;
        }
    } else {
        float lo = FLT_MAX, hi = -FLT_MAX;
        for (int j = 0; j < QBLOCK; j++) {
            if (x[j] < lo) lo = x[j];
            if (x[j] > hi) hi = x[j];
        }
        *d = (hi - lo) / 15.0f;
        *m = lo;
        float id = *d != 0.0f ? 1.0f / *d : 0.0f;
        for (int j = 0; j < QBLOCK; j++) {
            int v = (int)(int8_t)clampf((x[j] - lo) * id + 0.5f, 0.0f, 16.0f);
            q[j] = v < 15 ? v : 15;
        }
    }
}

static float dequant_one(QFormat f, int q, float dh, float mh) {
    return f == QF_Q8_0    ? (float)q * dh
           : f == QF_Q4_0  ? (float)(q - 8) * dh
           : f == QF_IQ4_NL ? dh * (float)IQ4NL_LEVELS[q]
                           : (float)q * dh + mh;
}

void block_pack(QFormat f, void *blocks, size_t b, uint16_t d, uint16_t m, const int *codes) {
    if (f == QF_Q8_0) {
        BlockQ8_0 *y = (BlockQ8_0 *)blocks + b;
        y->d = d;
        for (int j = 0; j < QBLOCK; j++) y->qs[j] = (int8_t)codes[j];
        return;
    }
    uint8_t *qs;
    if (f == QF_Q4_0 || f == QF_IQ4_NL) { /* the same layout: d, then 16 bytes of nibbles */
        BlockQ4_0 *y = (BlockQ4_0 *)blocks + b;
        y->d = d;
        qs = y->qs;
    } else if (f == QF_Q4_1) {
        BlockQ4_1 *y = (BlockQ4_1 *)blocks + b;
        y->d = d, y->m = m;
        qs = y->qs;
    } else {
        qat_fail("blocks: no block format given");
    }
    for (int j = 0; j < QBLOCK / 2; j++) qs[j] = (uint8_t)(codes[j] | codes[j + QBLOCK / 2] << 4);
}

void blocks_quantize(QFormat f, const float *x, size_t n, void *out) {
    if (n % QBLOCK) qat_fail("blocks: %zu values are not whole blocks of %d", n, QBLOCK);
    int q[QBLOCK];
    float d, m;
    for (size_t b = 0; b < n / QBLOCK; b++) {
        block_codes(f, x + b * QBLOCK, q, &d, &m);
        block_pack(f, out, b, fp16_from_f32(d), fp16_from_f32(m), q);
    }
}

void blocks_scales(QFormat f, const void *blocks, size_t nb, float *d, float *m) {
    for (size_t b = 0; b < nb; b++) {
        uint16_t hd = f == QF_Q8_0                      ? ((const BlockQ8_0 *)blocks)[b].d
                      : f == QF_Q4_0 || f == QF_IQ4_NL ? ((const BlockQ4_0 *)blocks)[b].d
                                                        : ((const BlockQ4_1 *)blocks)[b].d;
        d[b] = fp16_to_f32(hd);
        if (m) m[b] = f == QF_Q4_1 ? fp16_to_f32(((const BlockQ4_1 *)blocks)[b].m) : 0.0f;
    }
}

void blocks_dequantize(QFormat f, const void *blocks, size_t n, float *out) {
    for (size_t b = 0; b < n / QBLOCK; b++) {
        float *o = out + b * QBLOCK;
        if (f == QF_Q8_0) {
            const BlockQ8_0 *y = (const BlockQ8_0 *)blocks + b;
            float d = fp16_to_f32(y->d);
            for (int j = 0; j < QBLOCK; j++) o[j] = (float)y->qs[j] * d;
            continue;
        }
        bool q40 = f == QF_Q4_0 || f == QF_IQ4_NL;
        const uint8_t *qs = q40 ? ((const BlockQ4_0 *)blocks + b)->qs : ((const BlockQ4_1 *)blocks + b)->qs;
        float d = fp16_to_f32(q40 ? ((const BlockQ4_0 *)blocks + b)->d : ((const BlockQ4_1 *)blocks + b)->d);
        float m = f == QF_Q4_1 ? fp16_to_f32(((const BlockQ4_1 *)blocks + b)->m) : 0.0f;
        for (int j = 0; j < QBLOCK / 2; j++) {
            o[j] = dequant_one(f, qs[j] & 15, d, m);
            o[j + QBLOCK / 2] = dequant_one(f, qs[j] >> 4, d, m);
        }
    }
}

void block_fake(QFormat f, const float *x, float *out, int *codes, float *d, float *m) {
    int q[QBLOCK];
    float dd, mm;
    block_codes(f, x, q, &dd, &mm);
    float dh = fp16_round(dd), mh = fp16_round(mm);
    for (int j = 0; j < QBLOCK; j++) {
        out[j] = dequant_one(f, q[j], dh, mh);
        if (codes) codes[j] = q[j];
    }
    if (d) *d = dh;
    if (m) *m = f == QF_Q4_1 ? mh : 0.0f;
}

void block_act_q8_0(const float *x, float *out, int8_t *codes, float *d) {
    float amax = 0.0f;
    for (int j = 0; j < QBLOCK; j++) amax = fmaxf(amax, fabsf(x[j]));
    float id = amax != 0.0f ? 127.0f / amax : 0.0f, dh = fp16_round(amax / 127.0f), r[QBLOCK];
    /* round half to even by adding and taking away 1.5 x 2^23 (exact for
     * |u| <= 127 in the default rounding mode), so the loop vectorises */
    for (int j = 0; j < QBLOCK; j++) {
        float u = x[j] * id;
        u = u != u ? 0.0f : u < -127.0f ? -127.0f : u > 127.0f ? 127.0f : u;
        r[j] = (u + 12582912.0f) - 12582912.0f;
    }
    for (int j = 0; j < QBLOCK; j++) {
        if (codes) codes[j] = (int8_t)r[j];
        if (out) out[j] = r[j] * dh;
    }
    if (d) *d = dh;
}

void block_fake_scaled(QFormat f, const float *x, float scale, float min, float *out, int *codes) {
    /* q4_0's reference scale is negative when the extreme value is positive */
    float dh = fp16_round(scale), mh = f == QF_Q4_1 ? fp16_round(min) : 0.0f;
    for (int j = 0; j < QBLOCK; j++) out[j] = block_round(f, x[j], dh, mh, codes ? &codes[j] : NULL);
}
