/* test_gemm.c: the blocked float product (autograd/gemm.c) against the
 * double-precision triple loop on every layout, edge and slab count; the
 * same bits from any thread count; nothing written outside C; the row
 * sums of A (a linear layer's bias grad); and the
 * linear op's gradients on shapes large enough to take the kernel.
 *
 * Bound: a float sum of K products differs from the exact one by at most
 * about K * 2^-24 * sum |a_k b_k|; 2^-16 * sum |a_k b_k| (plus the same of
 * beta*C and the bias) covers K up to 256 with room and any K in practice,
 * since rounding errors of blocked sums grow like sqrt(K). A wrong index
 * misses by a whole term. */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/fastmath.h"
#include "autograd/gemm.h"
#include "testutil.h"

static float urand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) & 0xFFFFFF) / 16777216.0f * 2.0f - 1.0f;
}

static float *randv(size_t n, uint64_t *s) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = urand(s);
    return p;
}

static float *ws_alloc(size_t n) { return n ? aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64) : NULL; }
static float *ws_for(const Gemm *g) { return ws_alloc(gemm_ws_floats(g)); }

/* Runs g on C (ldc-padded, sentinel between rows) and checks it against the
 * reference; returns the worst error over its bound. */
static double check_one(Gemm g, bool kernel, uint64_t *s) {
    size_t csz = (size_t)g.M * g.ldc;
    float *c0 = randv(csz, s), *c1 = malloc(csz * sizeof(float)), *c2 = malloc(csz * sizeof(float));
    for (int i = 0; i < g.M; i++)
        for (int j = g.N; j < g.ldc; j++) c0[(size_t)i * g.ldc + j] = 1234.5f; /* padding */
    if (g.beta == 0.0f)
        for (int i = 0; i < g.M; i++)
            for (int j = 0; j < g.N; j++) c0[(size_t)i * g.ldc + j] = NAN; /* must not be read */
    memcpy(c1, c0, csz * sizeof(float));
    memcpy(c2, c0, csz * sizeof(float));
    float *ws = kernel ? ws_alloc(gemm_kernel_ws_floats(&g)) : ws_for(&g);
    float *s0 = NULL, *s1 = NULL, *s2 = NULL; /* row sums of A, from random starting values */
    if (g.asum) {
        s0 = randv((size_t)g.M, s), s1 = malloc((size_t)g.M * sizeof(float)), s2 = malloc((size_t)g.M * sizeof(float));
        memcpy(s1, s0, (size_t)g.M * sizeof(float));
        memcpy(s2, s0, (size_t)g.M * sizeof(float));
    }
    g.C = c1;
    g.asum = s1;
    if (kernel) gemm_run_kernel(&g, ws);
    else gemm_run(&g, ws);
    g.C = c2;
    g.asum = s2;
    gemm_ref(&g);
    for (int i = 0; s0 && i < g.M; i++) {
        double mag = fabs(s0[i]);
        for (int k = 0; k < g.K; k++) mag += fabs(g.ta ? g.A[(size_t)k * g.lda + i] : g.A[(size_t)i * g.lda + k]);
        cr_assert_leq(fabs((double)s1[i] - s2[i]), ldexp(mag, -16), "row sum %d of A: %g, expected %g", i, s1[i], s2[i]);
    }
    free(s0), free(s1), free(s2);
    double worst = 0.0;
    for (int i = 0; i < g.M; i++)
        for (int j = 0; j < g.ldc; j++) {
            size_t o = (size_t)i * g.ldc + j;
            if (j >= g.N) {
                cr_assert(c1[o] == 1234.5f, "wrote padding at (%d,%d) of M %d N %d ldc %d", i, j, g.M, g.N, g.ldc);
                continue;
            }
            double mag = 0.0;
            for (int k = 0; k < g.K; k++) {
                float a = g.ta ? g.A[(size_t)k * g.lda + i] : g.A[(size_t)i * g.lda + k];
                float b = g.tb ? g.B[(size_t)j * g.ldb + k] : g.B[(size_t)k * g.ldb + j];
                mag += fabs((double)a * b);
            }
            mag = fabs(g.alpha) * mag + (g.bias ? fabs(g.bias[j]) : 0.0) +
                  (g.beta != 0.0f ? fabs(g.beta * c0[o]) : 0.0);
            double err = fabs((double)c1[o] - c2[o]);
            double r = err / (ldexp(mag, -16) + 1e-30);
            cr_assert(isfinite(c1[o]), "non-finite C(%d,%d) = %g", i, j, c1[o]);
            if (r > worst) worst = r;
        }
    free(c0), free(c1), free(c2), free(ws);
    return worst;
}

