/* mixed.c: sensitivities, the plan and its overrides (see mixed.h). */
#include "mixed.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/budget.h"
#include "format/checkpoint.h"
#include "train/trainer.h"

/* Up to 16 comma-separated items of list, each through parse (< 0: refused). */
static int parse_list(const char *list, const char *key, const char *want, const char *origin, long (*parse)(const char *),
                      long *out) {
    char buf[64];
    snprintf(buf, sizeof buf, "%s", list);
    int n = 0;
    for (char *s = NULL, *t = strtok_r(buf, ", ", &s); t; t = strtok_r(NULL, ", ", &s)) {
        long v = parse(t);
        if (v < 0 || n == 16) qat_fail("%s: %s: expected up to 16 comma-separated %s, got '%s'", origin, key, want, list);
        out[n++] = v;
    }
    if (!n) qat_fail("%s: %s must name a candidate", origin, key);
    return n;
}
static long parse_bits(const char *t) {
    char *end;
    long b = strtol(t, &end, 10);
    return *end || b < 2 || b > 8 ? -1 : b;
}
static long parse_group(const char *t) {
    if (!strcmp(t, "channel")) return 0;
    char *end;
    long g = strtol(t, &end, 10);
    return *end || g < 1 || g > 65536 ? -1 : g;
}
static long parse_codebook(const char *t) { return (long)(int)quant_codebook_of(t); }

int mixed_candidates(const QuantConfig *q, MixedCand *out, const char *origin) {
    long bits[16], groups[16], cbs[16];
    int nb = parse_list(q->budget_bits, "quant.budget.bits", "bits in 2..8", origin, parse_bits, bits);
    int ng = parse_list(q->budget_groups, "quant.budget.groups", "group sizes or channel", origin, parse_group, groups);
    int nc = parse_list(q->budget_codebooks, "quant.budget.codebooks", "codebooks (none, nf, kmeans)", origin, parse_codebook,
                        cbs);
    int n = 0;
    for (int c = 0; c < nc; c++)
        for (int i = 0; i < nb; i++) {
            if (cbs[c] != QCB_NONE && bits[i] > 4) continue; /* codebooks are for 2..4 bits */
            for (int j = 0; j < ng; j++) {
                if (n == MIXED_MAX_CAND)
                    qat_fail("%s: quant.budget: more than %d candidates (codebooks x bits x groups)", origin, MIXED_MAX_CAND);
                out[n++] = (MixedCand){(int)bits[i], groups[j] ? (int)groups[j] : -1, (QCodebook)cbs[c]};
            }
        }
    if (!n) qat_fail("%s: quant.budget.codebooks: %s has no candidate at 2..4 bits in quant.budget.bits %s", origin,
                     q->budget_codebooks, q->budget_bits);
    return n;
}

static double cand_cost(const MixedCand *c, int rows, int cols, bool sym) {
    if (c->group > cols) return -1.0; /* a group wider than the row */
    if (c->cb != QCB_NONE && !sym) return -1.0; /* the codebooks are symmetric */
    double scales = c->group > 0 ? (double)rows * quant_groups(cols, c->group) : (double)rows; /* a partial last one too */
    double table = c->cb == QCB_KMEANS ? 32.0 * (double)(1 << c->bits) : 0.0; /* the layer's fp32 levels */
    return (double)rows * cols * c->bits + (sym ? 32.0 : 64.0) * scales + table;
}

static QuantSpec cand_spec(const MixedCand *c, bool sym, bool full, float *lut) {
    QuantSpec s = {.bits = c->bits, .sym = sym, .gran = c->group > 0 ? QG_GROUP : QG_CHANNEL,
                   .group = c->group > 0 ? c->group : 0, .cb = c->cb, .lut = c->cb == QCB_KMEANS ? lut : NULL};
    s.full = full && quant_full_range_applies(&s); /* as qlayer_build gives the planned layer */
    return s;
}

static void mixed_key(const char *float_ckpt, const Config *cfg, char *key, size_t n) {
    const QuantConfig *q = &cfg->quant;
    snprintf(key, n, "%s|%s|%g|%s|%d%s|%s|%s|%s|%d|%d|%d", float_ckpt, cfg->data.path, cfg->data.val_fraction, q->layers,
             q->w_sym, q->w_narrow ? "" : "full", q->budget_bits, q->budget_groups, q->budget_codebooks,
             q->budget_calib_batches, cfg->train.batch_size, cfg->train.seed);
}

