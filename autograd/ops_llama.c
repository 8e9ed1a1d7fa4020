/* ops_llama.c: the ops the Llama architecture adds to the GPT's: RMSNorm,
 * rotary position embeddings on the q and k heads of a packed qkv tensor
 * (adjacent pairs (2i, 2i+1), as llama2.c and llama.cpp's llama architecture
 * rotate them), and the SiLU-gated product of SwiGLU. The plain-array forms
 * are shared with the inference engine so both compute the same values. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "autograd.h"
#include "fastmath.h"
#include "internal.h"

#define PAR_ROWS 64

/* ---- RMSNorm: y = x / sqrt(mean(x^2) + eps) * w ---- */

/* The mean of squares is summed in double, as ggml does: the reference
 * runtime's own rounding, not a second one. */
static void rms_fwd_rows(const float *x, const float *w, float eps, int r0, int r1, int C, float *y, float *rstd) {
    for (int r = r0; r < r1; r++) {
        const float *xr = x + (size_t)r * C;
        double ss = 0.0;
        for (int c = 0; c < C; c++) ss += (double)xr[c] * xr[c];
        float s = 1.0f / sqrtf((float)(ss / C) + eps);
        float *yr = y + (size_t)r * C;
        for (int c = 0; c < C; c++) yr[c] = xr[c] * s * w[c];
        if (rstd) rstd[r] = s;
    }
}

void rmsnorm_rows(const float *x, const float *w, float eps, int R, int C, float *y, float *rstd) {
    if (R <= PAR_ROWS || omp_in_parallel()) {
        rms_fwd_rows(x, w, eps, 0, R, C, y, rstd);
        return;
    }
#pragma omp parallel
    {
        int t = omp_get_thread_num(), tn = omp_get_num_threads();
        rms_fwd_rows(x, w, eps, (int)((long)R * t / tn), (int)((long)R * (t + 1) / tn), C, y, rstd);
    }
}

static void rmsnorm_backward(Node *n) {
    Tensor *x = n->in[0], *w = n->in[1], *y = n->out;
    int C = x->shape[x->ndim - 1], R = (int)(x->numel / (size_t)C), nt = n->i[0];
    const float *rstd = n->saved, *gy = y->grad;
    float *part = n->saved2; /* per thread: dw [C] */
    memset(part, 0, (size_t)nt * C * sizeof(float));
    bool gx_on = x->requires_grad, set = gx_on && grad_take_fresh(x);
    int used = 1;
#pragma omp parallel num_threads(nt) if (R > PAR_ROWS)
    {
        int t = omp_get_thread_num(), tn = omp_get_num_threads();
        int r0 = (int)((long)R * t / tn), r1 = (int)((long)R * (t + 1) / tn);
        float *dw = part + (size_t)t * C;
        for (int r = r0; r < r1; r++) {
            const float *xr = x->data + (size_t)r * C, *gr = gy + (size_t)r * C;
            float s = rstd[r], dot = 0.0f;
            /* dx = s * (g w - xhat * mean(g w xhat)) */
            for (int c = 0; c < C; c++) {
                float xh = xr[c] * s;
                dot += gr[c] * w->data[c] * xh;
                dw[c] += gr[c] * xh;
            }
            dot /= (float)C;
            if (!gx_on) continue;
            float *gxr = x->grad + (size_t)r * C;
            for (int c = 0; c < C; c++) {
                float d = s * (gr[c] * w->data[c] - xr[c] * s * dot);
                gxr[c] = set ? d : gxr[c] + d;
            }
        }
        if (t == 0) used = tn;
    }
    if (w->requires_grad) {
        if (grad_take_fresh(w)) par_zero(w->grad, w->numel);
        for (int t = 0; t < used; t++)
            for (int c = 0; c < C; c++) w->grad[c] += part[(size_t)t * C + c];
    }
}

