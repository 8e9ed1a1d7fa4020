/* kernels_impl.h: the per-ISA kernels behind the dispatch in kernels.c
 * (private to quant/; included by their definitions so signatures are checked). */
#ifndef QAT_KERNELS_IMPL_H
#define QAT_KERNELS_IMPL_H

#include "kernels.h"

float kdot_q8_f32_avx2(const int8_t *q, const float *x, int n);
float kdot_q4_f32_avx2(const uint8_t *q4, const float *x, int n);
int32_t kdot_i8_i8_avx2(const int8_t *a, const int8_t *b, int n);
float kdot_q8_f32_avx512(const int8_t *q, const float *x, int n);
float kdot_q4_f32_avx512(const uint8_t *q4, const float *x, int n);
int32_t kdot_i8_i8_avx512(const int8_t *a, const int8_t *b, int n);

#endif
