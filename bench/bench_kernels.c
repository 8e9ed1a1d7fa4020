/* bench_kernels.c: speed of the integer kernels against OpenBLAS, in one run.
 *
 *   bench_kernels gemv [--max-mib 256] [--repeats 7]
 *     M = 1 at weight sizes from KiB to past the last-level cache: GB/s of
 *     weight bytes streamed by sgemv (fp32), int8 (per channel) and int4
 *     (g32 and per channel), scales included, beside the machine's copy
 *     bandwidth, measured by a copy loop in alternating rounds with them.
 *   bench_kernels gemm [--repeats 5]
 *     M = 32..1024, K, N = 512..4096: GFLOP/s of sgemm, weight-only int8 and
 *     int4 (g32) and W8A8 (per-channel, activation quantization included).
 *   bench_kernels levels [--max-mib 64] [--repeats 7]
 *     llama.cpp's non-uniform iq4_nl blocks (a table matrix: indices looked
 *     up among 16 levels in registers) against uniform int4 g32 of the same
 *     size (4.5 bits per weight either way) at M = 1 (generation) and M = 16
 *     (a prompt), float activations, and against q4_0 with llama.cpp's q8_0
 *     activation blocks (its integer arithmetic): rows/s ratios.
 *   bench_kernels tables [--max-mib 64] [--repeats 7]
 *     kmeans tables beyond one per layer: a 4-bit table per output channel
 *     (SqueezeLLM's layout; the vpermps rows, no table panels) against one
 *     table per layer (the table panels) and uniform int4, groups of 32, and
 *     an 8-bit table of 256 levels (gathered floats) against int8 per
 *     channel, at M = 1 and M = 16: rows/s ratios.
 *   bench_kernels train-gemm [--repeats 5]
 *     the linear layers' products of one training step of the reference
 *     model (configs/tiny-shakespeare.yaml), forward and backward, on
 *     OpenBLAS and on qat's own blocked kernel (autograd/gemm.c) side by
 *     side: the tokens/s ceiling of any trainer on each.
 *
 * Threads: OMP_NUM_THREADS (2 on the reference machine). Figures are medians;
 * the last line is JSON. */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/gemm.h"
#include "quant/blocks.h"
#include "quant/kernels.h"
#include "util/util.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef void (*BenchFn)(void *ctx);

/* Seconds per call of one batch that runs for at least 50 ms. */
static double time_batch(BenchFn fn, void *ctx) {
    int calls = 0;
    double t0 = now_seconds(), el;
    do {
        fn(ctx);
        calls++;
        el = now_seconds() - t0;
    } while (el < 0.05);
    return el / calls;
}

/* Median seconds per call of fn over `repeats` timed batches. */
static double time_median(BenchFn fn, void *ctx, int repeats) {
    fn(ctx); /* warm up */
    double t[64];
    if (repeats > 64) repeats = 64;
    for (int r = 0; r < repeats; r++) t[r] = time_batch(fn, ctx);
    qsort(t, (size_t)repeats, sizeof(double), cmp_double);
    return t[repeats / 2];
}

typedef struct {
    int M, N, K;
    const float *w, *x;
    float *y;
    const QMatrix *q;
    int8_t *xq;
    float *xs;
    float *src, *dst;
    size_t n;
} Ctx;

static void run_copy(void *p) {
    Ctx *c = p;
    float *restrict d = c->dst;
    const float *restrict s = c->src;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < c->n; i++) d[i] = s[i];
}
static void run_sgemv(void *p) {
    Ctx *c = p;
    cblas_sgemv(CblasRowMajor, CblasNoTrans, c->N, c->K, 1.0f, c->w, c->K, c->x, 1, 0.0f, c->y, 1);
}
static void run_sgemm(void *p) {
    Ctx *c = p;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c->M, c->N, c->K, 1.0f, c->x, c->K, c->w, c->K, 0.0f, c->y, c->N);
}
static void run_qgemm(void *p) {
    Ctx *c = p;
    qgemm_f32(c->q, c->x, c->M, c->y);
}
static void run_w8a8(void *p) {
    Ctx *c = p;
    qgemm_w8a8(c->q, c->x, c->M, c->y, c->xq, c->xs);
}

