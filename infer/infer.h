/* infer.h: the inference engine that eval, sample, export and the benchmarks
 * share. A model here is plain arrays: float tensors in one block, and the
 * quantized Linears as QMatrix integer weights run by the kernels in
 * quant/kernels.h. A forward takes n new tokens of one sequence at positions
 * pos..pos+n-1 and appends their keys and values to a KV cache, so prompts
 * and evaluation windows go through as M = n matrix products and generation
 * as M = 1 products over the cache.
 *
 * Deployable files ("qat-model" HDF5, written by qat export) hold exactly
 * this: see docs/checkpoint-format.md. */
#ifndef QAT_INFER_H
#define QAT_INFER_H

#include <stdio.h>

#include "data/data.h"
#include "util/progress.h"
#include "layers/layers.h"
#include "quant/kernels.h"

#define INFER_FORMAT "qat-model"
#define INFER_VERSION 1

typedef struct InferLinear {
    int in, out;
    const float *w; /* float weights [out, in], when q is NULL */
    QMatrix *q;     /* integer weights */
    bool w8a8;      /* int8 activations per token (the W8A8 kernel) */
    const float *b; /* bias [out] or NULL */
} InferLinear;

typedef struct InferBlock {
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b; /* biases NULL: RMSNorm */
    InferLinear qkv, proj, fc, fc_proj;
    bool gelu_half; /* llama.cpp's half-precision GELU table (with its q8_0 activations) */
    bool swiglu;    /* fc gives [gate | up] */
} InferBlock;

typedef struct InferTensor {
    char name[64];
    int ndim, shape[2];
    float *data; /* inside InferModel.fdata */
} InferTensor;

typedef struct InferModel {
    GPTConfig cfg;
    Vocab vocab;
    char *config_yaml; /* the source run's config, as stored in its checkpoint */
    int kv_bits;       /* keys and values fake-quantized as in training (0 = off) */
    float *wte, *wpe, *lnf_w, *lnf_b; /* wpe, lnf_b NULL for llama */
    InferBlock *blocks;
    InferLinear head; /* tied to wte unless quantized */
    float *fdata;     /* every float tensor */
    InferTensor *ft;
    int n_ft;
    QMatrix *qm; /* integer weights of the quantized Linears, named by qnames */
    char (*qnames)[64];
    bool *qw8a8;
    int n_q;
} InferModel;

/* Activations and the KV cache of one sequence, for forwards of up to cap
 * tokens. */
typedef struct InferState {
    int cap, pos;
    float *x, *xn, *qkv, *att, *h, *h2, *tmp, *logits;
    float *k, *v;  /* [n_layer, block_size, n_kv_head * head size] */
    float *rope;   /* rope_table of positions 0..block_size-1 (llama), else NULL */
    float *scores; /* per thread infer_scores_per_thread floats */
    int8_t *xq;
    float *xs;
    /* one-token forward: per thread, its copy of the residual row, the
     * normalised row and the kernels' scratch (team_stride bytes each) */
    int team_n;
    size_t team_stride;
    char *team;
    float *gemm_ws; /* the float products' packing workspace (gemm_ws_floats at cap tokens) */
    size_t gemm_ws_n;
    /* NULL, or called with the input of every Linear of a multi-token
     * forward before its product (qat compare's per-layer errors) */
    void (*probe)(void *ctx, const InferLinear *l, const float *x, int M);
    void *probe_ctx;
} InferState;

/* From a loaded (float, QAT or PTQ) GPT: float tensors are copied; quantized
 * Linears become integer weights with the scales fake quantization uses.
 * Fails naming the layer for schemes the kernels do not run. */
void infer_from_gpt(InferModel *m, const GPT *g, const Vocab *v, const char *config_yaml);
/* Loads a deployable file, verifying format, version, config and every
 * checksum. */
void infer_load(InferModel *m, const char *path);
/* Writes a deployable file (to PATH.tmp, then renamed). source names the
 * checkpoint it came from (an attribute). */
void infer_save(const InferModel *m, const char *path, const char *source, long step);
void infer_free(InferModel *m);
/* Bytes of the integer weights and scales (bits/8 per weight plus 4 per
 * scale: the ideal size, as stored), and of the float tensors. */
size_t infer_quant_bytes(const InferModel *m);
size_t infer_float_bytes(const InferModel *m);

void infer_state_init(InferState *s, const InferModel *m, int cap);
void infer_state_free(InferState *s);
/* Runs tokens[0..n) at positions s->pos.. (s->pos + n <= block_size; n <=
 * cap), appends to the cache and advances s->pos; returns logits [n, V]. */
const float *infer_forward(const InferModel *m, InferState *s, const int32_t *tokens, int n);

/* Mean next-token loss over windows w of tokens (and top1), as eval_loss takes them. */
double infer_eval_loss(const InferModel *m, const int32_t *tokens, const EvalWindows *w, int32_t *top1);
/* The same, with a progress line over the windows (begun by the caller with w->n as its total). */
double infer_eval_loss_progress(const InferModel *m, const int32_t *tokens, const EvalWindows *w, int32_t *top1,
                                Progress *p);

/* True when path is a deployable (qat-model) file. */
bool infer_is_model_file(const char *path);

#endif
