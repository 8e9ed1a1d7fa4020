/* config.c: the field table, a libyaml event reader that flattens nested
 * mappings into dotted keys, value parsing with range checks, and YAML output. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "quant/blocks.h"
#include "util/util.h"

GPTConfig config_gpt(const ModelConfig *m, int vocab_size) {
    return (GPTConfig){.vocab_size = vocab_size, .n_layer = m->n_layer, .n_head = m->n_head, .n_embd = m->n_embd,
                       .block_size = m->block_size, .arch = strcmp(m->arch, "llama") ? ARCH_GPT : ARCH_LLAMA,
                       .n_kv_head = m->n_kv_head, .hidden = m->hidden, .norm_eps = m->norm_eps,
                       .rope_theta = m->rope_theta, .untied_head = !m->tied_head};
}

void config_model_of(ModelConfig *m, const GPTConfig *g) {
    GPTConfig r = gpt_config_resolve(g);
    snprintf(m->arch, sizeof m->arch, "%s", r.arch == ARCH_LLAMA ? "llama" : "gpt");
    m->n_layer = r.n_layer, m->n_head = r.n_head, m->n_embd = r.n_embd, m->block_size = r.block_size;
    m->n_kv_head = r.n_kv_head, m->hidden = r.hidden, m->norm_eps = r.norm_eps, m->rope_theta = r.rope_theta;
    m->tied_head = !r.untied_head;
}

typedef enum { CF_INT, CF_FLOAT, CF_STR, CF_ENUM, CF_BOOL } CfType;

typedef struct Field {
    const char *key;
    CfType type;
    size_t off, size;
    double min, max;
    bool min_open, max_open; /* open interval ends: > min, < max */
    const char *def;
    const char *choices; /* CF_ENUM: "a|b" */
    const char *doc;
} Field;

#define F(k, t, member, lo, hi, open, d, ch, doc) \
    {k, t, offsetof(Config, member), sizeof(((Config *)0)->member), lo, hi, (open) & 1, (open) & 2, d, ch, doc}
/* interval ends for F(): 0 closed, 1 open below, 2 open above, 3 both */
#define BIG 1e18

