/* ops_pointwise.c: elementwise ops (add, mul with bias-style broadcasting,
 * scale, GELU) and the full reductions sum and mean. */
#include <math.h>
#include <pthread.h>
#include <omp.h>
#include <string.h>

#include "autograd.h"
#include "fastmath.h"
#include "internal.h"
#include "quant/blocks.h"

/* Elementwise loops below this size are not worth waking the thread team. */
#define PAR_MIN 32768

static void memcpy_par(float *dst, const float *src, size_t n) {
#pragma omp parallel if (n > PAR_MIN)
    {
        size_t nt = (size_t)omp_get_num_threads(), id = (size_t)omp_get_thread_num();
        size_t lo = n * id / nt, hi = n * (id + 1) / nt;
        memcpy(dst + lo, src + lo, (hi - lo) * sizeof(float));
    }
}

/* b broadcasts over a when b's shape equals the trailing dims of a's shape. */
static size_t broadcast_inner(const Tensor *a, const Tensor *b, const char *op) {
    char sa[64], sb[64];
    if (!tensor_is_contiguous(a) || !tensor_is_contiguous(b))
        qat_fail("%s: inputs %s and %s must be contiguous (call op_contiguous first)", op,
                 tensor_shape_str(a, sa, sizeof sa), tensor_shape_str(b, sb, sizeof sb));
    bool ok = b->ndim <= a->ndim;
    for (int d = 0; ok && d < b->ndim; d++) ok = b->shape[b->ndim - 1 - d] == a->shape[a->ndim - 1 - d];
    if (!ok)
        qat_fail("%s: shape mismatch: a %s and b %s (b must equal a or its trailing dims)", op,
                 tensor_shape_str(a, sa, sizeof sa), tensor_shape_str(b, sb, sizeof sb));
    return b->numel;
}

QAT_CLONES static void colsum_rows(float *acc, const float *src, const float *mul, size_t R, size_t N, size_t lo,
                                    size_t hi) {
    for (size_t r = 0; r < R; r++) {
        const float *s = src + r * N, *m = mul ? mul + r * N : NULL;
        if (m)
            for (size_t j = lo; j < hi; j++) acc[j] += s[j] * m[j];
        else
            for (size_t j = lo; j < hi; j++) acc[j] += s[j];
    }
}

void colsum_add(float *acc, const float *src, const float *mul, size_t R, size_t N) {
#pragma omp parallel if (R * N > PAR_MIN && N >= 32)
    {
        /* column ranges rounded to 16 floats so threads never share a cache line */
        size_t nt = (size_t)omp_get_num_threads(), id = (size_t)omp_get_thread_num();
        size_t blocks = (N + 15) / 16;
        size_t lo = blocks * id / nt * 16, hi = blocks * (id + 1) / nt * 16;
        if (hi > N) hi = N;
        if (lo < hi) colsum_rows(acc, src, mul, R, N, lo, hi);
    }
}

/* This thread's contiguous share of [0,n), so each runs a whole vector kernel. */
static void thread_range(size_t n, size_t *lo, size_t *hi) {
    size_t nt = (size_t)omp_get_num_threads(), id = (size_t)omp_get_thread_num();
    *lo = n * id / nt;
    *hi = n * (id + 1) / nt;
}

enum { BC_ADD, BC_MUL, BC_MUL_ACC };

QAT_CLONES static void bcast_kernel(float *y, const float *x, const float *b, size_t n, int op) {
    if (op == BC_ADD)
        for (size_t k = 0; k < n; k++) y[k] = x[k] + b[k];
    else if (op == BC_MUL)
        for (size_t k = 0; k < n; k++) y[k] = x[k] * b[k];
    else
        for (size_t k = 0; k < n; k++) y[k] += x[k] * b[k];
}

/* y[i] = x[i] + b[i % inner], x[i] * b[i % inner], or y[i] += x[i] * b[i % inner]
 * over N elements, walked in row segments: a 64-bit modulo per element cost
 * several times the memory traffic of the residual adds. */
