/* llama2c.c: reading llama2.c checkpoints and tokenizers (layout in
 * llama2c.h) into a llama-architecture model: wq, wk, wv stack into qkv's
 * rows, w1 (gate) and w3 (up) into mlp.fc's, w2 is mlp.proj. */
#include "llama2c.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct Reader {
    const char *path;
    const uint8_t *p;
    size_t n, at;
} Reader;

static void take(Reader *r, void *dst, size_t bytes, const char *what) {
    if (bytes > r->n - r->at)
        qat_fail("%s: truncated: %s needs %zu bytes at offset %zu, the file has %zu", r->path, what, bytes, r->at, r->n);
    memcpy(dst, r->p + r->at, bytes);
    r->at += bytes;
}

static int32_t take_i32(Reader *r, const char *what) {
    int32_t v;
    take(r, &v, 4, what);
    return v;
}

typedef struct TokCtx {
    const char *path;
    int vocab_size;
    Vocab *v;
    char *buf;
    const char **pieces;
    int *lens;
    float *scores;
} TokCtx;

static void read_tokenizer(void *p) {
    TokCtx *x = p;
    const char *path = x->path;
    size_t n;
    x->buf = xread_file(path, &n);
    Reader r = {path, (const uint8_t *)x->buf, n, 0};
    int32_t maxlen = take_i32(&r, "max_token_length");
    if (maxlen < 1 || maxlen > 1024) qat_fail("%s: max_token_length %d is not a llama2.c tokenizer's", path, maxlen);
    /* pieces until the end of the file: each takes at least 8 bytes */
    int cap = (int)(n / 8) + 1, count = 0;
    if (x->vocab_size > 0 && x->vocab_size < cap) cap = x->vocab_size;
    x->pieces = xmalloc((size_t)cap * sizeof(char *));
    x->lens = xmalloc((size_t)cap * sizeof(int));
    x->scores = xmalloc((size_t)cap * sizeof(float));
    while (r.at < r.n && count < cap) {
        char what[64];
        snprintf(what, sizeof what, "piece %d", count);
        take(&r, &x->scores[count], 4, what);
        int32_t len = take_i32(&r, what);
        if (len < 0 || len > maxlen) qat_fail("%s: piece %d is %d bytes, max_token_length is %d", path, count, len, maxlen);
        if (!isfinite(x->scores[count])) qat_fail("%s: piece %d has score %g", path, count, x->scores[count]);
        if ((size_t)len > r.n - r.at) qat_fail("%s: truncated: piece %d needs %d bytes at offset %zu", path, count, len, r.at);
        x->pieces[count] = (const char *)r.p + r.at;
        x->lens[count] = len;
        r.at += (size_t)len;
        count++;
    }
    if (x->vocab_size > 0 && count != x->vocab_size)
        qat_fail("%s: %d pieces, the model's vocab_size is %d", path, count, x->vocab_size);
    if (r.at != r.n) qat_fail("%s: %zu bytes after the last of %d pieces", path, r.n - r.at, count);
    if (count < 3) qat_fail("%s: %d pieces; llama2.c's vocabularies start with <unk>, <s>, </s>", path, count);
    /* llama2.c's export spells BOS and EOS "\n<s>\n" and "\n</s>\n" (for its
     * printing); they are SentencePiece's <s> and </s> */
    for (int k = 1; k <= 2; k++)
        if (x->lens[k] >= 2 && x->pieces[k][0] == '\n' && x->pieces[k][x->lens[k] - 1] == '\n') x->pieces[k]++, x->lens[k] -= 2;
    vocab_spm_build(x->v, count, x->pieces, x->lens, x->scores, NULL, 1, 2, 0, path);
}

void llama2c_load_tokenizer(const char *path, int vocab_size, Vocab *v) {
    TokCtx x = {.path = path, .vocab_size = vocab_size, .v = v};
    char msg[1024];
    bool ok = qat_try(read_tokenizer, &x, msg, sizeof msg);
    free(x.pieces), free(x.lens), free(x.scores), free(x.buf);
    if (!ok) qat_fail("%s", msg);
}

/* Copies count floats into dst (rows of a stacked tensor), refusing non-finite ones. */
static void take_floats(Reader *r, float *dst, size_t count, const char *what) {
    take(r, dst, count * sizeof(float), what);
    for (size_t i = 0; i < count; i++)
        if (!isfinite(dst[i])) qat_fail("%s: %s holds %g at element %zu (not finite)", r->path, what, dst[i], i);
}

typedef struct ModelCtx {
    const char *path;
    GPT *g;
    Config *cfg;
    char *buf;
    bool built;
} ModelCtx;