static const Field FIELDS[] = {
    F("model.arch", CF_ENUM, model.arch, 0, 0, 0, "gpt", "gpt|llama",
      "gpt: LayerNorm, learned positions, GELU MLP, biases, tied head; llama: RMSNorm, rotary positions, SwiGLU MLP, "
      "grouped-query attention, no biases"),
    F("model.n_layer", CF_INT, model.n_layer, 1, 256, 0, "4", NULL, "number of transformer blocks"),
    F("model.n_head", CF_INT, model.n_head, 1, 256, 0, "4", NULL, "attention heads per block; must divide n_embd"),
    F("model.n_embd", CF_INT, model.n_embd, 1, 65536, 0, "128", NULL, "model width"),
    F("model.n_kv_head", CF_INT, model.n_kv_head, 0, 256, 0, "0", NULL,
      "llama: key/value heads (grouped-query attention), dividing n_head; 0 = n_head"),
    F("model.hidden", CF_INT, model.hidden, 0, 1 << 20, 0, "0", NULL,
      "MLP width; 0 = 4 * n_embd (gpt) or 8/3 * n_embd rounded up to a multiple of 32 (llama, as llama2.c)"),
    F("model.norm_eps", CF_FLOAT, model.norm_eps, 0, 1, 1, "1e-5", NULL, "llama: RMSNorm epsilon"),
    F("model.rope_theta", CF_FLOAT, model.rope_theta, 0, BIG, 1, "10000", NULL,
      "llama: base of the rotary embedding's angles"),
    F("model.tied_head", CF_BOOL, model.tied_head, 0, 0, 0, "true", NULL,
      "the LM head is the token embedding (false: a separate lm_head.weight)"),
    F("model.block_size", CF_INT, model.block_size, 1, 65536, 0, "128", NULL, "context length in tokens"),
    F("model.vocab", CF_ENUM, model.vocab, 0, 0, 0, "char", "char|byte|spm",
      "char: the sorted set of distinct bytes of the corpus (stored in the checkpoint); byte: all 256 byte values; "
      "spm: a SentencePiece BPE vocabulary: an imported model's (quant.init_from) or data.tokenizer's (stored in the "
      "checkpoint)"),
    F("data.path", CF_STR, data.path, 0, 0, 0, "/usr/share/games/fortunes/songs-poems", NULL,
      "training corpus (a text file), relative to the working directory"),
    F("data.tokenizer", CF_STR, data.tokenizer, 0, 0, 0, "", NULL,
      "model.vocab spm, trained from scratch: the vocabulary's file, a llama2.c tokenizer.bin, a GGUF model "
      "(tokenizer.ggml.model llama) or a qat checkpoint with an spm vocabulary"),
    F("data.source", CF_ENUM, data.source, 0, 0, 0, "file", "file|teacher",
      "file: data.path; teacher: data-free fine-tuning on sequences sampled from the float model of quant.init_from "
      "(BOS, then block_size tokens each; cached in out_dir/teacher-data.h5)"),
    F("data.teacher.sequences", CF_INT, data.teacher_sequences, 1, 1 << 20, 0, "256", NULL,
      "data.source teacher: sequences to sample"),
    F("data.teacher.temperature", CF_FLOAT, data.teacher_temperature, 0, 100, 1, "1.0", NULL,
      "data.source teacher: sampling temperature"),
    F("data.teacher.top_k", CF_INT, data.teacher_top_k, 0, 1 << 24, 0, "0", NULL,
      "data.source teacher: sample among the k most likely tokens; 0 = all"),
    F("data.teacher.cache", CF_STR, data.teacher_cache, 0, 0, 0, "", NULL,
      "data.source teacher: the sampled sequences' cache (reused while the model and these settings match); "
      "empty = out_dir/teacher-data.h5"),
    F("data.teacher.seed", CF_INT, data.teacher_seed, 0, 2147483647, 0, "1", NULL, "data.source teacher: sampling seed"),
    F("data.val_fraction", CF_FLOAT, data.val_fraction, 0, 1, 3, "0.1",
      NULL, "last fraction of the token stream held out for validation"),
    F("train.batch_size", CF_INT, train.batch_size, 1, 1 << 20, 0, "32", NULL, "sequences per step"),
    F("train.iters", CF_INT, train.iters, 1, 1e9, 0, "2000", NULL, "optimizer steps"),
    F("train.lr", CF_FLOAT, train.lr, 0, 10, 1, "1e-3", NULL, "peak learning rate (AdamW)"),
    F("train.min_lr", CF_FLOAT, train.min_lr, 0, 10, 0, "1e-4", NULL, "floor of the cosine schedule"),
    F("train.warmup_iters", CF_INT, train.warmup_iters, 0, 1e9, 0, "100", NULL, "linear warmup steps"),
    F("train.weight_decay", CF_FLOAT, train.weight_decay, 0, 10, 0, "0.1", NULL,
      "decoupled weight decay, applied to 2-d weights only"),
    F("train.beta1", CF_FLOAT, train.beta1, 0, 1, 2, "0.9", NULL, "AdamW beta1, in [0,1)"),
    F("train.beta2", CF_FLOAT, train.beta2, 0, 1, 2, "0.99", NULL, "AdamW beta2, in [0,1)"),
    F("train.eps", CF_FLOAT, train.eps, 0, 1, 1, "1e-8", NULL, "AdamW epsilon"),
    F("train.grad_clip", CF_FLOAT, train.grad_clip, 0, BIG, 0, "1.0", NULL, "global gradient-norm clip; 0 = off"),
    F("train.seed", CF_INT, train.seed, 0, 2147483647, 0, "1337", NULL, "seed of initialisation and batch sampling"),
    F("train.eval_every", CF_INT, train.eval_every, 1, 1e9, 0, "250", NULL,
      "validation loss and checkpoint every this many steps (and at the end)"),
    F("train.eval", CF_ENUM, train.eval, 0, 0, 0, "full", "full|random",
      "validation loss over: full = the whole validation split as consecutive non-overlapping windows of "
      "block_size (every token scored once, no seed); random = train.eval_batches x batch_size windows at "
      "seeded random starts"),
    F("train.eval_batches", CF_INT, train.eval_batches, 1, 1e6, 0, "50", NULL,
      "train.eval random: batches of random validation windows (seeded by train.seed)"),
    F("train.log_every", CF_INT, train.log_every, 1, 1e9, 0, "10", NULL, "a metrics.jsonl line every this many steps"),
    F("train.threads", CF_INT, train.threads, 0, 4096, 0, "0", NULL,
      "threads for OpenMP and OpenBLAS; 0 = OMP_NUM_THREADS or all cores"),
    F("out_dir", CF_STR, out_dir, 0, 0, 0, "runs/default", NULL,
      "run directory: metrics.jsonl, checkpoint.h5, summary.json"),
    /* compare before quant: config_to_yaml writes quant overrides after the table */
    F("compare.out_dir", CF_STR, compare.out_dir, 0, 0, 0, "runs/compare", NULL,
      "qat compare: where compare.md, compare.csv, compare.json, compare.png and the PTQ checkpoints go"),
    F("compare.float_checkpoint", CF_STR, compare.float_checkpoint, 0, 0, 0, "", NULL,
      "qat compare: the float model; empty = out_dir/checkpoint.h5, trained from this config when missing"),
    F("compare.ptq", CF_STR, compare.ptq, 0, 0, 0, "", NULL,
      "qat compare: PTQ rows separated by ';', each a method and qat ptq options, e.g. \"gptq --bits 4 --group 32\""),
    F("compare.qat", CF_STR, compare.qat, 0, 0, 0, "", NULL,
      "qat compare: comma-separated QAT config files; each row takes its quant section and fine-tuning schedule from "
      "its file and the model, data, evaluation and quant.init_from (the compared float model) from the comparison, "
      "and runs in compare.out_dir/<file name>; model or data keys that differ from the comparison's are refused; "
      "a run is reused when complete and made from the same config, float model and corpus"),
    F("compare.eval_data", CF_STR, compare.eval_data, 0, 0, 0, "", NULL,
      "qat compare: score every row on this text file (tokenized by the model's vocabulary, BOS first for spm, "
      "all non-overlapping windows) instead of the float model's validation split; needed with data.source teacher"),
    F("compare.gen_tokens", CF_INT, compare.gen_tokens, 1, 1000000, 0, "256", NULL,
      "qat compare: tokens generated (greedy, KV cache) to measure each model's generation speed"),
    F("compare.retrain_qat", CF_BOOL, compare.retrain_qat, 0, 0, 0, "false", NULL,
      "qat compare: train the QAT configs again even when their checkpoints exist"),
    F("compare.budget", CF_STR, compare.budget, 0, 0, 0, "", NULL,
      "qat compare: comma-separated bits-per-weight budgets (also --budget); for each, mixed-precision rows "
      "(METHOD+mixed) of compare.budget_ptq and compare.budget_qat, one sensitivity measurement shared by all"),
    F("compare.budget_ptq", CF_STR, compare.budget_ptq, 0, 0, 0, "rtn; gptq; awq", NULL,
      "qat compare: PTQ entries (as in compare.ptq) run with --budget B for each budget"),
    F("compare.budget_qat", CF_STR, compare.budget_qat, 0, 0, 0, "", NULL,
      "qat compare: a QAT config run with quant.budget.bpw B for each budget (its schedule, estimator and "
      "distillation; the bits come from the plan); empty = no QAT mixed rows"),
    F("quant.weight.bits", CF_INT, quant.w_bits, 0, 8, 0, "0", NULL,
      "weight bits, 2..8; 0 = no quantization (FP32 training)"),
    F("quant.format", CF_ENUM, quant.format, 0, 0, 0, "none", "none|q8_0|q4_0|q4_1|iq4_nl",
      "llama.cpp's block formats for the weights, exactly as llama.cpp stores and runs them: 32 weights per block "
      "with a half-precision scale (q4_1: and minimum), ggml's rounding (iq4_nl: 16 non-uniform levels, ggml's "
      "scale search); sets quant.weight.bits (8 or 4), "
      "granularity group, group_size 32 and symmetric (false for q4_1). qat export --format gguf writes the blocks"),
    F("quant.act_format", CF_ENUM, quant.act_format, 0, 0, 0, "none", "none|q8_0",
      "with quant.format: fake-quantize the input of every block-format Linear to q8_0 blocks of 32, as llama.cpp's "
      "CPU matrix products do before each q8_0/q4_0/q4_1/iq4_nl product, and take the MLP's GELU from llama.cpp's "
      "half-precision table, so training and evaluation see what llama.cpp computes (straight-through gradients)"),
    F("quant.weight.granularity", CF_ENUM, quant.w_gran, 0, 0, 0, "channel", "tensor|channel|group",
      "one weight scale per tensor, per output channel, or per group of quant.weight.group_size inputs"),
    F("quant.weight.group_size", CF_INT, quant.w_group, 1, 65536, 0, "32", NULL,
      "inputs per group (32, 64, 128, ...); must divide each quantized layer's input dimension"),
    F("quant.weight.symmetric", CF_BOOL, quant.w_sym, 0, 0, 0, "true", NULL,
      "symmetric codes [-(2^(b-1)-1), 2^(b-1)-1] or asymmetric [0, 2^b-1] with a zero point"),
    F("quant.weight.narrow_range", CF_BOOL, quant.w_narrow, 0, 0, 0, "true", NULL,
      "symmetric even grid: true leaves out the code -2^(b-1) (int3 [-3, 3], 7 levels); false uses it, as LSQ and "
      "q4_0 do (int3 [-4, 3], 8 levels; int2 [-2, 1], 4 levels where the narrow grid is ternary), for layers of 2..4 "
      "bits; the min-max scale is then the smallest that holds both ends of the group"),
    F("quant.weight.codebook", CF_ENUM, quant.w_codebook, 0, 0, 0, "none", "none|nf|kmeans",
      "none: the even grid; nf: each weight the nearest of 2^bits normal-float levels (QLoRA's NF4 at 4 bits, the "
      "same construction at 2 and 3) times its group's scale (min-max: the group's max |x|); kmeans: the nearest of "
      "the layer's own 2^bits levels (one table per layer, or per channel or group: quant.weight.tables; fitted by k-means to its weights over their scales, then "
      "learned); symmetric, 2..4 or 8 bits (8: 256 levels, QLoRA's construction for nf, float levels for kmeans), per channel or group; runs on the integer kernels as a table of levels"),
    F("quant.weight.tables", CF_ENUM, quant.w_tables, 0, 0, 0, "layer", "layer|channel|group",
      "kmeans: one table per layer (under the scales per channel or group), per output channel (SqueezeLLM's "
      "layout; under per-channel or group scales) or per scale group (granularity group); each table holds 2^bits "
      "levels on the grid of 1/127, stored as int8 in the exported model (8 bits per level)"),
    F("quant.weight.freeze_table", CF_BOOL, quant.freeze_table, 0, 0, 0, "false", NULL,
      "kmeans: keep each layer's table where k-means put it (the weights are still re-assigned to the nearest level "
      "every step); false: the levels are parameters, each moved by the summed gradient of its weights"),
    F("quant.weight.table_lr_mult", CF_FLOAT, quant.table_lr_mult, 0, 100, 1, "0.1", NULL,
      "kmeans: learning rate of the table's levels (in units of the group scale, within [-1, 1]) relative to "
      "train.lr"),
    F("quant.activation.bits", CF_INT, quant.a_bits, 0, 8, 0, "0", NULL,
      "bits of the input activations of quantized layers, 2..8; 0 = float activations"),
    F("quant.activation.granularity", CF_ENUM, quant.a_gran, 0, 0, 0, "token", "tensor|token",
      "tensor: one static scale, calibrated by the observer then frozen; token: dynamic per-token scales"),
    F("quant.activation.symmetric", CF_BOOL, quant.a_sym, 0, 0, 0, "true", NULL, "symmetric or asymmetric activations"),
    F("quant.activation.observer", CF_ENUM, quant.observer, 0, 0, 0, "minmax", "minmax|ema|percentile|mse",
      "how static activation scales are calibrated"),
    F("quant.activation.percentile", CF_FLOAT, quant.percentile, 50, 100, 0, "99.99", NULL,
      "percentile of the percentile observer"),
    F("quant.activation.learn_zero_point", CF_BOOL, quant.a_learn_zp, 0, 0, 0, "false", NULL,
      "LSQ+: learn the zero point of asymmetric static activations (estimator lsq)"),
    F("quant.kv.bits", CF_INT, quant.kv_bits, 0, 8, 0, "0", NULL,
      "fake-quantize attention keys and values (per token and head) at 8 or 4 bits; 0 = off"),
    F("quant.estimator", CF_ENUM, quant.estimator, 0, 0, 0, "ste", "ste|clipped|lsq",
      "backward of fake quantization: straight-through, clipped straight-through, or learned step size"),
    F("quant.layers", CF_STR, quant.layers, 0, 0, 0, "blocks.*", NULL,
      "comma-separated globs over the Linear layers to quantize: blocks.N.attn.qkv, blocks.N.attn.proj, "
      "blocks.N.mlp.fc, blocks.N.mlp.proj, lm_head (the tied head)"),
    F("quant.init_from", CF_STR, quant.init_from, 0, 0, 0, "", NULL,
      "float checkpoint to fine-tune (under quantization, or in float with quant.weight.bits 0: the float+ft "
      "baseline); empty = train from scratch"),
    F("quant.scale_init", CF_ENUM, quant.scale_init, 0, 0, 0, "minmax", "minmax|mse",
      "where learned (lsq) weight scales start: each group's min-max range, or the range shrunk (ratios 1 to 0.2) "
      "to the least squared weight error, which helps at 2 bits (at 3 bits min-max did better on the reference model)"),
    F("quant.scale_lr_mult", CF_FLOAT, quant.scale_lr_mult, 0, 100, 1, "1", NULL,
      "learning rate of LSQ scales and zero points relative to train.lr (AdamW moves each by about lr per step, "
      "so small scales may want a smaller rate)"),
    F("quant.calib_batches", CF_INT, quant.calib_batches, 1, 100000, 0, "16", NULL,
      "training batches the activation observers see before training"),
    F("quant.outlier_threshold", CF_FLOAT, quant.outlier_threshold, -1, BIG, 0, "-1", NULL,
      "LLM.int8-style split: input features whose calibration max |x| exceeds this stay float (each layer stores "
      "its mask, <layer>.outlier_mask); -1 = off. Written by qat ptq --method outlier"),
    F("quant.distill.weight", CF_FLOAT, quant.distill_weight, 0, 1, 0, "0", NULL,
      "knowledge distillation: loss = (1 - weight) * cross-entropy + weight * T^2 * KL(teacher || student) over "
      "the vocabulary, the teacher being the float model of quant.init_from (run without gradients each step); 0 = off"),
    F("quant.distill.temperature", CF_FLOAT, quant.distill_temperature, 0, 100, 1, "1", NULL,
      "distillation temperature T: both distributions are softmax(logits / T)"),
    F("quant.dampen", CF_FLOAT, quant.dampen, 0, 1000, 0, "0", NULL,
      "oscillation dampening (Nagel et al. 2022): adds lambda * sum over quantized layers of the mean squared distance "
      "of each weight to its grid point in units of its scale (the point held constant), lambda rising from 0 to this "
      "value over the run on a half cosine, so weights settle on one code late in training; 0 = off"),
    F("quant.budget.bpw", CF_FLOAT, quant.budget_bpw, 0, 64, 0, "0", NULL,
      "budgeted mixed precision: per-layer bits and groups chosen from the candidates below so that the quantized "
      "layers' bits per weight (codes plus fp32 scales) are at most this, by measured sensitivity (the training-split "
      "loss increase when one layer alone is rounded to nearest at each candidate), solved as a knapsack; the choice is "
      "written as quant.overrides into out_dir/config.yaml and the checkpoint; needs quant.init_from; 0 = off"),
    F("quant.budget.bits", CF_STR, quant.budget_bits, 0, 0, 0, "2,3,4,8", NULL,
      "quant.budget.bpw: the candidate weight bits (2..8), comma-separated"),
    F("quant.budget.groups", CF_STR, quant.budget_groups, 0, 0, 0, "32,64,128,channel", NULL,
      "quant.budget.bpw: the candidate granularities, comma-separated group sizes or channel"),
    F("quant.budget.codebooks", CF_STR, quant.budget_codebooks, 0, 0, 0, "none", NULL,
      "quant.budget.bpw: the candidate codebooks (none, nf, kmeans), comma-separated; nf and kmeans are candidates at "
      "2..4 bits only, a kmeans table costs 2^bits fp32 levels per layer"),
    F("quant.budget.calib_batches", CF_INT, quant.budget_calib_batches, 1, 100000, 0, "4", NULL,
      "quant.budget.bpw: training batches of random windows the sensitivities are measured on"),
    F("quant.deploy", CF_BOOL, quant.deploy, 0, 0, 0, "true", NULL,
      "qat train refuses, before training, quantization that qat export cannot run on integer kernels (asymmetric "
      "or per-tensor weights; activations other than symmetric int8 with int5..int8 weights); false = fake "
      "quantization only, for experiments that will not be exported"),
    F("quant.freeze_step", CF_INT, quant.freeze_step, 0, 1000000000, 0, "0", NULL,
      "observers keep updating static activation scales until this step, then they are frozen"),
};
#define N_FIELDS (sizeof FIELDS / sizeof FIELDS[0])

