/* ptq.c: the per-layer post-training quantization algorithms (see ptq.h). */
#include "ptq.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

void ptq_stats_init(PtqStats *s, int cols, int sample_cap, int sample_stride) {
    memset(s, 0, sizeof *s);
    s->cols = cols;
    s->sample_cap = sample_cap;
    s->sample_stride = sample_stride > 0 ? sample_stride : 1;
    if (sample_cap) s->sample = xmalloc((size_t)sample_cap * cols * sizeof(float));
    s->xtx = xcalloc((size_t)cols * cols, sizeof(float));
    s->absmax = xcalloc((size_t)cols, sizeof(float));
    s->abssum = xcalloc((size_t)cols, sizeof(double));
}

void ptq_stats_add(PtqStats *s, const float *x, size_t rows) {
    int C = s->cols;
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, C, (int)rows, 1.0f, x, C, 1.0f, s->xtx, C);
    /* row by row (x is row-major), each thread over its own columns */
#pragma omp parallel
    {
        int nt = omp_get_num_threads(), id = omp_get_thread_num();
        int j0 = (int)((long)C * id / nt), j1 = (int)((long)C * (id + 1) / nt);
        for (size_t r = 0; r < rows; r++) {
            const float *xr = x + r * C;
            for (int j = j0; j < j1; j++) {
                float a = fabsf(xr[j]);
                s->absmax[j] = fmaxf(s->absmax[j], a);
                s->abssum[j] += a;
            }
        }
    }
    for (size_t r = 0; r < rows && s->n_sample < s->sample_cap; r++)
        if ((s->n + (long)r) % s->sample_stride == 0)
            memcpy(s->sample + (size_t)s->n_sample++ * C, x + r * C, (size_t)C * sizeof(float));
    s->n += (long)rows;
}

void ptq_stats_free(PtqStats *s) {
    free(s->xtx);
    free(s->absmax);
    free(s->abssum);
    free(s->sample);
    memset(s, 0, sizeof *s);
}

void ptq_hessian(const PtqStats *s, float *H) {
    int C = s->cols;
    float f = s->n > 0 ? 2.0f / (float)s->n : 0.0f;
    for (int i = 0; i < C; i++)
        for (int j = i; j < C; j++) H[(size_t)i * C + j] = H[(size_t)j * C + i] = f * s->xtx[(size_t)i * C + j];
}

double ptq_output_error(const float *w, const float *wq, int rows, int cols, const float *H) {
    size_t n = (size_t)rows * cols;
    float *d = xmalloc(n * sizeof(float)), *dh = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) d[i] = w[i] - wq[i];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, cols, cols, 1.0f, d, cols, H, cols, 0.0f, dh, cols);
    double e = 0.0;
    for (size_t i = 0; i < n; i++) e += (double)d[i] * dh[i];
    free(d);
    free(dh);
    return e / 2.0;
}

void ptq_rtn(const QuantSpec *s, const float *w, int rows, int cols, float *scale, float *zp, float *wq) {
    quant_minmax(s, w, rows, cols, scale, s->sym ? NULL : zp);
    if (wq) quant_fake(s, w, rows, cols, scale, s->sym ? NULL : zp, wq);
}

typedef struct DiagCol {
    float d;
    int c;
} DiagCol;
/* Columns by decreasing diag(H), ties in column order. */
static int by_diag_desc(const void *a, const void *b) {
    const DiagCol *x = a, *y = b;
    if (x->d != y->d) return x->d > y->d ? -1 : 1;
    return x->c - y->c;
}

