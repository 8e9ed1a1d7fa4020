/* test_agreement.c: the deployed integer model gives what training promised.
 * A small model is fine-tuned under int8 per-channel, int4 g16 and g32 (LSQ),
 * int4 per-channel, W8A8 (with int8 keys and values), full-range int3 g16
 * and int2 per channel, and normal-float
 * codebooks (nf3 g16 LSQ, nf2 per channel) fake quantization, then exported; the exported file on the integer kernels (every path this
 * CPU has; windows in one forward and token by token over the KV cache) must
 * reproduce the fake-quant validation loss within 1e-3 (codebooks: 1e-4) and
 * the logits within 1e-3 of their largest magnitude. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "train/trainer.h"

static char *g_dir, *g_corpus, *g_float;

static void make_float_model(void) {
    g_dir = test_tmpdir();
    g_corpus = test_write(g_dir, "corpus.txt", test_corpus(40000, 8));
    g_float = test_keep(xmalloc(strlen(g_dir) + 32));
    sprintf(g_float, "%s/float", g_dir);
    test_train_tiny(g_corpus, g_float, 60, 8, "");
}
TestSuite(agreement, .init = make_float_model);

static void check_scheme_within(const char *name, const char *quant_yaml, float tol) {
    char out[1024], yaml[8192], ckpt[1100];
    snprintf(out, sizeof out, "%s/%s", g_dir, name);
    snprintf(yaml, sizeof yaml,
             "model: {n_layer: 2, n_head: 2, n_embd: 32, block_size: 16}\n"
             "data: {path: %s}\n"
             "train: {batch_size: 8, iters: 20, lr: 1e-3, min_lr: 1e-3, warmup_iters: 0, eval_every: 1000,"
             " eval_batches: 8, threads: 2}\n"
             "quant: {%s, init_from: %s/checkpoint.h5}\n"
             "out_dir: %s\n",
             g_corpus, quant_yaml, g_float, out);
    Config c;
    config_defaults(&c);
    config_load_string(&c, yaml, name);
    TrainOptions o = {.quiet = true};
    train_run(&c, name, &o);
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint.h5", out);
    float fake = eval_checkpoint(ckpt, NULL).val_loss;

    /* the deployable file: export, then everything below runs from it */
    char model[1200];
    snprintf(model, sizeof model, "%s/model.h5", out);
    ExportReport er = export_checkpoint(ckpt, model);
    cr_assert_gt(er.quant_layers, 0);
    InferModel m;
    infer_load(&m, model);

    /* logits of two windows both ways */
    GPT g;
    Config cc;
    Vocab v;
    model_load(ckpt, &g, &cc, &v);
    int32_t idx[2 * 16];
    for (int i = 0; i < 32; i++) idx[i] = i * 7 % v.size;
    Tape t;
    tape_init(&t, 1 << 20);
    tape_set_grad(&t, false);
    Tensor *lf = gpt_forward(&g, &t, idx, 2, 16);
    size_t n = lf->numel;
    float mag = 0;
    for (size_t i = 0; i < n; i++) mag = fmaxf(mag, fabsf(lf->data[i]));
    const KernelPath paths[] = {KERN_SCALAR, KERN_AVX2, KERN_AVX512};
    InferState s;
    infer_state_init(&s, &m, 16);
    for (int p = 0; p < 3; p++) {
        const char *pn = kernel_path_name(paths[p]);
        if (!kernel_supported(paths[p])) continue;
        kernel_force(paths[p]);
        float worst = 0;
        for (int w = 0; w < 2; w++) {
            s.pos = 0;
            /* the first window in one forward (M = 16); the second token by token over the KV cache (M = 1) */
            const float *li = NULL;
            for (int k = 0; k < (w ? 16 : 1); k++) {
                li = infer_forward(&m, &s, idx + 16 * w + (w ? k : 0), w ? 1 : 16);
                int rows = w ? 1 : 16;
                for (int r = 0; r < rows; r++)
                    for (int j = 0; j < v.size; j++) {
                        size_t at = ((size_t)16 * w + (w ? k : r)) * v.size + j;
                        worst = fmaxf(worst, fabsf(li[(size_t)r * v.size + j] - lf->data[at]));
                    }
            }
        }
        cr_assert_leq(worst, 1e-3f * mag, "%s %s: logits differ by %g (max |logit| %g)", name, pn, worst, mag);
        float integer = eval_checkpoint(model, NULL).val_loss;
        cr_assert_float_eq(integer, fake, tol, "%s %s: exported model's val loss %.6f vs fake-quant %.6f", name, pn,
                           integer, fake);
    }
    kernel_force(KERN_SCALAR);
    infer_state_free(&s);
    infer_free(&m);
    tape_free(&t);
    gpt_free(&g);
}

