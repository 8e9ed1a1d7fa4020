/* kernels.h: integer inference kernels shared by eval, sample, PTQ evaluation
 * and the benchmarks. Each primitive has a plain scalar C reference and AVX2
 * and AVX-512 paths; the path is chosen once at run time from CPUID (the
 * binary itself targets baseline x86-64), and QAT_KERNEL=scalar|avx2|avx512
 * forces one for testing.
 *
 * QMatrix: a [rows, cols] weight matrix (rows = outputs) quantized with the
 * shared quantizer, symmetric, one float scale per group of `group`
 * consecutive columns (group = cols for per-channel). A layer whose input
 * width `in` the group does not divide (a partial last group) is stored with
 * zero codes up to cols = whole groups, and the products widen each
 * activation row with zeros to match, so every kernel path runs it as it is:
 *   bits 5..8: int8 codes, row-major;
 *   bits 2..4: two codes per byte, row-major; the low nibble holds the even
 *           column, the high nibble the odd one; a code q in [-8,7] is stored
 *           as q + 8 (qat's own grids use [-7,7]; ggml's q4_0 also -8) (int3 and int2 codes, [-3,3] and [-1,1], use the same
 *           nibbles: the int4 kernels run them exactly, at int4's size).
 * For W8A8 the int8 codes are also kept in panels (qmatrix_pack_w8a8): 16
 * rows per panel, and for every 4 consecutive columns one 64-byte line
 * holding 4 bytes per row, the layout vpdpbusd consumes directly. */
#ifndef QAT_KERNELS_H
#define QAT_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quant/quantizer.h"

typedef enum { KERN_SCALAR, KERN_AVX2, KERN_AVX512 } KernelPath;

#define QPANEL 16 /* rows per W8A8 panel */

