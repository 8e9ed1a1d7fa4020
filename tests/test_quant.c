/* test_quant.c: the quantizer and fake quantization: hand-computed values for
 * every granularity and for asymmetric ranges, idempotence, all-zero and
 * constant groups, the three estimators' gradients (LSQ's scale gradient
 * against finite differences of its surrogate), observers on known inputs, a
 * short QAT fine-tune whose loss falls, and bad quant configs. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/ptq.h"
#include "quant/qat.h"
#include "testutil.h"
#include "train/trainer.h"

static Tape T;
static void setup(void) { tape_init(&T, 1 << 16); }
static void teardown(void) { tape_free(&T); }
TestSuite(quant, .init = setup, .fini = teardown);

static void expect_fq(const QuantSpec *s, int rows, int cols, const float *x, const float *want) {
    Tensor *in = tensor_from(&T, 2, (int[]){rows, cols}, x);
    Tensor *y = op_fake_quant(&T, in, s, EST_STE, NULL, NULL);
    for (int i = 0; i < rows * cols; i++) cr_assert_float_eq(y->data[i], want[i], 1e-6, "element %d: %.7f vs %.7f", i, y->data[i], want[i]);
}

Test(quant, per_tensor_int4_symmetric_by_hand) {
    /* scale = 1.75/7 = 0.25 (exact); 0.1 -> 0.4 -> 0; -0.625 -> -2.5 -> -2 and 0.375 -> 1.5 -> 2
     * (ties to even); 0.26 -> 1.04 -> 1 */
    QuantSpec s = {.bits = 4, .sym = true, .gran = QG_TENSOR};
    float x[] = {0.1f, -0.625f, 1.75f, 0.26f, 0.375f};
    float w[] = {0.0f, -0.5f, 1.75f, 0.25f, 0.5f};
    expect_fq(&s, 1, 5, x, w);
    cr_assert_eq(quant_qmin(&s), -7);
    cr_assert_eq(quant_qmax(&s), 7);
}

Test(quant, per_channel_int8_by_hand) {
    /* row 0: scale 2/127, 0.5 -> round(31.75) = 32; row 1: scale 0.03/127, 0.01 -> round(42.33) = 42 */
    QuantSpec s = {.bits = 8, .sym = true, .gran = QG_CHANNEL};
    float x[] = {1.0f, -2.0f, 0.5f, 0.03f, 0.01f, -0.02f};
    float w[] = {64 * 2.0f / 127, -2.0f, 32 * 2.0f / 127, 0.03f, 42 * 0.03f / 127, -85 * 0.03f / 127};
    expect_fq(&s, 2, 3, x, w);
}

Test(quant, per_group_int2_by_hand) {
    /* groups of 2, ternary codes {-1,0,1}: [1,2]: scale 2, 0.5 -> 0 (half to even), 1 -> 1;
     * [3,-4]: scale 4, 0.75 -> 1, -1 -> -1 */
    QuantSpec s = {.bits = 2, .sym = true, .gran = QG_GROUP, .group = 2};
    float x[] = {1, 2, 3, -4};
    float w[] = {0, 2, 4, -4};
    expect_fq(&s, 1, 4, x, w);
}

Test(quant, partial_last_group_by_hand) {
    /* groups of 3 over rows of 4: [1,2,3] scale 3 -> codes 0,1,1 -> 0,3,3; the
     * partial group [-4] has its own scale 4 -> -4; two rows, 2 x 2 scales */
    QuantSpec s = {.bits = 2, .sym = true, .gran = QG_GROUP, .group = 3};
    cr_assert_eq(quant_n_scales(&s, 2, 4), 4u);
    cr_assert_eq(quant_scale_index(&s, 4, 1, 3), 3u);
    float x[] = {1, 2, 3, -4, 0.5f, -0.25f, 0.25f, 0.1f};
    float w[] = {0, 3, 3, -4, 0.5f, 0, 0, 0.1f};
    expect_fq(&s, 2, 4, x, w);
}

/* The full range (narrow_range false) adds the code -2^(b-1): int3 [-4, 3],
 * int2 [-2, 1]. Min-max: the smallest scale that holds both ends. */
Test(quant, full_range_int3_and_int2_by_hand) {
    QuantSpec s3 = {.bits = 3, .sym = true, .full = true, .gran = QG_TENSOR};
    cr_assert_eq(quant_qmin(&s3), -4);
    cr_assert_eq(quant_qmax(&s3), 3);
    /* [-1, 0.5]: scale max(1/4, 0.5/3) = 0.25; -1 -> -4, 0.5 -> 2, 0.3 -> 1.2 -> 1, -0.875 -> -3.5 -> -4 (even) */
    float x[] = {-1.0f, 0.5f, 0.3f, -0.875f, 0.1f};
    float w[] = {-1.0f, 0.5f, 0.25f, -1.0f, 0.0f};
    expect_fq(&s3, 1, 5, x, w);
    /* the positive end the wider: [-0.3, 0.9] gives 0.9/3 = 0.3, -0.3 -> -1 */
    float sc;
    quant_params_from_range(&s3, -0.3f, 0.9f, &sc, NULL);
    cr_assert_float_eq(sc, 0.3f, 1e-7);
    /* int2 gets four levels {-2, -1, 0, 1} where the narrow grid is ternary:
     * [-2, 1] scale 1 exactly; 0.4 -> 0, -1.6 -> -2, 0.6 -> 1 */
    QuantSpec s2 = {.bits = 2, .sym = true, .full = true, .gran = QG_GROUP, .group = 4};
    float y[] = {-2.0f, 1.0f, 0.4f, -1.6f, 0.6f, -0.5f, 0.5f, 0.25f};
    /* second group [-0.5, 0.6]: scale max(0.5/2, 0.6/1) = 0.6: 0.6 -> 1, -0.5 -> -0.83 -> -1, 0.5 -> 1, 0.25 -> 0 */
    float wy[] = {-2.0f, 1.0f, 0.0f, -2.0f, 0.6f, -0.6f, 0.6f, 0.0f};
    expect_fq(&s2, 1, 8, y, wy);
    cr_assert_eq(quant_qmin(&s2), -2);
    /* the narrow grid of the same bits is unchanged */
    QuantSpec n3 = {.bits = 3, .sym = true, .gran = QG_TENSOR};
    cr_assert_eq(quant_qmin(&n3), -3);
}

Test(quant, asymmetric_int2_by_hand) {
    /* [-1, 2]: scale (2 - -1)/3 = 1, zero point round(1/1) = 1, codes 0..3:
     * -1 -> 0 -> -1; 0 -> 1 -> 0; 0.5 -> 0+1 -> 0; 2 -> 3 -> 2 */
    QuantSpec s = {.bits = 2, .sym = false, .gran = QG_TENSOR};
    float x[] = {-1, 0, 0.5f, 2};
    float w[] = {-1, 0, 0, 2};
    expect_fq(&s, 1, 4, x, w);
    /* all-positive values: the range is widened to include zero */
    float y[] = {1, 2, 3, 3};
    float wy[] = {1, 2, 3, 3};
    expect_fq(&s, 1, 4, y, wy);
}

Test(quant, idempotent_every_spec) {
    QuantSpec specs[] = {{8, true, QG_TENSOR, 0}, {4, true, QG_CHANNEL, 0}, {3, true, QG_GROUP, 4},
                         {2, true, QG_GROUP, 8}, {4, false, QG_GROUP, 4}, {8, false, QG_CHANNEL, 0},
                         {.bits = 3, .sym = true, .full = true, .gran = QG_GROUP, .group = 4},
                         {.bits = 2, .sym = true, .full = true, .gran = QG_CHANNEL}};
    Rng r;
    rng_seed(&r, 3);
    float x[5 * 16], a[5 * 16], b[5 * 16], sc[80], zp[80];
    for (int i = 0; i < 80; i++) x[i] = rng_normal(&r);
    for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++) {
        QuantSpec *s = &specs[k];
        quant_minmax(s, x, 5, 16, sc, zp);
        quant_fake(s, x, 5, 16, sc, s->sym ? NULL : zp, a);
        quant_fake(s, a, 5, 16, sc, s->sym ? NULL : zp, b); /* same grid: exactly the same values */
        cr_assert_eq(memcmp(a, b, sizeof a), 0, "spec %zu not idempotent", k);
        /* and with scales recomputed from the quantized tensor, within rounding of the scale */
        float sc2[80], zp2[80];
        quant_minmax(s, a, 5, 16, sc2, zp2);
        quant_fake(s, a, 5, 16, sc2, s->sym ? NULL : zp2, b);
        for (int i = 0; i < 80; i++) cr_assert_float_eq(a[i], b[i], 1e-6 * fabsf(a[i]) + 1e-7, "spec %zu elem %d", k, i);
    }
}