static float *random_floats(size_t n, uint64_t seed, float std) {
    float *v = xmalloc(n * sizeof(float));
    Rng r;
    rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) v[i] = std * rng_normal(&r);
    return v;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return v[n / 2];
}

enum { GV_COPY, GV_F32, GV_I8, GV_I4, GV_I4C, GV_N };

static void bench_gemv(int max_mib, int repeats) {
    /* the copy loop moves 512 MiB each way: far past any cache. It runs in
     * every round beside the kernels, so each shape's percentages are taken
     * against the bandwidth of the same minutes (on a shared machine it
     * drifts by a factor of 2 within a session). */
    Ctx cc = {.n = (size_t)128 << 20};
    cc.src = xmalloc(cc.n * sizeof(float));
    cc.dst = xmalloc(cc.n * sizeof(float));
    memset(cc.src, 1, cc.n * sizeof(float));
    memset(cc.dst, 0, cc.n * sizeof(float));
    run_copy(&cc);
    if (repeats > 64) repeats = 64;
    printf("kernel path %s, %d threads; GB/s of weight bytes (codes and scales) per second; copy = the copy loop's read +"
           " write GB/s in the same rounds; medians of %d rounds\n",
           kernel_path_name(kernel_path()), omp_get_max_threads(), repeats);
    printf("%6s %6s %9s | %6s | %6s %6s %6s %7s | %6s %6s %7s | %9s %9s\n", "N", "K", "int8 MiB", "copy", "fp32", "int8",
           "int4", "int4 ch", "int8 %", "int4 %", "int4ch %", "int4/int8", "ch/int8");
    printf("%6s %6s %9s | %6s | %6s %6s %6s %7s | %6s %6s %7s | %9s %9s\n", "", "", "", "", "", "", "g32", "", "", "", "",
           "rows/s", "rows/s");
    fflush(stdout);
    static const int dims[] = {64, 256, 1024, 2048, 4096, 8192, 11585, 16384};
    char json[16384];
    size_t jl = 0;
    int first = 1;
    for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
        int N = dims[d], K = dims[d] & ~63;
        if ((double)N * K / (1 << 20) > max_mib * 1.01) break;
        float *w = random_floats((size_t)N * K, 1, 0.02f), *x = random_floats((size_t)K, 2, 1.0f);
        QMatrix q8, q4, q4c;
        qmatrix_from_float(&q8, w, N, K, 8, K, NULL); /* the schemes of the reference QAT models */
        qmatrix_from_float(&q4, w, N, K, 4, 32, NULL);
        qmatrix_from_float(&q4c, w, N, K, 4, K, NULL);
        Ctx c[GV_N] = {[GV_COPY] = cc};
        const QMatrix *qs[GV_N] = {[GV_I8] = &q8, [GV_I4] = &q4, [GV_I4C] = &q4c};
        float *y = xmalloc((size_t)N * sizeof(float));
        for (int k = GV_F32; k < GV_N; k++) c[k] = (Ctx){.M = 1, .N = N, .K = K, .w = w, .x = x, .y = y, .q = qs[k]};
        BenchFn fns[GV_N] = {run_copy, run_sgemv, run_qgemm, run_qgemm, run_qgemm};
        double t[GV_N][64], med[GV_N];
        for (int k = 0; k < GV_N; k++) fns[k](&c[k]); /* warm up */
        for (int r = 0; r < repeats; r++)
            for (int k = 0; k < GV_N; k++) t[k][r] = time_batch(fns[k], &c[k]);
        for (int k = 0; k < GV_N; k++) med[k] = median(t[k], repeats);
        double copy = 2.0 * cc.n * sizeof(float) / med[GV_COPY] / 1e9; /* read + write, as STREAM counts */
        double g32 = (double)N * K * 4 / med[GV_F32] / 1e9, g8 = qmatrix_bytes(&q8) / med[GV_I8] / 1e9,
               g4 = qmatrix_bytes(&q4) / med[GV_I4] / 1e9, g4c = qmatrix_bytes(&q4c) / med[GV_I4C] / 1e9;
        printf("%6d %6d %9.2f | %6.1f | %6.1f %6.1f %6.1f %7.1f | %5.0f%% %5.0f%% %6.0f%% | %9.2f %9.2f\n", N, K,
               (double)N * K / (1 << 20), copy, g32, g8, g4, g4c, 100 * g8 / copy, 100 * g4 / copy, 100 * g4c / copy,
               med[GV_I8] / med[GV_I4], med[GV_I8] / med[GV_I4C]);
        fflush(stdout);
        jl += (size_t)snprintf(json + jl, sizeof json - jl,
                               "%s{\"N\":%d,\"K\":%d,\"copy_gbs\":%.2f,\"fp32_gbs\":%.2f,\"int8_gbs\":%.2f,\"int4_gbs\":%.2f,"
                               "\"int4_channel_gbs\":%.2f,\"int4_vs_int8_rows\":%.3f,\"int4_channel_vs_int8_rows\":%.3f}",
                               first ? "" : ",", N, K, copy, g32, g8, g4, g4c, med[GV_I8] / med[GV_I4],
                               med[GV_I8] / med[GV_I4C]);
        first = 0;
        qmatrix_free(&q8), qmatrix_free(&q4), qmatrix_free(&q4c);
        free(w), free(x), free(y);
    }
    free(cc.src), free(cc.dst);
    printf("{\"bench\":\"gemv\",\"path\":\"%s\",\"threads\":%d,\"rows\":[%s]}\n", kernel_path_name(kernel_path()),
           omp_get_max_threads(), json);
}

