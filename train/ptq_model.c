/* ptq_model.c: qat ptq: block-by-block calibration of a float GPT, the
 * per-method treatment of each block's Linears (see ptq_model.h), and the
 * checkpoint it writes. */
#include "ptq_model.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "quant/ptq.h"
#include "util/progress.h"
#include "format/checkpoint.h"
#include "train/teacher.h"

static const char *METHODS[] = {"rtn", "gptq", "awq", "smoothquant", "outlier"};

void ptq_options_default(PtqOptions *o) {
    memset(o, 0, sizeof *o);
    snprintf(o->method, sizeof o->method, "rtn");
    o->bits = 4;
    o->group = 32;
    o->sym = true;
    snprintf(o->codebook, sizeof o->codebook, "none");
    snprintf(o->tables, sizeof o->tables, "layer");
    o->calib_batches = 4;
    o->seed = 1234;
    o->damp = 0.01f;
    o->block = 128;
    o->clip = true;
    o->awq_grid = 20;
    o->alpha = 0.5f;
    o->threshold = 6.0f;
    snprintf(o->layers, sizeof o->layers, "blocks.*");
    snprintf(o->budget_bits, sizeof o->budget_bits, "2,3,4,8");
    snprintf(o->budget_groups, sizeof o->budget_groups, "32,64,128,channel");
    snprintf(o->budget_codebooks, sizeof o->budget_codebooks, "none");
    o->budget_calib_batches = 4;
}

void ptq_options_finish(PtqOptions *o, bool bits_set, bool group_set, bool act_set, const char *origin) {
    bool known = false, sym_set = o->sym_set;
    for (size_t i = 0; i < sizeof METHODS / sizeof *METHODS; i++) known |= !strcmp(o->method, METHODS[i]);
    if (!known) qat_fail("%s: method: '%s' is not one of rtn, gptq, awq, smoothquant, outlier", origin, o->method);
    bool w8a8 = !strcmp(o->method, "smoothquant") || !strcmp(o->method, "outlier");
    if (w8a8) {
        if (!bits_set) o->bits = 8;
        if (!group_set) o->group = -1;
        if (!act_set) snprintf(o->act, sizeof o->act, "%s", !strcmp(o->method, "smoothquant") ? "tensor" : "token");
        if (!o->act[0]) qat_fail("%s: %s: quantizes activations; --act must be token or tensor", origin, o->method);
    }
    if (o->bits < 2 || o->bits > 8) qat_fail("%s: bits: expected 2..8, got %d", origin, o->bits);
    if (o->group < -1) qat_fail("%s: group: expected a group size > 0, -1 (per channel) or 0 (per tensor), got %d", origin, o->group);
    if (o->act[0] && strcmp(o->act, "token") && strcmp(o->act, "tensor"))
        qat_fail("%s: act: expected token or tensor, got '%s'", origin, o->act);
    if (o->calib_batches < 1) qat_fail("%s: calib-batches: expected >= 1, got %d", origin, o->calib_batches);
    if (!(o->damp > 0.0f && o->damp <= 1.0f)) qat_fail("%s: damp: expected (0, 1], got %g", origin, o->damp);
    if (o->block < 1) qat_fail("%s: block: expected >= 1, got %d", origin, o->block);
    if (o->awq_grid < 0 || o->awq_grid > 1000) qat_fail("%s: awq-grid: expected 0..1000, got %d", origin, o->awq_grid);
    if (!(o->alpha >= 0.0f && o->alpha <= 1.0f) && o->alpha != -1.0f)
        qat_fail("%s: alpha: expected [0, 1] or auto, got %g", origin, o->alpha);
    if (!(o->threshold >= 0.0f)) qat_fail("%s: threshold: expected >= 0, got %g", origin, o->threshold);
    if (o->budget > 0.0f && (w8a8 || o->act[0]))
        qat_fail("%s: budget: mixed precision is for weight-only methods (rtn, gptq, awq)", origin);
    if (o->act_format[0] && strcmp(o->act_format, "q8_0"))
        qat_fail("%s: act-format: expected q8_0 (llama.cpp's activation blocks) or none, got '%s'", origin, o->act_format);
    if (o->act_format[0] && !o->format[0]) qat_fail("%s: act-format: simulates llama.cpp's products; it needs --format", origin);
    if ((int)quant_codebook_of(o->codebook) < 0) qat_fail("%s: codebook: expected none, nf or kmeans, got '%s'", origin, o->codebook);
    if ((int)quant_tables_of(o->tables) < 0) qat_fail("%s: tables: expected layer, channel or group, got '%s'", origin, o->tables);
    if (strcmp(o->tables, "layer") && strcmp(o->codebook, "kmeans"))
        qat_fail("%s: tables: %s: tables per channel or group are kmeans tables (--codebook is %s)", origin, o->tables,
                 o->codebook);
    if (!strcmp(o->tables, "group") && o->group <= 0)
        qat_fail("%s: tables: group: a table per scale group needs --group N", origin);
    if (o->table_unweighted && strcmp(o->codebook, "kmeans"))
        qat_fail("%s: table-unweighted: only a kmeans codebook fits a table (--codebook is %s)", origin, o->codebook);
    if (strcmp(o->codebook, "none") && (!quant_codebook_bits(o->bits) || !o->sym || o->group == 0 || o->format[0] || w8a8 || o->act[0] ||
                                        o->budget > 0.0f))
        qat_fail("%s: codebook: %s takes 2..4 or 8 bits, symmetric, per channel or group, weight-only methods (rtn, gptq, "
                 "awq) without --format, --act or --budget (whose candidates are --budget-codebooks)", origin, o->codebook);
    if (o->full && (!o->sym || o->bits > 4 || strcmp(o->codebook, "none") || o->format[0] || w8a8 || o->act[0] ||
                    o->group == 0))
        qat_fail("%s: full-range: the code -2^(b-1) is for the symmetric even grid at 2..4 bits, per channel or group, "
                 "weight-only methods (rtn, gptq, awq) without --codebook, --format or --act", origin);
    if (!o->format[0]) return;
    QFormat f = qformat_of(o->format);
    if (!f) qat_fail("%s: format: expected q8_0, q4_0, q4_1 or iq4_nl (llama.cpp's blocks) or none, got '%s'", origin, o->format);
    if (w8a8 || o->act[0] || o->budget > 0.0f)
        qat_fail("%s: format: llama.cpp's blocks are weight-only, one format for every layer: methods rtn, gptq or awq, "
                 "without --act or --budget", origin);
    QuantSpec fs = quant_spec_of_format(f);
    const char *clash = bits_set && o->bits != fs.bits ? "bits" : group_set && o->group != QBLOCK ? "group"
                        : sym_set && o->sym != fs.sym ? (fs.sym ? "asym" : "sym") : NULL;
    if (clash) qat_fail("%s: --%s contradicts --format %s (which is %d bits in groups of 32, %s); leave it out", origin,
                        clash, o->format, fs.bits, fs.sym ? "symmetric" : "asymmetric");
    o->bits = fs.bits, o->group = QBLOCK, o->sym = fs.sym;
}

