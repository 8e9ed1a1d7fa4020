/* layers.h: one model description for two architectures, on the autograd ops.
 *  gpt:   Linear with bias, LayerNorm, learned position embeddings, causal
 *         multi-head attention, the 4x GELU MLP, LM head tied to the token
 *         embedding (GPT-2).
 *  llama: Linear without bias, RMSNorm, rotary position embeddings on q and
 *         k, grouped-query attention, the SwiGLU MLP of any width, LM head
 *         tied or separate (Llama, llama2.c).
 * Both are pre-norm stacks of the same Block with the same Linears (qkv,
 * proj, fc, fc_proj, and the head), so quantization, PTQ, export and the
 * inference engine see one list of layers. */
#ifndef QAT_LAYERS_H
#define QAT_LAYERS_H

#include "autograd/autograd.h"
#include "quant/kernels.h"
#include "quant/qat.h"

/* Fake-quant state of one quantized Linear.
 * QMODE_CALIBRATE: observe the input (static activation scales) and leave it float;
 * QMODE_FLOAT: a plain float Linear (PTQ: not quantized yet). */
typedef enum { QMODE_QUANT, QMODE_CALIBRATE, QMODE_FLOAT } QMode;
typedef struct QLayer {
    char name[64];
    QuantSpec w;
    Estimator est;
    Tensor *w_scale, *w_zp; /* lsq: learned scale (and frozen zero point); else NULL: min-max each step */
    Tensor *w_table;        /* kmeans: each table's 2^bits levels in any order (learned unless frozen); else NULL */
    float *lut;             /* kmeans: w_table's tables each sorted, which w.lut points at (qlayer_sync_table);
                             * at least 16 floats (the budget's candidates use it as one table) */
    bool w_mse_init;        /* lsq: the scales start at the least-squares clipping (else min-max) */
    int a_bits;             /* 0: float input */
    QuantSpec a;
    bool a_dynamic;         /* per-token scales computed on the fly */
    Tensor *a_scale, *a_zp; /* static: calibrated, then frozen or learned */
    Tensor *outlier;        /* [in] 1 = input feature kept float (outlier split), or NULL */
    Observer obs;
    QMode mode;
    bool a_blocks;          /* inputs fake-quantized to q8_0 blocks (quant.act_format), as llama.cpp does */
} QLayer;

typedef struct Linear {
    Tensor *w, *b; /* w [out,in] (PyTorch layout), b [out] */
    QLayer *q;     /* NULL: float */
} Linear;

/* LayerNorm (b set) or RMSNorm (b NULL). */
typedef struct LayerNorm {
    Tensor *w, *b;
    float eps;
} LayerNorm;

typedef enum { ARCH_GPT = 0, ARCH_LLAMA = 1 } Arch;

typedef struct Block {
    int kv_bits; /* fake-quantize keys and values (0 = off) */
    int n_head, n_kv_head;
    float rope_theta; /* 0: no rotary embedding (gpt) */
    bool swiglu;      /* fc is [gate | up], fc_proj the down projection */
    LayerNorm ln1, ln2;
    Linear qkv, proj; /* attention: x -> [q|k|v] (n_head + 2 n_kv_head heads) -> heads -> proj */
    Linear fc, fc_proj; /* MLP: C -> 4C -> GELU -> C, or C -> 2H -> SwiGLU -> H -> C */
} Block;

/* Zero fields take the defaults (gpt_config_resolve), so a zero-initialised
 * config beyond the first five is the GPT. */
typedef struct GPTConfig {
    int vocab_size, n_layer, n_head, n_embd, block_size;
    Arch arch;
    int n_kv_head;    /* 0: n_head */
    int hidden;       /* MLP width; 0: 4 n_embd (gpt), 8/3 n_embd rounded up to 32 (llama) */
    float norm_eps;   /* 0: 1e-5 */
    float rope_theta; /* 0: 10000 (llama) */
    bool untied_head; /* llama: a separate lm_head.weight */
} GPTConfig;

typedef struct GPT {
    GPTConfig cfg;
    Params params;
    Tensor *wte, *wpe; /* wpe NULL for llama */
    Block *blocks;
    LayerNorm ln_f;
    Linear head;      /* weight = wte (tied) or lm_head.weight, no bias; quantized only when listed */
    QLayer *qlayers;  /* all quantized layers */
    int n_q;
} GPT;

/* The defaults of zero fields filled in. */
GPTConfig gpt_config_resolve(const GPTConfig *c);
/* Parameter count, head size and qkv width of a resolved config. */
static inline int gpt_head_size(const GPTConfig *c) { return c->n_embd / c->n_head; }
static inline int gpt_qkv_width(const GPTConfig *c) { return (c->n_head + 2 * c->n_kv_head) * gpt_head_size(c); }
/* Rows of mlp.fc: 4C (gpt) or 2 hidden (llama: gate then up). */
static inline int gpt_fc_rows(const GPTConfig *c) { return c->arch == ARCH_LLAMA ? 2 * c->hidden : c->hidden; }