/* The weights of w [N, K] as iq4_nl blocks: a table matrix of ggml's
 * indices and half-precision scales. */
static void iq4nl_matrix(QMatrix *q, const float *w, int N, int K) {
    size_t n = (size_t)N * K, nb = n / QBLOCK;
    uint8_t *idx = xmalloc(n);
    float *sc = xmalloc(nb * sizeof(float)), lut[16], tmp[QBLOCK];
    for (int i = 0; i < 16; i++) lut[i] = (float)IQ4NL_LEVELS[i];
#pragma omp parallel for schedule(static) private(tmp)
    for (size_t b = 0; b < nb; b++) {
        int c[QBLOCK];
        block_fake(QF_IQ4_NL, w + b * QBLOCK, tmp, c, &sc[b], NULL);
        for (int j = 0; j < QBLOCK; j++) idx[b * QBLOCK + (size_t)j] = (uint8_t)c[j];
    }
    qmatrix_from_lut(q, idx, N, K, QBLOCK, sc, lut, 16);
    free(idx), free(sc);
}

static void bench_levels(int max_mib, int repeats) {
    printf("kernel path %s, %d threads; rows/s of iq4_nl (table) over int4 g32 / q4_0 (uniform), both 4.5 bits per "
           "weight; medians of %d rounds\n", kernel_path_name(kernel_path()), omp_get_max_threads(), repeats);
    printf("%6s %6s %8s | %9s %9s %6s | %9s %9s %6s | %9s %9s %6s\n", "N", "K", "MiB", "M=1 int4", "iq4_nl", "ratio",
           "M=16 int4", "iq4_nl", "ratio", "q8_0 act q4_0", "iq4_nl", "ratio");
    static const int dims[] = {256, 1024, 2048, 4096, 8192};
    char json[8192];
    size_t jl = 0;
    for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
        int N = dims[d], K = dims[d];
        double mib = (double)N * K * 4.5 / 8 / (1 << 20);
        if (mib > max_mib * 1.01) break;
        float *w = random_floats((size_t)N * K, 1, 0.02f), *x = random_floats((size_t)16 * K, 2, 1.0f);
        float *y = xmalloc((size_t)16 * N * sizeof(float)), *xs = xmalloc((size_t)16 * K / QBLOCK * sizeof(float));
        int8_t *xq = xmalloc((size_t)16 * K);
        QMatrix u, t, ua, ta;
        qmatrix_from_float(&u, w, N, K, 4, QBLOCK, NULL);
        iq4nl_matrix(&t, w, N, K);
        qmatrix_from_float(&ua, w, N, K, 4, QBLOCK, NULL);
        iq4nl_matrix(&ta, w, N, K);
        ua.act_q8_0 = ta.act_q8_0 = true;
        double med[6];
        const QMatrix *qs[6] = {&u, &t, &u, &t, &ua, &ta};
        for (int k = 0; k < 6; k++) {
            Ctx c = {.M = k < 2 ? 1 : 16, .N = N, .K = K, .x = x, .y = y, .q = qs[k], .xq = xq, .xs = xs};
            med[k] = time_median(k < 4 ? run_qgemm : run_w8a8, &c, repeats);
        }
        printf("%6d %6d %8.2f | %9.0f %9.0f %6.2f | %9.0f %9.0f %6.2f | %13.0f %9.0f %6.2f\n", N, K, mib, N / med[0],
               N / med[1], med[0] / med[1], 16 * N / med[2], 16 * N / med[3], med[2] / med[3], 16 * N / med[4],
               16 * N / med[5], med[4] / med[5]);
        fflush(stdout);
        jl += (size_t)snprintf(json + jl, sizeof json - jl,
                               "%s{\"N\":%d,\"K\":%d,\"gemv_ratio\":%.3f,\"m16_ratio\":%.3f,\"q8_0_act_ratio\":%.3f}",
                               d ? "," : "", N, K, med[0] / med[1], med[2] / med[3], med[4] / med[5]);
        qmatrix_free(&u), qmatrix_free(&t), qmatrix_free(&ua), qmatrix_free(&ta);
        free(w), free(x), free(y), free(xs), free(xq);
    }
    printf("{\"bench\":\"levels\",\"path\":\"%s\",\"threads\":%d,\"unit\":\"iq4_nl rows/s over uniform int4\","
           "\"rows\":[%s]}\n", kernel_path_name(kernel_path()), omp_get_max_threads(), json);
}