typedef struct QMatrix {
    int rows, cols, bits, group;
    int in;         /* the layer's input width: cols, or less when the last group is partial */
    bool full;      /* symmetric codes reach -2^(bits-1) (quant.weight.narrow_range false): what files record */
    int8_t *q8;     /* bits 8 */
    uint8_t *q4;    /* bits 4 */
    float *scales;  /* rows * (cols / group) */
    /* NULL, or rows * (cols / group) additive terms: w = code * scale +
     * offset (ggml's q4_1: code q - 8, offset = its minimum + 8 d); the
     * products add offset * (the group's sum of x) outside the SIMD loops;
     * with act_q8_0 the offsets are q4_1's and the minimum's part goes
     * against llama.cpp's half-precision block sums, as its q8_1 carries them */
    float *offsets;
    /* W8A8 panels: ceil(rows/16) panels of cols/4 lines of 64 bytes (rows past
     * the end are zero); pscales and psums [panel][group][16], psums = the sum
     * of the codes of a row over the group (the AVX-512 path offsets
     * activations by 128 to make them unsigned and subtracts 128 * psum) */
    int8_t *p8;
    float *pscales;
    int32_t *psums;
    /* int4 panels for the AVX-512 path (qmatrix_pack_q4; groups a multiple
     * of 8 columns): ceil(rows/16) panels of cols/8 lines of 64 bytes; line l
     * holds 4 bytes per row, byte b with the nibbles (code + 8) of columns
     * 8l + b (low) and 8l + 4 + b (high), so that vpdpbusd gives each row
     * its own int32 lane. p4scales [panel][group][16]. Rows past the end are
     * zero. */
    uint8_t *p4;
    float *p4scales;
    /* NULL, or 16 floats (bits 4; n_tables x 16 with several tables, 256
     * for an 8-bit table, below): the nibbles are then indices into this
     * table, w = lut[index] * scale (non-uniform levels: llama.cpp's
     * iq4_nl). Such a matrix has no offsets, no int4 panels and no float
     * columns; its products look the levels up in registers. */
    float *lut;
    int n_levels; /* of lut: 2^bits of the layer's codebook (the table is padded to 16 with zeros) */
    /* several tables (kmeans tables per output channel or per group,
     * QuantSpec.tables): lut holds n_tables tables of 16 floats, the one of
     * row r's group g at lut + r lut_rs + g lut_gs (one table: 1, 0, 0); such
     * matrices take the vpermps rows, and on AVX-512 with levels on the
     * grid of 1/127 (kmeans) the table panels too, with ptab: for each
     * panel (and group, per-group tables) 4 lines of 64 bytes, line j
     * holding in its 16-byte lane L the levels x 127 + 128 of row 4L + j,
     * which four masked vpshufb look the indices up in */
    QGranularity lut_tables;
    int n_tables, lut_rs, lut_gs;
    uint8_t *ptab;
    /* an 8-bit table matrix (256 levels, one table: nf8, kmeans8): one level
     * index per byte, [rows, cols] row-major, into lut's 256 levels; bits is
     * 8, q8 and q4 are NULL, and its products gather the levels as floats */
    uint8_t *idx8;
    /* with idx8 on AVX-512: each level x 127 / the largest |level| = a + b /
     * 256, a in p8 and b in p8lo (the W8A8 panels' layout), pscales the
     * scales x that largest / 127; the products run the int8 panels on a
     * plus b against the activations' high digit, as two-byte 4-bit tables
     * do (the levels to 2^-9 / 127 of the largest) */
    int8_t *p8lo;
    /* table panels for the AVX-512 path (qmatrix_from_lut builds them for
     * groups a multiple of 8 columns; exact when the levels are integers in
     * -127..127, or multiples of 1/127 in [-1, 1] as kmeans tables are): plevels
     * holds those integers (the levels x 127 for the second kind, whose
     * pscales are then the scales / 127); the W8A8 panels' layout with each pair of 64-byte lines
     * 2l, 2l + 1 folded into one, byte b holding line 2l's index for byte b
     * in its low nibble and line 2l + 1's in its high; pscales and psums
     * (the sum of a row's levels over the group) as for the W8A8 panels.
     * vpshufb turns a line back into int8 levels (plevels, for the q8_0
     * activations' arithmetic) or into levels + 128 (plevels_u, unsigned,
     * against the weight-only path's signed activation digits). Any other
     * levels (normal-float tables, say) get two-byte panels for the
     * weight-only path: levels / max|level| * 127 = a + b / 256 with a
     * (plevels) and b (plevels_lo_u: b + 128) integers, the max / 127 in
     * pscales, so the levels hold to 2^-9 / 127 of the largest. */
    uint8_t *pl;
    int8_t plevels[16];
    uint8_t plevels_u[16];
    bool plevels_two;
    uint8_t plevels_lo_u[16];
    /* W8A8 activations: with act_static, act_scale is one static
     * (calibrated) symmetric scale for every token; otherwise each token gets
     * its own dynamic scale */
    bool act_static;
    float act_scale;
    /* llama.cpp's arithmetic for its block formats: every activation row in
     * q8_0 blocks of 32 (ggml's rounding, half-precision scales), xs then
     * holding cols / 32 scales per row and group = 32 */
    bool act_q8_0;
    /* outlier split (LLM.int8 style): these input columns stay float; their
     * codes are 0, activations get their int8 scale from the other columns,
     * and y gains x[:, float_cols] @ float_w^T */
    int n_float;
    int32_t *float_cols; /* [n_float], increasing */
    float *float_w;      /* [rows, n_float] */
} QMatrix;

/* The path in use (CPUID, or QAT_KERNEL when set; an unknown or unsupported
 * value fails with one line naming it). */
KernelPath kernel_path(void);
const char *kernel_path_name(KernelPath p);
/* Whether this CPU can run path p. */
bool kernel_supported(KernelPath p);
/* Forces a path (tests); returns the previous one. */
KernelPath kernel_force(KernelPath p);

