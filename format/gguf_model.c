/* gguf_model.c: a qat model as a GGUF file for llama.cpp's gpt2 or llama
 * architecture, and such files read back (see gguf_model.h for the mapping
 * and what is reported). */
#include "gguf_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/gguf.h"
#include "quant/blocks.h"

/* GPT-2's byte-to-unicode table: printable bytes stand for themselves, the
 * rest (controls, space, 127..160, 173) for 256, 257, ... in byte order. */
static unsigned byte_codepoint(unsigned b) {
    bool self = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    if (self) return b;
    unsigned n = 0;
    for (unsigned c = 0; c < b; c++) n += !((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || c >= 174);
    return 256 + n;
}

static size_t utf8_put(unsigned cp, char *out) {
    if (cp < 0x80) return out[0] = (char)cp, 1;
    out[0] = (char)(0xC0 | cp >> 6);
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2; /* every code point of the table is below 0x800 */
}

typedef struct Out {
    GgufWriter w;
    FILE *report;
    int n_block, n_float;
} Out;

static void add_f(Out *o, const char *name, const float *x, int64_t ne0, int64_t ne1, bool f16) {
    int64_t ne[2] = {ne0, ne1};
    int nd = ne1 > 1 ? 2 : 1;
    size_t n = (size_t)(ne0 * ne1);
    if (f16 && nd == 2) {
        uint16_t *h = xmalloc(n * sizeof(uint16_t));
        for (size_t i = 0; i < n; i++) h[i] = fp16_from_f32(x[i]);
        gguf_add_tensor(&o->w, name, nd, ne, GGML_TYPE_F16, h, n * 2);
        free(h);
    } else { /* llama.cpp wants norms and biases in F32 */
        gguf_add_tensor(&o->w, name, nd, ne, GGML_TYPE_F32, x, n * sizeof(float));
    }
    o->n_float++;
}

/* The weights of a quantized Linear as blocks, when a block type holds them
 * (exactly, or up to the half-precision rounding of qat's float scales, which
 * is reported); else NULL with the reason in why. */
static void *blocks_of(const QLayer *q, const float *w, int rows, int cols, int *type, size_t *bytes, double *scale_change,
                       char *why, size_t n) {
    *scale_change = 0.0;
    if (cols % QBLOCK) return snprintf(why, n, "rows of %d weights are not whole blocks of 32", cols), NULL;
    size_t nw = (size_t)rows * cols, nb = nw / QBLOCK;
    QFormat f = q->w.fmt;
    if (f) { /* trained in the format: its blocks are what the forward computed */
        *type = f == QF_Q8_0 ? GGML_TYPE_Q8_0 : f == QF_Q4_0 ? GGML_TYPE_Q4_0 : f == QF_Q4_1 ? GGML_TYPE_Q4_1 : GGML_TYPE_IQ4_NL;
        *bytes = nb * qformat_block_bytes(f);
        void *out = xmalloc(*bytes);
        if (!q->w_scale) {
            blocks_quantize(f, w, nw, out);
            return out;
        }
        int codes[QBLOCK];
        float tmp[QBLOCK];
        for (size_t b = 0; b < nb; b++) {
            float m = q->w_zp ? q->w_zp->data[b] : 0.0f;
            block_fake_scaled(f, w + b * QBLOCK, q->w_scale->data[b], m, tmp, codes);
            block_pack(f, out, b, fp16_from_f32(q->w_scale->data[b]), fp16_from_f32(m), codes);
        }
        return out;
    }
    /* qat's own symmetric grids map onto q8_0 (5..8 bits) and q4_0 (2..4
     * bits) when each block of 32 lies in one group */
    if (!q->w.sym) return snprintf(why, n, "asymmetric int%d has no GGUF block type", q->w.bits), NULL;
    if (q->w.cb) return snprintf(why, n, "%s%d levels have no GGUF block type", quant_codebook_name(q->w.cb), q->w.bits), NULL;
    if (q->w.gran == QG_TENSOR) return snprintf(why, n, "a per-tensor scale has no GGUF block type"), NULL;
    int group = q->w.gran == QG_CHANNEL ? cols : q->w.group;
    if (group % QBLOCK) return snprintf(why, n, "groups of %d are not whole blocks of 32", group), NULL;
    if (q->outlier) return snprintf(why, n, "float outlier columns have no GGUF block type"), NULL;
    size_t ns = quant_n_scales(&q->w, rows, cols);
    float *sc = xmalloc(ns * sizeof(float));
    if (q->w_scale) memcpy(sc, q->w_scale->data, ns * sizeof(float));
    else quant_minmax(&q->w, w, rows, cols, sc, NULL);
    int qmin = quant_qmin(&q->w), qmax = quant_qmax(&q->w);
    bool b8 = q->w.bits > 4;
    *type = b8 ? GGML_TYPE_Q8_0 : GGML_TYPE_Q4_0;
    *bytes = nb * (b8 ? sizeof(BlockQ8_0) : sizeof(BlockQ4_0));
    void *out = xmalloc(*bytes);
    for (size_t b = 0; b < nb; b++) {
        size_t i0 = b * QBLOCK, r = i0 / (size_t)cols, c = i0 % (size_t)cols;
        float s = sc[quant_scale_index(&q->w, cols, (int)r, (int)c)];
        uint16_t d = fp16_from_f32(s);
        if (s != 0.0f) *scale_change = fmax(*scale_change, fabs((double)fp16_to_f32(d) / s - 1.0));
        int codes[QBLOCK];
        for (int j = 0; j < QBLOCK; j++) codes[j] = quant_code(w[i0 + (size_t)j], s, 0.0f, qmin, qmax) + (b8 ? 0 : 8);
        block_pack(b8 ? QF_Q8_0 : QF_Q4_0, out, b, d, 0, codes);
    }
    free(sc);
    return out;
}

/* What the forward computes from a quantized layer's weights (learned or
 * min-max scales, rounded zero points, float outlier columns). */
static void fake_weights(const QLayer *q, const float *w, int rows, int cols, float *out) {
    size_t ns = quant_n_scales(&q->w, rows, cols);
    float *sc = xmalloc(ns * sizeof(float)), *zp = q->w.sym ? NULL : xmalloc(ns * sizeof(float));
    if (q->w_scale) {
        memcpy(sc, q->w_scale->data, ns * sizeof(float));
        int qmin = quant_qmin(&q->w), qmax = quant_qmax(&q->w);
        for (size_t k = 0; zp && k < ns; k++) {
            if (q->w.fmt) { /* q4_1: the block's minimum, not an integer zero point */
                zp[k] = q->w_zp->data[k];
                continue;
            }
            float z = q->w_zp ? rintf(q->w_zp->data[k]) : 0.0f;
            zp[k] = z < qmin ? (float)qmin : z > qmax ? (float)qmax : z;
        }
    } else {
        quant_minmax(&q->w, w, rows, cols, sc, zp);
    }
    quant_fake(&q->w, w, rows, cols, q->w.fmt && !q->w_scale ? NULL : sc, zp, out);
    for (int c = 0; q->outlier && c < cols; c++)
        if (q->outlier->data[c] > 0.0f)
            for (int r = 0; r < rows; r++) out[(size_t)r * cols + c] = w[(size_t)r * cols + c];
    free(sc), free(zp);
}

static QFormat format_of_type(int t) {
    return t == GGML_TYPE_Q8_0     ? QF_Q8_0
           : t == GGML_TYPE_Q4_0   ? QF_Q4_0
           : t == GGML_TYPE_Q4_1   ? QF_Q4_1
           : t == GGML_TYPE_IQ4_NL ? QF_IQ4_NL
                                   : QF_NONE;
}

static const char *type_name(int t) {
    QFormat f = format_of_type(t);
    return f ? qformat_name(f) : "f32";
}

/* A Linear's weight [rows, cols] (qat: [out, in]) under the name; its
 * blocks when quantized, otherwise float. extra_row appends one more row
 * (the end-of-text token's, for a head). */
static void add_linear(Out *o, const char *name, const QLayer *q, const float *w, int rows, int cols,
                       const float *extra_row, bool f16) {
    int R = rows + (extra_row ? 1 : 0);
    float *full = (float *)w;
    if (extra_row) {
        full = xmalloc((size_t)R * cols * sizeof(float));
        memcpy(full, w, (size_t)rows * cols * sizeof(float));
        memcpy(full + (size_t)rows * cols, extra_row, (size_t)cols * sizeof(float));
    }
    if (q) {
        int type;
        size_t bytes;
        double change;
        char why[160];
        QLayer qq = *q;
        /* the extra row has no learned scales: its blocks get ggml's own */
        if (extra_row && qq.w_scale) qq.w_scale = NULL;
        void *blk = blocks_of(&qq, full, R, cols, &type, &bytes, &change, why, sizeof why);
        if (blk) {
            gguf_add_tensor(&o->w, name, 2, (int64_t[]){cols, R}, type, blk, bytes);
            free(blk);
            o->n_block++;
            fprintf(o->report, "  %-28s %-5s [%d x %d]%s", name, type_name(type), R, cols,
                    q->a_bits ? " (its int8 activation quantization is llama.cpp's own q8_0 there)" : "");
            if (change > 0.0) fprintf(o->report, " scales rounded to half precision (at most %.2g relative)", change);
            fprintf(o->report, "\n");
        } else {
            /* the fake-quantized weights in float: the same function, at float size */
            float *fq = xmalloc((size_t)R * cols * sizeof(float));
            fake_weights(q, w, rows, cols, fq);
            if (extra_row) memcpy(fq + (size_t)rows * cols, extra_row, (size_t)cols * sizeof(float));
            add_f(o, name, fq, cols, R, false);
            fprintf(o->report, "  %-28s f32   [%d x %d] fallback: %s; its fake-quantized values are written in float\n",
                    name, R, cols, why);
            free(fq);
        }
    } else {
        add_f(o, name, full, cols, R, f16);
    }
    if (extra_row) free(full);
}

static const QLayer *qlayer_named(const GPT *g, const char *name) {
    for (int i = 0; i < g->n_q; i++)
        if (!strcmp(g->qlayers[i].name, name)) return &g->qlayers[i];
    return NULL;
}

/* Rows [r0, r0 + n) of a Linear (llama.cpp's attn_q/k/v out of qkv,
 * ffn_gate/up out of mlp.fc): the rows' own slice of the layer's stored
 * scales, which are per row (channel or groups along the row). */
static void add_linear_rows(Out *o, const char *name, const QLayer *q, const Linear *l, int r0, int n, bool f16) {
    int cols = l->w->shape[1];
    const float *w = l->w->data + (size_t)r0 * cols;
    if (!q || !q->w_scale || q->w.gran == QG_TENSOR) {
        if (q && q->w.gran == QG_TENSOR && r0) qat_fail("%s: a per-tensor scale cannot be split into rows", name);
        add_linear(o, name, q, w, n, cols, NULL, f16);
        return;
    }
    size_t per_row = quant_n_scales(&q->w, 1, cols);
    QLayer qq = *q;
    Tensor ts = *q->w_scale, tz;
    ts.data += (size_t)r0 * per_row, ts.numel = (size_t)n * per_row;
    qq.w_scale = &ts;
    if (q->w_zp) {
        tz = *q->w_zp;
        tz.data += (size_t)r0 * per_row, tz.numel = (size_t)n * per_row;
        qq.w_zp = &tz;
    }
    add_linear(o, name, &qq, w, n, cols, NULL, f16);
}

/* The writer and the general.* keys both architectures share; the file type
 * is the block type of the quantized layers when they agree. */
static void begin_file(Out *o, const GPT *g, const char *arch, const char *name, bool f16) {
    gguf_writer_init(&o->w);
    uint32_t ftype = f16 ? 1 : 0;
    if (g->n_q) {
        QFormat f = g->qlayers[0].w.fmt;
        ftype = f == QF_Q8_0 ? 7 : f == QF_Q4_0 ? 2 : f == QF_Q4_1 ? 3 : f == QF_IQ4_NL ? 25 : g->qlayers[0].w.bits > 4 ? 7 : 2;
    }
    gguf_kv_str(&o->w, "general.architecture", arch);
    gguf_kv_str(&o->w, "general.name", name);
    gguf_kv_u32(&o->w, "general.quantization_version", 2);
    gguf_kv_u32(&o->w, "general.file_type", ftype);
    gguf_kv_u32(&o->w, "general.alignment", GGUF_ALIGNMENT);
}

/* Writes the file and reports what it holds. */
static size_t finish_file(Out *o, const GPT *g, const char *path) {
    if (g->cfg.n_layer && g->blocks[0].kv_bits)
        fprintf(o->report, "  note: the keys and values were fake-quantized to int%d in training; GGUF has no place for "
                "that (llama.cpp's --cache-type-k/-v q8_0 or q4_0 is the nearest)\n", g->blocks[0].kv_bits);
    size_t bytes = gguf_write(&o->w, path);
    fprintf(o->report, "%zu bytes: %d tensors in blocks, %d in float\n", bytes, o->n_block, o->n_float);
    gguf_writer_free(&o->w);
    return bytes;
}

/* llama.cpp's llama architecture from a qat model of arch llama with its
 * SentencePiece vocabulary: tokens spelled with U+2581 for spaces again. */
static size_t export_llama(const GPT *g, const Vocab *v, const char *name, const char *path, bool f16, FILE *report) {
    const GPTConfig *c = &g->cfg;
    if (!v->spm)
        qat_fail("%s: GGUF export of a llama model writes its SentencePiece vocabulary; this model's is a %s vocabulary "
                 "(llama.cpp's llama architecture has no place for a char vocabulary's never-ending end-of-text row)",
                 path, v->is_byte ? "byte" : "char");
    int C = c->n_embd, V = c->vocab_size, hs = gpt_head_size(c), KV = c->n_kv_head * hs, H = c->hidden;
    Out o = {.report = report};
    begin_file(&o, g, "llama", name, f16);
    GgufWriter *w = &o.w;
    gguf_kv_u32(w, "llama.context_length", (uint32_t)c->block_size);
    gguf_kv_u32(w, "llama.embedding_length", (uint32_t)C);
    gguf_kv_u32(w, "llama.feed_forward_length", (uint32_t)H);
    gguf_kv_u32(w, "llama.block_count", (uint32_t)c->n_layer);
    gguf_kv_u32(w, "llama.attention.head_count", (uint32_t)c->n_head);
    gguf_kv_u32(w, "llama.attention.head_count_kv", (uint32_t)c->n_kv_head);
    gguf_kv_f32(w, "llama.attention.layer_norm_rms_epsilon", c->norm_eps);
    gguf_kv_f32(w, "llama.rope.freq_base", c->rope_theta);
    gguf_kv_u32(w, "llama.rope.dimension_count", (uint32_t)hs);
    const SpmVocab *s = v->spm;
    char *text = xmalloc(s->text_bytes * 3), *p = text; /* ' ' becomes three bytes */
    const char **toks = xmalloc((size_t)V * sizeof *toks);
    size_t *lens = xmalloc((size_t)V * sizeof *lens);
    for (int i = 0; i < V; i++) {
        toks[i] = p;
        for (int k = 0; k < s->len[i]; k++)
            if (s->piece[i][k] == ' ') *p++ = (char)0xE2, *p++ = (char)0x96, *p++ = (char)0x81;
            else *p++ = s->piece[i][k];
        lens[i] = (size_t)(p - toks[i]);
    }
    gguf_kv_str(w, "tokenizer.ggml.model", "llama");
    gguf_kv_str_array(w, "tokenizer.ggml.tokens", (size_t)V, toks, lens);
    gguf_kv_f32_array(w, "tokenizer.ggml.scores", (size_t)V, s->score);
    gguf_kv_i32_array(w, "tokenizer.ggml.token_type", (size_t)V, s->type);
    gguf_kv_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)s->bos);
    gguf_kv_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)s->eos);
    gguf_kv_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)s->unk);
    free(text), free(toks), free(lens);
    fprintf(report, "%s: llama, %d layers, width %d, %d heads (%d kv), hidden %d, context %d, SentencePiece vocab %d\n",
            path, c->n_layer, C, c->n_head, c->n_kv_head, H, c->block_size, V);
    const QLayer *qh = qlayer_named(g, "lm_head");
    add_linear(&o, "token_embd.weight", NULL, g->wte->data, V, C, NULL, f16);
    if (qh || c->untied_head) add_linear(&o, "output.weight", qh, g->head.w->data, V, C, NULL, f16);
    add_f(&o, "output_norm.weight", g->ln_f.w->data, C, 1, false);
    char nm[96], qn[64];
    for (int l = 0; l < c->n_layer; l++) {
        const Block *b = &g->blocks[l];
        snprintf(nm, sizeof nm, "blk.%d.attn_norm.weight", l);
        add_f(&o, nm, b->ln1.w->data, C, 1, false);
        snprintf(nm, sizeof nm, "blk.%d.ffn_norm.weight", l);
        add_f(&o, nm, b->ln2.w->data, C, 1, false);
        struct {
            const char *gg, *qat;
            const Linear *lin;
            int r0, n;
        } parts[] = {{"attn_q", "attn.qkv", &b->qkv, 0, C},        {"attn_k", "attn.qkv", &b->qkv, C, KV},
                     {"attn_v", "attn.qkv", &b->qkv, C + KV, KV}, {"attn_output", "attn.proj", &b->proj, 0, C},
                     {"ffn_gate", "mlp.fc", &b->fc, 0, H},         {"ffn_up", "mlp.fc", &b->fc, H, H},
                     {"ffn_down", "mlp.proj", &b->fc_proj, 0, C}};
        for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++) {
            snprintf(qn, sizeof qn, "blocks.%d.%s", l, parts[k].qat);
            snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, parts[k].gg);
            add_linear_rows(&o, nm, qlayer_named(g, qn), parts[k].lin, parts[k].r0, parts[k].n, f16);
        }
    }
    return finish_file(&o, g, path);
}

