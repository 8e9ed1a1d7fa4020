/* ops_norm.c: row-wise normalisations over the last dim: LayerNorm and
 * softmax (optionally causal). */
#include <math.h>

#include "autograd.h"
#include "internal.h"

#define PAR_ROWS 64 /* rows below which a loop stays on one thread */

static void layernorm_backward(Node *n) {
    Tensor *x = n->in[0], *w = n->in[1], *b = n->in[2], *y = n->out;
    int C = x->shape[x->ndim - 1];
    int R = (int)(x->numel / (size_t)C);
    const float *mean = n->saved, *rstd = n->saved2;
    const float *px = x->data, *gy = y->grad, *pw = w->data;
    if (x->requires_grad) {
        float *gx = x->grad;
        bool set = grad_take_fresh(x);
#pragma omp parallel for schedule(static) if (R > PAR_ROWS)
        for (int r = 0; r < R; r++) {
            const float *xr = px + (size_t)r * C, *gr = gy + (size_t)r * C;
            float m = mean[r], s = rstd[r];
            /* dx = rstd * (g*w - mean(g*w) - xhat * mean(g*w*xhat)) */
            float a = 0.0f, bsum = 0.0f;
            for (int c = 0; c < C; c++) {
                float xh = (xr[c] - m) * s;
                float gw = gr[c] * pw[c];
                a += gw;
                bsum += gw * xh;
            }
            a /= (float)C;
            bsum /= (float)C;
            float *gxr = gx + (size_t)r * C;
            if (set) /* separate loops: a select inside one stops vectorisation */
                for (int c = 0; c < C; c++) gxr[c] = s * (gr[c] * pw[c] - a - (xr[c] - m) * s * bsum);
            else
                for (int c = 0; c < C; c++) gxr[c] += s * (gr[c] * pw[c] - a - (xr[c] - m) * s * bsum);
        }
    }
    /* dw = sum over rows of dy * xhat, db = sum of dy; xhat is rebuilt into scratch */
    if (b->requires_grad) {
        if (grad_take_fresh(b)) par_zero(b->grad, b->numel);
        colsum_add(b->grad, gy, NULL, (size_t)R, (size_t)C);
    }
    if (w->requires_grad) {
        if (grad_take_fresh(w)) par_zero(w->grad, w->numel);
        float *xhat = n->saved2 + R; /* scratch allocated with the node */
#pragma omp parallel for schedule(static) if (R > PAR_ROWS)
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) xhat[(size_t)r * C + c] = (px[(size_t)r * C + c] - mean[r]) * rstd[r];
        colsum_add(w->grad, gy, xhat, (size_t)R, (size_t)C);
    }
}

void layernorm_rows(const float *x, const float *w, const float *b, float eps, int R, int C, float *y, float *mean,
                    float *rstd) {
#pragma omp parallel for schedule(static) if (R > PAR_ROWS)
    for (int r = 0; r < R; r++) {
        const float *xr = x + (size_t)r * C;
        float m = 0.0f;
        for (int c = 0; c < C; c++) m += xr[c];
        m /= (float)C;
        float v = 0.0f;
        for (int c = 0; c < C; c++) v += (xr[c] - m) * (xr[c] - m);
        v /= (float)C;
        float s = 1.0f / sqrtf(v + eps);
        float *yr = y + (size_t)r * C;
        for (int c = 0; c < C; c++) yr[c] = (xr[c] - m) * s * w[c] + b[c];
        if (mean) mean[r] = m;
        if (rstd) rstd[r] = s;
    }
}

Tensor *op_layernorm(Tape *t, Tensor *x, Tensor *w, Tensor *b, float eps) {
    char sx[64], sw[64];
    int C = x->shape[x->ndim - 1];
    if (!tensor_is_contiguous(x)) qat_fail("layernorm: input %s is not contiguous", tensor_shape_str(x, sx, sizeof sx));
    if (w->ndim != 1 || w->shape[0] != C || b->ndim != 1 || b->shape[0] != C)
        qat_fail("layernorm: shape mismatch: x %s needs weight and bias [%d], got %s and %s",
                 tensor_shape_str(x, sx, sizeof sx), C, tensor_shape_str(w, sw, sizeof sw),
                 tensor_shape_str(b, sx, sizeof sx));
    int R = (int)(x->numel / (size_t)C);
    Tensor *y = tensor_new(t, x->ndim, x->shape);
    float *mean = arena_alloc(&t->arena, (size_t)R * sizeof(float));
    /* rstd is followed by room for xhat, rebuilt in backward for the weight grad */
    bool grad = t->grad_enabled && (x->requires_grad || w->requires_grad || b->requires_grad);
    float *rstd = arena_alloc(&t->arena, ((size_t)R + (grad ? x->numel : 0)) * sizeof(float));
    layernorm_rows(x->data, w->data, b->data, eps, R, C, y->data, mean, rstd);
    Node *n = tape_record(t, "layernorm", layernorm_backward, y, 3, (Tensor *[]){x, w, b});
    if (n) {
        n->overwrite = true;
        n->saved = mean;
        n->saved2 = rstd;
    }
    return y;
}

/* ---- softmax over the last dim ---- */

static void softmax_backward(Node *n) {
    Tensor *x = n->in[0], *y = n->out;
    int C = x->shape[x->ndim - 1];
    int R = (int)(x->numel / (size_t)C);
    const float *py = y->data, *gy = y->grad;
    float *gx = x->grad;
#pragma omp parallel for schedule(static) if (R > PAR_ROWS)
    for (int r = 0; r < R; r++) {
        const float *yr = py + (size_t)r * C, *gr = gy + (size_t)r * C;
        float dot = 0.0f;
        for (int c = 0; c < C; c++) dot += yr[c] * gr[c];
        for (int c = 0; c < C; c++) gx[(size_t)r * C + c] += yr[c] * (gr[c] - dot);
    }
}

Tensor *op_softmax(Tape *t, Tensor *x, bool causal) {
    char sx[64];
    int C = x->shape[x->ndim - 1];
    if (!tensor_is_contiguous(x)) qat_fail("softmax: input %s is not contiguous", tensor_shape_str(x, sx, sizeof sx));
    if (causal && (x->ndim < 2 || x->shape[x->ndim - 2] != C))
        qat_fail("softmax: causal mask needs square last dims [T,T], got %s", tensor_shape_str(x, sx, sizeof sx));
    int R = (int)(x->numel / (size_t)C);
    Tensor *y = tensor_new(t, x->ndim, x->shape);
    const float *px = x->data;
    float *py = y->data;
#pragma omp parallel for schedule(static) if (R > PAR_ROWS)
    for (int r = 0; r < R; r++) {
        const float *xr = px + (size_t)r * C;
        float *yr = py + (size_t)r * C;
        int len = causal ? r % C + 1 : C; /* row i of a [T,T] block sees keys 0..i */
        float mx = xr[0];
        for (int c = 1; c < len; c++) mx = xr[c] > mx ? xr[c] : mx;
        float s = 0.0f;
        for (int c = 0; c < len; c++) {
            yr[c] = expf(xr[c] - mx);
            s += yr[c];
        }
        float inv = 1.0f / s;
        for (int c = 0; c < len; c++) yr[c] *= inv;
        for (int c = len; c < C; c++) yr[c] = 0.0f;
    }
    tape_record(t, "softmax", softmax_backward, y, 1, (Tensor *[]){x});
    return y;
}
