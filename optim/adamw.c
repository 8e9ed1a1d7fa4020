/* adamw.c: AdamW with decoupled weight decay (Loshchilov & Hutter) restricted
 * to 2-d weights, as GPT training recipes do; biases and LayerNorm gains are
 * not decayed. */
#include <math.h>
#include <stdlib.h>

#include "optim.h"

void adamw_init(AdamW *o, const Params *p, float beta1, float beta2, float eps, float weight_decay) {
    o->beta1 = beta1;
    o->beta2 = beta2;
    o->eps = eps;
    o->weight_decay = weight_decay;
    o->m = xcalloc(p->numel, sizeof(float));
    o->v = xcalloc(p->numel, sizeof(float));
    o->step = 0;
}

void adamw_step(AdamW *o, Params *p, float lr) {
    o->step++;
    float b1 = o->beta1, b2 = o->beta2, eps = o->eps;
    float bc1 = 1.0f - powf(b1, (float)o->step);
    float bc2 = 1.0f - powf(b2, (float)o->step);
    float bc2_sqrt = sqrtf(bc2);
    size_t off = 0;
    for (int t = 0; t < p->n; t++) {
        Tensor *x = p->list[t];
        if (x->frozen) {
            off += x->numel;
            continue;
        }
        float tlr = lr * x->lr_scale;
        float decay = x->ndim >= 2 && !x->no_decay ? 1.0f - tlr * o->weight_decay : 1.0f;
        float *w = x->data, *g = x->grad, *m = o->m + off, *v = o->v + off;
        float step_size = tlr / bc1;
        size_t n = x->numel;
#pragma omp parallel for schedule(static) if (n > 65536)
        for (size_t i = 0; i < n; i++) {
            float gi = g[i];
            m[i] = b1 * m[i] + (1.0f - b1) * gi;
            v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
            float denom = sqrtf(v[i]) / bc2_sqrt + eps;
            w[i] = w[i] * decay - step_size * m[i] / denom;
        }
        off += n;
    }
}

void adamw_free(AdamW *o) {
    free(o->m);
    free(o->v);
    o->m = o->v = NULL;
}
