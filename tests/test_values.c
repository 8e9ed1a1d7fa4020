/* test_values.c: forward values of the ops against hand-computed numbers, the
 * fused attention against a composed one, no-grad mode, and the arena
 * settling into a single chunk once shapes repeat. */
#include <criterion/criterion.h>
#include <math.h>

#include "testutil.h"

static Tape T;
static void setup(void) { tape_init(&T, 1 << 16); }
static void teardown(void) { tape_free(&T); }
TestSuite(values, .init = setup, .fini = teardown);

Test(values, matmul_known) {
    Tensor *a = tensor_from(&T, 2, (int[]){2, 3}, (float[]){1, 2, 3, 4, 5, 6});
    Tensor *b = tensor_from(&T, 2, (int[]){3, 2}, (float[]){7, 8, 9, 10, 11, 12});
    Tensor *c = op_matmul(&T, a, b);
    float want[] = {58, 64, 139, 154};
    for (int i = 0; i < 4; i++) cr_assert_float_eq(c->data[i], want[i], 1e-5);
    /* a^T a through a transposed view: [[17,22,27],[22,29,36],[27,36,45]] */
    Tensor *g = op_matmul(&T, op_transpose(&T, a, 0, 1), a);
    float wg[] = {17, 22, 27, 22, 29, 36, 27, 36, 45};
    for (int i = 0; i < 9; i++) cr_assert_float_eq(g->data[i], wg[i], 1e-5);
}

Test(values, linear_known) {
    Tensor *x = tensor_from(&T, 2, (int[]){1, 2}, (float[]){1, -1});
    Tensor *w = tensor_from(&T, 2, (int[]){3, 2}, (float[]){1, 2, 3, 4, 5, 6});
    Tensor *b = tensor_from(&T, 1, (int[]){3}, (float[]){0.5f, 0, -0.5f});
    Tensor *y = op_linear(&T, x, w, b);
    cr_assert_float_eq(y->data[0], -0.5f, 1e-6);
    cr_assert_float_eq(y->data[1], -1.0f, 1e-6);
    cr_assert_float_eq(y->data[2], -1.5f, 1e-6);
}

Test(values, gelu_known) {
    /* reference values of the tanh form: gelu(1) = 0.841192, gelu(-1) = -0.158808, gelu(2) = 1.954598 */
    Tensor *x = tensor_from(&T, 1, (int[]){4}, (float[]){0, 1, -1, 2});
    Tensor *y = op_gelu(&T, x);
    cr_assert_float_eq(y->data[0], 0.0f, 1e-7);
    cr_assert_float_eq(y->data[1], 0.841192f, 1e-5);
    cr_assert_float_eq(y->data[2], -0.158808f, 1e-5);
    cr_assert_float_eq(y->data[3], 1.954598f, 1e-5);
}

Test(values, layernorm_known) {
    /* x = [1,2,3,4]: mean 2.5, var 1.25 -> xhat = [-1.3416,-0.4472,0.4472,1.3416] */
    Tensor *x = tensor_from(&T, 2, (int[]){1, 4}, (float[]){1, 2, 3, 4});
    Tensor *w = tensor_from(&T, 1, (int[]){4}, (float[]){1, 1, 2, 2});
    Tensor *b = tensor_from(&T, 1, (int[]){4}, (float[]){0, 1, 0, 1});
    Tensor *y = op_layernorm(&T, x, w, b, 0.0f);
    float want[] = {-1.3416408f, 0.5527864f, 0.8944272f, 3.6832816f};
    for (int i = 0; i < 4; i++) cr_assert_float_eq(y->data[i], want[i], 1e-5);
}

Test(values, softmax_and_causal) {
    Tensor *x = tensor_from(&T, 2, (int[]){2, 2}, (float[]){0, 0, 1, 2});
    Tensor *y = op_softmax(&T, x, false);
    cr_assert_float_eq(y->data[0], 0.5f, 1e-6);
    cr_assert_float_eq(y->data[3], 1.0f / (1.0f + expf(-1.0f)), 1e-6);
    Tensor *c = op_softmax(&T, x, true);
    cr_assert_float_eq(c->data[0], 1.0f, 1e-6); /* row 0 sees only key 0 */
    cr_assert_float_eq(c->data[1], 0.0f, 0);
    cr_assert_float_eq(c->data[2], y->data[2], 1e-6);
}

Test(values, cross_entropy_known) {
    /* uniform logits: loss = log V; one confident row: log(1 + 2 e^-10) */
    Tensor *x = tensor_from(&T, 2, (int[]){2, 3}, (float[]){0, 0, 0, 10, 0, 0});
    int32_t tg[] = {1, 0};
    Tensor *l = op_cross_entropy(&T, x, tg);
    double want = 0.5 * (log(3.0) + log(1.0 + 2.0 * exp(-10.0)));
    cr_assert_float_eq(l->data[0], (float)want, 1e-6);
}

Test(values, embedding_and_reductions) {
    Tensor *w = tensor_from(&T, 2, (int[]){3, 2}, (float[]){1, 2, 3, 4, 5, 6});
    int32_t idx[] = {2, 0, 2};
    Tensor *e = op_embedding(&T, w, idx, 1, (int[]){3});
    float want[] = {5, 6, 1, 2, 5, 6};
    for (int i = 0; i < 6; i++) cr_assert_float_eq(e->data[i], want[i], 0);
    cr_assert_float_eq(op_sum(&T, e)->data[0], 25.0f, 1e-6);
    cr_assert_float_eq(op_mean(&T, e)->data[0], 25.0f / 6.0f, 1e-6);
}

