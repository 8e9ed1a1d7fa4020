/* layer_errors.c: qat compare's per-layer picture (see compare.h). For
 * every quantized row and each of its Linears, the relative output error
 * ||X (W - Q)^T|| / ||X W^T|| (Frobenius norms), W the float model's
 * weights, Q the row's deployed weights dequantized, X the Linear's inputs
 * in the float model on the first validation windows. Biases and activation
 * quantization are left out: this is the weights' share, which is what
 * choosing bits per layer changes. For QAT rows Q also carries what
 * fine-tuning moved. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/infer.h"
#include "train/compare.h"
#include "train/plot.h"
#include "train/trainer.h"

#define MAX_LIN 1024

typedef struct Capture {
    const InferLinear *lin[MAX_LIN];
    char names[MAX_LIN][64];
    int n;
    float *x[MAX_LIN]; /* inputs [rows[i], in] */
    int rows[MAX_LIN], cap;
} Capture;

static void capture_input(void *ctx, const InferLinear *l, const float *x, int M) {
    Capture *c = ctx;
    for (int i = 0; i < c->n; i++) {
        if (c->lin[i] != l) continue;
        int take = M < c->cap - c->rows[i] ? M : c->cap - c->rows[i];
        memcpy(c->x[i] + (size_t)c->rows[i] * l->in, x, (size_t)take * l->in * sizeof(float));
        c->rows[i] += take;
        return;
    }
}

static void add_linear(Capture *c, const InferLinear *l, const char *name) {
    if (c->n >= MAX_LIN) return;
    c->lin[c->n] = l;
    snprintf(c->names[c->n], sizeof c->names[0], "%s", name);
    c->x[c->n] = xmalloc((size_t)c->cap * l->in * sizeof(float));
    c->rows[c->n++] = 0;
}

/* Q of a quantized matrix, [rows, in], outlier columns in float. */
static float *dequant(const QMatrix *q) {
    float *full = xmalloc((size_t)q->rows * q->cols * sizeof(float)), *w = xmalloc((size_t)q->rows * q->in * sizeof(float));
    qmatrix_dequant_rows(q, 0, q->rows, full);
    for (int r = 0; r < q->rows; r++) {
        memcpy(w + (size_t)r * q->in, full + (size_t)r * q->cols, (size_t)q->in * sizeof(float));
        for (int j = 0; j < q->n_float; j++) w[(size_t)r * q->in + q->float_cols[j]] = q->float_w[(size_t)r * q->n_float + j];
    }
    free(full);
    return w;
}

static double rel_error(const float *x, int M, const float *w, const float *q, int out, int in) {
    float *d = xmalloc((size_t)out * in * sizeof(float)), *y = xmalloc((size_t)M * out * sizeof(float));
    for (size_t i = 0; i < (size_t)out * in; i++) d[i] = w[i] - q[i];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, out, in, 1.0f, x, in, d, in, 0.0f, y, out);
    double e = 0, f = 0;
    for (size_t i = 0; i < (size_t)M * out; i++) e += (double)y[i] * y[i];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
    for (size_t i = 0; i < (size_t)M * out; i++) f += (double)y[i] * y[i];
    free(d), free(y);
    return f > 0 ? sqrt(e / f) : NAN;
}

