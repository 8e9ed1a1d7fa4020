/* model.c: building an InferModel from a GPT, sizes, and per-sequence state. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* The quantized Linear whose weight is t (the tied wte is never one: the
 * embedding still needs it in float). */
static bool quantized_weight(const GPT *g, const Tensor *t) {
    if (t == g->wte) return false;
    for (int b = 0; b < g->cfg.n_layer; b++) {
        const Block *bl = &g->blocks[b];
        const Linear *ls[] = {&bl->qkv, &bl->proj, &bl->fc, &bl->fc_proj};
        for (int k = 0; k < 4; k++)
            if (ls[k]->q && ls[k]->w == t) return true;
    }
    return false;
}

bool infer_keeps_float(const GPT *g, const Tensor *t) { return !t->quant_state && !quantized_weight(g, t); }

static float *float_of(const InferModel *m, const GPT *g, const Tensor *t) {
    for (int i = 0, k = 0; i < g->params.n; i++) {
        const Tensor *p = g->params.list[i];
        if (!infer_keeps_float(g, p)) continue;
        if (p == t) return m->ft[k].data;
        k++;
    }
    qat_fail("infer: tensor %s is not kept in float", t->name);
}

static void wire(InferModel *m, const GPT *g, InferLinear *il, const Linear *l) {
    il->in = l->w->shape[1];
    il->out = l->w->shape[0];
    il->b = l->b ? float_of(m, g, l->b) : NULL;
    if (l->q) {
        int i = (int)(l->q - g->qlayers);
        il->q = &m->qm[i];
        il->w8a8 = m->qw8a8[i];
        il->w = NULL;
    } else {
        il->q = NULL;
        il->w8a8 = false;
        il->w = float_of(m, g, l->w);
    }
}

void infer_build(InferModel *m, const GPT *g, const Vocab *v, const char *config_yaml, QMatrix *qm) {
    memset(m, 0, sizeof *m);
    m->cfg = g->cfg;
    vocab_copy(&m->vocab, v);
    m->config_yaml = xstrdup(config_yaml);
    m->kv_bits = g->cfg.n_layer > 0 ? g->blocks[0].kv_bits : 0;
    size_t total = 0;
    for (int i = 0; i < g->params.n; i++)
        if (infer_keeps_float(g, g->params.list[i])) total += g->params.list[i]->numel, m->n_ft++;
    m->fdata = xmalloc(total * sizeof(float));
    m->ft = xcalloc((size_t)m->n_ft, sizeof(InferTensor));
    size_t off = 0;
    for (int i = 0, k = 0; i < g->params.n; i++) {
        const Tensor *p = g->params.list[i];
        if (!infer_keeps_float(g, p)) continue;
        InferTensor *t = &m->ft[k++];
        snprintf(t->name, sizeof t->name, "%s", p->name);
        t->ndim = p->ndim;
        t->shape[0] = p->shape[0];
        t->shape[1] = p->ndim > 1 ? p->shape[1] : 1;
        t->data = m->fdata + off;
        memcpy(t->data, p->data, p->numel * sizeof(float));
        off += p->numel;
    }
    m->n_q = g->n_q;
    m->qm = qm;
    m->qnames = xcalloc((size_t)(g->n_q ? g->n_q : 1), sizeof *m->qnames);
    m->qw8a8 = xcalloc((size_t)(g->n_q ? g->n_q : 1), sizeof(bool));
    for (int i = 0; i < g->n_q; i++) {
        snprintf(m->qnames[i], sizeof m->qnames[i], "%s", g->qlayers[i].name);
        m->qw8a8[i] = g->qlayers[i].a_bits == 8 || g->qlayers[i].a_blocks; /* llama.cpp's q8_0 activations too */
    }
    m->wte = float_of(m, g, g->wte);
    m->wpe = g->wpe ? float_of(m, g, g->wpe) : NULL;
    m->lnf_w = float_of(m, g, g->ln_f.w);
    m->lnf_b = g->ln_f.b ? float_of(m, g, g->ln_f.b) : NULL;
    m->blocks = xcalloc((size_t)(g->cfg.n_layer ? g->cfg.n_layer : 1), sizeof(InferBlock));
    for (int b = 0; b < g->cfg.n_layer; b++) {
        const Block *bl = &g->blocks[b];
        InferBlock *ib = &m->blocks[b];
        ib->ln1_w = float_of(m, g, bl->ln1.w), ib->ln1_b = bl->ln1.b ? float_of(m, g, bl->ln1.b) : NULL;
        ib->ln2_w = float_of(m, g, bl->ln2.w), ib->ln2_b = bl->ln2.b ? float_of(m, g, bl->ln2.b) : NULL;
        ib->swiglu = bl->swiglu;
        wire(m, g, &ib->qkv, &bl->qkv);
        wire(m, g, &ib->proj, &bl->proj);
        wire(m, g, &ib->fc, &bl->fc);
        wire(m, g, &ib->fc_proj, &bl->fc_proj);
        ib->gelu_half = bl->fc_proj.q && bl->fc_proj.q->a_blocks; /* as mlp_forward */
    }
    wire(m, g, &m->head, &g->head);
}