/* A table matrix of random indices: n_levels levels on the 1/127 grid per
 * table (tables per channel when per_row), or 256 float levels. */
static void table_matrix(QMatrix *q, int N, int K, int group, int n_levels, bool per_row) {
    Rng r;
    rng_seed(&r, 5);
    int nt = per_row ? N : 1, ng = K / group;
    uint8_t *idx = xmalloc((size_t)N * K);
    float *lv = xmalloc((size_t)nt * n_levels * sizeof(float)), *sc = xmalloc((size_t)N * ng * sizeof(float));
    for (size_t i = 0; i < (size_t)N * K; i++) idx[i] = (uint8_t)rng_below(&r, (uint32_t)n_levels);
    for (size_t i = 0; i < (size_t)N * ng; i++) sc[i] = 0.01f + 0.01f * rng_uniform(&r);
    for (int t = 0; t < nt; t++) {
        float raw[256];
        for (int k = 0; k < n_levels; k++) raw[k] = -1.0f + 2.0f * ((float)k + 0.3f * rng_uniform(&r)) / (float)n_levels;
        quant_table_sort(raw, n_levels, lv + (size_t)t * n_levels, NULL, "bench");
    }
    qmatrix_from_luts(q, idx, N, K, group, sc, lv, n_levels, per_row ? QG_CHANNEL : QG_TENSOR);
    free(idx), free(lv), free(sc);
}

