/* schedule.c: learning-rate schedule and gradient clipping. */
#include <math.h>

#include "optim.h"

float lr_at(const LrSchedule *s, int it) {
    if (it < s->warmup_iters) return s->lr * (float)(it + 1) / (float)s->warmup_iters;
    if (it >= s->iters) return s->min_lr;
    int span = s->iters - s->warmup_iters;
    if (span <= 0) return s->min_lr;
    double ratio = (double)(it - s->warmup_iters) / (double)span;
    double coeff = 0.5 * (1.0 + cos(3.14159265358979323846 * ratio)); /* 1 -> 0 */
    return (float)(s->min_lr + coeff * (s->lr - s->min_lr));
}

float grad_clip_norm(Params *p, float max_norm) {
    /* fixed chunks summed in order, so the norm does not depend on which
     * thread finishes first (an OpenMP reduction would) */
    enum { CHUNKS = 64 };
    double part[CHUNKS];
    const float *g = p->grad;
    size_t n = p->numel;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int c = 0; c < CHUNKS; c++) {
        size_t lo = n * (size_t)c / CHUNKS, hi = n * (size_t)(c + 1) / CHUNKS;
        double s = 0.0;
        for (size_t i = lo; i < hi; i++) s += (double)g[i] * g[i];
        part[c] = s;
    }
    double ss = 0.0;
    for (int c = 0; c < CHUNKS; c++) ss += part[c];
    float norm = (float)sqrt(ss);
    if (max_norm > 0.0f && norm > max_norm) {
        float s = max_norm / (norm + 1e-6f);
        for (size_t i = 0; i < n; i++) p->grad[i] *= s;
    }
    return norm;
}