bool ptq_option_is_flag(const char *a) {
    return !strcmp(a, "--sym") || !strcmp(a, "--asym") || !strcmp(a, "--act-order") || !strcmp(a, "--no-clip") ||
           !strcmp(a, "--json") || !strcmp(a, "--table-unweighted") || !strcmp(a, "--full-range");
}

void ptq_options_parse(PtqOptions *o, int argc, char **argv, const char *origin) {
    ptq_options_default(o);
    bool bits_set = false, group_set = false, act_set = false;
    char opt[128];
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (i == 0 && a[0] != '-') { /* "gptq --bits 4": the method as the first word */
            snprintf(o->method, sizeof o->method, "%s", a);
            continue;
        }
        if (!ptq_option_is_flag(a) && a[0] == '-' && i + 1 >= argc) qat_fail("%s: %s: missing value", origin, a);
        const char *v = ptq_option_is_flag(a) ? NULL : argv[i + 1];
        snprintf(opt, sizeof opt, "%s: %s", origin, a);
        if (!strcmp(a, "--method")) snprintf(o->method, sizeof o->method, "%s", v);
        else if (!strcmp(a, "--bits")) o->bits = (int)util_parse_long(opt, v, 2, 8), bits_set = true;
        else if (!strcmp(a, "--group")) {
            o->group = !strcmp(v, "channel") ? -1 : !strcmp(v, "tensor") ? 0 : (int)util_parse_long(opt, v, -1000000, 65536);
            group_set = true;
        } else if (!strcmp(a, "--sym")) o->sym = true, o->sym_set = true;
        else if (!strcmp(a, "--asym")) o->sym = false, o->sym_set = true;
        else if (!strcmp(a, "--format")) xsnprintf(o->format, sizeof o->format, opt, "%s", strcmp(v, "none") ? v : "");
        else if (!strcmp(a, "--codebook")) xsnprintf(o->codebook, sizeof o->codebook, opt, "%s", v);
        else if (!strcmp(a, "--tables")) xsnprintf(o->tables, sizeof o->tables, opt, "%s", v);
        else if (!strcmp(a, "--act-format")) xsnprintf(o->act_format, sizeof o->act_format, opt, "%s", strcmp(v, "none") ? v : "");
        else if (!strcmp(a, "--act")) {
            snprintf(o->act, sizeof o->act, "%s", strcmp(v, "none") ? v : "");
            act_set = true;
        } else if (!strcmp(a, "--calib-batches")) o->calib_batches = (int)util_parse_long(opt, v, 1, 100000);
        else if (!strcmp(a, "--seed")) o->seed = (uint64_t)util_parse_long(opt, v, 0, 0x7fffffffffffffffL);
        else if (!strcmp(a, "--calib-data")) snprintf(o->calib_data, sizeof o->calib_data, "%s", v);
        else if (!strcmp(a, "--layers")) snprintf(o->layers, sizeof o->layers, "%s", v);
        else if (!strcmp(a, "--damp")) o->damp = util_parse_float(opt, v, 0.0f);
        else if (!strcmp(a, "--block")) o->block = (int)util_parse_long(opt, v, 1, 65536);
        else if (!strcmp(a, "--act-order")) o->act_order = true;
        else if (!strcmp(a, "--awq-grid")) o->awq_grid = (int)util_parse_long(opt, v, 0, 1000);
        else if (!strcmp(a, "--no-clip")) o->clip = false;
        else if (!strcmp(a, "--full-range")) o->full = true;
        else if (!strcmp(a, "--table-unweighted")) o->table_unweighted = true;
        else if (!strcmp(a, "--alpha")) o->alpha = !strcmp(v, "auto") ? -1.0f : util_parse_float(opt, v, 0.0f);
        else if (!strcmp(a, "--threshold")) o->threshold = util_parse_float(opt, v, 0.0f);
        else if (!strcmp(a, "--budget")) o->budget = util_parse_float(opt, v, 0.0f);
        else if (!strcmp(a, "--budget-bits")) xsnprintf(o->budget_bits, sizeof o->budget_bits, opt, "%s", v);
        else if (!strcmp(a, "--budget-groups")) xsnprintf(o->budget_groups, sizeof o->budget_groups, opt, "%s", v);
        else if (!strcmp(a, "--budget-codebooks")) xsnprintf(o->budget_codebooks, sizeof o->budget_codebooks, opt, "%s", v);
        else if (!strcmp(a, "--budget-calib-batches")) o->budget_calib_batches = (int)util_parse_long(opt, v, 1, 100000);
        else qat_fail("%s: unknown option '%s' (see qat ptq --help)", origin, a);
        if (v) i++;
    }
    ptq_options_finish(o, bits_set, group_set, act_set, origin);
}