static void bench_tables(int max_mib, int repeats) {
    printf("kernel path %s, %d threads; rows/s, medians of %d rounds: int4 g32, kmeans4 g32 with one table per layer and "
           "with a table per row; int8 per channel and kmeans8 per channel (256 levels)\n",
           kernel_path_name(kernel_path()), omp_get_max_threads(), repeats);
    printf("%6s | %9s %9s %9s %6s %6s | %9s %9s %6s | %9s %9s %6s\n", "N = K", "M=1 int4", "km4 layer", "km4 row",
           "layer", "row", "M=1 int8", "km8", "ratio", "M=16 int4", "km4 row", "ratio");
    static const int dims[] = {256, 1024, 2048, 4096};
    char json[8192];
    size_t jl = 0;
    for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
        int N = dims[d], K = dims[d];
        if ((double)N * K / (1 << 20) > max_mib * 1.01) break;
        float *w = random_floats((size_t)N * K, 1, 0.02f), *x = random_floats((size_t)16 * K, 2, 1.0f);
        float *y = xmalloc((size_t)16 * N * sizeof(float));
        QMatrix u4, kl, kr, u8, k8;
        qmatrix_from_float(&u4, w, N, K, 4, QBLOCK, NULL);
        table_matrix(&kl, N, K, QBLOCK, 16, false);
        table_matrix(&kr, N, K, QBLOCK, 16, true);
        qmatrix_from_float(&u8, w, N, K, 8, K, NULL);
        table_matrix(&k8, N, K, K, 256, false);
        const QMatrix *qs[7] = {&u4, &kl, &kr, &u8, &k8, &u4, &kr};
        double med[7];
        for (int k = 0; k < 7; k++) {
            Ctx c = {.M = k < 5 ? 1 : 16, .N = N, .K = K, .x = x, .y = y, .q = qs[k]};
            med[k] = time_median(run_qgemm, &c, repeats);
        }
        printf("%6d | %9.0f %9.0f %9.0f %6.2f %6.2f | %9.0f %9.0f %6.2f | %9.0f %9.0f %6.2f\n", N, N / med[0], N / med[1],
               N / med[2], med[0] / med[1], med[0] / med[2], N / med[3], N / med[4], med[3] / med[4], 16 * N / med[5],
               16 * N / med[6], med[5] / med[6]);
        fflush(stdout);
        jl += (size_t)snprintf(json + jl, sizeof json - jl,
                               "%s{\"N\":%d,\"km4_layer_over_int4\":%.3f,\"km4_row_over_int4\":%.3f,\"km8_over_int8\":%.3f,"
                               "\"m16_km4_row_over_int4\":%.3f}",
                               d ? "," : "", N, med[0] / med[1], med[0] / med[2], med[3] / med[4], med[5] / med[6]);
        qmatrix_free(&u4), qmatrix_free(&kl), qmatrix_free(&kr), qmatrix_free(&u8), qmatrix_free(&k8);
        free(w), free(x), free(y);
    }
    printf("{\"bench\":\"tables\",\"path\":\"%s\",\"threads\":%d,\"unit\":\"rows/s over the uniform grid\",\"rows\":[%s]}\n",
           kernel_path_name(kernel_path()), omp_get_max_threads(), json);
}

