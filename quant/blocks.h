/* blocks.h: llama.cpp's (ggml's) block formats, so that what qat trains and
 * exports is byte for byte what llama.cpp runs. Each block covers 32
 * consecutive weights of a row and stores an IEEE half-precision scale:
 *
 *   q8_0: d, 32 int8 codes in [-127, 127];            w = q * d
 *   q4_0: d, 32 4-bit codes in [0, 15] (stored +8);    w = (q - 8) * d
 *   q4_1: d and m (the block's minimum), 4-bit codes;  w = q * d + m
 *   iq4_nl: d, 32 4-bit indices into 16 fixed levels;  w = d * IQ4NL_LEVELS[q]
 *           (non-uniform int8 levels -127..113, denser near zero, where
 *           weights are)
 *
 * 4-bit codes are packed ggml's way: byte j holds element j in its low
 * nibble and element j + 16 in its high nibble.
 *
 * The reference quantizers follow ggml's rounding exactly (facts from
 * ggml-quants.c, written anew): q8_0 d = max|x| / 127 and q = round half away
 * from zero of x / d; q4_0 d = m / -8 where m is the value of largest
 * magnitude with its sign, q = min(15, floor(x / d + 8.5)); q4_1 d =
 * (max - min) / 15, q = min(15, floor((x - min) / d + 0.5)). The codes use
 * the reciprocal of d in float; the stored d is d rounded to half precision
 * (round to nearest even), and dequantization uses the stored half.
 *
 * iq4_nl follows ggml's quantize_iq4_nl, what llama-quantize runs without an
 * importance matrix: each value's index is its nearest level (ties to the
 * upper one); d starts at max / 127 (max signed, as q4_0), is refit by least
 * squares weighted by x^2, then the fits from the 15 trial reciprocals (i -
 * 127) / max, i = -7..7, compete on the weighted error; the winner's float d
 * assigns the final indices and is stored as a half. */
#ifndef QAT_BLOCKS_H
#define QAT_BLOCKS_H

#include <stddef.h>
#include <stdint.h>

#define QBLOCK 32

typedef enum { QF_NONE = 0, QF_Q8_0, QF_Q4_0, QF_Q4_1, QF_IQ4_NL } QFormat;

/* ggml's kvalues_iq4nl */
extern const int8_t IQ4NL_LEVELS[16];

typedef struct BlockQ8_0 {
    uint16_t d;
    int8_t qs[QBLOCK];
} BlockQ8_0;

typedef struct BlockQ4_0 {
    uint16_t d;
    uint8_t qs[QBLOCK / 2];
} BlockQ4_0;

typedef struct BlockQ4_1 {
    uint16_t d, m;
    uint8_t qs[QBLOCK / 2];
} BlockQ4_1;

typedef struct BlockIQ4_NL {
    uint16_t d;
    uint8_t qs[QBLOCK / 2];
} BlockIQ4_NL;

/* IEEE binary16, round to nearest even (as F16C's vcvtps2ph and ggml). */
uint16_t fp16_from_f32(float f);
float fp16_to_f32(uint16_t h);
static inline float fp16_round(float f) { return fp16_to_f32(fp16_from_f32(f)); }

/* "q8_0", "q4_0", "q4_1", "iq4_nl", or NULL for QF_NONE; and the reverse (QF_NONE
 * when name is none of them). */
const char *qformat_name(QFormat f);
QFormat qformat_of(const char *name);
/* Bytes of one block, bits per weight (including the scales). */
size_t qformat_block_bytes(QFormat f);
double qformat_bpw(QFormat f);

/* Reference quantization of n (a multiple of 32) floats into n/32 blocks
 * at out, as ggml's quantize_row_*_ref. */
void blocks_quantize(QFormat f, const float *x, size_t n, void *out);
/* Stores block b of an array of blocks of format f: d (and m, q4_1) as
 * halves and 32 codes as stored (q8_0 -127..127; 4-bit formats 0..15,
 * iq4_nl's being level indices). */