void infer_from_gpt(InferModel *m, const GPT *g, const Vocab *v, const char *config_yaml) {
    QMatrix *qm = xcalloc((size_t)(g->n_q ? g->n_q : 1), sizeof(QMatrix));
    for (int i = 0; i < g->n_q; i++) qlayer_to_qmatrix((GPT *)g, &g->qlayers[i], &qm[i]);
    infer_build(m, g, v, config_yaml, qm);
}

void infer_free(InferModel *m) {
    for (int i = 0; i < m->n_q; i++) qmatrix_free(&m->qm[i]);
    free(m->qm);
    free(m->qnames);
    free(m->qw8a8);
    free(m->fdata);
    free(m->ft);
    free(m->blocks);
    free(m->config_yaml);
    vocab_free(&m->vocab);
    memset(m, 0, sizeof *m);
}

size_t infer_quant_bytes(const InferModel *m) {
    size_t n = 0;
    for (int i = 0; i < m->n_q; i++) n += qmatrix_bytes(&m->qm[i]);
    return n;
}

size_t infer_float_bytes(const InferModel *m) {
    size_t n = 0;
    for (int i = 0; i < m->n_ft; i++) n += (size_t)m->ft[i].shape[0] * m->ft[i].shape[1] * sizeof(float);
    return n;
}

void infer_state_init(InferState *s, const InferModel *m, int cap) {
    const GPTConfig *c = &m->cfg;
    int C = c->n_embd, T = c->block_size, V = c->vocab_size, L = c->n_layer, hs = gpt_head_size(c);
    int KV = c->n_kv_head * hs, F = gpt_fc_rows(c), IN = C > c->hidden ? C : c->hidden; /* widest Linear input */
    for (int i = 0; i < m->n_q; i++) IN = m->qm[i].cols > IN ? m->qm[i].cols : IN; /* whole groups of a partial one */
    memset(s, 0, sizeof *s);
    s->cap = cap;
    size_t n = (size_t)cap;
    s->x = xmalloc(n * C * sizeof(float));
    s->xn = xmalloc(n * C * sizeof(float));
    s->qkv = xmalloc(n * gpt_qkv_width(c) * sizeof(float));
    s->att = xmalloc(n * C * sizeof(float));
    s->h = xmalloc(n * F * sizeof(float));
    s->h2 = xmalloc(n * c->hidden * sizeof(float));
    s->tmp = xmalloc(n * C * sizeof(float));
    s->logits = xmalloc(n * V * sizeof(float));
    s->k = xmalloc((size_t)L * T * KV * sizeof(float));
    s->v = xmalloc((size_t)L * T * KV * sizeof(float));
    if (c->arch == ARCH_LLAMA) {
        s->rope = xmalloc((size_t)T * hs * sizeof(float));
        rope_table(s->rope, 0, T, hs, c->rope_theta);
    }
    s->scores = xmalloc((size_t)omp_get_max_threads() * infer_scores_per_thread(c) * sizeof(float));
    s->xq = xmalloc(n * IN);
    s->xs = xmalloc(n * ((size_t)IN / QBLOCK + 1) * sizeof(float)); /* per token, or per 32 inputs (q8_0 activations) */
    s->team_n = omp_get_max_threads();
    s->team_stride = ((2 * (size_t)C * sizeof(float) + qgemv_team_scratch_bytes(IN)) + 63) & ~(size_t)63;
    s->team = xmalloc((size_t)s->team_n * s->team_stride);
    /* the workspace grows with the threads a product uses, which grow with M */
    for (int l = 0; l <= L; l++) {
        const InferLinear *ls[4] = {&m->head};
        if (l < L) ls[0] = &m->blocks[l].qkv, ls[1] = &m->blocks[l].proj, ls[2] = &m->blocks[l].fc, ls[3] = &m->blocks[l].fc_proj;
        for (int k = 0; k < 4 && ls[k]; k++) {
            if (ls[k]->q) continue;
            Gemm g = infer_float_gemm(ls[k], NULL, cap, NULL);
            size_t need = gemm_ws_floats(&g);
            if (need > s->gemm_ws_n) s->gemm_ws_n = need;
        }
    }
    s->gemm_ws = NULL;
    if (s->gemm_ws_n) {
        s->gemm_ws = aligned_alloc(64, (s->gemm_ws_n * sizeof(float) + 63) & ~(size_t)63);
        if (!s->gemm_ws) qat_fail("infer: out of memory for a %zu-float workspace", s->gemm_ws_n);
    }
}

void infer_state_free(InferState *s) {
    free(s->x), free(s->xn), free(s->qkv), free(s->att), free(s->h), free(s->h2), free(s->tmp), free(s->logits);
    free(s->k), free(s->v), free(s->rope), free(s->scores), free(s->xq), free(s->xs), free(s->team), free(s->gemm_ws);
    memset(s, 0, sizeof *s);
}