void mixed_measure(const char *float_ckpt, const Config *cfg, const char *origin, bool quiet, MixedTable *t) {
    memset(t, 0, sizeof *t);
    t->k = mixed_candidates(&cfg->quant, t->cand, origin);
    t->sym = cfg->quant.w_sym;
    t->full = !cfg->quant.w_narrow;
    for (int c = 0; c < t->k; c++) t->codebooks |= t->cand[c].cb != QCB_NONE;
    mixed_key(float_ckpt, cfg, t->key, sizeof t->key);
    Config fc;
    Vocab v;
    ckpt_load_meta(float_ckpt, &fc, &v, NULL);
    if (fc.quant.w_bits) qat_fail("%s: quant.budget.bpw: %s is quantized; the sensitivities need the float model", origin, float_ckpt);
    Dataset ds;
    dataset_load(&ds, &v, cfg->data.path, false, false);
    dataset_split(&ds, cfg->data.val_fraction, cfg->model.block_size, cfg->data.path);
    /* one model whose selected layers can each be switched to any candidate:
     * round-to-nearest (STE, min-max scales computed in the forward) */
    QuantConfig q = cfg->quant;
    q.w_bits = 8;
    snprintf(q.w_gran, sizeof q.w_gran, "channel");
    snprintf(q.estimator, sizeof q.estimator, "ste");
    snprintf(q.w_codebook, sizeof q.w_codebook, "none"); /* each candidate sets its own */
    q.freeze_table = false;
    q.a_bits = q.kv_bits = 0;
    q.n_ov = 0;
    q.outlier_threshold = -1.0f;
    GPTConfig gc = config_gpt(&fc.model, v.size);
    GPT g;
    gpt_build(&g, &gc, &q, origin);
    ckpt_load_params(float_ckpt, &g, true);
    gpt_quant_set_mode(&g, QMODE_FLOAT);
    EvalWindows w;
    eval_windows_random(&w, ds.n_train, cfg->model.block_size, cfg->quant.budget_calib_batches, cfg->train.batch_size,
                        (uint64_t)cfg->train.seed * 31u + 7);
    Tape tape;
    tape_init(&tape, 16u << 20);
    t->tokens = w.tokens;
    t->base_loss = eval_loss(&g, &tape, ds.tokens, &w, cfg->train.batch_size, NULL);
    t->n = g.n_q;
    t->layer = xcalloc((size_t)t->n, sizeof *t->layer);
    t->weights = xcalloc((size_t)t->n, sizeof *t->weights);
    t->cost = xcalloc((size_t)t->n * t->k, sizeof(double));
    t->sens = xcalloc((size_t)t->n * t->k, sizeof(double));
    double t0 = now_seconds();
    for (int i = 0; i < t->n; i++) {
        QLayer *ql = &g.qlayers[i];
        const Linear *l = gpt_qlayer_linear(&g, ql);
        int rows = l->w->shape[0], cols = l->w->shape[1];
        snprintf(t->layer[i], sizeof t->layer[i], "%s", ql->name);
        t->weights[i] = (size_t)rows * cols;
        ql->mode = QMODE_QUANT;
        for (int c = 0; c < t->k; c++) {
            const MixedCand *mc = &t->cand[c];
            double cost = cand_cost(mc, rows, cols, t->sym);
            t->cost[(size_t)i * t->k + c] = cost;
            if (cost < 0.0) continue;
            ql->w = cand_spec(mc, t->sym, t->full, ql->lut);
            if (mc->cb == QCB_KMEANS) qlayer_fit_table(ql, l, 7000 + (uint64_t)i); /* as gpt_quant_init_tables would */
            t->sens[(size_t)i * t->k + c] = eval_loss(&g, &tape, ds.tokens, &w, cfg->train.batch_size, NULL) - t->base_loss;
        }
        ql->mode = QMODE_FLOAT;
        if (!quiet) {
            double el = now_seconds() - t0;
            printf("budget: sensitivities of %s (%d/%d), %.0f s, ETA %.0f s\n", ql->name, i + 1, t->n, el,
                   el / (i + 1) * (t->n - i - 1));
            fflush(stdout);
        }
    }
    tape_free(&tape);
    eval_windows_free(&w);
    gpt_free(&g);
    dataset_free(&ds);
    vocab_free(&v);
}

void mixed_table_free(MixedTable *t) {
    free(t->layer), free(t->weights), free(t->cost), free(t->sens);
    memset(t, 0, sizeof *t);
}

const MixedTable *mixed_table_for(const char *float_ckpt, const Config *cfg, const char *origin, bool quiet,
                                  MixedTable *cache, MixedTable *own) {
    char key[sizeof cache->key];
    mixed_key(float_ckpt, cfg, key, sizeof key);
    if (cache && cache->n > 0 && !strcmp(cache->key, key)) return cache;
    MixedTable *t = cache ? cache : own;
    if (cache) mixed_table_free(cache);
    mixed_measure(float_ckpt, cfg, origin, quiet, t);
    return t;
}

