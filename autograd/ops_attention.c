/* ops_attention.c: fused causal multi-head (or grouped-query) self-attention
 * on a packed qkv tensor. Per (batch, head): S = Q K^T / sqrt(hs), P = causal softmax(S),
 * O = P V; the (batch, head) pairs run in parallel. Head sizes of 16..64
 * take a register-blocked path (four query rows at a time, only the keys
 * they see); others run each product as an sgemm on strided slices of qkv,
 * rows in blocks of ATT_RB (block [r0,r1) only needs keys [0,r1), 62.5% of
 * the full work at T = 128). The blocked path measured 4-9% faster per
 * training step on the reference model: the products of one head are too
 * small for sgemm's packing and buffer locking to pay off. */
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

/* ---- register-blocked path for head sizes of 16, 32, 48 or 64 ----
 * Four query rows at a time over 16 keys or 16 head dims per vector (GCC
 * vector types: one AVX-512 register in the avx512f clone): the tiny
 * products of one (batch, head) are too small for sgemm's packing and
 * buffer locking to pay off. K^T and V^T of the head are held transposed
 * (rows of TP = T rounded up to 16) so score rows are whole vectors. */
typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4), may_alias)); /* unaligned access */
#define v16_load(p) (*(const v16u *)(p))
#define v16_store(p, v) (*(v16u *)(p) = (v))
#define ATT_R 4

/* dst [hs, TP] = the head's rows src[t * ld + d] transposed, zero past T */
static void att_transpose(float *dst, const float *src, int T, int TP, int hs, int ld) {
    for (int d = 0; d < hs; d++) {
        float *r = dst + (size_t)d * TP;
        for (int t = 0; t < T; t++) r[t] = src[(size_t)t * ld + d];
        for (int t = T; t < TP; t++) r[t] = 0.0f;
    }
}

/* s[r][0..n) = scale * q_r . kt[:, j] for R rows of q (stride ldq); s rows of TP */
static inline __attribute__((always_inline)) void att_rows_scores(float *s, const float *q, int ldq, int R,
                                                                  const float *kt, int TP, int n, int hs, float scale) {
    for (int j0 = 0; j0 < n; j0 += 16) {
        v16 acc[ATT_R] = {{0}};
        for (int d = 0; d < hs; d++) {
            v16 kv = v16_load(kt + (size_t)d * TP + j0);
            for (int r = 0; r < ATT_R; r++) acc[r] += kv * (q[(size_t)(r < R ? r : 0) * ldq + d] * scale);
        }
        for (int r = 0; r < R; r++) v16_store(s + (size_t)r * TP + j0, acc[r]);
    }
}

/* out[r][0..hs) = sum_j p[r][j] v[j][0..hs) over j < n (p rows of TP, zero
 * where a row has no key); H16 = hs / 16 */
