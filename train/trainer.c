/* trainer.c: the training loop with logging, evaluation, checkpoints, resume,
 * and a progress line. */
#define _DEFAULT_SOURCE
#include "trainer.h"

#include "train/teacher.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format/gguf.h"
#include "format/gguf_model.h"
#include "format/vocab_file.h"
#include "optim/optim.h"
#include "format/checkpoint.h"
#include "train/mixed.h"
#include "train/rundir.h"
#include "util/dist.h"
#include "util/progress.h"
#include "util/json.h"

#include <zlib.h>

void apply_threads(const Config *cfg) {
    if (cfg->train.threads > 0) qat_set_threads(cfg->train.threads);
}

uint64_t eval_seed(const Config *cfg) { return (uint64_t)cfg->train.seed * 2654435761u + 97; }

void eval_windows_of(const Config *cfg, size_t n, EvalWindows *w) {
    if (!strcmp(cfg->train.eval, "random"))
        eval_windows_random(w, n, cfg->model.block_size, cfg->train.eval_batches, cfg->train.batch_size, eval_seed(cfg));
    else
        eval_windows_full(w, n, cfg->model.block_size);
}

/* The first largest of n values. */
static int32_t argmax(const float *r, int n) {
    int32_t best = 0;
    for (int j = 1; j < n; j++)
        if (r[j] > r[best]) best = j;
    return best;
}

double eval_loss(GPT *g, Tape *t, const int32_t *tokens, const EvalWindows *w, int B, int32_t *top1) {
    int cap = 1;
    for (int i = 0; i < w->n; i++) cap = w->len[i] > cap ? w->len[i] : cap;
    int32_t *x = xmalloc((size_t)B * cap * sizeof(int32_t)), *y = xmalloc((size_t)B * cap * sizeof(int32_t));
    bool old = tape_set_grad(t, false);
    double sum = 0.0;
    long at = 0;
    int V = g->cfg.vocab_size;
    for (int i = 0; i < w->n;) {
        int k = eval_windows_run(w, i, B), L = w->len[i];
        eval_windows_fill(w, tokens, i, k, x, y);
        tape_reset(t);
        Tensor *logits = gpt_forward(g, t, x, k, L);
        sum += (double)op_cross_entropy(t, logits, y)->data[0] * ((double)k * L);
        for (long p = 0; top1 && p < (long)k * L; p++) top1[at + p] = argmax(logits->data + (size_t)p * V, V);
        at += (long)k * L;
        i += k;
    }
    tape_reset(t);
    tape_set_grad(t, old);
    free(x);
    free(y);
    return w->tokens ? sum / (double)w->tokens : NAN;
}

void model_load(const char *path, GPT *g, Config *cfg, Vocab *v) {
    ckpt_load_meta(path, cfg, v, NULL);
    GPTConfig gc = config_gpt(&cfg->model, v->size);
    gpt_build(g, &gc, &cfg->quant, path);
    ckpt_load_params(path, g, false);
}

/* Turns llama.cpp's q8_0 activation blocks on or off in every block-format
 * layer of g (act "q8_0" or "none"). */
static void set_act_format(GPT *g, const char *act, const char *path) {
    bool on = !strcmp(act, "q8_0");
    if (!on && strcmp(act, "none")) qat_fail("%s: --act-format: expected q8_0 or none, got '%s'", path, act);
    int n = 0;
    for (int i = 0; i < g->n_q; i++)
        if (g->qlayers[i].w.fmt) g->qlayers[i].a_blocks = on, n++;
    if (on && !n)
        qat_fail("%s: --act-format q8_0 simulates llama.cpp's products with block-format (q8_0, q4_0, q4_1) weights; "
                 "this model has none", path);
}

void model_load_infer(const char *path, InferModel *m, Config *cfg, const char *act) {
    if (infer_is_model_file(path)) {
        if (act) qat_fail("%s: an exported model runs as exported; --act-format takes a checkpoint or a GGUF file", path);
        infer_load(m, path);
        char origin[CONFIG_PATH_MAX + 16];
        snprintf(origin, sizeof origin, "%s:config", path);
        config_defaults(cfg);
        config_load_string(cfg, m->config_yaml, origin);
        return;
    }
    GPT g;
    Vocab v;
    bool gguf = gguf_is_file(path);
    if (gguf) { /* llama.cpp's file: its blocks back on the integer kernels */
        gguf_load_gpt(path, &g, &v, cfg, false);
    } else {
        model_load(path, &g, cfg, &v);
    }
    if (act) {
        set_act_format(&g, act, path);
    } else if (gguf) { /* as llama.cpp runs the file: its q8_0 activation blocks, where there are block layers */
        for (int i = 0; i < g.n_q; i++)
            if (g.qlayers[i].w.fmt) g.qlayers[i].a_blocks = true;
    }
    char *yaml = config_to_yaml(cfg);
    infer_from_gpt(m, &g, &v, yaml);
    free(yaml);
    gpt_free(&g);
    vocab_free(&v);
}

