/* forward.c: the transformer forward (either architecture) over a KV cache,
 * and the validation loss on it. The norms, RoPE, GELU and SwiGLU are the
 * training ops' own forward code, the Linears the integer kernels (or the
 * engine's GEMM and sgemv for float ones). */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "internal.h"

/* The engine's float product y = x W^T (+ b) of a float Linear, the one
 * training runs (its own AVX-512 kernel where there is one). */
Gemm infer_float_gemm(const InferLinear *l, const float *x, int M, float *y) {
    return (Gemm){.tb = true, .M = M, .N = l->out, .K = l->in, .alpha = 1.0f, .A = x, .B = l->w, .bias = l->b,
                  .lda = l->in, .ldb = l->in, .ldc = l->out, .C = y};
}

static void linear_apply(const InferLinear *l, const float *x, int M, float *y, InferState *s) {
    if (s->probe) s->probe(s->probe_ctx, l, x, M);
    if (!l->q) {
        Gemm g = infer_float_gemm(l, x, M, y);
        if (gemm_ws_floats(&g) > s->gemm_ws_n) qat_fail("infer: float product workspace too small (a bug)");
        gemm_run(&g, s->gemm_ws);
        return;
    }
    if (l->w8a8) qgemm_w8a8(l->q, x, M, y, s->xq, s->xs);
    else qgemm_f32(l->q, x, M, y);
    if (l->b)
        for (int m = 0; m < M; m++)
            for (int o = 0; o < l->out; o++) y[(size_t)m * l->out + o] += l->b[o];
}

static void norm_rows(const InferModel *m, const float *x, const float *w, const float *b, int R, float *y) {
    if (b) layernorm_rows(x, w, b, m->cfg.norm_eps, R, m->cfg.n_embd, y, NULL, NULL);
    else rmsnorm_rows(x, w, m->cfg.norm_eps, R, m->cfg.n_embd, y, NULL);
}

/* Causal attention of query i (position pos + i) of head h over the cached
 * keys and values 0..pos+i of one layer (kv head h / group); sc is this
 * thread's score row. */
static void attend_head(const InferModel *m, InferState *s, const float *kc, const float *vc, int i, int h, int pos,
                        float *sc) {
    const GPTConfig *c = &m->cfg;
    int C = c->n_embd, hs = gpt_head_size(c), KV = c->n_kv_head * hs, W = gpt_qkv_width(c);
    int kh = h / (c->n_head / c->n_kv_head);
    float scale = 1.0f / sqrtf((float)hs), qr[hs];
    const float *q = s->qkv + (size_t)i * W + h * hs;
    int last = pos + i;
    if (s->rope) { /* the query turned to its position; keys were turned as they were cached */
        memcpy(qr, q, (size_t)hs * sizeof(float));
        rope_row(qr, 1, hs, s->rope + (size_t)last * hs, false);
        q = qr;
    }
    /* scores = K q and out = V^T p as sgemv over the cached rows (OpenBLAS
     * runs them on this thread inside a parallel region): a scalar
     * dot-product loop does not vectorise and was the largest part of a
     * generated token after the weights */
    cblas_sgemv(CblasRowMajor, CblasNoTrans, last + 1, hs, scale, kc + kh * hs, KV, q, 1, 0.0f, sc, 1);
    float sum = softmax_exp(sc, last + 1);
    float *o = s->att + (size_t)i * C + h * hs;
    cblas_sgemv(CblasRowMajor, CblasTrans, last + 1, hs, 1.0f / sum, vc + kh * hs, KV, sc, 1, 0.0f, o, 1);
}

/* Appends kv head h's key and value of new token i to layer l's cache (the
 * key turned by RoPE), quantized per token and head as in training when the
 * model says so. */
