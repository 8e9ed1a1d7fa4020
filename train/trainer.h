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

/* Mean next-token loss over windows w of tokens, B windows per forward;
 * top1 (w->tokens entries, or NULL) gets the most likely next token at every
 * scored position, in window order. */
double eval_loss(GPT *g, Tape *t, const int32_t *tokens, const EvalWindows *w, int B, int32_t *top1);

/* Builds the model a checkpoint describes and loads its weights. */
void model_load(const char *path, GPT *g, Config *cfg, Vocab *v);

/* The inference model of a deployable file, or of a training checkpoint
 * (float layers stay float, quantized ones become integer weights), and the
 * run config stored with it. act: NULL runs the model as it is deployed (a
 * checkpoint as trained; a GGUF file with llama.cpp's q8_0 activation blocks
 * in its block layers, what llama.cpp computes); "q8_0" or "none" turns
 * those blocks on or off in every block-format layer (checkpoints and GGUF
 * files; an exported MODEL.h5 runs as exported). */
void model_load_infer(const char *path, InferModel *m, Config *cfg, const char *act);

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
    bool act_blocks;   /* with llama.cpp's q8_0 activation blocks (as trained, a GGUF file's default, or --act-format) */
} EvalResult;
typedef struct EvalOptions {
    const char *data;       /* NULL: the validation split of the training corpus */
    bool int_kernels;       /* a training checkpoint's quantized layers on the integer kernels */
    const char *top1_out;   /* NULL, or a file for the most likely next token at every scored position */
    const char *act_format; /* NULL: as trained; "q8_0" or "none": llama.cpp's activation blocks on or off */
} EvalOptions;
/* Loss of a checkpoint over its validation windows (train.eval): from the
 * validation split of its training corpus (o->data NULL, as during
 * training), or from all of o->data. A deployable file, a GGUF file, or a
 * training checkpoint with int_kernels, runs on the inference engine
 * (quantized layers on the integer kernels); otherwise the training forward
 * (fake quantization). act_format q8_0 runs the training forward with every
 * block-format layer's input in llama.cpp's q8_0 blocks (a GGUF file too:
 * what llama.cpp's CPU path computes). top1_out gets one token id per line
 * in window order, to compare against another runtime's. o may be NULL. */
EvalResult eval_checkpoint(const char *path, const EvalOptions *o);

/* Threads from the config (0 keeps OMP_NUM_THREADS / all cores). */
void apply_threads(const Config *cfg);

#endif
