/* autograd.h: the public face of the engine: float32 tensors with shapes and
 * strides, a tape that records ops and replays their backward in reverse, a
 * parameter set owning one flat buffer for all weights and one for their grads,
 * and the ops a GPT needs (each an explicit forward plus backward pair).
 *
 * Memory: activations (tensor structs, data, grads, saved values) come from the
 * tape's arena and live until tape_reset(); parameters live in a Params block.
 * Views (reshape, transpose) alias both the data and the grad of their base, so
 * a view needs no backward of its own.
 * Gradients of activations are allocated (zeroed) lazily during backward;
 * gradients of parameters accumulate across backward calls until zeroed. */
#ifndef QAT_AUTOGRAD_H
#define QAT_AUTOGRAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <stdio.h>

#include "../util/util.h"

#define TENSOR_MAX_DIMS 4

typedef struct Tensor {
    float *data;
    float *grad;                 /* NULL until needed */
    int ndim;
    int shape[TENSOR_MAX_DIMS];
    int stride[TENSOR_MAX_DIMS]; /* in elements */
    size_t numel;
    struct Tensor *base;         /* root tensor for views, else NULL */
    size_t offset;               /* element offset of a view into its base */
    bool requires_grad;
    bool grad_fresh;             /* grad allocated but not yet written (see Node.overwrite) */
    /* parameters only: */
    bool no_decay;               /* excluded from weight decay even if 2-d */
    bool frozen;                 /* not updated by optimizers */
    bool quant_state;            /* a scale or zero point of fake quantization */
    float lr_scale;              /* optimizers use lr * lr_scale (1 unless set) */
    const char *name;            /* parameters only */
} Tensor;

typedef struct Node Node;
typedef void (*backward_fn)(Node *n);

/* One recorded op. Fields beyond out/in are op-specific saved state. */
struct Node {
    const char *op;
    backward_fn backward;
    Tensor *out;
    Tensor *in[5];
    int nin;
    float f[4];
    int i[4];
    const int32_t *idx;
    float *saved, *saved2;
    struct Tape *tape;
    /* The op's backward may find input grads "fresh" (uninitialised) and must
     * then write instead of accumulate; see grad_take_fresh(). Ops that leave
     * this false get zero-filled grads. */
    bool overwrite;
};

/* Wall time per op kind, gathered when a tape is profiled. */
#define TAPE_PROF_MAX 32
typedef struct TapeProfile {
    const char *op[TAPE_PROF_MAX];
    double fwd_s[TAPE_PROF_MAX], bwd_s[TAPE_PROF_MAX];
    long calls[TAPE_PROF_MAX];
    int n;
    double last; /* end of the previous recorded op */
} TapeProfile;

typedef struct Tape {
    Arena arena;
    float *ws;         /* the matrix products' packing workspace (tape_workspace) */
    size_t ws_floats;
    Node *nodes;
    int n, cap;
    bool grad_enabled;
    TapeProfile *prof; /* NULL unless profiling */
} Tape;

/* ---- tape ---- */
void tape_init(Tape *t, size_t arena_bytes);
void tape_free(Tape *t);
/* Forgets every recorded node and activation; parameters are untouched. */
void tape_reset(Tape *t);
/* No-grad mode: ops record nothing and outputs never require grad.
 * Returns the previous setting so callers can restore it. */
bool tape_set_grad(Tape *t, bool enabled);
/* Per-op timing: forward time of an op is the time since the previous op
 * was recorded (or since tape_reset), so only graphs where every op records
 * (grad on) give a full picture. */
void tape_profile_enable(Tape *t);
void tape_profile_print(const Tape *t, FILE *f, double steps);
/* Backward from a scalar: d loss / d loss = 1. */
void tape_backward(Tape *t, Tensor *loss);
/* Backward from any output with an explicit upstream gradient (numel floats). */
void tape_backward_seed(Tape *t, Tensor *out, const float *seed);

/* ---- tensors ---- */
Tensor *tensor_new(Tape *t, int ndim, const int *shape);       /* uninitialised */
Tensor *tensor_zeros(Tape *t, int ndim, const int *shape);
Tensor *tensor_from(Tape *t, int ndim, const int *shape, const float *src);
bool tensor_is_contiguous(const Tensor *x);
bool tensor_same_shape(const Tensor *a, const Tensor *b);
/* "[3,4,5]" into buf; returns buf */
char *tensor_shape_str(const Tensor *x, char *buf, size_t n);
/* Allocates a zeroed grad (or aliases the base's grad for a view). */
float *tensor_ensure_grad(Tape *t, Tensor *x);
/* Element i (row-major logical index) of a possibly strided tensor. */
size_t tensor_offset_of(const Tensor *x, size_t i);

/* ---- parameters ---- */
typedef struct Params {
    Tensor **list;
    int n, cap;
    float *data, *grad; /* one block each, tensors point into them */
    size_t numel;
    bool finalized;
} Params;
void params_init(Params *p);
/* Declares a parameter; its data pointer is valid after params_finalize(). */
Tensor *params_add(Params *p, const char *name, int ndim, const int *shape);
void params_finalize(Params *p);
void params_zero_grad(Params *p);
Tensor *params_find(const Params *p, const char *name);
void params_free(Params *p);

/* ---- ops (forward records the backward when any input requires grad) ---- */
/* a [M,K] or [B,M,K]; b [K,N] or [B,K,N]; either may be a transposed view. */
Tensor *op_matmul(Tape *t, Tensor *a, Tensor *b);
/* x [...,K] contiguous, w [N,K] (PyTorch layout), bias [N] or NULL -> [...,N] */
Tensor *op_linear(Tape *t, Tensor *x, Tensor *w, Tensor *bias);
/* gelu(x w1^T + b1) w2^T + b2 in one op (GELU fused into the products); the
 * same values as op_linear, op_gelu, op_linear. Biases may be NULL. */