static void bench_gemm(int repeats) {
    static const int Ms[] = {32, 128, 512, 1024};
    static const int KN[][2] = {{512, 512}, {1024, 1024}, {4096, 1024}, {1024, 4096}, {4096, 4096}};
    printf("kernel path %s, %d threads; GFLOP/s (2*M*N*K per second)\n", kernel_path_name(kernel_path()), omp_get_max_threads());
    printf("%5s %5s %5s | %8s %8s %8s %8s | %9s\n", "M", "K", "N", "sgemm", "w8 f32", "w4 f32", "W8A8", "W8A8/sgemm");
    char json[8192];
    size_t jl = 0;
    int first = 1;
    for (size_t s = 0; s < sizeof KN / sizeof KN[0]; s++) {
        int K = KN[s][0], N = KN[s][1];
        float *w = random_floats((size_t)N * K, 3, 0.02f);
        QMatrix q8, q4;
        qmatrix_from_float(&q8, w, N, K, 8, K, NULL);
        qmatrix_pack_w8a8(&q8);
        qmatrix_from_float(&q4, w, N, K, 4, 32, NULL);
        for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++) {
            int M = Ms[mi];
            Ctx c = {.M = M, .N = N, .K = K, .w = w};
            float *x = random_floats((size_t)M * K, 4, 1.0f);
            c.x = x, c.y = xmalloc((size_t)M * N * sizeof(float));
            c.xq = xmalloc((size_t)M * K), c.xs = xmalloc((size_t)M * sizeof(float));
            double flop = 2.0 * M * N * K;
            double ts = time_median(run_sgemm, &c, repeats);
            c.q = &q8;
            double t8 = time_median(run_qgemm, &c, repeats);
            double ta = time_median(run_w8a8, &c, repeats);
            c.q = &q4;
            double t4 = time_median(run_qgemm, &c, repeats);
            printf("%5d %5d %5d | %8.1f %8.1f %8.1f %8.1f | %9.2fx\n", M, K, N, flop / ts / 1e9, flop / t8 / 1e9,
                   flop / t4 / 1e9, flop / ta / 1e9, ts / ta);
            fflush(stdout);
            jl += (size_t)snprintf(json + jl, sizeof json - jl,
                                   "%s{\"M\":%d,\"K\":%d,\"N\":%d,\"sgemm\":%.1f,\"w8_f32\":%.1f,\"w4_f32\":%.1f,\"w8a8\":%.1f}",
                                   first ? "" : ",", M, K, N, flop / ts / 1e9, flop / t8 / 1e9, flop / t4 / 1e9, flop / ta / 1e9);
            first = 0;
            free(x), free(c.y), free(c.xq), free(c.xs);
        }
        qmatrix_free(&q8), qmatrix_free(&q4);
        free(w);
    }
    printf("{\"bench\":\"gemm\",\"path\":\"%s\",\"threads\":%d,\"unit\":\"GFLOP/s\",\"rows\":[%s]}\n",
           kernel_path_name(kernel_path()), omp_get_max_threads(), json);
}

/* The linear layers' products of one training step of a GPT (forward
 * x W^T + b, backward dY W and dY^T X), timed on OpenBLAS and on qat's
 * blocked kernel (autograd/gemm.c) in alternating rounds, at the threads in
 * use: the step's time if nothing but these products ran, so the most
 * tokens/s any trainer on either can reach. */
static double time_gemm(const Gemm *g, float *ws, bool kernel) {
    gemm_use_kernel(kernel);
    int calls = 0;
    double t0 = now_seconds(), el;
    do {
        gemm_run(g, ws);
        calls++;
        el = now_seconds() - t0;
    } while (el < 0.02);
    gemm_use_kernel(true);
    return el / calls;
}