size_t gguf_export_gpt(const GPT *g, const Vocab *v, const char *name, const char *path, bool f16, FILE *report) {
    const GPTConfig *c = &g->cfg;
    if (c->arch == ARCH_LLAMA) return export_llama(g, v, name, path, f16, report);
    int C = c->n_embd, V = c->vocab_size, T = c->block_size;
    Out o = {.report = report};
    begin_file(&o, g, "gpt2", name, f16);
    GgufWriter *w = &o.w;
    gguf_kv_u32(w, "gpt2.context_length", (uint32_t)T);
    gguf_kv_u32(w, "gpt2.embedding_length", (uint32_t)C);
    gguf_kv_u32(w, "gpt2.feed_forward_length", (uint32_t)(4 * C));
    gguf_kv_u32(w, "gpt2.block_count", (uint32_t)c->n_layer);
    gguf_kv_u32(w, "gpt2.attention.head_count", (uint32_t)c->n_head);
    gguf_kv_f32(w, "gpt2.attention.layer_norm_epsilon", 1e-5f);
    /* the vocabulary: each byte in GPT-2's byte-level spelling, so that
     * llama.cpp's BPE tokenizer, with no merges, gives qat's ids; then one
     * control token for BOS/EOS that no character is */
    char (*text)[4] = xmalloc((size_t)(V + 1) * sizeof *text);
    const char **toks = xmalloc((size_t)(V + 1) * sizeof *toks);
    size_t *lens = xmalloc((size_t)(V + 1) * sizeof *lens);
    int32_t *types = xmalloc((size_t)(V + 1) * sizeof *types);
    for (int i = 0; i < V; i++) {
        lens[i] = utf8_put(byte_codepoint(v->chars[i]), text[i]);
        toks[i] = text[i];
        types[i] = 1; /* normal */
    }
    toks[V] = "<|endoftext|>";
    lens[V] = strlen(toks[V]);
    types[V] = 3; /* control */
    gguf_kv_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_kv_str(w, "tokenizer.ggml.pre", "default");
    gguf_kv_str_array(w, "tokenizer.ggml.tokens", (size_t)V + 1, toks, lens);
    gguf_kv_i32_array(w, "tokenizer.ggml.token_type", (size_t)V + 1, types);
    gguf_kv_str_array(w, "tokenizer.ggml.merges", 0, NULL, NULL);
    gguf_kv_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)V);
    gguf_kv_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)V);
    gguf_kv_bool(w, "tokenizer.ggml.add_bos_token", false);
    free(text), free(toks), free(lens), free(types);

    /* The end-of-text row of the head: e_i = k / gamma_i makes its logit
     * k * sum(normalised activations) + k * sum(beta_i / gamma_i), and the
     * first sum is 0 for every input (layer norm centres it), so choosing k
     * puts the logit at -100 whatever the text: generation never ends on it. */
    const float *gam = g->ln_f.w->data, *bet = g->ln_f.b->data;
    double S = 0.0;
    bool ok = true;
    for (int i = 0; i < C; i++) {
        ok &= fabsf(gam[i]) > 1e-6f;
        if (ok) S += (double)bet[i] / gam[i];
    }
    float *eos = xcalloc((size_t)C, sizeof(float));
    if (ok && fabs(S) > 1e-3) {
        double k = -100.0 / S;
        for (int i = 0; i < C; i++) eos[i] = (float)(k / gam[i]);
    } else {
        fprintf(report, "  note: the end-of-text token's logit is 0, not -100 (ln_f has a zero gain or no offset)\n");
    }
    const QLayer *qh = qlayer_named(g, "lm_head");
    fprintf(report, "%s: gpt2, %d layers, width %d, context %d, vocab %d + <|endoftext|> (id %d, BOS and EOS)\n", path,
            c->n_layer, C, T, V, V);
    if (qh) { /* a quantized head is its own tensor; the embedding stays float */
        float *zero = xcalloc((size_t)C, sizeof(float)); /* never an input: no BOS is added */
        add_linear(&o, "token_embd.weight", NULL, g->wte->data, V, C, zero, f16);
        add_linear(&o, "output.weight", qh, g->wte->data, V, C, eos, f16);
        free(zero);
    } else { /* tied: llama.cpp takes the head from token_embd when output.weight is absent */
        add_linear(&o, "token_embd.weight", NULL, g->wte->data, V, C, eos, f16);
    }
    free(eos);
    add_f(&o, "position_embd.weight", g->wpe->data, C, T, f16);
    char nm[96], qn[64];
    for (int l = 0; l < c->n_layer; l++) {
        const Block *b = &g->blocks[l];
        struct {
            const char *gg, *qat;
            const Linear *lin;
            int rows, cols;
        } lins[] = {{"attn_qkv", "attn.qkv", &b->qkv, 3 * C, C},
                    {"attn_output", "attn.proj", &b->proj, C, C},
                    {"ffn_up", "mlp.fc", &b->fc, 4 * C, C},
                    {"ffn_down", "mlp.proj", &b->fc_proj, C, 4 * C}};
        snprintf(nm, sizeof nm, "blk.%d.attn_norm.weight", l);
        add_f(&o, nm, b->ln1.w->data, C, 1, false);
        snprintf(nm, sizeof nm, "blk.%d.attn_norm.bias", l);
        add_f(&o, nm, b->ln1.b->data, C, 1, false);
        snprintf(nm, sizeof nm, "blk.%d.ffn_norm.weight", l);
        add_f(&o, nm, b->ln2.w->data, C, 1, false);
        snprintf(nm, sizeof nm, "blk.%d.ffn_norm.bias", l);
        add_f(&o, nm, b->ln2.b->data, C, 1, false);
        for (int k = 0; k < 4; k++) {
            snprintf(qn, sizeof qn, "blocks.%d.%s", l, lins[k].qat);
            snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, lins[k].gg);
            add_linear(&o, nm, qlayer_named(g, qn), lins[k].lin->w->data, lins[k].rows, lins[k].cols, NULL, f16);
            snprintf(nm, sizeof nm, "blk.%d.%s.bias", l, lins[k].gg);
            add_f(&o, nm, lins[k].lin->b->data, lins[k].rows, 1, false);
        }
    }
    add_f(&o, "output_norm.weight", g->ln_f.w->data, C, 1, false);
    add_f(&o, "output_norm.bias", g->ln_f.b->data, C, 1, false);
    return finish_file(&o, g, path);
}