void ptq_describe(const PtqOptions *o, char *buf, size_t n) {
    char g[24];
    if (o->group > 0) snprintf(g, sizeof g, "g%d", o->group);
    else snprintf(g, sizeof g, "%s", o->group < 0 ? "channel" : "tensor");
    int k = o->format[0]       ? snprintf(buf, n, "%s %s%s", o->method, o->format, o->act_format[0] ? " (q8_0 activations)" : "")
            : o->budget > 0.0f ? snprintf(buf, n, "%s %s", o->method, o->sym ? "sym" : "asym") /* bits per layer */
            : strcmp(o->codebook, "none") ? snprintf(buf, n, "%s %s%d %s%s%s", o->method, o->codebook, o->bits, g,
                                                     strcmp(o->tables, "layer") ? ", tables per " : "",
                                                     strcmp(o->tables, "layer") ? o->tables : "")
                               : snprintf(buf, n, "%s int%d %s %s", o->method, o->bits, g,
                                          o->full ? "sym full range" : o->sym ? "sym" : "asym");
    if (o->act[0] && k < (int)n) k += snprintf(buf + k, n - (size_t)k, ", int8 activations per %s", o->act);
    if (!strcmp(o->method, "gptq") && k < (int)n)
        k += snprintf(buf + k, n - (size_t)k, ", damp %g, block %d%s", o->damp, o->block, o->act_order ? ", act_order" : "");
    if (!strcmp(o->method, "awq") && k < (int)n) k += snprintf(buf + k, n - (size_t)k, ", grid %d%s", o->awq_grid, o->clip ? ", clip" : "");
    if (!strcmp(o->method, "smoothquant") && k < (int)n) k += o->alpha < 0.0f ? snprintf(buf + k, n - (size_t)k, ", alpha searched per layer")
                                                                      : snprintf(buf + k, n - (size_t)k, ", alpha %g", o->alpha);
    if (!strcmp(o->method, "outlier") && k < (int)n) k += snprintf(buf + k, n - (size_t)k, ", threshold %g", o->threshold);
    if (o->budget > 0.0f && k < (int)n)
        k += snprintf(buf + k, n - (size_t)k, ", mixed precision within %g bits per weight (bits %s, groups %s%s%s)",
                      o->budget, o->budget_bits, o->budget_groups, strcmp(o->budget_codebooks, "none") ? ", codebooks " : "",
                      strcmp(o->budget_codebooks, "none") ? o->budget_codebooks : "");
    if (k < (int)n) snprintf(buf + k, n - (size_t)k, "; %d calibration batches, seed %llu", o->calib_batches, (unsigned long long)o->seed);
}

void ptq_quant_config(const PtqOptions *o, QuantConfig *q) {
    q->w_bits = o->bits;
    snprintf(q->w_gran, sizeof q->w_gran, "%s", o->group > 0 ? "group" : o->group < 0 ? "channel" : "tensor");
    if (o->group > 0) q->w_group = o->group;
    q->w_sym = o->sym;
    q->w_narrow = !o->full;
    snprintf(q->format, sizeof q->format, "%s", o->format[0] ? o->format : "none");
    snprintf(q->w_codebook, sizeof q->w_codebook, "%s", o->codebook);
    snprintf(q->w_tables, sizeof q->w_tables, "%s", o->tables);
    snprintf(q->act_format, sizeof q->act_format, "%s", o->act_format[0] ? o->act_format : "none");
    q->a_bits = o->act[0] ? 8 : 0;
    if (o->act[0]) snprintf(q->a_gran, sizeof q->a_gran, "%s", o->act);
    q->a_sym = true;
    q->a_learn_zp = false;
    q->kv_bits = 0;
    snprintf(q->estimator, sizeof q->estimator, "lsq"); /* = scales are parameters, stored and used as they are */
    snprintf(q->layers, sizeof q->layers, "%s", o->layers);
    q->init_from[0] = '\0';
    q->n_ov = 0;
    q->freeze_step = 0;
    q->calib_batches = o->calib_batches;
    q->outlier_threshold = !strcmp(o->method, "outlier") ? o->threshold : -1.0f;
}

