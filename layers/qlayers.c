/* qlayers.c: which Linears are quantized and how (quant.layers globs, global
 * specs, per-layer overrides), their scale parameters, calibration of static
 * activation scales, and freezing. */
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers.h"
#include "quant/ptq.h"

int gpt_linear_names(const GPTConfig *cfg, char (*names)[64], int cap) {
    static const char *parts[] = {"attn.qkv", "attn.proj", "mlp.fc", "mlp.proj"};
    int n = 0;
    for (int l = 0; l < cfg->n_layer; l++)
        for (int p = 0; p < 4; p++)
            if (n < cap) snprintf(names[n++], 64, "blocks.%d.%s", l, parts[p]);
    if (n < cap) snprintf(names[n++], 64, "lm_head");
    return n;
}

static bool selected(const char *layers, const char *name) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", layers);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        while (*tok == ' ') tok++;
        if (fnmatch(tok, name, 0) == 0) return true;
    }
    return false;
}

static QGranularity gran_of(const char *s) {
    return !strcmp(s, "tensor") ? QG_TENSOR : !strcmp(s, "channel") ? QG_CHANNEL : QG_GROUP;
}

static Estimator est_of(const char *s) { return !strcmp(s, "lsq") ? EST_LSQ : !strcmp(s, "clipped") ? EST_CLIPPED : EST_STE; }

static ObserverKind obs_of(const char *s) {
    return !strcmp(s, "ema") ? OBS_EMA : !strcmp(s, "percentile") ? OBS_PERCENTILE : !strcmp(s, "mse") ? OBS_MSE : OBS_MINMAX;
}

/* Checks the quant section against the model's layers; fails naming the key. */
static void check_layers(const QuantConfig *q, char (*names)[64], int n, int n_layer, const char *origin) {
    char all[128];
    snprintf(all, sizeof all, "blocks.0..%d.{attn.qkv,attn.proj,mlp.fc,mlp.proj}, lm_head", n_layer - 1);
    char buf[512];
    snprintf(buf, sizeof buf, "%s", q->layers);
    /* strtok would skip empty entries, and ",,," would quantize nothing */
    for (const char *p = buf;; p++) {
        size_t len = strcspn(p, ","), k = 0;
        while (k < len && p[k] == ' ') k++;
        if (k == len) qat_fail("%s: quant.layers: '%s' has an empty entry (give globs separated by commas)", origin, q->layers);
        p += len;
        if (!*p) break;
    }
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        while (*tok == ' ') tok++;
        bool hit = false;
        for (int i = 0; i < n && !hit; i++) hit = fnmatch(tok, names[i], 0) == 0;
        if (!hit) qat_fail("%s: quant.layers: '%s' matches no layer (layers: %s)", origin, tok, all);
    }
    for (int k = 0; k < q->n_ov; k++) {
        const QuantOverride *o = &q->ov[k];
        bool known = false;
        for (int i = 0; i < n && !known; i++) known = !strcmp(names[i], o->layer);
        if (!known) qat_fail("%s: quant.overrides.%s: unknown layer (layers: %s)", origin, o->layer, all);
        if (!selected(q->layers, o->layer))
            qat_fail("%s: quant.overrides.%s: the layer is not quantized (quant.layers is '%s')", origin, o->layer,
                     q->layers);
    }
}

static const QuantOverride *override_of(const QuantConfig *q, const char *name) {
    for (int k = 0; k < q->n_ov; k++)
        if (!strcmp(q->ov[k].layer, name)) return &q->ov[k];
    return NULL;
}

static Tensor *qparam(Params *p, const char *layer, const char *what, size_t n, bool frozen, float lr_scale) {
    char name[128];
    snprintf(name, sizeof name, "%s.%s", layer, what);
    Tensor *t = params_add(p, name, 1, (int[]){(int)n});
    t->quant_state = true;
    t->no_decay = true;
    t->frozen = frozen;
    t->lr_scale = lr_scale;
    return t;
}