void ptq_gptq(const QuantSpec *s, float *w, int rows, int cols, const float *H0, const GptqOptions *o, float *scale,
              float *zp, const char *name) {
    int B = o->block > 0 ? o->block : 128;
    size_t C = (size_t)cols, R = (size_t)rows;
    float *H = xmalloc(C * C * sizeof(float)), *Wt = xmalloc(C * R * sizeof(float));
    memcpy(H, H0, C * C * sizeof(float));
    /* work on W^T so that a column (and every update of one) is contiguous */
    for (size_t r = 0; r < R; r++)
        for (size_t c = 0; c < C; c++) Wt[c * R + r] = w[r * C + c];
    /* inputs that were always zero: their weights cannot matter; make H invertible */
    for (size_t c = 0; c < C; c++)
        if (H[c * C + c] == 0.0f) {
            H[c * C + c] = 1.0f;
            memset(Wt + c * R, 0, R * sizeof(float));
        }
    bool lazy = s->gran == QG_GROUP && !o->act_order;
    if (!lazy) {
        for (size_t r = 0; r < R; r++)
            for (size_t c = 0; c < C; c++) w[r * C + c] = Wt[c * R + r];
        quant_minmax(s, w, rows, cols, scale, s->sym ? NULL : zp);
    }
    int *perm = xmalloc(C * sizeof(int));
    for (int c = 0; c < cols; c++) perm[c] = c;
    if (o->act_order) {
        DiagCol *diag = xmalloc(C * sizeof(DiagCol));
        for (size_t c = 0; c < C; c++) diag[c] = (DiagCol){H[c * C + c], (int)c};
        qsort(diag, C, sizeof(DiagCol), by_diag_desc);
        for (size_t c = 0; c < C; c++) perm[c] = diag[c].c;
        float *Hp = xmalloc(C * C * sizeof(float)), *Wp = xmalloc(C * R * sizeof(float));
        for (size_t i = 0; i < C; i++) {
            for (size_t j = 0; j < C; j++) Hp[i * C + j] = H[(size_t)perm[i] * C + perm[j]];
            memcpy(Wp + i * R, Wt + (size_t)perm[i] * R, R * sizeof(float));
        }
        free(H), free(Wt), free(diag);
        H = Hp, Wt = Wp;
    }
    double mean_diag = 0.0;
    for (size_t c = 0; c < C; c++) mean_diag += H[c * C + c];
    float damp = o->damp * (float)(mean_diag / (double)C);
    for (size_t c = 0; c < C; c++) H[c * C + c] += damp;
    /* U: upper Cholesky factor of H^-1 (H^-1 = U^T U) */
    lapack_int info = LAPACKE_spotrf(LAPACK_ROW_MAJOR, 'L', cols, H, cols);
    if (info == 0) info = LAPACKE_spotri(LAPACK_ROW_MAJOR, 'L', cols, H, cols);
    if (info == 0) {
        for (size_t i = 0; i < C; i++)
            for (size_t j = i + 1; j < C; j++) H[i * C + j] = H[j * C + i];
        info = LAPACKE_spotrf(LAPACK_ROW_MAJOR, 'U', cols, H, cols);
    }
    if (info != 0)
        qat_fail("%s: GPTQ: the calibration Hessian is not positive definite (LAPACK info %d); raise --damp or "
                 "--calib-batches", name, (int)info);
    const float *U = H;
    size_t ng = s->gran == QG_GROUP ? (size_t)quant_groups(cols, s->group) : 1;
    float *err = xmalloc((size_t)B * R * sizeof(float));
    for (int i1 = 0; i1 < cols; i1 += B) {
        int i2 = i1 + B < cols ? i1 + B : cols;
        for (int i = i1; i < i2; i++) {
            float *wi = Wt + (size_t)i * R;
            int c = perm[i];
            if (lazy && c % s->group == 0) /* this group's scales from its columns as updated so far */
                for (size_t r = 0; r < R; r++) {
                    float g[QBLOCK], lo = wi[r], hi = wi[r];
                    int gl = cols - c < s->group ? cols - c : s->group; /* the last group may be partial */
                    for (int k = 1; k < gl; k++) {
                        float v = Wt[(size_t)(i + k) * R + r];
                        lo = fminf(lo, v), hi = fmaxf(hi, v);
                    }
                    size_t si = r * ng + (size_t)c / s->group;
                    if (s->fmt) { /* ggml's rule for the block's d (and minimum) */
                        for (int k = 0; k < QBLOCK; k++) g[k] = Wt[(size_t)(i + k) * R + r];
                        block_fake(s->fmt, g, g, NULL, &scale[si], s->sym ? NULL : &zp[si]);
                    } else {
                        quant_params_from_range(s, lo, hi, &scale[si], s->sym ? NULL : &zp[si]);
                    }
                }
            float d = U[(size_t)i * C + i];
            float *e = err + (size_t)(i - i1) * R;
            for (size_t r = 0; r < R; r++) {
                size_t si = quant_scale_index(s, cols, (int)r, c);
                float sc = scale[si], z = s->sym ? 0.0f : zp[si];
                float q = s->fmt ? block_round(s->fmt, wi[r], sc, z, NULL)
                                 : quant_round_at(s, quant_table_of_scale(s, cols, si), wi[r], sc, z);
                e[r] = (wi[r] - q) / d;
                wi[r] = q;
            }
            for (int j = i + 1; j < i2; j++) {
                float u = U[(size_t)i * C + j];
                float *wj = Wt + (size_t)j * R;
                for (size_t r = 0; r < R; r++) wj[r] -= u * e[r];
            }
        }
        if (i2 < cols) /* lazy batch update of every later column */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cols - i2, rows, i2 - i1, -1.0f, U + (size_t)i1 * C + i2,
                        cols, err, rows, 1.0f, Wt + (size_t)i2 * R, rows);
    }
    for (size_t i = 0; i < C; i++)
        for (size_t r = 0; r < R; r++) w[r * C + (size_t)perm[i]] = Wt[i * R + r];
    free(err), free(perm), free(H), free(Wt);
}

