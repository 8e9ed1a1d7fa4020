/* ops_matmul.c: matmul / batched matmul on strided views, and the fused
 * linear layer op (x @ w^T + b), on gemm_run (batches of products inside a
 * parallel loop: OpenBLAS, one thread each). */
#include <cblas.h>
#include <omp.h>
#include <string.h>

#include "autograd.h"
#include "internal.h"

/* A matrix as sgemm sees it: logical (i,j) = trans ? p[j*ld+i] : p[i*ld+j]. */
typedef struct {
    float *p;
    int rows, cols, ld;
    bool trans;
} Mat;

static Mat mat_t(Mat m) {
    Mat r = m;
    r.rows = m.cols;
    r.cols = m.rows;
    r.trans = !m.trans;
    return r;
}

/* C (+)= A @ B; C may itself be stored transposed, then C^T = B^T A^T.
 * With a tape, on gemm_run and the tape's workspace; without, OpenBLAS. */
static void gemm(Tape *t, Mat c, Mat a, Mat b, float beta) {
    if (c.trans) {
        gemm(t, mat_t(c), mat_t(b), mat_t(a), beta);
        return;
    }
    if (t) {
        tape_gemm(t, &(Gemm){.ta = a.trans, .tb = b.trans, .M = c.rows, .N = c.cols, .K = a.cols, .alpha = 1.0f,
                             .beta = beta, .A = a.p, .lda = a.ld, .B = b.p, .ldb = b.ld, .C = c.p, .ldc = c.ld});
        return;
    }
    cblas_sgemm(CblasRowMajor, a.trans ? CblasTrans : CblasNoTrans, b.trans ? CblasTrans : CblasNoTrans, c.rows, c.cols,
                a.cols, 1.0f, a.p, a.ld, b.p, b.ld, beta, c.p, c.ld);
}

/* The last two dims of x (data or grad) as a Mat, or fail if neither is unit-stride. */
static Mat mat_of(const Tensor *x, float *base, const char *op, const char *which) {
    int nd = x->ndim;
    int sr = x->stride[nd - 2], sc = x->stride[nd - 1];
    Mat m = {.p = base, .rows = x->shape[nd - 2], .cols = x->shape[nd - 1]};
    /* size-1 dims carry arbitrary strides, so they match either layout */
    if ((sc == 1 || m.cols == 1) && (m.rows == 1 || sr >= m.cols)) {
        m.trans = false;
        m.ld = m.rows == 1 ? m.cols : sr;
    } else if ((sr == 1 || m.rows == 1) && (m.cols == 1 || sc >= m.rows)) {
        m.trans = true;
        m.ld = m.cols == 1 ? m.rows : sc;
    } else {
        char sb[64];
        qat_fail("%s: input %s %s has no unit stride in its last two dims (call op_contiguous first)", op, which,
                 tensor_shape_str(x, sb, sizeof sb));
    }
    return m;
}

static int batch_of(const Tensor *x) { return x->ndim == 3 ? x->shape[0] : 1; }
static size_t bstride_of(const Tensor *x) { return x->ndim == 3 ? (size_t)x->stride[0] : 0; }

static void matmul_check(const Tensor *a, const Tensor *b) {
    char sa[64], sb[64];
    if (a->ndim < 2 || a->ndim > 3 || b->ndim < 2 || b->ndim > 3)
        qat_fail("matmul: expected 2-d or 3-d inputs, got a %s and b %s", tensor_shape_str(a, sa, sizeof sa),
                 tensor_shape_str(b, sb, sizeof sb));
    int K = a->shape[a->ndim - 1];
    if (b->shape[b->ndim - 2] != K)
        qat_fail("matmul: shape mismatch: a %s and b %s (inner dimensions %d and %d differ)",
                 tensor_shape_str(a, sa, sizeof sa), tensor_shape_str(b, sb, sizeof sb), K, b->shape[b->ndim - 2]);
    if (a->ndim == 3 && b->ndim == 3 && a->shape[0] != b->shape[0])
        qat_fail("matmul: shape mismatch: a %s and b %s (batch sizes differ)", tensor_shape_str(a, sa, sizeof sa),
                 tensor_shape_str(b, sb, sizeof sb));
}

