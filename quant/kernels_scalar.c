/* kernels_scalar.c: the plain C references every SIMD path is tested against. */
#include <math.h>

#include "kernels.h"

void krows_q8_f32_scalar(const int8_t *q, const float *scales, int group, const float *x, int n, int nrows, float *out) {
    for (int r = 0; r < nrows; r++) {
        const int8_t *qr = q + (size_t)r * n;
        const float *sr = scales + (size_t)r * (n / group);
        float s = 0.0f;
        for (int i = 0; i < n; i++) s += ((float)qr[i] * sr[i / group]) * x[i];
        out[r] = s;
    }
}

void krows_q4_f32_scalar(const uint8_t *q4, const float *scales, int group, const float *x_split, int n, int nrows,
                         float *out) {
    int h = n / 2;
    for (int r = 0; r < nrows; r++) {
        const uint8_t *qr = q4 + (size_t)r * h;
        const float *sr = scales + (size_t)r * (n / group);
        float s = 0.0f;
        for (int i = 0; i < h; i++) {
            s += ((float)((int)(qr[i] & 15) - 8) * sr[2 * i / group]) * x_split[i];
            s += ((float)((int)(qr[i] >> 4) - 8) * sr[(2 * i + 1) / group]) * x_split[h + i];
        }
        out[r] = s;
    }
}

void krows_lut8_f32_scalar(const uint8_t *idx, const float *lut, const float *scales, int group, const float *x, int n,
                           int nrows, float *out) {
    for (int r = 0; r < nrows; r++) {
        const uint8_t *qr = idx + (size_t)r * n;
        const float *sr = scales + (size_t)r * (n / group);
        float s = 0.0f;
        for (int i = 0; i < n; i++) s += (lut[qr[i]] * sr[i / group]) * x[i];
        out[r] = s;
    }
}

void krows_lut_f32_scalar(const uint8_t *q4, const float *lut, int lut_rs, int lut_gs, const float *scales, int group,
                          const float *x_split, int n, int nrows, float *out) {
    int h = n / 2;
    for (int r = 0; r < nrows; r++) {
        const uint8_t *qr = q4 + (size_t)r * h;
        const float *sr = scales + (size_t)r * (n / group), *lr = lut + (size_t)r * lut_rs;
        float s = 0.0f;
        for (int i = 0; i < h; i++) {
            s += (lr[(size_t)(2 * i / group) * lut_gs + (qr[i] & 15)] * sr[2 * i / group]) * x_split[i];
            s += (lr[(size_t)((2 * i + 1) / group) * lut_gs + (qr[i] >> 4)] * sr[(2 * i + 1) / group]) * x_split[h + i];
        }
        out[r] = s;
    }
}

void kquant_row_i8_scalar(const float *x, int K, int8_t *xq, float *xs) {
    QuantSpec s = {.bits = 8, .sym = true, .gran = QG_CHANNEL};
    quant_minmax(&s, x, 1, K, xs, NULL);
    for (int k = 0; k < K; k++) xq[k] = (int8_t)quant_code(x[k], *xs, 0.0f, -127, 127);
}

void kw8a8_panels_scalar(const QMatrix *w, const int8_t *xq, const float *xs, int M, int p0, int np, float *y) {
    int N = w->rows, K = w->cols, G = w->group, ng = K / G;
    for (int n = p0 * QPANEL; n < (p0 + np) * QPANEL && n < N; n++) {
        const int8_t *wn = w->q8 + (size_t)n * K;
        for (int m = 0; m < M; m++) {
            const int8_t *xm = xq + (size_t)m * K;
            float acc = 0.0f;
            for (int g = 0; g < ng; g++) {
                int32_t d = 0;
                for (int k = g * G; k < (g + 1) * G; k++) d += (int32_t)xm[k] * wn[k];
                float sc = w->scales[(size_t)n * ng + g];
                if (w->act_q8_0) sc *= xs[(size_t)m * ng + g];
                acc = fmaf(sc, (float)d, acc);
            }
            y[(size_t)m * N + n] = (w->act_q8_0 ? 1.0f : xs[m]) * acc;
        }
    }
}

void kw4a8_panels_scalar(const QMatrix *w, const int8_t *xq, const float *xs, int M, int p0, int np, float *y) {
    int N = w->rows, K = w->cols, G = w->group, ng = K / G;
    for (int n = p0 * QPANEL; n < (p0 + np) * QPANEL && n < N; n++) {
        const uint8_t *wn = w->q4 + (size_t)n * K / 2;
        for (int m = 0; m < M; m++) {
            const int8_t *xm = xq + (size_t)m * K;
            float acc = 0.0f;
            for (int g = 0; g < ng; g++) {
                int32_t d = 0;
                for (int k = g * G; k < (g + 1) * G; k += 2)
                    if (w->lut)
                        d += (int32_t)w->lut[wn[k / 2] & 15] * xm[k] + (int32_t)w->lut[wn[k / 2] >> 4] * xm[k + 1];
                    else
                        d += ((int32_t)(wn[k / 2] & 15) - 8) * xm[k] + ((int32_t)(wn[k / 2] >> 4) - 8) * xm[k + 1];
                acc = fmaf(w->scales[(size_t)n * ng + g] * xs[(size_t)m * ng + g], (float)d, acc);
            }
            y[(size_t)m * N + n] = 1.0f * acc;
        }
    }
}