Test(quant, zero_and_constant_groups) {
    QuantSpec s = {.bits = 4, .sym = true, .gran = QG_GROUP, .group = 4};
    float x[] = {0, 0, 0, 0, 0.3f, 0.3f, 0.3f, 0.3f}, sc[2], out[8];
    quant_minmax(&s, x, 1, 8, sc, NULL);
    cr_assert_eq(sc[0], 0.0f); /* an all-zero group has scale 0 */
    quant_fake(&s, x, 1, 8, sc, NULL, out);
    for (int i = 0; i < 4; i++) cr_assert_eq(out[i], 0.0f);
    for (int i = 4; i < 8; i++) cr_assert_float_eq(out[i], 0.3f, 1e-7);
    QuantSpec a = {.bits = 4, .sym = false, .gran = QG_GROUP, .group = 4};
    float za[2];
    quant_minmax(&a, x, 1, 8, sc, za);
    quant_fake(&a, x, 1, 8, sc, za, out);
    for (int i = 0; i < 8; i++) cr_assert(isfinite(out[i]));
    for (int i = 4; i < 8; i++) cr_assert_float_eq(out[i], 0.3f, 1e-7);
}

/* ---- estimators ---- */

static void grads(Estimator est, const QuantSpec *s, const float *x, int n, float scale_v, float *dx, float *ds) {
    Params p;
    params_init(&p);
    Tensor *xt = params_add(&p, "x", 2, (int[]){1, n});
    Tensor *st = params_add(&p, "s", 1, (int[]){1});
    params_finalize(&p);
    memcpy(xt->data, x, (size_t)n * sizeof(float));
    st->data[0] = scale_v;
    tape_reset(&T);
    Tensor *y = op_fake_quant(&T, xt, s, est, st, NULL);
    float *seed = malloc((size_t)n * sizeof(float));
    for (int i = 0; i < n; i++) seed[i] = 1.0f + 0.1f * (float)i; /* distinct upstream grads */
    tape_backward_seed(&T, y, seed);
    memcpy(dx, xt->grad, (size_t)n * sizeof(float));
    *ds = st->grad[0];
    free(seed);
    params_free(&p);
}

Test(quant, ste_and_clipped_gradients) {
    /* scale 0.1 with int4 (codes -7..7): 0.9 and -1.2 fall outside */
    QuantSpec s = {.bits = 4, .sym = true, .gran = QG_TENSOR};
    float x[] = {0.05f, 0.9f, -0.33f, -1.2f, 0.7f}, dx[5], ds;
    grads(EST_STE, &s, x, 5, 0.1f, dx, &ds);
    for (int i = 0; i < 5; i++) cr_assert_float_eq(dx[i], 1.0f + 0.1f * i, 1e-6);
    cr_assert_eq(ds, 0.0f); /* only lsq moves the scale */
    grads(EST_CLIPPED, &s, x, 5, 0.1f, dx, &ds);
    float want[] = {1.0f, 0.0f, 1.2f, 0.0f, 1.4f};
    for (int i = 0; i < 5; i++) cr_assert_float_eq(dx[i], want[i], 1e-6, "clipped dx[%d]", i);
}

/* The LSQ surrogate: x_hat(s) = s * clamp(x/s + c, qmin, qmax) with the
 * rounding offset c = round(x/s0) - x/s0 held fixed; its derivative at s0 is
 * what LSQ uses, before the gradient scale 1/sqrt(N * qmax). */
static void lsq_scale_gradient_check(bool full) {
    QuantSpec s = {.bits = 3, .sym = true, .full = full, .gran = QG_TENSOR};
    int n = 10;
    float x[] = {0.05f, 0.41f, -0.33f, -1.2f, 0.7f, 0.18f, -0.52f, 0.95f, -0.07f, -0.75f}, dx[10], ds;
    float s0 = 0.2f;
    grads(EST_LSQ, &s, x, n, s0, dx, &ds);
    int qmin = quant_qmin(&s), qmax = quant_qmax(&s);
    double c[10];
    for (int i = 0; i < n; i++) c[i] = rint(x[i] / s0) - x[i] / s0;
    double h = 1e-4, fp = 0, fm = 0;
    for (int i = 0; i < n; i++) {
        double g = 1.0 + 0.1 * i;
        double up = x[i] / (s0 + h) + c[i], um = x[i] / (s0 - h) + c[i];
        bool lo = rint(x[i] / s0) < qmin, hi = rint(x[i] / s0) > qmax; /* clipping decided at s0 */
        up = lo ? qmin : hi ? qmax : up;
        um = lo ? qmin : hi ? qmax : um;
        fp += g * (s0 + h) * up;
        fm += g * (s0 - h) * um;
    }
    double num = (fp - fm) / (2 * h);
    double gscale = 1.0 / sqrt((double)n * qmax);
    cr_assert_float_eq(ds, num * gscale, 1e-4, "%s: lsq ds %.6f vs surrogate %.6f", full ? "full" : "narrow", ds,
                       num * gscale);
    /* x: clipped straight-through (0.95/0.2 = 4.75 -> 5 > 3 and -1.2 clip) */
    cr_assert_eq(dx[3], 0.0f);
    cr_assert_eq(dx[7], 0.0f);
    cr_assert_float_eq(dx[0], 1.0f, 1e-6);
    /* -0.75/0.2 = -3.75 -> -4: inside the full range, clipped on the narrow one */
    cr_assert_float_eq(dx[9], full ? 1.9f : 0.0f, 1e-6);
}
Test(quant, lsq_scale_gradient_matches_surrogate) {
    lsq_scale_gradient_check(false);
    lsq_scale_gradient_check(true);
}

Test(quant, lsq_learned_zero_point_gradient) {
    /* asymmetric 2-bit, scale 1, zero point 1: codes 0..3 cover [-1, 2]; 5 and -3 clip,
     * and d x_hat / d zp is -scale for a clipped element, 0 inside */
    QuantSpec s = {.bits = 2, .sym = false, .gran = QG_TENSOR};
    Params p;
    params_init(&p);
    Tensor *xt = params_add(&p, "x", 2, (int[]){1, 4});
    Tensor *st = params_add(&p, "s", 1, (int[]){1});
    Tensor *zt = params_add(&p, "z", 1, (int[]){1});
    params_finalize(&p);
    float x[] = {0.2f, 5.0f, -3.0f, 1.0f};
    memcpy(xt->data, x, sizeof x);
    st->data[0] = 1.0f;
    zt->data[0] = 1.2f; /* used rounded: 1 */
    Tensor *y = op_fake_quant(&T, xt, &s, EST_LSQ, st, zt);
    float want[] = {0.0f, 2.0f, -1.0f, 1.0f};
    for (int i = 0; i < 4; i++) cr_assert_float_eq(y->data[i], want[i], 1e-6);
    tape_backward_seed(&T, y, (float[]){1, 1, 1, 1});
    float gscale = 1.0f / sqrtf(4.0f * 3.0f);
    cr_assert_float_eq(zt->grad[0], -2.0f * gscale, 1e-6);
    params_free(&p);
}

/* ---- observers ---- */

