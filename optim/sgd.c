/* sgd.c: SGD with momentum and (coupled, L2) weight decay on 2-d weights. */
#include <stdlib.h>

#include "optim.h"

void sgd_init(Sgd *o, const Params *p, float momentum, float weight_decay) {
    o->momentum = momentum;
    o->weight_decay = weight_decay;
    o->buf = xcalloc(p->numel, sizeof(float));
    o->step = 0;
}

void sgd_step(Sgd *o, Params *p, float lr) {
    size_t off = 0;
    for (int t = 0; t < p->n; t++) {
        Tensor *x = p->list[t];
        if (x->frozen) {
            off += x->numel;
            continue;
        }
        float wd = x->ndim >= 2 && !x->no_decay ? o->weight_decay : 0.0f;
        float *w = x->data, *g = x->grad, *b = o->buf + off;
        for (size_t i = 0; i < x->numel; i++) {
            float gi = g[i] + wd * w[i];
            if (o->momentum != 0.0f) {
                b[i] = o->step == 0 ? gi : o->momentum * b[i] + gi;
                gi = b[i];
            }
            w[i] -= lr * x->lr_scale * gi;
        }
        off += x->numel;
    }
    o->step++;
}

void sgd_free(Sgd *o) {
    free(o->buf);
    o->buf = NULL;
}
