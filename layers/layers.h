/* layers.h: the GPT's building blocks on the autograd ops: Linear (with bias),
 * LayerNorm, causal multi-head self-attention, the 4x GELU MLP, the pre-LN
 * Block, and the GPT (token + learned position embeddings, blocks, final
 * LayerNorm, LM head tied to the token embedding). */
#ifndef QAT_LAYERS_H
#define QAT_LAYERS_H

#include "autograd/autograd.h"

typedef struct Linear {
    Tensor *w, *b; /* w [out,in] (PyTorch layout), b [out] */
} Linear;

typedef struct LayerNorm {
    Tensor *w, *b;
} LayerNorm;

typedef struct Block {
    LayerNorm ln1, ln2;
    Linear qkv, proj; /* attention: x -> [q|k|v] -> heads -> proj */
    Linear fc, fc_proj; /* MLP: C -> 4C -> GELU -> C */
} Block;

typedef struct GPTConfig {
    int vocab_size, n_layer, n_head, n_embd, block_size;
} GPTConfig;

typedef struct GPT {
    GPTConfig cfg;
    Params params;
    Tensor *wte, *wpe;
    Block *blocks;
    LayerNorm ln_f;
} GPT;

void linear_init(Linear *l, Params *p, const char *name, int in, int out);
Tensor *linear_forward(Tape *t, const Linear *l, Tensor *x);
void layernorm_init(LayerNorm *l, Params *p, const char *name, int dim);
Tensor *layernorm_forward(Tape *t, const LayerNorm *l, Tensor *x);
Tensor *attention_forward(Tape *t, const Block *b, Tensor *x, int n_head);
Tensor *mlp_forward(Tape *t, const Block *b, Tensor *x);
Tensor *block_forward(Tape *t, const Block *b, Tensor *x, int n_head);

/* Declares every parameter (names like blocks.0.attn.qkv.weight) in one block. */
void gpt_build(GPT *g, const GPTConfig *cfg);
/* normal(0, 0.02) for 2-d weights, residual projections scaled by
 * 1/sqrt(2 n_layer), biases 0, LayerNorm weights 1. */
void gpt_init_weights(GPT *g, Rng *rng);
/* idx [B,T] -> logits [B,T,V] */
Tensor *gpt_forward(GPT *g, Tape *t, const int32_t *idx, int B, int T);
/* mean next-token cross-entropy */
Tensor *gpt_loss(GPT *g, Tape *t, const int32_t *idx, const int32_t *targets, int B, int T);
void gpt_free(GPT *g);

#endif