Test(quant, observers_on_known_inputs) {
    QuantSpec s8 = {.bits = 8, .sym = true, .gran = QG_TENSOR};
    Observer o;
    float sc, zp;
    observer_init(&o, OBS_MINMAX, 0, 1);
    observer_update(&o, (float[]){-1, 0.5f}, 2);
    observer_update(&o, (float[]){3, -0.2f}, 2);
    cr_assert_eq(o.lo, -1.0f);
    cr_assert_eq(o.hi, 3.0f);
    observer_params(&o, &s8, &sc, &zp);
    cr_assert_float_eq(sc, 3.0f / 127, 1e-9);
    observer_free(&o);

    observer_init(&o, OBS_EMA, 0, 1);
    observer_update(&o, (float[]){-1, 1}, 2);
    observer_update(&o, (float[]){-3, 3}, 2);
    cr_assert_float_eq(o.lo, -1.0f + OBS_EMA_C * (-2.0f), 1e-6);
    cr_assert_float_eq(o.hi, 1.0f + OBS_EMA_C * 2.0f, 1e-6);
    observer_free(&o);

    /* 1..10000: the 99th percentile of |x| is 9900.01 (linear interpolation) */
    float *v = malloc(10000 * sizeof(float));
    for (int i = 0; i < 10000; i++) v[i] = (float)(i + 1) * (i % 2 ? 1 : -1);
    observer_init(&o, OBS_PERCENTILE, 99.0f, 1);
    observer_update(&o, v, 10000);
    observer_params(&o, &s8, &sc, &zp);
    cr_assert_float_eq(sc * 127, 9900.01f, 0.05f);
    observer_free(&o);

    /* MSE: Gaussian values plus one huge outlier; 4-bit min-max would waste the grid on it */
    QuantSpec s4 = {.bits = 4, .sym = true, .gran = QG_TENSOR};
    Rng r;
    rng_seed(&r, 9);
    for (int i = 0; i < 10000; i++) v[i] = rng_normal(&r);
    v[17] = 40.0f;
    observer_init(&o, OBS_MSE, 0, 1);
    observer_update(&o, v, 10000);
    observer_params(&o, &s4, &sc, &zp);
    cr_assert_lt(sc * 7, 40.0f * 0.9f, "mse kept the outlier's range: %.3f", sc * 7);
    observer_free(&o);
    free(v);
}

/* ---- QAT end to end on a tiny model ---- */

static char *g_dir, *g_corpus;
static void write_corpus(void) {
    g_dir = test_tmpdir();
    g_corpus = test_write(g_dir, "corpus.txt", test_corpus(40000, 5));
}

static char *run_dir(const char *name) {
    char *p = test_keep(xmalloc(strlen(g_dir) + strlen(name) + 2));
    sprintf(p, "%s/%s", g_dir, name);
    return p;
}

static double json_field(const char *text, const char *key) {
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = strstr(text, k);
    return p ? atof(p + strlen(k)) : NAN;
}

static void tiny(Config *c, const char *out, int iters, const char *extra) {
    test_tiny_config(c, g_corpus, out, iters, extra);
}