void compare_layer_errors(const char *dir, const CompareRow *rows, int n, const char *float_ckpt, const int32_t *x,
                          int n_seq, int T) {
    InferModel mf;
    Config cfg;
    model_load_infer(float_ckpt, &mf, &cfg, NULL);
    Capture *c = xcalloc(1, sizeof *c);
    c->cap = n_seq * T;
    char nm[64];
    for (int b = 0; b < mf.cfg.n_layer; b++) {
        InferBlock *k = &mf.blocks[b];
        snprintf(nm, sizeof nm, "blocks.%d.attn.qkv", b), add_linear(c, &k->qkv, nm);
        snprintf(nm, sizeof nm, "blocks.%d.attn.proj", b), add_linear(c, &k->proj, nm);
        snprintf(nm, sizeof nm, "blocks.%d.mlp.fc", b), add_linear(c, &k->fc, nm);
        snprintf(nm, sizeof nm, "blocks.%d.mlp.proj", b), add_linear(c, &k->fc_proj, nm);
    }
    add_linear(c, &mf.head, "lm_head");
    InferState s;
    infer_state_init(&s, &mf, T);
    s.probe = capture_input, s.probe_ctx = c;
    for (int q = 0; q < n_seq; q++) {
        s.pos = 0;
        infer_forward(&mf, &s, x + (size_t)q * T, T);
    }
    infer_state_free(&s);
    /* columns: the quantized rows; cells NaN where a row left the layer float */
    int nm_cols = 0;
    int *cols = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(int));
    for (int i = 0; i < n; i++)
        if (rows[i].model[0]) cols[nm_cols++] = i;
    double *err = xmalloc((size_t)c->n * (nm_cols ? nm_cols : 1) * sizeof(double));
    for (size_t i = 0; i < (size_t)c->n * nm_cols; i++) err[i] = NAN;
    char (*labels)[96] = xcalloc((size_t)(nm_cols ? nm_cols : 1), sizeof *labels);
    bool any[MAX_LIN] = {false};
    for (int j = 0; j < nm_cols; j++) {
        const CompareRow *r = &rows[cols[j]];
        char g[16];
        if (r->group > 0) snprintf(g, sizeof g, " g%d", r->group);
        else snprintf(g, sizeof g, "%s", r->group < 0 ? " ch" : "");
        snprintf(labels[j], sizeof labels[0], "%.60s %d-bit%s", r->method, r->w_bits, g);
        InferModel m;
        Config rc;
        model_load_infer(r->model, &m, &rc, NULL);
        for (int i = 0; i < m.n_q; i++)
            for (int l = 0; l < c->n; l++) {
                if (strcmp(m.qnames[i], c->names[l]) || !c->lin[l]->w || m.qm[i].rows != c->lin[l]->out ||
                    m.qm[i].in != c->lin[l]->in)
                    continue;
                float *qw = dequant(&m.qm[i]);
                err[(size_t)l * nm_cols + j] = rel_error(c->x[l], c->rows[l], c->lin[l]->w, qw, c->lin[l]->out, c->lin[l]->in);
                any[l] = true;
                free(qw);
            }
        infer_free(&m);
    }
    /* the picture and the numbers, for the layers some row quantized */
    const char **ln = xmalloc((size_t)c->n * sizeof(char *)), **ml = xmalloc((size_t)(nm_cols ? nm_cols : 1) * sizeof(char *));
    double *shown = xmalloc((size_t)c->n * (nm_cols ? nm_cols : 1) * sizeof(double));
    int nl = 0;
    for (int l = 0; l < c->n; l++) {
        if (!any[l]) continue;
        ln[nl] = c->names[l];
        memcpy(shown + (size_t)nl * nm_cols, err + (size_t)l * nm_cols, (size_t)nm_cols * sizeof(double));
        nl++;
    }
    for (int j = 0; j < nm_cols; j++) ml[j] = labels[j];
    char path[4200];
    snprintf(path, sizeof path, "%s/layer_errors.csv", dir);
    size_t cap = 64 + (size_t)(nl + 1) * (size_t)(nm_cols + 1) * 112, k = 0;
    char *csv = xmalloc(cap);
    k += (size_t)snprintf(csv + k, cap - k, "layer");
    for (int j = 0; j < nm_cols; j++) k += (size_t)snprintf(csv + k, cap - k, ",%s", ml[j]);
    k += (size_t)snprintf(csv + k, cap - k, "\n");
    for (int l = 0; l < nl; l++) {
        k += (size_t)snprintf(csv + k, cap - k, "%s", ln[l]);
        for (int j = 0; j < nm_cols; j++) {
            double e = shown[(size_t)l * nm_cols + j];
            k += isfinite(e) ? (size_t)snprintf(csv + k, cap - k, ",%.6f", e) : (size_t)snprintf(csv + k, cap - k, ",");
        }
        k += (size_t)snprintf(csv + k, cap - k, "\n");
    }
    xwrite_file_atomic(path, csv, k);
    free(csv);
    if (nl && nm_cols) {
        char title[512];
        snprintf(title, sizeof title, "per-layer output error of the quantized weights (%d windows of %d tokens)", n_seq, T);
        snprintf(path, sizeof path, "%s/layer_errors.png", dir);
        plot_layer_errors(path, ln, nl, ml, nm_cols, shown, title);
    }
    for (int l = 0; l < c->n; l++) free(c->x[l]);
    free(c), free(cols), free(err), free(labels), free(ln), free(ml), free(shown);
    infer_free(&mf);
}
