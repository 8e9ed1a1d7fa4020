/* test_ptq.c: post-training quantization. The per-layer algorithms against
 * round-to-nearest on plain arrays (GPTQ lowers the output error on
 * correlated inputs and equals RTN for an identity Hessian; AWQ exponent 0 is
 * RTN); whole-model properties (folding AWQ/SmoothQuant scales leaves the
 * float function unchanged; the outlier split with threshold 0 is the float
 * model; static-activation and outlier W8A8 models agree between fake
 * quantization and every kernel path); and qat ptq from the command line,
 * with its bad input. */
#include <cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "infer/infer.h"
#include "quant/ptq.h"
#include "testutil.h"
#include "train/ptq_model.h"
#include "train/trainer.h"

/* ---------- the algorithms on one layer ---------- */

/* Inputs with strongly correlated features of varied size: z @ M with M =
 * I + a dense random mix, features scaled 0.2..2. */
static float *correlated_inputs(int n, int cols, uint64_t seed) {
    Rng r;
    rng_seed(&r, seed);
    float *M = xmalloc((size_t)cols * cols * sizeof(float)), *x = xcalloc((size_t)n * cols, sizeof(float));
    for (int i = 0; i < cols; i++)
        for (int j = 0; j < cols; j++) M[i * cols + j] = (i == j) + 0.6f * rng_normal(&r) / sqrtf((float)cols) * 4.0f;
    float *z = xmalloc((size_t)cols * sizeof(float));
    for (int s = 0; s < n; s++) {
        for (int i = 0; i < cols; i++) z[i] = rng_normal(&r);
        for (int j = 0; j < cols; j++) {
            float acc = 0.0f;
            for (int i = 0; i < cols; i++) acc += z[i] * M[i * cols + j];
            x[(size_t)s * cols + j] = acc * (0.2f + 1.8f * (float)j / (float)cols);
        }
    }
    free(M), free(z);
    return x;
}

static float *random_weights(int rows, int cols, uint64_t seed) {
    Rng r;
    rng_seed(&r, seed);
    float *w = xmalloc((size_t)rows * cols * sizeof(float));
    for (size_t i = 0; i < (size_t)rows * cols; i++) w[i] = 0.05f * rng_normal(&r);
    return w;
}

Test(ptq_alg, gptq_beats_rtn_on_correlated_inputs) {
    int rows = 48, cols = 128, n = 2048;
    float *x = correlated_inputs(n, cols, 1), *w = random_weights(rows, cols, 2);
    PtqStats st;
    ptq_stats_init(&st, cols, 0, 1);
    ptq_stats_add(&st, x, (size_t)n / 2); /* in two parts, as calibration chunks arrive */
    ptq_stats_add(&st, x + (size_t)n / 2 * cols, (size_t)n / 2);
    float *H = xmalloc((size_t)cols * cols * sizeof(float));
    ptq_hessian(&st, H);
    QuantSpec specs[] = {{.bits = 4, .sym = true, .gran = QG_GROUP, .group = 32},
                         {.bits = 3, .sym = true, .gran = QG_GROUP, .group = 32},
                         {.bits = 4, .sym = true, .gran = QG_CHANNEL},
                         {.bits = 4, .sym = false, .gran = QG_GROUP, .group = 32},
                         {.bits = 4, .sym = true, .gran = QG_GROUP, .group = 48}, /* 48, 48 and a partial 32 */
                         {.bits = 3, .sym = true, .gran = QG_GROUP, .group = 32, .cb = QCB_NF},
                         {.bits = 4, .sym = true, .gran = QG_CHANNEL, .cb = QCB_NF},
                         {.bits = 3, .sym = true, .gran = QG_GROUP, .group = 32, .cb = QCB_KMEANS}};
    float table[8], *msc = xmalloc((size_t)rows * 4 * sizeof(float)); /* the kmeans spec's table, fitted to w */
    quant_minmax(&specs[7], w, rows, cols, msc, NULL);
    ptq_kmeans_table(&specs[7], w, rows, cols, msc, NULL, 1, table);
    specs[7].lut = table;
    free(msc);
    for (int k = 0; k < 8; k++) {
        for (int act_order = 0; act_order < 2; act_order++) {
            const QuantSpec *s = &specs[k];
            size_t ns = quant_n_scales(s, rows, cols), N = (size_t)rows * cols;
            float *sc = xmalloc(ns * sizeof(float)), *zp = xcalloc(ns, sizeof(float)), *wr = xmalloc(N * sizeof(float));
            ptq_rtn(s, w, rows, cols, sc, zp, wr);
            double e_rtn = ptq_output_error(w, wr, rows, cols, H);
            float *wg = xmalloc(N * sizeof(float)), *back = xmalloc(N * sizeof(float));
            memcpy(wg, w, N * sizeof(float));
            GptqOptions o = {.damp = 0.01f, .block = 32, .act_order = act_order};
            ptq_gptq(s, wg, rows, cols, H, &o, sc, zp, "test");
            double e = ptq_output_error(w, wg, rows, cols, H);
            cr_assert(e < 0.8 * e_rtn, "spec %d act_order %d: GPTQ error %g not 20%% below RTN %g", k, act_order, e, e_rtn);
            /* the result is on the quantizer's grid with the returned scales */
            quant_fake(s, wg, rows, cols, sc, s->sym ? NULL : zp, back);
            cr_assert(memcmp(back, wg, N * sizeof(float)) == 0, "spec %d: GPTQ weights are not codes * scales", k);
            free(sc), free(zp), free(wr), free(wg), free(back);
        }
    }
    ptq_stats_free(&st);
    free(x), free(w), free(H);
}

/* kmeans tables on heavy-tailed (Laplace) weights in the first half of the
 * columns and uniform ones in the second, whose inputs (so diag H) are the
 * larger: the fitted table loses
 * less squared weight error than NF3's levels under the same scales, and
 * fitted with each column counted by diag(H) it loses less of the
 * diagonal-weighted error (the part of the output error each weight causes
 * alone) than the unweighted fit. */
