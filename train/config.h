/* config.h: run configuration. One field table is the schema: it validates
 * keys from YAML files and from --set overrides through the same path, gives
 * the defaults, and writes the config back as YAML (stored in checkpoints). */
#ifndef QAT_CONFIG_H
#define QAT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "layers/layers.h"
#include "quant/qat.h"

#define CONFIG_PATH_MAX 1024

typedef struct ModelConfig {
    char arch[8]; /* "gpt" or "llama" */
    int n_layer, n_head, n_embd, block_size;
    int n_kv_head, hidden; /* 0: n_head; the architecture's default width */
    float norm_eps, rope_theta;
    bool tied_head;
    char vocab[8]; /* "char", "byte" or "spm" */
} ModelConfig;

typedef struct DataConfig {
    char path[CONFIG_PATH_MAX];
    char tokenizer[CONFIG_PATH_MAX]; /* model.vocab spm from scratch: the file holding the vocabulary */
    float val_fraction;
    char source[8]; /* "file" (path) or "teacher" (sampled from quant.init_from's model) */
    int teacher_sequences, teacher_top_k, teacher_seed;
    float teacher_temperature;
    char teacher_cache[CONFIG_PATH_MAX]; /* "" = out_dir/teacher-data.h5 */
} DataConfig;

typedef struct TrainConfig {
    int batch_size, iters;
    float lr, min_lr;
    int warmup_iters;
    float weight_decay, beta1, beta2, eps, grad_clip;
    int seed;
    int eval_every, eval_batches, log_every, threads;
    char eval[8]; /* full | random: the validation windows (see EvalWindows) */
} TrainConfig;

/* qat compare: the QAT-versus-PTQ table of this config's float model. */
typedef struct CompareConfig {
    char out_dir[CONFIG_PATH_MAX];
    char float_checkpoint[CONFIG_PATH_MAX]; /* "" = out_dir/checkpoint.h5 of this config (trained if missing) */
    char ptq[4096];                         /* "method [qat ptq options]; ..." */
    char qat[4096];                         /* comma-separated QAT config files */
    int gen_tokens;
    bool retrain_qat;
    char budget[256];                       /* "3.0,2.5": mixed-precision rows within these bits per weight */
    char budget_ptq[1024];                  /* PTQ entries run with --budget B, "rtn; gptq; awq" */
    char budget_qat[CONFIG_PATH_MAX];       /* a QAT config run with quant.budget.bpw B ("" = none) */
    char eval_data[CONFIG_PATH_MAX];        /* "" = the float model's validation split; else this text, whole */
} CompareConfig;

typedef struct Config {
    ModelConfig model;
    DataConfig data;
    TrainConfig train;
    char out_dir[CONFIG_PATH_MAX];
    CompareConfig compare;
    QuantConfig quant;
} Config;

/* The model description of a config's model section, for a vocabulary of
 * vocab_size tokens; config_model_of is the inverse (importers). */
GPTConfig config_gpt(const ModelConfig *m, int vocab_size);
void config_model_of(ModelConfig *m, const GPTConfig *g);

/* Fills every field with its default. */
void config_defaults(Config *c);
/* Reads YAML from path over the current values (unknown keys and bad values
 * fail naming the file, line and key). Plain YAML only: one document, no
 * tags, anchors or aliases, no key twice, lists only for string keys,
 * nesting at most 8 deep; an empty file or a non-regular one is refused. */
void config_load_file(Config *c, const char *path);
/* Same from a YAML string; origin names it in errors. */
void config_load_string(Config *c, const char *yaml, const char *origin);
/* Same from n bytes that need not end in NUL (and must not contain one). */
void config_load_bytes(Config *c, const char *yaml, size_t n, const char *origin);
/* Applies "section.key=value" (a --set argument). */
void config_set_arg(Config *c, const char *arg);
/* Sets one dotted key from its text value; origin prefixes error messages. */
void config_set(Config *c, const char *key, const char *value, const char *origin);
/* Checks relations between fields (n_embd % n_head, min_lr <= lr, ...). */
void config_validate(const Config *c, const char *origin);
/* The first key of section ("model", "quant", ...) whose value differs
 * between a and b, or NULL when the sections agree. */
const char *config_section_differs(const Config *a, const Config *b, const char *section);
/* Writes the whole config as YAML into a malloc'd string. */
char *config_to_yaml(const Config *c);
/* Markdown table of every key, its type, default and meaning. */
void config_print_keys(FILE *f);

#endif
