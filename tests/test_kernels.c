/* test_kernels.c: every SIMD path of every kernel against the scalar
 * reference, on odd lengths with tails that are not multiples of the vector
 * width; integer dot products must agree exactly. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "quant/kernels.h"
#include "testutil.h"

static const KernelPath PATHS[] = {KERN_SCALAR, KERN_AVX2, KERN_AVX512};

/* What the weight-only int8, int4 and table panels (AVX-512) may add to float
 * rounding: x in 16 bits of each block's max |x| (blocks of `block`
 * columns), a step of about 2^-14 of it, here allowed a whole step per
 * weight. wd: the weights of one output row as float, x its input [K]. */
static double fixed_point_bound(const float *x, const float *wd, int K, int block) {
    double b = 0;
    for (int k0 = 0; k0 < K; k0 += block) {
        float mx = 0;
        double ws = 0;
        for (int k = k0; k < K && k < k0 + block; k++) mx = fmaxf(mx, fabsf(x[k])), ws += fabs(wd[k]);
        b += ldexp(mx, -14) * ws;
    }
    return b;
}

/* One activation row through qgemv_team (a team of 3, each its own
 * scratch of sb bytes) as through qgemm_f32 with M = 1, to float rounding. */
static void check_team(const QMatrix *q, const float *x, float *yt, float *y, char *scratch, size_t sb) {
#pragma omp parallel num_threads(3)
    qgemv_team(q, false, x, NULL, NULL, yt, scratch + (size_t)omp_get_thread_num() * sb);
    qgemm_f32(q, x, 1, y);
    for (int n = 0; n < q->rows; n++)
        cr_assert(fabsf(yt[n] - y[n]) <= 1e-5f * (1.0f + fabsf(y[n])), "%s team y[%d]", kernel_path_name(kernel_path()), n);
}

/* Row primitives: every path against the scalar reference, per channel on
 * odd lengths (masked tails) and grouped. */
Test(kernels, rows_match_scalar_on_odd_lengths) {
    Rng r;
    rng_seed(&r, 1);
    int8_t a[1024];
    uint8_t q4[512];
    float x[1024], xs[1024], sc[64];
    for (int i = 0; i < 1024; i++) {
        a[i] = (int8_t)((int)rng_below(&r, 255) - 127); /* full symmetric code range, -127..127 */
        x[i] = rng_normal(&r);
    }
    a[3] = 127, a[4] = -127;
    for (int i = 0; i < 512; i++) q4[i] = (uint8_t)(rng_below(&r, 16) | rng_below(&r, 16) << 4); /* codes -8..7 */
    for (int i = 0; i < 64; i++) sc[i] = 0.01f + 0.1f * rng_uniform(&r);
    struct {
        int n, group;
    } cases[] = {{1, 1}, {2, 2}, {7, 7}, {15, 15}, {16, 16}, {17, 17}, {31, 31}, {33, 33}, {64, 64}, {65, 65},
                 {100, 100}, {130, 130}, {255, 255}, {1000, 1000}, {96, 32}, {128, 16}, {512, 64}, {192, 96}, {1024, 128}};
    int tested = 0;
    for (size_t p = 0; p < 3; p++) {
        if (!kernel_supported(PATHS[p])) continue;
        kernel_force(PATHS[p]);
        tested++;
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            int n = cases[c].n, G = cases[c].group;
            /* float sums in another order: relative to the sum of |terms| */
            float mag = 0;
            for (int i = 0; i < n; i++) mag += fabsf(a[i] * sc[i / G] * x[i]);
            /* nrows 1 and 3: the second and third rows start G and 2G codes in */
            int nr = 3 * n <= 1024 && 3 * (n / G) <= 64 ? 3 : 1;
            float ref3[3], got3[3];
            krows_q8_f32_scalar(a, sc, G, x, n, nr, ref3);
            krows_q8_f32(a, sc, G, x, n, nr, got3);
            for (int rr = 1; rr < nr; rr++)
                cr_assert(fabsf(got3[rr] - ref3[rr]) <= 1e-5f * 3 * mag + 1e-5f, "%s q8 row %d n=%d g=%d",
                          kernel_path_name(PATHS[p]), rr, n, G);
            float ref = ref3[0], got = got3[0];
            cr_assert(fabsf(got - ref) <= 1e-5f * mag + 1e-6f, "%s q8 n=%d g=%d: %g vs %g", kernel_path_name(PATHS[p]), n, G,
                      got, ref);
            if (n % 2 || G % 2) continue;
            kx_split(x, n, xs);
            krows_q4_f32_scalar(q4, sc, G, xs, n, nr, ref3);
            krows_q4_f32(q4, sc, G, xs, n, nr, got3);
            for (int rr = 1; rr < nr; rr++)
                cr_assert(fabsf(got3[rr] - ref3[rr]) <= 1e-5f * 24 * mag + 1e-5f, "%s q4 row %d n=%d g=%d",
                          kernel_path_name(PATHS[p]), rr, n, G);
            ref = ref3[0], got = got3[0];
            cr_assert(fabsf(got - ref) <= 1e-5f * 8 * mag + 1e-6f, "%s q4 n=%d g=%d: %g vs %g", kernel_path_name(PATHS[p]), n,
                      G, got, ref);
        }
    }
    cr_assert_geq(tested, 1);
    kernel_force(KERN_SCALAR);
}

/* W8A8 panels: integer accumulation and the same float epilogue everywhere,
 * so every path must equal the scalar reference exactly; shapes with row
 * counts that leave partial panels and activation rows that leave partial
 * tiles. */