void linear_init(Linear *l, Params *p, const char *name, int in, int out, bool bias);
/* With l->q set, the input and the weight pass through fake quantization. */
Tensor *linear_forward(Tape *t, const Linear *l, Tensor *x);
void layernorm_init(LayerNorm *l, Params *p, const char *name, int dim, bool rms, float eps);
Tensor *layernorm_forward(Tape *t, const LayerNorm *l, Tensor *x);
/* The attention between qkv and proj: rotary embedding (llama) and the heads. */
Tensor *attention_core(Tape *t, const Block *b, Tensor *qkv);
Tensor *attention_forward(Tape *t, const Block *b, Tensor *x);
/* The activation between fc and fc_proj: GELU (llama.cpp's half table when
 * fc_proj has q8_0 activation blocks) or SwiGLU. */
Tensor *mlp_activation(Tape *t, const Block *b, Tensor *h);
Tensor *mlp_forward(Tape *t, const Block *b, Tensor *x);
Tensor *block_forward(Tape *t, const Block *b, Tensor *x);

/* Declares every parameter (names like blocks.0.attn.qkv.weight) in one block.
 * q (NULL or weight bits 0 for a float model) adds fake quantization to the
 * selected Linears and declares their scales (names like
 * blocks.0.attn.qkv.weight_scale, marked quant_state). origin names the config
 * in errors (unknown layer, group size that does not divide, ...). */
void gpt_build(GPT *g, const GPTConfig *cfg, const QuantConfig *q, const char *origin);
/* The Linear a quantized layer belongs to. */
Linear *gpt_qlayer_linear(GPT *g, const QLayer *q);
/* Fake-quant state for a built (not yet finalized) model; used by gpt_build. */
void gpt_quant_build(GPT *g, const QuantConfig *q, const char *origin);
void gpt_quant_free(GPT *g);
/* Names of the Linears that can be quantized, in order ("blocks.0.attn.qkv", ..., "lm_head"). */
int gpt_linear_names(const GPTConfig *cfg, char (*names)[64], int cap);
/* Sets learned weight scales (and zero points) from the current weights by
 * min-max, so training starts at round-to-nearest. */
void gpt_quant_init_scales(GPT *g);
/* kmeans layers: sorts each table into the lut its spec points at; after
 * anything that writes w_table (loading, k-means, an optimizer step). */
void qlayer_sync_table(QLayer *q);
void gpt_quant_sync_tables(GPT *g);
/* A kmeans layer's table (q->w.lut, and w_table when it has one) fitted to
 * the weights of l by k-means over their learned or else min-max scales,
 * unweighted, seeded by seed. */
void qlayer_fit_table(QLayer *q, const Linear *l, uint64_t seed);
/* Every kmeans layer's table so, layer i seeded by 7000 + i. */
void gpt_quant_init_tables(GPT *g);
/* QMODE_CALIBRATE: quantized layers observe their inputs, which stay float. */
void gpt_quant_set_mode(GPT *g, QMode mode);
/* Static activation scales from the observers; then fake quantization of
 * activations starts (QMODE_QUANT). */
void gpt_quant_freeze(GPT *g);
/* Oscillation dampening over every fake-quantized weight: lambda times the
 * mean, over each layer, of its squared distance to the grid in units of its
 * scale (summed over layers; float layers skipped), its gradient added to the weights' grad; the
 * penalty is returned. */
double gpt_quant_dampen(GPT *g, float lambda);
/* Real integer weights of one quantized layer, from the same scales as fake
 * quantization (packed for W8A8 when its activations are int8, with the
 * static activation scale and the float columns of an outlier split). Fails
 * naming the layer for specs the kernels do not cover (they take symmetric
 * int2..int8 weights per channel or group, and float, dynamic per-token or
 * static per-tensor symmetric int8 activations with int5..int8 weights). */
void qlayer_to_qmatrix(GPT *g, const QLayer *q, QMatrix *out);
/* Whether qlayer_to_qmatrix takes q (qat export, integer eval); if not, why
 * gets the reason. Training checks it up front unless quant.deploy is false. */
bool qlayer_exportable(const QLayer *q, char *why, size_t n);
/* True if some layer has static (observed) activation scales. */
bool gpt_quant_needs_calibration(const GPT *g);
/* normal(0, 0.02) for 2-d weights, residual projections scaled by
 * 1/sqrt(2 n_layer), biases 0, LayerNorm weights 1. */
void gpt_init_weights(GPT *g, Rng *rng);
/* idx [B,T] -> logits [B,T,V] */
Tensor *gpt_forward(GPT *g, Tape *t, const int32_t *idx, int B, int T);
/* mean next-token cross-entropy */
Tensor *gpt_loss(GPT *g, Tape *t, const int32_t *idx, const int32_t *targets, int B, int T);
void gpt_free(GPT *g);

#endif
