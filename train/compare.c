/* compare.c: qat compare (see compare.h): the float row, one row per PTQ
 * entry (quantized in memory, saved, exported) and per QAT config (trained or
 * reused), each evaluated on the inference engine and the integer kernels,
 * then the table in three formats and the plot. */
#include "compare.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "infer/infer.h"
#include "format/checkpoint.h"
#include "train/ptq_model.h"
#include "train/sample.h"
#include "train/mixed.h"
#include "train/teacher.h"
#include "train/trainer.h"
#include "util/json.h"
#include "util/progress.h"

/* What every row is measured on: the float model's validation batches. */
typedef struct Bench {
    const int32_t *val;
    EvalWindows w;
    int B, T;
    int gen_tokens;
} Bench;

static size_t file_size(const char *path) {
    FILE *f = xfopen(path, "rb");
    fseek(f, 0, SEEK_END);
    size_t n = (size_t)ftell(f);
    fclose(f);
    return n;
}

/* wall_s of a run's summary.json, or -1. */
static double summary_wall(const char *out_dir) {
    char path[CONFIG_PATH_MAX + 128];
    snprintf(path, sizeof path, "%s/summary.json", out_dir);
    if (access(path, R_OK) != 0) return -1.0;
    char *s = xread_file(path, NULL);
    cJSON *j = cJSON_Parse(s);
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(j, "wall_s");
    double v = cJSON_IsNumber(w) ? w->valuedouble : -1.0;
    cJSON_Delete(j);
    free(s);
    return v;
}

/* Loss, perplexity, generation speed and bits per weight of m. */
static void measure(const InferModel *m, const Bench *b, double float_loss, CompareRow *r) {
    Progress p;
    progress_begin(&p, stdout, b->w.n, "compare: scoring, window");
    r->val_loss = infer_eval_loss_progress(m, b->val, &b->w, NULL, &p);
    r->ppl = exp(r->val_loss);
    r->delta = isnan(float_loss) ? 0.0 : r->val_loss - float_loss;
    r->delta_ft = NAN;
    r->baseline = -1;
    FILE *null = xfopen("/dev/null", "w");
    SampleOptions so = {.tokens = b->gen_tokens, .temperature = 0.0f, .seed = 1};
    double t0 = now_seconds();
    sample_text(m, &so, null);
    r->gen_tokens_per_s = b->gen_tokens / (now_seconds() - t0);
    fclose(null);
    double bits = 0.0, weights = 0.0;
    for (int i = 0; i < m->n_q; i++) {
        const QMatrix *q = &m->qm[i];
        double n = (double)q->rows * q->in;
        weights += n;
        /* a table matrix: the bits of its level count, and the tables themselves
         * (one: fp32 levels; per channel or group: int8 levels, as the file holds them) */
        double tables = !q->lut ? 0.0 : q->n_tables > 1 ? 8.0 * q->n_tables * q->n_levels : 32.0 * q->n_levels;
        bits += qmatrix_code_bits(q) * n + 32.0 * q->rows * (q->cols / q->group) + 32.0 * q->rows * q->n_float + tables;
    }
    r->bits_per_weight = m->n_q ? bits / weights : 32.0;
}

/* Export m to path (the deployable file), measure, fill r. */
static void export_and_measure(const InferModel *m, const char *path, const char *source, long step, const Bench *b,
                               double float_loss, CompareRow *r) {
    infer_save(m, path, source, step);
    r->bytes = file_size(path);
    measure(m, b, float_loss, r);
}

static void slug_of(const char *s, char *out, size_t n) {
    size_t k = 0;
    for (; *s && k + 1 < n; s++) {
        char c = *s;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.';
        if (ok) out[k++] = c;
        else if (k && out[k - 1] != '-') out[k++] = '-';
    }
    while (k && out[k - 1] == '-') k--;
    out[k] = '\0';
}

static int group_of(const QuantConfig *q) {
    return !strcmp(q->w_gran, "group") ? q->w_group : !strcmp(q->w_gran, "channel") ? -1 : 0;
}