/* Export takes a training checkpoint and never writes over it. */
static void check_export(const char *ckpt, const char *out) {
    if (infer_is_model_file(ckpt)) qat_fail("%s: already an exported model; export takes a training checkpoint", ckpt);
    if (util_same_file(ckpt, out)) qat_fail("%s: -o names the checkpoint itself; choose another file", out);
    util_check_output(out);
}

ExportReport export_checkpoint(const char *ckpt, const char *out) {
    check_export(ckpt, out);
    GPT g;
    Config cfg;
    Vocab v;
    long step = 0;
    model_load(ckpt, &g, &cfg, &v);
    ckpt_load_meta(ckpt, &cfg, NULL, &step);
    if (g.n_q == 0)
        qat_fail("%s: a float checkpoint (no quantized layers): export takes a QAT or PTQ checkpoint", ckpt);
    /* qat's files hold its own symmetric grids (int4: -7..7, no offsets) and
     * tables of levels (codebooks, iq4_nl's 16 int8 levels), not q4_0/q4_1's
     * offset codes or llama.cpp's activation blocks */
    for (int i = 0; i < g.n_q; i++)
        if ((g.qlayers[i].w.fmt && g.qlayers[i].w.fmt != QF_Q8_0 && g.qlayers[i].w.fmt != QF_IQ4_NL) || g.qlayers[i].a_blocks)
            qat_fail("%s: %s is in llama.cpp's %s blocks%s: export it with qat export --format gguf", ckpt,
                     g.qlayers[i].name, qformat_name(g.qlayers[i].w.fmt),
                     g.qlayers[i].a_blocks ? " with q8_0 activations" : "");
    char *yaml = config_to_yaml(&cfg);
    InferModel m;
    infer_from_gpt(&m, &g, &v, yaml);
    free(yaml);
    gpt_free(&g);
    vocab_free(&v);
    infer_save(&m, out, ckpt, step);
    ExportReport r = {.quant_layers = m.n_q, .quant_bytes = infer_quant_bytes(&m),
                      .float_bytes = infer_float_bytes(&m)};
    FILE *f = xfopen(out, "rb");
    fseek(f, 0, SEEK_END);
    r.file_bytes = (size_t)ftell(f);
    fclose(f);
    for (int i = 0; i < m.n_q; i++) r.quant_weights += (size_t)m.qm[i].rows * m.qm[i].in;
    infer_free(&m);
    return r;
}

size_t export_checkpoint_gguf(const char *ckpt, const char *out, bool f16, FILE *report) {
    check_export(ckpt, out);
    GPT g;
    Config cfg;
    Vocab v;
    model_load(ckpt, &g, &cfg, &v);
    char name[CONFIG_PATH_MAX + 8];
    const char *slash = strrchr(cfg.out_dir, '/');
    snprintf(name, sizeof name, "qat %s", slash ? slash + 1 : cfg.out_dir);
    size_t n = gguf_export_gpt(&g, &v, name, out, f16, report);
    gpt_free(&g);
    vocab_free(&v);
    return n;
}