/* Sets up l->q for a selected layer with in_features inputs and out outputs. */
static void qlayer_build(QLayer *ql, Linear *l, Params *p, const QuantConfig *q, const char *name, int in, int out,
                         uint64_t seed, const char *origin) {
    memset(ql, 0, sizeof *ql);
    snprintf(ql->name, sizeof ql->name, "%s", name);
    const QuantOverride *o = override_of(q, name);
    ql->w = (QuantSpec){.bits = q->w_bits, .sym = q->w_sym, .gran = gran_of(q->w_gran), .group = q->w_group};
    if (o && o->bits >= 0) ql->w.bits = o->bits;
    if (o && o->granularity[0]) ql->w.gran = gran_of(o->granularity);
    if (o && o->group_size >= 0) ql->w.group = o->group_size;
    const char *cb = o && o->codebook[0] ? o->codebook : q->w_codebook;
    ql->w.cb = quant_codebook_of(cb);
    /* full range on the even grid where the nibble kernels hold it: layers
     * an override puts at 5..8 bits or on a codebook keep their own grid */
    ql->w.full = !q->w_narrow && quant_full_range_applies(&ql->w);
    if (ql->w.cb == QCB_KMEANS) ql->w.tables = quant_tables_of(q->w_tables);
    const char *bad = quant_tables_invalid(&ql->w);
    if (bad && q->w_bits) qat_fail("%s: quant.weight.tables: %s: %s", origin, name, bad);
    /* the tables (kmeans: filled by qlayer_sync_table; at least one table of 16 for the budget's candidates) */
    ql->lut = xcalloc(quant_n_tables(&ql->w, out, in) * (ql->w.cb && ql->w.bits == 8 ? 256 : 16), sizeof(float));
    if (ql->w.cb == QCB_KMEANS) ql->w.lut = ql->lut;
    int nl;
    if (ql->w.cb && q->w_bits && !quant_levels(&ql->w, &nl))
        qat_fail("%s: quant.%scodebook: %s takes 2..4 or 8 bits; %s has %d", origin,
                 o && o->codebook[0] ? "overrides.<layer>." : "weight.", cb, name, ql->w.bits);
    QFormat fm = qformat_of(o && o->format[0] ? o->format : q->format);
    if (fm) {
        ql->w = quant_spec_of_format(fm);
        ql->a_blocks = !strcmp(q->act_format, "q8_0");
        if (in % QBLOCK)
            qat_fail("%s: quant.format: %s needs input dimensions that are multiples of 32; %s has %d", origin, q->format,
                     name, in);
    }
    if (ql->w.gran == QG_GROUP && ql->w.group > in) /* a group that does not divide in leaves a partial last one */
        qat_fail("%s: quant.%sgroup_size: %d is more than the input dimension %d of %s", origin,
                 o && o->group_size >= 0 ? "overrides.<layer>." : "weight.", ql->w.group, in, name);
    ql->est = est_of(q->estimator);
    size_t ns = quant_n_scales(&ql->w, out, in);
    if (ql->est == EST_LSQ) {
        ql->w_scale = qparam(p, name, "weight_scale", ns, false, q->scale_lr_mult);
        if (!ql->w.sym) ql->w_zp = qparam(p, name, "weight_zero_point", ns, true, q->scale_lr_mult);
        ql->w_mse_init = !strcmp(q->scale_init, "mse");
    }
    ql->a_bits = o && o->act_bits >= 0 ? o->act_bits : q->a_bits;
    if (ql->a_bits) {
        ql->a_dynamic = !strcmp(q->a_gran, "token");
        ql->a = (QuantSpec){.bits = ql->a_bits, .sym = q->a_sym, .gran = ql->a_dynamic ? QG_CHANNEL : QG_TENSOR};
        if (!ql->a_dynamic) {
            ql->a_scale = qparam(p, name, "act_scale", 1, ql->est != EST_LSQ, q->scale_lr_mult);
            if (!q->a_sym) ql->a_zp = qparam(p, name, "act_zero_point", 1, !q->a_learn_zp, q->scale_lr_mult);
            observer_init(&ql->obs, obs_of(q->observer), q->percentile, seed);
        }
    }
    if (q->outlier_threshold >= 0.0f) ql->outlier = qparam(p, name, "outlier_mask", (size_t)in, true, 0.0f);
    if (ql->w.cb == QCB_KMEANS && quant_codebook_bits(ql->w.bits)) {
        /* until k-means or a checkpoint fills it, the table is the normal-float one */
        size_t nt = quant_n_tables(&ql->w, out, in);
        ql->w_table = qparam(p, name, "weight_table", nt << ql->w.bits, q->freeze_table, q->table_lr_mult);
        QuantSpec nf = {.bits = ql->w.bits, .sym = true, .cb = QCB_NF};
        const float *lv = quant_levels(&nf, &nl);
        for (size_t k = 0; k < nt; k++) memcpy(ql->lut + k * nl, lv, (size_t)nl * sizeof(float));
    }
    l->q = ql;
}

