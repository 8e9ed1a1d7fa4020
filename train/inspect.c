/* inspect.c: qat inspect (see inspect.h). Each kind of file is described
 * once, as a JSON object; the listing is printed from that object, so the
 * listing and --json never disagree. */
#include "train/inspect.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "format/checkpoint.h"
#include "format/gguf.h"
#include "format/llama2c.h"
#include "infer/infer.h"
#include "train/trainer.h"
#include "util/h5io.h"
#include "util/json.h"

/* ---- the description ---- */

/* A tensor entry: name, shape, storage type and bytes in the file, and bits
 * per weight stored; callers add "quant" for quantized weights. */
static cJSON *add_tensor(cJSON *arr, const char *name, int ndim, const int64_t *shape, const char *type, size_t bytes) {
    cJSON *t = cJSON_CreateObject(), *sh = cJSON_CreateArray();
    double n = 1;
    for (int d = 0; d < ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)shape[d])), n *= (double)shape[d];
    cJSON_AddStringToObject(t, "name", name);
    cJSON_AddItemToObject(t, "shape", sh);
    cJSON_AddStringToObject(t, "type", type);
    cJSON_AddNumberToObject(t, "weights", n);
    cJSON_AddNumberToObject(t, "bytes", (double)bytes);
    json_add_num(t, "bits_per_weight", n > 0 ? 8.0 * (double)bytes / n : NAN, 4);
    cJSON_AddItemToArray(arr, t);
    return t;
}

/* The quantization scheme of a weight: bits, granularity, group, symmetry,
 * the llama.cpp block format if any, and (when it is stored in float, as in
 * a checkpoint) the bits per weight it deploys at: codes plus fp32 scales. */
static void add_quant(cJSON *t, int bits, bool channel, int group, bool sym, const char *format, double deploy_bpw,
                      const char *codebook) {
    cJSON *q = cJSON_AddObjectToObject(t, "quant");
    cJSON_AddNumberToObject(q, "bits", bits);
    cJSON_AddStringToObject(q, "granularity", channel ? "channel" : group ? "group" : "tensor");
    if (group && !channel) cJSON_AddNumberToObject(q, "group", group);
    cJSON_AddBoolToObject(q, "symmetric", sym);
    if (format) cJSON_AddStringToObject(q, "format", format);
    if (codebook) cJSON_AddStringToObject(q, "codebook", codebook);
    if (!isnan(deploy_bpw)) json_add_num(q, "deploy_bits_per_weight", deploy_bpw, 4);
}

static void add_arch(cJSON *root, const GPTConfig *c0) {
    GPTConfig c = gpt_config_resolve(c0);
    cJSON *a = cJSON_AddObjectToObject(root, "architecture");
    cJSON_AddStringToObject(a, "arch", c.arch == ARCH_LLAMA ? "llama" : "gpt");
    cJSON_AddNumberToObject(a, "n_layer", c.n_layer);
    cJSON_AddNumberToObject(a, "n_head", c.n_head);
    cJSON_AddNumberToObject(a, "n_kv_head", c.n_kv_head);
    cJSON_AddNumberToObject(a, "n_embd", c.n_embd);
    cJSON_AddNumberToObject(a, "hidden", c.hidden);
    cJSON_AddNumberToObject(a, "block_size", c.block_size);
    cJSON_AddNumberToObject(a, "vocab_size", c.vocab_size);
    json_add_num(a, "norm_eps", c.norm_eps, 8);
    if (c.arch == ARCH_LLAMA) json_add_num(a, "rope_theta", c.rope_theta, 2);
    cJSON_AddBoolToObject(a, "tied_head", !c.untied_head);
}

static void add_vocab(cJSON *root, const char *kind, int size) {
    cJSON *v = cJSON_AddObjectToObject(root, "vocab");
    cJSON_AddStringToObject(v, "kind", kind);
    cJSON_AddNumberToObject(v, "size", size);
}

static const char *vocab_kind(const Vocab *v) { return v->spm ? "sentencepiece" : v->is_byte ? "byte" : "char"; }