Test(quant, qat_fine_tune_loss_falls_and_eval_reproduces, .init = write_corpus) {
    Config f, q;
    char *fdir = run_dir("float"), *qdir = run_dir("qat");
    tiny(&f, fdir, 80, "");
    TrainOptions o = {.quiet = true};
    train_run(&f, "float", &o);
    char extra[2048];
    snprintf(extra, sizeof extra,
             "quant: {weight: {bits: 2, granularity: group, group_size: 16}, estimator: lsq,\n"
             "        activation: {bits: 8, granularity: tensor, observer: minmax}, init_from: %s/checkpoint.h5,\n"
             "        deploy: false}\n",
             fdir);
    tiny(&q, qdir, 80, extra);
    config_set(&q, "train.lr", "3e-3", "test");
    config_set(&q, "train.warmup_iters", "0", "test");
    train_run(&q, "qat", &o);
    char path[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", qdir);
    char *m = test_slurp(path, NULL);
    double first = json_field(m, "loss");
    snprintf(path, sizeof path, "%s/summary.json", qdir);
    double val = json_field(test_slurp(path, NULL), "val_loss");
    /* 2-bit weights start far above the float model; fine-tuning recovers much of it */
    cr_assert_lt(val, first - 0.1, "QAT val loss %.3f did not fall below the first QAT loss %.3f", val, first);
    /* the checkpoint holds scales and the quant config; eval gives the same fake-quant loss */
    snprintf(path, sizeof path, "%s/checkpoint.h5", qdir);
    GPT g;
    Config c2;
    Vocab v;
    model_load(path, &g, &c2, &v);
    cr_assert_eq(c2.quant.w_bits, 2);
    cr_assert(params_find(&g.params, "blocks.0.mlp.fc.weight_scale"));
    cr_assert(params_find(&g.params, "blocks.0.attn.qkv.act_scale")->data[0] > 0.0f);
    cr_assert_eq(g.n_q, 4);
    gpt_free(&g);
    float again = eval_checkpoint(path, NULL).val_loss;
    cr_assert_float_eq(again, val, 1e-5, "eval %.6f vs training's %.6f", again, val);
}

/* ---- bad quant configs ---- */

static const char *g_bad_key, *g_bad_val;
static void set_bad(void *p) {
    Config *c = p;
    config_set(c, g_bad_key, g_bad_val, "q.yaml");
    config_validate(c, "q.yaml");
    GPTConfig gc = {.vocab_size = 10, .n_layer = 2, .n_head = 2, .n_embd = 48, .block_size = 8};
    GPT g;
    gpt_build(&g, &gc, &c->quant, "q.yaml");
    gpt_free(&g);
}

static void expect_bad(const char *key, const char *val, const char *want1, const char *want2) {
    Config c;
    config_defaults(&c);
    config_set(&c, "quant.weight.bits", "4", "test");
    char msg[512];
    g_bad_key = key, g_bad_val = val;
    cr_assert(capture_failure(set_bad, &c, msg, sizeof msg), "%s=%s accepted", key, val);
    cr_assert(strstr(msg, want1), "'%s' missing from: %s", want1, msg);
    if (want2) cr_assert(strstr(msg, want2), "'%s' missing from: %s", want2, msg);
}

Test(quant, bad_quant_configs) {
    expect_bad("quant.weight.bits", "9", "quant.weight.bits", "[0, 8]");
    expect_bad("quant.weight.bits", "1", "quant.weight.bits", "2..8");
    expect_bad("quant.estimator", "magic", "quant.estimator", "ste|clipped|lsq");
    expect_bad("quant.weight.granularity", "row", "quant.weight.granularity", "tensor|channel|group");
    expect_bad("quant.layers", "blocks.*.attn.qkv,blocks.7.mlp.fc", "quant.layers: 'blocks.7.mlp.fc' matches no layer",
               "lm_head");
    expect_bad("quant.overrides.blocks.0.mlp.fcc.bits", "8", "quant.overrides.blocks.0.mlp.fcc: unknown layer", NULL);
    expect_bad("quant.overrides.lm_head.act_bits", "8", "quant.overrides.lm_head: the layer is not quantized", NULL);
    expect_bad("quant.overrides.blocks.0.mlp.fc.color", "8", "unknown override field 'color'", "act_bits");
    expect_bad("quant.kv.bits", "6", "quant.kv.bits", "0, 4 or 8");
    /* a starting scale only means something when scales are learned */
    expect_bad("quant.scale_init", "mse", "quant.scale_init", "lsq");
    expect_bad("quant.format", "iq4_xs", "quant.format", "iq4_nl");
    expect_bad("quant.weight.codebook", "lloyd", "quant.weight.codebook", "none|nf|kmeans");
}

static void bad_group(void *p) {
    Config *c = p;
    config_set(c, "quant.weight.granularity", "group", "q.yaml");
    config_set(c, "quant.weight.group_size", "64", "q.yaml");
    GPTConfig gc = {.vocab_size = 10, .n_layer = 1, .n_head = 2, .n_embd = 48, .block_size = 8};
    GPT g;
    gpt_build(&g, &gc, &c->quant, "q.yaml");
}

Test(quant, group_wider_than_input_is_refused) {
    Config c;
    config_defaults(&c);
    config_set(&c, "quant.weight.bits", "4", "test");
    char msg[512];
    cr_assert(capture_failure(bad_group, &c, msg, sizeof msg));
    cr_assert(strstr(msg, "quant.weight.group_size: 64 is more than the input dimension 48 of blocks.0.attn.qkv"),
              "got: %s", msg);
}

/* ---- distillation ---- */

/* params of a checkpoint, whole */
static float *ckpt_params(const char *path, size_t *n) {
    GPT g;
    Config c;
    Vocab v;
    model_load(path, &g, &c, &v);
    float *p = xmalloc(g.params.numel * sizeof(float));
    memcpy(p, g.params.data, g.params.numel * sizeof(float));
    *n = g.params.numel;
    gpt_free(&g);
    return p;
}

Test(quant, distillation_mixes_kl_with_cross_entropy, .init = write_corpus) {
    Config f, q;
    char *fdir = run_dir("dfloat");
    tiny(&f, fdir, 60, "");
    TrainOptions o = {.quiet = true};
    train_run(&f, "float", &o);
    const char *dirs[3] = {run_dir("d-plain"), run_dir("d-w0"), run_dir("d-w05")};
    const char *distill[3] = {"", ", distill: {weight: 0}", ", distill: {weight: 0.5, temperature: 2}"};
    for (int k = 0; k < 3; k++) {
        char extra[2048];
        snprintf(extra, sizeof extra,
                 "quant: {weight: {bits: 3, granularity: group, group_size: 16}, estimator: lsq,"
                 " init_from: %s/checkpoint.h5%s}\n", fdir, distill[k]);
        tiny(&q, dirs[k], 20, extra);
        config_set(&q, "train.lr", "3e-3", "test");
        train_run(&q, "qat", &o);
    }
    /* weight 0 is plain QAT, bit for bit */
    char path[4096];
    size_t n0, n1, n2;
    snprintf(path, sizeof path, "%s/checkpoint.h5", dirs[0]);
    float *p0 = ckpt_params(path, &n0);
    snprintf(path, sizeof path, "%s/checkpoint.h5", dirs[1]);
    float *p1 = ckpt_params(path, &n1);
    snprintf(path, sizeof path, "%s/checkpoint.h5", dirs[2]);
    float *p2 = ckpt_params(path, &n2);
    cr_assert(n0 == n1 && !memcmp(p0, p1, n0 * sizeof(float)), "distill.weight 0 changed the weights");
    cr_assert(n0 == n2 && memcmp(p0, p2, n0 * sizeof(float)), "distill.weight 0.5 trained the same weights as plain QAT");
    /* every logged step: loss = 0.5 ce + 0.5 kl, the KL positive (3-bit student, float teacher) */
    snprintf(path, sizeof path, "%s/metrics.jsonl", dirs[2]);
    char *m = test_slurp(path, NULL);
    int lines = 0;
    for (char *l = strstr(m, "\"loss\":"); l; l = strstr(l + 1, "\"loss\":")) {
        double loss = json_field(l, "loss"), ce = json_field(l, "ce"), kl = json_field(l, "kl");
        cr_assert(isfinite(ce) && kl > 0.0, "line %d: ce %g kl %g", lines, ce, kl);
        cr_assert(fabs(loss - (0.5 * ce + 0.5 * kl)) < 1e-5, "line %d: loss %.6f, ce %.6f, kl %.6f", lines, loss, ce, kl);
        lines++;
    }
    cr_assert_eq(lines, 20);
    free(p0), free(p1), free(p2), free(m);
}

/* keys set in order on int4 weights from q.yaml, then the whole config
 * validated: it must fail, its message in msg */
static const char *(*g_pairs)[2];
static int g_n_pairs;
static void set_pairs_and_validate(void *p) {
    Config *c = p;
    for (int i = 0; i < g_n_pairs; i++) config_set(c, g_pairs[i][0], g_pairs[i][1], "q.yaml");
    config_validate(c, "q.yaml");
}
static void expect_invalid(const char *(*pairs)[2], int n, char *msg, size_t cap) {
    Config c;
    config_defaults(&c);
    config_set(&c, "quant.weight.bits", "4", "test");
    g_pairs = pairs, g_n_pairs = n;
    cr_assert(capture_failure(set_pairs_and_validate, &c, msg, cap), "%s=%s accepted", pairs[n - 1][0], pairs[n - 1][1]);
}

Test(quant, distillation_needs_a_teacher) {
    const char *kv[][2] = {{"quant.distill.weight", "0.5"}};
    char msg[512];
    expect_invalid(kv, 1, msg, sizeof msg);
    cr_assert(strstr(msg, "quant.distill.weight") && strstr(msg, "quant.init_from"), "got: %s", msg);
}

/* with lsq, a model built so starts every layer at the least-squares scales, not min-max */
Test(quant, scale_init_mse_starts_at_least_squares_scales) {
    Config c;
    config_defaults(&c);
    config_set(&c, "quant.weight.bits", "2", "test");
    config_set(&c, "quant.estimator", "lsq", "test");
    config_set(&c, "quant.scale_init", "mse", "test");
    GPTConfig gc = {.vocab_size = 10, .n_layer = 1, .n_head = 2, .n_embd = 64, .block_size = 8};
    GPT g;
    gpt_build(&g, &gc, &c.quant, "q.yaml");
    Rng r;
    rng_seed(&r, 3);
    gpt_init_weights(&g, &r);
    gpt_quant_init_scales(&g);
    cr_assert_eq(g.n_q, 4);
    for (int i = 0; i < g.n_q; i++) {
        const QLayer *q = &g.qlayers[i];
        const Tensor *w = gpt_qlayer_linear(&g, q)->w;
        size_t ns = quant_n_scales(&q->w, w->shape[0], w->shape[1]), shrunk = 0;
        float *want = xmalloc(ns * sizeof(float)), *mm = xmalloc(ns * sizeof(float));
        ptq_mse_scales(&q->w, w->data, w->shape[0], w->shape[1], want, NULL);
        quant_minmax(&q->w, w->data, w->shape[0], w->shape[1], mm, NULL);
        for (size_t k = 0; k < ns; k++) {
            cr_assert_eq(q->w_scale->data[k], want[k], "%s scale %zu", q->name, k);
            shrunk += want[k] < mm[k];
        }
        cr_assert(shrunk > ns / 2, "%s: %zu of %zu scales below min-max at 2 bits", q->name, shrunk, ns);
        free(want), free(mm);
    }
    gpt_free(&g);
}

/* iq4_nl with a learned block scale: the forward is the nearest of the 16
 * levels times the half-precision scale; LSQ's scale gradient is the
 * derivative of the surrogate s * (x/s + c), c = level - x/s held at s0, or
 * s * (the outermost level) past it; x's gradient is clipped there. */
Test(quant, iq4_nl_lsq_gradients_match_the_surrogate) {
    QuantSpec s = quant_spec_of_format(QF_IQ4_NL);
    const int n = QBLOCK;
    float x[QBLOCK], dx[QBLOCK], ds, s0 = 0x1p-7f; /* exact in half precision */
    for (int i = 0; i < n; i++) x[i] = s0 * (-150.0f + 9.3f * (float)i); /* u from -150 to 138 */
    grads(EST_LSQ, &s, x, n, s0, dx, &ds);
    Tensor *xt = tensor_from(&T, 2, (int[]){1, n}, x), *st = tensor_from(&T, 1, (int[]){1}, &s0);
    Tensor *y = op_fake_quant(&T, xt, &s, EST_STE, st, NULL);
    double h = 1e-6, fp = 0, fm = 0;
    int clipped = 0;
    for (int i = 0; i < n; i++) {
        double u = x[i] / s0, g = 1.0 + 0.1 * i;
        int q = iq4nl_index((float)u);
        cr_assert_eq(y->data[i], s0 * (float)IQ4NL_LEVELS[q], "x[%d]: %g is not the nearest level %d", i, y->data[i], q);
        bool lo = u < IQ4NL_LEVELS[0], hi = u > IQ4NL_LEVELS[15];
        double c = IQ4NL_LEVELS[q] - u;
        double up = lo || hi ? IQ4NL_LEVELS[q] : x[i] / (s0 + h) + c, um = lo || hi ? IQ4NL_LEVELS[q] : x[i] / (s0 - h) + c;
        fp += g * (s0 + h) * up;
        fm += g * (s0 - h) * um;
        cr_assert_float_eq(dx[i], lo || hi ? 0.0f : (float)g, 1e-6, "dx[%d] (u = %g)", i, u);
        clipped += lo || hi;
    }
    cr_assert_eq(clipped, 6, "three values below -127 and three above 113");
    double num = (fp - fm) / (2 * h), gscale = 1.0 / sqrt((double)n * IQ4NL_LEVELS[15]);
    cr_assert_float_eq(ds, num * gscale, 1e-3 * fabs(num * gscale) + 1e-5, "lsq ds %.6f vs surrogate %.6f", ds,
                       num * gscale);
    /* without a learned scale, fake quantization is ggml's quantizer */
    float ref[QBLOCK];
    block_fake(QF_IQ4_NL, x, ref, NULL, NULL, NULL);
    y = op_fake_quant(&T, xt, &s, EST_STE, NULL, NULL);
    cr_assert(!memcmp(y->data, ref, sizeof ref), "fake quantization without a scale is not ggml's block");
}

/* The inverse of the standard normal CDF, by bisection on erfc (double). */
static double normal_ppf(double p) {
    double lo = -10, hi = 10;
    for (int i = 0; i < 200; i++) {
        double mid = 0.5 * (lo + hi);
        if (0.5 * erfc(-mid / sqrt(2.0)) < p) lo = mid;
        else hi = mid;
    }
    return 0.5 * (lo + hi);
}

/* The normal-float levels are QLoRA's construction at every width, and NF4
 * is QLoRA's published table. */
Test(quant, nf_levels_are_normal_quantiles) {
    static const float QLORA_NF4[16] = {-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
                                        -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
                                        0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f,
                                        0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
                                        0.7229568362236023f, 1.0f};
    for (int bits = 2; bits <= 8; bits++) {
        if (bits > 4 && bits < 8) continue; /* 8: NF8, the same construction */
        QuantSpec s = {.bits = bits, .sym = true, .gran = QG_CHANNEL, .cb = QCB_NF};
        int n;
        const float *lv = quant_levels(&s, &n);
        cr_assert(lv && n == 1 << bits);
        /* 2^(b-1) quantiles above zero, 2^(b-1) - 1 below, from p = offset down to 1/2, in ascending order */
        double off = 0.5 * ((1.0 - 1.0 / (2.0 * (n - 1))) + (1.0 - 1.0 / (2.0 * n))), want[256];
        int k = 0, h = n / 2;
        for (int i = 0; i < h - 1; i++) want[k++] = -normal_ppf(off + (0.5 - off) * i / (h - 1));
        want[k++] = 0.0;
        for (int i = h - 1; i >= 0; i--) want[k++] = normal_ppf(off + (0.5 - off) * i / h);
        double top = want[n - 1];
        for (int i = 0; i < n; i++) {
            cr_assert(fabs(lv[i] - want[i] / top) < 1e-6, "nf%d level %d: %.9f, quantiles give %.9f", bits, i, lv[i],
                      want[i] / top);
            if (bits == 4) cr_assert(fabsf(lv[i] - QLORA_NF4[i]) < 1e-6f, "nf4 level %d: %.9f, QLoRA's %.9f", i, lv[i], QLORA_NF4[i]);
            if (i) cr_assert_gt(lv[i], lv[i - 1]);
        }
    }
    QuantSpec u = {.bits = 3, .sym = true, .gran = QG_CHANNEL};
    int n;
    cr_assert_null(quant_levels(&u, &n), "the even grid has no table");
    u.cb = QCB_NF, u.bits = 6;
    cr_assert_null(quant_levels(&u, &n), "no codebook at 6 bits");
}

/* nf3 per channel by hand: the scale is max |x|, each value the nearest
 * level times it (ties to the upper level); LSQ's gradients follow the
 * nearest level's surrogate. */
Test(quant, nf3_by_hand_and_its_lsq_gradients) {
    QuantSpec s = {.bits = 3, .sym = true, .gran = QG_CHANNEL, .cb = QCB_NF};
    int n;
    const float *lv = quant_levels(&s, &n);
    float x[6] = {2.0f, -2.0f, 0.5f, -0.7f, 0.0f, 2.0f * (lv[4] + lv[5]) / 2.0f}; /* the last one a tie */
    float want[6];
    for (int i = 0; i < 6; i++) {
        int best = 0;
        for (int k = 1; k < n; k++)
            if (fabsf(x[i] / 2.0f - lv[k]) <= fabsf(x[i] / 2.0f - lv[best])) best = k; /* <=: ties to the upper */
        want[i] = 2.0f * lv[best];
    }
    expect_fq(&s, 1, 6, x, want);
    cr_assert_float_eq(want[5], 2.0f * lv[5], 1e-6, "a tie goes to the upper level");
    /* LSQ: d x_hat / d s = level - x/s inside, the outermost level past it */
    float xs[5] = {0.05f, 0.41f, -0.33f, -1.2f, 0.95f}, dx[5], ds, s0 = 0.8f;
    grads(EST_LSQ, &s, xs, 5, s0, dx, &ds);
    double want_ds = 0;
    for (int i = 0; i < 5; i++) {
        double u = xs[i] / s0, g = 1.0 + 0.1 * i;
        bool out = u < lv[0] || u > lv[n - 1];
        want_ds += g * (u < lv[0] ? lv[0] : u > lv[n - 1] ? lv[n - 1] : lv[quant_level_index(lv, n, (float)u)] - u);
        cr_assert_float_eq(dx[i], out ? 0.0f : (float)g, 1e-6, "dx[%d]", i);
    }
    cr_assert_float_eq(ds, want_ds / sqrt(5.0), 1e-5, "lsq ds %.6f vs %.6f", ds, want_ds / sqrt(5.0));
    cr_assert_eq(dx[3], 0.0f, "-1.2 / 0.8 is past the lowest level");
}

/* Each key=value of kv, set after base_key=base_val (and bits 3), must fail
 * validation with one message naming q.yaml and want. */
static const char *g_base_key, *g_base_val, *g_cb_key, *g_cb_val;
static void set_both(void *p) {
    Config *c = p;
    config_set(c, g_base_key, g_base_val, "q.yaml");
    config_set(c, g_cb_key, g_cb_val, "q.yaml");
    config_validate(c, "q.yaml");
}
static void expect_contradictions(const char *base_key, const char *base_val, const char *(*kv)[2], size_t n,
                                  const char *want) {
    for (size_t i = 0; i < n; i++) {
        Config c;
        config_defaults(&c);
        config_set(&c, "quant.weight.bits", "3", "test");
        g_base_key = base_key, g_base_val = base_val, g_cb_key = kv[i][0], g_cb_val = kv[i][1];
        char msg[512];
        cr_assert(capture_failure(set_both, &c, msg, sizeof msg), "%s=%s accepted with %s=%s", kv[i][0], kv[i][1],
                  base_key, base_val);
        cr_assert(strstr(msg, "q.yaml") && strstr(msg, want), "got: %s", msg);
    }
}

/* a codebook is symmetric, 2..4 or 8 bits, per channel or group, not a block format */
Test(quant, codebook_contradictions_are_refused) {
    const char *kv[][2] = {{"quant.weight.bits", "6"}, {"quant.weight.symmetric", "false"},
                           {"quant.weight.granularity", "tensor"}, {"quant.format", "q4_0"}};
    expect_contradictions("quant.weight.codebook", "nf", kv, sizeof kv / sizeof kv[0], "quant.weight.codebook");
}

/* the full range is the symmetric even grid's, at 2..4 bits */
Test(quant, full_range_contradictions_are_refused) {
    const char *kv[][2] = {{"quant.weight.bits", "8"}, {"quant.weight.symmetric", "false"},
                           {"quant.weight.codebook", "nf"}, {"quant.format", "q4_0"}};
    expect_contradictions("quant.weight.narrow_range", "false", kv, sizeof kv / sizeof kv[0], "quant.weight.narrow_range");
}

/* kmeans tables: the fake quantization of a table in any order is the
 * nearest of its levels (sorted) times the scale; each level's gradient is
 * the sum of scale x the gradients of its weights, checked against finite
 * differences of the loss (the weights sit well inside their cells, so a
 * small move of a level changes no assignment); a frozen table gets none and
 * equals plain nearest-level fake quantization. */
Test(quant, kmeans_table_gradient_against_finite_differences) {
    /* unsorted on purpose, and on the 1/127 grid, so the levels are used as they are */
    const float table0[8] = {39 / 127.0f, -114 / 127.0f, 6 / 127.0f, 79 / 127.0f, -57 / 127.0f, 1.0f, -23 / 127.0f, -3 / 127.0f};
    enum { R = 3, C = 16, N = R * C };
    float x[N], g[N], sc0[R * 2] = {0.5f, 0.8f, 1.3f, 0.25f, 0.9f, 0.6f};
    QuantSpec s = {.bits = 3, .sym = true, .gran = QG_GROUP, .group = 8, .cb = QCB_KMEANS};
    for (int i = 0; i < N; i++) { /* level (5 i mod 8) plus a small offset, times the group's scale */
        float lvl = table0[(5 * i) % 8], sc = sc0[(i / C) * 2 + (i % C) / 8];
        x[i] = sc * (lvl + 0.01f * (float)((i % 5) - 2));
        g[i] = 0.3f + 0.07f * (float)((i * 7) % 11) - 0.4f * (float)(i % 2);
    }
    Params p;
    params_init(&p);
    Tensor *xt = params_add(&p, "x", 2, (int[]){R, C}), *st = params_add(&p, "s", 1, (int[]){R * 2});
    Tensor *tt = params_add(&p, "table", 1, (int[]){8});
    params_finalize(&p);
    memcpy(xt->data, x, sizeof x), memcpy(st->data, sc0, sizeof sc0), memcpy(tt->data, table0, sizeof table0);
    tape_reset(&T);
    Tensor *y = op_fake_quant_table(&T, xt, &s, EST_LSQ, st, tt);
    float sorted[8];
    memcpy(sorted, table0, sizeof sorted);
    for (int a = 0; a < 8; a++)
        for (int b = a + 1; b < 8; b++)
            if (sorted[b] < sorted[a]) { float t = sorted[a]; sorted[a] = sorted[b], sorted[b] = t; }
    QuantSpec ss = s;
    ss.lut = sorted;
    float want[N];
    quant_fake(&ss, x, R, C, sc0, NULL, want);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(y->data[i], want[i], "x_hat[%d] %g, nearest sorted level %g", i, y->data[i], want[i]);
        float sc = sc0[(i / C) * 2 + (i % C) / 8];
        cr_assert_float_eq(y->data[i], sc * table0[(5 * i) % 8], 1e-6, "x[%d] sits at its level", i);
    }
    tape_backward_seed(&T, y, g);
    for (int j = 0; j < 8; j++) {
        double fd = 0.0, eps = 1e-3;
        for (int sgn = -1; sgn <= 1; sgn += 2) {
            float tp[8];
            memcpy(tp, table0, sizeof tp);
            tp[j] += (float)(sgn * eps);
            ss.lut = tp;
            for (int a = 0; a < 8; a++) /* sorted again for the reference quantizer */
                for (int b = a + 1; b < 8; b++)
                    if (tp[b] < tp[a]) { float t = tp[a]; tp[a] = tp[b], tp[b] = t; }
            float yq[N];
            quant_fake(&ss, x, R, C, sc0, NULL, yq);
            double l = 0.0;
            for (int i = 0; i < N; i++) l += (double)g[i] * yq[i];
            fd += sgn * l / (2.0 * eps);
        }
        cr_assert(fabs(tt->grad[j] - fd) < 1e-3 * (1.0 + fabs(fd)), "level %d (%g): grad %.6f, finite differences %.6f", j,
                  table0[j], tt->grad[j], fd);
        cr_assert(fabs(fd) > 0.01, "level %d has weights, so a gradient", j);
    }
    /* frozen: no gradient reaches the table; x's and the scale's are those of the plain codebook path */
    float dx_learned[N], ds_learned[R * 2];
    memcpy(dx_learned, xt->grad, sizeof dx_learned), memcpy(ds_learned, st->grad, sizeof ds_learned);
    memset(xt->grad, 0, sizeof x), memset(st->grad, 0, sizeof sc0), memset(tt->grad, 0, 8 * sizeof(float));
    tt->requires_grad = false;
    tape_reset(&T);
    Tensor *yf = op_fake_quant_table(&T, xt, &s, EST_LSQ, st, tt);
    tape_backward_seed(&T, yf, g);
    for (int j = 0; j < 8; j++) cr_assert_eq(tt->grad[j], 0.0f, "a frozen table's level %d got a gradient", j);
    ss.lut = sorted;
    Params p2;
    params_init(&p2);
    Tensor *x2 = params_add(&p2, "x", 2, (int[]){R, C}), *s2 = params_add(&p2, "s", 1, (int[]){R * 2});
    params_finalize(&p2);
    memcpy(x2->data, x, sizeof x), memcpy(s2->data, sc0, sizeof sc0);
    Tape t2;
    tape_init(&t2, 1 << 16);
    Tensor *y2 = op_fake_quant(&t2, x2, &ss, EST_LSQ, s2, NULL);
    tape_backward_seed(&t2, y2, g);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(yf->data[i], y2->data[i], "frozen x_hat[%d]", i);
        cr_assert_eq(xt->grad[i], x2->grad[i], "frozen dx[%d]", i);
        cr_assert_eq(dx_learned[i], x2->grad[i], "learned dx[%d]", i);
    }
    for (int k = 0; k < R * 2; k++) cr_assert_eq(st->grad[k], s2->grad[k], "frozen ds[%d]", k);
    tape_free(&t2);
    params_free(&p2);
    params_free(&p);
}

