/* trainer.h: the FP32 training run (qat train), validation loss, and loading a
 * model back from a checkpoint for eval and sample. */
#ifndef QAT_TRAINER_H
#define QAT_TRAINER_H

#include "data/data.h"
#include "infer/infer.h"
#include "layers/layers.h"
#include "train/config.h"

typedef struct TrainOptions {
    bool resume;     /* continue from out_dir/checkpoint.h5 */
    long stop_after; /* > 0: stop (with a checkpoint) once this many steps are done */
    bool quiet;      /* no progress output */
    bool overwrite;  /* replace a run already in out_dir (else refused) */
} TrainOptions;

/* Trains as configured, holding out_dir's lock (train/rundir.h) throughout.
 * Refuses an out_dir that holds a run unless resuming or overwriting, a
 * quant.init_from that is out_dir's own checkpoint, and a resume whose model
 * or quant section differs from the checkpoint's. */
void train_run(const Config *cfg, const char *origin, const TrainOptions *opts);

/* The validation windows of a run with this config over n tokens
 * (train.eval: the whole split, or seeded random windows). */
void eval_windows_of(const Config *cfg, size_t n, EvalWindows *w);

/* Mean next-token loss over windows w of tokens, B windows per forward. */
double eval_loss(GPT *g, Tape *t, const int32_t *tokens, const EvalWindows *w, int B);

/* Builds the model a checkpoint describes and loads its weights. */
void model_load(const char *path, GPT *g, Config *cfg, Vocab *v);

/* The inference model of a deployable file, or of a training checkpoint
 * (float layers stay float, quantized ones become integer weights), and the
 * run config stored with it. */
void model_load_infer(const char *path, InferModel *m, Config *cfg);

typedef struct ExportReport {
    int quant_layers;
    size_t quant_weights, quant_bytes, float_bytes, file_bytes; /* quant_bytes: codes + scales, the ideal size */
} ExportReport;
/* qat export: a QAT or PTQ checkpoint to a deployable file (never over the
 * checkpoint itself). */
ExportReport export_checkpoint(const char *ckpt, const char *out);

/* qat export --format gguf: any checkpoint (float, QAT, PTQ) as a GGUF file
 * for llama.cpp (format/gguf_model.h); the per-tensor report goes to report.
 * Returns the file size. */
size_t export_checkpoint_gguf(const char *ckpt, const char *out, bool f16, FILE *report);

typedef struct EvalResult {
    double val_loss;
    char mode[8];      /* full | random (train.eval) */
    int windows, block_size;
    long tokens;       /* positions scored */
    bool integer;      /* run on the inference engine and the integer kernels */
} EvalResult;
/* Loss of a checkpoint over its validation windows (train.eval): from the
 * validation split of its training corpus (data = NULL, as during training),
 * or from all of data. A deployable file, or a training checkpoint with
 * int_kernels, runs on the inference engine (quantized layers on the integer
 * kernels); otherwise the training forward (fake quantization). */
EvalResult eval_checkpoint(const char *path, const char *data, bool int_kernels);

/* Threads from the config (0 keeps OMP_NUM_THREADS / all cores). */
void apply_threads(const Config *cfg);

#endif