/* ---- reading a gpt2 GGUF ---- */

static int codepoint_byte(unsigned cp) {
    for (unsigned b = 0; b < 256; b++)
        if (byte_codepoint(b) == cp) return (int)b;
    return -1;
}


/* Float values of tensor t (ne0 x rows), dequantized. */
static float *tensor_floats(const GgufFile *f, const GgufTensor *t, int64_t ne0, int64_t rows) {
    if (t->ne[0] != ne0 || (t->nd > 1 ? t->ne[1] : 1) != rows || t->nd > 2)
        qat_fail("%s: tensor %s is [%lld x %lld], the model needs [%lld x %lld]", f->path, t->name, (long long)t->ne[0],
                 (long long)(t->nd > 1 ? t->ne[1] : 1), (long long)ne0, (long long)rows);
    size_t n = (size_t)(ne0 * rows);
    float *x = xmalloc(n * sizeof(float));
    if (t->type == GGML_TYPE_F32) memcpy(x, t->data, n * sizeof(float));
    else if (t->type == GGML_TYPE_F16)
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, t->data + 2 * i, 2);
            x[i] = fp16_to_f32(h);
        }
    else if (t->type == GGML_TYPE_BF16) /* the top half of a float32 */
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, t->data + 2 * i, 2);
            uint32_t u = (uint32_t)h << 16;
            memcpy(&x[i], &u, 4);
        }
    else {
        QFormat q = format_of_type(t->type);
        /* the image is not aligned for the block structs: copy first */
        void *blk = xmalloc(t->bytes);
        memcpy(blk, t->data, t->bytes);
        blocks_dequantize(q, blk, n, x);
        free(blk);
    }
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) qat_fail("%s: tensor %s holds %g at element %zu (not finite)", f->path, t->name, x[i], i);
    return x;
}

