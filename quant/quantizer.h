/* quantizer.h: the one quantizer definition that fake-quant training, PTQ,
 * export and the integer kernels all call, so they cannot disagree.
 *
 * Rounding: round half to even (rintf in the default rounding mode), the same
 *   as torch.round, in every path.
 * Symmetric b bits: q in [-(2^(b-1)-1), 2^(b-1)-1], scale = max|x| / (2^(b-1)-1).
 *   The most negative code -2^(b-1) is NOT used, so the grid is symmetric
 *   around zero (int8: [-127,127]; int4: [-7,7]; int3: [-3,3]; int2: [-1,1]).
 * Full range (full, narrow_range false in the config, as LSQ and q4_0 do):
 *   symmetric (no zero point) but with that code too, q in [-2^(b-1),
 *   2^(b-1)-1], one level more (8 at 3 bits, 4 at 2 bits: int2's narrow
 *   grid is ternary). Min-max: the smallest scale that holds both ends,
 *   max(-min / 2^(b-1), max / (2^(b-1)-1)).
 * Asymmetric b bits: q in [0, 2^b-1] with an integer zero point zp;
 *   the range is widened to include 0 so zero is exact;
 *   scale = (max - min) / (2^b-1), zp = clamp(round(-min/scale), 0, 2^b-1).
 * Quantize: q = clamp(round(x * (1/scale)) + zp, qmin, qmax); dequantize: (q - zp) * scale.
 *   x is multiplied by the reciprocal of the scale, as PyTorch's fake_quantize
 *   does, so ties are decided on that product.
 * A group whose values are all 0 gets scale 0 and dequantizes to 0.
 *
 * Granularity over a [rows, cols] matrix (weights: [out, in]; activations:
 * [tokens, features]): one scale per tensor, per row (channel for weights,
 * token for activations), or per group of g consecutive elements of a row;
 * when g does not divide the row, its last group is partial (cols mod g
 * elements, e.g. 172 = 5 x 32 + 12), with a scale of its own.
 *
 * Block formats (fmt != QF_NONE, weights only): llama.cpp's q8_0, q4_0 and
 * q4_1 (quant/blocks.h), groups of 32 with half-precision scales and ggml's
 * own rounding. Their min-max quantization is ggml's reference quantizer,
 * exactly; for q4_1 the "zero point" slot holds the block's minimum.
 *
 * Codebooks (cb != QCB_NONE, weights only, symmetric, 2..4 or 8 bits): each
 * weight is the nearest of 2^bits fixed levels times its group's scale,
 * instead of a point of an even grid (8 bits: 256 levels, NF8 or a kmeans
 * table whose levels are not put on the grid of 1/127 below). QCB_NF: the normal-float levels of
 * QLoRA (NF4 at 4 bits; the same construction at 3 and 2 bits): quantiles
 * of N(0, 1), 2^(b-1) above zero, 2^(b-1) - 1 below, zero itself, divided
 * by the largest, so in [-1, 1] with -1 and 1 both levels; the min-max
 * scale is the group's max |x|. Ties between two levels go to the upper.
 * QCB_KMEANS: the levels are the layer's own table (lut, sorted ascending,
 * in units of the group's scale), fitted by k-means (quant/ptq.h) to its
 * weights and learned in QAT; the spec points at it, so every path that
 * takes a spec sees the same table. Its levels are used on the grid of
 * 1/127 in [-1, 1] (quant_table_level), so the kernels take them as int8
 * levels x 127, as iq4_nl's, at a cost of at most 1/254 of a scale.
 * A kmeans spec has one table per layer (tables QG_TENSOR, the default), per
 * output channel (QG_CHANNEL: row r's weights take table r; the scales per
 * channel or per group on top) or per scale group (QG_GROUP: the group's
 * own table under its own scale); lut then holds the tables one after the
 * other, 2^bits levels each (SqueezeLLM's per-channel tables). */
#ifndef QAT_QUANTIZER_H
#define QAT_QUANTIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quant/blocks.h"

typedef enum { QG_TENSOR, QG_CHANNEL, QG_GROUP } QGranularity;

typedef enum { QCB_NONE = 0, QCB_NF, QCB_KMEANS } QCodebook;

