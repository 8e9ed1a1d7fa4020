/* test_kernels.c: every SIMD path of every kernel against the scalar
 * reference, on odd lengths with tails that are not multiples of the vector
 * width; integer dot products must agree exactly. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <math.h>
#include <stdlib.h>

#include "quant/kernels.h"
#include "testutil.h"

static const KernelPath PATHS[] = {KERN_SCALAR, KERN_AVX2, KERN_AVX512};

static const int LENS[] = {1, 2, 7, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 130, 255, 1000};

Test(kernels, dot_products_match_scalar_on_odd_lengths) {
    Rng r;
    rng_seed(&r, 1);
    int8_t a[1024], b[1024];
    uint8_t q4[512];
    float x[1024];
    for (int i = 0; i < 1024; i++) {
        a[i] = (int8_t)((int)rng_below(&r, 255) - 127); /* full symmetric code range, -127..127 */
        b[i] = (int8_t)((int)rng_below(&r, 255) - 127);
        x[i] = rng_normal(&r);
    }
    a[3] = 127, b[3] = 127, a[4] = -127, b[4] = -127; /* the extremes */
    for (int i = 0; i < 512; i++) q4[i] = (uint8_t)((1 + rng_below(&r, 15)) | (1 + rng_below(&r, 15)) << 4);
    int tested = 0;
    for (size_t p = 0; p < 3; p++) {
        if (!kernel_supported(PATHS[p])) continue;
        kernel_force(PATHS[p]);
        tested++;
        for (size_t k = 0; k < sizeof LENS / sizeof LENS[0]; k++) {
            int n = LENS[k];
            cr_assert_eq(kdot_i8_i8(a, b, n), kdot_i8_i8_scalar(a, b, n), "%s i8 n=%d", kernel_path_name(PATHS[p]), n);
            float ref = kdot_q8_f32_scalar(a, x, n), got = kdot_q8_f32(a, x, n);
            /* float sums in another order: relative to the sum of |terms| */
            float mag = 0;
            for (int i = 0; i < n; i++) mag += fabsf(a[i] * x[i]);
            cr_assert(fabsf(got - ref) <= 1e-5f * mag + 1e-6f, "%s q8 n=%d: %g vs %g", kernel_path_name(PATHS[p]), n, got, ref);
            int n2 = n & ~1;
            ref = kdot_q4_f32_scalar(q4, x, n2), got = kdot_q4_f32(q4, x, n2);
            cr_assert(fabsf(got - ref) <= 1e-5f * 8 * mag + 1e-6f, "%s q4 n=%d: %g vs %g", kernel_path_name(PATHS[p]), n2, got, ref);
        }
    }
    cr_assert_geq(tested, 1);
    kernel_force(KERN_SCALAR);
}

/* Weight-only and W8A8 products against a float computation from the same codes. */
Test(kernels, qgemm_matches_dequantized_reference) {
    int N = 37, K = 96, M = 5;
    Rng r;
    rng_seed(&r, 2);
    float *w = malloc(sizeof(float) * N * K), *x = malloc(sizeof(float) * M * K), *y = malloc(sizeof(float) * M * N);
    for (int i = 0; i < N * K; i++) w[i] = 0.1f * rng_normal(&r);
    for (int i = 0; i < M * K; i++) x[i] = rng_normal(&r);
    int8_t *xq = malloc((size_t)M * K);
    float xs[5];
    struct {
        int bits, group;
    } cases[] = {{8, 96}, {8, 32}, {4, 32}, {4, 96}};
    for (size_t c = 0; c < 4; c++) {
        QMatrix q;
        qmatrix_from_float(&q, w, N, K, cases[c].bits, cases[c].group, NULL);
        /* the reference: dequantized weights through the shared quantizer, in double */
        QuantSpec s = {.bits = cases[c].bits, .sym = true,
                       .gran = cases[c].group == K ? QG_CHANNEL : QG_GROUP, .group = cases[c].group};
        float *wd = malloc(sizeof(float) * N * K);
        quant_fake(&s, w, N, K, q.scales, NULL, wd);
        for (size_t p = 0; p < 3; p++) {
            if (!kernel_supported(PATHS[p])) continue;
            kernel_force(PATHS[p]);
            qgemm_f32(&q, x, M, y);
            for (int m = 0; m < M; m++)
                for (int n = 0; n < N; n++) {
                    double ref = 0;
                    for (int k = 0; k < K; k++) ref += (double)x[m * K + k] * wd[n * K + k];
                    cr_assert_float_eq(y[m * N + n], ref, 1e-4, "%s int%d g%d y[%d,%d]", kernel_path_name(PATHS[p]),
                                       cases[c].bits, cases[c].group, m, n);
                }
            if (cases[c].bits == 8) {
                qgemm_w8a8(&q, x, M, y, xq, xs);
                for (int m = 0; m < M; m++) {
                    QuantSpec a = {.bits = 8, .sym = true, .gran = QG_CHANNEL};
                    float xd[96], sx;
                    quant_minmax(&a, x + m * K, 1, K, &sx, NULL);
                    quant_fake(&a, x + m * K, 1, K, &sx, NULL, xd);
                    for (int n = 0; n < N; n++) {
                        double ref = 0;
                        for (int k = 0; k < K; k++) ref += (double)xd[k] * wd[n * K + k];
                        cr_assert_float_eq(y[m * N + n], ref, 1e-4, "%s w8a8 g%d y[%d,%d]", kernel_path_name(PATHS[p]),
                                           cases[c].group, m, n);
                    }
                }
            }
        }
        free(wd);
        qmatrix_free(&q);
    }
    kernel_force(KERN_SCALAR);
    free(w), free(x), free(y), free(xq);
}

Test(kernels, int4_nibble_order) {
    /* codes -7..7 stored as q+8, even column in the low nibble */
    float w[4] = {-7, 7, 1, 0}; /* per-channel scale 1 */
    QMatrix q;
    qmatrix_from_float(&q, w, 1, 4, 4, 4, NULL);
    cr_assert_float_eq(q.scales[0], 1.0f, 0);
    cr_assert_eq(q.q4[0], (uint8_t)(1 | 15 << 4));
    cr_assert_eq(q.q4[1], (uint8_t)(9 | 8 << 4));
    qmatrix_free(&q);
}

/* QAT_KERNEL picks the path; each Criterion test runs in its own process, so
 * the choice is made afresh here. */
Test(kernels, env_selects_path) {
    setenv("QAT_KERNEL", "scalar", 1);
    cr_assert_eq(kernel_path(), KERN_SCALAR);
}

static void redirect(void) { cr_redirect_stderr(); }
Test(kernels, env_rejects_unknown_path, .exit_code = 2, .init = redirect) {
    setenv("QAT_KERNEL", "avx9000", 1);
    kernel_path();
}
