/* kernels.c: run-time choice of the SIMD path, QMatrix construction with the
 * shared quantizer, and the matrix products built on the dot primitives. */
#include "kernels_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

/* CPU features are a property of the process, so the chosen path is too. */
static int g_path = -1;

bool kernel_supported(KernelPath p) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (p == KERN_AVX512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vnni");
    if (p == KERN_AVX2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return p == KERN_SCALAR;
}

const char *kernel_path_name(KernelPath p) {
    return p == KERN_AVX512 ? "avx512" : p == KERN_AVX2 ? "avx2" : "scalar";
}

KernelPath kernel_path(void) {
    if (g_path >= 0) return (KernelPath)g_path;
    const char *env = getenv("QAT_KERNEL");
    if (env && *env) {
        KernelPath p = !strcmp(env, "scalar") ? KERN_SCALAR : !strcmp(env, "avx2") ? KERN_AVX2
                       : !strcmp(env, "avx512")                                     ? KERN_AVX512
                                                                                    : (KernelPath)-1;
        if ((int)p < 0) qat_fail("QAT_KERNEL=%s: expected scalar, avx2 or avx512", env);
        if (!kernel_supported(p)) qat_fail("QAT_KERNEL=%s: this CPU does not support that path", env);
        g_path = p;
    } else {
        g_path = kernel_supported(KERN_AVX512) ? KERN_AVX512 : kernel_supported(KERN_AVX2) ? KERN_AVX2 : KERN_SCALAR;
    }
    return (KernelPath)g_path;
}

KernelPath kernel_force(KernelPath p) {
    KernelPath old = kernel_path();
    if (!kernel_supported(p)) qat_fail("kernel path %s is not supported by this CPU", kernel_path_name(p));
    g_path = p;
    return old;
}

float kdot_q8_f32(const int8_t *q, const float *x, int n) {
    switch (kernel_path()) {
    case KERN_AVX512: return kdot_q8_f32_avx512(q, x, n);
    case KERN_AVX2: return kdot_q8_f32_avx2(q, x, n);
    default: return kdot_q8_f32_scalar(q, x, n);
    }
}

float kdot_q4_f32(const uint8_t *q4, const float *x, int n) {
    switch (kernel_path()) {
    case KERN_AVX512: return kdot_q4_f32_avx512(q4, x, n);
    case KERN_AVX2: return kdot_q4_f32_avx2(q4, x, n);
    default: return kdot_q4_f32_scalar(q4, x, n);
    }
}

int32_t kdot_i8_i8(const int8_t *a, const int8_t *b, int n) {
    switch (kernel_path()) {
    case KERN_AVX512: return kdot_i8_i8_avx512(a, b, n);
    case KERN_AVX2: return kdot_i8_i8_avx2(a, b, n);
    default: return kdot_i8_i8_scalar(a, b, n);
    }
}

void qmatrix_from_float(QMatrix *m, const float *w, int rows, int cols, int bits, int group, const float *scales) {
    if (bits != 8 && bits != 4) qat_fail("qmatrix: %d bits (kernels take 8 or 4)", bits);
    if (group < 1 || cols % group != 0) qat_fail("qmatrix: group %d does not divide %d columns", group, cols);
    if (bits == 4 && (group % 2 || cols % 2)) qat_fail("qmatrix: int4 needs an even group and column count");
    memset(m, 0, sizeof *m);
    m->rows = rows, m->cols = cols, m->bits = bits, m->group = group;
    QuantSpec s = {.bits = bits, .sym = true, .gran = group == cols ? QG_CHANNEL : QG_GROUP, .group = group};
    size_t ns = (size_t)rows * (cols / group);
    m->scales = xmalloc(ns * sizeof(float));
    if (scales)
        memcpy(m->scales, scales, ns * sizeof(float));
    else
        quant_minmax(&s, w, rows, cols, m->scales, NULL);
    int qmin = quant_qmin(&s), qmax = quant_qmax(&s);
    size_t n = (size_t)rows * cols;
    if (bits == 8) {
        m->q8 = xmalloc(n);
        for (size_t i = 0; i < n; i++) m->q8[i] = (int8_t)quant_code(w[i], m->scales[i / group], 0.0f, qmin, qmax);
    } else {
        m->q4 = xmalloc(n / 2);
        for (size_t i = 0; i < n; i += 2) {
            int lo = quant_code(w[i], m->scales[i / group], 0.0f, qmin, qmax) + 8;
            int hi = quant_code(w[i + 1], m->scales[(i + 1) / group], 0.0f, qmin, qmax) + 8;
            m->q4[i / 2] = (uint8_t)(lo | hi << 4);
        }
    }
}

void qmatrix_free(QMatrix *m) {
    free(m->q8);
    free(m->q4);
    free(m->scales);
    memset(m, 0, sizeof *m);
}

void qgemm_f32(const QMatrix *w, const float *x, int M, float *y) {
    int N = w->rows, K = w->cols, G = w->group, ng = K / G;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *sc = w->scales + (size_t)n * ng;
        for (int m = 0; m < M; m++) {
            const float *xm = x + (size_t)m * K;
            float acc = 0.0f;
            for (int g = 0; g < ng; g++) {
                float d = w->bits == 8 ? kdot_q8_f32(w->q8 + (size_t)n * K + (size_t)g * G, xm + (size_t)g * G, G)
                                       : kdot_q4_f32(w->q4 + ((size_t)n * K + (size_t)g * G) / 2, xm + (size_t)g * G, G);
                acc += sc[g] * d;
            }
            y[(size_t)m * N + n] = acc;
        }
    }
}

void qgemm_w8a8(const QMatrix *w, const float *x, int M, float *y, int8_t *xq, float *xs) {
    if (w->bits != 8) qat_fail("qgemm_w8a8: weights have %d bits, not 8", w->bits);
    int N = w->rows, K = w->cols, G = w->group, ng = K / G;
    /* dynamic per-token activation scales with the shared quantizer, as in training */
    QuantSpec s = {.bits = 8, .sym = true, .gran = QG_CHANNEL};
    quant_minmax(&s, x, M, K, xs, NULL);
    for (int m = 0; m < M; m++)
        for (int k = 0; k < K; k++)
            xq[(size_t)m * K + k] = (int8_t)quant_code(x[(size_t)m * K + k], xs[m], 0.0f, -127, 127);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *sc = w->scales + (size_t)n * ng;
        const int8_t *wn = w->q8 + (size_t)n * K;
        for (int m = 0; m < M; m++) {
            const int8_t *xm = xq + (size_t)m * K;
            float acc = 0.0f;
            for (int g = 0; g < ng; g++) acc += sc[g] * (float)kdot_i8_i8(xm + (size_t)g * G, wn + (size_t)g * G, G);
            y[(size_t)m * N + n] = xs[m] * acc;
        }
    }
}