int32_t *ptq_calib_windows(const int32_t *train, size_t n_train, int n_seq, int T, uint64_t seed) {
    if (n_train < (size_t)T + 1) qat_fail("ptq: the training split has %zu tokens, fewer than block_size+1 = %d", n_train, T + 1);
    Rng rng;
    rng_seed(&rng, seed);
    int32_t *w = xmalloc((size_t)n_seq * T * sizeof(int32_t));
    for (int s = 0; s < n_seq; s++) {
        size_t start = rng_below(&rng, (uint32_t)(n_train - (size_t)T));
        memcpy(w + (size_t)s * T, train + start, (size_t)T * sizeof(int32_t));
    }
    return w;
}

#define PTQ_SAMPLE 4096 /* calibration rows kept for searches on real outputs */
#define PTQ_CHUNK 8 /* sequences per block forward: bounds the tape's memory */

/* One pass of block b over the calibration activations, in chunks of
 * sequences. X [n_seq, T, C] holds the block's inputs; A (attention outputs,
 * the input of attn.proj) and X1 (the residual after attention) are kept
 * between the passes of GPTQ's layer-by-layer order so no pass recomputes
 * more than it must:
 *   PASS_ALL   inputs of all four Linears from X (stats[k] where set)
 *   PASS_QKV   ln1(X)                          -> stats[0]
 *   PASS_PROJ  A = attention(qkv(ln1(X)))      -> stats[1], A stored
 *   PASS_FC    X1 = X + proj(A); ln2(X1)       -> stats[2], X1 stored
 *   PASS_MLP   act(fc(ln2(X1)))                -> stats[3] (GELU or SwiGLU)
 *   PASS_OUT   Y = X1 + mlp(X1)  (from_x1) or the whole block from X
 * Linears in QMODE_QUANT run fake-quantized, so every input seen comes through
 * the layers already quantized. */
typedef enum { PASS_ALL, PASS_QKV, PASS_PROJ, PASS_FC, PASS_MLP, PASS_OUT } Pass;

typedef struct BlockBufs {
    float *X, *A, *X1, *Y; /* [n_seq, T, C] each */
} BlockBufs;

static void add_stats(PtqStats *st, const Tensor *x) {
    if (st) ptq_stats_add(st, x->data, x->numel / (size_t)x->shape[x->ndim - 1]);
}

static void block_pass(GPT *g, Tape *t, int b, BlockBufs *bb, Pass pass, bool from_x1, PtqStats *stats[4], int n_seq,
                       int T) {
    int C = g->cfg.n_embd;
    Block *bl = &g->blocks[b];
    size_t per = (size_t)T * C;
    for (int s0 = 0; s0 < n_seq; s0 += PTQ_CHUNK) {
        int ns = n_seq - s0 < PTQ_CHUNK ? n_seq - s0 : PTQ_CHUNK;
        size_t off = s0 * per, bytes = (size_t)ns * per * sizeof(float);
        int shape[3] = {ns, T, C};
        tape_reset(t);
        Tensor *x = tensor_from(t, 3, shape, bb->X + off), *x1 = NULL, *att = NULL;
        if (pass == PASS_FC) att = tensor_from(t, 3, shape, bb->A + off);
        if (pass == PASS_MLP || (pass == PASS_OUT && from_x1)) x1 = tensor_from(t, 3, shape, bb->X1 + off);
        if (pass == PASS_ALL || pass == PASS_QKV || pass == PASS_PROJ || (pass == PASS_OUT && !from_x1)) {
            Tensor *h = layernorm_forward(t, &bl->ln1, x);
            add_stats(stats[0], h);
            if (pass == PASS_QKV) continue;
            att = attention_core(t, bl, linear_forward(t, &bl->qkv, h));
            add_stats(stats[1], att);
            if (pass == PASS_PROJ) {
                memcpy(bb->A + off, att->data, bytes);
                continue;
            }
        }
        if (!x1) x1 = op_add(t, x, linear_forward(t, &bl->proj, att));
        if (pass == PASS_FC) memcpy(bb->X1 + off, x1->data, bytes);
        Tensor *h2 = layernorm_forward(t, &bl->ln2, x1);
        add_stats(stats[2], h2);
        if (pass == PASS_FC) continue;
        Tensor *m = mlp_activation(t, bl, linear_forward(t, &bl->fc, h2));
        add_stats(stats[3], m);
        if (pass != PASS_OUT) continue;
        Tensor *y = op_add(t, x1, linear_forward(t, &bl->fc_proj, m));
        memcpy(bb->Y + off, y->data, bytes);
    }
    tape_reset(t);
}

/* The quantized layer's static activation scale, from the calibration
 * maximum of its (rescaled by 1/s_in when folded) inputs. */