Test(ptq_alg, kmeans_tables_fit_what_they_weigh) {
    int rows = 32, cols = 128, n = 1024;
    Rng r;
    rng_seed(&r, 9);
    float *w = xmalloc((size_t)rows * cols * sizeof(float));
    for (int i = 0; i < rows * cols; i++) {
        float u = rng_uniform(&r) - 0.5f;
        w[i] = i % cols < cols / 2 ? -0.03f * copysignf(logf(1.0f - 2.0f * fabsf(u) + 1e-7f), u) : 0.1f * u;
    }
    float *x = correlated_inputs(n, cols, 4), *H = xmalloc((size_t)cols * cols * sizeof(float)), dg[128];
    PtqStats st;
    ptq_stats_init(&st, cols, 0, 1);
    ptq_stats_add(&st, x, (size_t)n);
    ptq_hessian(&st, H);
    for (int c = 0; c < cols; c++) dg[c] = H[c * cols + c];
    QuantSpec nf = {.bits = 3, .sym = true, .gran = QG_GROUP, .group = 32, .cb = QCB_NF}, km = nf;
    km.cb = QCB_KMEANS;
    size_t ns = quant_n_scales(&nf, rows, cols), N = (size_t)rows * cols;
    float *sc = xmalloc(ns * sizeof(float)), *wq = xmalloc(N * sizeof(float)), t_plain[8], t_wt[8];
    quant_minmax(&nf, w, rows, cols, sc, NULL);
    ptq_kmeans_table(&km, w, rows, cols, sc, NULL, 3, t_plain);
    ptq_kmeans_table(&km, w, rows, cols, sc, dg, 3, t_wt);
    double err[3][2] = {{0}}; /* nf, kmeans, weighted kmeans: squared, diag-weighted */
    const float *tables[3] = {NULL, t_plain, t_wt};
    for (int k = 0; k < 3; k++) {
        QuantSpec s = k ? km : nf;
        s.lut = tables[k];
        quant_fake(&s, w, rows, cols, sc, NULL, wq);
        for (size_t i = 0; i < N; i++) {
            double d = (double)w[i] - wq[i];
            err[k][0] += d * d, err[k][1] += dg[i % (size_t)cols] * d * d;
        }
    }
    cr_assert(err[1][0] < 0.9 * err[0][0], "kmeans squared error %g vs NF3 %g", err[1][0], err[0][0]);
    cr_assert(err[2][1] < 0.99 * err[1][1], "weighted fit %g vs unweighted %g in diag(H)-weighted error", err[2][1], err[1][1]);
    ptq_stats_free(&st);
    free(w), free(x), free(H), free(sc), free(wq);
}

Test(ptq_alg, stats_match_direct_sums) {
    int cols = 24, n = 300;
    float *x = correlated_inputs(n, cols, 5);
    PtqStats st;
    ptq_stats_init(&st, cols, 50, 7);
    for (int r = 0; r < n; r += 100) ptq_stats_add(&st, x + (size_t)r * cols, 100);
    float *H = xmalloc((size_t)cols * cols * sizeof(float));
    ptq_hessian(&st, H);
    for (int i = 0; i < cols; i++)
        for (int j = 0; j < cols; j++) {
            double want = 0.0;
            for (int s = 0; s < n; s++) want += (double)x[s * cols + i] * x[s * cols + j];
            want *= 2.0 / n;
            cr_assert(fabs(H[i * cols + j] - want) <= 1e-4 * (1.0 + fabs(want)), "H[%d,%d] %g vs %g", i, j, H[i * cols + j], want);
        }
    cr_assert_eq(st.n_sample, 43); /* rows 0, 7, ..., 294 */
    cr_assert(memcmp(st.sample + 2 * cols, x + 14 * cols, (size_t)cols * sizeof(float)) == 0);
    ptq_stats_free(&st);
    free(x), free(H);
}

Test(ptq_alg, gptq_with_identity_hessian_is_rtn) {
    int rows = 20, cols = 64;
    float *w = random_weights(rows, cols, 3), *H = xcalloc((size_t)cols * cols, sizeof(float));
    for (int i = 0; i < cols; i++) H[i * cols + i] = 1.0f;
    QuantSpec specs[] = {{.bits = 4, .sym = true, .gran = QG_GROUP, .group = 16},
                         {.bits = 4, .sym = true, .gran = QG_CHANNEL},
                         {.bits = 3, .sym = true, .gran = QG_TENSOR},
                         {.bits = 2, .sym = false, .gran = QG_GROUP, .group = 32},
                         {.bits = 8, .sym = true, .gran = QG_CHANNEL},
                         {.bits = 3, .sym = true, .gran = QG_GROUP, .group = 16, .cb = QCB_NF}};
    for (int k = 0; k < 6; k++)
        for (int act_order = 0; act_order < 2; act_order++) {
            const QuantSpec *s = &specs[k];
            size_t ns = quant_n_scales(s, rows, cols), N = (size_t)rows * cols;
            float *sr = xmalloc(ns * sizeof(float)), *zr = xcalloc(ns, sizeof(float)), *wr = xmalloc(N * sizeof(float));
            float *sg = xmalloc(ns * sizeof(float)), *zg = xcalloc(ns, sizeof(float)), *wg = xmalloc(N * sizeof(float));
            ptq_rtn(s, w, rows, cols, sr, zr, wr);
            memcpy(wg, w, N * sizeof(float));
            GptqOptions o = {.damp = 0.01f, .block = 16, .act_order = act_order};
            ptq_gptq(s, wg, rows, cols, H, &o, sg, zg, "test");
            cr_assert(memcmp(wr, wg, N * sizeof(float)) == 0, "spec %d act_order %d: GPTQ(H = I) differs from RTN", k, act_order);
            cr_assert(memcmp(sr, sg, ns * sizeof(float)) == 0, "spec %d: scales differ", k);
            free(sr), free(zr), free(wr), free(sg), free(zg), free(wg);
        }
    free(w), free(H);
}

