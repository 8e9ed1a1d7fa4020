/* test_compare.c: qat compare on another corpus and in other directories.
 * Every row (float, PTQ, QAT, float+ft) is trained, calibrated and scored
 * on the corpus the comparison was given with --set data.path, from the one
 * float model; a float model of another config in out_dir is left alone
 * (the comparison gets directories of its own); fine-tuning runs are reused
 * only when made from the same float model, and QAT files made for another
 * corpus or a quant key on the comparison are refused in one line. */
#include <cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format/checkpoint.h"
#include "testutil.h"

static char *g_dir, *g_a, *g_b, *g_cfg;

static void setup(void) {
    g_dir = test_tmpdir();
    g_a = test_write(g_dir, "a.txt", test_corpus(12000, 21));
    g_b = test_write(g_dir, "b.txt", test_corpus(9000, 22));
    char qat[2048], cmp[2048];
    /* the QAT file names the comparison's corpus a and float model, as the demo's files do */
    snprintf(qat, sizeof qat,
             "model: {n_layer: 1, n_head: 2, n_embd: 32, block_size: 16}\n"
             "data: {path: %s}\n"
             "train: {batch_size: 8, iters: 4, lr: 1e-3, min_lr: 1e-3, warmup_iters: 0, eval_every: 1000}\n"
             "quant: {weight: {bits: 4, granularity: group, group_size: 16}, estimator: lsq, init_from: %s/float/checkpoint.h5}\n"
             "out_dir: %s/qat-run\n",
             g_a, g_dir, g_dir);
    char *qat_path = test_write(g_dir, "qat-int4.yaml", qat);
    snprintf(cmp, sizeof cmp,
             "model: {n_layer: 1, n_head: 2, n_embd: 32, block_size: 16}\n"
             "data: {path: %s}\n"
             "train: {batch_size: 8, iters: 12, lr: 1e-2, min_lr: 1e-3, warmup_iters: 0, eval_every: 1000, threads: 2}\n"
             "out_dir: %s/float\n"
             "compare: {out_dir: %s/cmp, gen_tokens: 8, ptq: \"rtn --bits 4 --group 16 --calib-batches 1\", qat: %s}\n",
             g_a, g_dir, g_dir, qat_path);
    g_cfg = test_write(g_dir, "compare.yaml", cmp);
}
TestSuite(compare, .init = setup, .timeout = 600);

static char *run_compare(const char *extra) {
    char args[8400];
    snprintf(args, sizeof args, "compare %s %s", g_cfg, extra);
    return test_qat(args);
}

static Config meta_of(const char *ckpt) {
    Config c;
    long step;
    ckpt_load_meta(ckpt, &c, NULL, &step);
    return c;
}

/* The rows of DIR/compare.json: each checkpoint's config names the corpus
 * and (fine-tuned rows) the float model; returns the QAT row's checkpoint. */
static char *check_rows(const char *dir, const char *corpus, const char *float_ckpt) {
    char *path = test_path(dir, "compare.json");
    cJSON *arr = cJSON_Parse(test_slurp(path, NULL)), *row;
    cr_assert(cJSON_IsArray(arr), "%s", path);
    char *qat = NULL;
    int n = 0;
    cJSON_ArrayForEach(row, arr) {
        const char *m = cJSON_GetObjectItem(row, "method")->valuestring;
        const char *ck = cJSON_GetObjectItem(row, "checkpoint")->valuestring;
        Config c = meta_of(ck);
        cr_assert_str_eq(c.data.path, corpus, "%s row (%s) trained or calibrated on %s", m, ck, c.data.path);
        if (!strcmp(m, "float")) cr_assert_str_eq(ck, float_ckpt);
        if (!strcmp(m, "float+ft") || !strncmp(m, "qat", 3)) {
            cr_assert_str_eq(c.quant.init_from, float_ckpt, "%s row fine-tuned from %s", m, c.quant.init_from);
            cr_assert(!strncmp(ck, dir, strlen(dir)), "%s row's run %s is outside %s", m, ck, dir);
        }
        if (!strncmp(m, "qat", 3)) qat = test_keep(xstrdup(ck));
        n++;
    }
    cr_assert_eq(n, 4, "float, rtn, float+ft, qat: %d rows", n);
    cJSON_Delete(arr);
    cr_assert(qat);
    return qat;
}

