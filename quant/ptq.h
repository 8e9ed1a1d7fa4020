/* ptq.h: post-training quantization of one Linear at a time, on plain arrays:
 * calibration statistics of a layer's inputs, round-to-nearest, GPTQ, the
 * AWQ scale and clipping searches, and SmoothQuant's migration scales. Every
 * method produces weights and scales in the shared quantizer's terms (codes
 * = clamp(rint(w * (1/scale)) + zp)), so fake quantization, export and the
 * integer kernels reproduce them exactly. train/ptq.c runs these over a
 * whole model. */
#ifndef QAT_PTQ_H
#define QAT_PTQ_H

#include <stdbool.h>
#include <stddef.h>

#include "quant/quantizer.h"

/* What calibration gathers about the inputs x [n, cols] of one Linear. */
typedef struct PtqStats {
    int cols;
    long n;         /* rows (tokens) seen */
    float *xtx;     /* [cols, cols] sum of x^T x (upper triangle while accumulating) */
    float *absmax;  /* [cols] max |x| per input feature */
    double *abssum; /* [cols] sum of |x| per input feature */
    float *sample;  /* up to sample_cap rows of x, every sample_stride-th row seen */
    int n_sample, sample_cap, sample_stride;
} PtqStats;

/* sample_cap 0: no rows kept. */
void ptq_stats_init(PtqStats *s, int cols, int sample_cap, int sample_stride);
void ptq_stats_add(PtqStats *s, const float *x, size_t rows);
void ptq_stats_free(PtqStats *s);
/* H = 2/n X^T X, full symmetric [cols, cols] (GPTQ's Hessian of the layer's
 * squared output error). */
void ptq_hessian(const PtqStats *s, float *H);

/* Mean squared output error per token, ||X (W - Wq)^T||^2 / n, from
 * H = 2/n X^T X: the sum over rows of d^T H d / 2 with d = w - wq. */
double ptq_output_error(const float *w, const float *wq, int rows, int cols, const float *H);

/* Round-to-nearest: min-max scales (and zero points when asymmetric) of w
 * [rows, cols] under s; wq = dequant(quant(w)) (may be NULL). */
void ptq_rtn(const QuantSpec *s, const float *w, int rows, int cols, float *scale, float *zp, float *wq);

typedef struct GptqOptions {
    float damp;     /* added to the diagonal: damp x mean(diag H) (default 0.01) */
    int block;      /* columns per lazy batch update (default 128) */
    bool act_order; /* columns in order of decreasing diag H */
} GptqOptions;
/* GPTQ (Frantar et al. 2022) of w [rows, cols] against H (not modified):
 * columns are quantized one at a time and each one's error is spread over the
 * columns not yet quantized through the upper Cholesky factor of H^-1, in
 * blocks with lazy updates. Scales: per tensor or channel from the original
 * weights; per group from the updated weights as each group starts (with
 * act_order, from the original weights, so groups stay contiguous columns as
 * the export format wants). On return w holds the dequantized weights. Fails
 * naming `name` if H is not positive definite even after dampening. */
void ptq_gptq(const QuantSpec *s, float *w, int rows, int cols, const float *H, const GptqOptions *o, float *scale,
              float *zp, const char *name);

/* AWQ (Lin et al. 2023) scale search: for each exponent a in grid, input
 * channel scales s_j = mean|x_j|^a (normalised so max*min = 1); the layer is
 * quantized as Q(W diag(s)) diag(s)^-1 and the exponent with the least output
 * error (ptq_output_error with H) wins. Writes the scales of the winner to
 * s_out and returns its exponent. Exponent 0 gives s = 1 (round-to-nearest).
 * A kmeans spec's table is refitted to each candidate's scaled weights
 * (weighted by their diagonal of H), as the final quantization will be. */
float ptq_awq_search(const QuantSpec *s, const float *w, int rows, int cols, const float *H, const double *abssum, long n,
                     const float *grid, int n_grid, float *s_out);
/* AWQ clipping search: for each row and weight group, the range shrunk by
 * ratio r in 1, 0.95, ..., 0.5 whose quantized group has the least output
 * error (d^T H_gg d over the group's block of H). Writes scales (and zero
 * points) like ptq_rtn. */
void ptq_clip_search(const QuantSpec *s, const float *w, int rows, int cols, const float *H, float *scale, float *zp);
/* Data-free scales: for each row and group, the range shrunk by ratio r in
 * 1, 0.99, ..., 0.2 with the least squared weight error ||w - Q(w)||^2 (the
 * initial learned scales of LSQ with quant.scale_init: mse). */
void ptq_mse_scales(const QuantSpec *s, const float *w, int rows, int cols, float *scale, float *zp);

/* Weighted k-means of the n values u (weights wt, NULL: all 1; k-means++
 * seeding from seed, then Lloyd's iterations to convergence) into k <= 256
 * levels, sorted ascending. */
void ptq_kmeans_1d(const float *u, const float *wt, size_t n, int k, uint64_t seed, float *levels);
/* The 2^bits-level table of a kmeans spec for w [rows, cols]: k-means of
 * the weights in units of their scales (u = w x 1/scale, as quant_round
 * divides), each weighted by its scale squared (so the fit minimises the
 * weights' own squared error) times col_wt of its column (NULL: 1; PTQ passes the
 * diagonal of the calibration Hessian, the output error one weight's change
 * causes, as SqueezeLLM weights by sensitivity), each level put on the grid
 * of quant_table_level; with tables per channel or group (s->tables), each
 * table fitted to its own weights, table t seeded by seed + t, into levels
 * one table after the other. */
void ptq_kmeans_table(const QuantSpec *s, const float *w, int rows, int cols, const float *scale, const float *col_wt,
                      uint64_t seed, float *levels);

/* SmoothQuant (Xiao et al. 2023) migration scales s_j = max|x_j|^alpha /
 * max_r |w_rj|^(1-alpha); the layer becomes (x / s) (W diag(s))^T. */
void ptq_smooth_scales(const float *absmax, const float *w, int rows, int cols, float alpha, float *s_out);

/* SmoothQuant with the exponent searched per layer: each alpha in grid is
 * tried on the sampled inputs x [n, cols]: the output of
 * Q_act(x / s) Q_w(W diag(s))^T against x W^T, activations quantized by a
 * (a static per-tensor scale from absmax / s when static, else per token).
 * No smoothing (s = 1) is a candidate too. Writes the winner's scales and
 * returns its alpha (-1 for no smoothing). */
float ptq_smooth_search(const QuantSpec *ws, const QuantSpec *a, bool a_static, const float *absmax, const float *w,
                        int rows, int cols, const float *x, int n, const float *grid, int n_grid, float *s_out);

/* w[:, j] *= s[j] (the layer's side of moving a scale from its input). */
void ptq_scale_cols(float *w, int rows, int cols, const float *s);
/* H <- diag(1/s) H diag(1/s): the Hessian of the inputs x / s. */
void ptq_hessian_unscale(float *H, int cols, const float *s);

#endif