/* kmeans tables per output channel and per group: each weight takes the
 * nearest level of its own row's (or group's) table times its scale; each
 * table's level gradient gathers only its own weights (finite differences
 * of the loss, one level of one table at a time); a frozen set of tables
 * equals quant_fake on the sorted tables; refused without kmeans levels,
 * with per-tensor scales, and per-group tables under per-channel scales. */
Test(quant, kmeans_tables_per_channel_and_group) {
    enum { R = 3, C = 20, G = 8, NG = 3, N = R * C }; /* groups 8, 8, 4: a partial last group */
    float sc0[R * NG] = {0.5f, 0.8f, 1.3f, 0.25f, 0.9f, 0.6f, 1.1f, 0.7f, 0.4f};
    for (int per = 0; per < 2; per++) {
        QuantSpec s = {.bits = 2, .sym = true, .gran = QG_GROUP, .group = G, .cb = QCB_KMEANS,
                       .tables = per ? QG_GROUP : QG_CHANNEL};
        int nt = per ? R * NG : R;
        cr_assert_eq(quant_n_tables(&s, R, C), (size_t)nt);
        cr_assert_null(quant_tables_invalid(&s));
        float tab[R * NG * 4], sorted[R * NG * 4], x[N], g[N];
        for (int t = 0; t < nt; t++) /* unsorted, on the 1/127 grid, each table its own levels */
            for (int k = 0; k < 4; k++) tab[t * 4 + k] = (float)(((k * 3) % 4) * 60 - 100 + 5 * t) / 127.0f;
        for (int t = 0; t < nt; t++) quant_table_sort(tab + t * 4, 4, sorted + t * 4, NULL, "test");
        for (int i = 0; i < N; i++) {
            int r = i / C, c = i % C, k = r * NG + c / G, t = per ? k : r;
            x[i] = sc0[k] * (tab[t * 4 + (i * 5) % 4] + 0.01f * (float)((i % 5) - 2));
            g[i] = 0.3f + 0.07f * (float)((i * 7) % 11) - 0.4f * (float)(i % 2);
        }
        Params p;
        params_init(&p);
        Tensor *xt = params_add(&p, "x", 2, (int[]){R, C}), *st = params_add(&p, "s", 1, (int[]){R * NG});
        Tensor *tt = params_add(&p, "table", 1, (int[]){nt * 4});
        params_finalize(&p);
        memcpy(xt->data, x, sizeof x), memcpy(st->data, sc0, sizeof sc0), memcpy(tt->data, tab, sizeof(float) * nt * 4);
        tape_reset(&T);
        Tensor *y = op_fake_quant_table(&T, xt, &s, EST_LSQ, st, tt);
        QuantSpec ss = s;
        ss.lut = sorted;
        float want[N];
        quant_fake(&ss, x, R, C, sc0, NULL, want);
        for (int i = 0; i < N; i++) {
            int r = i / C, c = i % C, k = r * NG + c / G, t = per ? k : r;
            cr_assert_eq(y->data[i], want[i], "tables per %s: x_hat[%d] %g, quant_fake %g", per ? "group" : "channel", i,
                         y->data[i], want[i]);
            cr_assert_float_eq(y->data[i], sc0[k] * tab[t * 4 + (i * 5) % 4], 1e-6, "x[%d] sits at its own table's level", i);
        }
        tape_backward_seed(&T, y, g);
        for (int j = 0; j < nt * 4; j++) {
            double fd = 0.0, eps = 1e-3;
            for (int sgn = -1; sgn <= 1; sgn += 2) {
                float tp[R * NG * 4], ts[R * NG * 4];
                memcpy(tp, tab, sizeof tp);
                tp[j] += (float)(sgn * eps);
                for (int t = 0; t < nt; t++) /* sorted again for the reference quantizer, without the 1/127 grid */
                    for (int a = 0; a < 4; a++) {
                        int below = 0;
                        for (int b = 0; b < 4; b++) below += tp[t * 4 + b] < tp[t * 4 + a];
                        ts[t * 4 + below] = tp[t * 4 + a];
                    }
                ss.lut = ts;
                float yq[N];
                quant_fake(&ss, x, R, C, sc0, NULL, yq);
                double l = 0.0;
                for (int i = 0; i < N; i++) l += (double)g[i] * yq[i];
                fd += sgn * l / (2.0 * eps);
            }
            cr_assert(fabs(tt->grad[j] - fd) < 1e-3 * (1.0 + fabs(fd)), "tables per %s: table %d level %d: grad %.6f, "
                      "finite differences %.6f", per ? "group" : "channel", j / 4, j % 4, tt->grad[j], fd);
            cr_assert(fabs(fd) > 1e-3, "table %d level %d has weights, so a gradient", j / 4, j % 4);
        }
        /* frozen: none reaches the tables, and x_hat is quant_fake's on the sorted tables */
        memset(tt->grad, 0, sizeof(float) * nt * 4);
        tt->requires_grad = false;
        tape_reset(&T);
        Tensor *yf = op_fake_quant_table(&T, xt, &s, EST_LSQ, st, tt);
        tape_backward_seed(&T, yf, g);
        for (int j = 0; j < nt * 4; j++) cr_assert_eq(tt->grad[j], 0.0f, "a frozen table's level got a gradient");
        for (int i = 0; i < N; i++) cr_assert_eq(yf->data[i], want[i], "frozen x_hat[%d]", i);
        params_free(&p);
    }
    QuantSpec bad = {.bits = 3, .sym = true, .gran = QG_GROUP, .group = 8, .cb = QCB_NF, .tables = QG_CHANNEL};
    cr_assert(strstr(quant_tables_invalid(&bad), "kmeans"), "tables of nf levels");
    bad.cb = QCB_KMEANS, bad.gran = QG_TENSOR;
    cr_assert(strstr(quant_tables_invalid(&bad), "scales per channel or group"), "tables over one scale");
    bad.gran = QG_CHANNEL, bad.tables = QG_GROUP;
    cr_assert(strstr(quant_tables_invalid(&bad), "scales per group"), "group tables over channel scales");
}