void gpt_quant_build(GPT *g, const QuantConfig *q, const char *origin) {
    char names[1024][64];
    int n = gpt_linear_names(&g->cfg, names, 1024);
    check_layers(q, names, n, g->cfg.n_layer, origin);
    g->qlayers = xcalloc((size_t)n, sizeof(QLayer));
    for (int i = 0; i < n; i++) {
        if (!selected(q->layers, names[i])) continue;
        Linear *l;
        if (!strcmp(names[i], "lm_head")) {
            l = &g->head;
        } else {
            Block *b = &g->blocks[atoi(names[i] + 7)];
            const char *part = strchr(names[i] + 7, '.') + 1;
            l = !strcmp(part, "attn.qkv") ? &b->qkv : !strcmp(part, "attn.proj") ? &b->proj : !strcmp(part, "mlp.fc") ? &b->fc : &b->fc_proj;
        }
        int in = l->w->shape[1], out = l->w->shape[0]; /* declared already, finalized later */
        qlayer_build(&g->qlayers[g->n_q], l, &g->params, q, names[i], in, out, 1000 + (uint64_t)i, origin);
        g->n_q++;
    }
    for (int l = 0; l < g->cfg.n_layer; l++) g->blocks[l].kv_bits = q->kv_bits;
}

Linear *gpt_qlayer_linear(GPT *g, const QLayer *q) {
    if (g->head.q == q) return &g->head;
    for (int b = 0; b < g->cfg.n_layer; b++) {
        Block *bl = &g->blocks[b];
        Linear *ls[] = {&bl->qkv, &bl->proj, &bl->fc, &bl->fc_proj};
        for (int k = 0; k < 4; k++)
            if (ls[k]->q == q) return ls[k];
    }
    return NULL;
}

void gpt_quant_init_scales(GPT *g) {
    for (int i = 0; i < g->n_q; i++) {
        QLayer *q = &g->qlayers[i];
        Linear *l = gpt_qlayer_linear(g, q);
        if (q->w_scale && q->w_mse_init)
            ptq_mse_scales(&q->w, l->w->data, l->w->shape[0], l->w->shape[1], q->w_scale->data, q->w_zp ? q->w_zp->data : NULL);
        else if (q->w_scale)
            quant_minmax(&q->w, l->w->data, l->w->shape[0], l->w->shape[1], q->w_scale->data, q->w_zp ? q->w_zp->data : NULL);
        if (q->a_scale) {
            q->a_scale->data[0] = 1.0f;
            if (q->a_zp) q->a_zp->data[0] = 0.0f;
        }
    }
    gpt_quant_init_tables(g);
}

void qlayer_sync_table(QLayer *q) {
    if (!q->w_table) return;
    char what[96];
    snprintf(what, sizeof what, "%s.weight_table", q->name);
    int nl = 1 << q->w.bits;
    for (size_t k = 0; k < q->w_table->numel / (size_t)nl; k++)
        quant_table_sort(q->w_table->data + k * nl, nl, q->lut + k * nl, NULL, what);
}

void gpt_quant_sync_tables(GPT *g) {
    for (int i = 0; i < g->n_q; i++) qlayer_sync_table(&g->qlayers[i]);
}

void qlayer_fit_table(QLayer *q, const Linear *l, uint64_t seed) {
    int rows = l->w->shape[0], cols = l->w->shape[1];
    size_t ns = quant_n_scales(&q->w, rows, cols);
    float *sc = q->w_scale ? q->w_scale->data : xmalloc(ns * sizeof(float)), levels[16];
    if (!q->w_scale) quant_minmax(&q->w, l->w->data, rows, cols, sc, NULL);
    if (!q->w_table && q->w.tables != QG_TENSOR) qat_fail("%s: a spec of several tables without its table tensor", q->name);
    ptq_kmeans_table(&q->w, l->w->data, rows, cols, sc, NULL, seed, q->w_table ? q->w_table->data : levels);
    if (!q->w_scale) free(sc);
    if (q->w_table) {
        qlayer_sync_table(q);
    } else { /* a spec set for the moment (the budget's sensitivities, one table): its lut only */
        char what[96];
        snprintf(what, sizeof what, "%s table", q->name);
        quant_table_sort(levels, 1 << q->w.bits, q->lut, NULL, what);
    }
}