static void set_act_scale(QLayer *q, const PtqStats *st, const float *s_in) {
    if (!q->a_scale) return;
    float amax = 0.0f;
    for (int j = 0; j < st->cols; j++) amax = fmaxf(amax, st->absmax[j] / (s_in ? s_in[j] : 1.0f));
    quant_params_from_range(&q->a, -amax, amax, &q->a_scale->data[0], NULL);
}

static float *hessian_of(const PtqStats *st) {
    float *H = xmalloc((size_t)st->cols * st->cols * sizeof(float));
    ptq_hessian(st, H);
    return H;
}

/* Round-to-nearest output error of w under the layer's spec. */
static double rtn_error(const QLayer *q, const float *w, int rows, int cols, const float *H) {
    size_t ns = quant_n_scales(&q->w, rows, cols);
    float *sc = xmalloc(ns * sizeof(float)), *zp = xmalloc(ns * sizeof(float));
    float *wq = xmalloc((size_t)rows * cols * sizeof(float));
    ptq_rtn(&q->w, w, rows, cols, sc, zp, wq);
    double e = ptq_output_error(w, wq, rows, cols, H);
    free(sc), free(zp), free(wq);
    return e;
}

static float *zp_of(QLayer *q) { return q->w_zp ? q->w_zp->data : NULL; }

/* Divides a LayerNorm's (or RMSNorm's) affine parameters by s: its outputs
 * become x / s. */
static void fold_into_layernorm(LayerNorm *ln, const float *s, int C) {
    for (int j = 0; j < C; j++) {
        ln->w->data[j] /= s[j];
        if (ln->b) ln->b->data[j] /= s[j];
    }
}

/* Divides rows first.. first+n of a Linear (and their biases) by s: outputs
 * that pass linearly into the next layer's input become out / s. */
static void fold_into_rows(Linear *l, int first, const float *s, int n) {
    int cols = l->w->shape[1];
    for (int j = 0; j < n; j++) {
        float *row = l->w->data + (size_t)(first + j) * cols;
        for (int k = 0; k < cols; k++) row[k] /= s[j];
        if (l->b) l->b->data[first + j] /= s[j];
    }
}

/* Which earlier op the input scales of layer k (qkv, attn.proj, mlp.fc,
 * mlp.proj) fold into, if any: the norms; the value rows of qkv (the
 * attention output is a convex combination of values, one per query head,
 * so only without grouped-query sharing); SwiGLU's up rows (silu(g) * u is
 * linear in u). GELU passes no scale. */
static bool fold_target(const Block *b, int k) {
    return k == 0 || k == 2 || (k == 1 && b->n_kv_head == b->n_head) || (k == 3 && b->swiglu);
}

static void fold_input_scales(Block *b, int k, const float *s, int C) {
    if (k == 0) fold_into_layernorm(&b->ln1, s, C);
    else if (k == 1) fold_into_rows(&b->qkv, 2 * C, s, C);
    else if (k == 2) fold_into_layernorm(&b->ln2, s, C);
    else fold_into_rows(&b->fc, b->fc.w->shape[0] / 2, s, b->fc.w->shape[0] / 2);
}

/* Outlier split: input features above the threshold stay float. */
static int set_outliers(QLayer *q, const PtqStats *st, float threshold) {
    int n = 0;
    for (int j = 0; j < st->cols; j++) {
        bool out = st->absmax[j] > threshold;
        q->outlier->data[j] = out ? 1.0f : 0.0f;
        n += out;
    }
    return n;
}

typedef struct BlockLayers {
    Linear *l[4];
    QLayer *q[4];
    PtqStats st[4];
    float *H[4];
    float *s_in[4]; /* input scales folded into the previous op, or NULL */
} BlockLayers;

/* kmeans: the layer's table fitted to its weights as they are now, over
 * their min-max scales, each weight counted by its column's diagonal of H
 * (H NULL or --table-unweighted: all alike). */
static void fit_table_over(QLayer *q, const Linear *l, const float *H, const PtqOptions *o, const float *scales) {
    if (!q->w_table) return;
    int rows = l->w->shape[0], cols = l->w->shape[1];
    size_t ns = quant_n_scales(&q->w, rows, cols);
    float *sc = xmalloc(ns * sizeof(float)), *wt = H && !o->table_unweighted ? xmalloc((size_t)cols * sizeof(float)) : NULL;
    if (scales) memcpy(sc, scales, ns * sizeof(float));
    else quant_minmax(&q->w, l->w->data, rows, cols, sc, NULL);
    for (int c = 0; wt && c < cols; c++) wt[c] = H[(size_t)c * cols + c];
    uint64_t seed = o->seed;
    for (const char *p = q->name; *p; p++) seed = seed * 131 + (unsigned char)*p; /* each layer its own draw */
    ptq_kmeans_table(&q->w, l->w->data, rows, cols, sc, wt, seed, q->w_table->data);
    qlayer_sync_table(q);
    free(sc), free(wt);
}
static void fit_table(QLayer *q, const Linear *l, const float *H, const PtqOptions *o) { fit_table_over(q, l, H, o, NULL); }