static const GgufTensor *need_tensor(const GgufFile *f, const char *name) {
    const GgufTensor *t = gguf_find_tensor(f, name);
    if (!t) qat_fail("%s: tensor %s is missing", f->path, name);
    return t;
}

static void load_into(const GgufFile *f, const char *name, Tensor *dst, int64_t ne0, int64_t rows) {
    float *x = tensor_floats(f, need_tensor(f, name), ne0, rows);
    memcpy(dst->data, x, (size_t)(ne0 * rows) * sizeof(float));
    free(x);
}

/* A block tensor's d (and m) into the layer's stored scales (and minima). */
/* The nb blocks' scales (and q4_1's minima) of tensor t into q's, from
 * block first on (a tensor that is part of a stacked Linear: llama's q, k,
 * v in qkv). */
static void load_scales_at(const GgufFile *f, const GgufTensor *t, QLayer *q, size_t first, size_t nb) {
    if (!q->w_scale || first + nb > q->w_scale->numel)
        qat_fail("%s: tensor %s: not the %zu blocks its layer holds", f->path, t->name, nb);
    void *blk = xmalloc(t->bytes); /* the image is not aligned for the block structs */
    memcpy(blk, t->data, t->bytes);
    blocks_scales(format_of_type(t->type), blk, nb, q->w_scale->data + first, q->w_zp ? q->w_zp->data + first : NULL);
    free(blk);
    for (size_t b = first; b < first + nb; b++)
        if (!isfinite(q->w_scale->data[b]) || (q->w_zp && !isfinite(q->w_zp->data[b])))
            qat_fail("%s: tensor %s: block %zu has a scale or minimum that is not finite", f->path, t->name, b - first);
}