void gpt_quant_init_tables(GPT *g) {
    for (int i = 0; i < g->n_q; i++)
        if (g->qlayers[i].w_table) qlayer_fit_table(&g->qlayers[i], gpt_qlayer_linear(g, &g->qlayers[i]), 7000 + (uint64_t)i);
}

bool gpt_quant_needs_calibration(const GPT *g) {
    for (int i = 0; i < g->n_q; i++)
        if (g->qlayers[i].a_bits && !g->qlayers[i].a_dynamic) return true;
    return false;
}

void gpt_quant_set_mode(GPT *g, QMode mode) {
    for (int i = 0; i < g->n_q; i++) g->qlayers[i].mode = mode;
}

void gpt_quant_freeze(GPT *g) {
    for (int i = 0; i < g->n_q; i++) {
        QLayer *q = &g->qlayers[i];
        if (q->a_scale && q->obs.batches > 0) {
            float zp = 0.0f;
            observer_params(&q->obs, &q->a, &q->a_scale->data[0], &zp);
            if (q->a_zp) q->a_zp->data[0] = zp;
        }
        q->mode = QMODE_QUANT;
    }
}

double gpt_quant_dampen(GPT *g, float lambda) {
    double total = 0.0;
    for (int i = 0; i < g->n_q; i++) {
        QLayer *q = &g->qlayers[i];
        if (q->mode == QMODE_FLOAT) continue;
        Linear *l = gpt_qlayer_linear(g, q);
        int rows = l->w->shape[0], cols = l->w->shape[1];
        float per = lambda / (float)l->w->numel;
        total += per * quant_dampen(&q->w, l->w->data, rows, cols, q->w_scale ? q->w_scale->data : NULL,
                                    q->w_zp ? q->w_zp->data : NULL, per, l->w->grad);
    }
    return total;
}

bool qlayer_exportable(const QLayer *q, char *why, size_t n) {
    if (q->w.fmt && q->a_bits) {
        snprintf(why, n, "%s weights run in llama.cpp, which quantizes activations its own way (set no "
                 "quant.activation.bits)", qformat_name(q->w.fmt));
        return false;
    }
    if (q->w.fmt) return true; /* llama.cpp's blocks: qat export --format gguf */
    if (q->w.cb && (q->a_bits || q->outlier)) {
        snprintf(why, n, "%s codebook weights run on the weight-only table kernels: float activations, no outlier split",
                 quant_codebook_name(q->w.cb));
        return false;
    }
    if (!q->w.sym || q->w.gran == QG_TENSOR) {
        snprintf(why, n, "no integer kernel for int%d %s %s weights (kernels: symmetric, per channel or group)", q->w.bits,
                 q->w.sym ? "symmetric" : "asymmetric", q->w.gran == QG_TENSOR ? "per-tensor" : "grouped");
        return false;
    }
    if (q->a_bits && !(q->a_bits == 8 && q->a.sym && q->w.bits > 4 && (q->a_dynamic || q->a_scale))) {
        snprintf(why, n,
                 "no integer kernel for int%d %s%s activations with int%d weights (kernels: int8 symmetric, per token "
                 "or static per tensor, with int5..int8 weights)",
                 q->a_bits, q->a.sym ? "" : "asymmetric ", q->a_dynamic ? "per-token" : "static", q->w.bits);
        return false;
    }
    if (q->outlier && q->a_bits != 8) {
        snprintf(why, n, "the outlier split runs on the W8A8 kernel; it needs int8 activations");
        return false;
    }
    return true;
}