static void check_scheme(const char *name, const char *quant_yaml) { check_scheme_within(name, quant_yaml, 1e-3f); }

Test(agreement, int8_per_channel) { check_scheme("int8", "weight: {bits: 8, granularity: channel}, estimator: ste"); }
Test(agreement, int4_g16_lsq) {
    check_scheme("int4g16", "weight: {bits: 4, granularity: group, group_size: 16}, estimator: lsq");
}
Test(agreement, int4_g32_lsq) {
    check_scheme("int4g32", "weight: {bits: 4, granularity: group, group_size: 32}, estimator: lsq");
}
Test(agreement, int4_per_channel) { check_scheme("int4ch", "weight: {bits: 4, granularity: channel}, estimator: ste"); }
Test(agreement, w8a8_per_token) {
    check_scheme("w8a8", "weight: {bits: 8, granularity: channel}, activation: {bits: 8, granularity: token}, estimator: ste, kv: {bits: 8}");
}
/* the full range: the code -2^(b-1) through export and the nibble kernels */
Test(agreement, int3_g16_full_range_lsq) {
    check_scheme_within("int3g16full", "weight: {bits: 3, granularity: group, group_size: 16, narrow_range: false}, estimator: lsq",
                        1e-4f);
}
Test(agreement, int2_per_channel_full_range) {
    check_scheme_within("int2chfull", "weight: {bits: 2, granularity: channel, narrow_range: false}, estimator: ste", 1e-4f);
}
/* codebooks: the table kernels look up the very levels fake quantization rounds to */
Test(agreement, nf3_g16_lsq) {
    check_scheme_within("nf3g16", "weight: {bits: 3, granularity: group, group_size: 16, codebook: nf}, estimator: lsq", 1e-4f);
}
Test(agreement, nf2_per_channel) {
    check_scheme_within("nf2ch", "weight: {bits: 2, granularity: channel, codebook: nf}, estimator: ste", 1e-4f);
}
/* kmeans: each layer's learned table, exported as its levels */
Test(agreement, kmeans3_g16_lsq) {
    check_scheme_within("km3g16", "weight: {bits: 3, granularity: group, group_size: 16, codebook: kmeans}, estimator: lsq", 1e-4f);
}
Test(agreement, kmeans4_per_channel_frozen) {
    check_scheme_within("km4ch", "weight: {bits: 4, granularity: channel, codebook: kmeans, freeze_table: true}, estimator: ste", 1e-4f);
}
/* 8-bit codebooks: 256 levels, one index per byte */
Test(agreement, nf8_per_channel) {
    check_scheme_within("nf8ch", "weight: {bits: 8, granularity: channel, codebook: nf}, estimator: ste", 1e-4f);
}
Test(agreement, kmeans8_g32_lsq) {
    check_scheme_within("km8g32", "weight: {bits: 8, granularity: group, group_size: 32, codebook: kmeans}, estimator: lsq", 1e-4f);
}
/* a table per output channel (learned, under group scales) and per group, exported as int8 levels */
Test(agreement, kmeans3_g16_tables_per_channel_lsq) {
    check_scheme_within("km3g16tc", "weight: {bits: 3, granularity: group, group_size: 16, codebook: kmeans, tables: channel}, estimator: lsq", 1e-4f);
}
Test(agreement, kmeans2_g16_tables_per_group) {
    check_scheme_within("km2g16tg", "weight: {bits: 2, granularity: group, group_size: 16, codebook: kmeans, tables: group}, estimator: ste", 1e-4f);
}
/* iq4_nl in qat's own file: its 16 int8 levels as a table, d per block of 32 */
Test(agreement, iq4_nl_lsq) {
    check_scheme_within("iq4nl", "format: iq4_nl, estimator: lsq", 1e-4f);
}