static void kv_append_head(const InferModel *m, const InferState *s, float *kc, float *vc, int i, int h, int pos) {
    const GPTConfig *c = &m->cfg;
    int C = c->n_embd, hs = gpt_head_size(c), KV = c->n_kv_head * hs;
    const float *r = s->qkv + (size_t)i * gpt_qkv_width(c);
    float *kd = kc + (size_t)(pos + i) * KV + h * hs, *vd = vc + (size_t)(pos + i) * KV + h * hs;
    float kr[hs];
    const float *k = r + C + h * hs;
    if (s->rope) {
        memcpy(kr, k, (size_t)hs * sizeof(float));
        rope_row(kr, 1, hs, s->rope + (size_t)(pos + i) * hs, false);
        k = kr;
    }
    if (m->kv_bits) {
        quant_fake_groups(k, 1, hs, m->kv_bits, kd);
        quant_fake_groups(r + C + KV + h * hs, 1, hs, m->kv_bits, vd);
    } else {
        memcpy(kd, k, (size_t)hs * sizeof(float));
        memcpy(vd, r + C + KV + h * hs, (size_t)hs * sizeof(float));
    }
}

/* The causal attention of n new tokens (a prompt or an evaluation window)
 * over the cache: per head and block of INFER_ATT_ROWS queries, two
 * products (S = Q K^T over the keys the block sees, then O = P V after the
 * causal softmax) instead of an sgemv pair per query, which at a 512-token
 * prompt was most of its time. OpenBLAS runs each product on the calling
 * thread inside the parallel region. */
static void attention(const InferModel *m, InferState *s, float *kc, float *vc, int n, int pos) {
    const GPTConfig *c = &m->cfg;
    int H = c->n_head, HKV = c->n_kv_head, T = c->block_size, hs = gpt_head_size(c), C = c->n_embd;
    int KV = HKV * hs, W = gpt_qkv_width(c), grp = H / HKV, R = INFER_ATT_ROWS, nblk = (n + R - 1) / R;
    float scale = 1.0f / sqrtf((float)hs);
    for (int i = 0; i < n; i++)
        for (int h = 0; h < HKV; h++) kv_append_head(m, s, kc, vc, i, h, pos);
#pragma omp parallel for collapse(2) schedule(dynamic)
    for (int h = 0; h < H; h++)
        for (int blk = 0; blk < nblk; blk++) {
            float *S = s->scores + (size_t)omp_get_thread_num() * infer_scores_per_thread(c), *qr = S + (size_t)R * T;
            int r0 = blk * R, mr = n - r0 < R ? n - r0 : R, keys = pos + r0 + mr, kh = h / grp;
            const float *q = s->qkv + (size_t)r0 * W + h * hs;
            int ldq = W;
            if (s->rope) { /* the queries turned to their positions; keys were turned as they were cached */
                for (int i = 0; i < mr; i++) {
                    memcpy(qr + (size_t)i * hs, q + (size_t)i * W, (size_t)hs * sizeof(float));
                    rope_row(qr + (size_t)i * hs, 1, hs, s->rope + (size_t)(pos + r0 + i) * hs, false);
                }
                q = qr, ldq = hs;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, mr, keys, hs, scale, q, ldq, kc + kh * hs, KV, 0.0f, S,
                        T);
            for (int i = 0; i < mr; i++) {
                float *row = S + (size_t)i * T;
                int len = pos + r0 + i + 1;
                float inv = 1.0f / softmax_exp(row, len);
                for (int j = 0; j < len; j++) row[j] *= inv;
                for (int j = len; j < keys; j++) row[j] = 0.0f;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, mr, hs, keys, 1.0f, S, T, vc + kh * hs, KV, 0.0f,
                        s->att + (size_t)r0 * C + h * hs, C);
        }
}

/* ---- one token: the whole forward in one parallel region ----
 * A token's steps take microseconds, and on the reference machine a barrier
 * costs about 1.6 us and a fork-join 3 us, so forking a team per step (and
 * sharing each step's small serial work behind barriers) cost as much as the
 * int4 weights. Here every thread keeps its own copy of the residual stream
 * and of the normalised row (the same code on the same values, so the copies
 * are equal), and the threads meet once per product: 5 barriers a layer. */

static void gelu_epi(float *y, int n) { gelu_rows(y, (size_t)n, y); }
static void gelu_half_epi(float *y, int n) { gelu_rows_half(y, (size_t)n, y); }

static float *team_slot(const InferState *s, int t) { return (float *)(s->team + (size_t)t * s->team_stride); }