/* out[bi] (+)= A[bi] @ B[bi] over the batch; parallel over the batch with
 * single-threaded sgemm inside (OpenBLAS runs serially inside our regions). */
static void batched(Tape *t, Mat c0, size_t cs, Mat a0, size_t as, Mat b0, size_t bs, int nb, float beta) {
    if (nb == 1) {
        gemm(t, c0, a0, b0, beta);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int i = 0; i < nb; i++) {
        Mat c = c0, a = a0, b = b0;
        c.p += (size_t)i * cs;
        a.p += (size_t)i * as;
        b.p += (size_t)i * bs;
        gemm(NULL, c, a, b, beta);
    }
}

static void matmul_backward(Node *n) {
    Tensor *a = n->in[0], *b = n->in[1], *c = n->out;
    int nb = batch_of(c);
    Mat dc = mat_of(c, c->grad, "matmul", "out");
    size_t cs = bstride_of(c);
    /* a fresh (uninitialised) grad is set by the first product, beta = 0 */
    if (a->requires_grad) { /* dA = dC @ B^T, summed over the batch when A is shared */
        float beta = grad_take_fresh(a) ? 0.0f : 1.0f;
        Mat da = mat_of(a, a->grad, "matmul", "a");
        Mat bt = mat_t(mat_of(b, b->data, "matmul", "b"));
        if (a->ndim == 3 || nb == 1)
            batched(n->tape, da, bstride_of(a), dc, cs, bt, bstride_of(b), nb, beta);
        else
            for (int i = 0; i < nb; i++) {
                Mat dci = dc, bti = bt;
                dci.p += (size_t)i * cs;
                bti.p += (size_t)i * bstride_of(b);
                gemm(n->tape, da, dci, bti, i ? 1.0f : beta);
            }
    }
    if (b->requires_grad) { /* dB = A^T @ dC */
        float beta = grad_take_fresh(b) ? 0.0f : 1.0f;
        Mat db = mat_of(b, b->grad, "matmul", "b");
        Mat at = mat_t(mat_of(a, a->data, "matmul", "a"));
        if (b->ndim == 3 || nb == 1)
            batched(n->tape, db, bstride_of(b), at, bstride_of(a), dc, cs, nb, beta);
        else
            for (int i = 0; i < nb; i++) {
                Mat dci = dc, ati = at;
                dci.p += (size_t)i * cs;
                ati.p += (size_t)i * bstride_of(a);
                gemm(n->tape, db, ati, dci, i ? 1.0f : beta);
            }
    }
}

Tensor *op_matmul(Tape *t, Tensor *a, Tensor *b) {
    matmul_check(a, b);
    int M = a->shape[a->ndim - 2], N = b->shape[b->ndim - 1];
    int nb = a->ndim == 3 ? a->shape[0] : b->ndim == 3 ? b->shape[0] : 1;
    Tensor *c = nb > 1 || a->ndim == 3 || b->ndim == 3 ? tensor_new(t, 3, (int[]){nb, M, N})
                                                      : tensor_new(t, 2, (int[]){M, N});
    Mat ma = mat_of(a, a->data, "matmul", "a"), mb = mat_of(b, b->data, "matmul", "b");
    batched(t, mat_of(c, c->data, "matmul", "out"), c->ndim == 3 ? (size_t)c->stride[0] : 0, ma, bstride_of(a), mb,
            bstride_of(b), nb, 0.0f);
    Node *n = tape_record(t, "matmul", matmul_backward, c, 2, (Tensor *[]){a, b});
    if (n) n->overwrite = true;
    return c;
}

/* ---- linear: x [R,K] @ w[N,K]^T + bias ---- */

/* A linear layer's parameter grads from its output grad dy [R,N] and input
 * x [R,K]: dw (+)= dy^T x, and the bias grad, summed inside that product
 * while dy is in cache (or alone when w is frozen). */
