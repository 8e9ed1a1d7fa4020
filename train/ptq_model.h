/* ptq_model.h: post-training quantization of a whole GPT (qat ptq). The
 * model is calibrated block by block: each block sees the outputs of the
 * blocks before it as already quantized, and (GPTQ) each Linear inside a block
 * sees the Linears before it already quantized. The per-layer algorithms are
 * in quant/ptq.h. The result is a checkpoint like a QAT one: float shadow
 * weights plus stored scales (and activation scales, outlier masks) that fake
 * quantization, qat eval and qat export take as they are. */
#ifndef QAT_PTQ_MODEL_H
#define QAT_PTQ_MODEL_H

#include <stdio.h>

#include "data/data.h"
#include "layers/layers.h"
#include "train/config.h"
#include "train/mixed.h"

typedef struct PtqOptions {
    char method[16];   /* rtn | gptq | awq | smoothquant | outlier */
    int bits;          /* weight bits, 2..8 */
    int group;         /* > 0: inputs per group; -1: per channel; 0: per tensor */
    bool sym;
    bool full; /* --full-range: symmetric codes down to -2^(b-1) (2..4 bits, even grid) */
    char format[8];     /* "" or a llama.cpp block format (q8_0, q4_0, q4_1, iq4_nl): then bits, group and sym follow from it */
    char act_format[8]; /* "" or q8_0: evaluate with llama.cpp's activation blocks (quant.act_format) */
    char codebook[8];   /* none | nf | kmeans: non-uniform levels (quant.weight.codebook) */
    char tables[8];     /* kmeans: layer | channel | group (quant.weight.tables) */
    bool table_unweighted; /* kmeans: every weight counts the same in the fit (else by the calibration Hessian's diagonal) */
    char act[8];       /* activations: "" = float (weight-only), "token" (dynamic int8), "tensor" (static int8) */
    int calib_batches; /* windows of train.batch_size x block_size from the training split */
    char calib_data[1024]; /* "" = the checkpoint's data.path; a text file; or "teacher": samples of the model itself */
    uint64_t seed;     /* of the calibration windows */
    float damp;        /* gptq: dampening, fraction of mean diag(H) */
    int block;         /* gptq: columns per lazy batch */
    bool act_order;    /* gptq */
    bool clip;         /* awq: clipping search after the scale search */
    int awq_grid;      /* awq: exponents 0, 1/n, ..., 1 (n + 1 of them); 0: exponent 0 only (= RTN scales) */
    float alpha;       /* smoothquant: migration strength; < 0: searched per layer over 0, 0.05, ..., 1 */
    float threshold;   /* outlier: calibration |x| above which an input feature stays float */
    char layers[512];  /* globs over Linear names, as quant.layers */
    float budget;      /* > 0: mixed precision within this many bits per weight (train/mixed.h); bits/group ignored */
    char budget_bits[64], budget_groups[64], budget_codebooks[64]; /* its candidates, as quant.budget.bits/groups/codebooks */
    int budget_calib_batches;
    bool sym_set; /* --sym or --asym given (parsing only) */
    FILE *log;    /* progress over the blocks (util/progress.h), or NULL (the default): silent */
} PtqOptions;

/* Defaults: rtn, int4, group 32, symmetric, float activations, 4 calibration
 * batches, seed 1234, damp 0.01, block 128, no act_order, clip on, 20 grid
 * steps, alpha 0.5, threshold 6, layers blocks.*. Per method (when not set
 * explicitly): smoothquant is int8 per channel with static per-tensor int8
 * activations; outlier is int8 per channel with per-token int8 activations. */
void ptq_options_default(PtqOptions *o);
/* Validates o (origin names it in errors) and fills the method defaults. */
void ptq_options_finish(PtqOptions *o, bool bits_set, bool group_set, bool act_set, const char *origin);
/* Defaults, then the options of qat ptq (--method M, or M alone as the first
 * word; --bits, --group, ...; see qat ptq --help), then ptq_options_finish. */
void ptq_options_parse(PtqOptions *o, int argc, char **argv, const char *origin);
/* True for the options of ptq_options_parse that take no value. */
bool ptq_option_is_flag(const char *opt);

typedef struct PtqLayerReport {
    char name[64];
    double err_rtn, err; /* mean squared output error per calibration token: RTN, and this method */
    float awq_alpha;     /* awq: the chosen exponent; smoothquant: the migration strength */
    int outliers;        /* outlier: input features kept float */
} PtqLayerReport;

typedef struct PtqReport {
    double seconds; /* calibration and quantization */
    int n;
    PtqLayerReport layers[1024];
    long calib_tokens;
} PtqReport;

/* The quant section a PTQ model carries: estimator lsq (scales are stored
 * and used as they are), the weight and activation specs of o. */
void ptq_quant_config(const PtqOptions *o, QuantConfig *q);
/* Quantizes g in place. g was built with ptq_quant_config's section and holds
 * the float weights; calib holds n_seq windows of T tokens. */
void ptq_model(GPT *g, const PtqOptions *o, const int32_t *calib, int n_seq, int T, PtqReport *r);
/* n_seq calibration windows of T tokens from the training split, seeded. */
int32_t *ptq_calib_windows(const int32_t *train, size_t n_train, int n_seq, int T, uint64_t seed);
/* qat ptq: a float checkpoint to a PTQ checkpoint at out (never over ckpt). */
void ptq_checkpoint(const char *ckpt, const PtqOptions *o, const char *out, PtqReport *r);

/* With o->budget: adds to q (ptq_quant_config's section) the per-layer
 * overrides of the least-sensitive mix within o->budget bits per weight of
 * the float checkpoint ckpt (config fcfg). cache (NULL, or zeroed before the
 * first call) keeps the measured sensitivities between calls with the same
 * candidates, as qat compare makes them. */
void ptq_budget_config(const char *ckpt, const Config *fcfg, const PtqOptions *o, QuantConfig *q, MixedTable *cache,
                       bool quiet);
/* One line describing o ("gptq int4 g32 sym, act_order"), for checkpoints and tables. */
void ptq_describe(const PtqOptions *o, char *buf, size_t n);

#endif