static const Field *field_find(const char *key) {
    for (size_t i = 0; i < N_FIELDS; i++)
        if (!strcmp(FIELDS[i].key, key)) return &FIELDS[i];
    return NULL;
}

/* The keys of key's section (or every key) as "a, b, c", to help with typos. */
static void known_keys(const char *key, char *buf, size_t n) {
    const char *dot = strchr(key, '.');
    size_t plen = dot ? (size_t)(dot - key) + 1 : 0;
    bool section_exists = false;
    for (size_t i = 0; i < N_FIELDS && plen; i++) section_exists |= !strncmp(FIELDS[i].key, key, plen);
    size_t k = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < N_FIELDS && k < n; i++)
        if (!section_exists || !strncmp(FIELDS[i].key, key, plen))
            k += (size_t)snprintf(buf + k, n - k, "%s%s", k ? ", " : "", FIELDS[i].key);
}

/* quant.overrides.<layer>.<field>: the layer name has dots, the field is last. */
static void set_override(Config *c, const char *key, const char *value, const char *origin) {
    const char *layer = key + strlen("quant.overrides.");
    const char *dot = strrchr(layer, '.');
    if (!dot || dot == layer) qat_fail("%s: %s: expected quant.overrides.LAYER.FIELD", origin, key);
    char name[64];
    if ((size_t)(dot - layer) >= sizeof name) qat_fail("%s: %s: layer name too long", origin, key);
    snprintf(name, sizeof name, "%.*s", (int)(dot - layer), layer);
    /* layer names are written back unquoted into the run's config */
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '.' ||
              *p == '-'))
            qat_fail("%s: %s: '%s' is not a layer name (letters, digits, '_', '.', '-')", origin, key, name);
    QuantConfig *q = &c->quant;
    QuantOverride *o = NULL;
    for (int i = 0; i < q->n_ov; i++)
        if (!strcmp(q->ov[i].layer, name)) o = &q->ov[i];
    if (!o) {
        if (q->n_ov == QUANT_MAX_OVERRIDES) qat_fail("%s: %s: more than %d overrides", origin, key, QUANT_MAX_OVERRIDES);
        o = &q->ov[q->n_ov++];
        memset(o, 0, sizeof *o);
        snprintf(o->layer, sizeof o->layer, "%s", name);
        o->bits = o->group_size = o->act_bits = -1;
    }
    const char *field = dot + 1;
    char *end;
    long v = strtol(value, &end, 10);
    bool is_int = end != value && !*end;
    if (!strcmp(field, "bits") || !strcmp(field, "act_bits")) {
        bool act = field[0] == 'a';
        if (!is_int || v < (act ? 0 : 2) || v > 8)
            qat_fail("%s: %s: expected an integer in [%d, 8], got '%s'", origin, key, act ? 0 : 2, value);
        *(act ? &o->act_bits : &o->bits) = (int)v;
    } else if (!strcmp(field, "group_size")) {
        if (!is_int || v < 1 || v > 65536) qat_fail("%s: %s: expected a positive integer, got '%s'", origin, key, value);
        o->group_size = (int)v;
    } else if (!strcmp(field, "granularity")) {
        if (strcmp(value, "tensor") && strcmp(value, "channel") && strcmp(value, "group"))
            qat_fail("%s: %s: expected one of tensor|channel|group, got '%s'", origin, key, value);
        snprintf(o->granularity, sizeof o->granularity, "%s", value);
    } else if (!strcmp(field, "codebook")) {
        if ((int)quant_codebook_of(value) < 0)
            qat_fail("%s: %s: expected one of none|nf|kmeans, got '%s'", origin, key, value);
        snprintf(o->codebook, sizeof o->codebook, "%s", value);
    } else if (!strcmp(field, "format")) {
        if (strcmp(value, "none") && !qformat_of(value))
            qat_fail("%s: %s: expected one of none|q8_0|q4_0|q4_1|iq4_nl, got '%s'", origin, key, value);
        snprintf(o->format, sizeof o->format, "%s", value);
    } else {
        qat_fail("%s: %s: unknown override field '%s' (allowed: bits, group_size, granularity, codebook, format, act_bits)", origin,
                 key, field);
    }
}

