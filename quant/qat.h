/* qat.h: quantization-aware training: the fake-quant autograd ops with their
 * straight-through estimators, activation observers, the quant section of a
 * config, and the per-Linear fake-quant state a model carries. */
#ifndef QAT_QAT_H
#define QAT_QAT_H

#include <stdbool.h>

#include "autograd/autograd.h"
#include "quant/quantizer.h"

/* Backward of fake quantization:
 *  ste      d x_hat / d x = 1 everywhere;
 *  clipped  1 where the code before clamping is inside [qmin, qmax], else 0;
 *  lsq      clipped for x, plus the LSQ gradient for a learned scale (and a
 *           learned zero point, LSQ+), scaled by 1/sqrt(elements per scale * qmax). */
typedef enum { EST_STE, EST_CLIPPED, EST_LSQ } Estimator;

/* Fake-quantizes x viewed as [rows, cols] (cols = last dim) under spec s.
 * scale: a tensor of quant_n_scales() values, or NULL to compute min-max
 * scales from x on the fly (dynamic). zp: asymmetric zero points (rounded to
 * integers in the forward pass), or NULL (0 for symmetric, min-max for
 * dynamic asymmetric). Gradients reach scale and zp only with EST_LSQ. */
Tensor *op_fake_quant(Tape *t, Tensor *x, const QuantSpec *s, Estimator est, Tensor *scale, Tensor *zp);
/* The same for a kmeans spec with its table as a tensor of 2^bits levels in
 * any order (s->lut is not used): each weight the nearest level times its
 * scale, re-assigned every call; the table's gradient is the sum, over the
 * weights at each level, of scale x their gradient (none when it is frozen). */
Tensor *op_fake_quant_table(Tape *t, Tensor *x, const QuantSpec *s, Estimator est, Tensor *scale, Tensor *table);
/* The input of a block-format product as llama.cpp's CPU path quantizes it:
 * each row in q8_0 blocks of 32 (block_act_q8_0); straight-through backward. */
Tensor *op_fake_quant_act_q8_0(Tape *t, Tensor *x);
/* Fake-quantizes the K and V parts of a packed qkv [B,T,C+2KV] (op_attention's
 * layout), one symmetric dynamic scale per token and head; straight-through
 * backward. */
Tensor *op_fake_quant_kv(Tape *t, Tensor *qkv, int n_head, int n_kv_head, int bits);

/* Oscillation dampening (Nagel et al., 2022, "Overcoming oscillations in
 * quantization-aware training"): the sum over the weights of [rows, cols]
 * inside the clipping range of ((w - q(w)) / scale)^2, q(w) its grid point
 * taken as a constant, and its gradient times coef added to grad. scale NULL
 * = min-max scales (zp likewise). Even grid and codebooks; not block formats. */
double quant_dampen(const QuantSpec *s, const float *w, int rows, int cols, const float *scale, const float *zp,
                    float coef, float *grad);

/* ---- the quant section of a config ---- */
#define QUANT_MAX_OVERRIDES 64
typedef struct QuantOverride {
    char layer[64];
    int bits, group_size, act_bits; /* -1 = not overridden */
    char granularity[8];            /* "" = not overridden */
    char codebook[8];               /* none | nf | kmeans; "" = not overridden */
    char format[8];                 /* a llama.cpp block format for this layer alone; "" = quant.format */
} QuantOverride;

typedef struct QuantConfig {
    int w_bits;            /* 0: no quantization (FP32 training) */
    char w_gran[8];        /* tensor | channel | group */
    char format[8];        /* none | q8_0 | q4_0 | q4_1 | iq4_nl: llama.cpp's block formats */
    char w_codebook[8];    /* none | nf | kmeans: non-uniform weight levels */
    char w_tables[8];      /* kmeans: layer | channel | group: one table per layer, output channel or scale group */
    bool freeze_table;     /* kmeans: the tables stay as fitted */
    float table_lr_mult;   /* kmeans: learning rate of the tables relative to train.lr */
    char act_format[8];    /* none | q8_0: the inputs of block-format layers as llama.cpp's CPU path quantizes them */
    int w_group;
    bool w_sym;
    bool w_narrow;         /* symmetric even grid without the code -2^(b-1); false: full range (2..4 bits) */
    int a_bits;            /* 0: activations stay float */
    char a_gran[8];        /* tensor (static, observed) | token (dynamic) */
    bool a_sym;
    char observer[12];     /* minmax | ema | percentile | mse */
    float percentile;
    bool a_learn_zp;       /* LSQ+: learned zero point for asymmetric activations */
    bool deploy;           /* qat train refuses what qat export cannot run */
    int kv_bits;           /* 0, 4 or 8 */
    char estimator[8];     /* ste | clipped | lsq */
    char layers[512];      /* comma-separated globs over Linear names */
    char init_from[1024];  /* float checkpoint to fine-tune ("" = from scratch) */
    int calib_batches, freeze_step;
    char scale_init[8];    /* minmax | mse: where LSQ weight scales start */
    float scale_lr_mult;   /* learning rate of learned scales and zero points relative to train.lr */
    float outlier_threshold; /* >= 0: layers keep input features above it in float (set by qat ptq --method outlier); < 0: off */
    float distill_weight;  /* > 0: loss = (1-w) CE + w T^2 KL(teacher || student), teacher = the init_from model */
    float distill_temperature;
    float dampen;          /* > 0: oscillation dampening, its weight ramped up over training (quant_dampen) */
    float budget_bpw;         /* > 0: choose per-layer bits and groups within this many bits per weight (train/mixed.h) */
    char budget_bits[64];     /* candidate bits, "2,3,4,8" */
    char budget_groups[64];   /* candidate groups, "32,64,128,channel" */
    char budget_codebooks[64]; /* candidate codebooks for 2..4 bits, "none" or e.g. "none,kmeans" */
    int budget_calib_batches; /* training batches the sensitivities are measured on */
    QuantOverride ov[QUANT_MAX_OVERRIDES];
    int n_ov;
} QuantConfig;

/* ---- observers for static activation scales ---- */
typedef enum { OBS_MINMAX, OBS_EMA, OBS_PERCENTILE, OBS_MSE } ObserverKind;
typedef struct Observer {
    ObserverKind kind;
    float percentile; /* OBS_PERCENTILE, e.g. 99.99 */
    float lo, hi;     /* running min/max (EMA for OBS_EMA) */
    long batches;
    float *sample; /* reservoir of seen values for percentile and MSE */
    size_t n_sample, cap;
    uint64_t n_seen;
    Rng rng;
} Observer;
#define OBS_EMA_C 0.1f /* weight of a new batch in the EMA of min and max */
void observer_init(Observer *o, ObserverKind kind, float percentile, uint64_t seed);
void observer_update(Observer *o, const float *x, size_t n);
/* Scale and zero point for spec s (per-tensor) from what was observed. */
void observer_params(const Observer *o, const QuantSpec *s, float *scale, float *zp);
void observer_free(Observer *o);

#endif