Test(ptq_alg, awq_exponent_zero_is_rtn_and_clip_never_loses) {
    int rows = 32, cols = 64, n = 512;
    float *x = correlated_inputs(n, cols, 4), *w = random_weights(rows, cols, 6);
    PtqStats st;
    ptq_stats_init(&st, cols, 0, 1);
    ptq_stats_add(&st, x, (size_t)n);
    float *H = xmalloc((size_t)cols * cols * sizeof(float)), *s = xmalloc((size_t)cols * sizeof(float));
    ptq_hessian(&st, H);
    QuantSpec q = {.bits = 4, .sym = true, .gran = QG_GROUP, .group = 16};
    float zero = 0.0f;
    cr_assert_eq(ptq_awq_search(&q, w, rows, cols, H, st.abssum, st.n, &zero, 1, s), 0.0f);
    for (int j = 0; j < cols; j++) cr_assert_eq(s[j], 1.0f, "exponent 0 gives scale %g at %d", s[j], j);
    /* the search over the full grid is at least as good as exponent 0 (RTN) */
    float grid[21];
    for (int i = 0; i <= 20; i++) grid[i] = (float)i / 20.0f;
    ptq_awq_search(&q, w, rows, cols, H, st.abssum, st.n, grid, 21, s);
    size_t ns = quant_n_scales(&q, rows, cols), N = (size_t)rows * cols;
    float *sc = xmalloc(ns * sizeof(float)), *wq = xmalloc(N * sizeof(float)), *ws = xmalloc(N * sizeof(float));
    ptq_rtn(&q, w, rows, cols, sc, NULL, wq);
    double e_rtn = ptq_output_error(w, wq, rows, cols, H);
    memcpy(ws, w, N * sizeof(float));
    ptq_scale_cols(ws, rows, cols, s);
    ptq_rtn(&q, ws, rows, cols, sc, NULL, wq);
    for (size_t i = 0; i < N; i++) wq[i] /= s[i % cols];
    double e_awq = ptq_output_error(w, wq, rows, cols, H);
    cr_assert(e_awq <= e_rtn, "AWQ %g > RTN %g", e_awq, e_rtn);
    /* clipping: per group, the searched range never has more error than min-max */
    ptq_clip_search(&q, w, rows, cols, H, sc, NULL);
    quant_fake(&q, w, rows, cols, sc, NULL, wq);
    double e_clip = ptq_output_error(w, wq, rows, cols, H);
    cr_assert(e_clip <= e_rtn * (1.0 + 1e-6), "clip %g > RTN %g", e_clip, e_rtn);
    /* the same with a partial last group (groups of 24 over 64: 24, 24, 16) */
    QuantSpec qp = {.bits = 3, .sym = true, .gran = QG_GROUP, .group = 24};
    float *scp = xmalloc(quant_n_scales(&qp, rows, cols) * sizeof(float));
    ptq_rtn(&qp, w, rows, cols, scp, NULL, wq);
    double e_rtn_p = ptq_output_error(w, wq, rows, cols, H);
    ptq_clip_search(&qp, w, rows, cols, H, scp, NULL);
    quant_fake(&qp, w, rows, cols, scp, NULL, wq);
    double e_clip_p = ptq_output_error(w, wq, rows, cols, H);
    cr_assert(e_clip_p <= e_rtn_p * (1.0 + 1e-6) && e_clip_p < 0.99 * e_rtn_p, "partial groups: clip %g vs RTN %g",
              e_clip_p, e_rtn_p);
    free(scp);
    ptq_stats_free(&st);
    free(x), free(w), free(H), free(s), free(sc), free(wq), free(ws);
}

/* Least-squares scales: each group's scale has no more squared error than
 * any range ratio tried independently (1, 0.75, 0.5, 0.3), and on normal
 * weights at 2 bits it is far below min-max. Asymmetric groups, a partial
 * last group and per-channel scales take the same path. */
static double group_sq_err(const QuantSpec *q, const float *w, int len, float sc, float zp) {
    double e = 0.0;
    for (int j = 0; j < len; j++) {
        float d = w[j] - quant_dequant(quant_code(w[j], sc, zp, quant_qmin(q), quant_qmax(q)), sc, zp);
        e += (double)d * d;
    }
    return e;
}

Test(ptq_alg, mse_scales_beat_every_ratio_and_min_max) {
    const int rows = 8, cols = 80;
    Rng r;
    rng_seed(&r, 5);
    float w[8 * 80];
    for (int i = 0; i < rows * cols; i++) w[i] = 0.05f * rng_normal(&r) + (i % 7 == 0 ? 0.01f : 0.0f);
    QuantSpec specs[] = {{.bits = 2, .sym = true, .gran = QG_GROUP, .group = 32},
                         {.bits = 3, .sym = false, .gran = QG_GROUP, .group = 32},
                         {.bits = 4, .sym = true, .gran = QG_CHANNEL}};
    for (int k = 0; k < 3; k++) {
        const QuantSpec *q = &specs[k];
        int G = q->gran == QG_CHANNEL ? cols : q->group, ng = quant_groups(cols, G);
        float sc[8 * 3], zp[8 * 3];
        ptq_mse_scales(q, w, rows, cols, sc, q->sym ? NULL : zp);
        double total = 0.0, total_mm = 0.0;
        for (int row = 0; row < rows; row++)
            for (int g = 0; g < ng; g++) {
                const float *wg = w + (size_t)row * cols + (size_t)g * G;
                int len = g == ng - 1 ? cols - g * G : G, i = row * ng + g;
                float lo = wg[0], hi = wg[0];
                for (int j = 1; j < len; j++) lo = fminf(lo, wg[j]), hi = fmaxf(hi, wg[j]);
                double e = group_sq_err(q, wg, len, sc[i], q->sym ? 0.0f : zp[i]);
                const float ratios[] = {1.0f, 0.75f, 0.5f, 0.3f};
                for (int t = 0; t < 4; t++) {
                    float s, z = 0.0f;
                    quant_params_from_range(q, ratios[t] * lo, ratios[t] * hi, &s, q->sym ? NULL : &z);
                    double et = group_sq_err(q, wg, len, s, z);
                    cr_assert(e <= et * (1.0 + 1e-6), "spec %d row %d group %d: %g > %g at ratio %g", k, row, g, e, et,
                              ratios[t]);
                    if (t == 0) total_mm += et;
                }
                total += e;
            }
        if (q->bits == 2) cr_assert(total < 0.7 * total_mm, "2 bits: least squares %g vs min-max %g", total, total_mm);
    }
}