static void apply_format(Config *c) {
    QFormat f = qformat_of(c->quant.format);
    if (!f) return;
    c->quant.w_bits = f == QF_Q8_0 ? 8 : 4;
    snprintf(c->quant.w_gran, sizeof c->quant.w_gran, "group");
    c->quant.w_group = QBLOCK;
    c->quant.w_sym = f != QF_Q4_1;
}

void config_set(Config *c, const char *key, const char *value, const char *origin) {
    if (!strncmp(key, "quant.overrides.", 16)) {
        set_override(c, key, value, origin);
        return;
    }
    const Field *f = field_find(key);
    if (!f) {
        char known[1024];
        known_keys(key, known, sizeof known);
        qat_fail("%s: unknown key '%s' (known: %s)", origin, key, known);
    }
    char *p = (char *)c + f->off;
    char *end = NULL;
    if (!*value && f->type == CF_STR && !f->def[0]) { /* empty is meaningful where it is the default */
        *p = '\0';
        return;
    }
    /* strtol and strtod would skip leading blanks that trailing ones fail on */
    if ((f->type == CF_INT || f->type == CF_FLOAT) && (isspace((unsigned char)value[0]) || !value[0]))
        qat_fail("%s: %s: expected %s, got '%s'", origin, key, f->type == CF_INT ? "an integer" : "a number", value);
    errno = 0;
    switch (f->type) {
    case CF_INT: {
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end) qat_fail("%s: %s: expected an integer, got '%s'", origin, key, value);
        if (v < f->min || v > f->max)
            qat_fail("%s: %s: expected an integer in [%.0f, %.0f], got '%s'", origin, key, f->min, f->max, value);
        *(int *)p = (int)v;
        break;
    }
    case CF_FLOAT: {
        double v = strtod(value, &end);
        if (errno || end == value || *end || !isfinite(v))
            qat_fail("%s: %s: expected a number, got '%s'", origin, key, value);
        bool low = f->min_open ? v <= f->min : v < f->min;
        bool high = f->max_open ? v >= f->max : v > f->max;
        if (low || high)
            qat_fail("%s: %s: expected a number in %s%g, %g%s, got '%s'", origin, key, f->min_open ? "(" : "[", f->min,
                     f->max, f->max_open ? ")" : "]", value);
        *(float *)p = (float)v;
        break;
    }
    case CF_STR:
        if (!*value) qat_fail("%s: %s: expected a non-empty string", origin, key);
        if (strlen(value) >= f->size) qat_fail("%s: %s: value longer than %zu characters", origin, key, f->size - 1);
        strcpy(p, value);
        break;
    case CF_BOOL:
        if (!strcmp(value, "true") || !strcmp(value, "yes") || !strcmp(value, "1"))
            *(bool *)p = true;
        else if (!strcmp(value, "false") || !strcmp(value, "no") || !strcmp(value, "0"))
            *(bool *)p = false;
        else
            qat_fail("%s: %s: expected true or false, got '%s'", origin, key, value);
        break;
    case CF_ENUM: {
        size_t n = strlen(value);
        const char *ch = f->choices;
        bool ok = false;
        while (*ch) {
            size_t l = strcspn(ch, "|");
            if (l == n && !strncmp(ch, value, n)) ok = true;
            ch += l + (ch[l] == '|');
        }
        if (!ok) qat_fail("%s: %s: expected one of %s, got '%s'", origin, key, f->choices, value);
        strcpy(p, value);
        if (!strcmp(key, "quant.format")) apply_format(c); /* the weight keys follow from the format */
        break;
    }
    }
}