void qlayer_to_qmatrix(GPT *g, const QLayer *q, QMatrix *out) {
    const Linear *l = gpt_qlayer_linear(g, q);
    qlayer_sync_table(&g->qlayers[q - g->qlayers]); /* this layer's lut, as its table is now */
    int rows = l->w->shape[0], cols = l->w->shape[1];
    char why[256];
    if (!qlayer_exportable(q, why, sizeof why)) qat_fail("%s: %s", q->name, why);
    int group = q->w.gran == QG_CHANNEL ? cols : q->w.group;
    if (q->w.fmt) {
        /* the very codes and half-precision scales the forward used: q8_0
         * as they are, q4_0 down to -8, q4_1's codes as q - 8 with the
         * block's minimum + 8 d as an offset, iq4_nl's indices into a table
         * matrix of its levels (with q8_0 activations, the int32 dots of
         * llama.cpp's iq4_nl x q8_0) */
        size_t n = (size_t)rows * cols, nb = n / QBLOCK;
        int8_t *codes = xmalloc(n);
        float *sc = xmalloc(nb * sizeof(float)), *off = q->w.fmt == QF_Q4_1 ? xmalloc(nb * sizeof(float)) : NULL, tmp[QBLOCK];
        int c[QBLOCK], shift = q->w.fmt == QF_Q8_0 || q->w.fmt == QF_IQ4_NL ? 0 : 8;
        for (size_t b = 0; b < nb; b++) {
            const float *wb = l->w->data + b * QBLOCK;
            float m = 0.0f;
            if (q->w_scale) {
                m = q->w_zp ? fp16_round(q->w_zp->data[b]) : 0.0f;
                block_fake_scaled(q->w.fmt, wb, q->w_scale->data[b], m, tmp, c);
                sc[b] = fp16_round(q->w_scale->data[b]);
            } else {
                block_fake(q->w.fmt, wb, tmp, c, &sc[b], &m);
            }
            if (off) off[b] = m + 8.0f * sc[b];
            for (int j = 0; j < QBLOCK; j++) codes[b * QBLOCK + (size_t)j] = (int8_t)(c[j] - shift);
        }
        /* with llama.cpp's q8_0 activations the products are integer dots of
         * weight codes and activation codes per block (W8A8, W4A8), scaled
         * by both blocks' scales */
        if (q->w.fmt == QF_IQ4_NL) {
            float lut[16];
            for (int i = 0; i < 16; i++) lut[i] = (float)IQ4NL_LEVELS[i];
            qmatrix_from_lut(out, (const uint8_t *)codes, rows, cols, QBLOCK, sc, lut, 16);
        } else {
            qmatrix_from_codes(out, codes, rows, cols, q->w.fmt == QF_Q8_0 ? 8 : 4, QBLOCK, sc, off);
        }
        if (q->a_blocks) {
            out->act_q8_0 = true;
            if (out->bits == 8 && !out->p8) qmatrix_pack_w8a8(out);
        }
        free(codes), free(sc), free(off);
        return;
    }
    int nl;
    const float *lv = quant_levels(&q->w, &nl);
    if (lv) { /* each weight's level index into a table matrix; the scales as the forward used them */
        size_t ns = quant_n_scales(&q->w, rows, cols);
        float *sc = xmalloc(ns * sizeof(float));
        if (q->w_scale) memcpy(sc, q->w_scale->data, ns * sizeof(float));
        else quant_minmax(&q->w, l->w->data, rows, cols, sc, NULL);
        uint8_t *idx = xmalloc((size_t)rows * cols);
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++) {
                size_t k = quant_scale_index(&q->w, cols, r, c);
                float s = sc[k], inv = s > 0.0f ? 1.0f / s : 0.0f;
                const float *lt = quant_levels_at(&q->w, quant_table_of_scale(&q->w, cols, k), &nl);
                idx[(size_t)r * cols + c] = (uint8_t)quant_level_index(lt, nl, l->w->data[(size_t)r * cols + c] * inv);
            }
        qmatrix_from_luts(out, idx, rows, cols, group, sc, lv, nl, q->w.cb == QCB_KMEANS ? q->w.tables : QG_TENSOR);
        free(sc), free(idx);
        return;
    }
    qmatrix_from_weights(out, l->w->data, rows, cols, &q->w, q->w_scale ? q->w_scale->data : NULL);
    if (q->outlier) {
        int32_t *fc = xmalloc((size_t)cols * sizeof(int32_t));
        int n = 0;
        for (int j = 0; j < cols; j++)
            if (q->outlier->data[j] > 0.0f) fc[n++] = j;
        qmatrix_set_float_cols(out, l->w->data, fc, n);
        free(fc);
    }
    if (q->a_bits == 8) {
        qmatrix_pack_w8a8(out);
        out->act_static = !q->a_dynamic;
        out->act_scale = q->a_dynamic ? 0.0f : q->a_scale->data[0];
    }
}

void gpt_quant_free(GPT *g) {
    for (int i = 0; i < g->n_q; i++) {
        observer_free(&g->qlayers[i].obs);
        free(g->qlayers[i].lut);
    }
    free(g->qlayers);
    g->qlayers = NULL;
    g->n_q = 0;
}