EvalResult eval_checkpoint(const char *path, const EvalOptions *opt) {
    EvalOptions none = {0};
    const EvalOptions *o = opt ? opt : &none;
    const char *data = o->data;
    Config cfg;
    InferModel m;
    GPT g;
    Vocab v;
    bool gguf = gguf_is_file(path), exported = infer_is_model_file(path);
    if (gguf && !data) qat_fail("%s: a GGUF file carries no training corpus: pass --data FILE", path);
    bool infer = o->int_kernels || gguf || exported, act = false;
    if (infer) {
        model_load_infer(path, &m, &cfg, o->act_format);
        if (o->int_kernels && m.n_q == 0) qat_fail("%s: --int needs a quantized (QAT or PTQ) checkpoint; this one is float", path);
        v = m.vocab;
        for (int i = 0; i < m.n_q; i++) act |= m.qm[i].act_q8_0;
    } else {
        model_load(path, &g, &cfg, &v);
        if (o->act_format) set_act_format(&g, o->act_format, path);
        for (int i = 0; i < g.n_q; i++) act |= g.qlayers[i].a_blocks;
    }
    apply_threads(&cfg);
    const int B = cfg.train.batch_size, T = cfg.model.block_size;
    Dataset ds;
    const int32_t *tok;
    size_t n;
    if (data) {
        dataset_load(&ds, &v, data, false, false);
        if (ds.n < (size_t)T + 1) qat_fail("%s: %zu tokens, fewer than block_size+1 = %d", data, ds.n, T + 1);
        tok = ds.tokens;
        n = ds.n;
    } else {
        if (access(cfg.data.path, R_OK) != 0)
            qat_fail("%s: the training corpus %s (data.path) is not readable; pass --data FILE", path, cfg.data.path);
        dataset_load(&ds, &v, cfg.data.path, false, false);
        dataset_split(&ds, cfg.data.val_fraction, T, cfg.data.path);
        tok = ds.tokens + ds.n_train;
        n = ds.n - ds.n_train;
    }
    EvalWindows w;
    eval_windows_of(&cfg, n, &w);
    EvalResult r = {.windows = w.n, .tokens = w.tokens, .block_size = T, .integer = infer && m.n_q > 0, .act_blocks = act};
    snprintf(r.mode, sizeof r.mode, "%s", cfg.train.eval);
    const char *top1_out = o->top1_out;
    int32_t *top1 = top1_out ? xmalloc((size_t)(w.tokens > 0 ? w.tokens : 1) * sizeof(int32_t)) : NULL;
    if (infer) {
        r.val_loss = infer_eval_loss(&m, tok, &w, top1);
        infer_free(&m);
    } else {
        Tape t;
        tape_init(&t, 16u << 20);
        r.val_loss = eval_loss(&g, &t, tok, &w, B, top1);
        tape_free(&t);
        gpt_free(&g);
        vocab_free(&v); /* the infer branch's v is the model's own */
    }
    if (top1) {
        char *txt = xmalloc((size_t)w.tokens * 12 + 1);
        size_t k = 0;
        for (long i = 0; i < w.tokens; i++) k += (size_t)sprintf(txt + k, "%d\n", top1[i]);
        xwrite_file_atomic(top1_out, txt, k);
        free(txt), free(top1);
    }
    eval_windows_free(&w);
    dataset_free(&ds);
    return r;
}

/* The model sections of two configs describe the same network. */
static void same_model(const Config *a, const Config *b, const char *origin, const char *other) {
    const char *key = config_section_differs(a, b, "model");
    if (key) qat_fail("%s: %s differs from the model in %s", origin, key, other);
}

/* Runs quant.calib_batches forward passes so the observers see activations
 * (each rank its slice of every batch; observers_merge joins them). */
static void calibrate(GPT *g, Tape *t, const Config *cfg, const Dataset *ds, const Dist *d) {
    Rng rng;
    rng_seed(&rng, (uint64_t)cfg->train.seed * 7919u + 13);
    Batch b;
    batch_alloc(&b, cfg->train.batch_size, cfg->model.block_size);
    bool old = tape_set_grad(t, false);
    gpt_quant_set_mode(g, QMODE_CALIBRATE);
    for (int i = 0; i < cfg->quant.calib_batches; i++) {
        batch_sample(&b, ds->tokens, ds->n_train, &rng);
        tape_reset(t);
        int part = b.B / d->size;
        gpt_forward(g, t, b.x + (size_t)d->rank * part * b.T, part, b.T);
    }
    tape_reset(t);
    tape_set_grad(t, old);
    batch_free(&b);
}


/* ---- data parallelism (util/dist.h): what ranks must agree on ---- */

/* Every rank's observations of one observer in m: the min and max over the
 * ranks (EMA too: the ranks' averages of the same batches' slices), and the
 * reservoirs of percentile and MSE gathered, so every rank freezes the same
 * scale. minmax equals one process's exactly (the min of the slices' mins). */
static void observer_merged(Dist *d, const Observer *o, Observer *m) {
    *m = *o;
    dist_min_f32(d, &m->lo, 1);
    dist_max_f32(d, &m->hi, 1);
    double seen = (double)o->n_seen;
    dist_sum_f64(d, &seen, 1);
    m->n_seen = (uint64_t)seen;
    if (o->sample) {
        size_t total;
        m->sample = dist_gather_f32(d, o->sample, o->n_sample, &total);
        m->n_sample = m->cap = total;
    }
}

/* With more than one rank: each static-scale observer replaced by the
 * merged one (before freezing). keep: the originals go to keep[] instead
 * of being freed, for observers_restore (a checkpoint mid-calibration). */
static void observers_merge(GPT *g, Dist *d, Observer *keep) {
    for (int i = 0; i < g->n_q && d->size > 1; i++) {
        QLayer *q = &g->qlayers[i];
        if (!q->a_scale) continue;
        Observer m;
        observer_merged(d, &q->obs, &m);
        if (keep) keep[i] = q->obs;
        else free(q->obs.sample);
        q->obs = m;
    }
}

static void observers_restore(GPT *g, const Dist *d, const Observer *keep) {
    for (int i = 0; i < g->n_q && d->size > 1; i++) {
        QLayer *q = &g->qlayers[i];
        if (!q->a_scale) continue;
        free(q->obs.sample);
        q->obs = keep[i];
    }
}

