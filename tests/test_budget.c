/* test_budget.c: budgeted mixed precision. The knapsack solver against
 * brute force; the per-layer sensitivities against quantizing each layer by
 * hand; the plan's size within the budget. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/budget.h"
#include "testutil.h"

/* the best assignment by enumeration */
static double brute(int L, int K, const double *cost, const double *sens, double budget, int l, double c, double s) {
    if (l == L) return c <= budget ? s : INFINITY;
    double b = INFINITY;
    for (int k = 0; k < K; k++)
        if (cost[l * K + k] >= 0) b = fmin(b, brute(L, K, cost, sens, budget, l + 1, c + cost[l * K + k], s + sens[l * K + k]));
    return b;
}

Test(budget, solver_equals_brute_force) {
    Rng r;
    rng_seed(&r, 11);
    for (int trial = 0; trial < 300; trial++) {
        int L = 1 + (int)rng_below(&r, 6), K = 1 + (int)rng_below(&r, 4);
        double cost[24], sens[24];
        double lo = 0, hi = 0;
        for (int l = 0; l < L; l++) {
            double cmin = INFINITY, cmax = 0;
            for (int k = 0; k < K; k++) {
                /* sizes as multiples of 32 bits, some candidates unavailable, sensitivities of either sign */
                cost[l * K + k] = rng_below(&r, 9) == 0 ? -1.0 : 32.0 * (1 + rng_below(&r, 40));
                sens[l * K + k] = rng_normal(&r);
                if (cost[l * K + k] >= 0) cmin = fmin(cmin, cost[l * K + k]), cmax = fmax(cmax, cost[l * K + k]);
            }
            if (!isfinite(cmin)) cost[l * K] = 64.0, cmin = cmax = 64.0;
            lo += cmin, hi += cmax;
        }
        double budget = lo + rng_uniform(&r) * (hi - lo) * 1.1 - 0.05 * (hi - lo);
        int choice[6];
        bool ok = budget_solve(L, K, cost, sens, budget, choice);
        double want = brute(L, K, cost, sens, budget, 0, 0, 0);
        cr_assert_eq(ok, isfinite(want), "trial %d: solver %d, brute force %g", trial, ok, want);
        if (!ok) continue;
        double c = 0, s = 0;
        for (int l = 0; l < L; l++) {
            cr_assert(cost[l * K + choice[l]] >= 0, "trial %d: an unavailable candidate was chosen", trial);
            c += cost[l * K + choice[l]], s += sens[l * K + choice[l]];
        }
        cr_assert_leq(c, budget, "trial %d: size %g over the budget %g", trial, c, budget);
        cr_assert(fabs(s - want) < 1e-9, "trial %d: sensitivity %g, the best is %g", trial, s, want);
    }
}

Test(budget, coarse_units_stay_within_budget) {
    /* costs without a useful common divisor: the rounded-up units must never overshoot */
    Rng r;
    rng_seed(&r, 5);
    enum { L = 40, K = 5 };
    double cost[L * K], sens[L * K], lo = 0;
    for (int l = 0; l < L; l++) {
        double m = INFINITY;
        for (int k = 0; k < K; k++) {
            cost[l * K + k] = 1e6 * (1.0 + k) + rng_uniform(&r) * 1e5 + 0.37;
            sens[l * K + k] = 1.0 / (1.0 + k) + 0.01 * rng_uniform(&r);
            m = fmin(m, cost[l * K + k]);
        }
        lo += m;
    }
    int choice[L];
    double budget = lo * 2.3;
    cr_assert(budget_solve(L, K, cost, sens, budget, choice));
    double c = 0;
    for (int l = 0; l < L; l++) c += cost[l * K + choice[l]];
    cr_assert_leq(c, budget);
    cr_assert_gt(c, 0.97 * budget, "a feasible solution with this much room uses it: %g of %g", c, budget);
}

/* ---- over a model ---- */

