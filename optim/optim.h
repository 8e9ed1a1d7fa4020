/* optim.h: optimizers over a Params block (AdamW with decoupled weight decay on
 * 2-d weights only, SGD with momentum), the warmup + cosine learning-rate
 * schedule, and global-norm gradient clipping. */
#ifndef QAT_OPTIM_H
#define QAT_OPTIM_H

#include "../autograd/autograd.h"

typedef struct AdamW {
    float beta1, beta2, eps, weight_decay;
    float *m, *v; /* one block each, laid out like Params.data */
    long step;    /* number of updates taken */
} AdamW;

void adamw_init(AdamW *o, const Params *p, float beta1, float beta2, float eps, float weight_decay);
/* One update at learning rate lr (PyTorch AdamW semantics: bias-corrected
 * moments, decay p -= lr*wd*p applied to tensors with ndim >= 2 only, and not
 * to those marked no_decay). Frozen tensors are left alone. */
void adamw_step(AdamW *o, Params *p, float lr);
void adamw_free(AdamW *o);

typedef struct Sgd {
    float momentum, weight_decay;
    float *buf;
    long step;
} Sgd;

void sgd_init(Sgd *o, const Params *p, float momentum, float weight_decay);
/* PyTorch SGD semantics: g += wd*p (2-d weights); buf = mu*buf + g (buf = g on
 * the first step); p -= lr*buf. */
void sgd_step(Sgd *o, Params *p, float lr);
void sgd_free(Sgd *o);

typedef struct LrSchedule {
    float lr, min_lr;
    int warmup_iters, iters;
} LrSchedule;
/* Linear warmup from lr/warmup to lr over warmup_iters, then cosine from lr
 * down to min_lr at iters; min_lr from then on. it counts from 0. */
float lr_at(const LrSchedule *s, int it);

/* Scales all grads so their global L2 norm is at most max_norm (when
 * max_norm > 0). Returns the norm before clipping. */
float grad_clip_norm(Params *p, float max_norm);

#endif
