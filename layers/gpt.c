/* gpt.c: the model (either architecture): parameters, initialisation,
 * forward and loss. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers.h"

GPTConfig gpt_config_resolve(const GPTConfig *c) {
    GPTConfig r = *c;
    bool llama = r.arch == ARCH_LLAMA;
    if (!r.n_kv_head) r.n_kv_head = r.n_head;
    if (!r.hidden) r.hidden = llama ? (8 * r.n_embd / 3 + 31) / 32 * 32 : 4 * r.n_embd;
    if (!(r.norm_eps > 0)) r.norm_eps = 1e-5f;
    if (!(r.rope_theta > 0)) r.rope_theta = 10000.0f;
    if (!llama) r.untied_head = false;
    return r;
}

void gpt_build(GPT *g, const GPTConfig *cfg, const QuantConfig *q, const char *origin) {
    memset(g, 0, sizeof *g);
    g->cfg = gpt_config_resolve(cfg);
    const GPTConfig *c = &g->cfg;
    bool llama = c->arch == ARCH_LLAMA;
    int C = c->n_embd;
    if (c->n_head < 1 || C % c->n_head || c->n_head % c->n_kv_head || (llama && gpt_head_size(c) % 2))
        qat_fail("%s: %d heads of width %d with %d kv heads do not split evenly", origin ? origin : "model", c->n_head,
                 C, c->n_kv_head);
    params_init(&g->params);
    Params *p = &g->params;
    g->wte = params_add(p, "wte", 2, (int[]){c->vocab_size, C});
    if (!llama) g->wpe = params_add(p, "wpe", 2, (int[]){c->block_size, C});
    g->blocks = xcalloc((size_t)c->n_layer, sizeof(Block));
    for (int l = 0; l < c->n_layer; l++) {
        Block *b = &g->blocks[l];
        b->n_head = c->n_head;
        b->n_kv_head = c->n_kv_head;
        b->rope_theta = llama ? c->rope_theta : 0.0f;
        b->swiglu = llama;
        char n[64];
        snprintf(n, sizeof n, "blocks.%d.ln1", l);
        layernorm_init(&b->ln1, p, n, C, llama, c->norm_eps);
        snprintf(n, sizeof n, "blocks.%d.attn.qkv", l);
        linear_init(&b->qkv, p, n, C, gpt_qkv_width(c), !llama);
        snprintf(n, sizeof n, "blocks.%d.attn.proj", l);
        linear_init(&b->proj, p, n, C, C, !llama);
        snprintf(n, sizeof n, "blocks.%d.ln2", l);
        layernorm_init(&b->ln2, p, n, C, llama, c->norm_eps);
        snprintf(n, sizeof n, "blocks.%d.mlp.fc", l);
        linear_init(&b->fc, p, n, C, gpt_fc_rows(c), !llama);
        snprintf(n, sizeof n, "blocks.%d.mlp.proj", l);
        linear_init(&b->fc_proj, p, n, c->hidden, C, !llama);
    }
    layernorm_init(&g->ln_f, p, "ln_f", C, llama, c->norm_eps);
    Tensor *hw = c->untied_head ? params_add(p, "lm_head.weight", 2, (int[]){c->vocab_size, C}) : g->wte;
    g->head = (Linear){.w = hw, .b = NULL, .q = NULL};
    if (q && q->w_bits > 0) gpt_quant_build(g, q, origin ? origin : "config");
    params_finalize(p);
    for (int i = 0; i < g->n_q; i++) /* kmeans tables start as the lut qlayer_build set */
        if (g->qlayers[i].w_table) memcpy(g->qlayers[i].w_table->data, g->qlayers[i].lut, g->qlayers[i].w_table->numel * sizeof(float));
}

void gpt_init_weights(GPT *g, Rng *rng) {
    float resid_std = 0.02f / sqrtf(2.0f * (float)g->cfg.n_layer);
    for (int i = 0; i < g->params.n; i++) {
        Tensor *x = g->params.list[i];
        if (x->quant_state) continue; /* set by gpt_quant_init_scales */
        const char *name = x->name;
        size_t len = strlen(name);
        bool is_bias = len > 5 && !strcmp(name + len - 5, ".bias");
        bool is_ln = strstr(name, "ln1.") || strstr(name, "ln2.") || !strncmp(name, "ln_f.", 5);
        if (is_bias) {
            memset(x->data, 0, x->numel * sizeof(float));
        } else if (is_ln) {
            for (size_t k = 0; k < x->numel; k++) x->data[k] = 1.0f;
        } else {
            bool resid = strstr(name, ".attn.proj.weight") || strstr(name, ".mlp.proj.weight");
            float std = resid ? resid_std : 0.02f;
            for (size_t k = 0; k < x->numel; k++) x->data[k] = std * rng_normal(rng);
        }
    }
}

Tensor *gpt_forward(GPT *g, Tape *t, const int32_t *idx, int B, int T) {
    const GPTConfig *c = &g->cfg;
    if (T > c->block_size) qat_fail("gpt: sequence of %d tokens exceeds block_size %d", T, c->block_size);
    /* positions 0..T-1 live in the tape arena so backward can still read them */
    int32_t *pos = arena_alloc(&t->arena, (size_t)T * sizeof(int32_t));
    for (int i = 0; i < T; i++) pos[i] = i;
    Tensor *x = op_embedding(t, g->wte, idx, 2, (int[]){B, T});
    if (g->wpe) x = op_add(t, x, op_embedding(t, g->wpe, pos, 1, (int[]){T}));
    for (int l = 0; l < c->n_layer; l++) x = block_forward(t, &g->blocks[l], x);
    x = layernorm_forward(t, &g->ln_f, x);
    return linear_forward(t, &g->head, x);
}

Tensor *gpt_loss(GPT *g, Tape *t, const int32_t *idx, const int32_t *targets, int B, int T) {
    return op_cross_entropy(t, gpt_forward(g, t, idx, B, T), targets);
}

void gpt_free(GPT *g) {
    gpt_quant_free(g);
    params_free(&g->params);
    free(g->blocks);
    memset(g, 0, sizeof *g);
}