float ptq_awq_search(const QuantSpec *s, const float *w, int rows, int cols, const float *H, const double *abssum, long n,
                     const float *grid, int n_grid, float *s_out) {
    size_t N = (size_t)rows * cols;
    size_t ns = quant_n_scales(s, rows, cols);
    float *sc = xmalloc((size_t)cols * sizeof(float)), *ws = xmalloc(N * sizeof(float)), *wq = xmalloc(N * sizeof(float));
    float *scale = xmalloc(ns * sizeof(float)), *zp = xmalloc(ns * sizeof(float));
    float *dw = s->cb == QCB_KMEANS ? xmalloc((size_t)cols * sizeof(float)) : NULL;
    float *table = s->cb == QCB_KMEANS ? xmalloc(quant_n_tables(s, rows, cols) * 16 * sizeof(float)) : NULL;
    double best = INFINITY;
    float best_a = 0.0f;
    for (int k = 0; k < n_grid; k++) {
        float a = grid[k], mx = 0.0f, mn = INFINITY;
        for (int j = 0; j < cols; j++) {
            float m = (float)(abssum[j] / (double)(n > 0 ? n : 1));
            sc[j] = fmaxf(powf(m, a), 1e-4f);
            mx = fmaxf(mx, sc[j]), mn = fminf(mn, sc[j]);
        }
        float norm = sqrtf(mx * mn);
        for (int j = 0; j < cols; j++) sc[j] /= norm;
        memcpy(ws, w, N * sizeof(float));
        ptq_scale_cols(ws, rows, cols, sc);
        QuantSpec sk = *s;
        if (s->cb == QCB_KMEANS) { /* each candidate with the table of its scaled weights, by diag(H) / s^2 */
            quant_minmax(s, ws, rows, cols, scale, NULL);
            for (int j = 0; j < cols; j++) dw[j] = H[(size_t)j * cols + j] / (sc[j] * sc[j]);
            ptq_kmeans_table(s, ws, rows, cols, scale, dw, 1, table);
            sk.lut = table;
        }
        ptq_rtn(&sk, ws, rows, cols, scale, zp, wq);
        for (size_t i = 0; i < N; i++) wq[i] /= sc[i % (size_t)cols];
        double e = ptq_output_error(w, wq, rows, cols, H);
        if (e < best) {
            best = e, best_a = a;
            memcpy(s_out, sc, (size_t)cols * sizeof(float));
        }
    }
    free(sc), free(ws), free(wq), free(scale), free(zp), free(dw), free(table);
    return best_a;
}

/* The scale (and zero point) of a group whose range [lo, hi] is shrunk by
 * ratio. Block formats shrink ggml's own d (q4_0: from the signed extreme;
 * q4_1: d and the minimum; iq4_nl: the d of ggml's search) and store them
 * in half precision, so ratio 1 is ggml's reference block. */
static void clip_params(const QuantSpec *s, const float *g, float lo, float hi, float ratio, float *sc, float *z) {
    if (!s->fmt) {
        quant_params_from_range(s, ratio * lo, ratio * hi, sc, s->sym ? NULL : z);
        return;
    }
    if (s->fmt == QF_Q4_1) {
        *sc = fp16_round(ratio * (hi - lo) / 15.0f), *z = fp16_round(ratio * lo);
        return;
    }
    *z = 0.0f;
    if (s->fmt == QF_IQ4_NL) { /* ggml's searched d, shrunk */
        float tmp[QBLOCK], d;
        block_fake(s->fmt, g, tmp, NULL, &d, NULL);
        *sc = fp16_round(ratio * d);
        return;
    }
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < QBLOCK; j++)
        if (amax < fabsf(g[j])) amax = fabsf(g[j]), max = g[j];
    *sc = fp16_round(ratio * (s->fmt == QF_Q8_0 ? amax / 127.0f : max / -8.0f));
}

