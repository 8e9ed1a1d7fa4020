/* ops_norm.c: row-wise normalisations over the last dim: LayerNorm and
 * softmax (optionally causal). */
#include <math.h>
#include <omp.h>

#include "autograd.h"
#include "fastmath.h"
#include "internal.h"

#define PAR_ROWS 64 /* rows below which a loop stays on one thread */

/* Rows [r0, r1). The reductions are declared simd so they vectorise (a
 * float sum is otherwise kept in source order, one add at a time). */
QAT_CLONES static void ln_fwd_rows(const float *x, const float *w, const float *b, float eps, int r0, int r1, int C,
                                   float *y, float *mean, float *rstd) {
    for (int r = r0; r < r1; r++) {
        const float *xr = x + (size_t)r * C;
        float m = 0.0f, v = 0.0f;
#pragma omp simd reduction(+ : m)
        for (int c = 0; c < C; c++) m += xr[c];
        m /= (float)C;
#pragma omp simd reduction(+ : v)
        for (int c = 0; c < C; c++) v += (xr[c] - m) * (xr[c] - m);
        v /= (float)C;
        float s = 1.0f / sqrtf(v + eps);
        float *yr = y + (size_t)r * C;
#pragma omp simd
        for (int c = 0; c < C; c++) yr[c] = (xr[c] - m) * s * w[c] + b[c];
        if (mean) mean[r] = m;
        if (rstd) rstd[r] = s;
    }
}

/* Rows [r0, r1): gx (set or accumulated; NULL to skip) and this thread's
 * partial sums of the weight grad (dy * xhat) and the bias grad (dy) over
 * its rows, so x and dy are read once. */
QAT_CLONES static void ln_bwd_rows(const float *x, const float *gy, const float *w, const float *mean,
                                   const float *rstd, int r0, int r1, int C, float *gx, bool set, float *dw,
                                   float *db) {
    for (int r = r0; r < r1; r++) {
        const float *xr = x + (size_t)r * C, *gr = gy + (size_t)r * C;
        float m = mean[r], s = rstd[r];
        /* dx = rstd * (g*w - mean(g*w) - xhat * mean(g*w*xhat)) */
        float a = 0.0f, bsum = 0.0f;
#pragma omp simd reduction(+ : a, bsum)
        for (int c = 0; c < C; c++) {
            float xh = (xr[c] - m) * s;
            float gw = gr[c] * w[c];
            a += gw;
            bsum += gw * xh;
            dw[c] += gr[c] * xh;
            db[c] += gr[c];
        }
        a /= (float)C;
        bsum /= (float)C;
        if (!gx) continue;
        float *gxr = gx + (size_t)r * C;
        if (set) /* separate loops: a select inside one stops vectorisation */
#pragma omp simd
            for (int c = 0; c < C; c++) gxr[c] = s * (gr[c] * w[c] - a - (xr[c] - m) * s * bsum);
        else
#pragma omp simd
            for (int c = 0; c < C; c++) gxr[c] += s * (gr[c] * w[c] - a - (xr[c] - m) * s * bsum);
    }
}

static void layernorm_backward(Node *n) {
    Tensor *x = n->in[0], *w = n->in[1], *b = n->in[2], *y = n->out;
    int C = x->shape[x->ndim - 1];
    int R = (int)(x->numel / (size_t)C);
    int nt = n->i[0]; /* threads the forward made room for */
    const float *mean = n->saved, *rstd = n->saved2;
    float *part = n->saved2 + R; /* per thread: dw [C], db [C] */
    float *gx = x->requires_grad ? x->grad : NULL;
    bool set = x->requires_grad && grad_take_fresh(x);
    for (size_t i = 0; i < (size_t)nt * 2 * C; i++) part[i] = 0.0f;
    int used = 1;
#pragma omp parallel num_threads(nt) if (R > PAR_ROWS)
    {
        int t = omp_get_thread_num(), tn = omp_get_num_threads();
        int r0 = (int)((long)R * t / tn), r1 = (int)((long)R * (t + 1) / tn);
        ln_bwd_rows(x->data, y->grad, w->data, mean, rstd, r0, r1, C, gx, set, part + (size_t)t * 2 * C,
                    part + (size_t)t * 2 * C + C);
        if (t == 0) used = tn;
    }
    /* the threads' partial sums, added in thread order */
    if (w->requires_grad) {
        if (grad_take_fresh(w)) par_zero(w->grad, w->numel);
        for (int t = 0; t < used; t++)
            for (int c = 0; c < C; c++) w->grad[c] += part[(size_t)t * 2 * C + c];
    }
    if (b->requires_grad) {
        if (grad_take_fresh(b)) par_zero(b->grad, b->numel);
        for (int t = 0; t < used; t++)
            for (int c = 0; c < C; c++) b->grad[c] += part[(size_t)t * 2 * C + C + c];
    }
}

void layernorm_rows(const float *x, const float *w, const float *b, float eps, int R, int C, float *y, float *mean,
                    float *rstd) {
    if (R <= PAR_ROWS) { /* also the path inside the inference team's regions */
        ln_fwd_rows(x, w, b, eps, 0, R, C, y, mean, rstd);
        return;
    }
#pragma omp parallel
    {
        int t = omp_get_thread_num(), tn = omp_get_num_threads();
        ln_fwd_rows(x, w, b, eps, (int)((long)R * t / tn), (int)((long)R * (t + 1) / tn), C, y, mean, rstd);
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
    /* rstd is followed by room for each thread's partial weight and bias grads */
    bool grad = t->grad_enabled && (x->requires_grad || w->requires_grad || b->requires_grad);
    int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    float *rstd = arena_alloc(&t->arena, ((size_t)R + (grad ? (size_t)nt * 2 * C : 0)) * sizeof(float));
    layernorm_rows(x->data, w->data, b->data, eps, R, C, y->data, mean, rstd);
    Node *n = tape_record(t, "layernorm", layernorm_backward, y, 3, (Tensor *[]){x, w, b});
    if (n) {
        n->overwrite = true;
        n->saved = mean;
        n->saved2 = rstd;
        n->i[0] = nt;
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
