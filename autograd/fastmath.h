/* fastmath.h: branch-free exp, tanh and GELU written in plain arithmetic so that
 * loops calling them vectorise (libm's scalar calls would not), and the
 * target_clones attribute that compiles a hot loop for AVX-512, AVX2 and
 * baseline x86-64 and picks one at load time from CPUID.
 * Accuracy (measured in tests/test_values.c): fast_expf within 2.4e-7
 * relative of exp over [-87, 88] (about 2 ulp), fast_tanhf within 1.1e-7
 * absolute, which is all GELU needs. */
#ifndef QAT_FASTMATH_H
#define QAT_FASTMATH_H

#include <stdint.h>
#include <string.h>

/* gcc's function multiversioning; clang (the fuzz build) links clones
 * across files differently, and sanitizer builds need no speed */
#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__) && !defined(__clang__)
#define QAT_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define QAT_CLONES
#endif

static inline float fast_expf(float x) {
    /* written so that NaN fails the first test and lands on -87: the integer
     * conversion below must never see NaN (undefined behaviour). GELU stays
     * NaN for a NaN input through its x * (...) factor. */
    x = x > -87.0f ? x : -87.0f;
    x = x < 88.0f ? x : 88.0f;
    /* x = n ln2 + r with |r| <= ln2/2; the magic constant rounds to nearest */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693145751953125f - n * 1.428606765330187e-06f;
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float fast_tanhf(float x) {
    float a = x < 0.0f ? -x : x;
    float e = fast_expf(-2.0f * a);
    float t = (1.0f - e) / (1.0f + e);
    return x < 0.0f ? -t : t;
}

/* GELU, tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), and its
 * derivative; shared by the GELU op and the fused MLP's product epilogues so
 * both give the same bits */
#define GELU_C 0.7978845608028654f
static inline float fast_gelu(float v) { return 0.5f * v * (1.0f + fast_tanhf(GELU_C * (v + 0.044715f * v * v * v))); }
static inline float gelu_grad_th(float v, float th) {
    float sech2 = 1.0f - th * th;
    return 0.5f * (1.0f + th) + 0.5f * v * sech2 * GELU_C * (1.0f + 3.0f * 0.044715f * v * v);
}
static inline float fast_gelu_grad(float v) { return gelu_grad_th(v, fast_tanhf(GELU_C * (v + 0.044715f * v * v * v))); }
/* both from one tanh */
static inline void fast_gelu_both(float v, float *g, float *dg) {
    float th = fast_tanhf(GELU_C * (v + 0.044715f * v * v * v));
    *g = 0.5f * v * (1.0f + th);
    *dg = gelu_grad_th(v, th);
}

#endif