/* ---------- whole models ---------- */

#define NSEQ 24
#define T 16

static void model_config(GPTConfig *gc) { *gc = (GPTConfig){.vocab_size = 29, .n_layer = 2, .n_head = 2, .n_embd = 32, .block_size = T}; }

/* A random GPT with non-trivial LayerNorms (folding must respect them). */
static void float_model(GPT *g) {
    GPTConfig gc;
    model_config(&gc);
    Config c;
    config_defaults(&c);
    gpt_build(g, &gc, &c.quant, "test");
    Rng r;
    rng_seed(&r, 11);
    gpt_init_weights(g, &r);
    for (int i = 0; i < g->params.n; i++) {
        Tensor *p = g->params.list[i];
        bool ln = strstr(p->name, "ln") != NULL;
        bool bias = strstr(p->name, "bias") != NULL;
        if (ln || bias)
            for (size_t k = 0; k < p->numel; k++) p->data[k] = (ln && !bias ? 1.0f : 0.0f) + 0.3f * rng_normal(&r);
    }
    /* a few loud input features, as real LayerNorm outputs have */
    for (int b = 0; b < 2; b++) g->blocks[b].ln1.w->data[3] = 8.0f, g->blocks[b].ln2.w->data[7] = -6.0f;
}

static void ptq_model_of(const GPT *f, const PtqOptions *o, GPT *g, const int32_t *calib) {
    GPTConfig gc;
    model_config(&gc);
    Config c;
    config_defaults(&c);
    ptq_quant_config(o, &c.quant);
    gpt_build(g, &gc, &c.quant, "test");
    for (int i = 0; i < f->params.n; i++) {
        Tensor *p = f->params.list[i], *q = params_find(&g->params, p->name);
        cr_assert(q, "%s missing", p->name);
        memcpy(q->data, p->data, p->numel * sizeof(float));
    }
    PtqReport *r = xmalloc(sizeof *r);
    ptq_model(g, o, calib, NSEQ, T, r);
    free(r);
}

static int32_t *tokens(uint64_t seed) {
    Rng r;
    rng_seed(&r, seed);
    int32_t *t = xmalloc(NSEQ * T * sizeof(int32_t));
    for (int i = 0; i < NSEQ * T; i++) t[i] = (int32_t)rng_below(&r, 29);
    return t;
}

/* logits of 4 sequences into out [4*T*V] */
static void logits(GPT *g, const int32_t *idx, float *out) {
    Tape t;
    tape_init(&t, 8u << 20);
    tape_set_grad(&t, false);
    Tensor *y = gpt_forward(g, &t, idx, 4, T);
    memcpy(out, y->data, y->numel * sizeof(float));
    tape_free(&t);
}

static double max_abs_diff(const float *a, const float *b, size_t n, double *amax) {
    double d = 0.0, m = 0.0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i])), m = fmax(m, fabs((double)a[i]));
    if (amax) *amax = m;
    return d;
}

#define NL (4 * T * 29)

Test(ptq_model, folding_leaves_the_float_model_unchanged) {
    GPT f;
    float_model(&f);
    int32_t *calib = tokens(1), *eval = tokens(2);
    float *ref = xmalloc(NL * sizeof(float)), *got = xmalloc(NL * sizeof(float));
    logits(&f, eval, ref);
    const char *methods[] = {"awq", "smoothquant", "smoothquant"};
    for (int k = 0; k < 3; k++) {
        PtqOptions o;
        ptq_options_default(&o);
        snprintf(o.method, sizeof o.method, "%s", methods[k]);
        if (k == 2) o.alpha = -1.0f; /* searched */
        ptq_options_finish(&o, false, false, false, "test");
        GPT g;
        ptq_model_of(&f, &o, &g, calib);
        gpt_quant_set_mode(&g, QMODE_FLOAT); /* the folded model, weights not quantized */
        logits(&g, eval, got);
        double amax, d = max_abs_diff(ref, got, NL, &amax);
        cr_assert(d <= 1e-5, "%s: folded float model differs by %g (max |logit| %g)", methods[k], d, amax);
        /* and the scales did move something */
        cr_assert(memcmp(f.blocks[0].ln1.w->data, g.blocks[0].ln1.w->data, 32 * sizeof(float)) != 0, "%s folded nothing", methods[k]);
        gpt_free(&g);
    }
    gpt_free(&f);
    free(calib), free(eval), free(ref), free(got);
}

Test(ptq_model, awq_exponent_zero_without_clipping_is_rtn) {
    GPT f;
    float_model(&f);
    int32_t *calib = tokens(1), *eval = tokens(2);
    float *a = xmalloc(NL * sizeof(float)), *b = xmalloc(NL * sizeof(float));
    PtqOptions o;
    ptq_options_default(&o);
    ptq_options_finish(&o, false, false, false, "test");
    GPT g;
    ptq_model_of(&f, &o, &g, calib);
    logits(&g, eval, a);
    gpt_free(&g);
    snprintf(o.method, sizeof o.method, "awq");
    o.awq_grid = 0;
    o.clip = false;
    ptq_model_of(&f, &o, &g, calib);
    logits(&g, eval, b);
    cr_assert(memcmp(a, b, NL * sizeof(float)) == 0, "AWQ with exponent 0 and no clipping differs from RTN");
    gpt_free(&g);
    gpt_free(&f);
    free(calib), free(eval), free(a), free(b);
}