/* Quantizes w [rows, in] (symmetric, bits 2..8, given group) into m with
 * min-max scales, or with the given scales (rows * ceil(in/group); e.g.
 * learned by LSQ) when scales is not NULL. */
void qmatrix_from_float(QMatrix *m, const float *w, int rows, int in, int bits, int group, const float *scales);
/* The same for any symmetric even-grid spec (per channel or group), the
 * full range's code -2^(b-1) included; qmatrix_from_float is the narrow grid. */
void qmatrix_from_weights(QMatrix *m, const float *w, int rows, int cols, const QuantSpec *spec, const float *scales);
/* From given codes [rows, in] (int8: -127..127; int4: -8..7, the -8 of
 * ggml's q4_0 included), scales and offsets (NULL: none). */
void qmatrix_from_codes(QMatrix *m, const int8_t *codes, int rows, int cols, int bits, int group, const float *scales,
                        const float *offsets);
/* From level indices [rows, in] (0..n_levels-1) into the n_levels (2..16,
 * or 256: an 8-bit table, one index per byte) levels lut, packed as the
 * int4 nibbles are, with scales (rows * ceil(in/group)). */
void qmatrix_from_lut(QMatrix *m, const uint8_t *idx, int rows, int in, int group, const float *scales, const float *lut,
                      int n_levels);
/* The same with tables per output channel (QG_CHANNEL: rows tables) or per
 * group (QG_GROUP: rows * ceil(in/group)), or the one table (QG_TENSOR),
 * in luts one after the other, n_levels each. */
void qmatrix_from_luts(QMatrix *m, const uint8_t *idx, int rows, int in, int group, const float *scales,
                       const float *luts, int n_levels, QGranularity tables);
/* Adds (or rebuilds) the int8 panels (int8 only; cols and group multiples
 * of 4): used by W8A8, and by the AVX-512 weight-only int8 products against
 * the activations' unsigned digit planes. qmatrix_from_float calls it on
 * CPUs with AVX-512 when the shape allows, and qmatrix_set_float_cols
 * rebuilds existing panels. */
void qmatrix_pack_w8a8(QMatrix *m);
/* Adds (or rebuilds) the int4 panels (bits <= 4, group a multiple of 8;
 * otherwise nothing). qmatrix_from_float calls it on CPUs with AVX-512, and
 * qmatrix_set_float_cols rebuilds existing panels. */
void qmatrix_pack_q4(QMatrix *m);
/* Makes columns cols[0..n) of m float (outlier split): their codes become 0
 * and w's values there are kept as float_w. w is the float [rows, cols]
 * matrix m was quantized from (with those columns zeroed). */
void qmatrix_set_float_cols(QMatrix *m, const float *w, const int32_t *cols, int n);
/* Bytes of the stored codes and scales (what export writes; float columns of
 * an outlier split not included). */
size_t qmatrix_bytes(const QMatrix *m);
/* The bits each weight's code carries: bits, or for a table matrix those of
 * its level count (8 nf levels: 3, though held in nibbles). */
static inline int qmatrix_code_bits(const QMatrix *m) {
    int b = 0;
    if (!m->lut) return m->bits;
    while ((1 << b) < m->n_levels) b++;
    return b;
}
/* The dequantized weights code * scale (+ offset) of rows [r0, r0+nr) into out [nr, cols]. */
void qmatrix_dequant_rows(const QMatrix *m, int r0, int nr, float *out);
void qmatrix_free(QMatrix *m);

/* ---- row primitives (the dispatched path) ----
 * For nrows (1..4) consecutive weight rows, out[r] = the sum over columns of
 * (code * scale of its group) * x, the weights fake quantization uses. The
 * scalar reference forms each dequantized weight, then multiplies; the SIMD
 * paths sum code * x per group and scale the sum once (int4 on AVX-512: the
 * stored code + 8, minus 8 times the group's sum of x), which agrees to float
 * rounding. Several rows at once share the loads of x and keep several
 * memory streams in flight.
 * int8: x in column order. int4: x split, the even columns' values first then
 * the odd columns' (kx_split, or KAct.x_split); n and group even. */