static Gemm make(bool ta, bool tb, int M, int N, int K, int pad, uint64_t *s) {
    Gemm g = {.ta = ta, .tb = tb, .M = M, .N = N, .K = K, .alpha = 1.0f};
    g.lda = (ta ? M : K) + pad;
    g.ldb = (tb ? K : N) + pad;
    g.ldc = N + pad;
    g.A = randv((size_t)g.lda * (ta ? K : M), s);
    g.B = randv((size_t)g.ldb * (tb ? N : K), s);
    return g;
}

static void release(Gemm *g) {
    free((void *)g->A), free((void *)g->B), free((void *)g->bias);
}

Test(gemm, blocked_matches_reference) {
    if (!gemm_kernel_available()) cr_skip_test("no AVX-512 on this CPU: products run on OpenBLAS");
    gemm_use_kernel(true);
    uint64_t s = 7;
    /* M around the 12-row tile and the 96-row block, N around 16 and 32,
     * K of one slab, a slab boundary and several slabs */
    const int Ms[] = {12, 13, 23, 97, 200};
    const int Ns[] = {5, 16, 17, 32, 33, 65, 130};
    const int Ks[] = {40, 256, 257, 700};
    int n = 0;
    double worst = 0.0;
    for (int mi = 0; mi < 5; mi++)
        for (int ni = 0; ni < 7; ni++)
            for (int ki = 0; ki < 4; ki++) {
                int v = n++;
                bool ta = v & 1, tb = (v >> 1) & 1;
                Gemm g = make(ta, tb, Ms[mi], Ns[ni], Ks[ki], v % 3, &s);
                g.alpha = v % 5 == 0 ? 0.37f : 1.0f;
                g.beta = (float[]){0.0f, 1.0f, -0.5f}[v % 3];
                if (v % 4 == 1) g.bias = randv((size_t)g.N, &s);
                float dummy;
                if (v % 3 == 2) g.asum = &dummy; /* check_one gives it real arrays */
                double w = check_one(g, true, &s);
                cr_assert_leq(w, 1.0, "M %d N %d K %d ta %d tb %d alpha %g beta %g bias %d asum %d: error %.3g of the bound",
                              g.M, g.N, g.K, ta, tb, g.alpha, g.beta, g.bias != NULL, g.asum != NULL, w);
                if (w > worst) worst = w;
                release(&g);
            }
    cr_log_info("%d products, worst error %.3g of the bound", n, worst);
}

/* Every element is one tile's sum in a fixed order, so the threads only
 * decide who computes it: one thread, two, and a call from inside a parallel
 * region (each thread its own product and workspace) give the same bits. */