/* Fake-quant logits of g against the integer kernels (every path here), one
 * window per sequence; returns the worst difference over max |logit|. */
static double kernels_vs_fake(GPT *g, const int32_t *eval, const float *fake) {
    Vocab v;
    vocab_build_byte(&v);
    v.size = 29;
    InferModel m;
    infer_from_gpt(&m, g, &v, "");
    InferState s;
    infer_state_init(&s, &m, T);
    double worst = 0.0;
    for (int p = KERN_SCALAR; p <= KERN_AVX512; p++) {
        if (!kernel_supported((KernelPath)p)) continue;
        KernelPath old = kernel_force((KernelPath)p);
        for (int b = 0; b < 4; b++) {
            s.pos = 0;
            const float *y = infer_forward(&m, &s, eval + b * T, T);
            double amax, d = max_abs_diff(fake + (size_t)b * T * 29, y, (size_t)T * 29, &amax);
            worst = fmax(worst, d / amax);
        }
        kernel_force(old);
    }
    infer_state_free(&s);
    infer_free(&m);
    return worst;
}

Test(ptq_model, outlier_split_with_threshold_zero_is_the_float_model) {
    GPT f;
    float_model(&f);
    int32_t *calib = tokens(1), *eval = tokens(2);
    float *ref = xmalloc(NL * sizeof(float)), *got = xmalloc(NL * sizeof(float));
    logits(&f, eval, ref);
    PtqOptions o;
    ptq_options_default(&o);
    snprintf(o.method, sizeof o.method, "outlier");
    o.threshold = 0.0f;
    ptq_options_finish(&o, false, false, false, "test");
    GPT g;
    ptq_model_of(&f, &o, &g, calib);
    logits(&g, eval, got); /* fake quantization, every feature float */
    double amax, d = max_abs_diff(ref, got, NL, &amax);
    cr_assert(d <= 1e-5, "fake quant with threshold 0 differs from float by %g", d);
    double k = kernels_vs_fake(&g, eval, ref);
    cr_assert(k <= 1e-5, "kernels with threshold 0 differ from float by %g of max |logit|", k);
    gpt_free(&g);
    gpt_free(&f);
    free(calib), free(eval), free(ref), free(got);
}

Test(ptq_model, static_and_outlier_w8a8_agree_on_every_kernel_path) {
    GPT f;
    float_model(&f);
    int32_t *calib = tokens(1), *eval = tokens(2);
    float *fake = xmalloc(NL * sizeof(float));
    const char *methods[] = {"smoothquant", "outlier", "rtn"};
    for (int k = 0; k < 3; k++) {
        PtqOptions o;
        ptq_options_default(&o);
        snprintf(o.method, sizeof o.method, "%s", methods[k]);
        o.threshold = 2.0f; /* some features float, most not */
        if (k == 2) o.bits = 8, o.group = 16, snprintf(o.act, sizeof o.act, "tensor");
        ptq_options_finish(&o, k == 2, k == 2, k == 2, "test");
        GPT g;
        ptq_model_of(&f, &o, &g, calib);
        if (k == 1) {
            int n = 0;
            for (int j = 0; j < 32; j++) n += g.blocks[0].qkv.q->outlier->data[j] > 0.0f;
            cr_assert(n > 0 && n < 32, "threshold 2 keeps %d of 32 features float", n);
        }
        logits(&g, eval, fake);
        double d = kernels_vs_fake(&g, eval, fake);
        cr_assert(d <= 1e-3, "%s: kernels differ from fake quantization by %g of max |logit|", methods[k], d);
        gpt_free(&g);
    }
    gpt_free(&f);
    free(calib), free(eval), free(fake);
}

/* ---------- qat ptq on a trained model ---------- */

static char *g_dir, *g_ckpt, *g_corpus;

static void train_small(void) {
    g_dir = test_tmpdir();
    g_corpus = test_write(g_dir, "corpus.txt", test_corpus(30000, 3));
    char *out = test_keep(xmalloc(strlen(g_dir) + 32));
    sprintf(out, "%s/float", g_dir);
    test_train_tiny(g_corpus, out, 60, 8, "");
    g_ckpt = test_keep(xmalloc(strlen(g_dir) + 32));
    sprintf(g_ckpt, "%s/float/checkpoint.h5", g_dir);
}
TestSuite(ptq_cli, .init = train_small);

static float loss_of(const char *path, bool int_kernels) { return eval_checkpoint(path, &(EvalOptions){.int_kernels = int_kernels}).val_loss; }

