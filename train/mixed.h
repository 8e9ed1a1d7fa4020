/* mixed.h: budgeted mixed precision over a model (the solver is
 * quant/budget.h). The sensitivity of a layer to a candidate format is the
 * loss increase, on seeded random windows of the training split, when that
 * layer alone is rounded to nearest in that format and every other layer
 * stays float (a kmeans candidate's table fitted to that layer first); the plan picks one candidate per quantized layer so that the
 * summed sensitivity is least within a bits-per-weight budget (codes plus
 * fp32 scales over the quantized layers), and is applied as per-layer
 * quant.overrides, so a planned run is an ordinary config that can be read,
 * edited and rerun. */
#ifndef QAT_MIXED_H
#define QAT_MIXED_H

#include <stdio.h>

#include "train/config.h"

#define MIXED_MAX_CAND 64

typedef struct MixedCand {
    int bits;
    int group;     /* > 0 inputs per group; -1 per channel */
    QCodebook cb;  /* the levels: even grid, normal-float or the layer's own k-means table */
} MixedCand;

/* Every quantized layer's candidates: their size and sensitivity. */
typedef struct MixedTable {
    int n, k;                     /* layers, candidates */
    MixedCand cand[MIXED_MAX_CAND];
    char (*layer)[64];            /* [n] */
    size_t *weights;              /* [n] */
    double *cost, *sens;          /* [n * k]: bits (codes + scales; < 0 unavailable), loss increase */
    double base_loss;             /* all layers float, on the same windows */
    long tokens;                  /* scored per measurement */
    bool sym;
    bool full;                    /* the even grid's candidates at 2..4 bits on the full range (narrow_range false) */
    bool codebooks;               /* some candidate is not the even grid: the plan sets every layer's codebook */
    char key[2 * CONFIG_PATH_MAX + 1024]; /* what it was measured with: model, data, candidates, windows */
} MixedTable;

typedef struct MixedPlan {
    double budget_bpw, bpw;       /* asked, reached */
    double sens;                  /* summed sensitivity of the choice */
    int n;
    int *choice;                  /* [n] candidate index per layer of the table */
} MixedPlan;

/* The candidate list from quant.budget.codebooks x bits x groups, a codebook
 * other than none at 2..4 bits only (fails naming the key). */
int mixed_candidates(const QuantConfig *q, MixedCand *out, const char *origin);
/* Measures the table for the quantized layers of cfg (quant.layers, symmetric
 * or not as quant.weight.symmetric) on the float checkpoint float_ckpt,
 * over quant.budget.calib_batches x train.batch_size windows of the training
 * split of cfg's corpus; progress lines unless quiet. */
void mixed_measure(const char *float_ckpt, const Config *cfg, const char *origin, bool quiet, MixedTable *t);
void mixed_table_free(MixedTable *t);
/* The table for cfg on float_ckpt: cache's when it was measured for the same
 * model, data, layers, candidates and windows, else measured now (into cache,
 * which starts zeroed, when given; then the caller frees it). */
const MixedTable *mixed_table_for(const char *float_ckpt, const Config *cfg, const char *origin, bool quiet,
                                  MixedTable *cache, MixedTable *own);
/* The least-sensitive choice within bpw; fails naming origin when none fits. */
void mixed_solve(const MixedTable *t, double bpw, const char *origin, MixedPlan *p);
void mixed_plan_free(MixedPlan *p);
/* Writes the plan as quant.overrides (bits, granularity, group_size, and the
 * codebook when the candidates have several) of every planned layer. */
void mixed_apply(const MixedTable *t, const MixedPlan *p, QuantConfig *q);
/* The assignment as a table: layer, weights, codebook and bits, group, sensitivity. */
void mixed_print(const MixedTable *t, const MixedPlan *p, FILE *f);
/* For qat train: measure, solve and apply quant.budget.bpw to cfg (then
 * budget.bpw 0: the config is resolved), or on resume take the overrides the
 * checkpoint was trained with. */
void mixed_resolve(Config *cfg, const char *origin, bool resume, bool quiet, MixedTable *cache);

#endif
