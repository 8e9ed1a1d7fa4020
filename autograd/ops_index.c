/* ops_index.c: the ops on token ids and logits: embedding lookup, the fused
 * log-softmax + cross-entropy loss, and the distillation loss against a
 * teacher's logits. */
#include <math.h>
#include <string.h>

#include "autograd.h"

static void embedding_backward(Node *n) {
    Tensor *w = n->in[0], *y = n->out;
    int C = w->shape[1];
    size_t R = y->numel / (size_t)C;
    /* serial scatter-add: rows may repeat, and it is a small share of a step */
    for (size_t r = 0; r < R; r++) {
        float *gw = w->grad + (size_t)n->idx[r] * C;
        const float *gy = y->grad + r * C;
        for (int c = 0; c < C; c++) gw[c] += gy[c];
    }
}

Tensor *op_embedding(Tape *t, Tensor *weight, const int32_t *idx, int ndim, const int *shape) {
    char sw[64];
    if (weight->ndim != 2 || !tensor_is_contiguous(weight))
        qat_fail("embedding: weight must be a contiguous [V,C] tensor, got %s", tensor_shape_str(weight, sw, sizeof sw));
    if (ndim < 1 || ndim + 1 > TENSOR_MAX_DIMS) qat_fail("embedding: %d index dimensions", ndim);
    int V = weight->shape[0], C = weight->shape[1];
    int oshape[TENSOR_MAX_DIMS];
    size_t R = 1;
    for (int d = 0; d < ndim; d++) {
        oshape[d] = shape[d];
        R *= (size_t)shape[d];
    }
    oshape[ndim] = C;
    for (size_t r = 0; r < R; r++)
        if (idx[r] < 0 || idx[r] >= V) qat_fail("embedding: index %d at position %zu is outside [0,%d)", idx[r], r, V);
    Tensor *y = tensor_new(t, ndim + 1, oshape);
#pragma omp parallel for schedule(static) if (R * C > 65536)
    for (size_t r = 0; r < R; r++) memcpy(y->data + r * C, weight->data + (size_t)idx[r] * C, (size_t)C * sizeof(float));
    Node *n = tape_record(t, "embedding", embedding_backward, y, 1, (Tensor *[]){weight});
    if (n) n->idx = idx;
    return y;
}

static void cross_entropy_backward(Node *n) {
    Tensor *x = n->in[0];
    int V = x->shape[x->ndim - 1];
    int R = (int)(x->numel / (size_t)V);
    float g = n->out->grad[0] / (float)R;
    const float *p = n->saved;
    float *gx = x->grad;
    bool set = grad_take_fresh(x);
#pragma omp parallel for schedule(static) if ((size_t)R * V > 32768)
    for (int r = 0; r < R; r++) {
        const float *pr = p + (size_t)r * V;
        float *gr = gx + (size_t)r * V;
        if (set) /* separate loops: a select inside one stops vectorisation */
            for (int c = 0; c < V; c++) gr[c] = g * pr[c];
        else
            for (int c = 0; c < V; c++) gr[c] += g * pr[c];
        gr[n->idx[r]] -= g;
    }
}

Tensor *op_cross_entropy(Tape *t, Tensor *logits, const int32_t *targets) {
    char sx[64];
    if (!tensor_is_contiguous(logits))
        qat_fail("cross_entropy: logits %s are not contiguous", tensor_shape_str(logits, sx, sizeof sx));
    int V = logits->shape[logits->ndim - 1];
    int R = (int)(logits->numel / (size_t)V);
    for (int r = 0; r < R; r++)
        if (targets[r] < 0 || targets[r] >= V)
            qat_fail("cross_entropy: target %d at row %d is outside [0,%d)", targets[r], r, V);
    bool grad = t->grad_enabled && logits->requires_grad;
    float *p = grad ? arena_alloc(&t->arena, logits->numel * sizeof(float)) : NULL;
    const float *x = logits->data;
    /* per-row losses summed in order afterwards: an OpenMP reduction would add
     * the partial sums in thread-arrival order and break bitwise resume */
    float *row_loss = arena_alloc(&t->arena, (size_t)R * sizeof(float));
#pragma omp parallel for schedule(static) if ((size_t)R * V > 32768)
    for (int r = 0; r < R; r++) {
        const float *xr = x + (size_t)r * V;
        float mx = xr[0];
        for (int c = 1; c < V; c++) mx = xr[c] > mx ? xr[c] : mx;
        float s = 0.0f;
        for (int c = 0; c < V; c++) s += expf(xr[c] - mx);
        float lse = mx + logf(s);
        row_loss[r] = lse - xr[targets[r]];
        if (p) {
            float inv = 1.0f / s;
            for (int c = 0; c < V; c++) p[(size_t)r * V + c] = expf(xr[c] - mx) * inv;
        }
    }
    double total = 0.0;
    for (int r = 0; r < R; r++) total += row_loss[r];
    Tensor *y = tensor_new(t, 1, (int[]){1});
    y->data[0] = (float)(total / R);
    Node *n = tape_record(t, "cross_entropy", cross_entropy_backward, y, 1, (Tensor *[]){logits});
    if (n) {
        n->overwrite = true;
        n->saved = p;
        n->idx = targets;
    }
    return y;
}