/* The scored tokens: the float model's own validation split of the corpus. */
static void check_scored_on(const char *out, const char *float_ckpt) {
    char args[4096];
    snprintf(args, sizeof args, "eval %s --json", float_ckpt);
    cJSON *e = cJSON_Parse(test_qat(args));
    char want[128];
    snprintf(want, sizeof want, "every row scored on %.0f validation tokens", cJSON_GetObjectItem(e, "tokens")->valuedouble);
    cJSON_Delete(e);
    cr_assert(strstr(out, want), "no \"%s\" in:\n%s", want, out);
}

Test(compare, every_row_follows_the_corpus_override_and_old_models_are_left_alone) {
    char *fl = test_path(g_dir, "float/checkpoint.h5"), *cmp = test_path(g_dir, "cmp");
    /* on corpus b: the float model, the PTQ row and the QAT row all on b */
    char set[4200];
    snprintf(set, sizeof set, "--set data.path=%s", g_b);
    char *out = run_compare(set);
    char *qat_b = check_rows(cmp, g_b, fl);
    check_scored_on(out, fl);
    cr_assert_str_eq(qat_b, test_path(cmp, "qat-int4/checkpoint.h5"));
    /* back on a (the file as written): out_dir holds b's model, which stays as it is */
    size_t n1, n2;
    char *before = test_slurp(fl, &n1);
    out = run_compare("");
    cr_assert(strstr(out, "holds a float model of another config (data.path differs)"), "%s", out);
    char *after = test_slurp(fl, &n2);
    cr_assert(n1 == n2 && !memcmp(before, after, n1), "the float model of corpus b was changed");
    free(before), free(after);
    /* this comparison's own directories, named on its first lines */
    const char *at = strstr(out, "go to ");
    cr_assert(at, "%s", out);
    char fdir[1024], cdir[1024];
    cr_assert_eq(sscanf(at, "go to %1023s and %1023s", fdir, cdir), 2, "%s", at);
    char *fl_a = test_path(fdir, "checkpoint.h5");
    char *qat_a = check_rows(cdir, g_a, fl_a);
    check_scored_on(out, fl_a);
    cr_assert_str_neq(qat_a, qat_b);
    /* the same again: everything reused, nothing trained */
    out = run_compare("");
    cr_assert(strstr(out, "compare: reusing the float model") && strstr(out, "compare: reusing") && !strstr(out, "training"),
              "%s", out);
}

/* A float model changed in place (same config, other weights): its
 * fine-tuning runs are made again, not reused. */
Test(compare, fine_tuning_runs_of_another_float_model_are_never_reused) {
    char set[4200];
    snprintf(set, sizeof set, "--set compare.out_dir=%s/other --set out_dir=%s/float2", g_dir, g_dir);
    char *out = run_compare(set);
    char *fl = test_path(g_dir, "float2/checkpoint.h5");
    check_rows(test_path(g_dir, "other"), g_a, fl);
    out = run_compare(set);
    cr_assert(!strstr(out, "training"), "a second run trained again:\n%s", out);
    test_poison_f32(fl, "params/wte", 3, 0.25f);
    out = run_compare(set);
    cr_assert(strstr(out, "compare: reusing the float model"), "%s", out);
    cr_assert(strstr(out, "compare: training the float+ft baseline") && strstr(out, "qat-int4.yaml into"),
              "runs of the old float model were reused:\n%s", out);
}

Test(compare, rows_that_would_not_compare_are_refused) {
    char qat[2048], args[4200], *c = test_write(g_dir, "c.txt", "another corpus entirely\n");
    snprintf(qat, sizeof qat,
             "data: {path: %s}\n"
             "train: {iters: 4}\n"
             "quant: {weight: {bits: 4}}\n", c);
    char *q = test_write(g_dir, "qat-other-corpus.yaml", qat);
    snprintf(args, sizeof args, "compare %s --set compare.qat=%s --set out_dir=%s/f3 --set compare.out_dir=%s/c3", g_cfg, q,
             g_dir, g_dir);
    test_expect_qat(args, 2, "data.path: differs from the data of", q);
    /* (quantization keys fail config validation on a float model; this one would make it a fine-tune) */
    snprintf(args, sizeof args, "compare %s --set quant.init_from=%s", g_cfg, g_a);
    test_expect_qat(args, 2, "quant.init_from: qat compare takes the config of the float model", NULL);
}