/* k-means: three well-separated weighted clusters come back as their
 * weighted means; the fit is a fixed point of Lloyd's step (each level the
 * weighted mean of the values nearest it); the same seed gives the same
 * levels; on normal data 8 k-means levels lose less than NF3's. */
Test(quant, kmeans_levels_by_construction) {
    enum { N = 3000 };
    float *u = malloc(N * sizeof(float)), *wt = malloc(N * sizeof(float));
    Rng r;
    rng_seed(&r, 5);
    double sum[3] = {0}, wsum[3] = {0};
    const float centre[3] = {-0.7f, 0.1f, 0.8f};
    for (int i = 0; i < N; i++) {
        int c = i % 3;
        u[i] = centre[c] + 0.02f * rng_normal(&r);
        wt[i] = 0.5f + rng_uniform(&r);
        sum[c] += (double)wt[i] * u[i], wsum[c] += wt[i];
    }
    float lv[3], lv2[3];
    ptq_kmeans_1d(u, wt, N, 3, 11, lv);
    ptq_kmeans_1d(u, wt, N, 3, 11, lv2);
    for (int c = 0; c < 3; c++) {
        cr_assert_float_eq(lv[c], sum[c] / wsum[c], 1e-5, "cluster %d: %g vs weighted mean %g", c, lv[c], sum[c] / wsum[c]);
        cr_assert_eq(lv[c], lv2[c], "the same seed, the same levels");
    }
    /* normal data, 8 levels: a fixed point of Lloyd's step, and beats NF3 in squared error */
    float amax = 0.0f;
    for (int i = 0; i < N; i++) u[i] = rng_normal(&r), amax = fmaxf(amax, fabsf(u[i]));
    for (int i = 0; i < N; i++) u[i] /= amax;
    float km[8];
    ptq_kmeans_1d(u, NULL, N, 8, 3, km);
    QuantSpec nf = {.bits = 3, .sym = true, .cb = QCB_NF}, kms = {.bits = 3, .sym = true, .cb = QCB_KMEANS, .lut = km};
    int n;
    const float *nl = quant_levels(&nf, &n);
    double e_nf = 0.0, e_km = 0.0, ms[8] = {0}, cnt[8] = {0};
    for (int i = 0; i < N; i++) {
        int j = quant_level_index(km, 8, u[i]);
        ms[j] += u[i], cnt[j] += 1;
        e_km += pow(u[i] - km[j], 2), e_nf += pow(u[i] - nl[quant_level_index(nl, 8, u[i])], 2);
        cr_assert_eq(quant_round(&kms, u[i], 1.0f, 0.0f), km[j], "quant_round takes the spec's table");
    }
    for (int j = 0; j < 8; j++) {
        cr_assert(cnt[j] > 0, "level %d is empty", j);
        cr_assert_float_eq(km[j], ms[j] / cnt[j], 1e-5, "level %d is not the mean of its cell", j);
        if (j) cr_assert(km[j] > km[j - 1], "levels ascend");
    }
    cr_assert(e_km < 0.9 * e_nf, "k-means squared error %g, NF3's %g", e_km, e_nf);
    free(u), free(wt);
}