Test(ptq_cli, every_method_evaluates_exports_and_agrees) {
    const char *args[] = {"--method rtn --bits 4 --group 16", "--method gptq --bits 4 --group 16 --calib-batches 2",
                          "--method gptq --bits 3 --group channel --act-order", "--method awq --bits 4 --group 16",
                          "--method smoothquant", "--method outlier --threshold 2",
                          "--method gptq --bits 3 --group 16 --codebook nf",
                          "--method awq --bits 3 --group 16 --codebook kmeans",
                          "--method gptq --bits 2 --group 16 --full-range",
                          "--method gptq --bits 3 --group 16 --codebook kmeans --tables channel",
                          "--method rtn --bits 2 --group 16 --codebook kmeans --tables group",
                          "--method gptq --bits 8 --group 16 --codebook kmeans"};
    float float_loss = loss_of(g_ckpt, false);
    for (int k = 0; k < 12; k++) {
        char cmd[4096], err[512], out[1024], model[1100];
        snprintf(out, sizeof out, "%s/ptq%d.h5", g_dir, k);
        snprintf(model, sizeof model, "%s/ptq%d.model.h5", g_dir, k);
        snprintf(cmd, sizeof cmd, "ptq %s %s -o %s --json > /dev/null", g_ckpt, args[k], out);
        cr_assert_eq(test_run_qat(cmd, err, sizeof err), 0, "%s: %s", args[k], err);
        float fake = loss_of(out, false), integer = loss_of(out, true);
        cr_assert(fabsf(fake - integer) <= 1e-3f, "%s: fake quant %g vs integer kernels %g", args[k], fake, integer);
        cr_assert(fake < float_loss + (k >= 8 && k < 11 ? 1.5f : 0.5f) && fake > float_loss - 0.05f, "%s: loss %g far from float %g", args[k], fake, float_loss);
        snprintf(cmd, sizeof cmd, "export %s -o %s > /dev/null", out, model);
        cr_assert_eq(test_run_qat(cmd, err, sizeof err), 0, "%s: export: %s", args[k], err);
        cr_assert(fabsf(loss_of(model, false) - integer) <= 1e-6f, "%s: exported model's loss differs", args[k]);
        char layout[4096];
        cr_assert(test_check_layout(model, out, layout, sizeof layout), "%s: layout: %s", args[k], layout);
        /* the full range's extra code is used, and only there */
        cr_assert_eq(strstr(layout, " 0 codes at -2^(bits-1)") == NULL, k == 8, "%s: %s", args[k], layout);
        /* tables per channel or group: the file's int8 tables, one per row or group (the h5py check reads them) */
        cr_assert_eq(strstr(layout, " 0 layers with tables per row or group") == NULL, k == 9 || k == 10, "%s: %s", args[k], layout);
    }
}