Test(kernels, w8a8_paths_equal_scalar_exactly) {
    struct {
        int N, K, G, M;
    } cases[] = {{37, 96, 96, 5}, {16, 4, 4, 1}, {50, 132, 44, 9}, {33, 256, 32, 70}, {1, 64, 64, 3}};
    Rng r;
    rng_seed(&r, 3);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int N = cases[c].N, K = cases[c].K, M = cases[c].M;
        float *w = malloc(sizeof(float) * N * K), *x = malloc(sizeof(float) * M * K);
        float *ref = malloc(sizeof(float) * M * N), *y = malloc(sizeof(float) * M * N), *xs = malloc(sizeof(float) * M);
        int8_t *xq = malloc((size_t)M * K);
        for (int i = 0; i < N * K; i++) w[i] = 0.1f * rng_normal(&r);
        for (int i = 0; i < M * K; i++) x[i] = rng_normal(&r);
        w[0] = 1e3f, w[1] = -1e3f, x[0] = -1e3f; /* codes +-127 against -127 */
        if (M > 1 && K > 5) { /* a row with scale 1 and ties: rounding half to even in every path */
            float *t = x + (size_t)(M - 1) * K;
            t[0] = 127.0f, t[1] = 2.5f, t[2] = -3.5f, t[3] = 0.5f, t[4] = -0.5f, t[5] = 126.5f;
        }
        QMatrix q;
        qmatrix_from_float(&q, w, N, K, 8, cases[c].G, NULL);
        qmatrix_pack_w8a8(&q);
        for (int m = 0; m < M; m++) kquant_row_i8_scalar(x + (size_t)m * K, K, xq + (size_t)m * K, xs + m);
        kw8a8_panels_scalar(&q, xq, xs, M, 0, (N + QPANEL - 1) / QPANEL, ref);
        for (size_t p = 0; p < 3; p++) {
            if (!kernel_supported(PATHS[p])) continue;
            kernel_force(PATHS[p]);
            memset(y, 0, sizeof(float) * M * N);
            qgemm_w8a8(&q, x, M, y, xq, xs);
            for (int i = 0; i < M * N; i++)
                cr_assert(y[i] == ref[i], "%s N=%d K=%d G=%d M=%d: y[%d] %.9g vs %.9g", kernel_path_name(PATHS[p]), N, K,
                          cases[c].G, M, i, y[i], ref[i]);
        }
        qmatrix_free(&q);
        free(w), free(x), free(ref), free(y), free(xs), free(xq);
    }
    kernel_force(KERN_SCALAR);
}