Tensor *op_rmsnorm(Tape *t, Tensor *x, Tensor *w, float eps) {
    char sx[64], sw[64];
    int C = x->shape[x->ndim - 1];
    if (!tensor_is_contiguous(x)) qat_fail("rmsnorm: input %s is not contiguous", tensor_shape_str(x, sx, sizeof sx));
    if (w->ndim != 1 || w->shape[0] != C)
        qat_fail("rmsnorm: shape mismatch: x %s needs weight [%d], got %s", tensor_shape_str(x, sx, sizeof sx), C,
                 tensor_shape_str(w, sw, sizeof sw));
    int R = (int)(x->numel / (size_t)C);
    Tensor *y = tensor_new(t, x->ndim, x->shape);
    bool grad = t->grad_enabled && (x->requires_grad || w->requires_grad);
    int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    float *rstd = arena_alloc(&t->arena, (size_t)R * sizeof(float));
    rmsnorm_rows(x->data, w->data, eps, R, C, y->data, rstd);
    Node *n = tape_record(t, "rmsnorm", rmsnorm_backward, y, 2, (Tensor *[]){x, w});
    if (n) {
        n->overwrite = true;
        n->saved = rstd;
        n->saved2 = grad ? arena_alloc(&t->arena, (size_t)nt * C * sizeof(float)) : NULL;
        n->i[0] = nt;
    }
    return y;
}

/* ---- rotary position embeddings ---- */

void rope_table(float *cs, int pos0, int T, int hs, float theta) {
    int half = hs / 2;
    for (int p = 0; p < T; p++)
        for (int i = 0; i < half; i++) {
            /* pair i turns at theta^(-2i/hs) radians per position */
            double a = (double)(pos0 + p) * pow((double)theta, -2.0 * i / hs);
            cs[(size_t)p * hs + i] = (float)cos(a);
            cs[(size_t)p * hs + half + i] = (float)sin(a);
        }
}

void rope_row(float *x, int n_heads, int hs, const float *cs, bool inverse) {
    int half = hs / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * hs;
        for (int i = 0; i < half; i++) {
            float c = cs[i], s = inverse ? -cs[half + i] : cs[half + i];
            float a = v[2 * i], b = v[2 * i + 1];
            v[2 * i] = a * c - b * s;
            v[2 * i + 1] = a * s + b * c;
        }
    }
}

/* y = rope(x) on the q and k heads (the first n_head + n_kv_head heads of
 * each row), v copied; the backward turns the grads back by -angle. */
static void rope_apply(const float *x, float *y, int B, int T, int C3, int nrot, int hs, const float *cs,
                       bool inverse, bool accumulate) {
#pragma omp parallel for schedule(static) if (B * T > PAR_ROWS)
    for (int r = 0; r < B * T; r++) {
        const float *xr = x + (size_t)r * C3;
        float *yr = y + (size_t)r * C3;
        if (!accumulate) { /* the row, then its q and k heads turned in place */
            memcpy(yr, xr, (size_t)C3 * sizeof(float));
            rope_row(yr, nrot, hs, cs + (size_t)(r % T) * hs, inverse);
            continue;
        }
        float tmp[C3];
        memcpy(tmp, xr, (size_t)C3 * sizeof(float));
        rope_row(tmp, nrot, hs, cs + (size_t)(r % T) * hs, inverse);
        for (int c = 0; c < C3; c++) yr[c] += tmp[c];
    }
}

static void rope_backward(Node *n) {
    Tensor *x = n->in[0], *y = n->out;
    int B = x->shape[0], T = x->shape[1], C3 = x->shape[2];
    bool set = grad_take_fresh(x);
    rope_apply(y->grad, x->grad, B, T, C3, n->i[0], n->i[1], n->saved, true, !set);
}