static void load_scales(const GgufFile *f, const GgufTensor *t, QLayer *q, size_t nb) {
    if (q->w_scale && q->w_scale->numel != nb) qat_fail("%s: tensor %s: not the %zu blocks its layer holds", f->path, t->name, nb);
    load_scales_at(f, t, q, 0, nb);
}

/* A head run from blocks: its weights, the float rows read from them, must
 * be the blocks' own values under the scales loaded, so that qat's head
 * computes what llama.cpp's does. */
static void check_head_blocks(const GgufFile *f, const char *tensor, GPT *g, int V, int C) {
    QLayer *q = g->head.q;
    float *e = xmalloc((size_t)V * C * sizeof(float));
    quant_fake(&q->w, g->head.w->data, V, C, q->w_scale->data, q->w_zp ? q->w_zp->data : NULL, e);
    size_t far = 0;
    for (size_t i = 0; i < (size_t)V * C; i++) far += e[i] != g->head.w->data[i];
    free(e);
    if (far) qat_fail("%s: tensor %s: %zu of its values are not its %s blocks' own", f->path, tensor, far, qformat_name(q->w.fmt));
}

typedef struct LoadCtx {
    GgufFile f;
    GPT *g;
    Vocab *v;
    Config *cfg;
    bool built;
    bool as_float; /* dequantize every tensor (qat import) */
    bool *blocks;  /* llama: which Linears are in blocks; freed by the caller, whatever happened */
} LoadCtx;

/* The SentencePiece vocabulary of tokenizer.ggml.model = llama: U+2581
 * (SentencePiece's space) back to ' ', as qat holds pieces. */
static void load_spm_vocab(const GgufFile *f, Vocab *v) {
    const GgufKV *toks = gguf_find_kv(f, "tokenizer.ggml.tokens");
    if (!toks || toks->type != GGUF_ARRAY || toks->arr_type != GGUF_STRING || toks->n < 3 || toks->n > (1u << 24))
        qat_fail("%s: tokenizer.ggml.tokens: expected an array of 3 or more strings", f->path);
    int n = (int)toks->n;
    const char **raw = xmalloc((size_t)n * sizeof(char *)), **pieces = xmalloc((size_t)n * sizeof(char *));
    size_t *rl = xmalloc((size_t)n * sizeof(size_t));
    int *lens = xmalloc((size_t)n * sizeof(int));
    float *scores = xmalloc((size_t)n * sizeof(float));
    int32_t *types = xmalloc((size_t)n * sizeof(int32_t));
    gguf_array_strs(f, toks, raw, rl);
    gguf_get_array(f, "tokenizer.ggml.scores", GGUF_FLOAT32, (uint64_t)n, scores);
    gguf_get_array(f, "tokenizer.ggml.token_type", GGUF_INT32, (uint64_t)n, types);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += rl[i] + 1;
    char *text = xmalloc(total), *p = text;
    for (int i = 0; i < n; i++) {
        if (rl[i] > 1024) qat_fail("%s: tokenizer.ggml.tokens[%d] is %zu bytes long", f->path, i, rl[i]);
        if (!isfinite(scores[i])) qat_fail("%s: tokenizer.ggml.scores[%d] is %g", f->path, i, scores[i]);
        pieces[i] = p;
        for (size_t k = 0; k < rl[i]; k++) {
            const unsigned char *u = (const unsigned char *)raw[i] + k;
            if (k + 2 < rl[i] && u[0] == 0xE2 && u[1] == 0x96 && u[2] == 0x81) *p++ = ' ', k += 2;
            else *p++ = (char)u[0];
        }
        lens[i] = (int)(p - pieces[i]);
        *p++ = '\0';
    }
    int bos = (int)gguf_get_uint(f, "tokenizer.ggml.bos_token_id"), eos = (int)gguf_get_uint(f, "tokenizer.ggml.eos_token_id");
    const GgufKV *uk = gguf_find_kv(f, "tokenizer.ggml.unknown_token_id");
    int unk = uk ? (int)gguf_get_uint(f, "tokenizer.ggml.unknown_token_id") : 0;
    vocab_spm_build(v, n, pieces, lens, scores, types, bos, eos, unk, f->path);
    free(raw), free(pieces), free(rl), free(lens), free(scores), free(types), free(text);
}

/* llama.cpp's llama architecture: attn_q/k/v stack into qkv's rows,
 * ffn_gate and ffn_up into mlp.fc's. Linears whose tensors are all blocks of
 * one type (q8_0, q4_0 or q4_1) become layers of that quant.format with the
 * blocks' own scales, unless every tensor is to be float (as_float); the
 * rest, and the embedding and head, are dequantized to float (a Linear
 * whose rows are not whole blocks, mlp.proj's 172 inputs in stories260K,
 * is float in the files qat writes). An output.weight equal to token_embd
 * is the tied head it was exported from. */

/* The Linears of one kind in each block and their llama.cpp tensors. */
static const struct {
    const char *qat;
    const char *gg[3];
} LLAMA_LINEARS[4] = {{"attn.qkv", {"attn_q", "attn_k", "attn_v"}},
                      {"attn.proj", {"attn_output"}},
                      {"mlp.fc", {"ffn_gate", "ffn_up"}},
                      {"mlp.proj", {"ffn_down"}}};

/* Which Linears of a llama file are in blocks (blocks[l * 4 + k]) and of
 * which one format; the quant.layers globs that name them. */
