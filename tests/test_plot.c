/* test_plot.c: qat plot over run directories: the figure is a PNG, each
 * run's logged steps are read as written, a run fine-tuned from another one
 * on the figure continues from that one's last step; a directory without a
 * log, a line that is not JSON and a non-finite loss are refused in one
 * line naming the file and line. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static char *g_dir, *g_float, *g_qat;

static void setup(void) {
    g_dir = test_tmpdir();
    char *corpus = test_write(g_dir, "corpus.txt", test_corpus(20000, 9));
    g_float = test_path(g_dir, "float");
    g_qat = test_path(g_dir, "qat");
    test_train_tiny(corpus, g_float, 12, 2, "");
    char q[2048];
    snprintf(q, sizeof q, "quant: {weight: {bits: 4, granularity: group, group_size: 16}, init_from: %s/checkpoint.h5}\n",
             g_float);
    test_train_tiny(corpus, g_qat, 6, 2, q);
}
TestSuite(plot, .init = setup, .timeout = 120);

static int count_lines(const char *path) {
    size_t n;
    char *t = test_slurp(path, &n);
    int k = 0;
    for (size_t i = 0; i < n; i++) k += t[i] == '\n';
    free(t);
    return k;
}

Test(plot, runs_on_one_figure_the_fine_tuned_one_after_its_float_model) {
    char args[4096], *png = test_path(g_dir, "curves.png");
    snprintf(args, sizeof args, "plot %s %s -o %s", g_float, g_qat, png);
    char *out = test_qat(args);
    size_t n;
    char *b = test_slurp(png, &n);
    cr_assert(n > 1000 && !memcmp(b, "\x89PNG", 4), "not a PNG");
    free(b);
    /* every logged line is a point, and the QAT run is drawn from the float run's last step (12) */
    char want[512];
    snprintf(want, sizeof want, "%s: %d logged steps to step 12", g_float, count_lines(test_path(g_float, "metrics.jsonl")));
    cr_assert(strstr(out, want), "no \"%s\" in:\n%s", want, out);
    snprintf(want, sizeof want, "%s: fine-tuned from %s, drawn from its step 12 on", g_qat, g_float);
    cr_assert(strstr(out, want), "no \"%s\" in:\n%s", want, out);
    snprintf(want, sizeof want, "%s: %d logged steps to step 18", g_qat, count_lines(test_path(g_qat, "metrics.jsonl")));
    cr_assert(strstr(out, want), "no \"%s\" in:\n%s", want, out);
    /* without -o: the first run's loss.png */
    snprintf(args, sizeof args, "plot %s", g_qat);
    test_qat(args);
    cr_assert_eq(access(test_path(g_qat, "loss.png"), R_OK), 0);
}

/* A run directory whose log was damaged: one line naming the file and line, nothing written. */
static void expect_bad_log(const char *name, const char *log, const char *needle) {
    char *d = test_path(g_dir, name), cmd[4096], args[4096];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", d);
    test_run(cmd);
    test_write(d, "metrics.jsonl", log);
    char *png = test_path(d, "x.png");
    snprintf(args, sizeof args, "plot %s -o %s", d, png);
    char want[4200];
    snprintf(want, sizeof want, "%s/metrics.jsonl%s", d, needle);
    test_expect_qat(args, 2, want, NULL);
    cr_assert_neq(access(png, F_OK), 0, "a figure was written from a bad log");
}

Test(plot, bad_logs_are_refused_in_one_line) {
    expect_bad_log("notjson", "{\"iter\":1,\"loss\":2.5}\n{\"iter\":2,\"loss\":\n", ":2: not a JSON object");
    expect_bad_log("noiter", "{\"loss\":2.5}\n", ":1: no iter");
    expect_bad_log("nan", "{\"iter\":1,\"loss\":\"nan\"}\n", ":1: loss is not a finite number");
    expect_bad_log("empty", "\n", ": no logged steps");
    char args[4096];
    snprintf(args, sizeof args, "plot %s/nowhere", g_dir);
    test_expect_qat(args, 2, "no metrics.jsonl here", NULL);
    test_expect_qat("plot", 2, "missing RUN_DIR", NULL);
}