Test(ptq_cli, bad_input_fails_with_one_line) {
    char cmd[4096], err[1024], out[1024];
    snprintf(out, sizeof out, "%s/bad.h5", g_dir);
    struct {
        const char *args, *want;
    } cases[] = {
        {"--method gpt", "method: 'gpt' is not one of"},
        {"--method gptq --bits 9", "--bits: expected an integer in [2, 8]"},
        {"--method gptq --group -2", "group: expected"},
        {"--method awq --alpha 2", "alpha: expected"},
        {"--method smoothquant --act none", "--act must be token or tensor"},
        {"--method gptq --layers lm_head", "lm_head is tied"},
        {"--method rtn --layers blocks.9.*", "matches no layer"},
        {"--method smoothquant --format q4_0", "llama.cpp's blocks are weight-only"},
        {"--method rtn --format q4_0 --bits 8", "--bits contradicts --format q4_0"},
        {"--method rtn --format q4_1 --sym", "--sym contradicts --format q4_1"},
        {"--method gptq --format q5_0", "format: expected q8_0, q4_0, q4_1 or iq4_nl"},
        {"--method rtn --act-format q8_0", "act-format: simulates llama.cpp's products; it needs --format"},
        {"--method rtn --format q8_0 --act-format q4_0", "act-format: expected q8_0"},
        {"--method rtn --codebook lloyd", "codebook: expected none, nf or kmeans"},
        {"--method rtn --codebook nf --table-unweighted", "table-unweighted: only a kmeans codebook"},
        {"--method rtn --codebook nf --tables channel", "tables: channel: tables per channel or group are kmeans tables"},
        {"--method rtn --codebook kmeans --tables row", "tables: expected layer, channel or group"},
        {"--method rtn --codebook kmeans --group channel --tables group", "tables: group: a table per scale group needs --group N"},
        {"--method gptq --codebook kmeans --bits 5", "codebook: kmeans takes 2..4 or 8 bits"},
        {"--method gptq --codebook nf --bits 7", "codebook: nf takes 2..4 or 8 bits"},
        {"--method rtn --codebook kmeans --bits 8 --tables channel", "tables per channel or group are for 2..4 bits"},
        {"--method smoothquant --codebook nf --bits 4", "codebook: nf takes"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        snprintf(cmd, sizeof cmd, "ptq %s %s -o %s", g_ckpt, cases[k].args, out);
        cr_assert_eq(test_run_qat(cmd, err, sizeof err), 2, "%s: exit status", cases[k].args);
        cr_assert(strstr(err, cases[k].want), "%s: got '%s'", cases[k].args, err);
        cr_assert(strchr(err, '\n') == strrchr(err, '\n'), "%s: more than one line: %s", cases[k].args, err);
    }
    /* a PTQ checkpoint is not a float one */
    snprintf(cmd, sizeof cmd, "ptq %s --method rtn -o %s > /dev/null", g_ckpt, out);
    cr_assert_eq(test_run_qat(cmd, err, sizeof err), 0, "%s", err);
    char out2[1100];
    snprintf(out2, sizeof out2, "%s.again.h5", out);
    snprintf(cmd, sizeof cmd, "ptq %s --method rtn -o %s", out, out2);
    cr_assert_eq(test_run_qat(cmd, err, sizeof err), 2);
    cr_assert(strstr(err, "already quantized"), "got '%s'", err);
    /* -o the source itself: refused, source unchanged */
    size_t n0, n1;
    char *before = test_slurp(g_ckpt, &n0);
    snprintf(cmd, sizeof cmd, "ptq %s --method rtn -o %s", g_ckpt, g_ckpt);
    cr_assert_eq(test_run_qat(cmd, err, sizeof err), 2);
    char *after = test_slurp(g_ckpt, &n1);
    cr_assert(n0 == n1 && memcmp(before, after, n0) == 0, "the source checkpoint changed");
    free(before), free(after);
    /* eval's llama.cpp options on a model without block layers, and bad values */
    snprintf(cmd, sizeof cmd, "eval %s --act-format q8_0", g_ckpt);
    cr_assert_eq(test_run_qat(cmd, err, sizeof err), 2);
    cr_assert(strstr(err, "this model has none"), "got '%s'", err);
    snprintf(cmd, sizeof cmd, "eval %s --act-format q4_0", g_ckpt);
    cr_assert_eq(test_run_qat(cmd, err, sizeof err), 2);
    cr_assert(strstr(err, "expected q8_0 or none"), "got '%s'", err);
    snprintf(cmd, sizeof cmd, "eval %s --top1 %s", g_ckpt, g_dir);
    cr_assert_eq(test_run_qat(cmd, err, sizeof err), 2);
    cr_assert(strstr(err, g_dir) && strchr(err, '\n') == strrchr(err, '\n'), "got '%s'", err);
    /* missing checkpoint */
    snprintf(cmd, sizeof cmd, "ptq %s/none.h5 --method rtn -o %s", g_dir, out);
    cr_assert_eq(test_run_qat(cmd, err, sizeof err), 2);
    cr_assert(strstr(err, "none.h5"), "got '%s'", err);
}

/* ---------- qat compare ---------- */

static char *compare_config(const char *name, const char *ptq, const char *qat_init) {
    char qat_yaml[2048], path[1024], yaml[4096];
    snprintf(qat_yaml, sizeof qat_yaml,
             "model: {n_layer: 2, n_head: 2, n_embd: 32, block_size: 16}\n"
             "data: {path: %s}\n"
             "train: {batch_size: 8, iters: 10, lr: 1e-3, min_lr: 1e-3, warmup_iters: 0, eval_every: 1000,"
             " eval_batches: 8, threads: 2}\n"
             "quant: {weight: {bits: 4, granularity: group, group_size: 16}, estimator: lsq, init_from: %s}\n"
             "out_dir: %s/%s-qat\n",
             g_corpus, qat_init, g_dir, name);
    snprintf(path, sizeof path, "%s-qat.yaml", name);
    char *qat_path = test_write(g_dir, path, qat_yaml);
    snprintf(yaml, sizeof yaml,
             "model: {n_layer: 2, n_head: 2, n_embd: 32, block_size: 16}\n"
             "data: {path: %s}\n"
             "train: {batch_size: 8, eval_batches: 8, threads: 2}\n"
             "compare: {out_dir: %s/%s, float_checkpoint: %s, gen_tokens: 32,\n"
             "          ptq: \"%s\", qat: %s}\n",
             g_corpus, g_dir, name, g_ckpt, ptq, qat_path);
    snprintf(path, sizeof path, "%s.yaml", name);
    return test_write(g_dir, path, yaml);
}

Test(ptq_cli, compare_writes_the_table_and_plot) {
    char *cfg = compare_config("cmp", "rtn --bits 4 --group 16; gptq --bits 4 --group 16 --calib-batches 2", g_ckpt);
    char cmd[4096], err[1024], path[1024];
    snprintf(cmd, sizeof cmd, "compare %s", cfg);
    cr_assert_eq(test_run_qat(cmd, err, sizeof err), 0, "%s", err);
    snprintf(path, sizeof path, "%s/cmp/compare.json", g_dir);
    char *json = test_slurp(path, NULL);
    cJSON *arr = cJSON_Parse(json);
    cr_assert(cJSON_IsArray(arr), "compare.json is not a JSON array:\n%s", json);
    cr_assert_eq(cJSON_GetArraySize(arr), 5, "float + 2 PTQ + float+ft + 1 QAT rows:\n%s", json);
    const char *keys[] = {"method", "w_bits", "a_bits", "group", "val_loss", "ppl", "delta", "delta_ft", "bytes",
                          "bits_per_weight", "gen_tokens_per_s", "seconds"};
    const cJSON *row, *ft = NULL, *qr = NULL, *gr = NULL;
    cJSON_ArrayForEach(row, arr) {
        for (size_t k = 0; k < sizeof keys / sizeof *keys; k++)
            cr_assert(cJSON_HasObjectItem(row, keys[k]), "a row lacks %s:\n%s", keys[k], json);
        const char *m = cJSON_GetObjectItem(row, "method")->valuestring;
        if (!strcmp(m, "float+ft")) ft = row;
        if (!strcmp(m, "qat-lsq")) qr = row;
        if (!strcmp(m, "gptq")) gr = row;
    }
#define NUM(r, k) cJSON_GetObjectItem(r, k)->valuedouble
    /* float+ft: the float model fine-tuned in float with the QAT row's schedule, as qat train does it */
    cr_assert(ft && NUM(ft, "w_bits") == 32 && NUM(ft, "a_bits") == 32, "no float+ft row:\n%s", json);
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(ft, "delta_ft")), "float+ft has no baseline of its own");
    double ft_loss = NUM(ft, "val_loss");
    snprintf(cmd, sizeof cmd, "train %s/cmp-qat.yaml --set quant.weight.bits=0 --set out_dir=%s/cmp-ft-check", g_dir,
             g_dir);
    cr_assert_eq(test_run_qat(cmd, err, sizeof err), 0, "%s", err);
    snprintf(path, sizeof path, "%s/cmp-ft-check/summary.json", g_dir);
    cJSON *sum = cJSON_Parse(test_slurp(path, NULL));
    double trained = NUM(sum, "val_loss");
    cr_assert(fabs(trained - ft_loss) < 2e-5, "float+ft row %.6f vs the same fine-tune by qat train %.6f", ft_loss, trained);
    cJSON_Delete(sum);
    /* the QAT row is measured against it */
    cr_assert(qr, "no qat-lsq row:\n%s", json);
    double q_loss = NUM(qr, "val_loss"), q_dft = NUM(qr, "delta_ft");
    cr_assert(fabs(q_dft - (q_loss - ft_loss)) < 2e-6, "delta_ft %.6f, loss %.6f, float+ft %.6f", q_dft, q_loss, ft_loss);
    cr_assert(gr && NUM(gr, "w_bits") == 4 && NUM(gr, "a_bits") == 32 && NUM(gr, "group") == 16, "%s", json);
    cr_assert(NUM(qr, "w_bits") == 4 && NUM(qr, "a_bits") == 32 && NUM(qr, "group") == 16, "%s", json);
    /* the gptq row's loss is that of the model it exported, on the integer kernels */
    float row_loss = (float)NUM(gr, "val_loss");