#include "format/checkpoint.h"
#include "train/mixed.h"
#include "train/trainer.h"

static char *g_dir, *g_corpus, *g_ckpt;

static void tiny(Config *c, const char *out, int iters, const char *extra) {
    test_tiny_config(c, g_corpus, out, iters, extra);
}

static void float_model(void) {
    g_dir = test_tmpdir();
    g_corpus = test_write(g_dir, "corpus.txt", test_corpus(30000, 3));
    char *out = test_keep(xmalloc(strlen(g_dir) + 16));
    sprintf(out, "%s/float", g_dir);
    Config c;
    tiny(&c, out, 60, "");
    TrainOptions o = {.quiet = true};
    train_run(&c, "float", &o);
    g_ckpt = test_keep(xmalloc(strlen(out) + 16));
    sprintf(g_ckpt, "%s/checkpoint.h5", out);
}

/* loss on the training windows of the table with only `layer` quantized, built
 * from a config as a user would; a kmeans table seeded as the table's layer
 * number `index` would be */
static double loss_one_layer_cb(const Config *base, const char *layer, int bits, int group, QCodebook cb, int index) {
    Config c = *base;
    QuantConfig *q = &c.quant;
    q->w_bits = bits;
    snprintf(q->w_codebook, sizeof q->w_codebook, "%s", quant_codebook_name(cb));
    q->budget_codebooks[0] = '\0';
    snprintf(q->w_gran, sizeof q->w_gran, "%s", group > 0 ? "group" : "channel");
    if (group > 0) q->w_group = group;
    snprintf(q->estimator, sizeof q->estimator, "ste");
    snprintf(q->layers, sizeof q->layers, "%s", layer);
    q->budget_bpw = 0;
    q->init_from[0] = '\0';
    Config fc;
    Vocab v;
    ckpt_load_meta(g_ckpt, &fc, &v, NULL);
    GPTConfig gc = {.vocab_size = v.size, .n_layer = 1, .n_head = 2, .n_embd = 32, .block_size = 16};
    GPT g;
    gpt_build(&g, &gc, q, "test");
    ckpt_load_params(g_ckpt, &g, true);
    if (cb == QCB_KMEANS) qlayer_fit_table(&g.qlayers[0], gpt_qlayer_linear(&g, &g.qlayers[0]), 7000 + (uint64_t)index);
    Dataset ds;
    dataset_load(&ds, &v, c.data.path, false, false);
    dataset_split(&ds, c.data.val_fraction, 16, "test");
    EvalWindows w;
    eval_windows_random(&w, ds.n_train, 16, c.quant.budget_calib_batches, c.train.batch_size,
                        (uint64_t)c.train.seed * 31u + 7);
    Tape t;
    tape_init(&t, 1 << 20);
    double l = eval_loss(&g, &t, ds.tokens, &w, c.train.batch_size, NULL);
    tape_free(&t);
    eval_windows_free(&w);
    dataset_free(&ds);
    gpt_free(&g);
    return l;
}

static double loss_one_layer(const Config *base, const char *layer, int bits, int group) {
    return loss_one_layer_cb(base, layer, bits, group, QCB_NONE, 0);
}

