/* test_optim.c: AdamW and SGD steps against hand-computed values, the
 * learning-rate schedule at warmup, middle and end, and clipping. */
#include <criterion/criterion.h>
#include <math.h>

#include "optim/optim.h"
#include "testutil.h"

static Params P;
static Tensor *W, *B;
static void setup(void) {
    params_init(&P);
    W = params_add(&P, "w", 2, (int[]){1, 2});
    B = params_add(&P, "b", 1, (int[]){1});
    params_finalize(&P);
    W->data[0] = 1.0f, W->data[1] = -2.0f, B->data[0] = 0.5f;
    W->grad[0] = 0.1f, W->grad[1] = -0.3f, B->grad[0] = 2.0f;
}
static void teardown(void) { params_free(&P); }
TestSuite(optim, .init = setup, .fini = teardown);

Test(optim, adamw_first_step_by_hand) {
    AdamW o;
    adamw_init(&o, &P, 0.9f, 0.99f, 1e-8f, 0.1f);
    adamw_step(&o, &P, 1e-2f);
    /* Step 1: m = 0.1 g, v = 0.01 g^2; bias-corrected m_hat = g, v_hat = g^2, so
     * the update is lr * g/(|g| + eps) = lr * sign(g) (up to eps).
     * w: decayed by (1 - lr*wd) = 0.999 first. b: no decay (1-d). */
    cr_assert_float_eq(W->data[0], 1.0f * 0.999f - 0.01f, 1e-6);
    cr_assert_float_eq(W->data[1], -2.0f * 0.999f + 0.01f, 1e-6);
    cr_assert_float_eq(B->data[0], 0.5f - 0.01f, 1e-6);
    cr_assert_float_eq(o.m[0], 0.01f, 1e-8);
    cr_assert_float_eq(o.v[2], 0.04f, 1e-7); /* (1-0.99f) is not exact in float */
    adamw_free(&o);
}

Test(optim, adamw_second_step_by_hand) {
    AdamW o;
    adamw_init(&o, &P, 0.9f, 0.99f, 1e-8f, 0.0f);
    adamw_step(&o, &P, 1e-2f);
    W->grad[0] = 0.3f; /* new gradient for w[0]; others unchanged */
    adamw_step(&o, &P, 1e-2f);
    /* m = 0.9*0.01 + 0.1*0.3 = 0.039, v = 0.99*0.0001 + 0.01*0.09 = 0.000999
     * m_hat = 0.039/0.19, v_hat = 0.000999/0.0199 */
    double mh = 0.039 / 0.19, vh = 0.000999 / 0.0199;
    double want = (1.0 - 0.01) - 0.01 * mh / (sqrt(vh) + 1e-8);
    cr_assert_float_eq(W->data[0], (float)want, 1e-6);
    adamw_free(&o);
}

Test(optim, sgd_momentum_by_hand) {
    Sgd o;
    sgd_init(&o, &P, 0.9f, 0.0f);
    sgd_step(&o, &P, 0.1f); /* buf = g */
    cr_assert_float_eq(W->data[0], 1.0f - 0.01f, 1e-7);
    sgd_step(&o, &P, 0.1f); /* buf = 0.9 g + g = 1.9 g */
    cr_assert_float_eq(W->data[0], 1.0f - 0.01f - 0.019f, 1e-7);
    cr_assert_float_eq(B->data[0], 0.5f - 0.2f - 0.38f, 1e-6);
    sgd_free(&o);
}

Test(optim, schedule_warmup_middle_end) {
    LrSchedule s = {.lr = 1e-3f, .min_lr = 1e-4f, .warmup_iters = 100, .iters = 2000};
    cr_assert_float_eq(lr_at(&s, 0), 1e-5f, 1e-10);   /* (0+1)/100 of lr */
    cr_assert_float_eq(lr_at(&s, 49), 5e-4f, 1e-9);
    cr_assert_float_eq(lr_at(&s, 99), 1e-3f, 1e-9);   /* warmup ends at lr */
    cr_assert_float_eq(lr_at(&s, 100), 1e-3f, 1e-9);  /* cosine starts at lr */
    cr_assert_float_eq(lr_at(&s, 1050), 5.5e-4f, 1e-8); /* half way: (lr+min)/2 */
    cr_assert_float_eq(lr_at(&s, 2000), 1e-4f, 1e-9); /* floor */
    cr_assert_float_eq(lr_at(&s, 5000), 1e-4f, 1e-9);
    /* a quarter of the way: min + (lr-min) * (1+cos(pi/4))/2 */
    cr_assert_float_eq(lr_at(&s, 575), 1e-4f + 9e-4f * (1.0f + cosf(3.14159265f / 4)) / 2, 1e-8);
}

Test(optim, clip_global_norm) {
    /* norm = sqrt(0.01 + 0.09 + 4) = sqrt(4.1) */
    float n = grad_clip_norm(&P, 1.0f);
    cr_assert_float_eq(n, sqrtf(4.1f), 1e-6);
    double ss = 0;
    for (size_t i = 0; i < P.numel; i++) ss += P.grad[i] * P.grad[i];
    cr_assert_float_eq(sqrt(ss), 1.0, 1e-5);
    /* under the limit: unchanged */
    float before = P.grad[0];
    grad_clip_norm(&P, 10.0f);
    cr_assert_float_eq(P.grad[0], before, 0);
}

Test(optim, adamw_lr_scale_and_frozen) {
    /* lr_scale multiplies the step and the decay; a frozen tensor is left alone */
    W->lr_scale = 0.5f;
    B->frozen = true;
    AdamW o;
    adamw_init(&o, &P, 0.9f, 0.99f, 1e-8f, 0.1f);
    adamw_step(&o, &P, 1e-2f);
    cr_assert_float_eq(W->data[0], 1.0f * (1.0f - 0.5f * 1e-2f * 0.1f) - 0.5f * 0.01f, 1e-6);
    cr_assert_eq(B->data[0], 0.5f);
    adamw_free(&o);
}
