/* kernels.h: integer inference kernels shared by eval, sample, PTQ evaluation
 * and the benchmarks. Each primitive has a plain scalar C reference and AVX2
 * and AVX-512 paths; the path is chosen once at run time from CPUID (the
 * binary itself targets baseline x86-64), and QAT_KERNEL=scalar|avx2|avx512
 * forces one for testing.
 *
 * QMatrix: a [rows, cols] weight matrix (rows = outputs) quantized with the
 * shared quantizer, symmetric, one float scale per group of `group`
 * consecutive columns (group = cols for per-channel):
 *   bits 8: int8 codes, row-major;
 *   bits 4: two codes per byte, row-major; the low nibble holds the even
 *           column, the high nibble the odd one; a code q in [-7,7] is stored
 *           as q + 8. */
#ifndef QAT_KERNELS_H
#define QAT_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quant/quantizer.h"

typedef enum { KERN_SCALAR, KERN_AVX2, KERN_AVX512 } KernelPath;

typedef struct QMatrix {
    int rows, cols, bits, group;
    int8_t *q8;     /* bits 8 */
    uint8_t *q4;    /* bits 4 */
    float *scales;  /* rows * (cols / group) */
} QMatrix;

/* The path in use (CPUID, or QAT_KERNEL when set; an unknown or unsupported
 * value fails with one line naming it). */
KernelPath kernel_path(void);
const char *kernel_path_name(KernelPath p);
/* Whether this CPU can run path p. */
bool kernel_supported(KernelPath p);
/* Forces a path (tests); returns the previous one. */
KernelPath kernel_force(KernelPath p);

/* Quantizes w [rows, cols] (symmetric, bits 8 or 4, given group) into m with
 * min-max scales, or with the given scales (rows * cols/group; e.g. learned
 * by LSQ) when scales is not NULL. */
void qmatrix_from_float(QMatrix *m, const float *w, int rows, int cols, int bits, int group, const float *scales);
void qmatrix_free(QMatrix *m);

/* ---- primitives (the dispatched path) ---- */
/* sum_i q[i] * x[i] for int8 codes */
float kdot_q8_f32(const int8_t *q, const float *x, int n);
/* the same for packed int4 codes (n even) */
float kdot_q4_f32(const uint8_t *q4, const float *x, int n);
/* sum_i a[i] * b[i], exact int32 (codes in [-127, 127]) */
int32_t kdot_i8_i8(const int8_t *a, const int8_t *b, int n);

/* ---- scalar references (always available) ---- */
float kdot_q8_f32_scalar(const int8_t *q, const float *x, int n);
float kdot_q4_f32_scalar(const uint8_t *q4, const float *x, int n);
int32_t kdot_i8_i8_scalar(const int8_t *a, const int8_t *b, int n);

/* ---- matrix products, OpenMP over output rows ---- */
/* Weight-only: y[M, rows] = x[M, cols] @ W^T, weights dequantized in registers. */
void qgemm_f32(const QMatrix *w, const float *x, int M, float *y);
/* W8A8: each row of x is quantized to int8 with its own symmetric scale
 * (dynamic per token), products accumulate in int32 per weight group, then
 * scale. xq (M*cols int8) and xs (M floats) are scratch from the caller. */
void qgemm_w8a8(const QMatrix *w, const float *x, int M, float *y, int8_t *xq, float *xs);

#endif
