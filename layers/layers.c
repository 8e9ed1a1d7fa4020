/* layers.c: Linear, LayerNorm/RMSNorm, attention, MLP and Block. */
#include <stdio.h>
#include <string.h>

#include "layers.h"

void linear_init(Linear *l, Params *p, const char *name, int in, int out, bool bias) {
    char n[128];
    snprintf(n, sizeof n, "%s.weight", name);
    l->w = params_add(p, n, 2, (int[]){out, in});
    snprintf(n, sizeof n, "%s.bias", name);
    l->b = bias ? params_add(p, n, 1, (int[]){out}) : NULL;
}

static Tensor *act_quant(Tape *t, QLayer *q, Tensor *x) {
    if (q->a_blocks) return op_fake_quant_act_q8_0(t, op_contiguous(t, x)); /* llama.cpp's q8_0 activations */
    if (!q->a_bits) return x;
    if (q->a_dynamic) return op_fake_quant(t, x, &q->a, EST_STE, NULL, NULL);
    if (q->mode == QMODE_CALIBRATE) {
        observer_update(&q->obs, x->data, x->numel);
        return x;
    }
    return op_fake_quant(t, x, &q->a, q->est, q->a_scale, q->a_zp);
}

static Tensor *weight_quant(Tape *t, QLayer *q, Tensor *w) {
    if (q->w_table) {
        qlayer_sync_table(q);
        return op_fake_quant_table(t, w, &q->w, q->est, q->est == EST_LSQ ? q->w_scale : NULL, q->w_table);
    }
    return q->est == EST_LSQ ? op_fake_quant(t, w, &q->w, EST_LSQ, q->w_scale, q->w_zp)
                             : op_fake_quant(t, w, &q->w, q->est, NULL, NULL);
}

Tensor *linear_forward(Tape *t, const Linear *l, Tensor *x) {
    QLayer *q = l->q;
    if (!q) return op_linear(t, x, l->w, l->b);
    if (q->mode == QMODE_FLOAT) return op_linear(t, x, l->w, l->b);
    if (q->outlier) {
        /* outlier split: y = Q(x * keep) Q(W * keep)^T + (x * mask) W^T + b,
         * the float features' part exact, as the kernels compute it */
        int C = (int)q->outlier->numel;
        Tensor *keep = tensor_new(t, 1, &C);
        for (int j = 0; j < C; j++) keep->data[j] = 1.0f - q->outlier->data[j];
        Tensor *xi = act_quant(t, q, op_mul(t, x, keep)), *wi = weight_quant(t, q, op_mul(t, l->w, keep));
        return op_add(t, op_linear(t, xi, wi, l->b), op_linear(t, op_mul(t, x, q->outlier), l->w, NULL));
    }
    return op_linear(t, act_quant(t, q, x), weight_quant(t, q, l->w), l->b);
}

void layernorm_init(LayerNorm *l, Params *p, const char *name, int dim, bool rms, float eps) {
    char n[128];
    snprintf(n, sizeof n, "%s.weight", name);
    l->w = params_add(p, n, 1, (int[]){dim});
    snprintf(n, sizeof n, "%s.bias", name);
    l->b = rms ? NULL : params_add(p, n, 1, (int[]){dim});
    l->eps = eps;
}

Tensor *layernorm_forward(Tape *t, const LayerNorm *l, Tensor *x) {
    return l->b ? op_layernorm(t, x, l->w, l->b, l->eps) : op_rmsnorm(t, x, l->w, l->eps);
}

Tensor *attention_core(Tape *t, const Block *b, Tensor *qkv) {
    if (b->rope_theta > 0) qkv = op_rope(t, qkv, b->n_head, b->n_kv_head, b->rope_theta);
    if (b->kv_bits) qkv = op_fake_quant_kv(t, qkv, b->n_head, b->n_kv_head, b->kv_bits);
    return op_attention(t, qkv, b->n_head, b->n_kv_head);
}

Tensor *attention_forward(Tape *t, const Block *b, Tensor *x) {
    return linear_forward(t, &b->proj, attention_core(t, b, linear_forward(t, &b->qkv, x)));
}

static bool is_float(const Linear *l) { return !l->q || l->q->mode == QMODE_FLOAT; }

Tensor *mlp_activation(Tape *t, const Block *b, Tensor *h) {
    if (b->swiglu) return op_swiglu(t, h);
    /* simulating llama.cpp (q8_0 activation blocks): its GELU too, whose
     * half-precision table would otherwise move many q8_0 codes */
    bool half = b->fc_proj.q && b->fc_proj.q->a_blocks;
    return half ? op_gelu_half(t, h) : op_gelu(t, h);
}

Tensor *mlp_forward(Tape *t, const Block *b, Tensor *x) {
    if (!b->swiglu && is_float(&b->fc) && is_float(&b->fc_proj)) /* nothing to quantize between: the fused op */
        return op_mlp(t, x, b->fc.w, b->fc.b, b->fc_proj.w, b->fc_proj.b);
    return linear_forward(t, &b->fc_proj, mlp_activation(t, b, linear_forward(t, &b->fc, x)));
}

Tensor *block_forward(Tape *t, const Block *b, Tensor *x) {
    x = op_add(t, x, attention_forward(t, b, layernorm_forward(t, &b->ln1, x)));
    return op_add(t, x, mlp_forward(t, b, layernorm_forward(t, &b->ln2, x)));
}