/* The search both entry points share: ratios 1, 1 - step, ..., 1 - (steps-1) step;
 * the error is d^T H d, or the plain squared error when H is NULL. */
static void clip_search(const QuantSpec *s, const float *w, int rows, int cols, const float *H, int steps, float step,
                        float *scale, float *zp) {
    if (s->gran == QG_TENSOR) { /* one range for the whole matrix */
        size_t N = (size_t)rows * cols;
        float lo = w[0], hi = w[0];
        for (size_t i = 1; i < N; i++) lo = fminf(lo, w[i]), hi = fmaxf(hi, w[i]);
        float *wq = xmalloc(N * sizeof(float));
        double best = INFINITY;
        for (int k = 0; k < steps; k++) {
            float r = 1.0f - step * (float)k, sc, z = 0.0f;
            quant_params_from_range(s, r * lo, r * hi, &sc, s->sym ? NULL : &z);
            quant_fake(s, w, rows, cols, &sc, s->sym ? NULL : &z, wq);
            double e = 0.0;
            if (H)
                e = ptq_output_error(w, wq, rows, cols, H);
            else
                for (size_t i = 0; i < N; i++) e += (double)(w[i] - wq[i]) * (w[i] - wq[i]);
            if (e < best) best = e, scale[0] = sc, zp ? (void)(zp[0] = z) : (void)0;
        }
        free(wq);
        return;
    }
    /* per ratio: all rows' errors at once, d^T H_gg d through one sgemm per group */
    int G = s->gran == QG_CHANNEL ? cols : s->group, ng = quant_groups(cols, G); /* the last group may be partial */
    if (s->fmt && G != QBLOCK) qat_fail("ptq: %s comes in groups of %d", qformat_name(s->fmt), QBLOCK);
    size_t N = (size_t)rows * cols;
    float *lo = xmalloc((size_t)rows * ng * sizeof(float)), *hi = xmalloc((size_t)rows * ng * sizeof(float));
    double *best = xmalloc((size_t)rows * ng * sizeof(double));
    float *d = xmalloc(N * sizeof(float)), *e = H ? xmalloc(N * sizeof(float)) : NULL; /* e = d H */
#define GROUP_AT(i) ((i) / (size_t)ng * (size_t)cols + (i) % (size_t)ng * (size_t)G)
#define GROUP_LEN(i) ((int)((i) % (size_t)ng) == ng - 1 ? cols - (ng - 1) * G : G)
    for (size_t i = 0; i < (size_t)rows * ng; i++) {
        const float *wg = w + GROUP_AT(i);
        lo[i] = hi[i] = wg[0];
        for (int k = 1; k < GROUP_LEN(i); k++) lo[i] = fminf(lo[i], wg[k]), hi[i] = fmaxf(hi[i], wg[k]);
        best[i] = INFINITY;
    }
    for (int k = 0; k < steps; k++) {
        float ratio = 1.0f - step * (float)k;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < (size_t)rows * ng; i++) {
            float sc, z = 0.0f;
            clip_params(s, w + GROUP_AT(i), lo[i], hi[i], ratio, &sc, &z);
            for (int j = 0; j < GROUP_LEN(i); j++) {
                size_t x = GROUP_AT(i) + (size_t)j;
                d[x] = w[x] - (s->fmt ? block_round(s->fmt, w[x], sc, z, NULL)
                                      : quant_round_at(s, quant_table_of_scale(s, cols, i), w[x], sc, z));
            }
        }
        for (int g = 0; g < ng && H; g++) {
            int len = g == ng - 1 ? cols - g * G : G;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, len, len, 1.0f, d + (size_t)g * G, cols,
                        H + (size_t)g * G * cols + (size_t)g * G, cols, 0.0f, e + (size_t)g * G, cols);
        }
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < (size_t)rows * ng; i++) {
            double err = 0.0;
            const float *dh = H ? e : d;
            for (int j = 0; j < GROUP_LEN(i); j++) err += (double)d[GROUP_AT(i) + j] * dh[GROUP_AT(i) + j];
            if (err < best[i]) {
                best[i] = err;
                float sc, z = 0.0f;
                clip_params(s, w + GROUP_AT(i), lo[i], hi[i], ratio, &sc, &z);
                scale[i] = sc;
                if (!s->sym) zp[i] = z;
            }
        }
    }
