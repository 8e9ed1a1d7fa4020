/* kernels_scalar.c: the plain C references every SIMD path is tested against. */
#include "kernels.h"

float kdot_q8_f32_scalar(const int8_t *q, const float *x, int n) {
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += (float)q[i] * x[i];
    return s;
}

float kdot_q4_f32_scalar(const uint8_t *q4, const float *x, int n) {
    float s = 0.0f;
    for (int i = 0; i < n / 2; i++) {
        s += (float)((int)(q4[i] & 15) - 8) * x[2 * i];
        s += (float)((int)(q4[i] >> 4) - 8) * x[2 * i + 1];
    }
    return s;
}

int32_t kdot_i8_i8_scalar(const int8_t *a, const int8_t *b, int n) {
    int32_t s = 0;
    for (int i = 0; i < n; i++) s += (int32_t)a[i] * b[i];
    return s;
}