/* dL/dz_s = T^2 * (p_s - p_t) / T / R per row: the softened student's
 * probabilities minus the teacher's, scaled by T / R */
static void kl_distill_backward(Node *n) {
    Tensor *x = n->in[0];
    int V = x->shape[x->ndim - 1];
    int R = (int)(x->numel / (size_t)V);
    float g = n->out->grad[0] * n->f[0] / (float)R;
    const float *ps = n->saved, *pt = n->saved2;
    float *gx = x->grad;
    bool set = grad_take_fresh(x);
#pragma omp parallel for schedule(static) if ((size_t)R * V > 32768)
    for (int r = 0; r < R; r++) {
        const float *a = ps + (size_t)r * V, *b = pt + (size_t)r * V;
        float *gr = gx + (size_t)r * V;
        if (set)
            for (int c = 0; c < V; c++) gr[c] = g * (a[c] - b[c]);
        else
            for (int c = 0; c < V; c++) gr[c] += g * (a[c] - b[c]);
    }
}

/* log-softmax of z/T over one row of V values into out */
static void log_softmax_t(const float *z, int V, float inv_t, float *out) {
    float mx = z[0];
    for (int c = 1; c < V; c++) mx = z[c] > mx ? z[c] : mx;
    float s = 0.0f;
    for (int c = 0; c < V; c++) s += expf((z[c] - mx) * inv_t);
    float lse = logf(s);
    for (int c = 0; c < V; c++) out[c] = (z[c] - mx) * inv_t - lse;
}

Tensor *op_kl_distill(Tape *t, Tensor *logits, const Tensor *teacher, float temperature) {
    char sx[64], st[64];
    if (!tensor_is_contiguous(logits) || !tensor_is_contiguous(teacher) || logits->numel != teacher->numel ||
        logits->shape[logits->ndim - 1] != teacher->shape[teacher->ndim - 1])
        qat_fail("kl_distill: student logits %s and teacher logits %s must be contiguous and of one shape",
                 tensor_shape_str(logits, sx, sizeof sx), tensor_shape_str(teacher, st, sizeof st));
    if (!(temperature > 0.0f)) qat_fail("kl_distill: temperature %g must be > 0", temperature);
    int V = logits->shape[logits->ndim - 1];
    int R = (int)(logits->numel / (size_t)V);
    float inv_t = 1.0f / temperature;
    bool grad = t->grad_enabled && logits->requires_grad;
    /* softened probabilities of both, kept for the backward (the teacher's
     * logits themselves may go as soon as this returns) */
    float *ps = arena_alloc(&t->arena, logits->numel * sizeof(float));
    float *pt = arena_alloc(&t->arena, logits->numel * sizeof(float));
    float *row_loss = arena_alloc(&t->arena, (size_t)R * sizeof(float));
#pragma omp parallel for schedule(static) if ((size_t)R * V > 32768)
    for (int r = 0; r < R; r++) {
        float *a = ps + (size_t)r * V, *b = pt + (size_t)r * V;
        log_softmax_t(logits->data + (size_t)r * V, V, inv_t, a);
        log_softmax_t(teacher->data + (size_t)r * V, V, inv_t, b);
        float kl = 0.0f;
        for (int c = 0; c < V; c++) {
            float q = expf(b[c]); /* 0 where the teacher's probability underflows: that term is 0 */
            kl += q * (b[c] - a[c]);
            a[c] = expf(a[c]);
            b[c] = q;
        }
        row_loss[r] = kl;
    }
    double total = 0.0; /* in row order, as cross_entropy: bitwise resume */
    for (int r = 0; r < R; r++) total += row_loss[r];
    Tensor *y = tensor_new(t, 1, (int[]){1});
    y->data[0] = (float)(total / R * (double)temperature * temperature);
    Node *n = grad ? tape_record(t, "kl_distill", kl_distill_backward, y, 1, (Tensor *[]){logits}) : NULL;
    if (n) {
        n->overwrite = true;
        n->saved = ps;
        n->saved2 = pt;
        n->f[0] = temperature;
    }
    return y;
}