static void bcast_apply(float *y, const float *x, const float *b, size_t N, size_t inner, int op) {
#pragma omp parallel if (N > PAR_MIN)
    {
        size_t lo, hi;
        thread_range(N, &lo, &hi);
        for (size_t i = lo; i < hi;) {
            size_t j = i % inner, len = inner - j < hi - i ? inner - j : hi - i;
            bcast_kernel(y + i, x + i, b + j, len, op);
            i += len;
        }
    }
}

static void add_backward(Node *n) {
    Tensor *a = n->in[0], *b = n->in[1], *y = n->out;
    size_t N = y->numel, inner = b->numel;
    if (a->requires_grad) {
        if (a->grad_fresh && b != a && b->base != a) {
            /* da = dy: hand over dy's buffer. y's grad is dead once this node has
             * run, so a chain of residual adds shares one buffer and no copy. */
            a->grad = y->grad;
            a->grad_fresh = false;
        } else {
            float *ga = a->grad;
            const float *gy = y->grad;
#pragma omp parallel for schedule(static) if (N > PAR_MIN)
            for (size_t i = 0; i < N; i++) ga[i] += gy[i];
        }
    }
    if (b->requires_grad) {
        bool fresh = grad_take_fresh(b);
        if (fresh && inner == N) {
            memcpy_par(b->grad, y->grad, N);
        } else {
            if (fresh) par_zero(b->grad, inner);
            colsum_add(b->grad, y->grad, NULL, N / inner, inner);
        }
    }
}

Tensor *op_add(Tape *t, Tensor *a, Tensor *b) {
    size_t inner = broadcast_inner(a, b, "add");
    Tensor *y = tensor_new(t, a->ndim, a->shape);
    size_t N = a->numel;
    const float *pa = a->data, *pb = b->data;
    float *py = y->data;
    bcast_apply(py, pa, pb, N, inner, BC_ADD);
    Node *n = tape_record(t, "add", add_backward, y, 2, (Tensor *[]){a, b});
    if (n) n->overwrite = true;
    return y;
}

static void mul_backward(Node *n) {
    Tensor *a = n->in[0], *b = n->in[1], *y = n->out;
    size_t N = y->numel, inner = b->numel;
    if (a->requires_grad) {
        bcast_apply(a->grad, y->grad, b->data, N, inner, BC_MUL_ACC);
    }
    if (b->requires_grad) colsum_add(b->grad, y->grad, a->data, N / inner, inner);
}

Tensor *op_mul(Tape *t, Tensor *a, Tensor *b) {
    size_t inner = broadcast_inner(a, b, "mul");
    Tensor *y = tensor_new(t, a->ndim, a->shape);
    size_t N = a->numel;
    const float *pa = a->data, *pb = b->data;
    float *py = y->data;
    bcast_apply(py, pa, pb, N, inner, BC_MUL);
    tape_record(t, "mul", mul_backward, y, 2, (Tensor *[]){a, b});
    return y;
}

static void scale_backward(Node *n) {
    Tensor *a = n->in[0], *y = n->out;
    float s = n->f[0];
    for (size_t i = 0; i < y->numel; i++) a->grad[i] += s * y->grad[i];
}

Tensor *op_scale(Tape *t, Tensor *a, float s) {
    char sa[64];
    if (!tensor_is_contiguous(a)) qat_fail("scale: input %s is not contiguous", tensor_shape_str(a, sa, sizeof sa));
    Tensor *y = tensor_new(t, a->ndim, a->shape);
    for (size_t i = 0; i < a->numel; i++) y->data[i] = s * a->data[i];
    Node *n = tape_record(t, "scale", scale_backward, y, 1, (Tensor *[]){a});
    if (n) n->f[0] = s;
    return y;
}

/* GELU (fast_gelu, tanh form) */
QAT_CLONES static void gelu_fwd_kernel(float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = fast_gelu(x[i]);
}

/* Two loops rather than a select inside one: the select stops vectorisation. */
QAT_CLONES static void gelu_bwd_kernel(float *gx, const float *x, const float *gy, size_t n, bool set) {
    if (set)
        for (size_t i = 0; i < n; i++) gx[i] = fast_gelu_grad(x[i]) * gy[i];
    else
        for (size_t i = 0; i < n; i++) gx[i] += fast_gelu_grad(x[i]) * gy[i];
}