static void freeze_without_kmeans(void *p) {
    Config *c = p;
    config_set(c, "quant.weight.bits", "3", "q.yaml");
    config_set(c, "quant.weight.codebook", "nf", "q.yaml");
    config_set(c, "quant.weight.freeze_table", "true", "q.yaml");
    config_validate(c, "q.yaml");
}

Test(quant, freeze_table_needs_a_kmeans_codebook) {
    Config c;
    config_defaults(&c);
    char msg[512];
    cr_assert(capture_failure(freeze_without_kmeans, &c, msg, sizeof msg), "freeze_table accepted with nf levels");
    cr_assert(strstr(msg, "q.yaml") && strstr(msg, "quant.weight.freeze_table"), "got: %s", msg);
}

/* QAT with kmeans tables: a frozen table is the k-means fit of the float
 * model's weights (over their min-max scales) the run started from, to the
 * bit; a learned one moved away from it and the run's loss fell; eval
 * reproduces training's loss from the stored tables. */
Test(quant, kmeans_qat_learns_or_keeps_its_tables, .init = write_corpus) {
    Config f;
    char *fdir = run_dir("kfloat");
    tiny(&f, fdir, 60, "");
    TrainOptions o = {.quiet = true};
    train_run(&f, "float", &o);
    float table[2][8];
    for (int frozen = 0; frozen < 2; frozen++) {
        Config q;
        char *qdir = run_dir(frozen ? "kfrozen" : "klearned"), extra[2048], path[4096];
        snprintf(extra, sizeof extra,
                 "quant: {weight: {bits: 3, granularity: group, group_size: 16, codebook: kmeans, freeze_table: %s,\n"
                 "                 table_lr_mult: 1}, estimator: lsq, init_from: %s/checkpoint.h5}\n",
                 frozen ? "true" : "false", fdir);
        tiny(&q, qdir, 40, extra);
        config_set(&q, "train.lr", "3e-3", "test");
        train_run(&q, "qat", &o);
        snprintf(path, sizeof path, "%s/checkpoint.h5", qdir);
        GPT g;
        Config c2;
        Vocab v;
        model_load(path, &g, &c2, &v);
        memcpy(table[frozen], params_find(&g.params, "blocks.0.mlp.fc.weight_table")->data, sizeof table[0]);
        gpt_free(&g);
        snprintf(path, sizeof path, "%s/summary.json", qdir);
        double val = json_field(test_slurp(path, NULL), "val_loss");
        snprintf(path, sizeof path, "%s/checkpoint.h5", qdir);
        cr_assert_float_eq(eval_checkpoint(path, NULL).val_loss, val, 1e-5, "eval reproduces the kmeans run");
        if (frozen) { /* the fit, again, on a model built from the float checkpoint */
            GPT k;
            Config fc;
            Vocab fv;
            model_load(run_dir("kfloat/checkpoint.h5"), &k, &fc, &fv);
            GPT kq;
            GPTConfig gc = k.cfg;
            gpt_build(&kq, &gc, &q.quant, "test");
            for (int i = 0; i < kq.params.n; i++) { /* the float tensors by name */
                Tensor *x = kq.params.list[i], *src = params_find(&k.params, x->name);
                if (src) memcpy(x->data, src->data, x->numel * sizeof(float));
            }
            gpt_quant_init_scales(&kq);
            const float *fit = params_find(&kq.params, "blocks.0.mlp.fc.weight_table")->data;
            for (int j = 0; j < 8; j++) cr_assert_eq(table[1][j], fit[j], "frozen level %d: %g, the fit %g", j, table[1][j], fit[j]);
            double moved = 0.0;
            for (int j = 0; j < 8; j++) moved = fmax(moved, fabs(table[0][j] - fit[j]));
            cr_assert(moved > 1e-3, "the learned table did not move from its fit (%g)", moved);
            gpt_free(&kq), gpt_free(&k);
        }
    }
}

