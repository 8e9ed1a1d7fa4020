/* test_demo.c: qat demo's pipeline (./quickstart's main job) on a smaller
 * setting: configs/demo/ copied into a fresh folder with fewer steps and
 * methods, qat demo run there, and every file its last screen names
 * checked: the comparison's four files, the exported int4 model (qat's file
 * and the GGUF, both readable by qat inspect), the training runs; the
 * exported model's integer-kernel loss equals the fake-quant one, and a
 * sample is printed. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

/* a configs/demo file with its numbers cut down (sed expressions) */
static void copy_config(const char *dir, const char *name, const char *sed) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "sed %s %s/configs/demo/%s > %s/configs/demo/%s", sed, getenv("QAT_SOURCE_DIR"), name, dir,
             name);
    test_run(cmd);
}

Test(demo, the_main_job_writes_what_it_says, .timeout = 300) {
    char *dir = test_tmpdir(), cmd[4096];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/configs/demo", dir);
    test_run(cmd);
    copy_config(dir, "compare.yaml",
                "-e 's/iters: 1500/iters: 80/' -e 's/eval_every: 500/eval_every: 80/' -e 's/val_fraction: 0.1/val_fraction: 0.03/' "
                "-e '/rtn --bits 8/d' -e '/rtn --bits 3/d' -e 's/gen_tokens: 256/gen_tokens: 32/' "
                "-e 's|configs/demo/qat-int8.yaml, ||' -e 's|, configs/demo/qat-int3-g32.yaml||'");
    copy_config(dir, "qat-int4-g32.yaml",
                "-e 's/iters: 200/iters: 20/' -e 's/eval_every: 100/eval_every: 20/' -e 's/val_fraction: 0.1/val_fraction: 0.03/'");
    snprintf(cmd, sizeof cmd, "cd %s && %s/qat demo", dir, getenv("QAT_BINARY_DIR"));
    char *out = test_run(cmd);
    /* the rows it was told to make, and the best int4 one picked from them */
    const char *rows[] = {"| float |", "| rtn | 4 |", "| gptq | 4 |", "| awq | 4 |", "| float+ft |", "| qat-lsq+kd | 4 |"};
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) cr_assert(strstr(out, rows[i]), "no row %s in:\n%s", rows[i], out);
    cr_assert(strstr(out, "== 2/4 the best int4 model: "), "%s", out);
    const char *files[] = {"runs/demo/compare/compare.md", "runs/demo/compare/compare.csv", "runs/demo/compare/compare.json",
                           "runs/demo/compare/compare.png", "runs/demo/model-int4.h5", "runs/demo/model-int4.gguf",
                           "runs/demo/float/checkpoint.h5", "runs/demo/compare/qat-int4-g32/checkpoint.h5",
                           "runs/demo/compare/layer_errors.png", "runs/demo/loss.png"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char *p = test_path(dir, files[i]);
        cr_assert_eq(access(p, R_OK), 0, "qat demo did not write %s", files[i]);
        /* named on its last screen (the comparison's four as compare.md, .csv, .json, .png) */
        char name[256];
        snprintf(name, sizeof name, "%s", strrchr(files[i], '/') + 1);
        if (!strncmp(name, "compare.", 8) && strcmp(name, "compare.md")) memmove(name, name + 7, strlen(name + 7) + 1);
        if (!strcmp(name, "checkpoint.h5")) snprintf(name, sizeof name, "%s", strchr(files[i], '/') + 1);
        if (strchr(name, '/')) *strrchr(name, '/') = '\0';
        cr_assert(strstr(out, name), "the demo's screen does not name %s (%s)", files[i], name);
    }
    /* the PNGs are PNGs; both exports are models qat reads back */
    size_t n;
    const char *pngs[] = {"runs/demo/compare/compare.png", "runs/demo/compare/layer_errors.png", "runs/demo/loss.png"};
    for (size_t i = 0; i < sizeof pngs / sizeof *pngs; i++) {
        char *png = test_slurp(test_path(dir, pngs[i]), &n);
        cr_assert(n > 1000 && !memcmp(png, "\x89PNG", 4), "%s", pngs[i]);
        free(png);
    }
    /* the per-layer errors: every quantized Linear, for each row a relative error in (0, 1) */
    char *csv = test_slurp(test_path(dir, "runs/demo/compare/layer_errors.csv"), &n);
    cr_assert(!strncmp(csv, "layer,", 6) && strstr(csv, "rtn 4-bit g32") && strstr(csv, "qat-lsq+kd 4-bit g32"), "%s", csv);
    int lines = 0;
    for (char *l = strchr(csv, '\n'); l && l[1]; l = strchr(l + 1, '\n')) {
        lines++;
        cr_assert(!strncmp(l + 1, "blocks.", 7), "%s", l + 1);
        for (char *c = strchr(l + 1, ','); c && c < strchr(l + 1, '\n'); c = strchr(c + 1, ',')) {
            double e = atof(c + 1);
            cr_assert(e > 0.0 && e < 1.0, "error %g in %s", e, csv);
        }
    }
    cr_assert_eq(lines, 8, "2 blocks x 4 Linears: %s", csv);
    free(csv);
    char args[4096];
    snprintf(args, sizeof args, "inspect %s/runs/demo/model-int4.h5", dir);
    cr_assert(strstr(test_qat(args), "int4"), "inspect of the exported model");
    snprintf(args, sizeof args, "inspect %s/runs/demo/model-int4.gguf", dir);
    cr_assert(strstr(test_qat(args), "gpt2"), "inspect of the GGUF");
    /* integer kernels give the fake-quant loss (printed with 6 decimals) */
    char *fq = strstr(out, "fake quantization (training's forward): "), *ik = strstr(out, "integer kernels (");
    cr_assert(fq && ik, "%s", out);
    double a = atof(fq + strlen("fake quantization (training's forward): ")), b = atof(strstr(ik, "):") + 2);
    cr_assert(a > 0.5 && a < 5.0 && a == b, "fake quant %.6f, integer kernels %.6f", a, b);
    cr_assert(strstr(out, "== 4/4 a sample from ") && strstr(out, "== next =="), "%s", out);
}