Tensor *op_mlp(Tape *t, Tensor *x, Tensor *w1, Tensor *b1, Tensor *w2, Tensor *b2);
/* b's shape equals a's or a suffix of it (bias-style broadcast over leading dims). */
Tensor *op_add(Tape *t, Tensor *a, Tensor *b);
Tensor *op_mul(Tape *t, Tensor *a, Tensor *b);
Tensor *op_scale(Tape *t, Tensor *a, float s);
Tensor *op_gelu(Tape *t, Tensor *x); /* tanh approximation */
/* llama.cpp's CPU GELU: its half-precision table (input and output rounded
 * to half); the backward is op_gelu's (straight through the rounding). */
Tensor *op_gelu_half(Tape *t, Tensor *x);
/* normalises over the last dim; w, b are [C] */
Tensor *op_layernorm(Tape *t, Tensor *x, Tensor *w, Tensor *b, float eps);
/* RMSNorm over the last dim: x / sqrt(mean(x^2) + eps) * w, w [C] */
Tensor *op_rmsnorm(Tape *t, Tensor *x, Tensor *w, float eps);
/* Rotary position embeddings on qkv [B,T,C+2KV] (layout of op_attention): the
 * q and k heads of position p (0..T-1) turn pair (2i, 2i+1) by p *
 * theta^(-2i/hs); v passes unchanged. */
Tensor *op_rope(Tape *t, Tensor *qkv, int n_head, int n_kv_head, float theta);
/* SwiGLU's gate: x [..., 2H] = [g | u] -> silu(g) * u [..., H] */
Tensor *op_swiglu(Tape *t, Tensor *x);
/* softmax over the last dim; causal masks j > i within the last two dims [T,T] */
Tensor *op_softmax(Tape *t, Tensor *x, bool causal);
/* qkv [B,T,C+2KV] (q | k | v along the last dim: n_head query heads, n_kv_head
 * key and value heads of the same size hs) -> [B,T,C], causal, scale
 * 1/sqrt(hs). Query head h reads kv head h / (n_head / n_kv_head) (grouped-query
 * attention; n_kv_head = n_head is multi-head attention). */
Tensor *op_attention(Tape *t, Tensor *qkv, int n_head, int n_kv_head);
/* weight [V,C], idx holds numel(shape) token ids in [0,V) -> [shape..., C] */
Tensor *op_embedding(Tape *t, Tensor *weight, const int32_t *idx, int ndim, const int *shape);
/* logits [..., V], targets one per row in [0,V) -> scalar mean loss */
Tensor *op_cross_entropy(Tape *t, Tensor *logits, const int32_t *targets);
/* Knowledge distillation: T^2 * mean over rows of KL(softmax(teacher/T) ||
 * softmax(logits/T)), the T^2 keeping the gradient's size independent of T
 * (Hinton et al.). teacher (same shape, no gradient) is read only here. */
Tensor *op_kl_distill(Tape *t, Tensor *logits, const Tensor *teacher, float temperature);
Tensor *op_sum(Tape *t, Tensor *x);
Tensor *op_mean(Tape *t, Tensor *x);
/* views: share data and grad with x */
Tensor *op_reshape(Tape *t, Tensor *x, int ndim, const int *shape);
Tensor *op_transpose(Tape *t, Tensor *x, int d0, int d1);
/* a contiguous copy of any strided tensor (with backward) */
Tensor *op_contiguous(Tape *t, Tensor *x);

/* ---- for op implementations ---- */
/* True when x's grad is uninitialised and this write must set it (clears the
 * flag). Only ops whose node has overwrite = true see fresh grads. */
static inline bool grad_take_fresh(Tensor *x) {
    bool f = x->grad_fresh;
    x->grad_fresh = false;
    return f;
}
/* memset split over the threads */
void par_zero(float *p, size_t n);
/* Records a node when grad is on and some input requires grad; returns it or NULL. */
Node *tape_record(Tape *t, const char *op, backward_fn bw, Tensor *out, int nin, Tensor **in);

/* ---- the forward math of some ops on plain arrays (shared with infer/, so
 * that inference computes exactly what training computes) ---- */
/* y = LayerNorm over rows of C; mean and rstd (per row) may be NULL. */
void layernorm_rows(const float *x, const float *w, const float *b, float eps, int R, int C, float *y, float *mean,
                    float *rstd);
/* y = GELU (tanh form) of n values. */
void gelu_rows(const float *x, size_t n, float *y);
void gelu_rows_half(const float *x, size_t n, float *y);
/* r[0..n) <- exp(r[j] - max r), returning their sum: the softmax numerator
 * that training attention and the inference engine share (fast_expf, so the
 * loop vectorises; libm's expf was a call per element). */
float softmax_exp(float *r, int n);
void rmsnorm_rows(const float *x, const float *w, float eps, int R, int C, float *y, float *rstd);
/* cs [T, hs]: per position p, cos then sin of the hs/2 pair angles of
 * position pos0 + p. */
void rope_table(float *cs, int pos0, int T, int hs, float theta);
/* Turns n_heads heads of size hs in x (one position) by the angles in cs
 * (one row of rope_table); inverse turns back. */
void rope_row(float *x, int n_heads, int hs, const float *cs, bool inverse);
/* y [R, H] = silu(x[:, :H]) * x[:, H:] for x [R, 2H]; swiglu_span: n values of one row */
void swiglu_rows(const float *x, int R, int H, float *y);
void swiglu_span(const float *g, const float *u, int n, float *y);

#endif