/* The loss over the validation windows, each rank scoring its share. */
static double eval_ranks(Dist *d, GPT *g, Tape *t, const int32_t *tok, const EvalWindows *w, int B) {
    if (d->size == 1) return eval_loss(g, t, tok, w, B, NULL);
    int lo = (int)((long)w->n * d->rank / d->size), hi = (int)((long)w->n * (d->rank + 1) / d->size);
    EvalWindows part = {.n = hi - lo, .start = w->start + lo, .len = w->len + lo, .tokens = 0};
    for (int i = 0; i < part.n; i++) part.tokens += part.len[i];
    double s[2] = {part.n ? eval_loss(g, t, tok, &part, B, NULL) * (double)part.tokens : 0.0, (double)part.tokens};
    dist_sum_f64(d, s, 2);
    return s[1] > 0.0 ? s[0] / s[1] : NAN;
}

/* Parameters are bit-identical on every rank, or the job stops. */
static void check_ranks_agree(Dist *d, const GPT *g, long step) {
    if (d->size == 1) return;
    uint32_t crc = (uint32_t)crc32_z(0, (const Bytef *)g->params.data, g->params.numel * sizeof(float));
    if (!dist_all_equal_u32(d, crc))
        qat_fail("iter %ld: the parameters differ across the %d ranks (crc32 %08x on rank %d): the ranks no longer "
                 "train one model; the last checkpoint is kept", step, d->size, (unsigned)crc, d->rank);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double peak_rss_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

/* On resume, keep the metrics lines of steps already done and drop the rest,
 * so the file reads as if the run had never stopped. */
static void metrics_truncate(const char *path, long upto) {
    if (access(path, F_OK) != 0) return;
    size_t n;
    char *text = xread_file(path, &n);
    char *out = xmalloc(n + 1);
    size_t k = 0;
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line + 1) : strlen(line);
        const char *it = strstr(line, "\"iter\":");
        if (it && it < line + len && atol(it + 7) <= upto) {
            memcpy(out + k, line, len);
            k += len;
        }
        line += len;
    }
    xwrite_file_atomic(path, out, k);
    free(out);
    free(text);
}


static void train_resolved(const Config *cfg, const char *origin, const TrainOptions *opts, Dist *d);

/* What a training may do to out_dir: resume needs its checkpoint; a fresh
 * run must not silently replace an earlier one (unless asked to), nor
 * overwrite the float model it starts from. */
static void check_run_dir(const Config *cfg, const char *origin, const TrainOptions *opts) {
    char ckpt[CONFIG_PATH_MAX + 32], metrics[CONFIG_PATH_MAX + 32];
    xsnprintf(ckpt, sizeof ckpt, "out_dir", "%s/checkpoint.h5", cfg->out_dir);
    xsnprintf(metrics, sizeof metrics, "out_dir", "%s/metrics.jsonl", cfg->out_dir);
    if (cfg->quant.init_from[0]) {
        if (util_same_file(cfg->quant.init_from, ckpt))
            qat_fail("%s: quant.init_from: %s is this run's own checkpoint (out_dir %s), which training overwrites; "
                     "choose another out_dir", origin, cfg->quant.init_from, cfg->out_dir);
    }
    if (opts->resume) {
        if (access(ckpt, F_OK) != 0)
            qat_fail("%s: --resume: %s does not exist (nothing to resume in out_dir %s)", origin, ckpt, cfg->out_dir);
        return;
    }
    bool held = access(ckpt, F_OK) == 0 || access(metrics, F_OK) == 0;
    if (held && !opts->overwrite)
        qat_fail("%s: out_dir %s already holds a run (%s); --resume continues it, --overwrite replaces it", origin,
                 cfg->out_dir, access(ckpt, F_OK) == 0 ? "checkpoint.h5" : "metrics.jsonl");
}

void train_run(const Config *cfg, const char *origin, const TrainOptions *opts) {
    config_validate(cfg, origin);
    Dist d;
    dist_attach(&d);
    if (cfg->train.batch_size % d.size)
        qat_fail("%s: train.batch_size: %d sequences do not divide among %d ranks (mpirun -np %d): each rank takes an "
                 "equal slice of the global batch", origin, cfg->train.batch_size, d.size, d.size);
    int cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1) cores = 1;
    if (cfg->train.threads > 4 * cores)
        qat_fail("%s: train.threads: %d is more than 4 threads per core on this machine (%d cores); 0 uses them all",
                 origin, cfg->train.threads, cores);
    /* rank 0 holds out_dir (and alone writes there); the others start after it */
    RunLock lock;
    if (d.rank == 0) {
        rundir_lock(&lock, cfg->out_dir);
        check_run_dir(cfg, origin, opts);
    }
    dist_barrier(&d);
    if (cfg->quant.budget_bpw > 0.0f) { /* mixed precision: plan the per-layer formats first */
        Config rc = *cfg;
        /* rank 0 plans (and writes the plan), then the others plan the same */
        if (d.rank == 0) mixed_resolve(&rc, origin, opts->resume, opts->quiet, NULL);
        dist_barrier(&d);
        if (d.rank) mixed_resolve(&rc, origin, opts->resume, true, NULL);
        train_resolved(&rc, origin, opts, &d);
    } else {
        train_resolved(cfg, origin, opts, &d);
    }
    if (d.rank == 0) rundir_unlock(&lock);
}