typedef struct QuantSpec {
    int bits; /* 2..8 */
    bool sym;
    QGranularity gran; /* QG_CHANNEL also means per token for activations */
    int group;         /* QG_GROUP: elements per group along a row */
    QFormat fmt;       /* a llama.cpp block format (then bits, group 32, sym follow from it) or QF_NONE */
    QCodebook cb;      /* non-uniform levels (weights, symmetric, bits 2..4 or 8) or QCB_NONE: the even grid */
    const float *lut;  /* QCB_KMEANS: the 2^bits sorted levels (owned by the layer) */
    bool full;         /* symmetric even grid: the code -2^(b-1) too (last, so positional initializers keep their meaning) */
    QGranularity tables; /* QCB_KMEANS: one table per layer (QG_TENSOR), per output channel or per scale group */
} QuantSpec;

/* The spec of a block format: bits 8 or 4 (iq4_nl: 4-bit indices), groups of
 * 32, symmetric but q4_1. */
QuantSpec quant_spec_of_format(QFormat f);

/* Whether a spec's grid can take the full range: the symmetric even grid
 * at 2..4 bits (its codes are nibbles; codebooks and block formats have
 * their own levels). */
static inline bool quant_full_range_applies(const QuantSpec *s) {
    return s->sym && s->cb == QCB_NONE && s->fmt == QF_NONE && s->bits >= 2 && s->bits <= 4;
}

/* Code range; q4_0 uses -8 (ggml's d = max / -8 puts the extreme there);
 * iq4_nl's is its outermost levels, -127 and 113, in units of d. */
static inline int quant_qmin(const QuantSpec *s) {
    return s->fmt == QF_IQ4_NL ? IQ4NL_LEVELS[0] : s->fmt == QF_Q4_0 ? -8
           : s->sym                ? -((1 << (s->bits - 1)) - !s->full)
                                   : 0;
}
static inline int quant_qmax(const QuantSpec *s) {
    return s->fmt == QF_IQ4_NL ? IQ4NL_LEVELS[15] : s->sym ? (1 << (s->bits - 1)) - 1 : (1 << s->bits) - 1;
}

/* The 2^bits sorted levels of a codebook spec (n set to their count), NULL
 * for the even grid (a k-means spec without its table fails); "none" | "nf"
 * | "kmeans" and back. */
const float *quant_levels(const QuantSpec *s, int *n);
const char *quant_codebook_name(QCodebook cb);
QCodebook quant_codebook_of(const char *name); /* -1 cast to QCodebook when unknown */
/* A kmeans table entry as a level of a table of n_levels: clamped to
 * [-1, 1], and for tables of up to 16 levels (2..4 bits) on the grid of
 * 1/127; the 256 levels of an 8-bit table stay floats (that grid has 255
 * points, and 8-bit tables run on float lookups). */
static inline float quant_table_level(float t, int n_levels) {
    t = t < -1.0f ? -1.0f : t > 1.0f ? 1.0f : t;
    return n_levels > 16 ? t : __builtin_rintf(t * 127.0f) / 127.0f;
}
/* The bits a codebook takes: 2..4 (level indices in nibbles) or 8 (one byte). */
static inline bool quant_codebook_bits(int bits) { return (bits >= 2 && bits <= 4) || bits == 8; }

/* A kmeans table of n entries (any order) as its levels, sorted ascending
 * into lut, with perm[k] the entry level k came from (perm may be NULL).
 * Fails naming what on a non-finite entry. */
void quant_table_sort(const float *table, int n, float *lut, int *perm, const char *what);

/* Groups per row, the last one partial when group does not divide cols. */
static inline int quant_groups(int cols, int group) { return (cols + group - 1) / group; }
/* Scales for a [rows, cols] matrix: 1, rows, or rows * quant_groups. */
size_t quant_n_scales(const QuantSpec *s, int rows, int cols);

/* kmeans tables of a [rows, cols] matrix: 1, rows, or one per scale group. */
static inline size_t quant_n_tables(const QuantSpec *s, int rows, int cols) {
    return s->tables == QG_TENSOR ? 1 : s->tables == QG_CHANNEL ? (size_t)rows : quant_n_scales(s, rows, cols);
}
/* The table of scale k's elements (each run of a scale lies in one table). */
static inline size_t quant_table_of_scale(const QuantSpec *s, int cols, size_t k) {
    if (s->tables == QG_TENSOR) return 0;
    if (s->tables == QG_GROUP || s->gran == QG_CHANNEL) return k;
    return k / (size_t)quant_groups(cols, s->group); /* per-channel tables under group scales */
}
/* Why a spec's table layout cannot be (tables per channel or group are for
 * kmeans, over scales as fine: per channel or group, per group with group
 * scales), or NULL when it can. */
