/* ops_attention.c: fused causal multi-head self-attention on a packed qkv
 * tensor. Per (batch, head): S = Q K^T / sqrt(hs), P = causal softmax(S),
 * O = P V, each product an sgemm on strided slices of qkv (no copies).
 * Rows go in blocks of ATT_RB: block [r0,r1) only needs keys [0,r1), so the
 * products skip most of the masked upper triangle (62.5% of the full work at
 * T = 128). The (batch, head) pairs run in parallel with single-threaded sgemm
 * inside. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "autograd.h"
#include "fastmath.h"

#define ATT_RB 32

QAT_CLONES float softmax_exp(float *r, int n) {
    float mx = r[0];
    for (int j = 1; j < n; j++) mx = r[j] > mx ? r[j] : mx;
    for (int j = 0; j < n; j++) r[j] = fast_expf(r[j] - mx);
    /* eight running sums, so the adds are not one serial chain */
    float a[8] = {0};
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++) a[k] += r[j + k];
    float s = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    for (; j < n; j++) s += r[j];
    return s;
}

static void attention_backward(Node *n) {
    Tensor *qkv = n->in[0], *out = n->out;
    int B = qkv->shape[0], T = qkv->shape[1], C3 = qkv->shape[2], C = C3 / 3;
    int nh = n->i[0], hs = C / nh;
    float scale = 1.0f / sqrtf((float)hs);
    const float *P = n->saved;  /* [B,nh,T,T] probabilities (row i valid up to its block's end) */
    float *scratch = n->saved2; /* one [T,T] block per thread */
    const float *x = qkv->data;
    float *gx = qkv->grad;
    const float *go = out->grad;
    /* a fresh grad is set by the first product that touches it, beta = 0 */
    float beta = grad_take_fresh(qkv) ? 0.0f : 1.0f;
    int nblk = (T + ATT_RB - 1) / ATT_RB;
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < B * nh; bh++) {
        int b = bh / nh, h = bh % nh;
        const float *q = x + (size_t)b * T * C3 + h * hs, *k = q + C, *v = q + 2 * C;
        float *gq = gx + (size_t)b * T * C3 + h * hs, *gk = gq + C, *gv = gq + 2 * C;
        const float *gob = go + (size_t)b * T * C + h * hs;
        const float *p = P + (size_t)bh * T * T;
        float *dp = scratch + (size_t)omp_get_thread_num() * T * T;
        /* last block first: it reaches every key, so it sets dK and dV rows 0..T */
        for (int blk = nblk - 1; blk >= 0; blk--) {
            int r0 = blk * ATT_RB, r1 = r0 + ATT_RB < T ? r0 + ATT_RB : T, m = r1 - r0;
            float kbeta = blk == nblk - 1 ? beta : 1.0f;
            const float *pr = p + (size_t)r0 * T;
            float *dr = dp + (size_t)r0 * T;
            /* dP = dO V^T ; dV += P^T dO */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, r1, hs, 1.0f, gob + (size_t)r0 * C, C, v, C3, 0.0f,
                        dr, T);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1, hs, m, 1.0f, pr, T, gob + (size_t)r0 * C, C, kbeta,
                        gv, C3);
            /* dS = P * (dP - rowsum(dP * P)), times the score scale */
            for (int i = r0; i < r1; i++) {
                const float *pi = p + (size_t)i * T;
                float *di = dp + (size_t)i * T;
                float dot = 0.0f;
                for (int j = 0; j <= i; j++) dot += pi[j] * di[j];
                for (int j = 0; j <= i; j++) di[j] = pi[j] * (di[j] - dot) * scale;
                for (int j = i + 1; j < r1; j++) di[j] = 0.0f;
            }
            /* dQ = dS K (rows of this block only) ; dK += dS^T Q */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, hs, r1, 1.0f, dr, T, k, C3, beta,
                        gq + (size_t)r0 * C3, C3);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1, hs, m, 1.0f, dr, T, q + (size_t)r0 * C3, C3, kbeta,
                        gk, C3);
        }
    }
}

Tensor *op_attention(Tape *t, Tensor *qkv, int n_head) {
    char sx[64];
    if (qkv->ndim != 3 || qkv->shape[2] % 3 != 0 || !tensor_is_contiguous(qkv))
        qat_fail("attention: expected a contiguous qkv [B,T,3C], got %s", tensor_shape_str(qkv, sx, sizeof sx));
    int B = qkv->shape[0], T = qkv->shape[1], C3 = qkv->shape[2], C = C3 / 3;
    if (n_head < 1 || C % n_head != 0)
        qat_fail("attention: width %d is not divisible by n_head %d", C, n_head);
    int hs = C / n_head;
    float scale = 1.0f / sqrtf((float)hs);
    Tensor *out = tensor_new(t, 3, (int[]){B, T, C});
    bool grad = t->grad_enabled && qkv->requires_grad;
    int nthr = omp_get_max_threads();
    /* probabilities are kept for backward; without grad one block per thread suffices */
    size_t pblocks = grad ? (size_t)B * n_head : (size_t)nthr;
    float *P = arena_alloc(&t->arena, pblocks * T * T * sizeof(float));
    const float *x = qkv->data;
    float *o = out->data;
    int nblk = (T + ATT_RB - 1) / ATT_RB;
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < B * n_head; bh++) {
        int b = bh / n_head, h = bh % n_head;
        const float *q = x + (size_t)b * T * C3 + h * hs, *k = q + C, *v = q + 2 * C;
        float *p = P + (grad ? (size_t)bh : (size_t)omp_get_thread_num()) * T * T;
        for (int blk = 0; blk < nblk; blk++) {
            int r0 = blk * ATT_RB, r1 = r0 + ATT_RB < T ? r0 + ATT_RB : T, m = r1 - r0;
            float *pr = p + (size_t)r0 * T;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, r1, hs, scale, q + (size_t)r0 * C3, C3, k, C3, 0.0f,
                        pr, T);
            for (int i = r0; i < r1; i++) {
                float *r = p + (size_t)i * T;
                float inv = 1.0f / softmax_exp(r, i + 1);
                for (int j = 0; j <= i; j++) r[j] *= inv;
                for (int j = i + 1; j < r1; j++) r[j] = 0.0f;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, hs, r1, 1.0f, pr, T, v, C3, 0.0f,
                        o + ((size_t)b * T + r0) * C + h * hs, C);
        }
    }
    Node *n = tape_record(t, "attention", attention_backward, out, 1, (Tensor *[]){qkv});
    if (n) {
        n->overwrite = true;
        n->i[0] = n_head;
        n->saved = P;
        n->saved2 = arena_alloc(&t->arena, (size_t)nthr * T * T * sizeof(float));
    }
    return out;
}