static void gelu_backward(Node *n) {
    Tensor *x = n->in[0], *y = n->out;
    size_t N = x->numel;
    bool set = grad_take_fresh(x);
#pragma omp parallel if (N > PAR_MIN / 4)
    {
        size_t lo, hi;
        thread_range(N, &lo, &hi);
        gelu_bwd_kernel(x->grad + lo, x->data + lo, y->grad + lo, hi - lo, set);
    }
}

/* kernel over n values, shared out over a team when n is large */
static void rows_run(void (*kernel)(float *, const float *, size_t), const float *x, size_t n, float *y) {
    if (n <= PAR_MIN / 4) { /* no team for small n (inference runs it inside its own region) */
        kernel(y, x, n);
        return;
    }
#pragma omp parallel
    {
        size_t lo, hi;
        thread_range(n, &lo, &hi);
        kernel(y + lo, x + lo, hi - lo);
    }
}

void gelu_rows(const float *x, size_t n, float *y) { rows_run(gelu_fwd_kernel, x, n, y); }

/* llama.cpp's CPU GELU (ggml's GGML_GELU_FP16 table): x rounded to half
 * precision, tanh-form GELU in float, the result rounded to half again;
 * 0 below -10 and x above 10 (facts from ggml-cpu's vec.h, written anew).
 * As in ggml, the 65,536 results are computed once into a table (of floats
 * here) indexed by the half's bits: per value, tanhf was most of a
 * q8_0-activation prompt's time. */
static float g_gelu_half[65536];
static pthread_once_t g_gelu_half_once = PTHREAD_ONCE_INIT;
static void gelu_half_table_build(void) {
    for (uint32_t b = 0; b < 65536u; b++) {
        float h = fp16_to_f32((uint16_t)b);
        g_gelu_half[b] = fp16_round(0.5f * h * (1.0f + tanhf(0.79788456080286535588f * h * (1.0f + 0.044715f * h * h))));
    }
}
static void gelu_half_kernel(float *y, const float *x, size_t n) {
    pthread_once(&g_gelu_half_once, gelu_half_table_build);
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        y[i] = v <= -10.0f ? 0.0f : v >= 10.0f ? v : g_gelu_half[fp16_from_f32(v)];
    }
}

void gelu_rows_half(const float *x, size_t n, float *y) { rows_run(gelu_half_kernel, x, n, y); }

static Tensor *gelu_op(Tape *t, Tensor *x, bool half) {
    char sa[64];
    if (!tensor_is_contiguous(x)) qat_fail("gelu: input %s is not contiguous", tensor_shape_str(x, sa, sizeof sa));
    Tensor *y = tensor_new(t, x->ndim, x->shape);
    if (half) gelu_rows_half(x->data, x->numel, y->data);
    else gelu_rows(x->data, x->numel, y->data);
    Node *n = tape_record(t, "gelu", gelu_backward, y, 1, (Tensor *[]){x});
    if (n) n->overwrite = true;
    return y;
}

Tensor *op_gelu(Tape *t, Tensor *x) { return gelu_op(t, x, false); }
Tensor *op_gelu_half(Tape *t, Tensor *x) { return gelu_op(t, x, true); }

/* ---- reductions to a scalar ---- */

static void sum_backward(Node *n) {
    Tensor *x = n->in[0];
    float g = n->out->grad[0] * n->f[0];
    for (size_t i = 0; i < x->numel; i++) x->grad[tensor_offset_of(x, i)] += g;
}

static Tensor *reduce_all(Tape *t, Tensor *x, float mul, const char *op) {
    double s = 0.0; /* double: the sum of many floats would otherwise drift */
    for (size_t i = 0; i < x->numel; i++) s += x->data[tensor_offset_of(x, i)];
    Tensor *y = tensor_new(t, 1, (int[]){1});
    y->data[0] = (float)(s * mul);
    Node *n = tape_record(t, op, sum_backward, y, 1, (Tensor *[]){x});
    if (n) n->f[0] = mul;
    return y;
}

Tensor *op_sum(Tape *t, Tensor *x) { return reduce_all(t, x, 1.0f, "sum"); }
Tensor *op_mean(Tape *t, Tensor *x) { return reduce_all(t, x, 1.0f / (float)x->numel, "mean"); }