/* Totals over the tensors, overall and per storage type. */
static void add_totals(cJSON *root) {
    cJSON *ts = cJSON_GetObjectItem(root, "tensors"), *tot = cJSON_AddObjectToObject(root, "totals");
    cJSON *by = cJSON_CreateObject();
    double n = 0, bytes = 0;
    int count = 0;
    cJSON *t;
    cJSON_ArrayForEach(t, ts) {
        double tn = cJSON_GetObjectItem(t, "weights")->valuedouble, tb = cJSON_GetObjectItem(t, "bytes")->valuedouble;
        const char *ty = cJSON_GetObjectItem(t, "type")->valuestring;
        cJSON *e = cJSON_GetObjectItem(by, ty);
        if (!e) {
            e = cJSON_AddObjectToObject(by, ty);
            cJSON_AddNumberToObject(e, "tensors", 0), cJSON_AddNumberToObject(e, "weights", 0);
            cJSON_AddNumberToObject(e, "bytes", 0);
        }
        cJSON_SetNumberValue(cJSON_GetObjectItem(e, "tensors"), cJSON_GetObjectItem(e, "tensors")->valuedouble + 1);
        cJSON_SetNumberValue(cJSON_GetObjectItem(e, "weights"), cJSON_GetObjectItem(e, "weights")->valuedouble + tn);
        cJSON_SetNumberValue(cJSON_GetObjectItem(e, "bytes"), cJSON_GetObjectItem(e, "bytes")->valuedouble + tb);
        n += tn, bytes += tb, count++;
    }
    cJSON_AddNumberToObject(tot, "tensors", count);
    cJSON_AddNumberToObject(tot, "weights", n);
    cJSON_AddNumberToObject(tot, "bytes", bytes);
    json_add_num(tot, "bits_per_weight", n > 0 ? 8.0 * bytes / n : NAN, 4);
    cJSON_AddItemToObject(tot, "by_type", by);
}

/* Checksums of the datasets of a qat HDF5 file, recomputed by name (loading
 * checks only what it reads; optimizer moments, say, only on --resume). */
typedef struct Tally {
    hid_t f;
    const char *path;
    int verified, unchecked;
} Tally;