static void linear_param_grads(Tape *t, const float *dy, const float *x, int R, Tensor *w, Tensor *bias) {
    int N = w->shape[0], K = w->shape[1];
    bool db = bias && bias->requires_grad;
    if (db && grad_take_fresh(bias)) par_zero(bias->grad, bias->numel);
    if (w->requires_grad)
        tape_gemm(t, &(Gemm){.ta = true, .M = N, .N = K, .K = R, .alpha = 1.0f,
                             .beta = grad_take_fresh(w) ? 0.0f : 1.0f, .A = dy, .lda = N, .B = x, .ldb = K,
                             .C = w->grad, .ldc = K, .asum = db ? bias->grad : NULL});
    else if (db)
        colsum_add(bias->grad, dy, NULL, (size_t)R, (size_t)N);
}

/* x->grad (+)= dy [R,N] @ w [N,K] */
static void linear_input_grad(Tape *t, const float *dy, int R, const Tensor *w, Tensor *x) {
    int N = w->shape[0], K = w->shape[1];
    tape_gemm(t, &(Gemm){.M = R, .N = K, .K = N, .alpha = 1.0f, .beta = grad_take_fresh(x) ? 0.0f : 1.0f, .A = dy,
                         .lda = N, .B = w->data, .ldb = K, .C = x->grad, .ldc = K});
}

static void linear_backward(Node *n) {
    Tensor *x = n->in[0], *w = n->in[1], *bias = n->in[2], *y = n->out;
    int R = (int)(x->numel / (size_t)w->shape[1]);
    if (x->requires_grad) linear_input_grad(n->tape, y->grad, R, w, x);
    linear_param_grads(n->tape, y->grad, x->data, R, w, bias);
}