static void gptq_layer(QLayer *q, Linear *l, const PtqOptions *o, const float *H, PtqLayerReport *rep) {
    int rows = l->w->shape[0], cols = l->w->shape[1];
    fit_table(q, l, H, o);
    size_t n = (size_t)rows * cols;
    float *w0 = xmalloc(n * sizeof(float));
    memcpy(w0, l->w->data, n * sizeof(float));
    rep->err_rtn = rtn_error(q, w0, rows, cols, H);
    GptqOptions go = {.damp = o->damp, .block = o->block, .act_order = o->act_order};
    ptq_gptq(&q->w, l->w->data, rows, cols, H, &go, q->w_scale->data, zp_of(q), q->name);
    rep->err = ptq_output_error(w0, l->w->data, rows, cols, H);
    free(w0);
}

/* awq, smoothquant, rtn, outlier: one calibration pass per block, then the
 * block's scales are searched and folded, then each layer quantized. */
static void block_method(GPT *g, int b, BlockLayers *bl, const PtqOptions *o, PtqLayerReport *rep[4]) {
    int C = g->cfg.n_embd;
    Block *blk = &g->blocks[b];
    bool awq = !strcmp(o->method, "awq"), smooth = !strcmp(o->method, "smoothquant");
    for (int k = 0; k < 4; k++)
        if (bl->q[k]) fit_table(bl->q[k], bl->l[k], bl->H[k], o);
    for (int k = 0; k < 4; k++)
        if (bl->q[k]) rep[k]->err_rtn = rtn_error(bl->q[k], bl->l[k]->w->data, bl->l[k]->w->shape[0], bl->l[k]->w->shape[1], bl->H[k]);
    if (awq || smooth) {
        float grid[1001];
        for (int i = 0; i <= o->awq_grid; i++) grid[i] = o->awq_grid ? (float)i / (float)o->awq_grid : 0.0f;
        float sgrid[21];
        for (int i = 0; i <= 20; i++) sgrid[i] = (float)i / 20.0f;
        /* the layers whose input scales fold into an earlier op (fold_target);
         * the others keep s = 1 */
        for (int k = 0; k < 4; k++) {
            QLayer *q = bl->q[k];
            if (!q || !fold_target(blk, k)) continue;
            Linear *l = bl->l[k];
            int rows = l->w->shape[0], cols = l->w->shape[1];
            float *s = bl->s_in[k] = xmalloc((size_t)cols * sizeof(float));
            if (awq)
                rep[k]->awq_alpha = ptq_awq_search(&q->w, l->w->data, rows, cols, bl->H[k], bl->st[k].abssum, bl->st[k].n, grid,
                                                   o->awq_grid + 1, s);
            else if (o->alpha >= 0.0f)
                ptq_smooth_scales(bl->st[k].absmax, l->w->data, rows, cols, rep[k]->awq_alpha = o->alpha, s);
            else
                rep[k]->awq_alpha = ptq_smooth_search(&q->w, &q->a, !q->a_dynamic, bl->st[k].absmax, l->w->data, rows, cols,
                                                      bl->st[k].sample, bl->st[k].n_sample, sgrid, 21, s);
            ptq_scale_cols(l->w->data, rows, cols, s);
            ptq_hessian_unscale(bl->H[k], cols, s);
            fold_input_scales(blk, k, s, C);
            fit_table(q, l, bl->H[k], o); /* the table of the scaled weights */
        }
    }
    for (int k = 0; k < 4; k++) {
        QLayer *q = bl->q[k];
        if (!q) continue;
        Linear *l = bl->l[k];
        int rows = l->w->shape[0], cols = l->w->shape[1];
        if (q->outlier) {
            rep[k]->outliers = set_outliers(q, &bl->st[k], o->threshold);
            /* the integer part sees the other features only */
            float *wm = xmalloc((size_t)rows * cols * sizeof(float));
            for (size_t i = 0; i < (size_t)rows * cols; i++) wm[i] = q->outlier->data[i % (size_t)cols] > 0.0f ? 0.0f : l->w->data[i];
            ptq_rtn(&q->w, wm, rows, cols, q->w_scale->data, zp_of(q), NULL);
            free(wm);
        } else if (awq && o->clip) {
            ptq_clip_search(&q->w, l->w->data, rows, cols, bl->H[k], q->w_scale->data, zp_of(q));
            if (q->w_table) { /* the table refitted over the clipped ranges, then the ranges searched again */
                fit_table_over(q, l, bl->H[k], o, q->w_scale->data);
                ptq_clip_search(&q->w, l->w->data, rows, cols, bl->H[k], q->w_scale->data, zp_of(q));
            }
        } else {
            ptq_rtn(&q->w, l->w->data, rows, cols, q->w_scale->data, zp_of(q), NULL);
        }
        float *wq = xmalloc((size_t)rows * cols * sizeof(float));
        /* a block format's round-to-nearest is ggml's reference quantizer itself */
        bool ggml_ref = q->w.fmt && !(awq && o->clip);
        quant_fake(&q->w, l->w->data, rows, cols, ggml_ref ? NULL : q->w_scale->data, zp_of(q), wq);
        if (q->outlier) /* the error of the split: the float columns are exact */
            for (size_t i = 0; i < (size_t)rows * cols; i++)
                if (q->outlier->data[i % (size_t)cols] > 0.0f) wq[i] = l->w->data[i];
        rep[k]->err = ptq_output_error(l->w->data, wq, rows, cols, bl->H[k]);
        /* block formats keep the blocks' values as the weights, so the codes
         * the export derives from them are these codes exactly */
        if (q->w.fmt) memcpy(l->w->data, wq, (size_t)rows * cols * sizeof(float));
        free(wq);
    }
}