/* y = epi(x W^T + b), this thread's share of the outputs, then a barrier. */
static void linear_team(const InferLinear *l, const float *x, float *y, KEpilogue epi, void *scratch) {
    if (l->q) {
        qgemv_team(l->q, l->w8a8, x, l->b, epi, y, scratch);
        return;
    }
    int nt = omp_get_num_threads(), t = omp_get_thread_num();
    int lo = (int)((long)l->out * t / nt), hi = (int)((long)l->out * (t + 1) / nt);
    if (hi > lo) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, hi - lo, l->in, 1.0f, l->w + (size_t)lo * l->in, l->in, x, 1, 0.0f, y + lo, 1);
        if (l->b)
            for (int o = lo; o < hi; o++) y[o] += l->b[o];
        if (epi) epi(y + lo, hi - lo);
    }
#pragma omp barrier
}

static void forward_token(const InferModel *m, InferState *s, int32_t token) {
    const GPTConfig *c = &m->cfg;
    int C = c->n_embd, T = c->block_size, H = c->n_head, HKV = c->n_kv_head, pos = s->pos;
    int KV = HKV * gpt_head_size(c), Hd = c->hidden;
#pragma omp parallel num_threads(s->team_n)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        float *x = team_slot(s, t), *xn = x + C, *sc = s->scores + (size_t)t * infer_scores_per_thread(c);
        void *scratch = xn + C;
        const float *te = m->wte + (size_t)token * C, *pe = m->wpe ? m->wpe + (size_t)pos * C : NULL;
        for (int cc = 0; cc < C; cc++) x[cc] = te[cc] + (pe ? pe[cc] : 0.0f);
        for (int l = 0; l < c->n_layer; l++) {
            const InferBlock *b = &m->blocks[l];
            float *kc = s->k + (size_t)l * T * KV, *vc = s->v + (size_t)l * T * KV;
            norm_rows(m, x, b->ln1_w, b->ln1_b, 1, xn);
            linear_team(&b->qkv, xn, s->qkv, NULL, scratch);
            if (HKV == H) {
                for (int h = H * t / nt; h < H * (t + 1) / nt; h++) {
                    kv_append_head(m, s, kc, vc, 0, h, pos);
                    attend_head(m, s, kc, vc, 0, h, pos, sc);
                }
            } else { /* query heads of a group read a kv head another thread may cache */
                for (int h = HKV * t / nt; h < HKV * (t + 1) / nt; h++) kv_append_head(m, s, kc, vc, 0, h, pos);
#pragma omp barrier
                for (int h = H * t / nt; h < H * (t + 1) / nt; h++) attend_head(m, s, kc, vc, 0, h, pos, sc);
            }
#pragma omp barrier
            linear_team(&b->proj, s->att, s->tmp, NULL, scratch);
            for (int cc = 0; cc < C; cc++) x[cc] += s->tmp[cc];
            norm_rows(m, x, b->ln2_w, b->ln2_b, 1, xn);
            if (b->swiglu) {
                linear_team(&b->fc, xn, s->h, NULL, scratch);
                int lo = (int)((long)Hd * t / nt), hi = (int)((long)Hd * (t + 1) / nt);
                if (hi > lo) swiglu_span(s->h + lo, s->h + Hd + lo, hi - lo, s->h2 + lo);
#pragma omp barrier
                linear_team(&b->fc_proj, s->h2, s->tmp, NULL, scratch);
            } else {
                linear_team(&b->fc, xn, s->h, b->gelu_half ? gelu_half_epi : gelu_epi, scratch);
                linear_team(&b->fc_proj, s->h, s->tmp, NULL, scratch);
            }
            for (int cc = 0; cc < C; cc++) x[cc] += s->tmp[cc];
        }
        norm_rows(m, x, m->lnf_w, m->lnf_b, 1, xn);
        linear_team(&m->head, xn, s->logits, NULL, scratch);
    }
    s->pos = pos + 1;
}