/* Weight-only and W8A8 products against a float computation from the same codes. */
Test(kernels, qgemm_matches_dequantized_reference) {
    /* 5 and 20 activation rows go through the row primitives (or the
     * panels), MT = 2752 rows (activations past 2^18 floats) through the
     * dequantized tiles (scalar, AVX2) or the panels in two blocks of rows
     * (AVX-512); every 43rd of those is checked */
    int N = 37, K = 96, M = 20, MT = 2752;
    Rng r;
    rng_seed(&r, 2);
    float *w = malloc(sizeof(float) * N * K), *x = malloc(sizeof(float) * MT * K), *y = malloc(sizeof(float) * (M + 5) * N);
    float *yt = malloc(sizeof(float) * MT * N);
    for (int i = 0; i < N * K; i++) w[i] = 0.1f * rng_normal(&r);
    for (int i = 0; i < MT * K; i++) x[i] = rng_normal(&r);
    int8_t *xq = malloc((size_t)M * K);
    float xs[20];
    struct {
        int bits, group;
    } cases[] = {{8, 96}, {8, 32}, {4, 32}, {4, 96}};
    for (size_t c = 0; c < 4; c++) {
        QMatrix q;
        qmatrix_from_float(&q, w, N, K, cases[c].bits, cases[c].group, NULL);
        if (cases[c].bits == 8) qmatrix_pack_w8a8(&q);
        /* the reference: dequantized weights through the shared quantizer, in double */
        QuantSpec s = {.bits = cases[c].bits, .sym = true,
                       .gran = cases[c].group == K ? QG_CHANNEL : QG_GROUP, .group = cases[c].group};
        float *wd = malloc(sizeof(float) * N * K);
        quant_fake(&s, w, N, K, q.scales, NULL, wd);
        for (size_t p = 0; p < 3; p++) {
            if (!kernel_supported(PATHS[p])) continue;
            kernel_force(PATHS[p]);
            qgemm_f32(&q, x, 5, y);
            qgemm_f32(&q, x, M, y + 5 * N);
            for (int m = 0; m < M + 5; m++)
                for (int n = 0; n < N; n++) {
                    double ref = 0;
                    const float *xm = x + (m < 5 ? m : m - 5) * K;
                    for (int k = 0; k < K; k++) ref += (double)xm[k] * wd[n * K + k];
                    double tol = 1e-4 + fixed_point_bound(xm, wd + n * K, K, kact_block(&q));
                    cr_assert_float_eq(y[m * N + n], ref, tol, "%s int%d g%d y[%d,%d]", kernel_path_name(PATHS[p]),
                                       cases[c].bits, cases[c].group, m, n);
                }
            qgemm_f32(&q, x, MT, yt);
            for (int m = 0; m < MT; m += 43)
                for (int n = 0; n < N; n++) {
                    double ref = 0;
                    for (int k = 0; k < K; k++) ref += (double)x[m * K + k] * wd[n * K + k];
                    double tol = 1e-4 + fixed_point_bound(x + m * K, wd + n * K, K, kact_block(&q));
                    cr_assert_float_eq(yt[m * N + n], ref, tol, "%s int%d g%d tiles y[%d,%d]", kernel_path_name(PATHS[p]),
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
    free(w), free(x), free(y), free(xq), free(yt);
}

static void relu_epi(float *y, int n) {
    for (int i = 0; i < n; i++) y[i] = y[i] > 0.0f ? y[i] : 0.0f;
}

/* The AVX-512 int4 and int8 panels (16 rows per lane set) for every group
 * size they take, N not a multiple of 16, 1 and 3 activation rows: against a double
 * sum at the float-level bound of the plane test. Then the one-row team
 * product (every thread its share, bias and epilogue) on every path and
 * scheme equals qgemm_f32 plus the bias and epilogue exactly. */
Test(kernels, panels_and_team_product) {
    enum { N = 37, K = 256, M = 3 };
    static float w[N * K], x[M * K], y[M * N], yr[N], bias[N];
    Rng r;
    rng_seed(&r, 5);
    for (int i = 0; i < N * K; i++) w[i] = 0.1f * rng_normal(&r);
    /* row 0 plain, row 1 with a few elements 30x, row 2 with a few 1e4x the
     * rest (the fixed point then holds the small ones to 2^-15 of their
     * block's max) */
    for (int i = 0; i < M * K; i++) x[i] = rng_normal(&r) * (i % 61 == 3 ? (i < 2 * K ? 30.0f : 1e4f) : 1.0f);
    for (int i = 0; i < N; i++) bias[i] = rng_normal(&r);
    static const int groups[] = {8, 16, 32, 64, 128, K};
    if (kernel_supported(KERN_AVX512)) {
        KernelPath old = kernel_force(KERN_AVX512);
        for (size_t gi = 0; gi < 2 * sizeof groups / sizeof groups[0]; gi++) {
            int G = groups[gi % 6], ng = K / G, bits = gi < 6 ? 4 : 8;
            QMatrix q;
            qmatrix_from_float(&q, w, N, K, bits, G, NULL);
            cr_assert(bits == 4 ? q.p4 != NULL : q.p8 != NULL, "int%d g%d: no panels", bits, G);
            qgemm_f32(&q, x, M, y);
            int B = kact_block(&q);
            cr_assert_eq(B, G % 32 ? G : 32, "g%d: activation blocks of %d", G, B);
            for (int m = 0; m < M; m++) {
                /* 16 bits of each block's max (steps of about 2^-14 of it,
                 * rounded to half a step; the bound allows a whole step) */
                float bmax[K];
                for (int k = 0; k < K; k++) bmax[k] = 0;
                for (int k = 0; k < K; k++) bmax[k / B * B] = fmaxf(bmax[k / B * B], fabsf(x[m * K + k]));
                for (int n = 0; n < N; n++) {
                    double ref = 0, mag = 0, fix = 0;
                    for (int k = 0; k < K; k++) {
                        int code = bits == 8 ? q.q8[n * K + k]
                                             : (k % 2 ? q.q4[(n * K + k) / 2] >> 4 : q.q4[(n * K + k) / 2] & 15) - 8;
                        double wv = (double)code * q.scales[n * ng + k / G];
                        ref += wv * x[m * K + k], mag += fabs(wv * x[m * K + k]);
                        fix += fabs(wv) * ldexp(bmax[k / B * B], -14);
                    }
                    double tol = 1e-6 * mag + fix;
                    cr_assert(fabs(y[m * N + n] - ref) <= tol, "int%d g%d y[%d,%d] = %.9g, double %.9g (tol %.3g)", bits, G,
                              m, n, y[m * N + n], ref, tol);
                }
            }
            /* NaN or Inf in x: no planes; the float row primitives give a
             * non-finite result as fake quantization does */
            float xb[K];
            memcpy(xb, x, sizeof xb);
            xb[7] = NAN;
            qgemm_f32(&q, xb, 1, y);
            cr_assert(isnan(y[0]), "int%d g%d: NaN in x gave %g", bits, G, y[0]);
            xb[7] = INFINITY;
            qgemm_f32(&q, xb, 1, y);
            for (int n = 0; n < N; n++) cr_assert(!isfinite(y[n]), "int%d g%d: Inf in x gave y[%d] = %g", bits, G, n, y[n]);
            qmatrix_free(&q);
        }
        kernel_force(old);
    }
    if (kernel_supported(KERN_AVX512)) {
        /* past 2^18 activation floats the panels run in blocks
         * of rows: each row's outputs equal its own one-row product exactly */
        KernelPath old = kernel_force(KERN_AVX512);
        enum { KB = 1024, MB = 264 };
        float *wb = malloc(sizeof(float) * N * KB), *xbig = malloc(sizeof(float) * MB * KB), *yb = malloc(sizeof(float) * MB * N);
        for (int i = 0; i < N * KB; i++) wb[i] = 0.1f * rng_normal(&r);
        for (int i = 0; i < MB * KB; i++) xbig[i] = rng_normal(&r);
        for (int bits = 4; bits <= 8; bits += 4) {
            QMatrix q;
            qmatrix_from_float(&q, wb, N, KB, bits, bits == 4 ? 32 : KB, NULL);
            qgemm_f32(&q, xbig, MB, yb);
            for (int m = 0; m < MB; m += 37) {
                float y1[N];
                qgemm_f32(&q, xbig + (size_t)m * KB, 1, y1);
                for (int n = 0; n < N; n++)
                    cr_assert_eq(yb[m * N + n], y1[n], "int%d blocked row %d out %d: %.9g vs %.9g", bits, m, n, yb[m * N + n], y1[n]);
            }
            qmatrix_free(&q);
        }
        free(wb), free(xbig), free(yb);
        kernel_force(old);
    }
    static const int schemes[][2] = {{4, 32}, {4, K}, {8, K}, {8, 32}, {-8, K}}; /* -8: W8A8 */
    for (size_t p = 0; p < 3; p++) {
        if (!kernel_supported(PATHS[p])) continue;
        KernelPath old = kernel_force(PATHS[p]);
        for (size_t si = 0; si < sizeof schemes / sizeof schemes[0]; si++) {
            bool w8a8 = schemes[si][0] < 0;
            QMatrix q;
            qmatrix_from_float(&q, w, N, K, w8a8 ? 8 : schemes[si][0], schemes[si][1], NULL);
            int8_t xq[K];
            float xs;
            if (w8a8) {
                qmatrix_pack_w8a8(&q);
                qgemm_w8a8(&q, x, 1, yr, xq, &xs);
            } else {
                qgemm_f32(&q, x, 1, yr);
            }
            for (int n = 0; n < N; n++) yr[n] += bias[n];
            relu_epi(yr, N);
            size_t sb = qgemv_team_scratch_bytes(K);
            char *scratch = malloc(4 * sb);
#pragma omp parallel num_threads(3)
            qgemv_team(&q, w8a8, x, bias, relu_epi, y, scratch + (size_t)omp_get_thread_num() * sb);
            for (int n = 0; n < N; n++)
                cr_assert_eq(y[n], yr[n], "%s scheme %zu y[%d]: team %.9g, qgemm %.9g", kernel_path_name(PATHS[p]), si, n,
                             y[n], yr[n]);
            free(scratch);
            qmatrix_free(&q);
        }
        kernel_force(old);
    }
}

/* ggml's q4_0 codes reach -8 (its d = max / -8), and q4_1 adds an offset
 * per block: given codes -8..7 in groups of 32, without and with offsets,
 * through every product path (row primitives, panels, dequantized tiles,
 * the team product) against a double sum. */
Test(kernels, int4_codes_down_to_minus_8_on_every_path) {
    enum { N = 37, K = 128, MT = 2100 };
    Rng r;
    rng_seed(&r, 8);
    int8_t *codes = malloc(N * K);
    float sc[N * K / 32], off[N * K / 32], *x = malloc(sizeof(float) * MT * K), *y = malloc(sizeof(float) * MT * N), yt[N];
    for (int i = 0; i < N * K; i++) codes[i] = (int8_t)((int)rng_below(&r, 16) - 8);
    for (int i = 0; i < N; i++) codes[i * K + 5] = -8; /* every row has one */
    for (int i = 0; i < N * K / 32; i++) sc[i] = (rng_below(&r, 2) ? 1.0f : -1.0f) * (0.01f + 0.05f * rng_uniform(&r));
    for (int i = 0; i < N * K / 32; i++) off[i] = 0.3f * rng_normal(&r);
    for (int i = 0; i < MT * K; i++) x[i] = rng_normal(&r);
    size_t sb = qgemv_team_scratch_bytes(K);
    char *scratch = malloc(4 * sb);
    for (size_t p = 0; p < 6; p++) {
        bool with_off = p >= 3;
        if (!kernel_supported(PATHS[p % 3])) continue;
        KernelPath old = kernel_force(PATHS[p % 3]);
        QMatrix q;
        qmatrix_from_codes(&q, codes, N, K, 4, 32, sc, with_off ? off : NULL);
        const int Ms[] = {1, 5, 20, MT};
        for (size_t mi = 0; mi < 4; mi++) {
            qgemm_f32(&q, x, Ms[mi], y);
            for (int m = 0; m < Ms[mi]; m += Ms[mi] > 100 ? 41 : 1)
                for (int n = 0; n < N; n++) {
                    double ref = 0;
                    float wn[K];
                    for (int k = 0; k < K; k++) {
                        wn[k] = (float)codes[n * K + k] * sc[(n * K + k) / 32] + (with_off ? off[(n * K + k) / 32] : 0.0f);
                        ref += ((double)codes[n * K + k] * sc[(n * K + k) / 32] + (with_off ? off[(n * K + k) / 32] : 0.0)) *
                               x[m * K + k];
                    }
                    double tol = 1e-4 + fixed_point_bound(x + m * K, wn, K, 32);
                    cr_assert_float_eq(y[m * N + n], ref, tol, "%s%s M=%d y[%d,%d]", kernel_path_name(PATHS[p % 3]),
                                       with_off ? " offsets" : "", Ms[mi], m, n);
                }
        }
        qgemm_f32(&q, x, 1, y);
#pragma omp parallel num_threads(3)
        qgemv_team(&q, false, x, NULL, NULL, yt, scratch + (size_t)omp_get_thread_num() * sb);
        for (int n = 0; n < N; n++) cr_assert_eq(yt[n], y[n], "%s team y[%d]", kernel_path_name(PATHS[p % 3]), n);
        qmatrix_free(&q);
        kernel_force(old);
    }
    free(codes), free(x), free(y), free(scratch);
}

/* llama.cpp's arithmetic for its block formats: activations in q8_0 blocks
 * of 32, y = sum over blocks of (weight scale x activation scale) x int32
 * dot, for int8 codes (W8A8 panels) and int4 codes (W4A8 on the int4
 * panels), and iq4_nl's table of int8 levels (on AVX-512 its table panels);
 * every path equals the scalar
 * reference exactly (the team product too), and all of them the double sum
 * over the blocks' dequantized values; with q4_1's offsets as well. */
Test(kernels, w8a8_with_q8_0_activation_blocks_is_exact_on_every_path) {
    enum { N = 37, K = 160, M = 70 };
    Rng r;
    rng_seed(&r, 12);
    int8_t codes[N * K];
    float sc[N * K / 32], off[N * K / 32], x[M * K], y[M * N], yref[M * N], yt[N];
    for (int i = 0; i < N * K; i++) codes[i] = (int8_t)((int)rng_below(&r, 255) - 127);
    for (int i = 0; i < N * K / 32; i++) sc[i] = 0.001f + 0.01f * rng_uniform(&r), off[i] = 0.2f * rng_normal(&r);
    for (int i = 0; i < M * K; i++) x[i] = rng_normal(&r) * (i % 37 == 0 ? 20.0f : 1.0f);
    int8_t xq[M * K];
    float xs[M * K / 32];
    size_t sb = qgemv_team_scratch_bytes(K);
    char *scratch = malloc(4 * sb);
    int8_t codes4[N * K], levels[N * K];
    uint8_t idx[N * K];
    float iq[16];
    for (int i = 0; i < N * K; i++) codes4[i] = (int8_t)((int)rng_below(&r, 16) - 8);
    for (int i = 0; i < N * K; i++) idx[i] = (uint8_t)rng_below(&r, 16), levels[i] = IQ4NL_LEVELS[idx[i]];
    for (int i = 0; i < 16; i++) iq[i] = IQ4NL_LEVELS[i];
    /* int8 and int4 (W4A8) codes, without and with offsets; then iq4_nl's levels in a table matrix */
    for (int variant = 0; variant < 5; variant++) {
        int with_off = variant & 1 && variant < 4, bits = variant < 2 ? 8 : 4;
        const int8_t *cw = variant == 4 ? levels : bits == 8 ? codes : codes4;
        QMatrix q;
        if (variant == 4) qmatrix_from_lut(&q, idx, N, K, 32, sc, iq, 16);
        else qmatrix_from_codes(&q, cw, N, K, bits, 32, sc, with_off ? off : NULL);
        if (bits == 8) qmatrix_pack_w8a8(&q);
        q.act_q8_0 = true;
        kernel_force(KERN_SCALAR);
        qgemm_w8a8(&q, x, M, yref, xq, xs);
        for (int m = 0; m < M; m++) { /* the activations are llama.cpp's q8_0 blocks */
            for (int b = 0; b < K / 32; b++) {
                float d;
                int8_t c[32];
                block_act_q8_0(x + m * K + b * 32, NULL, c, &d);
                cr_assert_eq(xs[m * (K / 32) + b], d);
                for (int j = 0; j < 32; j++) cr_assert_eq(xq[m * K + b * 32 + j], c[j]);
            }
            for (int n = 0; n < N; n++) {
                double ref = 0;
                for (int k = 0; k < K; k++)
                    ref += (double)cw[n * K + k] * sc[(n * K + k) / 32] * ((double)xq[m * K + k] * xs[(m * K + k) / 32]);
                /* q4_1's offsets m + 8 d as llama.cpp's q8_1 takes them: 8 d
                 * against the block's values, the minimum m against the half
                 * of (max|x| / 127) x the sum of the block's codes */
                for (int b = 0; b < K / 32 && with_off; b++) {
                    double sum = 0, amax = 0;
                    for (int j = 0; j < 32; j++) sum += xq[m * K + b * 32 + j], amax = fmax(amax, fabsf(x[m * K + b * 32 + j]));
                    float d = sc[n * K / 32 + b], s_half = fp16_round((float)amax / 127.0f * (float)sum);
                    ref += 8.0 * d * xs[m * K / 32 + b] * sum + ((double)off[n * K / 32 + b] - 8.0 * d) * s_half;
                }
                cr_assert(fabs(yref[m * N + n] - ref) <= 1e-4 * (1.0 + fabs(ref)), "int%d y[%d,%d] = %g, double %g", bits, m, n,
                          yref[m * N + n], ref);
            }
        }
        for (size_t p = 0; p < 3; p++) {
            if (!kernel_supported(PATHS[p])) continue;
            KernelPath old = kernel_force(PATHS[p]);
            qgemm_w8a8(&q, x, M, y, xq, xs);
            for (int i = 0; i < M * N; i++)
                cr_assert_eq(y[i], yref[i], "%s int%d%s y[%d]: %.9g vs scalar %.9g", kernel_path_name(PATHS[p]), bits,
                             with_off ? " offsets" : "", i, y[i], yref[i]);
#pragma omp parallel num_threads(3)
            qgemv_team(&q, true, x, NULL, NULL, yt, scratch + (size_t)omp_get_thread_num() * sb);
            for (int n = 0; n < N; n++) cr_assert_eq(yt[n], yref[n], "%s int%d team y[%d]", kernel_path_name(PATHS[p]), bits, n);
            kernel_force(old);
        }
        if (variant == 2 || variant == 3) cr_assert(!kernel_supported(KERN_AVX512) || q.p4, "no int4 panels for the AVX-512 W4A8 kernel");
        if (variant == 4) cr_assert(!kernel_supported(KERN_AVX512) || q.pl, "no table panels for the AVX-512 iq4_nl x q8_0 kernel");
        qmatrix_free(&q);
    }
    free(scratch);
    kernel_force(KERN_SCALAR);
}

/* Float levels (here near QLoRA-like, not on any grid) on the AVX-512 table
 * panels in two bytes, a + b / 256: on activations without outliers the
 * products hold to 2e-5 of the sum of |terms|, where the levels' high byte
 * alone (b left out) is off by about 7e-4. */
Test(kernels, two_byte_table_levels_hold_their_precision) {
    if (!kernel_supported(KERN_AVX512)) return;
    enum { N = 64, K = 256 };
    static float lut[16], sc[N * K / 32], x[4 * K], y[4 * N];
    static uint8_t idx[N * K];
    Rng r;
    rng_seed(&r, 23);
    for (int i = 0; i < 16; i++) lut[i] = -1.0f + 0.13f * (float)i + 0.01f * rng_normal(&r);
    for (int i = 0; i < N * K; i++) idx[i] = (uint8_t)rng_below(&r, 16);
    for (int i = 0; i < N * K / 32; i++) sc[i] = 0.01f + 0.01f * rng_uniform(&r);
    for (int i = 0; i < 4 * K; i++) x[i] = rng_uniform(&r) - 0.5f;
    QMatrix q;
    qmatrix_from_lut(&q, idx, N, K, 32, sc, lut, 16);
    cr_assert(q.pl && q.plevels_two, "float levels: two-byte table panels");
    KernelPath old = kernel_force(KERN_AVX512);
    for (int M = 1; M <= 4; M += 3) {
        qgemm_f32(&q, x, M, y);
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                double ref = 0, mag = 0;
                for (int k = 0; k < K; k++) {
                    double t = (double)lut[idx[n * K + k]] * sc[(n * K + k) / 32] * x[m * K + k];
                    ref += t, mag += fabs(t);
                }
                cr_assert(fabs(y[m * N + n] - ref) <= 2e-5 * mag, "M=%d y[%d,%d] = %.9g, double %.9g (terms %g)", M, m, n,
                          y[m * N + n], ref, mag);
            }
    }
    kernel_force(old);
    qmatrix_free(&q);
}

/* Table matrices (non-uniform levels): the row primitive on every path
 * against the scalar reference on odd group counts; weight-only products
 * (row primitives, team, dequantized tiles) against a double sum of the
 * levels; with iq4_nl's integer levels, the table panels match the int8
 * panels on the levels as codes to float rounding (equal integer sums). */
/* 8-bit tables (nf8, kmeans8): one index per byte into 256 float levels,
 * gathered on the SIMD paths; every path against the scalar reference and
 * a double sum, with groups that are and are not multiples of 16 and a
 * partial last group (172 = 5 x 32 + 12). */
Test(kernels, tables_of_256_levels_on_every_path) {
    enum { N = 21, IN = 172, MT = 200 };
    Rng r;
    rng_seed(&r, 31);
    float lut[256], *x = malloc(sizeof(float) * MT * IN), *y = malloc(sizeof(float) * MT * N), sc[N * 18], yt[N];
    uint8_t idx[N * IN];
    for (int i = 0; i < 256; i++) lut[i] = -1.0f + 2.0f * (float)i / 255.0f + 0.001f * rng_normal(&r);
    for (int i = 0; i < N * IN; i++) idx[i] = (uint8_t)rng_below(&r, 256);
    idx[0] = 0, idx[1] = 255;
    for (int i = 0; i < N * 18; i++) sc[i] = 0.001f + 0.01f * rng_uniform(&r);
    for (int i = 0; i < MT * IN; i++) x[i] = rng_normal(&r) * (i % 29 == 0 ? 10.0f : 1.0f);
    size_t sb = qgemv_team_scratch_bytes(IN + 32);
    char *scratch = malloc(4 * sb);
    int groups[] = {32, 10, IN};
    for (int gi = 0; gi < 3; gi++) {
        int G = groups[gi], ng = (IN + G - 1) / G, K = ng * G;
        QMatrix q;
        qmatrix_from_lut(&q, idx, N, IN, G, sc, lut, 256);
        cr_assert(q.idx8 && !q.q8 && !q.q4 && !q.pl, "an 8-bit table matrix holds byte indices");
        cr_assert_eq(q.p8lo != NULL, kernel_supported(KERN_AVX512) && G % 4 == 0, "two-byte int8 panels on AVX-512");
        cr_assert_eq(qmatrix_code_bits(&q), 8);
        float *xw = calloc((size_t)K, sizeof(float)), ref[4], got[4];
        memcpy(xw, x, sizeof(float) * IN);
        for (int n = 0; n + 4 <= N; n += 5) {
            krows_lut8_f32_scalar(q.idx8 + (size_t)n * K, lut, q.scales + (size_t)n * ng, G, xw, K, 4, ref);
            for (size_t p = 0; p < 3; p++) {
                if (!kernel_supported(PATHS[p])) continue;
                KernelPath old = kernel_force(PATHS[p]);
                for (int nr = 1; nr <= 4; nr++) {
                    krows_lut8_f32(q.idx8 + (size_t)n * K, lut, q.scales + (size_t)n * ng, G, xw, K, nr, got);
                    for (int i = 0; i < nr; i++)
                        cr_assert(fabsf(got[i] - ref[i]) <= 1e-5f * (1.0f + fabsf(ref[i])), "%s G=%d rows %d: %g vs %g",
                                  kernel_path_name(PATHS[p]), G, nr, got[i], ref[i]);
                }
                kernel_force(old);
            }
        }
        for (size_t p = 0; p < 3; p++) {
            if (!kernel_supported(PATHS[p])) continue;
            KernelPath old = kernel_force(PATHS[p]);
            int Ms[] = {1, 6, MT};
            for (int mi = 0; mi < 3; mi++) {
                qgemm_f32(&q, x, Ms[mi], y);
                for (int m = 0; m < Ms[mi]; m += Ms[mi] > 100 ? 31 : 1)
                    for (int n = 0; n < N; n++) {
                        double want = 0, mag = 0;
                        float wn[192], wmax[192];
                        for (int k = 0; k < IN; k++) {
                            double v = (double)lut[idx[n * IN + k]] * sc[n * ng + k / G] * x[(size_t)m * IN + k];
                            want += v, mag += fabs(v);
                            wn[k] = lut[idx[n * IN + k]] * sc[n * ng + k / G], wmax[k] = sc[n * ng + k / G];
                        }
                        /* the panels: activations in 16 bits a block, levels in two bytes (b d0 / 256 left out) */
                        int blk = G % 32 == 0 ? 32 : G;
                        double tol = 1e-5 * (1.0 + mag) + (q.p8lo && PATHS[p] == KERN_AVX512
                                                               ? fixed_point_bound(x + (size_t)m * IN, wn, IN, blk) +
                                                                     fixed_point_bound(x + (size_t)m * IN, wmax, IN, blk)
                                                               : 0.0);
                        cr_assert(fabs(y[(size_t)m * N + n] - want) <= tol, "%s G=%d M=%d y[%d,%d] = %g, double %g",
                                  kernel_path_name(PATHS[p]), G, Ms[mi], m, n, y[(size_t)m * N + n], want);
                    }
            }
            check_team(&q, x, yt, y, scratch, sb);
            kernel_force(old);
        }
        free(xw);
        qmatrix_free(&q);
    }
    free(x), free(y), free(scratch);
}

/* kmeans tables per output channel and per group (QuantSpec.tables): each
 * row, or each row's group, looks its indices up in its own table, on every
 * path and product shape, a partial last group included (172 = 5 x 32 + 12);
 * groups of 32 take AVX-512's table panels (four masked vpshufb a line),
 * groups of 12 its vpermps rows. */
Test(kernels, tables_per_channel_and_group_on_every_path) {
    enum { N = 23, IN = 172, MT = 300 };
    Rng r;
    rng_seed(&r, 29);
    float *x = malloc(sizeof(float) * MT * IN), *y = malloc(sizeof(float) * MT * N), sc[N * 15], yt[N];
    float *luts = malloc(sizeof(float) * N * 15 * 8), *wd = malloc(sizeof(float) * N * 192);
    uint8_t idx[N * IN];
    for (int i = 0; i < MT * IN; i++) x[i] = rng_normal(&r) * (i % 41 == 0 ? 10.0f : 1.0f);
    for (int i = 0; i < N * 15; i++) sc[i] = 0.002f + 0.01f * rng_uniform(&r);
    for (int i = 0; i < N * IN; i++) idx[i] = (uint8_t)rng_below(&r, 8);
    size_t sb = qgemv_team_scratch_bytes(192);
    char *scratch = malloc(4 * sb);
    for (int v = 0; v < 4; v++) { /* tables per channel, then per group; 8 levels each (kmeans3); groups of 32, then 12 */
        int per = v % 2, G = v < 2 ? 32 : 12, ng = (IN + G - 1) / G, K = ng * G;
        QGranularity tg = per ? QG_GROUP : QG_CHANNEL;
        int nt = per ? N * ng : N;
        for (int t = 0; t < nt; t++) {
            float lv[8];
            for (int k = 0; k < 8; k++) lv[k] = quant_table_level(-1.0f + 0.25f * (float)k + 0.1f * rng_normal(&r), 8);
            quant_table_sort(lv, 8, luts + (size_t)t * 8, NULL, "test");
        }
        QMatrix q;
        qmatrix_from_luts(&q, idx, N, IN, G, sc, luts, 8, tg);
        cr_assert_eq(q.n_tables, nt, "%d tables", q.n_tables);
        cr_assert(kernel_supported(KERN_AVX512) && G % 8 == 0 ? q.pl && q.ptab : !q.pl && !q.ptab,
                  "table panels for a table per row or group: on AVX-512, groups of 8k");
        cr_assert_eq(qmatrix_code_bits(&q), 3);
        qmatrix_dequant_rows(&q, 0, N, wd);
        for (int n = 0; n < N; n++)
            for (int k = 0; k < K; k++) {
                int t = per ? n * ng + k / G : n;
                float want = k < IN ? luts[(size_t)t * 8 + idx[n * IN + k]] * sc[n * ng + k / G] : 0.0f;
                if (k < IN) cr_assert_eq(wd[(size_t)n * K + k], want, "dequant [%d,%d]", n, k);
            }
        for (size_t p = 0; p < 3; p++) {
            if (!kernel_supported(PATHS[p])) continue;
            KernelPath old = kernel_force(PATHS[p]);
            int Ms[] = {1, 5, 20, MT};
            for (size_t mi = 0; mi < 4; mi++) {
                qgemm_f32(&q, x, Ms[mi], y);
                for (int m = 0; m < Ms[mi]; m += Ms[mi] > 100 ? 37 : 1)
                    for (int n = 0; n < N; n++) {
                        double ref = 0, mag = 0;
                        for (int k = 0; k < IN; k++) {
                            int t = per ? n * ng + k / G : n;
                            double v = (double)luts[(size_t)t * 8 + idx[n * IN + k]] * sc[n * ng + k / G] * x[(size_t)m * IN + k];
                            ref += v, mag += fabs(v);
                        }
                        /* the panels' activations in 16 bits per block */
                        float wn[192];
                        for (int k = 0; k < IN; k++)
                            wn[k] = luts[(size_t)(per ? n * ng + k / G : n) * 8 + idx[n * IN + k]] * sc[n * ng + k / G];
                        double tol = 1e-5 * (1.0 + mag) + (q.pl && PATHS[p] == KERN_AVX512 ? fixed_point_bound(x + (size_t)m * IN, wn, IN, 32) : 0.0);
                        cr_assert(fabs(y[(size_t)m * N + n] - ref) <= tol, "%s tables per %s G=%d M=%d y[%d,%d] = %g, double %g",
                                  kernel_path_name(PATHS[p]), per ? "group" : "channel", G, Ms[mi], m, n, y[(size_t)m * N + n], ref);
                    }
            }
            check_team(&q, x, yt, y, scratch, sb);
            kernel_force(old);
        }
        qmatrix_free(&q);
    }
    free(x), free(y), free(luts), free(wd), free(scratch);
}

Test(kernels, table_matrices_look_their_levels_up_on_every_path) {
    enum { N = 37, K = 160, MT = 1700 };
    Rng r;
    rng_seed(&r, 19);
    float lut[16], iq[16], km[16], sc[N * K / 10], *x = malloc(sizeof(float) * MT * K), *y = malloc(sizeof(float) * MT * N);
    float yt[N], xsplit[K];
    uint8_t idx[N * K];
    for (int i = 0; i < 16; i++) lut[i] = -1.0f + 0.13f * (float)i + 0.01f * rng_normal(&r), iq[i] = IQ4NL_LEVELS[i];
    for (int i = 0; i < 16; i++) km[i] = quant_table_level(lut[i], 16); /* a kmeans table: multiples of 1/127 */
    for (int i = 0; i < N * K; i++) idx[i] = (uint8_t)rng_below(&r, 16);
    idx[0] = 0, idx[1] = 15;
    for (int i = 0; i < N * K / 10; i++) sc[i] = 0.001f + 0.01f * rng_uniform(&r); /* enough for groups of 10 */
    for (int i = 0; i < MT * K; i++) x[i] = rng_normal(&r) * (i % 37 == 0 ? 20.0f : 1.0f);
    int groups[] = {32, 16, 160, 10};
    for (size_t gi = 0; gi < 4; gi++) { /* the row primitive, per group size */
        int G = groups[gi];
        QMatrix q;
        qmatrix_from_lut(&q, idx, N, K, G, sc, lut, 16);
        kx_split(x, K, xsplit);
        float ref[4], got[4];
        for (int n = 0; n + 4 <= N; n += 9) {
            krows_lut_f32_scalar(q.q4 + (size_t)n * K / 2, lut, 0, 0, q.scales + (size_t)n * (K / G), G, xsplit, K, 4, ref);
            for (size_t p = 0; p < 3; p++) {
                if (!kernel_supported(PATHS[p])) continue;
                KernelPath old = kernel_force(PATHS[p]);
                for (int nr = 1; nr <= 4; nr++) {
                    krows_lut_f32(q.q4 + (size_t)n * K / 2, lut, 0, 0, q.scales + (size_t)n * (K / G), G, xsplit, K, nr, got);
                    for (int i = 0; i < nr; i++)
                        cr_assert(fabsf(got[i] - ref[i]) <= 1e-5f * (1.0f + fabsf(ref[i])), "%s G=%d rows %d: %g vs %g",
                                  kernel_path_name(PATHS[p]), G, nr, got[i], ref[i]);
                }
                kernel_force(old);
            }
        }
        qmatrix_free(&q);
    }
    size_t sb = qgemv_team_scratch_bytes(K);
    char *scratch = malloc(4 * sb);
    QMatrix q;
    int Ms[] = {1, 5, 20, MT};
    /* float levels; iq4_nl's and a kmeans table's on the 1/127 grid (on
     * AVX-512 all three on table panels: the float levels in two bytes, the
     * grid's as levels x 127) */
    for (int table = 0; table < 3; table++) {
        const float *tl = table == 2 ? km : table ? iq : lut;
        qmatrix_from_lut(&q, idx, N, K, 32, sc, tl, 16);
        cr_assert(!q.p4, "a table matrix has no int4 panels");
        cr_assert(kernel_supported(KERN_AVX512) ? q.pl != NULL : q.pl == NULL, "table panels on AVX-512 only");
        cr_assert_eq(q.plevels_two, table == 0 && kernel_supported(KERN_AVX512), "two-byte levels for float levels only");
        float lmax = 0;
        for (int i = 0; i < 16; i++) lmax = fmaxf(lmax, fabsf(tl[i]));
        for (size_t p = 0; p < 3; p++) {
            if (!kernel_supported(PATHS[p])) continue;
            KernelPath old = kernel_force(PATHS[p]);
            for (size_t mi = 0; mi < 4; mi++) {
                int Mm = Ms[mi];
                qgemm_f32(&q, x, Mm, y);
                for (int m = 0; m < Mm; m += Mm > 100 ? 43 : 1)
                    for (int n = 0; n < N; n++) {
                        double ref = 0, mag = 0;
                        float wn[K], wmax[K];
                        for (int k = 0; k < K; k++) {
                            wn[k] = tl[idx[n * K + k]] * sc[(n * K + k) / 32], wmax[k] = lmax * sc[(n * K + k) / 32];
                            double t = (double)tl[idx[n * K + k]] * sc[(n * K + k) / 32] * x[(size_t)m * K + k];
                            ref += t, mag += fabs(t);
                        }
                        /* two-byte levels: to 2^-9 / 127 of the largest, and b d0 / 256 left out (at most
                         * 64 / 127 of a block's step per weight at the largest level): within a step's bound
                         * at the largest level */
                        double tol = 1e-5 * (1.0 + mag) + fixed_point_bound(x + (size_t)m * K, wn, K, 32) +
                                     (q.plevels_two && PATHS[p] == KERN_AVX512 ? fixed_point_bound(x + (size_t)m * K, wmax, K, 32) : 0.0);
                        cr_assert(fabs(y[(size_t)m * N + n] - ref) <= tol, "%s M=%d y[%d,%d] = %g, double %g",
                                  kernel_path_name(PATHS[p]), Mm, m, n, y[(size_t)m * N + n], ref);
                    }
            }
            check_team(&q, x, yt, y, scratch, sb);
            kernel_force(old);
        }
        if (table == 1 && q.pl) {
            /* the table panels on the levels as the int8 panels on those levels as codes: the same integers,
             * the table panels' activations in 16 bits per block of 32 where the int8 panels' have 24 per row */
            int8_t *codes = malloc((size_t)N * K);
            for (int i = 0; i < N * K; i++) codes[i] = IQ4NL_LEVELS[idx[i]];
            QMatrix q8;
            qmatrix_from_codes(&q8, codes, N, K, 8, 32, sc, NULL);
            float *y8 = malloc(sizeof(float) * 20 * N);
            KernelPath old = kernel_force(KERN_AVX512);
            qgemm_f32(&q, x, 20, y), qgemm_f32(&q8, x, 20, y8);
            for (int i = 0; i < 20 * N; i++) {
                double mag = 0; /* the float steps round relative to the sum of |terms|, not to the result */
                float wn[K];
                for (int k = 0; k < K; k++) {
                    wn[k] = (float)codes[(i % N) * K + k] * sc[((i % N) * K + k) / 32];
                    mag += fabs((double)wn[k] * x[(size_t)(i / N) * K + k]);
                }
                double tol = 1e-6 * (1.0 + mag) + fixed_point_bound(x + (size_t)(i / N) * K, wn, K, 32);
                cr_assert(fabs(y[i] - y8[i]) <= tol, "table panels y[%d] %.9g, int8 panels %.9g (terms %g)", i, y[i], y8[i],
                          mag);
            }
            kernel_force(old);
            qmatrix_free(&q8);
            free(codes), free(y8);
        }
        qmatrix_free(&q);
    }
    free(scratch), free(x), free(y);
    kernel_force(KERN_SCALAR);
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

/* A partial last group (stories260K's mlp.proj has 172 inputs: 5 groups of
 * 32 and one of 12): every path, weight-only (row primitives, panels,
 * dequantized tiles, the team product inside a parallel region) and W8A8,
 * against the shared quantizer's fake-quantized weights in double. */
Test(kernels, partial_last_group_on_every_path) {
    int N = 21, MT = 1600;
    Rng r;
    rng_seed(&r, 17);
    struct {
        int K, bits, group;
    } cases[] = {{172, 4, 32}, {172, 8, 32}, {172, 3, 64}, {172, 8, 128}, {100, 2, 64}, {100, 4, 8}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int K = cases[c].K, G = cases[c].group;
        float *w = malloc(sizeof(float) * N * K), *x = malloc(sizeof(float) * MT * K), *y = malloc(sizeof(float) * MT * N);
        for (int i = 0; i < N * K; i++) w[i] = 0.1f * rng_normal(&r);
        for (int i = 0; i < MT * K; i++) x[i] = rng_normal(&r);
        QMatrix q;
        qmatrix_from_float(&q, w, N, K, cases[c].bits, G, NULL);
        cr_assert_eq(q.in, K);
        cr_assert_eq(q.cols, (K + G - 1) / G * G, "stored in whole groups");
        if (cases[c].bits == 8) qmatrix_pack_w8a8(&q);
        QuantSpec s = {.bits = cases[c].bits, .sym = true, .gran = QG_GROUP, .group = G};
        cr_assert_eq(quant_n_scales(&s, N, K), (size_t)N * ((K + G - 1) / G));
        float *wd = malloc(sizeof(float) * N * K);
        quant_fake(&s, w, N, K, q.scales, NULL, wd);
        /* the partial group has its own min-max scale: its largest |w| is on the grid's end */
        for (int n = 0; n < N; n++) {
            float amax = 0.0f;
            for (int k = (K - 1) / G * G; k < K; k++) amax = fmaxf(amax, fabsf(w[n * K + k]));
            cr_assert_float_eq(q.scales[(size_t)n * ((K + G - 1) / G) + (K - 1) / G] * quant_qmax(&s), amax, 1e-6);
        }
        int8_t *xq = malloc((size_t)MT * q.cols);
        float *xs = malloc(sizeof(float) * MT);
        size_t sb = qgemv_team_scratch_bytes(q.cols);
        char *scratch = malloc(3 * sb);
        for (size_t p = 0; p < 3; p++) {
            if (!kernel_supported(PATHS[p])) continue;
            kernel_force(PATHS[p]);
            int Ms[] = {1, 5, 20, MT};
            for (int mi = 0; mi < 4; mi++) {
                int M = Ms[mi];
                qgemm_f32(&q, x, M, y);
                for (int m = 0; m < M; m += M > 20 ? 37 : 1)
                    for (int n = 0; n < N; n++) {
                        double ref = 0;
                        for (int k = 0; k < K; k++) ref += (double)x[m * K + k] * wd[n * K + k];
                        double tol = 1e-4 + fixed_point_bound(x + m * K, wd + n * K, K, kact_block(&q));
                        cr_assert_float_eq(y[m * N + n], ref, tol, "%s K%d int%d g%d M%d y[%d,%d]",
                                           kernel_path_name(PATHS[p]), K, cases[c].bits, G, M, m, n);
                    }
            }
            for (int w8 = 0; w8 <= (cases[c].bits == 8); w8++) {
#pragma omp parallel num_threads(3)
                qgemv_team(&q, w8, x, NULL, NULL, y, scratch + (size_t)omp_get_thread_num() * sb);
                float xd[172], sx;
                QuantSpec a = {.bits = 8, .sym = true, .gran = QG_CHANNEL};
                quant_minmax(&a, x, 1, K, &sx, NULL);
                quant_fake(&a, x, 1, K, &sx, NULL, xd);
                for (int n = 0; n < N; n++) {
                    double ref = 0;
                    for (int k = 0; k < K; k++) ref += (double)(w8 ? xd[k] : x[k]) * wd[n * K + k];
                    double tol = 1e-4 + (w8 ? 0.0 : fixed_point_bound(x, wd + n * K, K, kact_block(&q)));
                    cr_assert_float_eq(y[n], ref, tol, "%s team%s K%d g%d y[%d]", kernel_path_name(PATHS[p]),
                                       w8 ? " w8a8" : "", K, G, n);
                }
            }
            if (cases[c].bits == 8) {
                qgemm_w8a8(&q, x, 20, y, xq, xs);
                for (int m = 0; m < 20; m++) {
                    float xd[172], sx;
                    QuantSpec a = {.bits = 8, .sym = true, .gran = QG_CHANNEL};
                    quant_minmax(&a, x + m * K, 1, K, &sx, NULL);
                    quant_fake(&a, x + m * K, 1, K, &sx, NULL, xd);
                    for (int n = 0; n < N; n++) {
                        double ref = 0;
                        for (int k = 0; k < K; k++) ref += (double)xd[k] * wd[n * K + k];
                        cr_assert_float_eq(y[m * N + n], ref, 1e-4, "%s w8a8 K%d g%d y[%d,%d]", kernel_path_name(PATHS[p]),
                                           K, G, m, n);
                    }
                }
            }
        }
        qmatrix_free(&q);
        free(w), free(x), free(y), free(wd), free(xq), free(xs), free(scratch);
    }
    kernel_force(KERN_SCALAR);
}