Test(values, add_mul_broadcast) {
    Tensor *a = tensor_from(&T, 2, (int[]){2, 3}, (float[]){1, 2, 3, 4, 5, 6});
    Tensor *b = tensor_from(&T, 1, (int[]){3}, (float[]){10, 20, 30});
    Tensor *s = op_add(&T, a, b), *m = op_mul(&T, a, b);
    cr_assert_float_eq(s->data[4], 25.0f, 0);
    cr_assert_float_eq(m->data[5], 180.0f, 0);
    cr_assert_float_eq(op_scale(&T, a, -2.0f)->data[1], -4.0f, 0);
}

/* The fused op must equal softmax_causal(q k^T / sqrt(hs)) v per head. */
Test(values, attention_fused_equals_composed) {
    int B = 2, Tn = 45, C = 12, nh = 3, hs = C / nh; /* two row blocks, the second a tail */
    Rng r;
    rng_seed(&r, 7);
    Tensor *qkv = tensor_new(&T, 3, (int[]){B, Tn, 3 * C});
    for (size_t i = 0; i < qkv->numel; i++) qkv->data[i] = rng_normal(&r);
    Tensor *o = op_attention(&T, qkv, nh, nh);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < nh; h++) {
            Tensor *q = tensor_new(&T, 2, (int[]){Tn, hs}), *k = tensor_new(&T, 2, (int[]){Tn, hs}),
                   *v = tensor_new(&T, 2, (int[]){Tn, hs});
            for (int i = 0; i < Tn; i++)
                for (int d = 0; d < hs; d++) {
                    const float *row = qkv->data + ((size_t)b * Tn + i) * 3 * C + h * hs + d;
                    q->data[i * hs + d] = row[0];
                    k->data[i * hs + d] = row[C];
                    v->data[i * hs + d] = row[2 * C];
                }
            Tensor *s = op_scale(&T, op_matmul(&T, q, op_transpose(&T, k, 0, 1)), 1.0f / sqrtf((float)hs));
            Tensor *ref = op_matmul(&T, op_softmax(&T, s, true), v);
            for (int i = 0; i < Tn; i++)
                for (int d = 0; d < hs; d++)
                    cr_assert_float_eq(o->data[((size_t)b * Tn + i) * C + h * hs + d], ref->data[i * hs + d], 1e-5,
                                       "b%d h%d t%d d%d", b, h, i, d);
        }
}

Test(values, no_grad_records_nothing) {
    Params p;
    params_init(&p);
    Tensor *w = params_add(&p, "w", 2, (int[]){3, 3});
    params_finalize(&p);
    Tensor *x = tensor_zeros(&T, 2, (int[]){2, 3});
    tape_set_grad(&T, false);
    Tensor *y = op_linear(&T, x, w, NULL);
    cr_assert_eq(T.n, 0);
    cr_assert(!y->requires_grad);
    tape_set_grad(&T, true);
    y = op_linear(&T, x, w, NULL);
    cr_assert_eq(T.n, 1);
    cr_assert(y->requires_grad);
    params_free(&p);
}

Test(values, param_grads_accumulate_until_zeroed) {
    Params p;
    params_init(&p);
    Tensor *w = params_add(&p, "w", 1, (int[]){3});
    params_finalize(&p);
    for (int i = 0; i < 3; i++) w->data[i] = (float)i;
    for (int rep = 0; rep < 2; rep++) {
        tape_reset(&T);
        tape_backward(&T, op_sum(&T, op_mul(&T, w, w)));
    }
    for (int i = 0; i < 3; i++) cr_assert_float_eq(w->grad[i], 4.0f * i, 1e-6); /* 2 * d(w^2) */
    params_zero_grad(&p);
    cr_assert_float_eq(w->grad[2], 0.0f, 0);
    params_free(&p);
}

/* Once a step with fixed shapes has run, later steps allocate nothing. */
Test(values, arena_steady_state) {
    Params p;
    params_init(&p);
    Tensor *w = params_add(&p, "w", 2, (int[]){64, 32});
    params_finalize(&p);
    Tape t;
    tape_init(&t, 4096); /* deliberately small: the first step must grow it */
    size_t after_first = 0;
    for (int step = 0; step < 5; step++) {
        tape_reset(&t);
        Tensor *x = tensor_zeros(&t, 3, (int[]){4, 16, 32});
        Tensor *y = op_gelu(&t, op_linear(&t, x, w, NULL));
        tape_backward(&t, op_mean(&t, y));
        if (step == 1) after_first = t.arena.n_chunk_allocs;
    }
    cr_assert_eq(t.arena.n_chunk_allocs, after_first, "arena allocated again after the first step");
    tape_free(&t);
    params_free(&p);
}

/* The vectorised exp and tanh against libm, and NaN kept out of the integer
 * conversion (a NaN GELU input must give NaN, not undefined behaviour). */
#include "autograd/fastmath.h"
Test(values, fast_math_against_libm) {
    double worst_e = 0, worst_t = 0;
    for (float x = -87.0f; x < 88.0f; x += 0.01737f) {
        double e = fabs(fast_expf(x) - exp(x)) / exp(x);
        if (e > worst_e) worst_e = e;
        double t = fabs(fast_tanhf(x) - tanh(x));
        if (t > worst_t) worst_t = t;
    }
    cr_assert_lt(worst_e, 3e-7, "fast_expf relative error %.3g", worst_e);
    cr_assert_lt(worst_t, 2e-7, "fast_tanhf absolute error %.3g", worst_t);
    Tensor *x = tensor_from(&T, 1, (int[]){2}, (float[]){NAN, 1.0f});
    Tensor *y = op_gelu(&T, x);
    cr_assert(isnan(y->data[0]));
    cr_assert_float_eq(y->data[1], 0.841192f, 1e-5);
}