void mixed_solve(const MixedTable *t, double bpw, const char *origin, MixedPlan *p) {
    memset(p, 0, sizeof *p);
    p->budget_bpw = bpw;
    p->n = t->n;
    p->choice = xcalloc((size_t)(t->n ? t->n : 1), sizeof(int));
    double weights = 0.0, least = 0.0;
    for (int i = 0; i < t->n; i++) {
        weights += (double)t->weights[i];
        double m = INFINITY;
        for (int c = 0; c < t->k; c++)
            if (t->cost[(size_t)i * t->k + c] >= 0.0) m = fmin(m, t->cost[(size_t)i * t->k + c]);
        if (!isfinite(m)) qat_fail("%s: quant.budget.groups: no candidate group divides the inputs of %s", origin, t->layer[i]);
        least += m;
    }
    if (!budget_solve(t->n, t->k, t->cost, t->sens, bpw * weights, p->choice))
        qat_fail("%s: quant.budget.bpw: %g bits per weight is below the smallest mix of the candidates (%.4f)", origin,
                 bpw, least / weights);
    double bits = 0.0;
    for (int i = 0; i < t->n; i++) {
        bits += t->cost[(size_t)i * t->k + p->choice[i]];
        p->sens += t->sens[(size_t)i * t->k + p->choice[i]];
    }
    p->bpw = bits / weights;
}

void mixed_plan_free(MixedPlan *p) {
    free(p->choice);
    memset(p, 0, sizeof *p);
}

void mixed_apply(const MixedTable *t, const MixedPlan *p, QuantConfig *q) {
    for (int i = 0; i < t->n; i++) {
        const MixedCand *c = &t->cand[p->choice[i]];
        QuantOverride *o = NULL;
        for (int k = 0; k < q->n_ov; k++)
            if (!strcmp(q->ov[k].layer, t->layer[i])) o = &q->ov[k];
        if (!o) {
            if (q->n_ov == QUANT_MAX_OVERRIDES) qat_fail("quant.budget: more than %d overrides", QUANT_MAX_OVERRIDES);
            o = &q->ov[q->n_ov++];
            memset(o, 0, sizeof *o);
            snprintf(o->layer, sizeof o->layer, "%s", t->layer[i]);
            o->act_bits = -1;
        }
        o->bits = c->bits;
        snprintf(o->granularity, sizeof o->granularity, "%s", c->group > 0 ? "group" : "channel");
        o->group_size = c->group > 0 ? c->group : -1;
        /* the plan's codebook, also none where the config names another for every layer */
        if (t->codebooks || strcmp(q->w_codebook, "none"))
            snprintf(o->codebook, sizeof o->codebook, "%s", quant_codebook_name(c->cb));
    }
}

void mixed_print(const MixedTable *t, const MixedPlan *p, FILE *f) {
    fprintf(f, "budget %.3f bits per weight: chosen %.4f (codes + %s scales), summed sensitivity %+.5f "
               "(float loss %.5f on %ld training tokens)\n",
            p->budget_bpw, p->bpw, t->sym ? "fp32" : "fp32 scale and zero-point", p->sens, t->base_loss, t->tokens);
    fprintf(f, "  %-22s %9s %8s %8s %12s\n", "layer", "weights", "bits", "group", "sensitivity");
    for (int i = 0; i < t->n; i++) {
        const MixedCand *c = &t->cand[p->choice[i]];
        char g[16], b[16];
        if (c->group > 0) snprintf(g, sizeof g, "%d", c->group);
        else snprintf(g, sizeof g, "channel");
        snprintf(b, sizeof b, "%s%d", c->cb != QCB_NONE ? quant_codebook_name(c->cb) : "", c->bits);
        fprintf(f, "  %-22s %9zu %8s %8s %+12.5f\n", t->layer[i], t->weights[i], b, g,
                t->sens[(size_t)i * t->k + p->choice[i]]);
    }
}

void mixed_resolve(Config *cfg, const char *origin, bool resume, bool quiet, MixedTable *cache) {
    if (!(cfg->quant.budget_bpw > 0.0f)) return;
    if (resume) { /* the checkpoint holds the resolved overrides */
        char ckpt[CONFIG_PATH_MAX + 32];
        xsnprintf(ckpt, sizeof ckpt, "out_dir", "%s/checkpoint.h5", cfg->out_dir);
        Config saved;
        ckpt_load_meta(ckpt, &saved, NULL, NULL);
        memcpy(cfg->quant.ov, saved.quant.ov, sizeof cfg->quant.ov);
        cfg->quant.n_ov = saved.quant.n_ov;
        cfg->quant.budget_bpw = 0.0f;
        return;
    }
    MixedTable own = {0};
    const MixedTable *t = mixed_table_for(cfg->quant.init_from, cfg, origin, quiet, cache, &own);
    MixedPlan p;
    mixed_solve(t, cfg->quant.budget_bpw, origin, &p);
    mixed_apply(t, &p, &cfg->quant);
    if (!quiet) mixed_print(t, &p, stdout);
    cfg->quant.budget_bpw = 0.0f; /* resolved: the overrides say it all */
    xmkdir_p(cfg->out_dir, "out_dir");
    char path[CONFIG_PATH_MAX + 32];
    xsnprintf(path, sizeof path, "out_dir", "%s/config.yaml", cfg->out_dir);
    char *yaml = config_to_yaml(cfg);
    xwrite_file_atomic(path, yaml, strlen(yaml));
    free(yaml);
    if (!quiet) printf("budget: the assignment is in %s (quant.overrides); rerun or edit that file\n", path);
    mixed_plan_free(&p);
    mixed_table_free(&own);
}
