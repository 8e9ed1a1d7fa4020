/* observer.c: statistics of activations seen during calibration, turned into
 * a static per-tensor scale: min-max, EMA of min-max, a percentile of the
 * values, or the clipping range that minimises the quantization MSE. The
 * last two work on a reservoir sample of the values (fixed size, seeded). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qat.h"

#define OBS_SAMPLE_CAP (1u << 17)

void observer_init(Observer *o, ObserverKind kind, float percentile, uint64_t seed) {
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->percentile = percentile;
    rng_seed(&o->rng, seed);
    if (kind == OBS_PERCENTILE || kind == OBS_MSE) {
        o->cap = OBS_SAMPLE_CAP;
        o->sample = xmalloc(o->cap * sizeof(float));
    }
}

void observer_free(Observer *o) {
    free(o->sample);
    o->sample = NULL;
}

void observer_update(Observer *o, const float *x, size_t n) {
    if (n == 0) return;
    float lo = x[0], hi = x[0];
    for (size_t i = 1; i < n; i++) {
        lo = fminf(lo, x[i]);
        hi = fmaxf(hi, x[i]);
    }
    if (o->batches == 0 || o->kind != OBS_EMA) {
        o->lo = o->batches ? fminf(o->lo, lo) : lo;
        o->hi = o->batches ? fmaxf(o->hi, hi) : hi;
    } else {
        o->lo += OBS_EMA_C * (lo - o->lo);
        o->hi += OBS_EMA_C * (hi - o->hi);
    }
    o->batches++;
    if (!o->sample) return;
    for (size_t i = 0; i < n; i++) { /* reservoir sampling (Vitter's algorithm R) */
        o->n_seen++;
        if (o->n_sample < o->cap) {
            o->sample[o->n_sample++] = x[i];
        } else {
            uint64_t j = rng_u64(&o->rng) % o->n_seen;
            if (j < o->cap) o->sample[j] = x[i];
        }
    }
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* The value below which a fraction q of sorted v lies (linear interpolation). */
static float quantile(const float *v, size_t n, double q) {
    double pos = q * (double)(n - 1);
    size_t i = (size_t)pos;
    if (i + 1 >= n) return v[n - 1];
    return (float)(v[i] + (pos - (double)i) * (v[i + 1] - v[i]));
}

static double fq_mse(const QuantSpec *s, const float *v, size_t n, float lo, float hi) {
    float sc, zp;
    quant_params_from_range(s, lo, hi, &sc, &zp);
    int qmin = quant_qmin(s), qmax = quant_qmax(s);
    double e = 0.0;
    for (size_t i = 0; i < n; i++) {
        float d = quant_dequant(quant_code(v[i], sc, zp, qmin, qmax), sc, zp) - v[i];
        e += (double)d * d;
    }
    return e;
}

void observer_params(const Observer *o, const QuantSpec *s, float *scale, float *zp) {
    float lo = o->lo, hi = o->hi;
    if (o->kind == OBS_PERCENTILE && o->n_sample > 0) {
        float *v = xmalloc(o->n_sample * sizeof(float));
        memcpy(v, o->sample, o->n_sample * sizeof(float));
        if (s->sym) /* symmetric: a percentile of |x| bounds both sides */
            for (size_t i = 0; i < o->n_sample; i++) v[i] = fabsf(v[i]);
        qsort(v, o->n_sample, sizeof(float), cmp_float);
        double q = o->percentile / 100.0;
        if (s->sym) {
            hi = quantile(v, o->n_sample, q);
            lo = -hi;
        } else {
            lo = quantile(v, o->n_sample, 1.0 - q);
            hi = quantile(v, o->n_sample, q);
        }
        free(v);
    } else if (o->kind == OBS_MSE && o->n_sample > 0) {
        /* shrink the observed range by factors 1.00, 0.99, ..., 0.30 and keep the best */
        double best = INFINITY;
        float blo = lo, bhi = hi;
        for (int k = 100; k >= 30; k--) {
            float f = (float)k / 100.0f;
            double e = fq_mse(s, o->sample, o->n_sample, lo * f, hi * f);
            if (e < best) best = e, blo = lo * f, bhi = hi * f;
        }
        lo = blo;
        hi = bhi;
    }
    quant_params_from_range(s, lo, hi, scale, zp);
}