const float *infer_forward(const InferModel *m, InferState *s, const int32_t *tokens, int n) {
    const GPTConfig *c = &m->cfg;
    int C = c->n_embd, T = c->block_size, V = c->vocab_size, KV = c->n_kv_head * gpt_head_size(c);
    int pos = s->pos;
    if (n < 1 || n > s->cap || pos + n > T)
        qat_fail("infer: %d tokens at position %d do not fit (at most %d per call, block_size %d)", n, pos, s->cap, T);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V) qat_fail("infer: token id %d is outside the vocabulary of %d", tokens[i], V);
    if (n == 1) {
        forward_token(m, s, tokens[0]);
        return s->logits;
    }
    for (int i = 0; i < n; i++) {
        const float *te = m->wte + (size_t)tokens[i] * C, *pe = m->wpe ? m->wpe + (size_t)(pos + i) * C : NULL;
        for (int cc = 0; cc < C; cc++) s->x[(size_t)i * C + cc] = te[cc] + (pe ? pe[cc] : 0.0f);
    }
    for (int l = 0; l < c->n_layer; l++) {
        const InferBlock *b = &m->blocks[l];
        float *kc = s->k + (size_t)l * T * KV, *vc = s->v + (size_t)l * T * KV;
        norm_rows(m, s->x, b->ln1_w, b->ln1_b, n, s->xn);
        linear_apply(&b->qkv, s->xn, n, s->qkv, s);
        attention(m, s, kc, vc, n, pos);
        linear_apply(&b->proj, s->att, n, s->tmp, s);
        for (size_t i = 0; i < (size_t)n * C; i++) s->x[i] += s->tmp[i];
        norm_rows(m, s->x, b->ln2_w, b->ln2_b, n, s->xn);
        linear_apply(&b->fc, s->xn, n, s->h, s);
        float *act = s->h;
        if (b->swiglu) swiglu_rows(s->h, n, c->hidden, act = s->h2);
        else if (b->gelu_half) gelu_rows_half(s->h, (size_t)n * c->hidden, s->h);
        else gelu_rows(s->h, (size_t)n * c->hidden, s->h);
        linear_apply(&b->fc_proj, act, n, s->tmp, s);
        for (size_t i = 0; i < (size_t)n * C; i++) s->x[i] += s->tmp[i];
    }
    norm_rows(m, s->x, m->lnf_w, m->lnf_b, n, s->xn);
    linear_apply(&m->head, s->xn, n, s->logits, s);
    s->pos = pos + n;
    return s->logits;
}

double infer_eval_loss_progress(const InferModel *m, const int32_t *tokens, const EvalWindows *w, int32_t *top1,
                                Progress *p) {
    int V = m->cfg.vocab_size, cap = 1;
    for (int i = 0; i < w->n; i++) cap = w->len[i] > cap ? w->len[i] : cap;
    if (cap > m->cfg.block_size) qat_fail("infer: windows of %d tokens exceed block_size %d", cap, m->cfg.block_size);
    int32_t *x = xmalloc((size_t)cap * sizeof(int32_t)), *y = xmalloc((size_t)cap * sizeof(int32_t));
    InferState s;
    infer_state_init(&s, m, cap);
    double sum = 0.0;
    long at = 0;
    for (int i = 0; i < w->n; i++) {
        int L = w->len[i];
        eval_windows_fill(w, tokens, i, 1, x, y);
        s.pos = 0;
        const float *lg = infer_forward(m, &s, x, L);
        for (int t = 0; t < L; t++) {
            const float *r = lg + (size_t)t * V;
            int best = 0;
            for (int j = 1; j < V; j++)
                if (r[j] > r[best]) best = j;
            float mx = r[best];
            if (top1) top1[at++] = best;
            double e = 0.0;
            for (int j = 0; j < V; j++) e += exp((double)(r[j] - mx));
            sum += (double)mx + log(e) - r[y[t]];
        }
        if (p) progress_update(p, i + 1, NULL);
    }
    if (p) progress_end(p);
    infer_state_free(&s);
    free(x);
    free(y);
    return w->tokens ? sum / (double)w->tokens : NAN;
}

double infer_eval_loss(const InferModel *m, const int32_t *tokens, const EvalWindows *w, int32_t *top1) {
    return infer_eval_loss_progress(m, tokens, w, top1, NULL);
}