static void ptq_row(const char *entry, int k, const char *float_ckpt, const Config *fcfg, const Vocab *v,
                    const Dataset *ds, const Bench *b, double float_loss, const char *out_dir, MixedTable *sens,
                    CompareRow *r) {
    char origin[64], buf[1024], *argv[128];
    snprintf(origin, sizeof origin, "compare.ptq entry %d", k + 1);
    snprintf(buf, sizeof buf, "%s", entry);
    int argc = 0;
    for (char *t = strtok(buf, " \t\n"); t && argc < 128; t = strtok(NULL, " \t\n")) argv[argc++] = t;
    PtqOptions o;
    ptq_options_parse(&o, argc, argv, origin);
    o.log = stdout;
    Config qc = *fcfg;
    ptq_quant_config(&o, &qc.quant);
    if (o.budget > 0.0f) ptq_budget_config(float_ckpt, fcfg, &o, &qc.quant, sens, false);
    GPTConfig gc = config_gpt(&fcfg->model, v->size);
    GPT g;
    gpt_build(&g, &gc, &qc.quant, origin);
    ckpt_load_params(float_ckpt, &g, true);
    int n_seq = o.calib_batches * b->B;
    int32_t *calib = ptq_calib_windows(ds->tokens, ds->n_train, n_seq, b->T, o.seed);
    PtqReport *rep = xmalloc(sizeof *rep);
    ptq_model(&g, &o, calib, n_seq, b->T, rep);
    r->seconds = rep->seconds;
    free(rep);
    free(calib);
    /* rows that differ in more than bits and group get their own method name (and plot line) */
    bool plain_w8a8 = o.act[0] && strcmp(o.method, "smoothquant") && strcmp(o.method, "outlier");
    bool cb = strcmp(o.codebook, "none");
    bool tables = cb && strcmp(o.tables, "layer");
    snprintf(r->method, sizeof r->method, "%s%s%s%s%s%s%s%s%s%s%s", o.method, o.act_order ? "-act-order" : "",
             !strcmp(o.method, "smoothquant") && o.alpha < 0.0f ? "-auto" : "", plain_w8a8 ? "-a8-" : "",
             plain_w8a8 ? o.act : "", o.budget > 0.0f ? "+mixed" : "", cb ? "+" : "", cb ? o.codebook : "",
             tables ? "+tables-" : "", tables ? o.tables : "", o.full ? "+full" : "");
    r->w_bits = o.budget > 0.0f ? 0 : o.bits; /* 0: mixed, bits per layer */
    r->a_bits = o.act[0] ? 8 : 32;
    r->group = o.budget > 0.0f ? 0 : o.group;
    ptq_describe(&o, r->what, sizeof r->what);
    char slug[200], path[CONFIG_PATH_MAX + 256];
    slug_of(entry, slug, sizeof slug);
    snprintf(path, sizeof path, "%s/ptq/%s.h5", out_dir, slug);
    ckpt_save(path, &qc, v, &g, NULL, 0, NULL, r->what);
    snprintf(r->ckpt, sizeof r->ckpt, "%s", path);
    char *yaml = config_to_yaml(&qc);
    InferModel m;
    infer_from_gpt(&m, &g, v, yaml);
    free(yaml);
    gpt_free(&g);
    snprintf(path, sizeof path, "%s/models/%s.h5", out_dir, slug);
    snprintf(r->model, sizeof r->model, "%s", path);
    export_and_measure(&m, path, float_ckpt, 0, b, float_loss, r);
    infer_free(&m);
}

/* The checkpoint's run was made from this resolved config (the thread
 * count aside, which changes no result that a comparison reports). */
static bool same_run(const Config *saved, const Config *rc) {
    Config a = *saved, b = *rc;
    a.train.threads = b.train.threads = 0;
    char *ya = config_to_yaml(&a), *yb = config_to_yaml(&b);
    bool same = !strcmp(ya, yb);
    free(ya), free(yb);
    return same;
}

/* What a fine-tuning run was made from beyond its config: the float
 * model's bytes and the corpus's path and size, so that a retrained float
 * model or another text under the same name never reuses an old run. */
static void inputs_key(const char *float_ckpt, const Config *rc, char *key, size_t n) {
    const char *data = !strcmp(rc->data.source, "teacher") ? rc->data.teacher_cache : rc->data.path;
    struct stat st;
    long long size = data[0] && stat(data, &st) == 0 ? (long long)st.st_size : -1;
    snprintf(key, n, "float model crc32 %08x\ncorpus %s, %lld bytes\n", util_file_crc32(float_ckpt), data, size);
}

