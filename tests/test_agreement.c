/* test_agreement.c: the integer model gives what training promised. A small
 * model is fine-tuned under int8 per-channel, int4 g16 (LSQ) and W8A8 fake
 * quantization; its integer weights on the integer kernels (every path this
 * CPU has) must reproduce the fake-quant validation loss within 1e-3 and the
 * logits within 1e-3 of their largest magnitude. */
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
    Config c;
    config_defaults(&c);
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "model: {n_layer: 2, n_head: 2, n_embd: 32, block_size: 16}\n"
             "data: {path: %s}\n"
             "train: {batch_size: 8, iters: 60, lr: 1e-2, min_lr: 1e-3, warmup_iters: 5, eval_every: 1000,"
             " eval_batches: 8, threads: 2}\n"
             "out_dir: %s\n",
             g_corpus, g_float);
    config_load_string(&c, yaml, "float");
    TrainOptions o = {.quiet = true};
    train_run(&c, "float", &o);
}
TestSuite(agreement, .init = make_float_model);

static void check_scheme(const char *name, const char *quant_yaml) {
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
    float fake = eval_checkpoint(ckpt, NULL, false).val_loss;

    /* logits of one batch both ways */
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
    float *ref = malloc(n * sizeof(float));
    memcpy(ref, lf->data, n * sizeof(float));
    float mag = 0;
    for (size_t i = 0; i < n; i++) mag = fmaxf(mag, fabsf(ref[i]));
    gpt_quant_to_int(&g);
    const KernelPath paths[] = {KERN_SCALAR, KERN_AVX2, KERN_AVX512};
    for (int p = 0; p < 3; p++) {
        const char *pn = kernel_path_name(paths[p]);
        if (!kernel_supported(paths[p])) continue;
        kernel_force(paths[p]);
        tape_reset(&t);
        Tensor *li = gpt_forward(&g, &t, idx, 2, 16);
        float worst = 0;
        for (size_t i = 0; i < n; i++) worst = fmaxf(worst, fabsf(li->data[i] - ref[i]));
        cr_assert_leq(worst, 1e-3f * mag, "%s %s: logits differ by %g (max |logit| %g)", name, pn, worst, mag);
        float integer = eval_checkpoint(ckpt, NULL, true).val_loss;
        cr_assert_float_eq(integer, fake, 1e-3, "%s %s: integer val loss %.6f vs fake-quant %.6f", name, pn, integer, fake);
    }
    kernel_force(KERN_SCALAR);
    free(ref);
    tape_free(&t);
    gpt_free(&g);
}

Test(agreement, int8_per_channel) { check_scheme("int8", "weight: {bits: 8, granularity: channel}, estimator: ste"); }
Test(agreement, int4_g16_lsq) {
    check_scheme("int4g16", "weight: {bits: 4, granularity: group, group_size: 16}, estimator: lsq");
}
Test(agreement, int4_per_channel) { check_scheme("int4ch", "weight: {bits: 4, granularity: channel}, estimator: ste"); }
Test(agreement, w8a8_per_token) {
    check_scheme("w8a8", "weight: {bits: 8, granularity: channel}, activation: {bits: 8, granularity: token}, estimator: ste");
}