Test(gemm, same_bits_on_any_thread_count) {
    if (!gemm_kernel_available()) cr_skip_test("no AVX-512 on this CPU");
    gemm_use_kernel(true);
    uint64_t s = 11;
    for (int v = 0; v < 4; v++) {
        Gemm g = make(v & 1, v >> 1, 301, 77, 300, 1, &s);
        g.bias = randv(77, &s);
        size_t csz = (size_t)g.M * g.ldc;
        float *c[3], *sums = calloc(4 * (size_t)g.M, sizeof(float));
        for (int r = 0; r < 3; r++) c[r] = calloc(csz, sizeof(float));
        omp_set_num_threads(1);
        float *ws = ws_for(&g);
        g.C = c[0];
        g.asum = sums;
        gemm_run(&g, ws);
        free(ws);
        omp_set_num_threads(2);
        ws = ws_for(&g);
        g.C = c[1];
        g.asum = sums + g.M;
        gemm_run(&g, ws);
        free(ws);
        float *part = calloc(2 * csz, sizeof(float));
#pragma omp parallel num_threads(2)
        {
            Gemm h = g;
            h.C = part + (size_t)omp_get_thread_num() * csz;
            h.asum = sums + (size_t)(2 + omp_get_thread_num()) * g.M;
            float *w = ws_for(&h);
            gemm_run(&h, w);
            free(w);
        }
        cr_assert(!memcmp(c[0], c[1], csz * sizeof(float)), "1 and 2 threads differ (ta %d tb %d)", v & 1, v >> 1);
        cr_assert(!memcmp(c[0], part, csz * sizeof(float)) && !memcmp(c[0], part + csz, csz * sizeof(float)),
                  "inside a parallel region the product differs (ta %d tb %d)", v & 1, v >> 1);
        for (int r = 1; r < 4; r++)
            cr_assert(!memcmp(sums, sums + (size_t)r * g.M, (size_t)g.M * sizeof(float)), "row sums differ (run %d)", r);
        for (int r = 0; r < 3; r++) free(c[r]);
        free(part), free(sums);
        release(&g);
    }
}

/* Small products and K = 0 go to OpenBLAS (or the bias alone) and still obey
 * the same contract. */
Test(gemm, small_and_empty_products) {
    uint64_t s = 3;
    Gemm g = make(false, true, 3, 4, 5, 0, &s);
    g.bias = randv(4, &s);
    cr_assert_eq(gemm_ws_floats(&g), 0);
    cr_assert_leq(check_one(g, false, &s), 1.0);
    release(&g);
    g = make(true, false, 6, 7, 0, 1, &s);
    g.beta = 0.5f;
    g.bias = randv(7, &s);
    cr_assert_leq(check_one(g, false, &s), 1.0);
    release(&g);
}

/* The linear op's backward on the kernel: dx, dw and the bias against
 * central differences (test_grad's tolerance), M = 2*31 rows, N = 37, K = 40. */
static Tensor *f_linear(Tape *t, Tensor **in, void *c) { (void)c; return op_linear(t, in[0], in[1], in[2]); }
Test(gemm, linear_gradients_on_the_kernel) {
    GcInput spec[] = {{"x", 3, {2, 31, 40}, true}, {"w", 2, {37, 40}, true}, {"b", 1, {37}, true}};
    Gemm probe = {.M = 62, .N = 37, .K = 40, .lda = 40, .ldb = 40, .ldc = 37};
    if (gemm_kernel_available()) cr_assert(gemm_ws_floats(&probe) > 0, "the test shape should take the kernel");
    GcResult r = gradcheck(f_linear, NULL, 3, spec, 5, 1e-2f, 1e-3f, 1e-2f);
    cr_assert(r.checked > 0);
    cr_assert_leq(r.worst, 1.0, "worst ratio %.3g, max abs err %.3g over %zu elements", r.worst, r.max_abs_err,
                  r.checked);
}

/* Each epilogue is its function applied to the finished product, exactly:
 * the same C with and without it, on the kernel, on one and several slabs. */