void krows_q8_f32(const int8_t *q, const float *scales, int group, const float *x, int n, int nrows, float *out);

/* An activation row prepared once per product for the weight-only kernels.
 * x_split: the even columns' values first, then the odd columns'
 *   (x_split[i] = x[2i], x_split[n/2 + i] = x[2i+1]), so that packed int4
 *   bytes need no shuffles (the int4 row primitives).
 * nat (AVX-512 only, else NULL): x for the integer panels, per block of
 *   `block` columns (32, or the weights' group when 32 does not divide it)
 *   as bscale[b] * m, bscale[b] a power of two fitted to the block's max |x|
 *   so that every m is an integer of 16 bits (x to 2^-15 of its block's
 *   largest element: finer than the bf16 or fp16 activations of weight-only
 *   kernels elsewhere, and an outlier costs only its own block precision),
 *   in two byte planes of nat_stride bytes in column order, the signed
 *   digits d1 and d0 of m (m = d0 + 256 d1); bsum[b] = the sum of m over the
 *   block, which undoes the offset that makes the weights unsigned bytes
 *   (bsum1[b], the sum of d1, that of two-byte table levels).
 *   NULL when x is not finite: the products then take the float row
 *   primitives. */
typedef struct KAct {
    float *x_split;
    int8_t *nat;
    float *bsum;
    float *bsum1;
    float *bscale;
    int nat_stride;
    int block;
} KAct;
/* Scratch bytes kact_prepare needs for a row of n values. */
size_t kact_bytes(int n);
/* The activation block the panels of w take: 32 when it divides the group,
 * else the group (a multiple of 4 wherever there are panels). */
int kact_block(const QMatrix *w);
/* Fills a from x [n] (n even) with its arrays in buf (kact_bytes(n)), the
 * planes in blocks of `block` columns (kact_block). */
void kact_prepare(const float *x, int n, int block, void *buf, KAct *a);
void krows_q4_f32(const uint8_t *q4, const float *scales, int group, const float *x_split, int n, int nrows, float *out);
void kx_split(const float *x, int n, float *x_split);
/* The same for a table matrix: out[r] = the sum over columns of (table[index]
 * * scale of its group) * x, the table of row r's group g at lut + r lut_rs +
 * g lut_gs (the layer's one table: 0, 0; QMatrix.lut_rs, lut_gs); the SIMD
 * paths look the 16 levels up in registers (vpermps) and scale each group's
 * sum once. */
void krows_lut_f32(const uint8_t *q4, const float *lut, int lut_rs, int lut_gs, const float *scales, int group,
                   const float *x_split, int n, int nrows, float *out);
/* An 8-bit table matrix's rows: out[r] = the sum over columns of (lut[idx]
 * * scale of its group) * x, one index per byte and x in column order; the
 * SIMD paths gather 16 (AVX-512) or 8 (AVX2) levels at a time from the
 * 1 KiB table, which stays in L1, and scale each group's sum once. */
void krows_lut8_f32(const uint8_t *idx, const float *lut, const float *scales, int group, const float *x, int n, int nrows,
                    float *out);

/* ---- scalar references (always available) ---- */
void krows_q8_f32_scalar(const int8_t *q, const float *scales, int group, const float *x, int n, int nrows, float *out);
void krows_q4_f32_scalar(const uint8_t *q4, const float *scales, int group, const float *x_split, int n, int nrows,
                         float *out);
void krows_lut_f32_scalar(const uint8_t *q4, const float *lut, int lut_rs, int lut_gs, const float *scales, int group,
                          const float *x_split, int n, int nrows, float *out);