#undef NUM
    snprintf(path, sizeof path, "%s/cmp/models/gptq-bits-4-group-16-calib-batches-2.h5", g_dir);
    float file_loss = loss_of(path, false);
    cr_assert(fabsf(row_loss - file_loss) <= 1e-5f, "row %g vs exported file %g", row_loss, file_loss);
    size_t n;
    snprintf(path, sizeof path, "%s/cmp/compare.png", g_dir);
    char *png = test_slurp(path, &n);
    cr_assert(n > 1000 && !memcmp(png, "\x89PNG\r\n\x1a\n", 8), "compare.png is not a PNG");
    snprintf(path, sizeof path, "%s/cmp/compare.csv", g_dir);
    char *csv = test_slurp(path, NULL);
    const char *header =
        "method,w_bits,a_bits,group,val_loss,ppl,delta,delta_ft,bytes,bits_per_weight,gen_tokens_per_s,seconds\n";
    cr_assert(!strncmp(csv, header, strlen(header)), "%s", csv);
    snprintf(path, sizeof path, "%s/cmp/compare.md", g_dir);
    char *md = test_slurp(path, NULL);
    int lines = 0;
    for (const char *p = md; (p = strstr(p, "\n| ")); p++) lines++;
    cr_assert_eq(lines, 6, "header + 5 rows in compare.md:\n%s", md);
    cJSON_Delete(arr);
    free(json), free(png), free(csv), free(md);
}

Test(ptq_cli, compare_bad_input_fails_with_one_line) {
    char cmd[4096], err[1024];
    char *cfg = compare_config("bad1", "rtn --bits 4; gptx --bits 4", g_ckpt);
    snprintf(cmd, sizeof cmd, "compare %s", cfg);
    cr_assert_eq(test_run_qat(cmd, err, sizeof err), 2, "%s", err);
    cr_assert(strstr(err, "compare.ptq entry 2: method: 'gptx'"), "got '%s'", err);
    char other[1024];
    snprintf(other, sizeof other, "%s/corpus.txt", g_dir); /* any other file */
    cfg = compare_config("bad2", "rtn --bits 4 --group 16", other);
    snprintf(cmd, sizeof cmd, "compare %s", cfg);
    cr_assert_eq(test_run_qat(cmd, err, sizeof err), 2, "%s", err);
    cr_assert(strstr(err, "is not the compared float model"), "got '%s'", err);
    cr_assert(strchr(err, '\n') == strrchr(err, '\n'), "more than one line: %s", err);
}

/* Data-free: PTQ calibrates and QAT fine-tunes on sequences sampled from the
 * float model (one shared cache), and every row is scored on a text of its
 * own (compare.eval_data), all its windows. */
Test(ptq_cli, compare_data_free_on_a_text_of_its_own) {
    char yaml[4096], qat_yaml[2048], cmd[4096], err[1024], path[1024];
    char *text = test_corpus(3000, 77), *evalf = test_write(g_dir, "eval.txt", text);
    free(text);
    snprintf(qat_yaml, sizeof qat_yaml,
             "model: {n_layer: 2, n_head: 2, n_embd: 32, block_size: 16}\n"
             "data: {source: teacher, teacher: {sequences: 24, cache: %s/df/teacher-data.h5}}\n"
             "train: {batch_size: 8, iters: 6, lr: 1e-3, min_lr: 1e-3, warmup_iters: 0, eval_every: 1000, threads: 2}\n"
             "quant: {weight: {bits: 4, granularity: group, group_size: 16}, estimator: lsq, init_from: %s}\n"
             "out_dir: %s/df-qat\n",
             g_dir, g_ckpt, g_dir);
    char *qat_path = test_write(g_dir, "df-qat.yaml", qat_yaml);
    snprintf(yaml, sizeof yaml,
             "data: {source: teacher, teacher: {sequences: 24, cache: %s/df/teacher-data.h5}}\n"
             "train: {threads: 2}\n"
             "compare: {out_dir: %s/df, float_checkpoint: %s, eval_data: %s, gen_tokens: 16,\n"
             "          ptq: \"rtn --bits 4 --group 16; gptq --bits 4 --group 16 --calib-batches 2\", qat: %s}\n",
             g_dir, g_dir, g_ckpt, evalf, qat_path);
    snprintf(cmd, sizeof cmd, "compare %s", test_write(g_dir, "df.yaml", yaml));
    cr_assert_eq(test_run_qat(cmd, err, sizeof err), 0, "%s", err);
    snprintf(path, sizeof path, "%s/df/teacher-data.h5", g_dir);
    cr_assert_eq(access(path, R_OK), 0, "no teacher cache");
    snprintf(path, sizeof path, "%s/df/compare.json", g_dir);
    cJSON *arr = cJSON_Parse(test_slurp(path, NULL));
    cr_assert_eq(cJSON_GetArraySize(arr), 5, "float + 2 PTQ + float+ft + QAT");
    /* the float row is qat eval --data of the same text */
    double fl = cJSON_GetObjectItem(cJSON_GetArrayItem(arr, 0), "val_loss")->valuedouble;
    float want = eval_checkpoint(g_ckpt, &(EvalOptions){.data = evalf}).val_loss;
    cr_assert(fabs(fl - want) < 1e-5, "float row %.6f vs qat eval --data %.6f", fl, want);
    const cJSON *row;
    cJSON_ArrayForEach(row, arr) cr_assert(isfinite(cJSON_GetObjectItem(row, "val_loss")->valuedouble));
    cJSON_Delete(arr);
    /* without a text to score, data.source teacher is refused in one line */
    snprintf(yaml, sizeof yaml,
             "data: {source: teacher}\ncompare: {out_dir: %s/df2, float_checkpoint: %s, ptq: \"rtn --bits 4\"}\n", g_dir,
             g_ckpt);
    snprintf(cmd, sizeof cmd, "compare %s", test_write(g_dir, "df2.yaml", yaml));
    cr_assert_eq(test_run_qat(cmd, err, sizeof err), 2, "%s", err);
    cr_assert(strstr(err, "compare.eval_data"), "got '%s'", err);
}