void config_defaults(Config *c) {
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < N_FIELDS; i++) config_set(c, FIELDS[i].key, FIELDS[i].def, "defaults");
}

/* --set takes the shell's word as YAML would take a plain scalar: surrounding
 * blanks are not part of the key or the value. */
static void trim(const char **s, const char **e) {
    while (*s < *e && (**s == ' ' || **s == '\t')) ++*s;
    while (*e > *s && ((*e)[-1] == ' ' || (*e)[-1] == '\t')) --*e;
}

/* Well-formed UTF-8 (what YAML is made of), without overlongs or surrogates. */
static bool utf8_valid(const unsigned char *s) {
    while (*s) {
        int n = *s < 0x80 ? 0 : (*s & 0xE0) == 0xC0 ? 1 : (*s & 0xF0) == 0xE0 ? 2 : (*s & 0xF8) == 0xF0 ? 3 : -1;
        if (n < 0 || (n == 1 && *s < 0xC2) || (*s > 0xF4)) return false;
        unsigned cp = n == 0 ? *s : *s & (0x3F >> n);
        for (int i = 1; i <= n; i++) {
            if ((s[i] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (s[i] & 0x3F);
        }
        if ((n == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return false;
        s += n + 1;
    }
    return true;
}

void config_set_arg(Config *c, const char *arg) {
    const char *eq = strchr(arg, '=');
    const char *ks = arg, *ke = eq, *vs = eq ? eq + 1 : NULL, *ve = vs ? vs + strlen(vs) : NULL;
    if (eq) trim(&ks, &ke), trim(&vs, &ve);
    if (!eq || ke == ks) qat_fail("--set %s: expected section.key=value", arg);
    if (!utf8_valid((const unsigned char *)arg)) qat_fail("--set: the argument is not valid UTF-8 text");
    char key[256], *val = xmalloc((size_t)(ve - vs) + 1);
    if ((size_t)(ke - ks) >= sizeof key) qat_fail("--set %s: key too long", arg);
    snprintf(key, sizeof key, "%.*s", (int)(ke - ks), ks);
    memcpy(val, vs, (size_t)(ve - vs));
    val[ve - vs] = '\0';
    config_set(c, key, val, "--set");
    free(val);
}

/* ---- YAML reading: nested mappings become dotted keys; a sequence of
 * scalars becomes one comma-separated value (string keys only). Plain YAML
 * only: one document, no tags, anchors or aliases, no key given twice. ---- */

/* Sections nest two or three levels (quant.weight.bits); deeper input is
 * refused before the recursion could exhaust the stack. */
#define YAML_MAX_DEPTH 8

typedef struct SeenKey {
    char *key;
    size_t line;
} SeenKey;

/* One event is alive at a time, in ev; it and the list buffer live in the
 * Reader so that bad input, which leaves read_mapping by qat_fail, still
 * frees them (reader_free). */
typedef struct Reader {
    yaml_parser_t p;
    const char *origin;
    SeenKey *seen;
    int n_seen, cap_seen;
    yaml_event_t ev;
    bool ev_live;
    char *list;
} Reader;

static _Noreturn void yaml_fail(Reader *r, const char *what, size_t line) {
    qat_fail("%s:%zu: %s", r->origin, line + 1, what);
}

/* Replaces r->ev by the next event; returns it. */
static yaml_event_t *next(Reader *r) {
    if (r->ev_live) yaml_event_delete(&r->ev);
    r->ev_live = false;
    yaml_event_t *ev = &r->ev;
    if (!yaml_parser_parse(&r->p, ev)) {
        char what[256];
        snprintf(what, sizeof what, "invalid YAML: %s", r->p.problem ? r->p.problem : "parse error");
        yaml_fail(r, what, r->p.problem_mark.line);
    }
    r->ev_live = true;
    const yaml_char_t *tag = NULL, *anchor = NULL;
    if (ev->type == YAML_SCALAR_EVENT) tag = ev->data.scalar.tag, anchor = ev->data.scalar.anchor;
    if (ev->type == YAML_MAPPING_START_EVENT) tag = ev->data.mapping_start.tag, anchor = ev->data.mapping_start.anchor;
    if (ev->type == YAML_SEQUENCE_START_EVENT)
        tag = ev->data.sequence_start.tag, anchor = ev->data.sequence_start.anchor;
    if (tag) yaml_fail(r, "YAML tags (such as !!str) are not supported: write the plain value", ev->start_mark.line);
    if (anchor || ev->type == YAML_ALIAS_EVENT)
        yaml_fail(r, "YAML anchors and aliases are not supported: write each value out", ev->start_mark.line);
    return ev;
}

/* Records a key (a section's or a value's), failing when it came before. */
static void see_key(Reader *r, const char *key, size_t line) {
    for (int i = 0; i < r->n_seen; i++)
        if (!strcmp(r->seen[i].key, key)) {
            char what[512];
            snprintf(what, sizeof what, "%s is given twice (first at line %zu)", key, r->seen[i].line + 1);
            yaml_fail(r, what, line);
        }
    if (r->n_seen == r->cap_seen) {
        r->cap_seen = r->cap_seen ? 2 * r->cap_seen : 64;
        r->seen = xrealloc(r->seen, (size_t)r->cap_seen * sizeof *r->seen);
    }
    r->seen[r->n_seen++] = (SeenKey){xstrdup(key), line};
}

static bool takes_list(const char *key) {
    const Field *f = field_find(key);
    return f && f->type == CF_STR;
}

static void read_mapping(Reader *r, Config *c, const char *prefix, int depth, size_t line0) {
    if (depth > YAML_MAX_DEPTH) {
        char what[128];
        snprintf(what, sizeof what, "mappings nested deeper than %d levels", YAML_MAX_DEPTH);
        yaml_fail(r, what, line0);
    }
    for (;;) {
        yaml_event_t *ev = next(r);
        if (ev->type == YAML_MAPPING_END_EVENT) return;
        if (ev->type != YAML_SCALAR_EVENT) yaml_fail(r, "expected a key", ev->start_mark.line);
        char key[256];
        size_t line = ev->start_mark.line;
        int kl = snprintf(key, sizeof key, "%s%s%s", prefix, *prefix ? "." : "", (const char *)ev->data.scalar.value);
        if (kl < 0 || (size_t)kl >= sizeof key) yaml_fail(r, "key longer than 255 characters", line);
        see_key(r, key, line);
        char where[CONFIG_PATH_MAX + 32];
        snprintf(where, sizeof where, "%s:%zu", r->origin, line + 1);
        ev = next(r);
        if (ev->type == YAML_SCALAR_EVENT) {
            if (strlen((const char *)ev->data.scalar.value) != ev->data.scalar.length)
                qat_fail("%s: %s: the value contains a NUL character", where, key);
            config_set(c, key, (const char *)ev->data.scalar.value, where);
        } else if (ev->type == YAML_MAPPING_START_EVENT) {
            read_mapping(r, c, key, depth + 1, line);
        } else if (ev->type == YAML_SEQUENCE_START_EVENT) {
            if (!takes_list(key)) qat_fail("%s: %s: expected a single value, got a list", where, key);
            /* the joined list goes through config_set, which checks its length */
            size_t cap = 256, k = 0;
            r->list = xmalloc(cap);
            r->list[0] = '\0';
            for (;;) {
                ev = next(r);
                if (ev->type == YAML_SEQUENCE_END_EVENT) break;
                if (ev->type != YAML_SCALAR_EVENT) qat_fail("%s: %s: expected a list of plain values", where, key);
                size_t n = ev->data.scalar.length;
                while (k + n + 2 > cap) r->list = xrealloc(r->list, cap *= 2);
                if (k) r->list[k++] = ',';
                memcpy(r->list + k, ev->data.scalar.value, n);
                r->list[k += n] = '\0';
            }
            if (strlen(r->list) != k) qat_fail("%s: %s: the value contains a NUL character", where, key);
            config_set(c, key, r->list, where);
            free(r->list);
            r->list = NULL;
        } else {
            qat_fail("%s: %s: unsupported YAML value", where, key);
        }
    }
}

static void reader_free(Reader *r) {
    for (int i = 0; i < r->n_seen; i++) free(r->seen[i].key);
    free(r->seen);
    free(r->list);
    if (r->ev_live) yaml_event_delete(&r->ev);
    r->ev_live = false;
}

typedef struct Load {
    Config *c;
    Reader r;
} Load;

static void load(void *p) {
    Load *L = p;
    Reader *r = &L->r;
    bool done = false;
    int docs = 0;
    while (!done) {
        yaml_event_t *ev = next(r);
        switch (ev->type) {
        case YAML_STREAM_END_EVENT: done = true; break;
        case YAML_MAPPING_START_EVENT: read_mapping(r, L->c, "", 1, ev->start_mark.line); break;
        case YAML_DOCUMENT_START_EVENT:
            if (++docs > 1) yaml_fail(r, "more than one YAML document (a second ---): give one config per file",
                                      ev->start_mark.line);
            break;
        case YAML_STREAM_START_EVENT:
        case YAML_DOCUMENT_END_EVENT: break;
        case YAML_SCALAR_EVENT:
            if (ev->data.scalar.length == 0) break; /* empty document */
            /* fallthrough */
        default: yaml_fail(r, "expected a mapping of sections", ev->start_mark.line);
        }
    }
}

void config_load_string(Config *c, const char *yaml, const char *origin) {
    config_load_bytes(c, yaml, strlen(yaml), origin);
}

void config_load_bytes(Config *c, const char *yaml, size_t n, const char *origin) {
    size_t nul = strnlen(yaml, n);
    if (nul != n) qat_fail("%s: contains a NUL byte at offset %zu (not a text file?)", origin, nul);
    Load *L = xcalloc(1, sizeof *L);
    L->c = c;
    L->r.origin = origin;
    yaml_parser_initialize(&L->r.p);
    yaml_parser_set_input_string(&L->r.p, (const unsigned char *)yaml, n);
    /* the parser and the key list are released on bad input too */
    char msg[1024];
    bool ok = qat_try(load, L, msg, sizeof msg);
    yaml_parser_delete(&L->r.p);
    reader_free(&L->r);
    free(L);
    if (!ok) qat_fail("%s", msg);
}

void config_load_file(Config *c, const char *path) {
    size_t n;
    char *text = xread_file(path, &n);
    size_t i = 0;
    while (i < n && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r')) i++;
    if (i == n) qat_fail("%s: the config is empty (nothing would be set; every default would be used)", path);
    config_load_bytes(c, text, n, path);
    free(text);
}

void config_validate(const Config *c, const char *origin) {
    if (c->model.n_embd % c->model.n_head != 0)
        qat_fail("%s: model.n_embd: %d is not divisible by model.n_head %d", origin, c->model.n_embd, c->model.n_head);
    bool llama = !strcmp(c->model.arch, "llama");
    if (c->model.n_kv_head && !llama && c->model.n_kv_head != c->model.n_head)
        qat_fail("%s: model.n_kv_head: grouped-query attention needs model.arch llama", origin);
    if (c->model.n_kv_head && c->model.n_head % c->model.n_kv_head != 0)
        qat_fail("%s: model.n_kv_head: model.n_head %d is not divisible by %d", origin, c->model.n_head,
                 c->model.n_kv_head);
    if (llama && (c->model.n_embd / c->model.n_head) % 2)
        qat_fail("%s: model.n_head: llama's rotary embedding needs an even head size, n_embd / n_head is %d", origin,
                 c->model.n_embd / c->model.n_head);
    if (!llama && !c->model.tied_head)
        qat_fail("%s: model.tied_head: the gpt architecture ties its head to the token embedding", origin);
    if (c->data.tokenizer[0] && (strcmp(c->model.vocab, "spm") || c->quant.init_from[0]))
        qat_fail("%s: data.tokenizer: gives the spm vocabulary of a model trained from scratch (model.vocab spm, no "
                 "quant.init_from); %s", origin,
                 c->quant.init_from[0] ? "a fine-tuned model keeps quant.init_from's vocabulary" : "set model.vocab: spm");
    const QuantConfig *q = &c->quant;
    if (q->w_bits == 1) qat_fail("%s: quant.weight.bits: expected 0 (off) or 2..8, got 1", origin);
    if (q->a_bits == 1) qat_fail("%s: quant.activation.bits: expected 0 (off) or 2..8, got 1", origin);
    if (q->kv_bits != 0 && q->kv_bits != 4 && q->kv_bits != 8)
        qat_fail("%s: quant.kv.bits: expected 0, 4 or 8, got %d", origin, q->kv_bits);
    if (q->w_bits == 0 && (q->a_bits || q->kv_bits || q->n_ov))
        qat_fail("%s: quant.weight.bits: quantization settings given but quant.weight.bits is 0 (set 2..8)", origin);
    if (q->a_learn_zp && (q->a_sym || strcmp(q->estimator, "lsq") || strcmp(q->a_gran, "tensor")))
        qat_fail("%s: quant.activation.learn_zero_point: needs asymmetric per-tensor activations and estimator lsq",
                 origin);
    if (q->outlier_threshold >= 0.0f && (q->w_bits == 0 || q->a_bits != 8))
        qat_fail("%s: quant.outlier_threshold: the outlier split needs int8 activations (quant.activation.bits: 8)", origin);
    if (strcmp(q->w_codebook, "none") && q->w_bits &&
        (!quant_codebook_bits(q->w_bits) || !q->w_sym || !strcmp(q->w_gran, "tensor") || qformat_of(q->format)))
        qat_fail("%s: quant.weight.codebook: %s takes 2..4 or 8 bits, symmetric, per channel or group, without quant.format "
                 "(got %d bits, %s, %s%s)", origin, q->w_codebook, q->w_bits, q->w_sym ? "symmetric" : "asymmetric",
                 q->w_gran, qformat_of(q->format) ? ", a format" : "");
    if (!q->w_narrow && q->w_bits &&
        (!q->w_sym || strcmp(q->w_codebook, "none") || qformat_of(q->format) || q->w_bits > 4))
        qat_fail("%s: quant.weight.narrow_range: false (the code -2^(b-1) too) is for the symmetric even grid at 2..4 "
                 "bits, without a codebook or quant.format (got %d bits, %s, codebook %s, format %s)", origin, q->w_bits,
                 q->w_sym ? "symmetric" : "asymmetric", q->w_codebook, q->format);
    /* a kmeans table somewhere: the config's, a layer's, or one the budget may choose */
    bool any_kmeans = !strcmp(q->w_codebook, "kmeans") || (q->budget_bpw > 0.0f && strstr(q->budget_codebooks, "kmeans"));
    for (int i = 0; i < q->n_ov && q->w_bits; i++) { /* a layer's codebook, with its own bits and granularity */
        const QuantOverride *o = &q->ov[i];
        const char *cb = o->codebook[0] ? o->codebook : q->w_codebook, *gran = o->granularity[0] ? o->granularity : q->w_gran;
        int bits = o->bits >= 0 ? o->bits : q->w_bits;
        any_kmeans |= !strcmp(cb, "kmeans");
        if (strcmp(cb, "none") && (!quant_codebook_bits(bits) || !q->w_sym || !strcmp(gran, "tensor")))
            qat_fail("%s: quant.overrides.%s: the %s codebook takes 2..4 or 8 bits, symmetric, per channel or group (got %d "
                     "bits, %s, %s)", origin, o->layer, cb, bits, q->w_sym ? "symmetric" : "asymmetric", gran);
    }
    if (q->w_bits && strcmp(q->w_tables, "layer")) {
        if (strcmp(q->w_codebook, "kmeans"))
            qat_fail("%s: quant.weight.tables: %s: tables per channel or group are kmeans tables (quant.weight.codebook "
                     "is %s)", origin, q->w_tables, q->w_codebook);
        if (!strcmp(q->w_tables, "group") && strcmp(q->w_gran, "group"))
            qat_fail("%s: quant.weight.tables: group: a table per scale group needs quant.weight.granularity group (got "
                     "%s)", origin, q->w_gran);
    }
    if (!any_kmeans && q->freeze_table)
        qat_fail("%s: quant.weight.freeze_table: only a kmeans codebook has a table of its own (quant.weight.codebook is "
                 "%s)", origin, q->w_codebook);
    if (!strcmp(q->scale_init, "mse") && strcmp(q->estimator, "lsq"))
        qat_fail("%s: quant.scale_init: mse sets where learned scales start: needs estimator lsq (the others take "
                 "min-max scales every step)", origin);
    if (q->distill_weight > 0.0f && !q->init_from[0])
        qat_fail("%s: quant.distill.weight: distillation needs a teacher: set quant.init_from to the float model", origin);
    if (q->dampen > 0.0f && (!q->w_bits || qformat_of(q->format)))
        qat_fail("%s: quant.dampen: dampening pulls weights to qat's own grid or codebook: needs quant.weight.bits and no "
                 "quant.format (got format %s)", origin, q->format);
    if (q->budget_bpw > 0.0f && (!q->init_from[0] || !q->w_bits))
        qat_fail("%s: quant.budget.bpw: the sensitivities are measured on the float model: set quant.init_from and "
                 "quant.weight.bits", origin);
    QFormat fm = qformat_of(q->format);
    if (fm) {
        int bits = fm == QF_Q8_0 ? 8 : 4;
        const char *key = q->w_bits != bits                ? "quant.weight.bits"
                          : strcmp(q->w_gran, "group")     ? "quant.weight.granularity"
                          : q->w_group != QBLOCK           ? "quant.weight.group_size"
                          : q->w_sym != (fm != QF_Q4_1)    ? "quant.weight.symmetric"
                                                           : NULL;
        if (key) qat_fail("%s: %s contradicts quant.format %s (which sets bits %d, group_size 32%s); leave it out", origin,
                          key, q->format, bits, fm == QF_Q4_1 ? ", asymmetric" : "");
        if (q->a_bits)
            qat_fail("%s: quant.activation.bits: llama.cpp quantizes the activations of block formats itself; use "
                     "quant.act_format: q8_0 to train with what it does", origin);
        for (int i = 0; i < q->n_ov; i++)
            if (q->ov[i].bits >= 0 || q->ov[i].group_size >= 0 || q->ov[i].granularity[0])
                qat_fail("%s: quant.overrides.%s: per-layer weight formats do not combine with quant.format", origin,
                         q->ov[i].layer);
    }
    bool any_fm = fm != QF_NONE;
    for (int i = 0; i < q->n_ov; i++) {
        const QuantOverride *o = &q->ov[i];
        if (!o->format[0]) continue;
        any_fm |= qformat_of(o->format) != QF_NONE;
        if (o->bits >= 0 || o->group_size >= 0 || o->granularity[0] || o->codebook[0] || o->act_bits >= 0)
            qat_fail("%s: quant.overrides.%s.format: a block format sets the layer's bits, groups and rounding; leave "
                     "out its other fields", origin, o->layer);
        if (!q->w_bits && !fm)
            qat_fail("%s: quant.overrides.%s.format: the layer is quantized only when quant.weight.bits or quant.format "
                     "is set", origin, o->layer);
    }
    if (strcmp(q->act_format, "none") && !any_fm)
        qat_fail("%s: quant.act_format: simulates llama.cpp's activations for block formats: set quant.format too", origin);
    if (c->train.min_lr > c->train.lr)
        qat_fail("%s: train.min_lr: %g is larger than train.lr %g", origin, c->train.min_lr, c->train.lr);
}

/* One field's value as config_to_yaml writes it. */
static void field_format(const Config *c, const Field *f, char *buf, size_t n) {
    const char *p = (const char *)c + f->off;
    switch (f->type) {
    case CF_INT: snprintf(buf, n, "%d", *(const int *)p); break;
    case CF_FLOAT: snprintf(buf, n, "%.9g", *(const float *)p); break;
    case CF_STR:
    case CF_ENUM: snprintf(buf, n, "%s", p); break;
    case CF_BOOL: snprintf(buf, n, "%s", *(const bool *)p ? "true" : "false"); break;
    }
}

const char *config_section_differs(const Config *a, const Config *b, const char *section) {
    size_t sl = strlen(section);
    char va[CONFIG_PATH_MAX + 64], vb[CONFIG_PATH_MAX + 64];
    for (size_t i = 0; i < N_FIELDS; i++) {
        const Field *f = &FIELDS[i];
        if (strncmp(f->key, section, sl) || f->key[sl] != '.') continue;
        field_format(a, f, va, sizeof va);
        field_format(b, f, vb, sizeof vb);
        if (strcmp(va, vb)) return f->key;
    }
    if (!strcmp(section, "quant")) {
        const QuantConfig *x = &a->quant, *y = &b->quant;
        bool same = x->n_ov == y->n_ov;
        for (int i = 0; same && i < x->n_ov; i++) {
            const QuantOverride *o = &x->ov[i], *p = &y->ov[i];
            same = !strcmp(o->layer, p->layer) && o->bits == p->bits && o->group_size == p->group_size &&
                   !strcmp(o->granularity, p->granularity) && !strcmp(o->codebook, p->codebook) &&
                   !strcmp(o->format, p->format) && o->act_bits == p->act_bits;
        }
        if (!same) return "quant.overrides";
    }
    return NULL;
}

char *config_to_yaml(const Config *c) {
    size_t cap = 8192, k = 0;
    char *out = xmalloc(cap);
    char section[64] = "";
    for (size_t i = 0; i < N_FIELDS; i++) {
        const Field *f = &FIELDS[i];
        const char *dot = strchr(f->key, '.');
        const char *name = f->key;
        const char *indent = "";
        if (dot) {
            size_t sl = (size_t)(dot - f->key);
            if (strlen(section) != sl || strncmp(section, f->key, sl)) {
                snprintf(section, sizeof section, "%.*s", (int)sl, f->key);
                k += (size_t)snprintf(out + k, cap - k, "%s:\n", section);
            }
            name = dot + 1;
            indent = "  ";
        } else {
            section[0] = '\0';
        }
        const char *p = (const char *)c + f->off;
        while (cap - k < f->size + 256) out = xrealloc(out, cap *= 2);
        switch (f->type) {
        case CF_INT: k += (size_t)snprintf(out + k, cap - k, "%s%s: %d\n", indent, name, *(const int *)p); break;
        case CF_FLOAT: k += (size_t)snprintf(out + k, cap - k, "%s%s: %.9g\n", indent, name, *(const float *)p); break;
        case CF_STR:
        case CF_ENUM: {
            /* double-quoted YAML: backslash, quote and control characters escaped (6 bytes each at most) */
            while (cap - k < 6 * f->size + 256) out = xrealloc(out, cap *= 2);
            k += (size_t)snprintf(out + k, cap - k, "%s%s: \"", indent, name);
            for (const unsigned char *q = (const unsigned char *)p; *q; q++) {
                if (*q == '\\' || *q == '"') out[k++] = '\\', out[k++] = (char)*q;
                else if (*q < 0x20 || *q == 0x7f) k += (size_t)snprintf(out + k, cap - k, "\\x%02x", *q);
                else out[k++] = (char)*q;
            }
            k += (size_t)snprintf(out + k, cap - k, "\"\n");
            break;
        }
        case CF_BOOL: k += (size_t)snprintf(out + k, cap - k, "%s%s: %s\n", indent, name, *(const bool *)p ? "true" : "false"); break;
        }
    }
    /* the quant fields come last in the table, so this stays inside quant: */
    for (int i = 0; i < c->quant.n_ov; i++) {
        const QuantOverride *o = &c->quant.ov[i];
        if (cap - k < 1024) out = xrealloc(out, cap *= 2);
        if (o->bits >= 0) k += (size_t)snprintf(out + k, cap - k, "  overrides.%s.bits: %d\n", o->layer, o->bits);
        if (o->group_size >= 0)
            k += (size_t)snprintf(out + k, cap - k, "  overrides.%s.group_size: %d\n", o->layer, o->group_size);
        if (o->granularity[0])
            k += (size_t)snprintf(out + k, cap - k, "  overrides.%s.granularity: %s\n", o->layer, o->granularity);
        if (o->codebook[0]) k += (size_t)snprintf(out + k, cap - k, "  overrides.%s.codebook: %s\n", o->layer, o->codebook);
        if (o->format[0]) k += (size_t)snprintf(out + k, cap - k, "  overrides.%s.format: %s\n", o->layer, o->format);
        if (o->act_bits >= 0)
            k += (size_t)snprintf(out + k, cap - k, "  overrides.%s.act_bits: %d\n", o->layer, o->act_bits);
    }
    return out;
}

void config_print_keys(FILE *f) {
    fprintf(f, "| key | type | default | meaning |\n|---|---|---|---|\n");
    static const char *tn[] = {"integer", "number", "string", "one of", "true/false"};
    for (size_t i = 0; i < N_FIELDS; i++) {
        fprintf(f, "| `%s` | %s", FIELDS[i].key, tn[FIELDS[i].type]);
        if (FIELDS[i].choices) fputc(' ', f);
        for (const char *c = FIELDS[i].choices; c && *c; c++) {
            if (*c == '|') fputc('\\', f); /* a bare | would end the Markdown cell */
            fputc(*c, f);
        }
        fprintf(f, " | `%s` | %s |\n", FIELDS[i].def, FIELDS[i].doc);
    }
}