/* The dampening term's gradient against central differences of the term
 * itself (its grid points fixed, so perturbations small enough not to cross
 * a rounding boundary are exact), on int3 groups with a partial last group,
 * asymmetric per channel and an NF3 codebook; weights past the clipping
 * range get nothing, and weights on the grid cost nothing. */
Test(quant, dampening_gradient_against_finite_differences) {
    const int rows = 3, cols = 40;
    QuantSpec specs[] = {{.bits = 3, .sym = true, .gran = QG_GROUP, .group = 32},
                         {.bits = 3, .sym = false, .gran = QG_CHANNEL},
                         {.bits = 3, .sym = true, .gran = QG_GROUP, .group = 16, .cb = QCB_NF}};
    Rng r;
    rng_seed(&r, 99);
    float w[120], g[120], sc[64], zp[64];
    for (int k = 0; k < 3; k++) {
        const QuantSpec *s = &specs[k];
        for (int i = 0; i < rows * cols; i++) w[i] = 0.1f * rng_normal(&r);
        size_t ns = quant_n_scales(s, rows, cols);
        quant_minmax(s, w, rows, cols, sc, s->sym ? NULL : zp);
        for (size_t j = 0; j < ns; j++) sc[j] *= 0.8f; /* some weights past the clip */
        memset(g, 0, sizeof g);
        const float coef = 0.37f;
        double f0 = quant_dampen(s, w, rows, cols, sc, s->sym ? NULL : zp, coef, g);
        cr_assert(f0 > 0.0);
        int checked = 0, outside = 0;
        for (int i = 0; i < rows * cols; i++) {
            size_t j = quant_scale_index(s, cols, i / cols, i % cols);
            float z = s->sym ? 0.0f : zp[j], h = 1e-3f * sc[j], x = w[i];
            float lo = s->cb ? -sc[j] : quant_dequant(quant_qmin(s), sc[j], z);
            float hi = s->cb ? sc[j] : quant_dequant(quant_qmax(s), sc[j], z);
            if (x < lo || x > hi) {
                cr_assert_eq(g[i], 0.0f, "spec %d element %d past the clip got gradient %g", k, i, g[i]);
                outside++;
                continue;
            }
            /* skip weights within h of a rounding boundary or of the clip */
            float qa = quant_round(s, x - h, sc[j], z), qb = quant_round(s, x + h, sc[j], z);
            if (qa != qb || x - h < lo || x + h > hi) continue;
            float scratch[120];
            w[i] = x + h;
            double fp = quant_dampen(s, w, rows, cols, sc, s->sym ? NULL : zp, 0.0f, scratch);
            w[i] = x - h;
            double fm = quant_dampen(s, w, rows, cols, sc, s->sym ? NULL : zp, 0.0f, scratch);
            w[i] = x;
            double fd = coef * (fp - fm) / (2.0 * h);
            cr_assert(fabs(fd - g[i]) <= 1e-3 * fabs(fd) + 1e-2, "spec %d element %d: %g vs finite difference %g", k, i,
                      g[i], fd);
            checked++;
        }
        cr_assert(checked > 80 && outside > 0, "spec %d: %d checked, %d outside", k, checked, outside);
        /* on the grid: nothing to pay */
        quant_fake(s, w, rows, cols, sc, s->sym ? NULL : zp, w);
        memset(g, 0, sizeof g);
        cr_assert(quant_dampen(s, w, rows, cols, sc, s->sym ? NULL : zp, coef, g) < 1e-8, "spec %d", k);
    }
}

Test(quant, dampening_needs_a_grid_of_qats_own) {
    const char *kv[][2] = {{"quant.format", "q4_0"}, {"quant.dampen", "0.1"}};
    char msg[512];
    expect_invalid(kv, 2, msg, sizeof msg);
    cr_assert(strstr(msg, "q.yaml") && strstr(msg, "quant.dampen") && strstr(msg, "q4_0"), "got: %s", msg);
    expect_bad("quant.dampen", "-1", "quant.dampen", NULL);
}

/* quant.overrides.LAYER.format: one layer in a block format of its own (a
 * q8_0 head in a q4_0 model, as llama-quantize stores the tied embedding);
 * written back into the config; refused beside the layer's other weight
 * fields, and for names that are no block format. */
Test(quant, a_layer_takes_a_block_format_of_its_own) {
    Config c;
    config_defaults(&c);
    config_set(&c, "quant.format", "q4_0", "q.yaml");
    config_set(&c, "quant.estimator", "lsq", "q.yaml");
    config_set(&c, "quant.layers", "blocks.*, lm_head", "q.yaml");
    config_set(&c, "quant.overrides.lm_head.format", "q8_0", "q.yaml");
    config_validate(&c, "q.yaml");
    GPTConfig gc = {.vocab_size = 10, .n_layer = 1, .n_head = 2, .n_embd = 32, .block_size = 8};
    GPT g;
    gpt_build(&g, &gc, &c.quant, "q.yaml");
    cr_assert(g.head.q && g.head.q->w.fmt == QF_Q8_0 && g.head.q->w.bits == 8, "the head is not q8_0");
    cr_assert(g.blocks[0].qkv.q && g.blocks[0].qkv.q->w.fmt == QF_Q4_0, "blocks.0.attn.qkv is not q4_0");
    cr_assert_eq(g.head.q->w_scale->numel, 10 * 32 / 32, "one scale per block of the head");
    gpt_free(&g);
    char *y = config_to_yaml(&c);
    cr_assert(strstr(y, "overrides.lm_head.format: q8_0"), "%s", y);
    free(y);
    const char *both[][2] = {{"quant.overrides.lm_head.format", "q8_0"}, {"quant.overrides.lm_head.bits", "8"}};
    char msg[512];
    expect_invalid(both, 2, msg, sizeof msg);
    cr_assert(strstr(msg, "q.yaml") && strstr(msg, "quant.overrides.lm_head.format"), "got: %s", msg);
    expect_bad("quant.overrides.lm_head.format", "q6_k", "quant.overrides.lm_head.format", "q8_0|q4_0|q4_1|iq4_nl");
}
