/* compare.h: qat compare: one float model, every configured PTQ method and
 * QAT run, all evaluated on the same validation batches through the integer
 * kernels, written as compare.md, compare.csv, compare.json and compare.png. */
#ifndef QAT_COMPARE_H
#define QAT_COMPARE_H

#include <stddef.h>

#include "train/config.h"

typedef struct CompareRow {
    char method[96];         /* float, float+ft, rtn, gptq, awq, smoothquant, outlier, qat-<estimator> (variants suffixed) */
    int w_bits, a_bits;      /* 32 = float */
    int group;               /* inputs per scale; 0 per tensor, -1 per channel */
    double val_loss, ppl;
    double delta;            /* val_loss - the float model's */
    double delta_ft;         /* fine-tuned rows (QAT): val_loss - the float+ft row of the same schedule; else NAN */
    int baseline;            /* fine-tuned rows: index of that float+ft row; else -1 */
    size_t bytes;            /* the deployable file (qat export) */
    double bits_per_weight;  /* quantized Linears: code bits + 32-bit scales (+ float columns) per weight */
    double gen_tokens_per_s; /* greedy generation with the KV cache */
    double seconds;          /* to produce: PTQ calibration and quantization, or QAT (or float) training */
    char what[1400];          /* how it was made (qat ptq options or the QAT config file) */
    char ckpt[CONFIG_PATH_MAX + 256];  /* its checkpoint (float, PTQ or QAT) */
    char model[CONFIG_PATH_MAX + 256]; /* its deployable file (quantized rows; else "") */
} CompareRow;

/* Runs the comparison the config's compare section describes. Beside the
 * float model, each distinct fine-tuning schedule of the QAT rows gets a
 * float+ft row: the float model fine-tuned in float with that schedule and
 * data, so that the QAT rows are measured against what the same steps do
 * without quantization. */
void compare_run(const Config *cfg, const char *origin);
/* The same, handing back the rows (*rows, xmalloc'd; their count returned). */
int compare_run_rows(const Config *cfg, const char *origin, CompareRow **rows);

/* PNG of validation loss against bits per weight, one line per method (float
 * as a horizontal line). */
void compare_plot(const char *path, const CompareRow *rows, int n, const char *title);

/* The per-layer picture: for each quantized row (its deployable file) and
 * each Linear, the relative output error of its weights on the float
 * model's inputs from n_seq windows of T tokens (x); writes
 * dir/layer_errors.csv and dir/layer_errors.png (layer_errors.c). */
void compare_layer_errors(const char *dir, const CompareRow *rows, int n, const char *float_ckpt, const int32_t *x,
                          int n_seq, int T);

#endif