static void tally(Tally *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tally(Tally *t, const char *fmt, ...) {
    char name[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    int r = h5_verify_dataset(t->f, t->path, name);
    t->verified += r == 1, t->unchecked += r == 0;
}

static Tally tally_open(const char *path) {
    Tally t = {h5in_open(path), path, 0, 0};
    static const char *vocab[] = {"vocab", "tokenizer/pieces", "tokenizer/lengths", "tokenizer/scores",
                                  "tokenizer/types", "tokenizer/special"};
    for (size_t i = 0; i < sizeof vocab / sizeof *vocab; i++) tally(&t, "%s", vocab[i]);
    return t;
}

static void tally_close(Tally *t, cJSON *root) {
    h5in_close(t->f);
    cJSON *c = cJSON_AddObjectToObject(root, "checksums");
    cJSON_AddStringToObject(c, "algorithm", "crc32");
    cJSON_AddNumberToObject(c, "verified", t->verified);
    cJSON_AddNumberToObject(c, "without_checksum", t->unchecked);
}

static void add_no_checksums(cJSON *root, const char *what) {
    cJSON *c = cJSON_AddObjectToObject(root, "checksums");
    cJSON_AddNullToObject(c, "algorithm");
    cJSON_AddStringToObject(c, "note", what);
}

static cJSON *new_root(const char *path, const char *kind) {
    struct stat st;
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "file", path);
    cJSON_AddStringToObject(r, "kind", kind);
    cJSON_AddNumberToObject(r, "file_bytes", stat(path, &st) == 0 ? (double)st.st_size : 0.0);
    cJSON_AddArrayToObject(r, "tensors");
    return r;
}

/* ---- each kind of file ---- */

static const char *GGUF_ARCH_KEYS[][2] = {
    {"n_layer", "block_count"},         {"n_embd", "embedding_length"}, {"hidden", "feed_forward_length"},
    {"n_head", "attention.head_count"}, {"n_kv_head", "attention.head_count_kv"}, {"block_size", "context_length"},
};

static cJSON *describe_gguf(const char *path) {
    GgufFile f;
    gguf_read(&f, path);
    cJSON *r = new_root(path, "gguf"), *meta = cJSON_AddObjectToObject(r, "metadata");
    char key[256];
    for (size_t k = 0; k < f.n_kv; k++) {
        snprintf(key, sizeof key, "%.*s", (int)f.kv[k].key_len, f.kv[k].key);
        cJSON_AddItemToObject(meta, key, gguf_kv_json(&f.kv[k], 6));
    }
    /* the architecture as llama.cpp reads it: ARCH.block_count and so on */
    const GgufKV *ak = gguf_find_kv(&f, "general.architecture");
    if (ak && ak->type == GGUF_STRING) {
        char *arch = gguf_get_str(&f, "general.architecture");
        cJSON *a = cJSON_AddObjectToObject(r, "architecture");
        cJSON_AddStringToObject(a, "arch", arch);
        for (size_t i = 0; i < sizeof GGUF_ARCH_KEYS / sizeof *GGUF_ARCH_KEYS; i++) {
            snprintf(key, sizeof key, "%s.%s", arch, GGUF_ARCH_KEYS[i][1]);
            const GgufKV *kv = gguf_find_kv(&f, key);
            if (kv && kv->type != GGUF_ARRAY && kv->type != GGUF_STRING)
                cJSON_AddItemToObject(a, GGUF_ARCH_KEYS[i][0], gguf_kv_json(kv, 0));
        }
        free(arch);
    }
    const GgufKV *tok = gguf_find_kv(&f, "tokenizer.ggml.tokens"), *tm = gguf_find_kv(&f, "tokenizer.ggml.model");
    if (tok && tok->type == GGUF_ARRAY) {
        char *model = tm && tm->type == GGUF_STRING ? gguf_get_str(&f, "tokenizer.ggml.model") : NULL;
        add_vocab(r, model && !strcmp(model, "llama") ? "sentencepiece" : model ? model : "unknown", (int)tok->n);
        free(model);
    }
    cJSON *ts = cJSON_GetObjectItem(r, "tensors");
    char tb[24];
    for (size_t i = 0; i < f.n_t; i++) {
        const GgufTensor *t = &f.t[i];
        const char *ty = ggml_type_name(t->type, tb, sizeof tb);
        cJSON *e = add_tensor(ts, t->name, t->nd, t->ne, ty, t->bytes);
        if (t->type == GGML_TYPE_Q8_0 || t->type == GGML_TYPE_Q4_0 || t->type == GGML_TYPE_Q4_1)
            add_quant(e, t->type == GGML_TYPE_Q8_0 ? 8 : 4, false, QBLOCK_GGUF, t->type != GGML_TYPE_Q4_1, ty, NAN, NULL);
    }
    cJSON_AddStringToObject(r, "shape_order", "ggml: innermost (row length) first");
    add_no_checksums(r, "GGUF carries none; every string, array and tensor was checked against the file's bounds");
    gguf_free(&f);
    return r;
}

/* The codebook whose levels a table matrix holds ("levels" when none of
 * qat's), or NULL for codes on the even grid. */
static const char *table_codebook(const QMatrix *q) {
    if (!q->lut) return NULL;
    int n;
    QuantSpec s = {.bits = qmatrix_code_bits(q), .sym = true, .cb = QCB_NF};
    const float *lv = quant_levels(&s, &n);
    return lv && n == q->n_levels && !memcmp(lv, q->lut, (size_t)n * sizeof(float)) ? "nf" : "levels";
}

static cJSON *describe_exported(const char *path) {
    InferModel m;
    infer_load(&m, path);
    cJSON *r = new_root(path, "exported model");
    hid_t f = h5in_open(path);
    cJSON *src = cJSON_AddObjectToObject(r, "source");
    char *s = h5_read_attr_str(f, path, "source");
    cJSON_AddStringToObject(src, "checkpoint", s);
    cJSON_AddNumberToObject(src, "step", (double)h5_read_attr_i64(f, path, "step"));
    cJSON_AddNumberToObject(src, "kv_bits", m.kv_bits);
    free(s);
    h5in_close(f);
    add_arch(r, &m.cfg);
    add_vocab(r, vocab_kind(&m.vocab), m.vocab.size);
    cJSON *ts = cJSON_GetObjectItem(r, "tensors");
    for (int i = 0; i < m.n_q; i++) {
        const QMatrix *q = &m.qm[i];
        int64_t sh[2] = {q->rows, q->in};
        char ty[16];
        const char *cb = table_codebook(q);
        int bits = qmatrix_code_bits(q);
        snprintf(ty, sizeof ty, "%s%d", cb ? cb : "int", bits);
        cJSON *e = add_tensor(ts, m.qnames[i], 2, sh, ty, qmatrix_bytes(q) + (size_t)q->rows * q->n_float * 4);
        add_quant(e, bits, q->group >= q->cols, q->group, q->offsets == NULL, NULL, NAN, cb);
        if (q->full && !q->lut) cJSON_AddBoolToObject(cJSON_GetObjectItem(e, "quant"), "full_range", true);
        if (q->lut && q->n_tables > 1) cJSON_AddStringToObject(cJSON_GetObjectItem(e, "quant"), "tables", quant_tables_name(q->lut_tables));
        cJSON_AddStringToObject(e, "storage", q->lut && q->n_tables > 1 ? "level indices two per byte, int8 levels (1/127ths) of a table per row or group, fp32 scales"
                                              : q->idx8 ? "level indices one per byte, the 256 levels, fp32 scales"
                                              : q->lut ? "level indices two per byte, the levels, fp32 scales"
                                              : q->bits > 4 ? "int8 codes, fp32 scales" : "int4 codes two per byte, fp32 scales");
        cJSON_AddStringToObject(e, "activations", m.qw8a8[i] ? (q->act_static ? "int8 static" : "int8 per token") : "float");
        if (q->n_float) cJSON_AddNumberToObject(e, "float_columns", q->n_float);
    }
    for (int i = 0; i < m.n_ft; i++) {
        int64_t sh[2] = {m.ft[i].shape[0], m.ft[i].shape[1]};
        add_tensor(ts, m.ft[i].name, m.ft[i].ndim, sh, "f32", 4 * (size_t)sh[0] * (size_t)(m.ft[i].ndim > 1 ? sh[1] : 1));
    }
    Tally k = tally_open(path);
    for (int i = 0; i < m.n_ft; i++) tally(&k, "float/%s", m.ft[i].name);
    static const char *parts[] = {"codes", "scales", "levels", "act_scale", "float_cols", "float_weight"};
    for (int i = 0; i < m.n_q; i++)
        for (size_t p = 0; p < sizeof parts / sizeof *parts; p++) tally(&k, "quant/%s/%s", m.qnames[i], parts[p]);
    tally_close(&k, r);
    infer_free(&m);
    return r;
}

/* The float tensors of g, each quantized Linear's weight with its scheme. */
static void add_gpt_tensors(cJSON *r, const GPT *g) {
    cJSON *ts = cJSON_GetObjectItem(r, "tensors");
    for (int i = 0; i < g->params.n; i++) {
        const Tensor *t = g->params.list[i];
        int64_t sh[4];
        for (int d = 0; d < t->ndim; d++) sh[d] = t->shape[d];
        cJSON *e = add_tensor(ts, t->name, t->ndim, sh, "f32", 4 * (size_t)t->numel);
        if (t->quant_state) cJSON_AddStringToObject(e, "role", "quantization state: a learned scale or zero point");
        for (int k = 0; k < g->n_q; k++) {
            const QLayer *q = &g->qlayers[k];
            size_t ln = strlen(q->name);
            if (strncmp(t->name, q->name, ln) || strcmp(t->name + ln, ".weight")) continue;
            const QuantSpec *s = &q->w;
            int rows = t->shape[0], cols = t->shape[1];
            double scales = (double)quant_n_scales(s, rows, cols) * (s->sym ? 1 : 2);
            /* tables per channel or group deploy as int8 levels */
            double tables = s->cb == QCB_KMEANS && s->tables != QG_TENSOR ? 8.0 * (double)quant_n_tables(s, rows, cols) * (1 << s->bits) : 0.0;
            double bpw = s->fmt ? qformat_bpw(s->fmt) : s->bits + (32.0 * scales + tables) / ((double)rows * cols);
            add_quant(e, s->bits, s->gran == QG_CHANNEL, s->gran == QG_GROUP ? s->group : 0, s->sym,
                      s->fmt ? qformat_name(s->fmt) : NULL, bpw, s->cb ? quant_codebook_name(s->cb) : NULL);
            cJSON *qe = cJSON_GetObjectItem(e, "quant");
            if (s->full) cJSON_AddBoolToObject(qe, "full_range", true);
            if (s->cb == QCB_KMEANS && s->tables != QG_TENSOR) cJSON_AddStringToObject(qe, "tables", quant_tables_name(s->tables));
            cJSON_AddStringToObject(qe, "scales", q->w_scale ? "stored (learned or calibrated)" : "min-max each forward");
            if (q->a_bits) cJSON_AddStringToObject(qe, "activations", q->a_dynamic ? "int8 per token" : "int8 static");
            if (q->a_blocks) cJSON_AddStringToObject(qe, "activations", "q8_0 blocks");
        }
    }
}

static cJSON *describe_checkpoint(const char *path) {
    GPT g;
    Config cfg;
    Vocab v;
    long step = 0;
    model_load(path, &g, &cfg, &v);
    ckpt_load_meta(path, &cfg, NULL, &step);
    cJSON *r = new_root(path, "checkpoint");
    hid_t f = h5in_open(path);
    cJSON *c = cJSON_AddObjectToObject(r, "checkpoint");
    char *kind = h5_read_attr_str(f, path, "kind");
    cJSON_AddStringToObject(c, "kind", kind);
    free(kind);
    if (H5Aexists(f, "ptq_method") > 0) {
        char *m = h5_read_attr_str(f, path, "ptq_method");
        cJSON_AddStringToObject(c, "ptq_method", m);
        free(m);
    }
    cJSON_AddNumberToObject(c, "version", (double)h5_read_attr_i64(f, path, "version"));
    cJSON_AddNumberToObject(c, "step", (double)step);
    cJSON_AddNumberToObject(c, "iters", cfg.train.iters);
    cJSON_AddBoolToObject(c, "optimizer_state", h5_exists(f, "optim"));
    cJSON_AddBoolToObject(c, "observers_calibrating", h5_exists(f, "observers"));
    h5in_close(f);
    add_arch(r, &g.cfg);
    add_vocab(r, vocab_kind(&v), v.size);
    add_gpt_tensors(r, &g);
    Tally k = tally_open(path);
    tally(&k, "rng");
    for (int i = 0; i < g.params.n; i++) {
        const char *n = g.params.list[i]->name;
        tally(&k, "params/%s", n), tally(&k, "optim/m/%s", n), tally(&k, "optim/v/%s", n);
    }
    static const char *obs[] = {"range", "counts", "sample"};
    for (int i = 0; i < g.n_q; i++)
        for (size_t p = 0; p < sizeof obs / sizeof *obs; p++) tally(&k, "observers/%s/%s", g.qlayers[i].name, obs[p]);
    tally_close(&k, r);
    gpt_free(&g);
    vocab_free(&v);
    return r;
}

typedef struct L2Ctx {
    const char *path;
    cJSON *r;
} L2Ctx;

static void l2_model(void *p) {
    L2Ctx *x = p;
    GPT g;
    Config cfg;
    config_defaults(&cfg);
    llama2c_load_model(x->path, &g, &cfg);
    x->r = new_root(x->path, "llama2.c model");
    add_arch(x->r, &g.cfg);
    add_gpt_tensors(x->r, &g);
    add_no_checksums(x->r, "llama2.c files carry none; the header's sizes were checked against the file's length");
    gpt_free(&g);
}

static void l2_tokenizer(void *p) {
    L2Ctx *x = p;
    Vocab v;
    llama2c_load_tokenizer(x->path, 0, &v);
    x->r = new_root(x->path, "llama2.c tokenizer");
    add_vocab(x->r, vocab_kind(&v), v.size);
    add_no_checksums(x->r, "llama2.c files carry none; every piece was checked against the file's length");
    vocab_free(&v);
}

static bool has_magic(const char *path, const char *magic, size_t n) {
    FILE *f = xfopen(path, "rb");
    char b[16] = {0};
    size_t got = fread(b, 1, n, f);
    fclose(f);
    return got == n && !memcmp(b, magic, n);
}

cJSON *inspect_describe(const char *path) {
    util_require_regular(path);
    if (gguf_is_file(path)) return describe_gguf(path);
    if (has_magic(path, "\x89HDF\r\n\x1a\n", 8))
        return infer_is_model_file(path) ? describe_exported(path) : describe_checkpoint(path);
    /* llama2.c files have no magic: a model's header must match the file's
     * length exactly, which a tokenizer's never does, so try it first */
    L2Ctx x = {.path = path};
    char m1[512], m2[512];
    if (qat_try(l2_model, &x, m1, sizeof m1)) return x.r;
    if (x.r) cJSON_Delete(x.r), x.r = NULL;
    if (qat_try(l2_tokenizer, &x, m2, sizeof m2)) return x.r;
    if (x.r) cJSON_Delete(x.r);
    size_t pl = strlen(path);
    const char *why = !strncmp(m1, path, pl) && !strncmp(m1 + pl, ": ", 2) ? m1 + pl + 2 : m1;
    qat_fail("%s: not a file qat reads (GGUF, HDF5 checkpoint or exported model, llama2.c model or tokenizer); "
             "read as a llama2.c model: %s", path, why);
}

/* ---- the listing ---- */

static void print_value(FILE *out, const cJSON *v) {
    if (cJSON_IsString(v)) {
        fputc('"', out);
        const unsigned char *s = (const unsigned char *)v->valuestring;
        size_t n = strlen(v->valuestring);
        for (size_t k = 0; k < n && k < 48; k++)
            if (s[k] < 0x20 || s[k] == '"' || s[k] == '\\') fprintf(out, "\\x%02x", s[k]);
            else fputc(s[k], out);
        fprintf(out, "\"%s", n > 48 ? "..." : "");
    } else if (cJSON_IsBool(v)) {
        fputs(cJSON_IsTrue(v) ? "true" : "false", out);
    } else if (cJSON_IsNumber(v)) {
        fprintf(out, "%.9g", v->valuedouble);
    } else if (cJSON_IsObject(v) && cJSON_GetObjectItem(v, "array_of")) {
        double n = cJSON_GetObjectItem(v, "n")->valuedouble;
        fprintf(out, "[%.0f x %s:", n, cJSON_GetObjectItem(v, "array_of")->valuestring);
        const cJSON *e;
        int k = 0;
        cJSON_ArrayForEach(e, cJSON_GetObjectItem(v, "head")) fputc(' ', out), print_value(out, e), k++;
        fprintf(out, "%s]", n > k ? " ..." : "");
    } else {
        fputs("null", out);
    }
}

static double num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItem(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}
static const char *str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItem(o, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static void print_quant(FILE *out, const cJSON *q) {
    if (!q) return;
    if (*str(q, "format")) fprintf(out, "  %s blocks", str(q, "format"));
    else {
        if (*str(q, "codebook")) fprintf(out, "  %s%.0f ", str(q, "codebook"), num(q, "bits"));
        else fprintf(out, "  int%.0f %s ", num(q, "bits"),
                     cJSON_IsTrue(cJSON_GetObjectItem(q, "full_range"))  ? "sym full range"
                     : cJSON_IsTrue(cJSON_GetObjectItem(q, "symmetric")) ? "sym"
                                                                         : "asym");
        if (!strcmp(str(q, "granularity"), "group")) fprintf(out, "g%.0f", num(q, "group"));
        else fprintf(out, "per %s", str(q, "granularity"));
        if (*str(q, "tables")) fprintf(out, ", a table per %s", str(q, "tables"));
    }
    if (!isnan(num(q, "deploy_bits_per_weight"))) fprintf(out, " (%.2f bits/weight deployed)", num(q, "deploy_bits_per_weight"));
    if (!strncmp(str(q, "scales"), "stored", 6)) fputs(", stored scales", out);
    if (*str(q, "activations")) fprintf(out, ", %s activations", str(q, "activations"));
}

void inspect_print(const cJSON *r, FILE *out) {
    fprintf(out, "%s: %s, %.0f bytes\n", str(r, "file"), str(r, "kind"), num(r, "file_bytes"));
    const cJSON *c = cJSON_GetObjectItem(r, "checkpoint"), *s = cJSON_GetObjectItem(r, "source");
    if (c)
        fprintf(out, "  checkpoint    %s%s%s, step %.0f of %.0f%s%s\n", str(c, "kind"), *str(c, "ptq_method") ? " by " : "",
                str(c, "ptq_method"), num(c, "step"), num(c, "iters"),
                cJSON_IsTrue(cJSON_GetObjectItem(c, "optimizer_state")) ? ", with optimizer state" : "",
                cJSON_IsTrue(cJSON_GetObjectItem(c, "observers_calibrating")) ? ", observers calibrating" : "");
    if (s) fprintf(out, "  exported from %s (step %.0f)\n", str(s, "checkpoint"), num(s, "step"));
    const cJSON *a = cJSON_GetObjectItem(r, "architecture");
    if (a) {
        fprintf(out, "  architecture  %s", str(a, "arch"));
        static const char *keys[][2] = {{"n_layer", "layers"}, {"n_head", "heads"},   {"n_kv_head", "kv heads"},
                                        {"n_embd", "width"},   {"hidden", "hidden"},  {"block_size", "context"},
                                        {"vocab_size", "vocab"}};
        for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
            if (!isnan(num(a, keys[i][0]))) fprintf(out, ", %s %.0f", keys[i][1], num(a, keys[i][0]));
        fputc('\n', out);
    }
    const cJSON *v = cJSON_GetObjectItem(r, "vocab");
    if (v) fprintf(out, "  vocab         %s, %.0f tokens\n", str(v, "kind"), num(v, "size"));
    const cJSON *m = cJSON_GetObjectItem(r, "metadata"), *e;
    if (m) {
        fprintf(out, "  metadata      %d keys\n", cJSON_GetArraySize(m));
        cJSON_ArrayForEach(e, m) fprintf(out, "    %s = ", e->string), print_value(out, e), fputc('\n', out);
    }
    const cJSON *ts = cJSON_GetObjectItem(r, "tensors");
    if (cJSON_GetArraySize(ts)) {
        fprintf(out, "  tensors       %d%s\n", cJSON_GetArraySize(ts),
                *str(r, "shape_order") ? " (shapes innermost first, as ggml)" : " (shapes [out, in], as PyTorch)");
        cJSON_ArrayForEach(e, ts) {
            char sh[64] = "";
            int k = 0;
            const cJSON *d;
            cJSON_ArrayForEach(d, cJSON_GetObjectItem(e, "shape"))
                k += snprintf(sh + k, sizeof sh - (size_t)k, "%s%.0f", k ? " x " : "", d->valuedouble);
            fprintf(out, "    %-32s %-5s [%s] %.0f bytes, %.2f bits/weight", str(e, "name"), str(e, "type"), sh,
                    num(e, "bytes"), num(e, "bits_per_weight"));
            const cJSON *q = cJSON_GetObjectItem(e, "quant");
            if (q && strcmp(str(q, "format"), str(e, "type"))) print_quant(out, q); /* a GGUF type says it already */
            if (*str(e, "role")) fprintf(out, "  (%s)", str(e, "role"));
            fputc('\n', out);
        }
        const cJSON *t = cJSON_GetObjectItem(r, "totals");
        fprintf(out, "  total         %.0f tensors, %.0f weights, %.0f bytes, %.2f bits/weight\n", num(t, "tensors"),
                num(t, "weights"), num(t, "bytes"), num(t, "bits_per_weight"));
        cJSON_ArrayForEach(e, cJSON_GetObjectItem(t, "by_type"))
            fprintf(out, "    %-5s %.0f tensors, %.0f weights, %.0f bytes\n", e->string, num(e, "tensors"),
                    num(e, "weights"), num(e, "bytes"));
    }
    const cJSON *k = cJSON_GetObjectItem(r, "checksums");
    if (k && *str(k, "algorithm"))
        fprintf(out, "  checksums     %s of %.0f datasets verified%s\n", str(k, "algorithm"), num(k, "verified"),
                num(k, "without_checksum") > 0 ? " (some datasets carry none: a version 1 file)" : "");
    else if (k)
        fprintf(out, "  checksums     %s\n", str(k, "note"));
}

void inspect_file(const char *path, bool json, FILE *out) {
    cJSON *r = inspect_describe(path);
    if (cJSON_GetArraySize(cJSON_GetObjectItem(r, "tensors"))) add_totals(r);
    if (json) json_print_line(r, out);
    else inspect_print(r, out), cJSON_Delete(r);
}