Test(gemm, epilogues_apply_to_the_finished_product) {
    if (!gemm_kernel_available()) cr_skip_test("no AVX-512 on this CPU");
    uint64_t s = 23;
    const int Ks[] = {40, 300};
    for (int ki = 0; ki < 2; ki++)
        for (int v = 0; v < 4; v++) {
            Gemm g = make(v & 1, v >> 1, 101, 70, Ks[ki], 2, &s);
            g.bias = randv(70, &s);
            size_t csz = (size_t)g.M * g.ldc;
            float *c0 = calloc(csz, sizeof(float)), *c1 = calloc(csz, sizeof(float)), *aux = calloc(csz, sizeof(float));
            float *mul = randv(csz, &s);
            float *ws = ws_alloc(gemm_kernel_ws_floats(&g));
            g.C = c0;
            gemm_run_kernel(&g, ws);
            for (int e = GEMM_EPI_GELU; e <= GEMM_EPI_MUL; e++) {
                Gemm h = g;
                h.C = c1;
                h.epi = (GemmEpi)e;
                h.aux = e == GEMM_EPI_MUL ? mul : aux;
                gemm_run_kernel(&h, ws);
                for (int i = 0; i < g.M; i++)
                    for (int j = 0; j < g.N; j++) {
                        size_t o = (size_t)i * g.ldc + j;
                        float want_c = c0[o], want_aux = 0.0f;
                        if (e == GEMM_EPI_GELU) want_aux = fast_gelu(c0[o]);
                        if (e == GEMM_EPI_GELU_D) fast_gelu_both(c0[o], &want_aux, &want_c);
                        if (e == GEMM_EPI_MUL) want_c = c0[o] * mul[o];
                        cr_assert(c1[o] == want_c, "epilogue %d K %d: C(%d,%d) = %.9g, expected %.9g", e, g.K, i, j,
                                  c1[o], want_c);
                        if (e != GEMM_EPI_MUL)
                            cr_assert(aux[o] == want_aux, "epilogue %d K %d: aux(%d,%d) = %.9g, expected %.9g", e,
                                      g.K, i, j, aux[o], want_aux);
                    }
            }
            free(c0), free(c1), free(aux), free(mul), free(ws);
            release(&g);
        }
}

/* op_mlp against op_linear, op_gelu, op_linear: the same output and the
 * same grads for every input, bit for bit (same products, same GELU). */
Test(gemm, mlp_equals_linear_gelu_linear) {
    Params p;
    params_init(&p);
    Tensor *x = params_add(&p, "x", 3, (int[]){2, 64, 48}), *w1 = params_add(&p, "w1", 2, (int[]){96, 48});
    Tensor *b1 = params_add(&p, "b1", 1, (int[]){96}), *w2 = params_add(&p, "w2", 2, (int[]){40, 96});
    Tensor *b2 = params_add(&p, "b2", 1, (int[]){40});
    params_finalize(&p);
    uint64_t s = 31;
    for (size_t i = 0; i < p.numel; i++) p.data[i] = urand(&s);
    size_t ny = 2 * 64 * 40;
    float *seed = randv(ny, &s), *y0 = malloc(ny * sizeof(float)), *g0 = malloc(p.numel * sizeof(float));
    Tape t;
    tape_init(&t, 1 << 20);
    for (int fused = 0; fused < 2; fused++) {
        tape_reset(&t);
        params_zero_grad(&p);
        Tensor *y = fused ? op_mlp(&t, x, w1, b1, w2, b2)
                          : op_linear(&t, op_gelu(&t, op_linear(&t, x, w1, b1)), w2, b2);
        tape_backward_seed(&t, y, seed);
        if (!fused) {
            memcpy(y0, y->data, ny * sizeof(float));
            memcpy(g0, p.grad, p.numel * sizeof(float));
            continue;
        }
        cr_assert(!memcmp(y0, y->data, ny * sizeof(float)), "fused MLP output differs");
        for (int k = 0; k < p.n; k++) {
            Tensor *q = p.list[k];
            cr_assert(!memcmp(g0 + (q->data - p.data), q->grad, q->numel * sizeof(float)), "grad of %s differs",
                      q->name);
        }
    }
    tape_free(&t);
    params_free(&p);
    free(seed), free(y0), free(g0);
}
