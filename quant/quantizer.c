/* quantizer.c: scales, zero points, codes and fake quantization (see quantizer.h). */
#include "quantizer.h"

#include <math.h>

size_t quant_n_scales(const QuantSpec *s, int rows, int cols) {
    switch (s->gran) {
    case QG_TENSOR: return 1;
    case QG_CHANNEL: return (size_t)rows;
    default: return (size_t)rows * (size_t)quant_groups(cols, s->group);
    }
}

void quant_params_from_range(const QuantSpec *s, float lo, float hi, float *scale, float *zp) {
    int qmin = quant_qmin(s), qmax = quant_qmax(s);
    if (s->sym) {
        float amax = fmaxf(fabsf(lo), fabsf(hi));
        *scale = amax / (float)qmax;
        if (zp) *zp = 0.0f;
        return;
    }
    lo = fminf(lo, 0.0f); /* zero must be representable exactly */
    hi = fmaxf(hi, 0.0f);
    float sc = (hi - lo) / (float)(qmax - qmin);
    float z = sc > 0.0f ? rintf(-lo / sc) : 0.0f;
    z = fminf(fmaxf(z, (float)qmin), (float)qmax);
    *scale = sc;
    if (zp) *zp = z;
}

QuantSpec quant_spec_of_format(QFormat f) {
    return (QuantSpec){.bits = f == QF_Q8_0 ? 8 : 4, .sym = f != QF_Q4_1, .gran = QG_GROUP, .group = QBLOCK, .fmt = f};
}

void quant_minmax(const QuantSpec *s, const float *x, int rows, int cols, float *scale, float *zp) {
    size_t ns = quant_n_scales(s, rows, cols);
    if (s->fmt) { /* ggml's scales (and q4_1's minima), as stored: half precision */
        float tmp[QBLOCK];
#pragma omp parallel for schedule(static) private(tmp) if (ns > 64)
        for (size_t k = 0; k < ns; k++) block_fake(s->fmt, x + k * QBLOCK, tmp, NULL, &scale[k], zp ? &zp[k] : NULL);
        return;
    }
#pragma omp parallel for schedule(static) if (ns > 64)
    for (size_t k = 0; k < ns; k++) {
        size_t at, per;
        quant_run(s, rows, cols, k, &at, &per);
        const float *p = x + at;
        float lo = p[0], hi = p[0];
        for (size_t i = 1; i < per; i++) {
            lo = fminf(lo, p[i]);
            hi = fmaxf(hi, p[i]);
        }
        quant_params_from_range(s, lo, hi, &scale[k], zp ? &zp[k] : NULL);
    }
}

void quant_fake(const QuantSpec *s, const float *x, int rows, int cols, const float *scale, const float *zp,
                float *out) {
    int qmin = quant_qmin(s), qmax = quant_qmax(s);
    size_t ns = quant_n_scales(s, rows, cols);
    if (s->fmt) {
#pragma omp parallel for schedule(static) if (ns > 256)
        for (size_t k = 0; k < ns; k++) {
            if (scale) block_fake_scaled(s->fmt, x + k * QBLOCK, scale[k], zp ? zp[k] : 0.0f, out + k * QBLOCK, NULL);
            else block_fake(s->fmt, x + k * QBLOCK, out + k * QBLOCK, NULL, NULL, NULL);
        }
        return;
    }
#pragma omp parallel for schedule(static) if ((size_t)rows * cols > 65536)
    for (size_t k = 0; k < ns; k++) {
        float sc = scale[k], z = zp ? zp[k] : 0.0f;
        size_t at, per;
        quant_run(s, rows, cols, k, &at, &per);
        for (size_t i = at; i < at + per; i++) out[i] = quant_dequant(quant_code(x[i], sc, z, qmin, qmax), sc, z);
    }
}

void quant_fake_groups(const float *x, int n_groups, int gsize, int bits, float *out) {
    QuantSpec s = {.bits = bits, .sym = true, .gran = QG_TENSOR};
    int qmin = quant_qmin(&s), qmax = quant_qmax(&s);
    for (int g = 0; g < n_groups; g++) {
        const float *xg = x + (size_t)g * gsize;
        float *yg = out + (size_t)g * gsize;
        float amax = 0.0f;
        for (int j = 0; j < gsize; j++) amax = fmaxf(amax, fabsf(xg[j]));
        float sc;
        quant_params_from_range(&s, -amax, amax, &sc, NULL);
        for (int j = 0; j < gsize; j++) yg[j] = quant_dequant(quant_code(xg[j], sc, 0.0f, qmin, qmax), sc, 0.0f);
    }
}