static inline __attribute__((always_inline)) void att_rows_mix(float *out, int ldo, int R, const float *p, int TP,
                                                               const float *v, int ldv, int n, const int H16) {
    v16 acc[ATT_R][4];
    for (int r = 0; r < ATT_R; r++)
        for (int c = 0; c < H16; c++) acc[r][c] = (v16){0};
    for (int j = 0; j < n; j++) {
        v16 vv[4];
        for (int c = 0; c < H16; c++) vv[c] = v16_load(v + (size_t)j * ldv + 16 * c);
        for (int r = 0; r < ATT_R; r++) {
            float pj = p[(size_t)r * TP + j];
            for (int c = 0; c < H16; c++) acc[r][c] += vv[c] * pj;
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < H16; c++) v16_store(out + (size_t)r * ldo + 16 * c, acc[r][c]);
}

/* acc rows j < n of dst [., hs] += sum_r p[r][j] g_r (g rows of stride ldg) */
static inline __attribute__((always_inline)) void att_rows_spread(float *dst, const float *p, int TP, const float *g,
                                                                  int ldg, int R, int n, const int H16) {
    v16 gv[ATT_R][4];
    for (int r = 0; r < ATT_R; r++)
        for (int c = 0; c < H16; c++) gv[r][c] = r < R ? (v16)v16_load(g + (size_t)r * ldg + 16 * c) : (v16){0};
    for (int j = 0; j < n; j++) {
        float *dj = dst + (size_t)j * 16 * H16;
        for (int c = 0; c < H16; c++) {
            v16 a = v16_load(dj + 16 * c);
            for (int r = 0; r < ATT_R; r++) a += gv[r][c] * p[(size_t)r * TP + j];
            v16_store(dj + 16 * c, a);
        }
    }
}


/* floats of per-thread scratch the fast path needs */
static size_t att_fast_scratch(int T, int hs) {
    size_t TP = (size_t)(T + 15) & ~(size_t)15;
    return (size_t)hs * TP + 2 * ATT_R * TP + 2 * (size_t)T * hs + ATT_R * (size_t)hs;
}

static bool att_fast(int hs) { return hs % 16 == 0 && hs <= 64; }

/* One (batch, head) forward: P rows (row i valid for keys 0..i) and O. */
static inline __attribute__((always_inline)) void att_fwd_head_v(const float *q, const float *k, const float *v, float *o,
                                                                 int ldo, float *p, int T, int C3, int hs, float scale,
                                                                 float *scratch, const int H16) {
    int TP = (T + 15) & ~15;
    float *kt = scratch, *sb = kt + (size_t)hs * TP;
    att_transpose(kt, k, T, TP, hs, C3);
    for (int i0 = 0; i0 < T; i0 += ATT_R) {
        int R = T - i0 < ATT_R ? T - i0 : ATT_R, n = i0 + R;
        att_rows_scores(sb, q + (size_t)i0 * C3, C3, R, kt, TP, n, hs, scale);
        for (int r = 0; r < ATT_R; r++) {
            float *row = sb + (size_t)r * TP;
            int len = r < R ? i0 + r + 1 : 0;
            if (len) {
                float inv = 1.0f / softmax_exp(row, len);
                for (int j = 0; j < len; j++) row[j] *= inv;
                memcpy(p + (size_t)(i0 + r) * T, row, (size_t)len * sizeof(float));
            }
            for (int j = len; j < n; j++) row[j] = 0.0f;
        }
        att_rows_mix(o + (size_t)i0 * ldo, ldo, R, sb, TP, v, C3, n, H16);
    }
}

QAT_CLONES static void att_fwd_head(const float *q, const float *k, const float *v, float *o, int ldo, float *p, int T,
                                    int C3, int hs, float scale, float *scratch) {
    switch (hs / 16) {
    case 1: att_fwd_head_v(q, k, v, o, ldo, p, T, C3, hs, scale, scratch, 1); break;
    case 2: att_fwd_head_v(q, k, v, o, ldo, p, T, C3, hs, scale, scratch, 2); break;
    case 3: att_fwd_head_v(q, k, v, o, ldo, p, T, C3, hs, scale, scratch, 3); break;
    default: att_fwd_head_v(q, k, v, o, ldo, p, T, C3, hs, scale, scratch, 4); break;
    }
}

/* One (batch, head) backward: dQ, dK, dV set (fresh) or added. */
static inline __attribute__((always_inline)) void att_bwd_head_v(const float *q, const float *k, const float *v,
                                                                 const float *go, int ldgo, const float *p, float *gq,
                                                                 float *gk, float *gv, bool fresh, bool fresh_kv, int T,
                                                                 int C3, int hs, float scale, float *scratch,
                                                                 const int H16) {
    int TP = (T + 15) & ~15;
    float *vt = scratch, *pb = vt + (size_t)hs * TP, *db = pb + (size_t)ATT_R * TP;
    float *dk = db + (size_t)ATT_R * TP, *dv = dk + (size_t)T * hs, *dq = dv + (size_t)T * hs;
    att_transpose(vt, v, T, TP, hs, C3);
    memset(dk, 0, (size_t)2 * T * hs * sizeof(float));
    for (int i0 = 0; i0 < T; i0 += ATT_R) {
        int R = T - i0 < ATT_R ? T - i0 : ATT_R, n = i0 + R;
        for (int r = 0; r < ATT_R; r++) {
            int len = r < R ? i0 + r + 1 : 0;
            float *row = pb + (size_t)r * TP;
            if (len) memcpy(row, p + (size_t)(i0 + r) * T, (size_t)len * sizeof(float));
            for (int j = len; j < n; j++) row[j] = 0.0f;
        }
        /* dP = dO V^T, then dS = P * (dP - rowsum(dP * P)) times the score scale */
        att_rows_scores(db, go + (size_t)i0 * ldgo, ldgo, R, vt, TP, n, hs, 1.0f);
        for (int r = 0; r < ATT_R; r++) {
            int len = r < R ? i0 + r + 1 : 0;
            float *d = db + (size_t)r * TP;
            const float *pr = pb + (size_t)r * TP;
            float dot = 0.0f;
            for (int j = 0; j < len; j++) dot += pr[j] * d[j];
            for (int j = 0; j < len; j++) d[j] = pr[j] * (d[j] - dot) * scale;
            for (int j = len; j < n; j++) d[j] = 0.0f;
        }
        /* dV += P^T dO ; dQ = dS K ; dK += dS^T Q */
        att_rows_spread(dv, pb, TP, go + (size_t)i0 * ldgo, ldgo, R, n, H16);
        att_rows_mix(dq, hs, R, db, TP, k, C3, n, H16);
        att_rows_spread(dk, db, TP, q + (size_t)i0 * C3, C3, R, n, H16);
        for (int r = 0; r < R; r++) {
            float *g = gq + (size_t)(i0 + r) * C3;
            for (int d = 0; d < hs; d++) g[d] = fresh ? dq[(size_t)r * hs + d] : g[d] + dq[(size_t)r * hs + d];
        }
    }
    for (int t = 0; t < T; t++)
        for (int d = 0; d < hs; d++) {
            float *a = gk + (size_t)t * C3 + d, *c = gv + (size_t)t * C3 + d;
            *a = fresh_kv ? dk[(size_t)t * hs + d] : *a + dk[(size_t)t * hs + d];
            *c = fresh_kv ? dv[(size_t)t * hs + d] : *c + dv[(size_t)t * hs + d];
        }
}

QAT_CLONES static void att_bwd_head(const float *q, const float *k, const float *v, const float *go, int ldgo,
                                    const float *p, float *gq, float *gk, float *gv, bool fresh, bool fresh_kv, int T,
                                    int C3, int hs, float scale, float *scratch) {
    switch (hs / 16) {
    case 1: att_bwd_head_v(q, k, v, go, ldgo, p, gq, gk, gv, fresh, fresh_kv, T, C3, hs, scale, scratch, 1); break;
    case 2: att_bwd_head_v(q, k, v, go, ldgo, p, gq, gk, gv, fresh, fresh_kv, T, C3, hs, scale, scratch, 2); break;
    case 3: att_bwd_head_v(q, k, v, go, ldgo, p, gq, gk, gv, fresh, fresh_kv, T, C3, hs, scale, scratch, 3); break;
    default: att_bwd_head_v(q, k, v, go, ldgo, p, gq, gk, gv, fresh, fresh_kv, T, C3, hs, scale, scratch, 4); break;
    }
}

/* Grouped-query attention: n_head query heads share n_kv keys and values,
 * head h reading kv head h / (n_head / n_kv). The backward runs over (batch,
 * kv head) so the query heads of one group add into their shared dK and dV
 * in order on one thread: the first of the group sets a fresh grad, the
 * others accumulate. */
static void attention_backward(Node *n) {
    Tensor *qkv = n->in[0], *out = n->out;
    int B = qkv->shape[0], T = qkv->shape[1], C3 = qkv->shape[2];
    int nh = n->i[0], nkv = n->i[1], hs = n->i[2], C = nh * hs, KV = nkv * hs, grp = nh / nkv;
    float scale = 1.0f / sqrtf((float)hs);
    const float *P = n->saved;  /* [B,nh,T,T] probabilities (row i valid up to its block's end) */
    float *scratch = n->saved2; /* one [T,T] block per thread */
    const float *x = qkv->data;
    float *gx = qkv->grad;
    const float *go = out->grad;
    /* a fresh grad is set by the first product that touches it, beta = 0 */
    bool fresh = grad_take_fresh(qkv);
    float beta = fresh ? 0.0f : 1.0f;
    if (att_fast(hs)) {
#pragma omp parallel for schedule(static)
        for (int bk = 0; bk < B * nkv; bk++) {
            int b = bk / nkv, kh = bk % nkv;
            const float *xb = x + (size_t)b * T * C3, *k = xb + C + kh * hs;
            float *gb = gx + (size_t)b * T * C3, *gk = gb + C + kh * hs;
            float *sc = scratch + (size_t)omp_get_thread_num() * att_fast_scratch(T, hs);
            for (int g = 0; g < grp; g++) {
                int h = kh * grp + g;
                att_bwd_head(xb + h * hs, k, k + KV, go + (size_t)b * T * C + h * hs, C,
                             P + ((size_t)b * nh + h) * T * T, gb + h * hs, gk, gk + KV, fresh, g == 0 && fresh, T, C3,
                             hs, scale, sc);
            }
        }
        return;
    }
    int nblk = (T + ATT_RB - 1) / ATT_RB;
#pragma omp parallel for schedule(static)
    for (int bk = 0; bk < B * nkv; bk++) {
        int b = bk / nkv, kh = bk % nkv;
        const float *k = x + (size_t)b * T * C3 + C + kh * hs, *v = k + KV;
        float *gk = gx + (size_t)b * T * C3 + C + kh * hs, *gv = gk + KV;
        float *dp = scratch + (size_t)omp_get_thread_num() * T * T;
        for (int g = 0; g < grp; g++) {
            int h = kh * grp + g;
            const float *q = x + (size_t)b * T * C3 + h * hs;
            float *gq = gx + (size_t)b * T * C3 + h * hs;
            const float *gob = go + (size_t)b * T * C + h * hs;
            const float *p = P + ((size_t)b * nh + h) * T * T;
            /* last block first: it reaches every key, so it sets dK and dV rows 0..T */
            for (int blk = nblk - 1; blk >= 0; blk--) {
                int r0 = blk * ATT_RB, r1 = r0 + ATT_RB < T ? r0 + ATT_RB : T, m = r1 - r0;
                float kbeta = blk == nblk - 1 && g == 0 ? beta : 1.0f;
                const float *pr = p + (size_t)r0 * T;
                float *dr = dp + (size_t)r0 * T;
                /* dP = dO V^T ; dV += P^T dO */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, r1, hs, 1.0f, gob + (size_t)r0 * C, C, v, C3,
                            0.0f, dr, T);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1, hs, m, 1.0f, pr, T, gob + (size_t)r0 * C, C,
                            kbeta, gv, C3);
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
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1, hs, m, 1.0f, dr, T, q + (size_t)r0 * C3, C3,
                            kbeta, gk, C3);
            }
        }
    }
}

