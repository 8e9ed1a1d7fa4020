/* quantizer.c: scales, zero points, codes and fake quantization (see quantizer.h). */
#include "quantizer.h"

#include "util/util.h"

#include <math.h>
#include <string.h>

/* Normal-float levels (see quantizer.h); tests/test_quant.c derives them
 * from the normal quantiles and checks NF4 against QLoRA's table. */
static const float NF2[4] = {-1.0f, 0.0f, 0.435818165f, 1.0f};
static const float NF3[8] = {-1.0f, -0.535022708f, -0.246931432f, 0.0f, 0.18333748f, 0.381993954f, 0.622985742f, 1.0f};
static const float NF4[16] = {-1.0f,        -0.696192806f, -0.525072959f, -0.394917426f, -0.284441309f, -0.184773403f,
                              -0.091049976f, 0.0f,         0.079580315f,  0.160930144f,  0.246112251f,  0.337915137f,
                              0.440709732f,  0.562616888f, 0.722956644f,  1.0f};

const float *quant_levels(const QuantSpec *s, int *n) {
    if (s->cb == QCB_NONE || s->bits < 2 || s->bits > 4) return NULL;
    if (s->cb == QCB_KMEANS) {
        if (!s->lut) qat_fail("quantizer: a kmeans codebook spec without its table");
        *n = 1 << s->bits;
        return s->lut;
    }
    *n = 1 << s->bits;
    return s->bits == 2 ? NF2 : s->bits == 3 ? NF3 : NF4;
}

const char *quant_codebook_name(QCodebook cb) { return cb == QCB_NF ? "nf" : cb == QCB_KMEANS ? "kmeans" : "none"; }

QCodebook quant_codebook_of(const char *name) {
    return !strcmp(name, "nf")       ? QCB_NF
           : !strcmp(name, "kmeans") ? QCB_KMEANS
           : !strcmp(name, "none")   ? QCB_NONE
                                     : (QCodebook)-1;
}

const char *quant_tables_name(QGranularity t) { return t == QG_CHANNEL ? "channel" : t == QG_GROUP ? "group" : "layer"; }

QGranularity quant_tables_of(const char *name) {
    return !strcmp(name, "layer")     ? QG_TENSOR
           : !strcmp(name, "channel") ? QG_CHANNEL
           : !strcmp(name, "group")   ? QG_GROUP
                                      : (QGranularity)-1;
}

const char *quant_tables_invalid(const QuantSpec *s) {
    if (s->tables == QG_TENSOR) return NULL;
    if (s->cb != QCB_KMEANS) return "tables per channel or group are kmeans tables (quant.weight.codebook: kmeans)";
    if (s->gran == QG_TENSOR) return "tables per channel or group need scales per channel or group";
    if (s->tables == QG_GROUP && s->gran != QG_GROUP) return "tables per group need scales per group (granularity group)";
    if (s->tables != QG_CHANNEL && s->tables != QG_GROUP) return "tables are per layer, channel or group";
    return NULL;
}

void quant_table_sort(const float *table, int n, float *lut, int *perm, const char *what) {
    for (int j = 0; j < n; j++) { /* 16 entries at most: insertion */
        float v = table[j];
        if (!isfinite(v)) qat_fail("%s: level %d of the table is %g", what, j, v);
        v = quant_table_level(v);
        int at = j;
        for (; at > 0 && lut[at - 1] > v; at--) {
            lut[at] = lut[at - 1];
            if (perm) perm[at] = perm[at - 1];
        }
        lut[at] = v;
        if (perm) perm[at] = j;
    }
}

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
        *scale = s->cb     ? amax /* codebook levels reach +-1 */
                 : s->full ? fmaxf(fmaxf(-lo, 0.0f) / (float)-qmin, fmaxf(hi, 0.0f) / (float)qmax)
                           : amax / (float)qmax;
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
    int nl = 0;
    bool table = quant_levels(s, &nl) != NULL;
#pragma omp parallel for schedule(static) if ((size_t)rows * cols > 65536)
    for (size_t k = 0; k < ns; k++) {
        float sc = scale[k], z = zp ? zp[k] : 0.0f, inv = sc > 0.0f ? 1.0f / sc : 0.0f;
        size_t at, per;
        quant_run(s, rows, cols, k, &at, &per);
        int nk = nl;
        const float *lv = table ? quant_levels_at(s, quant_table_of_scale(s, cols, k), &nk) : NULL;
        if (lv)
            for (size_t i = at; i < at + per; i++) out[i] = sc * lv[quant_level_index(lv, nl, x[i] * inv)];
        else
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