static void read_model(void *p) {
    ModelCtx *x = p;
    const char *path = x->path;
    GPT *g = x->g;
    size_t n;
    char *buf = x->buf = xread_file(path, &n);
    Reader r = {path, (const uint8_t *)buf, n, 0};
    if (n >= 4 && !memcmp(buf, "24ka", 4))
        qat_fail("%s: a llama2.c export of version 1 or later (magic ak42); qat reads the legacy format "
                 "(llama2.c's export.py --version 0)", path);
    int32_t h[7];
    static const char *names[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
    for (int i = 0; i < 7; i++) h[i] = take_i32(&r, names[i]);
    for (int i = 0; i < 7; i++)
        if (i != 5 ? h[i] < 1 || h[i] > 1 << 20 : h[i] == 0 || h[i] < -(1 << 22) || h[i] > 1 << 22)
            qat_fail("%s: header %s = %d is not a model size", path, names[i], h[i]);
    bool shared = h[5] > 0;
    int C = h[0], Hd = h[1], L = h[2], H = h[3], KVH = h[4], V = abs(h[5]), T = h[6];
    if (C % H) qat_fail("%s: dim %d is not divisible by n_heads %d", path, C, H);
    if (H % KVH) qat_fail("%s: n_heads %d is not divisible by n_kv_heads %d", path, H, KVH);
    if (L > 256 || H > 256) qat_fail("%s: %d layers of %d heads: more than qat builds (256)", path, L, H);
    int hs = C / H, KV = KVH * hs;
    if (hs % 2) qat_fail("%s: head size %d is odd; RoPE turns pairs", path, hs);
    /* the size the header promises, before building anything */
    double floats = (double)V * C + 2.0 * L * C + (double)L * C * (2.0 * C + 2.0 * KV) + 3.0 * L * Hd * C + C +
                    (double)T * hs + (shared ? 0.0 : (double)V * C);
    if ((double)(n - 28) != floats * 4)
        qat_fail("%s: %zu bytes, a llama2.c checkpoint of dim %d, hidden %d, %d layers, %d/%d heads, vocab %d, seq %d%s "
                 "has %.0f",
                 path, n, C, Hd, L, H, KVH, V, T, shared ? "" : " (untied)", 28 + floats * 4);
    GPTConfig gc = {.vocab_size = V, .n_layer = L, .n_head = H, .n_embd = C, .block_size = T, .arch = ARCH_LLAMA,
                    .n_kv_head = KVH, .hidden = Hd, .norm_eps = 1e-5f, .rope_theta = 10000.0f, .untied_head = !shared};
    gpt_build(g, &gc, NULL, path);
    x->built = true;
    take_floats(&r, g->wte->data, (size_t)V * C, "token_embedding_table");
    for (int l = 0; l < L; l++) take_floats(&r, g->blocks[l].ln1.w->data, C, "rms_att_weight");
    /* stacked over layers: wq of every layer, then wk of every layer, ... */
    for (int l = 0; l < L; l++) take_floats(&r, g->blocks[l].qkv.w->data, (size_t)C * C, "wq");
    for (int l = 0; l < L; l++) take_floats(&r, g->blocks[l].qkv.w->data + (size_t)C * C, (size_t)KV * C, "wk");
    for (int l = 0; l < L; l++) take_floats(&r, g->blocks[l].qkv.w->data + (size_t)(C + KV) * C, (size_t)KV * C, "wv");
    for (int l = 0; l < L; l++) take_floats(&r, g->blocks[l].proj.w->data, (size_t)C * C, "wo");
    for (int l = 0; l < L; l++) take_floats(&r, g->blocks[l].ln2.w->data, C, "rms_ffn_weight");
    for (int l = 0; l < L; l++) take_floats(&r, g->blocks[l].fc.w->data, (size_t)Hd * C, "w1");
    for (int l = 0; l < L; l++) take_floats(&r, g->blocks[l].fc_proj.w->data, (size_t)C * Hd, "w2");
    for (int l = 0; l < L; l++) take_floats(&r, g->blocks[l].fc.w->data + (size_t)Hd * C, (size_t)Hd * C, "w3");
    take_floats(&r, g->ln_f.w->data, C, "rms_final_weight");
    r.at += (size_t)T * hs * sizeof(float); /* llama2.c's RoPE tables: qat computes its own */
    if (!shared) take_floats(&r, g->head.w->data, (size_t)V * C, "wcls");
    config_model_of(&x->cfg->model, &g->cfg);
    snprintf(x->cfg->model.vocab, sizeof x->cfg->model.vocab, "spm");
}

void llama2c_load_model(const char *path, GPT *g, Config *cfg) {
    ModelCtx x = {.path = path, .g = g, .cfg = cfg};
    char msg[1024];
    bool ok = qat_try(read_model, &x, msg, sizeof msg);
    free(x.buf);
    if (!ok && x.built) gpt_free(g);
    if (!ok) qat_fail("%s", msg);
}