Tensor *op_attention(Tape *t, Tensor *qkv, int n_head, int n_kv_head) {
    char sx[64];
    if (qkv->ndim != 3 || !tensor_is_contiguous(qkv))
        qat_fail("attention: expected a contiguous qkv [B,T,C+2*KV], got %s", tensor_shape_str(qkv, sx, sizeof sx));
    int B = qkv->shape[0], T = qkv->shape[1], C3 = qkv->shape[2];
    if (n_head < 1 || n_kv_head < 1 || n_head % n_kv_head != 0)
        qat_fail("attention: n_head %d is not a multiple of n_kv_head %d", n_head, n_kv_head);
    /* C3 = (n_head + 2 n_kv_head) * hs */
    int units = n_head + 2 * n_kv_head;
    if (C3 % units != 0)
        qat_fail("attention: width %d of qkv is not (n_head %d + 2 * n_kv_head %d) heads", C3, n_head, n_kv_head);
    int hs = C3 / units, C = n_head * hs, KV = n_kv_head * hs, grp = n_head / n_kv_head;
    float scale = 1.0f / sqrtf((float)hs);
    Tensor *out = tensor_new(t, 3, (int[]){B, T, C});
    bool grad = t->grad_enabled && qkv->requires_grad;
    int nthr = omp_get_max_threads();
    /* probabilities are kept for backward; without grad one block per thread suffices */
    size_t pblocks = grad ? (size_t)B * n_head : (size_t)nthr;
    float *P = arena_alloc(&t->arena, pblocks * T * T * sizeof(float));
    const float *x = qkv->data;
    float *o = out->data;
    size_t sfl = att_fast(hs) ? att_fast_scratch(T, hs) : (size_t)T * T; /* per thread */
    float *scratch = arena_alloc(&t->arena, (size_t)nthr * sfl * sizeof(float));
    if (att_fast(hs)) {
#pragma omp parallel for schedule(static)
        for (int bh = 0; bh < B * n_head; bh++) {
            int b = bh / n_head, h = bh % n_head;
            const float *xb = x + (size_t)b * T * C3, *k = xb + C + (h / grp) * hs;
            float *p = P + (grad ? (size_t)bh : (size_t)omp_get_thread_num()) * T * T;
            att_fwd_head(xb + h * hs, k, k + KV, o + (size_t)b * T * C + h * hs, C, p, T, C3, hs, scale,
                         scratch + (size_t)omp_get_thread_num() * sfl);
        }
    } else {
        int nblk = (T + ATT_RB - 1) / ATT_RB;
#pragma omp parallel for schedule(static)
        for (int bh = 0; bh < B * n_head; bh++) {
            int b = bh / n_head, h = bh % n_head;
            const float *q = x + (size_t)b * T * C3 + h * hs, *k = x + (size_t)b * T * C3 + C + (h / grp) * hs;
            const float *v = k + KV;
            float *p = P + (grad ? (size_t)bh : (size_t)omp_get_thread_num()) * T * T;
            for (int blk = 0; blk < nblk; blk++) {
                int r0 = blk * ATT_RB, r1 = r0 + ATT_RB < T ? r0 + ATT_RB : T, m = r1 - r0;
                float *pr = p + (size_t)r0 * T;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, r1, hs, scale, q + (size_t)r0 * C3, C3, k, C3,
                            0.0f, pr, T);
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
    }
    Node *n = tape_record(t, "attention", attention_backward, out, 1, (Tensor *[]){qkv});
    if (n) {
        n->overwrite = true;
        n->i[0] = n_head;
        n->i[1] = n_kv_head;
        n->i[2] = hs;
        n->saved = P;
        n->saved2 = scratch;
    }
    return out;
}