static QFormat llama_block_layers(const GgufFile *f, int L, bool *blocks, char *globs, size_t n) {
    QFormat fmt = QF_NONE;
    char nm[96];
    for (int l = 0; l < L; l++)
        for (int k = 0; k < 4; k++) {
            QFormat kf = QF_NONE;
            for (int j = 0; j < 3 && LLAMA_LINEARS[k].gg[j]; j++) {
                snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, LLAMA_LINEARS[k].gg[j]);
                QFormat tf = format_of_type((int)need_tensor(f, nm)->type);
                if (j && tf != kf)
                    qat_fail("%s: tensor %s: its type differs from blk.%d.%s.weight's, which share blocks.%d.%s", f->path,
                             nm, l, LLAMA_LINEARS[k].gg[0], l, LLAMA_LINEARS[k].qat);
                kf = tf;
            }
            if (kf && fmt && kf != fmt)
                qat_fail("%s: blk.%d.%s.weight: blocks of %s and of %s; qat reads files whose Linears share one block type",
                         f->path, l, LLAMA_LINEARS[k].gg[0], qformat_name(kf), qformat_name(fmt));
            if (kf) fmt = kf;
            blocks[l * 4 + k] = kf != QF_NONE;
        }
    /* a kind in blocks in every layer is one glob, else each layer by name */
    size_t at = 0;
    globs[0] = '\0';
    for (int k = 0; k < 4; k++) {
        int cnt = 0;
        for (int l = 0; l < L; l++) cnt += blocks[l * 4 + k];
        for (int l = 0; l < L && cnt; l++) {
            if (cnt < L && !blocks[l * 4 + k]) continue;
            int w = cnt == L ? snprintf(globs + at, n - at, "%sblocks.*.%s", at ? ", " : "", LLAMA_LINEARS[k].qat)
                             : snprintf(globs + at, n - at, "%sblocks.%d.%s", at ? ", " : "", l, LLAMA_LINEARS[k].qat);
            if (w < 0 || (size_t)w >= n - at)
                qat_fail("%s: its quantized Linears take more than %zu characters of quant.layers", f->path, n - 1);
            at += (size_t)w;
            if (cnt == L) break;
        }
    }
    return fmt;
}

static void load_llama(LoadCtx *x) {
    GgufFile *f = &x->f;
    GPT *g = x->g;
    char *tm = gguf_get_str(f, "tokenizer.ggml.model");
    bool ok = !strcmp(tm, "llama");
    free(tm);
    if (!ok) qat_fail("%s: tokenizer.ggml.model is not llama (SentencePiece); qat reads that vocabulary with llama models", f->path);
    int T = (int)gguf_get_uint(f, "llama.context_length"), C = (int)gguf_get_uint(f, "llama.embedding_length");
    int L = (int)gguf_get_uint(f, "llama.block_count"), H = (int)gguf_get_uint(f, "llama.attention.head_count");
    int Hd = (int)gguf_get_uint(f, "llama.feed_forward_length");
    int KVH = gguf_find_kv(f, "llama.attention.head_count_kv") ? (int)gguf_get_uint(f, "llama.attention.head_count_kv") : H;
    float eps = gguf_get_f32(f, "llama.attention.layer_norm_rms_epsilon");
    float theta = gguf_find_kv(f, "llama.rope.freq_base") ? gguf_get_f32(f, "llama.rope.freq_base") : 10000.0f;
    if (L < 1 || L > 256 || H < 1 || H > 256 || KVH < 1 || C < 1 || C > 65536 || T < 1 || T > 1 << 20 || Hd < 1 ||
        Hd > 1 << 20 || C % H || H % KVH || (C / H) % 2 || !(eps > 0.0f && eps < 1.0f) || !(theta > 0.0f))
        qat_fail("%s: the llama hyperparameters (%d layers, width %d, %d heads, %d kv heads, hidden %d, context %d, eps "
                 "%g, theta %g) are no model qat builds",
                 f->path, L, C, H, KVH, Hd, T, eps, theta);
    if (gguf_find_kv(f, "llama.rope.dimension_count") && (int)gguf_get_uint(f, "llama.rope.dimension_count") != C / H)
        qat_fail("%s: llama.rope.dimension_count: RoPE on part of each head; qat turns whole heads", f->path);
    load_spm_vocab(f, x->v);
    int V = x->v->size, hs = C / H, KV = KVH * hs;
    const GgufTensor *out = gguf_find_tensor(f, "output.weight");
    float *emb = tensor_floats(f, need_tensor(f, "token_embd.weight"), C, V), *head = NULL;
    bool tied = !out;
    if (out) {
        head = tensor_floats(f, out, C, V);
        tied = !memcmp(head, emb, (size_t)V * C * sizeof(float));
    }
    GPTConfig gc = {.vocab_size = V, .n_layer = L, .n_head = H, .n_embd = C, .block_size = T, .arch = ARCH_LLAMA,
                    .n_kv_head = KVH, .hidden = Hd, .norm_eps = eps, .rope_theta = theta, .untied_head = !tied};
    config_defaults(x->cfg);
    bool *blocks = x->blocks = xcalloc((size_t)L * 4, sizeof(bool));
    char globs[sizeof x->cfg->quant.layers], origin[4096 + 16];
    QFormat fmt = x->as_float ? QF_NONE : llama_block_layers(f, L, blocks, globs, sizeof globs);
    snprintf(origin, sizeof origin, "%s:llama", f->path);
    /* a head in blocks (the tied embedding's, as llama-quantize stores it in
     * q8_0, or a separate one) runs as blocks, as llama.cpp runs it */
    const char *hname = out ? "output.weight" : "token_embd.weight";
    QFormat hf = x->as_float ? QF_NONE : format_of_type((int)need_tensor(f, hname)->type);
    if (hf && C % QBLOCK) hf = QF_NONE;
    if (hf) {
        size_t at = strlen(globs);
        snprintf(globs + at, sizeof globs - at, "%slm_head", at ? ", " : "");
    }
    if (fmt || hf) { /* the blocks' own scales, used as they are (as PTQ's are) */
        config_set(x->cfg, "quant.format", qformat_name(fmt ? fmt : hf), origin);
        config_set(x->cfg, "quant.estimator", "lsq", origin);
        config_set(x->cfg, "quant.layers", globs, origin);
        if (fmt && hf && hf != fmt) config_set(x->cfg, "quant.overrides.lm_head.format", qformat_name(hf), origin);
    }
    gpt_build(g, &gc, fmt || hf ? &x->cfg->quant : NULL, f->path);
    x->built = true;
    memcpy(g->wte->data, emb, (size_t)V * C * sizeof(float));
    if (!tied) memcpy(g->head.w->data, head, (size_t)V * C * sizeof(float));
    free(emb), free(head);
    if (hf) {
        load_scales(f, need_tensor(f, hname), g->head.q, (size_t)V * C / QBLOCK);
        check_head_blocks(f, hname, g, V, C);
    }
    char nm[96];
    for (int l = 0; l < L; l++) {
        Block *b = &g->blocks[l];
        struct {
            const char *gg;
            float *dst;
            int rows, cols;
        } ts[] = {{"attn_q", b->qkv.w->data, C, C},
                  {"attn_k", b->qkv.w->data + (size_t)C * C, KV, C},
                  {"attn_v", b->qkv.w->data + (size_t)(C + KV) * C, KV, C},
                  {"attn_output", b->proj.w->data, C, C},
                  {"ffn_gate", b->fc.w->data, Hd, C},
                  {"ffn_up", b->fc.w->data + (size_t)Hd * C, Hd, C},
                  {"ffn_down", b->fc_proj.w->data, C, Hd},
                  {"attn_norm", b->ln1.w->data, 1, C},
                  {"ffn_norm", b->ln2.w->data, 1, C}};
        for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) {
            snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, ts[k].gg);
            float *w = tensor_floats(f, need_tensor(f, nm), ts[k].cols, ts[k].rows);
            memcpy(ts[k].dst, w, (size_t)ts[k].rows * ts[k].cols * sizeof(float));
            free(w);
        }
        /* the blocks' scales, each tensor at its rows' place in the stacked Linear */
        Linear *lin[4] = {&b->qkv, &b->proj, &b->fc, &b->fc_proj};
        for (int k = 0; k < 4; k++) {
            if (!blocks[l * 4 + k]) continue;
            size_t first = 0;
            for (int j = 0; j < 3 && LLAMA_LINEARS[k].gg[j]; j++) {
                snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, LLAMA_LINEARS[k].gg[j]);
                const GgufTensor *t = need_tensor(f, nm);
                size_t nb = (size_t)(t->nd > 1 ? t->ne[1] : 1) * (size_t)t->ne[0] / QBLOCK;
                load_scales_at(f, t, lin[k]->q, first, nb);
                first += nb;
            }
            if (first != lin[k]->q->w_scale->numel)
                qat_fail("%s: blocks.%d.%s: its tensors hold %zu blocks, the layer %zu", f->path, l, LLAMA_LINEARS[k].qat,
                         first, (size_t)lin[k]->q->w_scale->numel);
        }
    }

    load_into(f, "output_norm.weight", g->ln_f.w, C, 1);
    config_model_of(&x->cfg->model, &g->cfg);
    snprintf(x->cfg->model.vocab, sizeof x->cfg->model.vocab, "spm");
}