void krows_lut8_f32_scalar(const uint8_t *idx, const float *lut, const float *scales, int group, const float *x, int n,
                           int nrows, float *out);
/* W8A8 on panels [p0, p0+np) for M rows of int8 activation codes xq [M, cols]
 * with per-row scales xs: y[m, n] = xs[m] * sum_g pscale[n,g] * (int32 dot of
 * the group), or with w->act_q8_0 per-group scales xs [M, ng]: y[m, n] =
 * sum_g (pscale[n,g] * xs[m,g]) * dot; rows past w->rows not stored. Every path does the same float
 * operations in the same order, so all paths give identical results. */
/* One activation row to int8 codes with its dynamic symmetric scale (the
 * shared quantizer's min-max scale and rounding, so every path is exact). */
void kquant_row_i8_scalar(const float *x, int K, int8_t *xq, float *xs);
void kw8a8_panels_scalar(const QMatrix *w, const int8_t *xq, const float *xs, int M, int p0, int np, float *y);
/* The same for int4 weights (ggml's q4_0 / q4_1 codes) against q8_0
 * activation blocks (w->act_q8_0, group 32): int32 dots of code x activation
 * code per block, y = sum_g (scale[n,g] * xs[m,g]) * dot, on the row-major
 * nibbles; the AVX-512 path runs the int4 panels with the same float
 * operations, so both give identical results. A table matrix's codes are
 * its levels (integers: iq4_nl's), as llama.cpp's iq4_nl x q8_0 takes them;
 * the AVX-512 path looks them up with vpshufb. */
void kw4a8_panels_scalar(const QMatrix *w, const int8_t *xq, const float *xs, int M, int p0, int np, float *y);

/* ---- matrix products, OpenMP over output rows ---- */
/* Weight-only: y[M, rows] = x[M, cols] @ W^T. On AVX-512 (int8, int4 and
 * table matrices with panels, finite x) through the 16-row panels against
 * the rows' KAct planes, in tiles of 4 activation rows, the weights
 * streamed once per block of rows whose activations fit in L2 (2^18
 * floats). Otherwise M < 8 or activations of up to 2^18 floats take the row
 * primitives (dequantized in registers), every activation row passing each
 * block of weight rows, and larger inputs dequantize blocks of 64 rows into
 * a per-thread tile and multiply them with sgemm. */
void qgemm_f32(const QMatrix *w, const float *x, int M, float *y);
/* W8A8: each row of x is quantized to int8 with its own symmetric scale
 * (dynamic per token), or with w->act_scale when that is set, or (act_q8_0)
 * in q8_0 blocks of 32 with a scale each (then int4 weights too: W4A8), products
 * accumulate in int32 per weight group, then scale; float columns of an
 * outlier split are added in float. xq (M*cols int8) and xs (M floats) are
 * scratch from the caller (xs: M * cols / 32 floats with act_q8_0); w must
 * have been packed with qmatrix_pack_w8a8. */
void qgemm_w8a8(const QMatrix *w, const float *x, int M, float *y, int8_t *xq, float *xs);

/* ---- one activation row inside a parallel region ----
 * y [rows] = epi(x [cols] @ W^T + bias) (bias, epi may be NULL; epi runs in
 * place on blocks of finished outputs, e.g. GELU). Every thread of the team
 * calls it with the same weights and equal x: each prepares its own copy of
 * the activation in its private scratch (qgemv_team_scratch_bytes(cols)),
 * cheaper than sharing one behind a barrier, computes a contiguous share of
 * the outputs and meets the others at one barrier. A generated token thus
 * runs in one parallel region with one barrier per product, where forking a
 * team per step cost as much as the int4 weights' own time. */
typedef void (*KEpilogue)(float *y, int n);
size_t qgemv_team_scratch_bytes(int cols);
void qgemv_team(const QMatrix *w, bool w8a8, const float *x, const float *bias, KEpilogue epi, float *y, void *scratch);

#endif