static void train_resolved(const Config *cfg, const char *origin, const TrainOptions *opts, Dist *d) {
    const bool resume = opts->resume;
    const bool lead = d->rank == 0; /* writes metrics, checkpoints, summary and the progress line */
    config_validate(cfg, origin);
    if (cfg->quant.outlier_threshold >= 0.0f)
        qat_fail("%s: quant.outlier_threshold: outlier masks come from qat ptq --method outlier; qat train does not "
                 "calibrate them (set -1)", origin);
    apply_threads(cfg);
    const int B = cfg->train.batch_size, T = cfg->model.block_size, Bl = B / d->size; /* Bl: this rank's slice */
    if (strcmp(cfg->data.source, "teacher") && access(cfg->data.path, R_OK) != 0)
        qat_fail("%s: data.path: %s: %s", origin, cfg->data.path, strerror(errno));

    char ckpt_path[CONFIG_PATH_MAX + 32], metrics_path[CONFIG_PATH_MAX + 32], summary_path[CONFIG_PATH_MAX + 32];
    snprintf(ckpt_path, sizeof ckpt_path, "%s/checkpoint.h5", cfg->out_dir);
    snprintf(metrics_path, sizeof metrics_path, "%s/metrics.jsonl", cfg->out_dir);
    snprintf(summary_path, sizeof summary_path, "%s/summary.json", cfg->out_dir);

    Vocab vocab;
    Dataset ds;
    long start = 0;
    Config saved;
    if (resume) {
        /* the checkpoint's vocab is the model's; the corpus must still encode with it */
        ckpt_load_meta(ckpt_path, &saved, &vocab, &start);
        same_model(cfg, &saved, origin, ckpt_path);
        /* the optimizer state and the scales belong to this model and this quantization */
        const char *k = config_section_differs(cfg, &saved, "model");
        if (!k) k = config_section_differs(cfg, &saved, "quant");
        if (k) qat_fail("%s: --resume: %s differs from the run in %s; resume with its config or start another out_dir",
                        origin, k, ckpt_path);
        if (opts->stop_after > 0 && opts->stop_after <= start)
            qat_fail("--stop-after %ld: %s is already at step %ld; nothing to do", opts->stop_after, ckpt_path, start);
        if (strcmp(cfg->data.source, "teacher")) dataset_load(&ds, &vocab, cfg->data.path, false, false);
    } else if (cfg->quant.init_from[0]) {
        /* fine-tuning: the float model's vocab, and its model section must match */
        ckpt_load_meta(cfg->quant.init_from, &saved, &vocab, NULL);
        same_model(cfg, &saved, origin, cfg->quant.init_from);
        if (strcmp(cfg->data.source, "teacher")) dataset_load(&ds, &vocab, cfg->data.path, false, false);
    } else {
        if (!strcmp(cfg->model.vocab, "spm")) {
            if (!cfg->data.tokenizer[0])
                qat_fail("%s: model.vocab: spm needs its vocabulary: data.tokenizer (a llama2.c tokenizer.bin, a GGUF "
                         "model or a qat checkpoint), or fine-tune an imported model (quant.init_from)", origin);
            vocab_load_file(cfg->data.tokenizer, &vocab);
            dataset_load(&ds, &vocab, cfg->data.path, false, false);
        } else {
            dataset_load(&ds, &vocab, cfg->data.path, true, !strcmp(cfg->model.vocab, "byte"));
        }
    }
    if (!strcmp(cfg->data.source, "teacher")) { /* data-free: the float model's own samples */
        if (!cfg->quant.init_from[0])
            qat_fail("%s: data.source: teacher samples the float model of quant.init_from, which is not set", origin);
        xmkdir_p(cfg->out_dir, "out_dir");
        char cache[CONFIG_PATH_MAX + 32];
        if (cfg->data.teacher_cache[0]) snprintf(cache, sizeof cache, "%s", cfg->data.teacher_cache);
        else snprintf(cache, sizeof cache, "%s/teacher-data.h5", cfg->out_dir);
        /* rank 0 samples (or reads) the cache; the others read what it wrote */
        if (lead) ds.tokens = teacher_tokens(cfg, cfg->quant.init_from, cache, &ds.n, opts->quiet);
        dist_barrier(d);
        if (!lead) ds.tokens = teacher_tokens(cfg, cfg->quant.init_from, cache, &ds.n, true);
        ds.n_train = ds.n;
    }
    char data_origin[2 * CONFIG_PATH_MAX];
    snprintf(data_origin, sizeof data_origin, "%s: data.%s %s", origin,
             strcmp(cfg->data.source, "teacher") ? "path" : "source", strcmp(cfg->data.source, "teacher") ? cfg->data.path : "teacher");
    dataset_split(&ds, cfg->data.val_fraction, T, data_origin);

    GPT g;
    GPTConfig gc = config_gpt(&cfg->model, vocab.size);
    gpt_build(&g, &gc, &cfg->quant, origin);
    for (int i = 0; i < g.n_q && cfg->quant.deploy; i++) {
        char why[256];
        if (!qlayer_exportable(&g.qlayers[i], why, sizeof why))
            qat_fail("%s: %s: %s, so qat export could not deploy this run; set quant.deploy: false to train it in "
                     "fake quantization only", origin, g.qlayers[i].name, why);
    }
    Rng init_rng, rng;
    rng_seed(&init_rng, (uint64_t)cfg->train.seed);
    gpt_init_weights(&g, &init_rng);
    if (!resume && cfg->quant.init_from[0]) ckpt_load_params(cfg->quant.init_from, &g, true);
    gpt_quant_init_scales(&g);
    /* distillation's teacher: the float model fine-tuning starts from, never trained */
    const float dw = cfg->quant.distill_weight;
    GPT teacher;
    Tape ttape;
    if (dw > 0.0f) {
        gpt_build(&teacher, &gc, NULL, origin);
        ckpt_load_params(cfg->quant.init_from, &teacher, true);
        tape_init(&ttape, 16u << 20);
        tape_set_grad(&ttape, false);
    }
    rng_seed(&rng, (uint64_t)cfg->train.seed ^ 0x5DEECE66Dull);
    AdamW opt;
    adamw_init(&opt, &g.params, cfg->train.beta1, cfg->train.beta2, cfg->train.eps, cfg->train.weight_decay);
    if (resume) {
        ckpt_load_params(ckpt_path, &g, false);
        ckpt_load_train_state(ckpt_path, &g, &opt, &rng);
    }
    FILE *metrics = NULL;
    if (lead) {
        if (resume)
            metrics_truncate(metrics_path, start);
        else
            unlink(metrics_path);
        metrics = xfopen(metrics_path, "a");
    }

    LrSchedule sched = {.lr = cfg->train.lr, .min_lr = cfg->train.min_lr, .warmup_iters = cfg->train.warmup_iters,
                        .iters = cfg->train.iters};
    Tape tape;
    tape_init(&tape, 64u << 20);
    /* static activation scales: observe calib_batches batches (and the first
     * freeze_step training steps) with float activations, then freeze. A
     * resumed run past freeze_step has its scales in the checkpoint. */
    bool calibrating = false;
    if (gpt_quant_needs_calibration(&g) && !(resume && start >= cfg->quant.freeze_step)) {
        if (resume && ckpt_load_observers(ckpt_path, &g)) {
            /* mid-calibration: the observers go on from their saved statistics */
            gpt_quant_set_mode(&g, QMODE_CALIBRATE);
            calibrating = true;
        } else {
            calibrate(&g, &tape, cfg, &ds, d);
            calibrating = cfg->quant.freeze_step > start;
            if (!calibrating) observers_merge(&g, d, NULL), gpt_quant_freeze(&g);
        }
    }
    bool profile = getenv("QAT_PROFILE") && *getenv("QAT_PROFILE") && strcmp(getenv("QAT_PROFILE"), "0");
    if (profile) tape_profile_enable(&tape);
    Batch batch;
    batch_alloc(&batch, B, T);
    const int iters = cfg->train.iters;
    long end = opts->stop_after > 0 && opts->stop_after < iters ? opts->stop_after : iters;
    double *tps = xmalloc((size_t)(iters > 0 ? iters : 1) * sizeof(double));
    int n_tps = 0;
    bool tty = isatty(STDOUT_FILENO);
    double t0 = now_seconds(), last_draw = 0.0;
    float val = NAN;
    const int32_t *val_tok = ds.tokens + ds.n_train;
    size_t n_val = ds.n - ds.n_train;
    EvalWindows vw;
    eval_windows_of(cfg, n_val, &vw);

    FILE *out = opts->quiet || !lead ? NULL : stdout;
    char ranks[64] = "";
    if (d->size > 1) snprintf(ranks, sizeof ranks, " per rank x %d ranks (%d sequences each)", d->size, B / d->size);
    if (out) fprintf(out, "qat train: %zu parameters, vocab %d, %zu train / %zu val tokens (%s: %d windows, %ld scored), "
                     "%d threads%s%s\n", g.params.numel, vocab.size, ds.n_train, n_val, cfg->train.eval, vw.n, vw.tokens,
                     qat_get_threads(), ranks, resume ? ", resumed" : "");
    if (out && resume) fprintf(out, "resuming from %s at iter %ld\n", ckpt_path, start);
    if (out) fflush(out);

    if (start == 0 && cfg->quant.init_from[0] && !calibrating) {
        /* the fine-tune's starting point: the float model (under round-to-nearest when quantized) */
        float v0 = (float)eval_ranks(d, &g, &tape, val_tok, &vw, B);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "iter", 0);
        json_add_num(o, "val_loss", v0, 6);
        if (metrics) json_print_line(o, metrics);
        else cJSON_Delete(o);
        if (out) fprintf(out, "iter 0 (%s) val_loss %.4f\n", g.n_q ? "round-to-nearest start" : "the float model", v0);
    }
    for (long it = start; it < end; it++) {
        if (calibrating && it == cfg->quant.freeze_step) {
            observers_merge(&g, d, NULL);
            gpt_quant_freeze(&g);
            calibrating = false;
        }
        double ts = now_seconds();
        /* every rank draws the whole global batch (the same rng everywhere)
         * and runs its slice, so the data never depends on the rank count */
        batch_sample(&batch, ds.tokens, ds.n_train, &rng);
        const int32_t *bx = batch.x + (size_t)d->rank * Bl * T, *by = batch.y + (size_t)d->rank * Bl * T;
        tape_reset(&tape);
        params_zero_grad(&g.params);
        Tensor *loss;
        float ce = NAN, kl = NAN;
        if (dw > 0.0f) {
            /* the teacher's logits live in its own tape until the next step's reset */
            tape_reset(&ttape);
            Tensor *zt = gpt_forward(&teacher, &ttape, bx, Bl, T);
            Tensor *zs = gpt_forward(&g, &tape, bx, Bl, T);
            Tensor *lce = op_cross_entropy(&tape, zs, by);
            Tensor *lkl = op_kl_distill(&tape, zs, zt, cfg->quant.distill_temperature);
            ce = lce->data[0], kl = lkl->data[0];
            loss = op_add(&tape, op_scale(&tape, lce, 1.0f - dw), op_scale(&tape, lkl, dw));
        } else {
            loss = gpt_loss(&g, &tape, bx, by, Bl, T);
        }
        tape_backward(&tape, loss);
        float l = loss->data[0];
        if (d->size > 1) {
            /* each rank's loss is its slice's mean: the batch's gradient and
             * loss are the ranks' average */
            dist_sum_f32(d, g.params.grad, g.params.numel);
            const float inv = 1.0f / (float)d->size;
            for (size_t k = 0; k < g.params.numel; k++) g.params.grad[k] *= inv;
            float lv[3] = {l, ce, kl};
            dist_sum_f32(d, lv, 3);
            l = lv[0] * inv, ce = lv[1] * inv, kl = lv[2] * inv;
        }
        if (cfg->quant.dampen > 0.0f) {
            /* after the ranks' average: every rank holds the same weights, so the same term */
            double ramp = 0.5 * (1.0 - cos(M_PI * (double)(it + 1) / (double)iters));
            gpt_quant_dampen(&g, (float)(cfg->quant.dampen * ramp));
        }
        float norm = grad_clip_norm(&g.params, cfg->train.grad_clip);
        if (!isfinite(l) || !isfinite(norm))
            qat_fail("training diverged at iter %ld: loss %g, grad norm %g; the last good checkpoint %s is kept",
                     it + 1, l, norm, ckpt_path);
        float lr = lr_at(&sched, (int)it);
        adamw_step(&opt, &g.params, lr);
        /* tests/test_mpi.c: one rank's parameters nudged, which the check at the next evaluation must catch */
        if (d->size > 1 && it == start && getenv("QAT_TEST_NUDGE_RANK") && atoi(getenv("QAT_TEST_NUDGE_RANK")) == d->rank)
            g.params.data[0] += 1e-3f;
        double dt = now_seconds() - ts;
        double rate = (double)B * T / dt;
        tps[n_tps++] = rate;
        long done = it + 1;
        bool eval_now = done % cfg->train.eval_every == 0 || done == iters || done == end;
        bool log_now = done % cfg->train.log_every == 0 || eval_now || it == start;
        if (eval_now) {
            val = (float)eval_ranks(d, &g, &tape, val_tok, &vw, B);
            check_ranks_agree(d, &g, done);
            if (!isfinite(val))
                qat_fail("training diverged at iter %ld: validation loss %g; the last good checkpoint %s is kept",
                         done, val, ckpt_path);
        }
        /* the line before the checkpoint: a kill between the two leaves a line
         * past the checkpoint's step, which resume drops and writes again,
         * rather than a checkpoint whose line is lost */
        if (log_now && metrics) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "iter", (double)done);
            json_add_num(o, "loss", l, 6);
            cJSON_AddNumberToObject(o, "lr", (double)lr);
            json_add_num(o, "grad_norm", norm, 6);
            json_add_num(o, "tokens_per_s", rate, 1);
            if (dw > 0.0f) json_add_num(o, "ce", ce, 6), json_add_num(o, "kl", kl, 6);
            if (eval_now) json_add_num(o, "val_loss", val, 6);
            json_print_line(o, metrics);
            if (fflush(metrics) != 0 || ferror(metrics))
                qat_fail("%s: write failed: %s; the last checkpoint %s is kept", metrics_path, strerror(errno), ckpt_path);
        }
        if (eval_now) {
            /* mid-calibration, the checkpoint holds every rank's observations */
            Observer *keep = calibrating && d->size > 1 ? xcalloc((size_t)g.n_q, sizeof(Observer)) : NULL;
            if (keep) observers_merge(&g, d, keep);
            if (lead) ckpt_save(ckpt_path, cfg, &vocab, &g, &opt, done, &rng, NULL);
            if (keep) observers_restore(&g, d, keep), free(keep);
        }
        double now = now_seconds();
        double eta = (now - t0) / (double)(done - start) * (double)(iters - done);
        char etab[32];
        progress_fmt_eta(etab, sizeof etab, eta);
        if (!out) {
        } else if (tty) {
            if (now - last_draw > 0.1 || eval_now || done == iters) {
                printf("\riter %ld/%d | loss %.4f | %.0f tok/s | ETA %s   ", done, iters, l, rate, etab);
                if (eval_now) printf("\n  val_loss %.4f (checkpoint saved)\n", val);
                fflush(stdout);
                last_draw = now;
            }
        } else if (log_now) {
            printf("iter %ld/%d loss %.4f lr %.3g grad_norm %.3f %.0f tok/s ETA %s", done, iters, l, lr, norm, rate,
                   etab);
            if (eval_now) printf(" val_loss %.4f", val);
            printf("\n");
            fflush(stdout);
        }
    }
    if (metrics) fclose(metrics);
    if (profile && end > start && lead) tape_profile_print(&tape, stderr, (double)(end - start));
    double wall = now_seconds() - t0;
    double median = 0.0;
    if (n_tps) {
        qsort(tps, (size_t)n_tps, sizeof(double), cmp_double);
        median = n_tps % 2 ? tps[n_tps / 2] : 0.5 * (tps[n_tps / 2 - 1] + tps[n_tps / 2]);
    }
    if (start >= iters) { /* nothing left to run: report the checkpoint's model */
        val = (float)eval_ranks(d, &g, &tape, val_tok, &vw, B);
    }
    /* iters: the steps this model has had (the planned ones in planned_iters) */
    long done_iters = start > end ? start : end;
    cJSON *so = cJSON_CreateObject();
    cJSON_AddNumberToObject(so, "params", (double)g.params.numel);
    cJSON_AddNumberToObject(so, "iters", (double)done_iters);
    cJSON_AddNumberToObject(so, "planned_iters", iters);
    json_add_num(so, "val_loss", val, 6);
    json_add_num(so, "tokens_per_s", median, 1);
    json_add_num(so, "wall_s", wall, 3);
    json_add_num(so, "peak_rss_mib", peak_rss_mib(), 1);
    cJSON_AddNumberToObject(so, "threads", qat_get_threads());
    cJSON_AddNumberToObject(so, "ranks", d->size);
    /* the collectives' time per step (gradient sums; evaluation's share is small) */
    if (d->size > 1 && end > start) json_add_num(so, "comm_ms_per_step", 1e3 * d->comm_s / (double)(end - start), 3);
    char *summary = json_take_line(so);
    if (lead) xwrite_file_atomic(summary_path, summary, strlen(summary));
    free(summary);
    if (out) fprintf(out, "done: val_loss %.4f, median %.0f tokens/s, %.1f s, peak RSS %.0f MiB -> %s\n", val, median, wall,
           peak_rss_mib(), cfg->out_dir);
    free(tps);
    eval_windows_free(&vw);
    batch_free(&batch);
    tape_free(&tape);
    adamw_free(&opt);
    if (dw > 0.0f) {
        tape_free(&ttape);
        gpt_free(&teacher);
    }
    gpt_free(&g);
    dataset_free(&ds);
    vocab_free(&vocab);
}
