/* compare.h: qat compare: one float model, every configured PTQ method and
 * QAT run, all evaluated on the same validation batches through the integer
 * kernels, written as compare.md, compare.csv, compare.json and compare.png. */
#ifndef QAT_COMPARE_H
#define QAT_COMPARE_H

#include <stddef.h>

#include "train/config.h"

typedef struct CompareRow {
    char method[64];         /* float, rtn, gptq, awq, smoothquant, outlier, qat-<estimator> (variants suffixed) */
    int w_bits, a_bits;      /* 32 = float */
    int group;               /* inputs per scale; 0 per tensor, -1 per channel */
    double val_loss, ppl, delta; /* delta: val_loss - the float model's */
    size_t bytes;            /* the deployable file (qat export) */
    double bits_per_weight;  /* quantized Linears: code bits + 32-bit scales (+ float columns) per weight */
    double gen_tokens_per_s; /* greedy generation with the KV cache */
    double seconds;          /* to produce: PTQ calibration and quantization, or QAT (or float) training */
    char what[1400];          /* how it was made (qat ptq options or the QAT config file) */
} CompareRow;

/* Runs the comparison the config's compare section describes. */
void compare_run(const Config *cfg, const char *origin);

/* PNG of validation loss against bits per weight, one line per method (float
 * as a horizontal line). */
void compare_plot(const char *path, const CompareRow *rows, int n, const char *title);

#endif