static void load_gguf(void *p) {
    LoadCtx *x = p;
    GgufFile *f = &x->f;
    GPT *g = x->g;
    Vocab *v = x->v;
    Config *cfg = x->cfg;
    char *arch = gguf_get_str(f, "general.architecture");
    bool llama = !strcmp(arch, "llama"), ok = llama || !strcmp(arch, "gpt2");
    if (!ok) qat_fail("%s: general.architecture is %s; qat reads the gpt2 and llama architectures", f->path, arch);
    free(arch);
    if (llama) return load_llama(x);
    int T = (int)gguf_get_u32(f, "gpt2.context_length"), C = (int)gguf_get_u32(f, "gpt2.embedding_length");
    int L = (int)gguf_get_u32(f, "gpt2.block_count"), H = (int)gguf_get_u32(f, "gpt2.attention.head_count");
    if (gguf_get_u32(f, "gpt2.feed_forward_length") != 4u * (uint32_t)C)
        qat_fail("%s: gpt2.feed_forward_length is not 4 x embedding_length, as qat's GPT has", f->path);
    if (fabsf(gguf_get_f32(f, "gpt2.attention.layer_norm_epsilon") - 1e-5f) > 1e-9f)
        qat_fail("%s: gpt2.attention.layer_norm_epsilon is not qat's 1e-5", f->path);
    char *tm = gguf_get_str(f, "tokenizer.ggml.model");
    ok = !strcmp(tm, "gpt2");
    free(tm);
    if (!ok) qat_fail("%s: tokenizer.ggml.model is not gpt2", f->path);
    const GgufKV *merges = gguf_find_kv(f, "tokenizer.ggml.merges"), *toks = gguf_find_kv(f, "tokenizer.ggml.tokens");
    if (merges && merges->n) qat_fail("%s: tokenizer.ggml.merges: a BPE vocabulary; qat reads byte-level ones", f->path);
    if (!toks || toks->type != GGUF_ARRAY || toks->arr_type != GGUF_STRING || toks->n < 2 || toks->n > 257)
        qat_fail("%s: tokenizer.ggml.tokens: expected 2..257 strings (the bytes and <|endoftext|>)", f->path);
    /* the bytes, then <|endoftext|> */
    uint8_t chars[256];
    int V = (int)toks->n - 1;
    for (int i = 0; i <= V; i++) {
        size_t len;
        const char *s = gguf_array_str(f, toks, (uint64_t)i, &len);
        if (i == V) {
            if (len != 13 || memcmp(s, "<|endoftext|>", 13)) qat_fail("%s: the last token is not <|endoftext|>", f->path);
            break;
        }
        const unsigned char *u = (const unsigned char *)s;
        unsigned cp = len == 1 && u[0] < 0x80               ? u[0]
                      : len == 2 && (u[0] & 0xE0) == 0xC0 ? (unsigned)(u[0] & 0x1F) << 6 | (u[1] & 0x3F)
                                                           : 0x110000;
        int b = codepoint_byte(cp);
        if (b < 0 || (i && b <= chars[i - 1]))
            qat_fail("%s: tokenizer.ggml.tokens[%d] is not the next byte of a byte-level vocabulary", f->path, i);
        chars[i] = (uint8_t)b;
    }
    vocab_from_chars(v, chars, V);
    /* the config the file describes; its Linears in q8_0 are q8_0 layers */
    config_defaults(cfg);
    cfg->model.n_layer = L, cfg->model.n_head = H, cfg->model.n_embd = C, cfg->model.block_size = T;
    char origin[4096 + 16];
    snprintf(origin, sizeof origin, "%s:gpt2", f->path);
    if (L < 1 || L > 256 || H < 1 || C < 1 || C > 65536 || T < 1 || T > 65536 || C % H)
        qat_fail("%s: the gpt2 hyperparameters (%d layers, %d heads, width %d, context %d) are no qat GPT", f->path, L, H,
                 C, T);
    /* one block type for every quantized Linear, as a qat model has one format */
    int bt = (int)need_tensor(f, "blk.0.attn_qkv.weight")->type;
    QFormat fmt = x->as_float ? QF_NONE : format_of_type(bt);
    const GgufTensor *out = gguf_find_tensor(f, "output.weight");
    if (x->as_float && out) qat_fail("%s: output.weight: a separate head; qat's gpt ties it to token_embd", f->path);
    if (out && (!format_of_type(out->type) || (fmt && format_of_type(out->type) != fmt)))
        qat_fail("%s: output.weight in ggml type %u: qat ties the head to token_embd, so it reads separate heads only "
                 "as blocks of the Linears' own format", f->path, out->type);
    if (out) fmt = format_of_type(out->type);
    /* a tied embedding in blocks (llama-quantize stores it in q8_0) is a
     * head in blocks, as llama.cpp runs it */
    QFormat ef = x->as_float || out || C % QBLOCK ? QF_NONE : format_of_type(need_tensor(f, "token_embd.weight")->type);
    if (fmt || ef) { /* the blocks' own scales, used as they are (as PTQ's are) */
        config_set(cfg, "quant.format", qformat_name(fmt ? fmt : ef), origin);
        config_set(cfg, "quant.estimator", "lsq", origin);
        bool blocks = format_of_type(bt) != QF_NONE, head = out || ef;
        config_set(cfg, "quant.layers", blocks && head ? "blocks.*, lm_head" : head ? "lm_head" : "blocks.*", origin);
        if (fmt && ef && ef != fmt) config_set(cfg, "quant.overrides.lm_head.format", qformat_name(ef), origin);
    }
    GPTConfig gc = {.vocab_size = V, .n_layer = L, .n_head = H, .n_embd = C, .block_size = T};
    gpt_build(g, &gc, fmt || ef ? &cfg->quant : NULL, origin);
    x->built = true;
    float *emb = tensor_floats(f, need_tensor(f, "token_embd.weight"), C, V + 1);
    memcpy(g->wte->data, emb, (size_t)V * C * sizeof(float));
    free(emb);
    if (ef) { /* the first V rows' blocks: the end-of-text row is qat's own */
        load_scales(f, need_tensor(f, "token_embd.weight"), g->head.q, (size_t)V * C / QBLOCK);
        check_head_blocks(f, "token_embd.weight", g, V, C);
    }
    load_into(f, "position_embd.weight", g->wpe, C, T);
    char nm[96];
    for (int l = 0; l < L; l++) {
        Block *b = &g->blocks[l];
        struct {
            const char *gg;
            Linear *lin;
            int rows, cols;
        } lins[] = {{"attn_qkv", &b->qkv, 3 * C, C}, {"attn_output", &b->proj, C, C}, {"ffn_up", &b->fc, 4 * C, C},
                    {"ffn_down", &b->fc_proj, C, 4 * C}};
        snprintf(nm, sizeof nm, "blk.%d.attn_norm.weight", l), load_into(f, nm, b->ln1.w, C, 1);
        snprintf(nm, sizeof nm, "blk.%d.attn_norm.bias", l), load_into(f, nm, b->ln1.b, C, 1);
        snprintf(nm, sizeof nm, "blk.%d.ffn_norm.weight", l), load_into(f, nm, b->ln2.w, C, 1);
        snprintf(nm, sizeof nm, "blk.%d.ffn_norm.bias", l), load_into(f, nm, b->ln2.b, C, 1);
        for (int k = 0; k < 4; k++) {
            snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, lins[k].gg);
            const GgufTensor *t = need_tensor(f, nm);
            if (!x->as_float && (int)t->type != bt && (format_of_type(t->type) || format_of_type(bt)))
                qat_fail("%s: tensor %s: type %u, blk.0.attn_qkv.weight %u: qat reads files whose Linears share one "
                         "block type (or are all float)", f->path, nm, t->type, bt);
            load_into(f, nm, lins[k].lin->w, lins[k].cols, lins[k].rows);
            if (lins[k].lin->q) load_scales(f, t, lins[k].lin->q, (size_t)lins[k].rows * lins[k].cols / QBLOCK);
            snprintf(nm, sizeof nm, "blk.%d.%s.bias", l, lins[k].gg), load_into(f, nm, lins[k].lin->b, lins[k].rows, 1);
        }
    }
    load_into(f, "output_norm.weight", g->ln_f.w, C, 1);
    load_into(f, "output_norm.bias", g->ln_f.b, C, 1);
    if (out) { /* qat's heads are tied: a separate head must be the embedding's own blocks */
        float *h = tensor_floats(f, out, C, V + 1), *e = xmalloc((size_t)V * C * sizeof(float));
        load_scales(f, out, g->head.q, (size_t)V * C / QBLOCK); /* the first V rows: the end-of-text row is qat's own */
        quant_fake(&g->head.q->w, g->wte->data, V, C, g->head.q->w_scale->data, g->head.q->w_zp ? g->head.q->w_zp->data : NULL, e);
        size_t far = 0;
        for (size_t i = 0; i < (size_t)V * C; i++) far += h[i] != e[i];
        free(h), free(e);
        if (far) qat_fail("%s: output.weight is not token_embd's %s blocks (an untied head; qat's GPT ties them)", f->path,
                          qformat_name(fmt));
    }
}