#undef GROUP_AT
#undef GROUP_LEN
    free(lo), free(hi), free(best), free(d), free(e);
}

void ptq_clip_search(const QuantSpec *s, const float *w, int rows, int cols, const float *H, float *scale, float *zp) {
    clip_search(s, w, rows, cols, H, 11, 0.05f, scale, zp);
}

void ptq_mse_scales(const QuantSpec *s, const float *w, int rows, int cols, float *scale, float *zp) {
    /* down to 0.2: at 2 bits the best range is well under half the group's extreme */
    clip_search(s, w, rows, cols, NULL, 81, 0.01f, scale, zp);
}

void ptq_smooth_scales(const float *absmax, const float *w, int rows, int cols, float alpha, float *s_out) {
    for (int j = 0; j < cols; j++) {
        float wm = 0.0f;
        for (int r = 0; r < rows; r++) wm = fmaxf(wm, fabsf(w[(size_t)r * cols + j]));
        float sj = powf(fmaxf(absmax[j], 1e-5f), alpha) / powf(fmaxf(wm, 1e-5f), 1.0f - alpha);
        s_out[j] = fmaxf(sj, 1e-5f);
    }
}

float ptq_smooth_search(const QuantSpec *ws, const QuantSpec *a, bool a_static, const float *absmax, const float *w,
                        int rows, int cols, const float *x, int n, const float *grid, int n_grid, float *s_out) {
    size_t N = (size_t)rows * cols, X = (size_t)n * cols, Y = (size_t)n * rows;
    float *sc = xmalloc((size_t)cols * sizeof(float)), *wq = xmalloc(N * sizeof(float)), *xq = xmalloc(X * sizeof(float));
    float *ref = xmalloc(Y * sizeof(float)), *y = xmalloc(Y * sizeof(float));
    float *scales = xmalloc(quant_n_scales(ws, rows, cols) * sizeof(float)), *zp = xmalloc(quant_n_scales(ws, rows, cols) * sizeof(float));
    float *xs = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, rows, cols, 1.0f, x, cols, w, cols, 0.0f, ref, rows);
    double best = INFINITY;
    float best_a = grid[0];
    for (int k = -1; k < n_grid; k++) { /* k = -1: no smoothing (s = 1), so the search never loses to plain RTN */
        if (k < 0)
            for (int j = 0; j < cols; j++) sc[j] = 1.0f;
        else
            ptq_smooth_scales(absmax, w, rows, cols, grid[k], sc);
        memcpy(wq, w, N * sizeof(float));
        ptq_scale_cols(wq, rows, cols, sc);
        ptq_rtn(ws, wq, rows, cols, scales, zp, wq);
        for (size_t i = 0; i < X; i++) xq[i] = x[i] / sc[i % (size_t)cols];
        if (a_static) {
            float amax = 0.0f, as;
            for (int j = 0; j < cols; j++) amax = fmaxf(amax, absmax[j] / sc[j]);
            quant_params_from_range(a, -amax, amax, &as, NULL);
            quant_fake(&(QuantSpec){.bits = a->bits, .sym = true, .gran = QG_TENSOR}, xq, n, cols, &as, NULL, xq);
        } else {
            QuantSpec tok = {.bits = a->bits, .sym = true, .gran = QG_CHANNEL};
            quant_minmax(&tok, xq, n, cols, xs, NULL);
            quant_fake(&tok, xq, n, cols, xs, NULL, xq);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, rows, cols, 1.0f, xq, cols, wq, cols, 0.0f, y, rows);
        double e = 0.0;
        for (size_t i = 0; i < Y; i++) e += (double)(y[i] - ref[i]) * (y[i] - ref[i]);
        if (e < best) {
            best = e, best_a = k < 0 ? -1.0f : grid[k];
            memcpy(s_out, sc, (size_t)cols * sizeof(float));
        }
    }
    free(sc), free(wq), free(xq), free(ref), free(y), free(scales), free(zp), free(xs);
    return best_a;
}

void ptq_scale_cols(float *w, int rows, int cols, const float *s) {
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++) w[(size_t)r * cols + j] *= s[j];
}

void ptq_hessian_unscale(float *H, int cols, const float *s) {
    for (int i = 0; i < cols; i++)
        for (int j = 0; j < cols; j++) H[(size_t)i * cols + j] /= s[i] * s[j];
}