Tensor *op_rope(Tape *t, Tensor *qkv, int n_head, int n_kv_head, float theta) {
    char sx[64];
    if (qkv->ndim != 3 || !tensor_is_contiguous(qkv))
        qat_fail("rope: expected a contiguous qkv [B,T,C+2*KV], got %s", tensor_shape_str(qkv, sx, sizeof sx));
    int B = qkv->shape[0], T = qkv->shape[1], C3 = qkv->shape[2], units = n_head + 2 * n_kv_head;
    if (n_head < 1 || n_kv_head < 1 || C3 % units || (C3 / units) % 2)
        qat_fail("rope: width %d is not (n_head %d + 2 * n_kv_head %d) heads of an even size", C3, n_head, n_kv_head);
    int hs = C3 / units;
    float *cs = arena_alloc(&t->arena, (size_t)T * hs * sizeof(float));
    rope_table(cs, 0, T, hs, theta);
    Tensor *y = tensor_new(t, 3, qkv->shape);
    rope_apply(qkv->data, y->data, B, T, C3, n_head + n_kv_head, hs, cs, false, false);
    Node *n = tape_record(t, "rope", rope_backward, y, 1, (Tensor *[]){qkv});
    if (n) {
        n->overwrite = true;
        n->saved = cs;
        n->i[0] = n_head + n_kv_head;
        n->i[1] = hs;
    }
    return y;
}

/* ---- SwiGLU's gated product: y = silu(g) * u for x = [g | u] ---- */

/* fast_expf (2 ulp) so that the loops vectorise; libm's expf was a call per element */
QAT_CLONES void swiglu_span(const float *g, const float *u, int n, float *y) {
    for (int j = 0; j < n; j++) y[j] = g[j] / (1.0f + fast_expf(-g[j])) * u[j];
}

void swiglu_rows(const float *x, int R, int H, float *y) {
#pragma omp parallel for schedule(static) if (R > PAR_ROWS && !omp_in_parallel())
    for (int r = 0; r < R; r++) swiglu_span(x + (size_t)r * 2 * H, x + (size_t)r * 2 * H + H, H, y + (size_t)r * H);
}

/* d silu / dg = s (1 + g (1 - s)); separate loops for set and add: a
 * select inside one stops vectorisation */
QAT_CLONES static void swiglu_bwd_row(const float *g, const float *u, const float *gy, float *gg, float *gu, int H,
                                      bool set) {
    if (set)
        for (int j = 0; j < H; j++) {
            float s = 1.0f / (1.0f + fast_expf(-g[j]));
            gg[j] = gy[j] * u[j] * s * (1.0f + g[j] * (1.0f - s));
            gu[j] = gy[j] * g[j] * s;
        }
    else
        for (int j = 0; j < H; j++) {
            float s = 1.0f / (1.0f + fast_expf(-g[j]));
            gg[j] += gy[j] * u[j] * s * (1.0f + g[j] * (1.0f - s));
            gu[j] += gy[j] * g[j] * s;
        }
}

static void swiglu_backward(Node *n) {
    Tensor *x = n->in[0], *y = n->out;
    int H = y->shape[y->ndim - 1], R = (int)(y->numel / (size_t)H);
    bool set = grad_take_fresh(x);
#pragma omp parallel for schedule(static) if (R > PAR_ROWS)
    for (int r = 0; r < R; r++) {
        const float *g = x->data + (size_t)r * 2 * H;
        float *gg = x->grad + (size_t)r * 2 * H;
        swiglu_bwd_row(g, g + H, y->grad + (size_t)r * H, gg, gg + H, H, set);
    }
}

Tensor *op_swiglu(Tape *t, Tensor *x) {
    char sx[64];
    int W = x->shape[x->ndim - 1];
    if (!tensor_is_contiguous(x) || W % 2)
        qat_fail("swiglu: expected a contiguous [..., 2H] input, got %s", tensor_shape_str(x, sx, sizeof sx));
    int shape[TENSOR_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = W / 2;
    Tensor *y = tensor_new(t, x->ndim, shape);
    swiglu_rows(x->data, (int)(y->numel / (size_t)(W / 2)), W / 2, y->data);
    Node *n = tape_record(t, "swiglu", swiglu_backward, y, 1, (Tensor *[]){x});
    if (n) n->overwrite = true;
    return y;
}