void ptq_model(GPT *g, const PtqOptions *o, const int32_t *calib, int n_seq, int T, PtqReport *r) {
    double t0 = now_seconds();
    memset(r, 0, sizeof *r);
    int C = g->cfg.n_embd, L = g->cfg.n_layer;
    if (g->head.q && g->head.w == g->wte && strcmp(o->method, "rtn"))
        qat_fail("ptq: lm_head is tied to the token embedding; %s would change the embedding too (quantize it with rtn, "
                 "or leave it out of --layers)", o->method);
    size_t per = (size_t)T * C;
    BlockBufs bb;
    bb.X = xmalloc((size_t)n_seq * per * sizeof(float));
    bb.Y = xmalloc((size_t)n_seq * per * sizeof(float));
    bb.A = xmalloc((size_t)n_seq * per * sizeof(float));
    bb.X1 = xmalloc((size_t)n_seq * per * sizeof(float));
    for (int s = 0; s < n_seq; s++)
        for (int t = 0; t < T; t++) {
            const float *te = g->wte->data + (size_t)calib[(size_t)s * T + t] * C;
            const float *pe = g->wpe ? g->wpe->data + (size_t)t * C : NULL;
            float *x = bb.X + (size_t)s * per + (size_t)t * C;
            for (int c = 0; c < C; c++) x[c] = te[c] + (pe ? pe[c] : 0.0f);
        }
    r->calib_tokens = (long)n_seq * T;
    gpt_quant_set_mode(g, QMODE_FLOAT);
    Tape t;
    tape_init(&t, 64u << 20);
    tape_set_grad(&t, false);
    bool sequential = !strcmp(o->method, "gptq");
    bool want_sample = !strcmp(o->method, "smoothquant") && o->alpha < 0.0f;
    Progress pr;
    char what[96];
    snprintf(what, sizeof what, "ptq %s: %d calibration windows, block", o->method, n_seq);
    progress_begin(&pr, o->log, L, what);
    for (int b = 0; b < L; b++) {
        Block *blk = &g->blocks[b];
        BlockLayers bl = {.l = {&blk->qkv, &blk->proj, &blk->fc, &blk->fc_proj}};
        PtqLayerReport *rep[4] = {0};
        for (int k = 0; k < 4; k++) {
            bl.q[k] = bl.l[k]->q;
            if (!bl.q[k]) continue;
            rep[k] = &r->layers[r->n++];
            snprintf(rep[k]->name, sizeof rep[k]->name, "%s", bl.q[k]->name);
        }
        /* GPTQ: each layer calibrated with the ones before it quantized; the
         * others: the whole block at once */
        static const Pass stage_pass[4] = {PASS_QKV, PASS_PROJ, PASS_FC, PASS_MLP};
        for (int stage = 0; stage < (sequential ? 4 : 1); stage++) {
            int j0 = sequential ? stage : 0, j1 = sequential ? stage + 1 : 4;
            PtqStats *sp[4] = {0};
            for (int j = j0; j < j1; j++)
                if (bl.q[j]) {
                    ptq_stats_init(&bl.st[j], bl.l[j]->w->shape[1], want_sample ? PTQ_SAMPLE : 0,
                                   (n_seq * T + PTQ_SAMPLE - 1) / PTQ_SAMPLE);
                    sp[j] = &bl.st[j];
                }
            /* GPTQ's later passes need A and X1 even when their layer is not quantized */
            bool any = false;
            for (int j = j0; j < j1; j++) any |= bl.q[j] != NULL;
            if (any || (sequential && stage >= 1 && stage <= 2))
                block_pass(g, &t, b, &bb, sequential ? stage_pass[stage] : PASS_ALL, false, sp, n_seq, T);
            for (int j = j0; j < j1; j++)
                if (bl.q[j]) bl.H[j] = hessian_of(&bl.st[j]);
            if (sequential && bl.q[stage]) {
                gptq_layer(bl.q[stage], bl.l[stage], o, bl.H[stage], rep[stage]);
                set_act_scale(bl.q[stage], &bl.st[stage], NULL);
                bl.q[stage]->mode = QMODE_QUANT;
            }
        }
        if (!sequential) {
            block_method(g, b, &bl, o, rep);
            for (int k = 0; k < 4; k++)
                if (bl.q[k]) {
                    set_act_scale(bl.q[k], &bl.st[k], bl.s_in[k]);
                    bl.q[k]->mode = QMODE_QUANT;
                }
        }
        for (int k = 0; k < 4; k++) {
            if (bl.q[k]) ptq_stats_free(&bl.st[k]);
            free(bl.H[k]);
            free(bl.s_in[k]);
        }
        /* the next block's inputs, through this one quantized */
        block_pass(g, &t, b, &bb, PASS_OUT, sequential, (PtqStats *[4]){0}, n_seq, T);
        float *tmp = bb.X;
        bb.X = bb.Y, bb.Y = tmp;
        progress_update(&pr, b + 1, NULL);
    }
    progress_end(&pr);
    if (g->head.q) { /* rtn (checked above): scales from the weights alone */
        QLayer *q = g->head.q;
        fit_table(q, &g->head, NULL, o);
        ptq_rtn(&q->w, g->head.w->data, g->head.w->shape[0], C, q->w_scale->data, zp_of(q), NULL);
        if (q->a_scale) {
            PtqStats st;
            ptq_stats_init(&st, C, 0, 1);
            for (int s0 = 0; s0 < n_seq; s0 += PTQ_CHUNK) {
                int ns = n_seq - s0 < PTQ_CHUNK ? n_seq - s0 : PTQ_CHUNK;
                tape_reset(&t);
                Tensor *x = tensor_from(&t, 3, (int[]){ns, T, C}, bb.X + s0 * per);
                add_stats(&st, layernorm_forward(&t, &g->ln_f, x));
            }
            set_act_scale(q, &st, NULL);
            ptq_stats_free(&st);
        }
        PtqLayerReport *rep = &r->layers[r->n++];
        snprintf(rep->name, sizeof rep->name, "%s", q->name);
        rep->err = rep->err_rtn = NAN; /* no calibration Hessian for the head */
    }
    gpt_quant_set_mode(g, QMODE_QUANT);
    tape_free(&t);
    free(bb.X), free(bb.Y), free(bb.A), free(bb.X1);
    r->seconds = now_seconds() - t0;
}