static bool key_matches(const char *out_dir, const char *key) {
    char path[CONFIG_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/compare-inputs.txt", out_dir);
    if (access(path, R_OK) != 0) return false;
    char *got = xread_file(path, NULL);
    bool same = !strcmp(got, key);
    free(got);
    return same;
}

/* Trains rc into rc->out_dir unless a complete run of the same resolved
 * config and inputs (key) is there (its checkpoint at rc->train.iters and
 * its summary); returns the checkpoint's path in ckpt and the run's wall time. */
static double train_or_reuse(const Config *rc, const char *origin, bool retrain, const char *key, char *ckpt, size_t n) {
    snprintf(ckpt, n, "%s/checkpoint.h5", rc->out_dir);
    long step = -1;
    bool same = false;
    if (access(ckpt, R_OK) == 0) {
        Config saved;
        ckpt_load_meta(ckpt, &saved, NULL, &step);
        same = same_run(&saved, rc) && key_matches(rc->out_dir, key);
    }
    double wall = summary_wall(rc->out_dir);
    if (retrain || step != rc->train.iters || wall < 0.0 || !same) {
        printf("compare: training %s into %s\n", origin, rc->out_dir);
        fflush(stdout);
        /* its progress shows (a long run must not sit silent); compare decided this run is not reusable */
        TrainOptions to = {.overwrite = true};
        double t0 = now_seconds();
        train_run(rc, origin, &to);
        wall = now_seconds() - t0;
        char path[CONFIG_PATH_MAX + 64];
        snprintf(path, sizeof path, "%s/compare-inputs.txt", rc->out_dir);
        xwrite_file_atomic(path, key, strlen(key));
    } else {
        printf("compare: reusing %s (%ld steps, the same config, float model and corpus; compare.retrain_qat trains "
               "again)\n", ckpt, step);
    }
    return wall;
}

/* The experiment a comparison runs: the compared float model, its corpus and
 * how rows are scored; xc holds the resolved model and data sections and the
 * evaluation and thread settings, written_float the float checkpoint the
 * comparison's file names before --set overrides. */
typedef struct Experiment {
    Config xc;
    const char *origin;
    char float_ckpt[CONFIG_PATH_MAX + 32], written_float[CONFIG_PATH_MAX + 32];
    Config written; /* the comparison's file as written */
    char dir[CONFIG_PATH_MAX + 32]; /* compare.out_dir, or its own when the float model is another one */
} Experiment;

/* The checks that need no float model yet (made before anything trains):
 * the file loads, quantizes, names the comparison's data and float model. */
static void qat_file_check(Config *qf, const char *cfg_path, const Experiment *x, const char *float_ckpt) {
    Config d;
    config_defaults(&d);
    config_defaults(qf);
    config_load_file(qf, cfg_path);
    config_validate(qf, cfg_path);
    if (!qf->quant.w_bits) qat_fail("%s: compare.qat: quant.weight.bits is 0; a QAT config quantizes", cfg_path);
    const char *key = config_section_differs(qf, &x->written, "data");
    if (key && config_section_differs(qf, &d, "data"))
        qat_fail("%s: %s: differs from the data of %s; every row trains and is scored on the comparison's corpus "
                 "(leave the data section out, or make it match; qat compare --set data.path=... changes it for every "
                 "row)", cfg_path, key, x->origin);
    if (qf->quant.init_from[0] && strcmp(qf->quant.init_from, x->written_float) &&
        !util_same_file(qf->quant.init_from, float_ckpt))
        qat_fail("%s: quant.init_from: '%s' is not the compared float model %s", cfg_path, qf->quant.init_from,
                 x->written_float);
}

/* A QAT row's config: its quantization and fine-tuning schedule from its
 * file (compare.qat); the model, the data, the evaluation and the starting
 * point from the comparison, so that every row fine-tunes the same float
 * model on the same text it is scored on. A file made for another model or
 * corpus (a model or data key that is neither the comparison's as written
 * nor left at its default) is refused naming the key. Its run lives under
 * the comparison's directory, named after the file. */
static void qat_config_load(Config *qc, const char *cfg_path, const Experiment *x) {
    Config qf, d;
    config_defaults(&d);
    qat_file_check(&qf, cfg_path, x, x->float_ckpt);
    const char *key = config_section_differs(&qf, &x->xc, "model");
    if (key && config_section_differs(&qf, &d, "model"))
        qat_fail("%s: %s: differs from the compared float model's (%s); a QAT row fine-tunes that model (leave the "
                 "model section out, or make it match)", cfg_path, key, x->float_ckpt);
    *qc = qf;
    qc->model = x->xc.model;
    qc->data = x->xc.data;
    snprintf(qc->train.eval, sizeof qc->train.eval, "%s", x->xc.train.eval);
    qc->train.eval_batches = x->xc.train.eval_batches;
    qc->train.threads = x->xc.train.threads;
    xsnprintf(qc->quant.init_from, sizeof qc->quant.init_from, "compare: the float model's path", "%s", x->float_ckpt);
    const char *base = strrchr(cfg_path, '/') ? strrchr(cfg_path, '/') + 1 : cfg_path;
    int bl = (int)strlen(base);
    if (bl > 5 && !strcmp(base + bl - 5, ".yaml")) bl -= 5;
    xsnprintf(qc->out_dir, sizeof qc->out_dir, "compare.out_dir", "%s/%.*s", x->dir, bl, base);
}

/* FNV-1a of a string: names the run directory of a resolved config. */
static uint32_t text_hash(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

/* The float+ft run of a QAT config: the same model, data, schedule and seed,
 * no quantization, from the same float model; its run directory under
 * out_dir is named by a hash of that resolved config, so a changed schedule
 * never reuses another's run. */
static void float_ft_config(const Config *qc, const char *float_ckpt, const char *out_dir, Config *fc) {
    *fc = *qc;
    Config d;
    config_defaults(&d);
    fc->quant = d.quant;
    xsnprintf(fc->quant.init_from, sizeof fc->quant.init_from, "compare: the float model's path", "%s", float_ckpt);
    fc->out_dir[0] = '\0';
    char *yaml = config_to_yaml(fc);
    xsnprintf(fc->out_dir, sizeof fc->out_dir, "compare.out_dir", "%s/float-ft-%08x", out_dir, text_hash(yaml));
    free(yaml);
}

/* A float row (float, float+ft): the checkpoint on the inference engine's float path. */
static void float_row(const char *ckpt, const char *method, double seconds, const Bench *b, double float_loss,
                      CompareRow *r) {
    GPT g;
    Config lc;
    Vocab v;
    model_load(ckpt, &g, &lc, &v);
    InferModel m;
    infer_from_gpt(&m, &g, &v, "");
    gpt_free(&g);
    vocab_free(&v);
    snprintf(r->method, sizeof r->method, "%s", method);
    snprintf(r->ckpt, sizeof r->ckpt, "%s", ckpt);
    r->w_bits = r->a_bits = 32;
    r->seconds = seconds;
    measure(&m, b, float_loss, r);
    r->bytes = infer_float_bytes(&m);
    infer_free(&m);
}

static void float_ft_row(const Config *fc, bool retrain, const char *key, const Bench *b, double float_loss,
                         CompareRow *r) {
    char ckpt[CONFIG_PATH_MAX + 32];
    double wall = train_or_reuse(fc, "the float+ft baseline", retrain, key, ckpt, sizeof ckpt);
    float_row(ckpt, "float+ft", wall, b, float_loss, r);
    snprintf(r->what, sizeof r->what, "the float model fine-tuned in float for %d steps (lr %g to %g, warmup %d) as the "
             "QAT rows are (%s)", fc->train.iters, fc->train.lr, fc->train.min_lr, fc->train.warmup_iters, fc->out_dir);
}

static void qat_row(const Config *qc, const char *cfg_path, bool retrain, const char *key, const Bench *b,
                    double float_loss, const char *out_dir, CompareRow *r) {
    char ckpt[CONFIG_PATH_MAX + 32];
    double wall = train_or_reuse(qc, cfg_path, retrain, key, ckpt, sizeof ckpt);
    GPT g;
    Config lc;
    Vocab v;
    long step = 0;
    model_load(ckpt, &g, &lc, &v);
    ckpt_load_meta(ckpt, &lc, NULL, &step);
    bool mixed = qc->quant.n_ov > 0, kd = qc->quant.distill_weight > 0.0f;
    bool cb = strcmp(qc->quant.w_codebook, "none");
    if (mixed) snprintf(r->method, sizeof r->method, "qat+mixed%s", kd ? "+kd" : "");
    else {
        bool tables = cb && strcmp(qc->quant.w_tables, "layer");
        snprintf(r->method, sizeof r->method, "qat-%s%s%s%s%s%s%s", qc->quant.estimator, kd ? "+kd" : "", cb ? "+" : "",
                 cb ? qc->quant.w_codebook : "", tables ? "+tables-" : "", tables ? qc->quant.w_tables : "",
                 qc->quant.w_narrow ? "" : "+full");
    }
    r->w_bits = mixed ? 0 : qc->quant.w_bits;
    r->a_bits = qc->quant.a_bits ? qc->quant.a_bits : 32;
    r->group = mixed ? 0 : group_of(&qc->quant);
    r->seconds = wall;
    snprintf(r->what, sizeof r->what, "%s (%d steps from the float model%s%s%s)", cfg_path, qc->train.iters,
             mixed ? "; per-layer formats in " : "", mixed ? qc->out_dir : "", mixed ? "/config.yaml" : "");
    char *yaml = config_to_yaml(&lc);
    InferModel m;
    infer_from_gpt(&m, &g, &v, yaml);
    free(yaml);
    gpt_free(&g);
    vocab_free(&v);
    char slug[200], path[CONFIG_PATH_MAX + 256];
    slug_of(cfg_path, slug, sizeof slug);
    snprintf(path, sizeof path, "%s/models/%s.h5", out_dir, slug);
    snprintf(r->ckpt, sizeof r->ckpt, "%s", ckpt);
    snprintf(r->model, sizeof r->model, "%s", path);
    export_and_measure(&m, path, ckpt, step, b, float_loss, r);
    infer_free(&m);
}

static const char *group_str(int g, char *buf, size_t n) {
    if (g > 0) snprintf(buf, n, "%d", g);
    else snprintf(buf, n, "%s", g < 0 ? "channel" : "tensor");
    return buf;
}

static void write_outputs(const char *dir, const CompareRow *rows, int n, const char *title) {
    char path[CONFIG_PATH_MAX + 64], g[16];
    size_t cap = 1 << 16, k = 0;
    char *s = xmalloc(cap);
    char dft[32];
    /* json: one object per row, formatted one per line for diffs */
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        const CompareRow *r = &rows[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "method", r->method);
        cJSON_AddNumberToObject(o, "w_bits", r->w_bits);
        cJSON_AddNumberToObject(o, "a_bits", r->a_bits);
        cJSON_AddNumberToObject(o, "group", r->group);
        json_add_num(o, "val_loss", r->val_loss, 6);
        json_add_num(o, "ppl", r->ppl, 4);
        json_add_num(o, "delta", r->delta, 6);
        json_add_num(o, "delta_ft", r->delta_ft, 6); /* null without a float+ft row */
        cJSON_AddNumberToObject(o, "bytes", (double)r->bytes);
        json_add_num(o, "bits_per_weight", r->bits_per_weight, 4);
        json_add_num(o, "gen_tokens_per_s", r->gen_tokens_per_s, 1);
        json_add_num(o, "seconds", r->seconds, 2);
        cJSON_AddStringToObject(o, "checkpoint", r->ckpt);
        if (r->model[0]) cJSON_AddStringToObject(o, "model", r->model);
        cJSON_AddItemToArray(arr, o);
    }
    k = (size_t)snprintf(s, cap, "[\n");
    for (int i = 0; i < n; i++) {
        char *line = cJSON_PrintUnformatted(cJSON_GetArrayItem(arr, i));
        if (!line) qat_fail("compare.json: out of memory");
        while (k + strlen(line) + 8 > cap) s = xrealloc(s, cap *= 2);
        k += (size_t)snprintf(s + k, cap - k, "  %s%s\n", line, i + 1 < n ? "," : "");
        cJSON_free(line);
    }
    k += (size_t)snprintf(s + k, cap - k, "]\n");
    cJSON_Delete(arr);
    snprintf(path, sizeof path, "%s/compare.json", dir);
    xwrite_file_atomic(path, s, k);
    /* csv */
    k = 0;
    k += (size_t)snprintf(s + k, cap - k, "method,w_bits,a_bits,group,val_loss,ppl,delta,delta_ft,bytes,bits_per_weight,gen_tokens_per_s,seconds\n");
    for (int i = 0; i < n; i++) {
        const CompareRow *r = &rows[i];
        if (isnan(r->delta_ft)) dft[0] = '\0';
        else snprintf(dft, sizeof dft, "%.6f", r->delta_ft);
        k += (size_t)snprintf(s + k, cap - k, "%s,%d,%d,%d,%.6f,%.4f,%.6f,%s,%zu,%.4f,%.1f,%.2f\n", r->method, r->w_bits,
                              r->a_bits, r->group, r->val_loss, r->ppl, r->delta, dft, r->bytes, r->bits_per_weight,
                              r->gen_tokens_per_s, r->seconds);
        if (k + 2048 > cap) s = xrealloc(s, cap *= 2);
    }
    snprintf(path, sizeof path, "%s/compare.csv", dir);
    xwrite_file_atomic(path, s, k);
    /* markdown */
    k = 0;
    k += (size_t)snprintf(s + k, cap - k,
                          "# %s\n\n| method | W bits | A bits | group | val loss | ppl | vs float | vs float+ft | bytes | "
                          "bits/weight | gen tok/s | time (s) | how |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
                          title);
    for (int i = 0; i < n; i++) {
        const CompareRow *r = &rows[i];
        char a[8];
        snprintf(a, sizeof a, "%d", r->a_bits);
        if (isnan(r->delta_ft)) snprintf(dft, sizeof dft, "-");
        else snprintf(dft, sizeof dft, "%+.4f", r->delta_ft);
        char wb[8];
        if (r->w_bits) snprintf(wb, sizeof wb, "%d", r->w_bits);
        else snprintf(wb, sizeof wb, "mixed");
        k += (size_t)snprintf(s + k, cap - k, "| %s | %s | %s | %s | %.4f | %.3f | %+.4f | %s | %zu | %.2f | %.0f | %.1f | %s |\n",
                              r->method, wb, r->a_bits == 32 ? "float" : a,
                              r->w_bits == 32 || !r->w_bits ? "-" : group_str(r->group, g, sizeof g),
                              r->val_loss, r->ppl, r->delta, dft, r->bytes, r->bits_per_weight, r->gen_tokens_per_s,
                              r->seconds, r->what);
        if (k + 2048 > cap) s = xrealloc(s, cap *= 2);
    }
    snprintf(path, sizeof path, "%s/compare.md", dir);
    xwrite_file_atomic(path, s, k);
    fwrite(s, 1, k, stdout);
    free(s);
    snprintf(path, sizeof path, "%s/compare.png", dir);
    compare_plot(path, rows, n, title);
}

/* The table being built; each float+ft row remembers its run directory. */
typedef char RunDir[CONFIG_PATH_MAX + 32];
typedef struct Rows {
    CompareRow *r;
    RunDir *ft;
    int n, cap;
} Rows;

static CompareRow *rows_push(Rows *R) {
    if (R->n == R->cap) {
        R->cap = R->cap ? 2 * R->cap : 16;
        R->r = xrealloc(R->r, (size_t)R->cap * sizeof *R->r);
        R->ft = xrealloc(R->ft, (size_t)R->cap * sizeof *R->ft);
    }
    memset(&R->r[R->n], 0, sizeof R->r[R->n]);
    R->ft[R->n][0] = '\0';
    R->r[R->n].delta_ft = NAN;
    R->r[R->n].baseline = -1;
    return &R->r[R->n++];
}

/* A QAT row, after the float+ft row of its schedule (one per distinct schedule). */
static void qat_rows(Rows *R, const Config *qc, const char *label, const char *float_ckpt, bool retrain,
                     const char *key, const Bench *b, double float_loss, const char *dir) {
    Config fc;
    float_ft_config(qc, float_ckpt, dir, &fc);
    int base = -1;
    for (int i = 0; i < R->n; i++)
        if (!strcmp(R->r[i].method, "float+ft") && !strcmp(R->ft[i], fc.out_dir)) base = i;
    if (base < 0) {
        CompareRow *f = rows_push(R);
        float_ft_row(&fc, retrain, key, b, float_loss, f);
        snprintf(R->ft[R->n - 1], sizeof R->ft[0], "%s", fc.out_dir);
        printf("compare: float+ft (%d steps): val loss %.4f (%+.4f)\n", fc.train.iters, f->val_loss, f->delta);
        fflush(stdout);
        base = R->n - 1;
    }
    CompareRow *r = rows_push(R);
    qat_row(qc, label, retrain, key, b, float_loss, dir, r);
    r->baseline = base;
    r->delta_ft = r->val_loss - R->r[base].val_loss;
    printf("compare: %s: val loss %.4f (%+.4f against float, %+.4f against float+ft)\n", r->what, r->val_loss, r->delta,
           r->delta_ft);
    fflush(stdout);
}

void compare_run(const Config *cfg, const char *origin) {
    CompareRow *rows;
    compare_run_rows(cfg, origin, &rows);
    free(rows);
}

/* The float model's identity: its config but for the comparison section,
 * the thread count and out_dir, which change nothing it learns. */
static uint32_t float_identity(const Config *c) {
    Config a = *c, d;
    config_defaults(&d);
    a.compare = d.compare;
    a.train.threads = 0;
    a.out_dir[0] = '\0';
    char *yaml = config_to_yaml(&a);
    uint32_t h = text_hash(yaml);
    free(yaml);
    return h;
}

/* The first key by which a saved float run's model, data or training differ from fc's, or NULL. */
static const char *float_differs(const Config *saved, const Config *fc) {
    Config a = *saved, b = *fc;
    a.train.threads = b.train.threads = 0;
    const char *k = config_section_differs(&a, &b, "model");
    if (!k) k = config_section_differs(&a, &b, "data");
    if (!k) k = config_section_differs(&a, &b, "train");
    return k;
}

/* The comparison's float model: reused when out_dir holds a complete run of
 * the same model, data and training; trained when there is none (or an
 * unfinished one of the same config). When out_dir holds a model of another
 * config (the comparison run with --set data.path=..., say), that run is
 * left alone and this comparison's float model and rows get directories of
 * their own, named by the config's hash. Returns the training's wall time. */
static double float_model(Config *fc, const char *origin, Experiment *x) {
    for (int attempt = 0;; attempt++) {
        snprintf(x->float_ckpt, sizeof x->float_ckpt, "%s/checkpoint.h5", fc->out_dir);
        if (access(x->float_ckpt, R_OK) != 0) break;
        Config saved;
        long step;
        ckpt_load_meta(x->float_ckpt, &saved, NULL, &step);
        const char *k = float_differs(&saved, fc);
        if (!k && step == fc->train.iters) {
            printf("compare: reusing the float model %s (%ld steps of the same config)\n", x->float_ckpt, step);
            return summary_wall(fc->out_dir);
        }
        if (!k) break; /* this config's own unfinished run */
        if (attempt > 0) qat_fail("%s: %s holds a float model of another config (%s differs)", origin, x->float_ckpt, k);
        uint32_t h = float_identity(fc);
        char was[CONFIG_PATH_MAX + 32];
        snprintf(was, sizeof was, "%s", fc->out_dir);
        xsnprintf(fc->out_dir, sizeof fc->out_dir, "out_dir", "%s-%08x", was, h);
        xsnprintf(x->dir, sizeof x->dir, "compare.out_dir", "%s-%08x", fc->compare.out_dir, h);
        printf("compare: %s holds a float model of another config (%s differs); it is left as it is, and this "
               "comparison's float model and rows go to %s and %s\n", was, k, fc->out_dir, x->dir);
    }
    printf("compare: training the float model into %s\n", fc->out_dir);
    fflush(stdout);
    /* its progress shows (a long run must not sit silent) */
    TrainOptions to = {.overwrite = true};
    double t0 = now_seconds();
    train_run(fc, origin, &to);
    return now_seconds() - t0;
}

int compare_run_rows(const Config *cfg, const char *origin, CompareRow **out) {
    config_validate(cfg, origin);
    Config dflt;
    config_defaults(&dflt);
    /* a quant key on the comparison would quantize its float model alone */
    const char *qk = config_section_differs(cfg, &dflt, "quant");
    if (qk)
        qat_fail("%s: %s: qat compare takes the config of the float model; each QAT row's quantization is in its own "
                 "file (compare.qat), each PTQ row's in compare.ptq", origin, qk);
    apply_threads(cfg);
    Experiment *x = xcalloc(1, sizeof *x);
    x->origin = origin;
    config_defaults(&x->written);
    if (access(origin, R_OK) == 0) config_load_file(&x->written, origin);
    else x->written = *cfg;
    snprintf(x->dir, sizeof x->dir, "%s", cfg->compare.out_dir);
    char sub[CONFIG_PATH_MAX + 64];
    double float_seconds = -1.0;
    if (cfg->compare.float_checkpoint[0])
        snprintf(x->written_float, sizeof x->written_float, "%s",
                 x->written.compare.float_checkpoint[0] ? x->written.compare.float_checkpoint : cfg->compare.float_checkpoint);
    else
        snprintf(x->written_float, sizeof x->written_float, "%s/checkpoint.h5", x->written.out_dir);
    {
        /* every QAT file checked before anything trains */
        char first_float[CONFIG_PATH_MAX + 64];
        if (cfg->compare.float_checkpoint[0]) snprintf(first_float, sizeof first_float, "%s", cfg->compare.float_checkpoint);
        else snprintf(first_float, sizeof first_float, "%s/checkpoint.h5", cfg->out_dir);
        char *list = xstrdup(cfg->compare.qat), *save = NULL;
        for (char *e = strtok_r(list, ",", &save); e; e = strtok_r(NULL, ",", &save)) {
            while (*e == ' ' || *e == '\n' || *e == '\t') e++;
            char *end = e + strlen(e);
            while (end > e && (end[-1] == ' ' || end[-1] == '\n' || end[-1] == '\t')) *--end = '\0';
            Config qf;
            if (*e) qat_file_check(&qf, e, x, first_float);
        }
        free(list);
        Config qf;
        if (cfg->compare.budget_qat[0]) qat_file_check(&qf, cfg->compare.budget_qat, x, first_float);
    }
    if (cfg->compare.float_checkpoint[0]) {
        snprintf(x->float_ckpt, sizeof x->float_ckpt, "%s", cfg->compare.float_checkpoint);
        if (access(x->float_ckpt, R_OK) != 0)
            qat_fail("%s: compare.float_checkpoint: %s is not readable", origin, x->float_ckpt);
        char run_dir[CONFIG_PATH_MAX + 32];
        snprintf(run_dir, sizeof run_dir, "%s", x->float_ckpt);
        char *slash = strrchr(run_dir, '/');
        if (slash) *slash = '\0';
        else snprintf(run_dir, sizeof run_dir, ".");
        float_seconds = summary_wall(run_dir); /* the training run's, when it is beside the checkpoint */
    } else {
        Config fc = *cfg;
        float_seconds = float_model(&fc, origin, x);
    }
    const char *dir = x->dir, *float_ckpt = x->float_ckpt;
    xmkdir_p(dir, "compare.out_dir");
    snprintf(sub, sizeof sub, "%s/ptq", dir);
    xmkdir_p(sub, "compare.out_dir");
    snprintf(sub, sizeof sub, "%s/models", dir);
    xmkdir_p(sub, "compare.out_dir");

    Config fcfg;
    Vocab v;
    long fstep;
    ckpt_load_meta(float_ckpt, &fcfg, &v, &fstep);
    if (fcfg.quant.w_bits) qat_fail("%s: compare.float_checkpoint: %s is quantized, not a float model", origin, float_ckpt);
    /* a given float checkpoint is calibrated and scored on the comparison's corpus when it names one */
    if (cfg->compare.float_checkpoint[0] && config_section_differs(cfg, &dflt, "data")) fcfg.data = cfg->data;
    x->xc = fcfg;
    x->xc.train.threads = cfg->train.threads;
    bool teacher = !strcmp(cfg->data.source, "teacher");
    if (teacher) x->xc.data = cfg->data;
    if (teacher && !cfg->compare.eval_data[0])
        qat_fail("%s: data.source: teacher samples calibration data; name the text every row is scored on in "
                 "compare.eval_data", origin);
    if (!teacher && access(fcfg.data.path, R_OK) != 0)
        qat_fail("%s: the training corpus %s (data.path) is not readable; calibration and evaluation need it", float_ckpt,
                 fcfg.data.path);
    /* calibration: the float model's training split, or (data-free) its own samples */
    Dataset ds;
    if (teacher) {
        Config tc = fcfg;
        tc.data = cfg->data;
        char cache[CONFIG_PATH_MAX + 96];
        if (cfg->data.teacher_cache[0]) snprintf(cache, sizeof cache, "%s", cfg->data.teacher_cache);
        else snprintf(cache, sizeof cache, "%s/teacher-data.h5", dir);
        ds.tokens = teacher_tokens(&tc, float_ckpt, cache, &ds.n, false);
        ds.n_train = ds.n;
    } else {
        dataset_load(&ds, &v, fcfg.data.path, false, false);
        dataset_split(&ds, fcfg.data.val_fraction, fcfg.model.block_size, fcfg.data.path);
    }
    Bench b = {.val = ds.tokens + ds.n_train, .B = fcfg.train.batch_size, .T = fcfg.model.block_size,
               .gen_tokens = cfg->compare.gen_tokens};
    Dataset evd = {0};
    if (cfg->compare.eval_data[0]) { /* a text of its own, whole */
        dataset_load(&evd, &v, cfg->compare.eval_data, false, false);
        if (evd.n < 2) qat_fail("%s: compare.eval_data: %s holds fewer than 2 tokens", origin, cfg->compare.eval_data);
        b.val = evd.tokens;
        eval_windows_full(&b.w, evd.n, b.T);
        printf("compare: every row scored on %ld tokens of %s (%d windows of up to %d)\n", b.w.tokens,
               cfg->compare.eval_data, b.w.n, b.T);
    } else {
        eval_windows_of(&fcfg, ds.n - ds.n_train, &b.w);
        printf("compare: every row scored on %ld validation tokens (%s: %d windows of up to %d)\n", b.w.tokens,
               fcfg.train.eval, b.w.n, b.T);
    }

    Rows R = {0};
    {
        CompareRow *r = rows_push(&R);
        float_row(float_ckpt, "float", float_seconds, &b, NAN, r);
        snprintf(r->what, sizeof r->what, "%s (%ld steps)", float_ckpt, fstep);
        printf("compare: float: val loss %.4f\n", r->val_loss);
        fflush(stdout);
    }
    double float_loss = R.r[0].val_loss;
    /* what the fine-tuning rows are made from beyond their configs */
    char key[2 * CONFIG_PATH_MAX + 128];
    inputs_key(float_ckpt, &x->xc, key, sizeof key);
    MixedTable sens = {0}; /* the budget rows' sensitivities, measured once */
    /* PTQ entries, counted first for the progress lines' "k/n" */
    char *list = xstrdup(cfg->compare.ptq), *save = NULL;
    int n_ptq = 0, n_qat = 0;
    for (char *e = strtok_r(list, ";", &save); e; e = strtok_r(NULL, ";", &save)) n_ptq += strspn(e, " \n\t") < strlen(e);
    free(list);
    list = xstrdup(cfg->compare.qat);
    for (char *e = strtok_r(list, ",", &save); e; e = strtok_r(NULL, ",", &save)) n_qat += strspn(e, " \n\t") < strlen(e);
    free(list);
    list = xstrdup(cfg->compare.ptq);
    int k = 0;
    for (char *e = strtok_r(list, ";", &save); e; e = strtok_r(NULL, ";", &save)) {
        while (*e == ' ' || *e == '\n' || *e == '\t') e++;
        if (!*e) continue;
        CompareRow *r = rows_push(&R);
        printf("compare: PTQ %d/%d: %s\n", k + 1, n_ptq, e);
        fflush(stdout);
        ptq_row(e, k++, float_ckpt, &fcfg, &v, &ds, &b, float_loss, dir, &sens, r);
        printf("compare: %s: val loss %.4f (%+.4f), %.1f s\n", r->what, r->val_loss, r->delta, r->seconds);
        fflush(stdout);
    }
    free(list);
    /* QAT configs */
    list = xstrdup(cfg->compare.qat);
    int i_qat = 0;
    for (char *e = strtok_r(list, ",", &save); e; e = strtok_r(NULL, ",", &save)) {
        while (*e == ' ' || *e == '\n' || *e == '\t') e++;
        char *end = e + strlen(e);
        while (end > e && (end[-1] == ' ' || end[-1] == '\n' || end[-1] == '\t')) *--end = '\0';
        if (!*e) continue;
        Config qc;
        printf("compare: QAT %d/%d: %s\n", ++i_qat, n_qat, e);
        fflush(stdout);
        qat_config_load(&qc, e, x);
        if (qc.quant.budget_bpw > 0.0f) mixed_resolve(&qc, e, false, false, &sens);
        qat_rows(&R, &qc, e, float_ckpt, cfg->compare.retrain_qat, key, &b, float_loss, dir);
    }
    free(list);
    /* mixed precision within each budget */
    list = xstrdup(cfg->compare.budget);
    for (char *e = strtok_r(list, ", ", &save); e; e = strtok_r(NULL, ", ", &save)) {
        float bpw = util_parse_float("compare.budget", e, 0.0f);
        char *plist = xstrdup(cfg->compare.budget_ptq), *psave = NULL;
        for (char *p = strtok_r(plist, ";", &psave); p; p = strtok_r(NULL, ";", &psave)) {
            while (*p == ' ' || *p == '\n' || *p == '\t') p++;
            if (!*p) continue;
            char entry[1200];
            xsnprintf(entry, sizeof entry, "compare.budget_ptq", "%s --budget %g", p, bpw);
            CompareRow *r = rows_push(&R);
            ptq_row(entry, k++, float_ckpt, &fcfg, &v, &ds, &b, float_loss, dir, &sens, r);
            printf("compare: %s: val loss %.4f (%+.4f), %.2f bits per weight\n", r->what, r->val_loss, r->delta,
                   r->bits_per_weight);
            fflush(stdout);
        }
        free(plist);
        if (cfg->compare.budget_qat[0]) {
            Config qc;
            qat_config_load(&qc, cfg->compare.budget_qat, x);
            qc.quant.budget_bpw = bpw;
            /* its own run directory per budget; the plan (as overrides) is in its config.yaml */
            xsnprintf(qc.out_dir, sizeof qc.out_dir, "compare.out_dir", "%s/qat-mixed-%g", dir, bpw);
            mixed_resolve(&qc, cfg->compare.budget_qat, false, false, &sens);
            qat_rows(&R, &qc, cfg->compare.budget_qat, float_ckpt, cfg->compare.retrain_qat, key, &b, float_loss, dir);
        }
    }
    free(list);
    mixed_table_free(&sens);
    CompareRow *rows = R.r;
    int n = R.n;
    free(R.ft);
    char title[3 * CONFIG_PATH_MAX];
    if (cfg->compare.eval_data[0])
        snprintf(title, sizeof title, "QAT versus PTQ: %s (%ld tokens of %s, every window%s)", origin, b.w.tokens,
                 cfg->compare.eval_data, teacher ? "; calibration and fine-tuning on the float model's own samples" : "");
    else
        snprintf(title, sizeof title, "QAT versus PTQ: %s (%ld validation tokens, %s)", origin, b.w.tokens,
                 !strcmp(fcfg.train.eval, "random") ? "random windows" : "the whole split");
    write_outputs(dir, rows, n, title);
    /* the first windows of equal length (all but perhaps the last are full) */
    int nw = eval_windows_run(&b.w, 0, 4);
    int32_t *wx = xmalloc((size_t)nw * b.w.len[0] * sizeof(int32_t)), *wy = xmalloc((size_t)nw * b.w.len[0] * sizeof(int32_t));
    eval_windows_fill(&b.w, b.val, 0, nw, wx, wy);
    compare_layer_errors(dir, rows, n, float_ckpt, wx, nw, b.w.len[0]);
    free(wx), free(wy);
    printf("compare: wrote %s/compare.{md,csv,json,png} and layer_errors.{csv,png} (each Linear's error per method)\n", dir);
    *out = rows;
    eval_windows_free(&b.w);
    dataset_free(&ds);
    dataset_free(&evd);
    vocab_free(&v);
    free(x);
    return n;
}