static void load_vocab_only(void *p) {
    LoadCtx *x = p;
    char *tm = gguf_get_str(&x->f, "tokenizer.ggml.model");
    char got[64];
    snprintf(got, sizeof got, "%s", tm);
    free(tm);
    if (strcmp(got, "llama")) qat_fail("%s: tokenizer.ggml.model is %s; a SentencePiece vocabulary is llama", x->f.path, got);
    load_spm_vocab(&x->f, x->v);
}

void gguf_load_vocab(const char *path, Vocab *v) {
    GgufFile f; /* read before anything is allocated: a bad file fails with nothing to free */
    memset(v, 0, sizeof *v);
    gguf_read(&f, path);
    LoadCtx *x = xcalloc(1, sizeof *x);
    x->v = v, x->f = f;
    char msg[1024];
    bool ok = qat_try(load_vocab_only, x, msg, sizeof msg);
    if (!ok) vocab_free(v);
    gguf_free(&x->f);
    free(x);
    if (!ok) qat_fail("%s", msg);
}

void gguf_load_gpt(const char *path, GPT *g, Vocab *v, Config *cfg, bool as_float) {
    GgufFile f;
    memset(v, 0, sizeof *v);
    gguf_read(&f, path);
    LoadCtx *x = xcalloc(1, sizeof *x);
    x->g = g, x->v = v, x->cfg = cfg, x->as_float = as_float, x->f = f;
    /* a file that fails halfway frees what it built (the fuzz target runs millions) */
    char msg[1024];
    bool ok = qat_try(load_gguf, x, msg, sizeof msg);
    free(x->blocks);
    if (!ok && x->built) gpt_free(g);
    if (!ok) vocab_free(v);
    gguf_free(&x->f);
    free(x);
    if (!ok) qat_fail("%s", msg);
}