Test(budget, sensitivities_are_single_layer_losses, .init = float_model) {
    Config c;
    tiny(&c, "unused", 10, "quant: {weight: {bits: 4}, budget: {bits: \"2,4\", groups: \"16,channel\", calib_batches: 2}}\n");
    MixedTable t;
    mixed_measure(g_ckpt, &c, "test", true, &t);
    cr_assert_eq(t.n, 4, "the block's four Linears");
    cr_assert_eq(t.k, 4);
    for (int i = 0; i < t.n; i++)
        for (int k = 0; k < t.k; k++) {
            double want = loss_one_layer(&c, t.layer[i], t.cand[k].bits, t.cand[k].group) - t.base_loss;
            double got = t.sens[i * t.k + k];
            cr_assert(fabs(got - want) < 1e-5, "%s int%d g%d: table %.6f, by hand %.6f", t.layer[i], t.cand[k].bits,
                      t.cand[k].group, got, want);
            /* size: codes plus one fp32 scale per row or group */
            int rows = !strcmp(t.layer[i] + 9, "attn.qkv") ? 96 : !strcmp(t.layer[i] + 9, "mlp.fc") ? 128 : 32;
            int cols = !strcmp(t.layer[i] + 9, "mlp.proj") ? 128 : 32;
            double scales = t.cand[k].group > 0 ? rows * (cols / t.cand[k].group) : rows;
            cr_assert_eq(t.cost[i * t.k + k], rows * cols * t.cand[k].bits + 32.0 * scales, "%s", t.layer[i]);
        }
    /* 2 bits hurt more than 4 at the same granularity, for every layer */
    for (int i = 0; i < t.n; i++) cr_assert_gt(t.sens[i * t.k + 0], t.sens[i * t.k + 2], "%s", t.layer[i]);
    /* a budget between the extremes: within it, and no worse than the uniform choice of that size */
    MixedPlan p;
    mixed_solve(&t, 3.0, "test", &p);
    cr_assert_leq(p.bpw, 3.0);
    double uni = 0.0; /* int2 g16: 2 + 32/16 = 4 bits: over budget; int2 channel fits */
    for (int i = 0; i < t.n; i++) uni += t.sens[i * t.k + 1];
    cr_assert_leq(p.sens, uni + 1e-12, "the plan %.5f is worse than uniform int2 per channel %.5f", p.sens, uni);
    mixed_plan_free(&p);
    mixed_table_free(&t);
}

/* Trains 5 steps of a budget config (its quant section: budget, then the
 * float model's path) into g_dir/name; r: the resolved config.yaml, g: the
 * trained checkpoint. */
static void train_planned(const char *name, const char *budget, Config *r, GPT *g, Vocab *v) {
    char out[1024], extra[2048], path[1100];
    snprintf(out, sizeof out, "%s/%s", g_dir, name);
    snprintf(extra, sizeof extra, "quant: {weight: {bits: 4}, estimator: lsq, init_from: %s,\n        budget: %s}\n", g_ckpt,
             budget);
    Config c;
    tiny(&c, out, 5, extra);
    TrainOptions o = {.quiet = true};
    train_run(&c, "mixed", &o);
    snprintf(path, sizeof path, "%s/config.yaml", out);
    config_defaults(r);
    config_load_file(r, path);
    cr_assert_eq(r->quant.budget_bpw, 0.0f);
    cr_assert_eq(r->quant.n_ov, 4, "one override per layer");
    snprintf(path, sizeof path, "%s/checkpoint.h5", out);
    Config lc;
    model_load(path, g, &lc, v);
}

Test(budget, qat_train_resolves_the_plan_into_overrides, .init = float_model) {
    Config r;
    GPT g;
    Vocab v;
    train_planned("mixed", "{bpw: 3.5, bits: \"2,3,4\", groups: \"16,32,channel\", calib_batches: 2}", &r, &g, &v);
    /* the resolved config: budget off, one override per layer; the trained model is within the budget */
    double bits = 0, weights = 0;
    for (int i = 0; i < g.n_q; i++) {
        const QLayer *q = &g.qlayers[i];
        const Linear *l = gpt_qlayer_linear(&g, q);
        int rows = l->w->shape[0], cols = l->w->shape[1];
        bits += (double)rows * cols * q->w.bits + 32.0 * quant_n_scales(&q->w, rows, cols);
        weights += (double)rows * cols;
        cr_assert_eq(q->w.bits, r.quant.ov[i].bits, "%s", q->name);
    }
    cr_assert_leq(bits / weights, 3.5, "%.4f bits per weight", bits / weights);
    cr_assert_gt(bits / weights, 3.0, "%.4f bits per weight leaves most of the budget unused", bits / weights);
    gpt_free(&g);
    vocab_free(&v);
}