void block_pack(QFormat f, void *blocks, size_t b, uint16_t d, uint16_t m, const int *codes);
/* The half-precision d (and m, q4_1; else 0) of nb blocks, as floats. */
void blocks_scales(QFormat f, const void *blocks, size_t nb, float *d, float *m);
/* n floats from n/32 blocks. */
void blocks_dequantize(QFormat f, const void *blocks, size_t n, float *out);
/* One block of 32 values quantized then dequantized, and its codes (0..15
 * for the 4-bit formats, -127..127 for q8_0), d and m as floats (m = 0 for
 * the symmetric formats). The fake quantization of training. */
void block_fake(QFormat f, const float *x, float *out, int *codes, float *d, float *m);
/* One block of 32 activations in q8_0 as llama.cpp's CPU products quantize
 * their input (quantize_row_q8_0 and the repacked paths' 4-row version in
 * every ggml-cpu build for x86 with AVX, which is what llama.cpp loads on
 * any x86 server since 2011): d = max|x| / 127 stored as a half, but the
 * codes are x times 127 / max|x| rounded half to even. That differs from
 * the weights' reference rounding (x times 1 / d, half away from zero) at
 * about 2 values in a million, each a step that llama.cpp's next products
 * see. codes -127..127; out their values on the half d; *d that half. */
void block_act_q8_0(const float *x, float *out, int8_t *codes, float *d);
/* The same with a given scale (LSQ's learned one, or a PTQ method's) and,
 * for q4_1, a given minimum: both are rounded to half precision and the
 * codes are the nearest on that grid, clamped to the format's range. */
void block_fake_scaled(QFormat f, const float *x, float scale, float min, float *out, int *codes);
/* The index of the level nearest u among n sorted levels, ties to the upper
 * one (as ggml's best_index_int8 for iq4_nl); a NaN takes the level nearest
 * 0. Every table path (iq4_nl, codebooks) rounds through it. */
static inline int quant_level_index(const float *lv, int n, float u) {
    if (u != u) u = 0.0f;
    if (u <= lv[0]) return 0;
    if (u >= lv[n - 1]) return n - 1;
    int lo = 0, hi = n - 1;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (u < lv[mid]) hi = mid;
        else lo = mid;
    }
    return u - lv[hi - 1] < lv[hi] - u ? hi - 1 : hi;
}
/* IQ4NL_LEVELS as floats, and the iq4_nl level nearest u (in units of d). */
extern const float IQ4NL_LEVELS_F[16];
static inline int iq4nl_index(float u) { return quant_level_index(IQ4NL_LEVELS_F, 16, u); }

/* One value on the grid of half-precision d (and m, q4_1): its code as
 * stored and its dequantized value. q8_0 rounds half away from zero, the
 * 4-bit formats half up, as ggml's references do; iq4_nl takes the nearest
 * level. */
static inline float block_round(QFormat f, float x, float dh, float mh, int *code) {
    float id = dh != 0.0f ? 1.0f / dh : 0.0f;
    if (f == QF_IQ4_NL) {
        int q = iq4nl_index(x * id);
        if (code) *code = q;
        return dh * (float)IQ4NL_LEVELS[q];
    }
    if (f == QF_Q4_1) {
        float r = __builtin_floorf((x - mh) * id + 0.5f);
        if (r != r) r = 0.0f; /* never convert a NaN */
        int q = r < 0.0f ? 0 : r > 15.0f ? 15 : (int)r;
        if (code) *code = q;
        return (float)q * dh + mh;
    }
    float u = x * id, r = f == QF_Q8_0 ? __builtin_roundf(u) : __builtin_floorf(u + 0.5f);
    if (r != r) r = 0.0f;
    int lo = f == QF_Q8_0 ? -127 : -8, hi = f == QF_Q8_0 ? 127 : 7;
    int q = r < (float)lo ? lo : r > (float)hi ? hi : (int)r;
    if (code) *code = f == QF_Q8_0 ? q : q + 8;
    return (float)q * dh;
}

#endif