Tensor *op_linear(Tape *t, Tensor *x, Tensor *w, Tensor *bias) {
    char sx[64], sw[64];
    if (w->ndim != 2 || !tensor_is_contiguous(w))
        qat_fail("linear: weight must be a contiguous 2-d tensor, got %s", tensor_shape_str(w, sw, sizeof sw));
    int N = w->shape[0], K = w->shape[1];
    if (x->shape[x->ndim - 1] != K)
        qat_fail("linear: shape mismatch: x %s and weight %s (in_features %d and %d differ)",
                 tensor_shape_str(x, sx, sizeof sx), tensor_shape_str(w, sw, sizeof sw), x->shape[x->ndim - 1], K);
    if (!tensor_is_contiguous(x))
        qat_fail("linear: input %s is not contiguous (call op_contiguous first)", tensor_shape_str(x, sx, sizeof sx));
    if (bias && (bias->ndim != 1 || bias->shape[0] != N))
        qat_fail("linear: shape mismatch: bias %s for weight %s (expected [%d])", tensor_shape_str(bias, sx, sizeof sx),
                 tensor_shape_str(w, sw, sizeof sw), N);
    int shape[TENSOR_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = N;
    Tensor *y = tensor_new(t, x->ndim, shape);
    int R = (int)(x->numel / (size_t)K);
    tape_gemm(t, &(Gemm){.tb = true, .M = R, .N = N, .K = K, .alpha = 1.0f, .A = x->data, .lda = K, .B = w->data,
                         .ldb = K, .C = y->data, .ldc = N, .bias = bias ? bias->data : NULL});
    Node *n = tape_record(t, "linear", linear_backward, y, 3, (Tensor *[]){x, w, bias});
    if (n) n->overwrite = true;
    return y;
}

/* ---- the fused MLP: gelu(x W1^T + b1) W2^T + b2 ----
 * The GELU runs in the first product's epilogue, which keeps a = gelu(h) and,
 * when training, gelu'(h) from the same tanh (the pre-activation h itself is
 * not needed again); backward multiplies by gelu'(h) in the epilogue of
 * dA = dY W2, so dA is never stored. The same values as linear, gelu,
 * linear, with half the tanh evaluations and two fewer passes over [R, H]. */
static void mlp_backward(Node *n) {
    Tensor *x = n->in[0], *w1 = n->in[1], *b1 = n->in[2], *w2 = n->in[3], *b2 = n->in[4], *y = n->out;
    int H = w1->shape[0], K = w1->shape[1], N = w2->shape[0];
    int R = (int)(x->numel / (size_t)K);
    const float *dg = n->saved, *a = n->saved2; /* gelu'(h), gelu(h) */
    Tape *t = n->tape;
    linear_param_grads(t, y->grad, a, R, w2, b2);
    if (!x->requires_grad && !w1->requires_grad && !(b1 && b1->requires_grad)) return;
    /* dh = (dy W2) * gelu'(h) */
    float *dh = arena_alloc(&t->arena, (size_t)R * H * sizeof(float));
    tape_gemm(t, &(Gemm){.M = R, .N = H, .K = N, .alpha = 1.0f, .A = y->grad, .lda = N, .B = w2->data, .ldb = H,
                         .C = dh, .ldc = H, .epi = GEMM_EPI_MUL, .aux = (float *)dg});
    if (x->requires_grad) linear_input_grad(t, dh, R, w1, x);
    linear_param_grads(t, dh, x->data, R, w1, b1);
}

Tensor *op_mlp(Tape *t, Tensor *x, Tensor *w1, Tensor *b1, Tensor *w2, Tensor *b2) {
    char sx[64], sw[64];
    if (w1->ndim != 2 || w2->ndim != 2 || !tensor_is_contiguous(w1) || !tensor_is_contiguous(w2))
        qat_fail("mlp: weights must be contiguous 2-d tensors, got %s and %s", tensor_shape_str(w1, sx, sizeof sx),
                 tensor_shape_str(w2, sw, sizeof sw));
    int H = w1->shape[0], K = w1->shape[1], N = w2->shape[0];
    if (x->shape[x->ndim - 1] != K || !tensor_is_contiguous(x))
        qat_fail("mlp: input %s does not match weight %s (or is not contiguous)", tensor_shape_str(x, sx, sizeof sx),
                 tensor_shape_str(w1, sw, sizeof sw));
    if (w2->shape[1] != H)
        qat_fail("mlp: shape mismatch: second weight %s for hidden width %d", tensor_shape_str(w2, sw, sizeof sw), H);
    if ((b1 && (b1->ndim != 1 || b1->shape[0] != H)) || (b2 && (b2->ndim != 1 || b2->shape[0] != N)))
        qat_fail("mlp: biases must be [%d] and [%d]", H, N);
    int R = (int)(x->numel / (size_t)K);
    int shape[TENSOR_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = N;
    Tensor *y = tensor_new(t, x->ndim, shape);
    bool grad = t->grad_enabled && (x->requires_grad || w1->requires_grad || (b1 && b1->requires_grad) ||
                                    w2->requires_grad || (b2 && b2->requires_grad));
    float *h = arena_alloc(&t->arena, (size_t)R * H * sizeof(float)); /* becomes gelu'(h) when training */
    float *a = arena_alloc(&t->arena, (size_t)R * H * sizeof(float));
    tape_gemm(t, &(Gemm){.tb = true, .M = R, .N = H, .K = K, .alpha = 1.0f, .A = x->data, .lda = K, .B = w1->data,
                         .ldb = K, .C = h, .ldc = H, .bias = b1 ? b1->data : NULL,
                         .epi = grad ? GEMM_EPI_GELU_D : GEMM_EPI_GELU, .aux = a});
    tape_gemm(t, &(Gemm){.tb = true, .M = R, .N = N, .K = H, .alpha = 1.0f, .A = a, .lda = H, .B = w2->data,
                         .ldb = H, .C = y->data, .ldc = N, .bias = b2 ? b2->data : NULL});
    Node *n = tape_record(t, "mlp", mlp_backward, y, 5, (Tensor *[]){x, w1, b1, w2, b2});
    if (n) {
        n->overwrite = true;
        n->saved = h;
        n->saved2 = a;
    }
    return y;
}