Test(budget, ptq_budget_on_the_command_line, .init = float_model) {
    char cmd[4096], err[1024], out[1100];
    snprintf(out, sizeof out, "%s/gptq-mixed.h5", g_dir);
    snprintf(cmd, sizeof cmd,
             "ptq %s --method gptq --budget 3.0 --budget-bits 2,3,4 --budget-groups 16,channel --calib-batches 2 -o %s",
             g_ckpt, out);
    cr_assert_eq(test_run_qat(cmd, err, sizeof err), 0, "%s", err);
    Config c;
    Vocab v;
    ckpt_load_meta(out, &c, &v, NULL);
    cr_assert_eq(c.quant.n_ov, 4, "one override per layer");
    vocab_free(&v);
    /* codebooks as candidates: every layer's override names one, and GPTQ ran with it (a kmeans layer has its table) */
    snprintf(cmd, sizeof cmd,
             "ptq %s --method gptq --budget 3.0 --budget-bits 2,3 --budget-groups 16,channel --budget-codebooks none,nf,kmeans "
             "--calib-batches 2 -o %s", g_ckpt, out);
    cr_assert_eq(test_run_qat(cmd, err, sizeof err), 0, "%s", err);
    GPT g;
    model_load(out, &g, &c, &v);
    cr_assert_eq(c.quant.n_ov, 4);
    for (int i = 0; i < g.n_q; i++) {
        cr_assert(c.quant.ov[i].codebook[0], "%s: no codebook in the plan", c.quant.ov[i].layer);
        cr_assert_eq((int)g.qlayers[i].w.cb, (int)quant_codebook_of(c.quant.ov[i].codebook));
        cr_assert_eq(g.qlayers[i].w_table != NULL, g.qlayers[i].w.cb == QCB_KMEANS);
    }
    gpt_free(&g);
    vocab_free(&v);
    snprintf(cmd, sizeof cmd, "ptq %s --method rtn --budget 3.0 --budget-codebooks none,nf4 -o %s/x.h5", g_ckpt, g_dir);
    cr_assert_eq(test_run_qat(cmd, err, sizeof err), 2);
    cr_assert(strstr(err, "quant.budget.codebooks") && strstr(err, "nf4"), "got '%s'", err);
    /* below every mix of the candidates: one line naming the option */
    snprintf(cmd, sizeof cmd, "ptq %s --method rtn --budget 1.5 --budget-bits 2 -o %s/x.h5", g_ckpt, g_dir);
    cr_assert_eq(test_run_qat(cmd, err, sizeof err), 2);
    cr_assert(strstr(err, "budget") && strstr(err, "smallest mix"), "got '%s'", err);
}

/* Codebooks as candidates: nf and kmeans at 2..4 bits only; each
 * sensitivity is the loss of a user-built model with that layer alone in that
 * codebook; a kmeans table costs its 2^bits fp32 levels. */
Test(budget, codebook_candidates_are_single_layer_losses, .init = float_model) {
    Config c;
    tiny(&c, "unused", 10,
         "quant: {weight: {bits: 4}, budget: {bits: \"2,8\", groups: \"16,channel\", codebooks: \"none,nf,kmeans\", "
         "calib_batches: 2}}\n");
    MixedTable t;
    mixed_measure(g_ckpt, &c, "test", true, &t);
    cr_assert_eq(t.k, 4 + 2 + 2, "none at 2 and 8 bits, nf and kmeans at 2 only, each at two granularities");
    cr_assert(t.codebooks);
    for (int k = 4; k < t.k; k++) cr_assert_eq(t.cand[k].bits, 2);
    cr_assert_eq(t.cand[4].cb, QCB_NF);
    cr_assert_eq(t.cand[6].cb, QCB_KMEANS);
    for (int i = 0; i < t.n; i++)
        for (int k = 4; k < t.k; k++) {
            const MixedCand *m = &t.cand[k];
            double want = loss_one_layer_cb(&c, t.layer[i], m->bits, m->group, m->cb, i) - t.base_loss;
            double got = t.sens[i * t.k + k];
            cr_assert(fabs(got - want) < 1e-5, "%s %s%d g%d: table %.6f, by hand %.6f", t.layer[i],
                      quant_codebook_name(m->cb), m->bits, m->group, got, want);
            cr_assert_eq(t.cost[i * t.k + k], t.cost[i * t.k + (m->group > 0 ? 0 : 1)] + (m->cb == QCB_KMEANS ? 32.0 * 4 : 0.0),
                         "%s: the grid's size plus the table", t.layer[i]);
        }
    mixed_table_free(&t);
}

