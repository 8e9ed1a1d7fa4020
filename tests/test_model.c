/* test_model.c: the GPT as a whole: its parameter count, and the gradient of
 * the loss with respect to every parameter of a tiny model against central
 * differences. This also covers the backward paths that only run inside a
 * full graph (fresh activation grads set instead of accumulated, the residual
 * stream sharing one grad buffer). */
#include <criterion/criterion.h>
#include <math.h>

#include "layers/layers.h"
#include "testutil.h"

Test(model, reference_parameter_count) {
    GPTConfig c = {.vocab_size = 65, .n_layer = 4, .n_head = 4, .n_embd = 128, .block_size = 128};
    GPT g;
    gpt_build(&g, &c, NULL, NULL);
    cr_assert_eq(g.params.numel, 818048);
    cr_assert(params_find(&g.params, "blocks.3.mlp.proj.weight"));
    gpt_free(&g);
}

Test(model, init_follows_the_recipe) {
    GPTConfig c = {.vocab_size = 65, .n_layer = 4, .n_head = 4, .n_embd = 128, .block_size = 128};
    GPT g;
    gpt_build(&g, &c, NULL, NULL);
    Rng r;
    rng_seed(&r, 1);
    gpt_init_weights(&g, &r);
    struct {
        const char *name;
        double std;
    } want[] = {{"wte", 0.02}, {"blocks.0.attn.qkv.weight", 0.02}, {"blocks.1.attn.proj.weight", 0.02 / sqrt(8.0)},
                {"blocks.2.mlp.proj.weight", 0.02 / sqrt(8.0)}};
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
        Tensor *x = params_find(&g.params, want[k].name);
        double ss = 0;
        for (size_t i = 0; i < x->numel; i++) ss += (double)x->data[i] * x->data[i];
        double sd = sqrt(ss / x->numel);
        cr_assert(fabs(sd - want[k].std) < 0.05 * want[k].std, "%s std %.5f want %.5f", want[k].name, sd, want[k].std);
    }
    cr_assert_eq(params_find(&g.params, "blocks.0.ln1.weight")->data[5], 1.0f);
    cr_assert_eq(params_find(&g.params, "blocks.0.mlp.fc.bias")->data[5], 0.0f);
    gpt_free(&g);
}

/* Tolerance: the loss is a float32 mean of ~10 cross-entropies (about 2), so
 * with h = 5e-3 its rounding error adds ~1e-5 to a difference quotient; a larger
 * init (std 0.3) keeps most gradients well above that. */
Test(model, gpt_gradient_matches_finite_differences) {
    GPTConfig c = {.vocab_size = 7, .n_layer = 2, .n_head = 2, .n_embd = 8, .block_size = 6};
    GPT g;
    gpt_build(&g, &c, NULL, NULL);
    Rng r;
    rng_seed(&r, 11);
    for (size_t i = 0; i < g.params.numel; i++) g.params.data[i] = 0.3f * rng_normal(&r);
    const int B = 2, T = 5;
    int32_t idx[10], tgt[10];
    for (int i = 0; i < B * T; i++) idx[i] = (int32_t)rng_below(&r, 7), tgt[i] = (int32_t)rng_below(&r, 7);
    Tape t;
    tape_init(&t, 1 << 16);
    params_zero_grad(&g.params);
    tape_backward(&t, gpt_loss(&g, &t, idx, tgt, B, T));
    float *ana = xmalloc(g.params.numel * sizeof(float));
    memcpy(ana, g.params.grad, g.params.numel * sizeof(float));
    tape_set_grad(&t, false);
    const float h = 5e-3f;
    double worst = 0;
    size_t bad = 0;
    for (size_t i = 0; i < g.params.numel; i++) {
        float x0 = g.params.data[i];
        g.params.data[i] = x0 + h;
        tape_reset(&t);
        double lp = gpt_loss(&g, &t, idx, tgt, B, T)->data[0];
        g.params.data[i] = x0 - h;
        tape_reset(&t);
        double lm = gpt_loss(&g, &t, idx, tgt, B, T)->data[0];
        g.params.data[i] = x0;
        double num = (lp - lm) / (2 * h);
        double ratio = fabs(num - ana[i]) / (1e-4 + 2e-2 * fmax(fabs(num), fabs(ana[i])));
        if (ratio > worst) worst = ratio;
        if (ratio > 1) bad++;
    }
    cr_assert_leq(worst, 1.0, "%zu of %zu gradients off, worst ratio %.3g", bad, g.params.numel, worst);
    free(ana);
    tape_free(&t);
    gpt_free(&g);
}