const char *quant_tables_invalid(const QuantSpec *s);
/* "layer" | "channel" | "group" and back (-1 cast when unknown). */
const char *quant_tables_name(QGranularity t);
QGranularity quant_tables_of(const char *name);
/* The levels of table t (kmeans: t's own; nf: the one fixed table). */
static inline const float *quant_levels_at(const QuantSpec *s, size_t t, int *n) {
    const float *lv = quant_levels(s, n);
    return lv && s->cb == QCB_KMEANS ? lv + t * (size_t)*n : lv;
}
/* Index of the scale of element (r, c). */
static inline size_t quant_scale_index(const QuantSpec *s, int cols, int r, int c) {
    return s->gran == QG_TENSOR    ? 0
           : s->gran == QG_CHANNEL ? (size_t)r
                                   : (size_t)r * quant_groups(cols, s->group) + c / s->group;
}
/* The elements of scale k: [*start, *start + *len) of the row-major matrix
 * (every granularity's elements are one contiguous run). */
static inline void quant_run(const QuantSpec *s, int rows, int cols, size_t k, size_t *start, size_t *len) {
    if (s->gran == QG_TENSOR) {
        *start = 0, *len = (size_t)rows * cols;
    } else if (s->gran == QG_CHANNEL) {
        *start = k * (size_t)cols, *len = (size_t)cols;
    } else {
        size_t ng = (size_t)quant_groups(cols, s->group), r = k / ng, j = k % ng, c0 = j * (size_t)s->group;
        *start = r * (size_t)cols + c0;
        *len = (size_t)cols - c0 < (size_t)s->group ? (size_t)cols - c0 : (size_t)s->group;
    }
}

/* Scale (and zero point, asymmetric only; zp may be NULL for symmetric) of
 * one set of values from its min and max. */
void quant_params_from_range(const QuantSpec *s, float lo, float hi, float *scale, float *zp);
/* Min-max scales and zero points of a whole [rows, cols] matrix. */
void quant_minmax(const QuantSpec *s, const float *x, int rows, int cols, float *scale, float *zp);

/* One value: the integer code and its dequantized value. */
static inline int quant_code(float x, float scale, float zp, int qmin, int qmax) {
    float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
    float v = __builtin_rintf(x * inv) + zp;
    v = v < (float)qmin ? (float)qmin : v;
    v = v > (float)qmax ? (float)qmax : v;
    return (int)v;
}
static inline float quant_dequant(int q, float scale, float zp) { return ((float)q - zp) * scale; }
/* One value quantized and dequantized with a given scale (and zero point):
 * on the even grid, or the nearest level of table t times the scale. */
static inline float quant_round_at(const QuantSpec *s, size_t t, float x, float scale, float zp) {
    int n;
    const float *lv = quant_levels_at(s, t, &n);
    if (lv) {
        float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
        return scale * lv[quant_level_index(lv, n, x * inv)];
    }
    return quant_dequant(quant_code(x, scale, zp, quant_qmin(s), quant_qmax(s)), scale, zp);
}
/* The same for a spec of one table (or none). */
static inline float quant_round(const QuantSpec *s, float x, float scale, float zp) { return quant_round_at(s, 0, x, scale, zp); }

/* Symmetric fake quantization of n_groups consecutive groups of gsize values,
 * each with its own min-max scale (keys and values per token and head); out
 * may be x. */
void quant_fake_groups(const float *x, int n_groups, int gsize, int bits, float *out);

/* out = dequant(quant(x)) for a [rows, cols] matrix with given scales (zp NULL = 0).
 * Block formats: scale NULL is ggml's reference quantizer; given scales (and
 * q4_1's minima in zp) are used rounded to half precision. */
void quant_fake(const QuantSpec *s, const float *x, int rows, int cols, const float *scale, const float *zp,
                float *out);

#endif