/* A plan over codebooks trains each layer in its own codebook, writes it into
 * the run's config, and refuses a layer's codebook it cannot hold. */
Test(budget, qat_train_plans_codebooks_per_layer, .init = float_model) {
    Config r;
    GPT g;
    Vocab v;
    train_planned("mixed-cb", "{bpw: 3.0, bits: \"2,3\", groups: \"16,channel\", codebooks: \"none,kmeans\", calib_batches: 2}",
                  &r, &g, &v);
    int tables = 0;
    for (int i = 0; i < g.n_q; i++) {
        const QLayer *q = &g.qlayers[i];
        const QuantOverride *ov = &r.quant.ov[i];
        cr_assert_str_eq(ov->layer, q->name);
        cr_assert(!strcmp(ov->codebook, "none") || !strcmp(ov->codebook, "kmeans"), "%s: '%s'", q->name, ov->codebook);
        cr_assert_eq((int)q->w.cb, (int)quant_codebook_of(ov->codebook), "%s", q->name);
        cr_assert_eq(q->w_table != NULL, q->w.cb == QCB_KMEANS, "%s", q->name);
        tables += q->w_table != NULL;
    }
    /* the rounding k-means fits beats the even grid at equal size on some layer of this model */
    cr_assert_gt(tables, 0, "no layer took a kmeans table");
    gpt_free(&g);
    vocab_free(&v);
    /* frozen tables are for kmeans layers: a plan that may choose them is allowed to freeze them */
    char extra[2048];
    snprintf(extra, sizeof extra,
             "quant: {weight: {bits: 3, freeze_table: true}, estimator: lsq, init_from: %s,\n"
             "        budget: {bpw: 3.0, codebooks: \"none,kmeans\"}}\n", g_ckpt);
    Config fz;
    tiny(&fz, "unused", 5, extra);
    config_validate(&fz, "test"); /* exits 2 on refusal */
    cr_assert(fz.quant.freeze_table);
    /* a layer's codebook it cannot hold, and one that does not exist: one line naming the key */
    char cmd[4096], err[1024];
    snprintf(cmd, sizeof cmd,
             "train %s/mixed-cb/config.yaml --set out_dir=%s/bad --set quant.overrides.blocks.0.mlp.fc.bits=6 "
             "--set quant.overrides.blocks.0.mlp.fc.codebook=nf", g_dir, g_dir);
    cr_assert_eq(test_run_qat(cmd, err, sizeof err), 2);
    cr_assert(strstr(err, "quant.overrides.blocks.0.mlp.fc") && strstr(err, "2..4 or 8 bits"), "got '%s'", err);
    snprintf(cmd, sizeof cmd, "train %s/mixed-cb/config.yaml --set out_dir=%s/bad --set quant.overrides.blocks.0.mlp.fc.codebook=nf5",
             g_dir, g_dir);
    cr_assert_eq(test_run_qat(cmd, err, sizeof err), 2);
    cr_assert(strstr(err, "quant.overrides.blocks.0.mlp.fc.codebook") && strstr(err, "nf5"), "got '%s'", err);
}