static void bench_train_gemm(int repeats, int L, int C, int V, int BT) {
    int shapes[5][2] = {{3 * C, C}, {C, C}, {4 * C, C}, {C, 4 * C}, {V, C}}; /* {out, in}: qkv, proj, fc, fc_proj, head */
    double total[2] = {0, 0}, flops = 0;
    bool have = gemm_kernel_available();
    printf("training-step products: %d layers, width %d, vocab %d, %d tokens per step, %d threads\n", L, C, V, BT,
           omp_get_max_threads());
    printf("GFLOP/s, OpenBLAS | qat kernel%s\n", have ? "" : " (not available on this CPU: OpenBLAS again)");
    printf("%6s %6s | %13s %13s %13s | %17s\n", "out", "in", "fwd", "dX", "dW", "ms/step");
    for (int s = 0; s < 5; s++) {
        int N = shapes[s][0], K = shapes[s][1], times = s < 4 ? L : 1;
        float *x = random_floats((size_t)BT * K, 5, 1.0f), *w = random_floats((size_t)N * K, 6, 0.02f);
        float *bias = random_floats((size_t)N, 8, 0.02f);
        float *dy = random_floats((size_t)BT * N, 7, 1.0f), *o = xmalloc((size_t)BT * (N > K ? N : K) * sizeof(float));
        float *dw = random_floats((size_t)N * K, 9, 0.02f);
        Gemm g[3] = {
            {.tb = true, .M = BT, .N = N, .K = K, .alpha = 1, .A = x, .lda = K, .B = w, .ldb = K, .C = o, .ldc = N, .bias = bias},
            {.M = BT, .N = K, .K = N, .alpha = 1, .A = dy, .lda = N, .B = w, .ldb = K, .C = o, .ldc = K},
            {.ta = true, .M = N, .N = K, .K = BT, .alpha = 1, .beta = 1, .A = dy, .lda = N, .B = x, .ldb = K, .C = dw, .ldc = K}};
        printf("%6d %6d |", N, K);
        double fl = 2.0 * BT * N * K, ms[2] = {0, 0};
        for (int j = 0; j < 3; j++) {
            size_t nws = gemm_ws_floats(&g[j]);
            float *ws = nws ? aligned_alloc(64, (nws * sizeof(float) + 63) / 64 * 64) : NULL;
            double t[2][64];
            int reps = repeats < 64 ? repeats : 64;
            time_gemm(&g[j], ws, false), time_gemm(&g[j], ws, have); /* warm up */
            for (int r = 0; r < reps; r++) {
                t[0][r] = time_gemm(&g[j], ws, false);
                t[1][r] = time_gemm(&g[j], ws, have);
            }
            double tb = median(t[0], reps), tk = median(t[1], reps);
            printf(" %6.0f %6.0f", fl / tb / 1e9, fl / tk / 1e9);
            ms[0] += tb * 1e3 * times, ms[1] += tk * 1e3 * times;
            free(ws);
        }
        printf(" | %8.2f %8.2f  (x%d)\n", ms[0], ms[1], times);
        total[0] += ms[0], total[1] += ms[1], flops += 3 * fl * times;
        free(x), free(w), free(bias), free(dy), free(o), free(dw);
    }
    printf("products alone: OpenBLAS %.1f ms per step at %.0f GFLOP/s (at most %.0f tokens/s), "
           "qat kernel %.1f ms at %.0f GFLOP/s (at most %.0f tokens/s): %.2fx\n",
           total[0], flops / total[0] / 1e6, BT / total[0] * 1e3, total[1], flops / total[1] / 1e6,
           BT / total[1] * 1e3, total[0] / total[1]);
    printf("{\"bench\":\"train_gemm\",\"threads\":%d,\"blas_ms_per_step\":%.2f,\"kernel_ms_per_step\":%.2f,"
           "\"blas_gflops\":%.1f,\"kernel_gflops\":%.1f,\"speedup\":%.3f}\n",
           omp_get_max_threads(), total[0], total[1], flops / total[0] / 1e6, flops / total[1] / 1e6,
           total[0] / total[1]);
}

int main(int argc, char **argv) {
    if (argc < 2 || (strcmp(argv[1], "gemv") && strcmp(argv[1], "gemm") && strcmp(argv[1], "train-gemm") &&
                     strcmp(argv[1], "levels") && strcmp(argv[1], "tables"))) {
        fprintf(stderr, "usage: bench_kernels gemv [--max-mib N] [--repeats R] | gemm [--repeats R] | levels [--max-mib N] "
                        "[--repeats R] | tables [--max-mib N] [--repeats R] | train-gemm [--repeats R]\n");
        return 2;
    }
    bool levels = !strcmp(argv[1], "levels") || !strcmp(argv[1], "tables");
    int max_mib = levels ? 64 : 256, repeats = strcmp(argv[1], "gemv") && !levels ? 5 : 7;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--max-mib")) max_mib = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--repeats")) repeats = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "bench_kernels: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (repeats < 1) repeats = 1;
    if (!strcmp(argv[1], "gemv")) bench_gemv(max_mib, repeats);
    else if (!strcmp(argv[1], "gemm")) bench_gemm(repeats);
    else if (!strcmp(argv[1], "tables")) bench_tables(max_mib, repeats);
    else if (levels) bench_levels(max_mib, repeats);
    else bench_train_gemm(repeats, 4, 128, 65, 32 * 128); /* configs/tiny-shakespeare.yaml */
    return 0;
}
