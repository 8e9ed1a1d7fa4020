/* kernels_impl.h: the per-ISA kernels behind the dispatch in kernels.c
 * (private to quant/; included by their definitions so signatures are checked). */
#ifndef QAT_KERNELS_IMPL_H
#define QAT_KERNELS_IMPL_H

#include "kernels.h"

void krows_q8_f32_avx2(const int8_t *q, const float *scales, int group, const float *x, int n, int nrows, float *out);
void krows_q4_f32_avx2(const uint8_t *q4, const float *scales, int group, const float *x_split, int n, int nrows,
                       float *out);
void krows_lut_f32_avx2(const uint8_t *q4, const float *lut, int lut_rs, int lut_gs, const float *scales, int group, const float *x_split, int n,
                        int nrows, float *out);
/* W4A8 for a table matrix with integer levels (iq4_nl): the nibbles to int8
 * levels with pshufb, int32 dots per group as the scalar reference, so both
 * give identical results; the AVX-512 path takes it too. */
void krows_lut8_f32_avx2(const uint8_t *idx, const float *lut, const float *scales, int group, const float *x, int n,
                         int nrows, float *out);
void krows_lut8_f32_avx512(const uint8_t *idx, const float *lut, const float *scales, int group, const float *x, int n,
                           int nrows, float *out);
void kw4a8_lut_avx2(const QMatrix *w, const int8_t *xq, const float *xs, int M, int p0, int np, float *y);
void kw8a8_panels_avx2(const QMatrix *w, const int8_t *xq, const float *xs, int M, int p0, int np, float *y);
void krows_q8_f32_avx512(const int8_t *q, const float *scales, int group, const float *x, int n, int nrows, float *out);
void krows_q4_f32_avx512(const uint8_t *q4, const float *scales, int group, const float *x_split, int n, int nrows,
                         float *out);
void krows_lut_f32_avx512(const uint8_t *q4, const float *lut, int lut_rs, int lut_gs, const float *scales, int group, const float *x_split,
                          int n, int nrows, float *out);
/* The digit planes, bsum, bsum1 and bscale (one each per block of `block`
 * columns) of KAct for x [n]; false (nothing usable) when x is not finite
 * or a block too small to scale. */
bool kact_planes_avx512(const float *x, int n, int block, int8_t *nat, int nat_stride, float *bsum, float *bsum1,
                        float *bscale);
/* int4 panels [p0, p0+np) against M prepared activation rows x[0..M): the
 * panels' rows of y + m * ldy (rows past w->rows not stored). */
void kq4_panels_avx512(const QMatrix *w, const KAct *x, int M, int p0, int np, float *y, int ldy);
/* The same for int8 weights on the W8A8 panels (qmatrix_pack_w8a8). */
void kq8_panels_avx512(const QMatrix *w, const KAct *x, int M, int p0, int np, float *y, int ldy);
/* The same for a table matrix on its table panels (integer levels). */
void klut_panels_avx512(const QMatrix *w, const KAct *x, int M, int p0, int np, float *y, int ldy);
void kw8a8_panels_avx512(const QMatrix *w, const int8_t *xq, const float *xs, int M, int p0, int np, float *y);
void kw4a8_lut_panels_avx512(const QMatrix *w, const int8_t *xq, const float *xs, int M, int p0, int np, float *y);
void kw4a8_panels_avx512(const QMatrix *w, const int8_t *xq, const float *xs, int M, int p0, int np, float *y);

void kquant_row_i8_avx2(const float *x, int K, int8_t *xq, float *xs);
void kquant_row_i8_avx512(const float *x, int K, int8_t *xq, float *xs);

#endif
