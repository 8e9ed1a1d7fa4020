/* internal.h: shared between the files of infer/ only. */
#ifndef QAT_INFER_INTERNAL_H
#define QAT_INFER_INTERNAL_H

#include "autograd/gemm.h"
#include "infer.h"

/* Whether a parameter of g is stored as a float tensor of the inference model
 * (not a fake-quant scale, not the weight of a quantized Linear). */
bool infer_keeps_float(const GPT *g, const Tensor *t);
/* Fills m from g's float tensors and the integer weights qm (one per
 * g->qlayers entry; m takes ownership of the array). */
void infer_build(InferModel *m, const GPT *g, const Vocab *v, const char *config_yaml, QMatrix *qm);
/* The product y [M, out] = x [M, in] W^T + b of a float Linear on the
 * engine's GEMM (autograd/gemm.h). */
Gemm infer_float_gemm(const InferLinear *l, const float *x, int M, float *y);
/* Queries per block of the multi-token attention, and each thread's scratch
 * for it (a block's scores over the whole context, then its queries turned
 * by RoPE): also room for one query's scores in generation. */
#define INFER_ATT_ROWS 64
static inline size_t infer_scores_per_thread(const GPTConfig *c) {
    return (size_t)INFER_ATT_ROWS * (size_t)c->block_size + (size_t)INFER_ATT_ROWS * (size_t)gpt_head_size(c);
}

#endif