void ptq_checkpoint(const char *ckpt, const PtqOptions *o, const char *out, PtqReport *r) {
    if (util_same_file(ckpt, out))
        qat_fail("%s: -o names the source checkpoint itself; choose another file", out);
    Config cfg;
    Vocab v;
    long step = 0;
    ckpt_load_meta(ckpt, &cfg, &v, &step);
    if (cfg.quant.w_bits)
        qat_fail("%s: already quantized (int%d); ptq takes a float checkpoint", ckpt, cfg.quant.w_bits);
    Config qc = cfg;
    ptq_quant_config(o, &qc.quant);
    if (o->budget > 0.0f) ptq_budget_config(ckpt, &cfg, o, &qc.quant, NULL, false);
    GPTConfig gc = config_gpt(&cfg.model, v.size);
    GPT g;
    gpt_build(&g, &gc, &qc.quant, "ptq");
    ckpt_load_params(ckpt, &g, true);
    /* calibration: the training split of data.path, another text (whole), or
     * the model's own samples (data.teacher.* of its config; cached beside -o) */
    const char *cd = o->calib_data[0] ? o->calib_data : cfg.data.path;
    Dataset ds;
    if (!strcmp(cd, "teacher")) {
        char cache[PATH_MAX + 32];
        snprintf(cache, sizeof cache, "%s.teacher-data.h5", out);
        ds.tokens = teacher_tokens(&cfg, ckpt, cache, &ds.n, false);
        ds.n_train = ds.n;
    } else {
        if (access(cd, R_OK) != 0)
            qat_fail("%s: the calibration text %s (%s) is not readable", ckpt, cd, o->calib_data[0] ? "--calib-data" : "data.path");
        dataset_load(&ds, &v, cd, false, false);
        if (o->calib_data[0]) ds.n_train = ds.n; /* a text of its own: all of it */
        else dataset_split(&ds, cfg.data.val_fraction, cfg.model.block_size, cfg.data.path);
    }
    int n_seq = o->calib_batches * cfg.train.batch_size, T = cfg.model.block_size;
    int32_t *calib = ptq_calib_windows(ds.tokens, ds.n_train, n_seq, T, o->seed);
    ptq_model(&g, o, calib, n_seq, T, r);
    char desc[512];
    ptq_describe(o, desc, sizeof desc);
    ckpt_save(out, &qc, &v, &g, NULL, step, NULL, desc);
    free(calib);
    dataset_free(&ds);
    gpt_free(&g);
    vocab_free(&v);
}

void ptq_budget_config(const char *ckpt, const Config *fcfg, const PtqOptions *o, QuantConfig *q, MixedTable *cache,
                       bool quiet) {
    Config mc = *fcfg;
    mc.quant.w_sym = o->sym;
    mc.quant.w_narrow = !o->full;
    snprintf(mc.quant.layers, sizeof mc.quant.layers, "%s", o->layers);
    snprintf(mc.quant.budget_bits, sizeof mc.quant.budget_bits, "%s", o->budget_bits);
    snprintf(mc.quant.budget_groups, sizeof mc.quant.budget_groups, "%s", o->budget_groups);
    snprintf(mc.quant.budget_codebooks, sizeof mc.quant.budget_codebooks, "%s", o->budget_codebooks);
    mc.quant.budget_calib_batches = o->budget_calib_batches;
    MixedTable own = {0};
    const MixedTable *t = mixed_table_for(ckpt, &mc, "ptq --budget", quiet, cache, &own);
    MixedPlan p;
    mixed_solve(t, o->budget, "ptq --budget", &p);
    mixed_apply(t, &p, q);
    if (!quiet) mixed_print(t, &p, stdout);
    mixed_plan_free(&p);
    mixed_table_free(&own);
}
