/* main.c: the qat command line: train, eval, sample, export, ptq, compare,
 * import, inspect, demo. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format/gguf.h"
#include "format/gguf_model.h"
#include "format/llama2c.h"
#include "format/checkpoint.h"
#include "train/compare.h"
#include "train/config.h"
#include "quant/kernels.h"
#include "train/inspect.h"
#include "train/plot.h"
#include "train/ptq_model.h"
#include "train/sample.h"
#include "train/trainer.h"
#include "util/dist.h"
#include "util/json.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: qat COMMAND [options]\n"
            "\n"
            "commands:\n"
            "  train CONFIG.yaml [--set section.key=value ...] [--resume | --overwrite] [--stop-after N]\n"
            "                          train a model (gpt or llama) as the config says (see configs/README.md)\n"
            "  eval CHECKPOINT|MODEL.h5|MODEL.gguf [--data FILE] [--json] [--int] [--act-format F] [--top1 FILE]\n"
            "                          validation loss of a checkpoint or an exported model\n"
            "  sample CHECKPOINT|MODEL.h5|MODEL.gguf [--prompt TEXT] [--tokens N] [--temperature T] [--top-k K] [--seed S]\n"
            "                          generate text (KV cache; integer kernels for quantized layers)\n"
            "  export CHECKPOINT -o MODEL.h5 [--json] | --format gguf [--f16] -o MODEL.gguf\n"
            "                          a QAT or PTQ checkpoint as a deployable integer model\n"
            "  ptq CHECKPOINT --method rtn|gptq|awq|smoothquant|outlier [--bits B] [--group G] [--format F] -o OUT.h5\n"
            "                          post-training quantization of a float checkpoint\n"
            "  compare CONFIG.yaml [--set section.key=value ...] [--budget BPW,...]\n"
            "                          QAT versus PTQ on one float model: compare.md/csv/json/png\n"
            "  import MODEL.bin --tokenizer TOKENIZER.bin -o FLOAT.h5 | MODEL.gguf -o FLOAT.h5\n"
            "                          a pretrained llama2.c or GGUF (llama, gpt2) model as a float\n"
            "                          checkpoint (eval, sample, ptq, compare, export and quant.init_from take it)\n"
            "  inspect FILE [--json]   describe a checkpoint, exported model, GGUF or llama2.c file: architecture,\n"
            "                          vocab, each tensor's shape, type, quantization and bytes; checksums verified\n"
            "  plot RUN_DIR... [-o FILE.png]\n"
            "                          training and validation loss and learning rate of runs on one figure\n"
            "  demo                    train a small model on the embedded default corpus, evaluate it, sample\n"
            "  config-keys             print every config key as a Markdown table\n"
            "\n"
            "qat --version names the release, the commit and the kernels this CPU runs.\n"
            "qat COMMAND --help shows a command's options. Threads: OMP_NUM_THREADS or train.threads.\n"
            "Bad input exits with status 2 and one line naming the file and key.\n");
}

static const char *HELP_TRAIN =
    "usage: qat train CONFIG.yaml [--set section.key=value ...] [--resume | --overwrite] [--stop-after N]\n"
    "  Trains a model (gpt or llama). Writes out_dir/metrics.jsonl, out_dir/checkpoint.h5 (at every\n"
    "  eval and at the end) and out_dir/summary.json, holding out_dir's lock\n"
    "  (out_dir/.qat.lock) so that no second training writes there at the same time.\n"
    "  --set K=V   override one config key, e.g. --set train.iters=100 (repeatable)\n"
    "  --resume    continue from out_dir/checkpoint.h5 (same losses as an unbroken run)\n"
    "  --overwrite replace the run already in out_dir (without it, such an out_dir is refused)\n"
    "  --stop-after N  stop once N steps are done, saving a checkpoint to --resume from\n"
    "  Under mpirun -np N (a qat built with MPI) the N processes train one model data-parallel:\n"
    "  each takes train.batch_size / N sequences of the same global batch, gradients are summed\n"
    "  over the ranks, and rank 0 alone writes out_dir (see README, Training on several machines).\n";
static const char *HELP_EVAL =
    "usage: qat eval CHECKPOINT|MODEL.h5|MODEL.gguf [--data FILE] [--json] [--int] [--act-format F] [--top1 FILE]\n"
    "  Mean next-token loss over the validation windows of the run's train.eval:\n"
    "  full (the default) scores the whole split as consecutive non-overlapping windows\n"
    "  of block_size, every token once; random takes train.eval_batches x batch_size\n"
    "  windows at seeded random starts. Without --data: the validation split of the\n"
    "  training corpus, as during training. With --data FILE: all of FILE.\n"
    "  --json      print one JSON object: val_loss, eval, windows, block_size, tokens, kernels\n"
    "  --int       run a QAT checkpoint's quantized layers on real integer weights and the\n"
    "              integer kernels (QAT_KERNEL=scalar|avx2|avx512 picks the path)\n"
    "  --act-format q8_0|none  quantize the input of every block-format (q8_0/q4_0/q4_1/iq4_nl) layer to\n"
    "              q8_0 blocks as llama.cpp's CPU products do (on), or not (off), whatever the\n"
    "              model was trained with (default: a checkpoint as trained, a GGUF file on)\n"
    "  --top1 FILE write the most likely next token id at every scored position, one per line\n"
    "              in window order (to compare with another runtime, e.g. llama.cpp)\n"
    "  An exported MODEL.h5 (qat export) always runs on the integer kernels; a GGUF file\n"
    "  (qat export --format gguf) needs --data, and runs its q8_0, q4_0, q4_1 and iq4_nl blocks on them\n"
    "  as llama.cpp does: integer dots against q8_0 activation blocks (--act-format none: float activations).\n";
static const char *HELP_SAMPLE =
    "usage: qat sample CHECKPOINT|MODEL.h5|MODEL.gguf [--prompt TEXT] [--tokens N] [--temperature T] [--top-k K] [--seed S]\n"
    "                  [--act-format q8_0|none]\n"
    "  --prompt TEXT     the text to continue (default none: from BOS, or a newline for a char vocab)\n"
    "  --tokens N        tokens to generate (default 200)\n"
    "  --temperature T   softmax temperature (default 0.8; 0 = greedy)\n"
    "  --top-k K         sample among the K most likely tokens (default 0 = all)\n"
    "  --seed S          the sampler's seed (default 1337)\n"
    "  When the context is full, it restarts from its newest half.\n"
    "  --act-format F     llama.cpp's q8_0 activation blocks in block-format layers on or off\n"
    "                    (default: a checkpoint as trained, a GGUF file on, as llama.cpp runs it)\n"
    "  Runs on the inference engine with a KV cache; quantized layers (of a QAT checkpoint\n"
    "  or an exported model) on the integer kernels.\n";
static const char *HELP_EXPORT =
    "usage: qat export CHECKPOINT -o MODEL.h5 [--json]\n"
    "       qat export CHECKPOINT --format gguf [--f16] -o MODEL.gguf\n"
    "  --format h5|gguf  the file to write (default h5, or gguf when -o ends in .gguf)\n"
    "  --format gguf  a GGUF file for llama.cpp (architecture gpt2 or llama, as the model):\n"
    "                 float checkpoints in F32 (--f16: F16; default F32), layers trained in\n"
    "                 quant.format q8_0/q4_0/q4_1/iq4_nl as exactly those blocks, qat's symmetric\n"
    "                 int8/int4 grids as q8_0/q4_0; a report line per tensor says what it became\n"
    "  Writes a QAT or PTQ checkpoint as a deployable model: quantized weights as int8\n"
    "  or packed int4 codes with their scales, float tensors as float, config and vocab,\n"
    "  a CRC-32 per dataset (docs/checkpoint-format.md). Prints the file size against\n"
    "  the ideal size of the quantized part (bits per weight plus scales).\n"
    "  --json      print one JSON object with the sizes\n";

static const char *HELP_PTQ =
    "usage: qat ptq CHECKPOINT --method M [options] -o OUT.h5 [--json]\n"
    "  Quantizes a float checkpoint after training, calibrating on windows of its\n"
    "  training split, block by block (each block sees the ones before it quantized).\n"
    "  OUT.h5 is a checkpoint like a QAT one: qat eval, qat export and qat sample take it.\n"
    "  --method M          rtn (round-to-nearest), gptq, awq, smoothquant (W8A8) or outlier\n"
    "                      (LLM.int8-style: int8 with outlier input features in float)\n"
    "  --bits B            weight bits 2..8 (default 4; smoothquant and outlier: 8)\n"
    "  --group G           inputs per scale: a number, channel or tensor (default 32;\n"
    "                      smoothquant and outlier: channel)\n"
    "  --sym | --asym      symmetric codes (default) or asymmetric with zero points\n"
    "  --full-range        symmetric codes down to -2^(b-1) (int3 -4..3, int2 -2..1: one level more; 2..4 bits)\n"
    "  --format F          llama.cpp's blocks: q8_0, q4_0, q4_1 or iq4_nl (rtn, gptq, awq; sets bits,\n"
    "                      group 32 and symmetry; rtn is then ggml's own quantizer, byte for byte)\n"
    "  --codebook C        non-uniform levels (quant.weight.codebook; 2..4 or 8 bits, rtn, gptq, awq):\n"
    "                      nf, each weight the nearest normal-float level times its group's scale;\n"
    "                      kmeans, the nearest of the layer's own table, fitted by k-means with each\n"
    "                      weight counted by its column's calibration Hessian diagonal\n"
    "  --tables T          kmeans: one table per layer (default), channel (each output row its own) or\n"
    "                      group (each scale group its own; needs --group N)\n"
    "  --table-unweighted  kmeans: every weight counts the same in the fit\n"
    "  --act-format q8_0   evaluate with llama.cpp's q8_0 activation blocks (quant.act_format)\n"
    "  --act A             activations: none, token (dynamic int8) or tensor (static int8)\n"
    "                      (default none; smoothquant: tensor; outlier: token)\n"
    "  --calib-batches N   calibration windows: N x train.batch_size (default 4)\n"
    "  --seed S            seed of the calibration windows (default 1234)\n"
    "  --calib-data FILE|teacher  calibrate on FILE (all of it) or, without any text, on\n"
    "                      sequences sampled from the model itself (data.teacher.* of its\n"
    "                      config; cached in OUT.teacher-data.h5); default: data.path's\n"
    "                      training split\n"
    "  --layers GLOBS      Linears to quantize, as quant.layers (default blocks.*)\n"
    "  gptq: --damp F (default 0.01 of mean diag H), --block N (default 128), --act-order\n"
    "  awq: --awq-grid N (exponents 0, 1/N, ..., 1; default 20; 0: exponent 0 only), --no-clip\n"
    "  smoothquant: --alpha A|auto (default 0.5; auto: searched per layer on calibration outputs)\n"
    "  outlier: --threshold T (default 6.0)\n"
    "  --budget BPW        mixed precision (rtn, gptq, awq): per-layer bits and groups chosen so the\n"
    "                      quantized layers hold at most BPW bits per weight (codes + fp32 scales), by\n"
    "                      measured sensitivity (training-split loss increase of each layer alone\n"
    "                      rounded to nearest at each candidate), as a knapsack; --bits/--group ignored\n"
    "  --budget-bits LIST  its candidate bits (default 2,3,4,8)\n"
    "  --budget-groups LIST  its candidate groups (default 32,64,128,channel)\n"
    "  --budget-codebooks LIST  its candidate codebooks at 2..4 bits (default none; e.g. none,kmeans)\n"
    "  --budget-calib-batches N  batches the sensitivities are measured on (default 4)\n"
    "  --json              one JSON object: seconds, per-layer output errors against RTN\n";

static const char *HELP_COMPARE =
    "usage: qat compare CONFIG.yaml [--set section.key=value ...] [--budget BPW,...]\n"
    "  CONFIG describes the float model (trained into out_dir when its checkpoint is\n"
    "  missing, or compare.float_checkpoint) and a compare section: compare.ptq lists\n"
    "  PTQ runs (\"gptq --bits 4 --group 32; awq --bits 3 --group 32; ...\", options as\n"
    "  in qat ptq), compare.qat lists QAT config files: each takes its quant section and\n"
    "  schedule from its file and the model, data, evaluation and starting point from the\n"
    "  comparison, and runs in compare.out_dir/<file name> (reused when complete and made\n"
    "  from the same config, float model and corpus). --set data.path=my.txt compares on\n"
    "  your text; a float model of another config in out_dir is left alone (the comparison\n"
    "  gets directories of its own). Every model is exported and evaluated on the same\n"
    "  validation windows through the integer kernels; generation speed is greedy with\n"
    "  the KV cache.\n"
    "  Each distinct fine-tuning schedule of the QAT rows gets a float+ft row (the float\n"
    "  model fine-tuned in float with it), and each QAT row's delta_ft is measured against it.\n"
    "  --budget LIST  bits-per-weight budgets, e.g. 3.0,2.5 (compare.budget): for each, the\n"
    "                 compare.budget_ptq methods and the compare.budget_qat config with per-layer\n"
    "                 bits and groups chosen by sensitivity within the budget (rows METHOD+mixed)\n"
    "  Writes compare.md, compare.csv, compare.json and compare.png to compare.out_dir.\n";

static bool wants_help(int argc, char **argv) {
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return true;
    return false;
}

static const char *need_value(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) qat_fail("%s: missing value", argv[*i]);
    return argv[++*i];
}

static int cmd_train(int argc, char **argv) {
    if (wants_help(argc, argv)) return fputs(HELP_TRAIN, stdout), 0;
    dist_init(&argc, &argv); /* under mpirun: one rank of a data-parallel job */
    const char *path = NULL;
    TrainOptions opts = {0};
    Config cfg;
    config_defaults(&cfg);
    /* the file first, then the --set overrides in order */
    for (int i = 2; i < argc; i++)
        if (argv[i][0] != '-') {
            if (path) qat_fail("train: more than one config file ('%s' and '%s')", path, argv[i]);
            path = argv[i];
        } else if (!strcmp(argv[i], "--set") || !strcmp(argv[i], "--stop-after")) {
            i++;
        }
    if (!path) qat_fail("train: missing CONFIG.yaml (see qat train --help)");
    config_load_file(&cfg, path);
    bool resume = false, overwrite = false;
    for (int i = 2; i < argc; i++) resume |= !strcmp(argv[i], "--resume"), overwrite |= !strcmp(argv[i], "--overwrite");
    if (resume && overwrite) qat_fail("train: --resume and --overwrite contradict each other; give one");
    for (int i = 2; i < argc; i++) {
        if (argv[i][0] != '-') continue;
        if (!strcmp(argv[i], "--set"))
            config_set_arg(&cfg, need_value(argc, argv, &i));
        else if (!strcmp(argv[i], "--resume"))
            opts.resume = true;
        else if (!strcmp(argv[i], "--overwrite"))
            opts.overwrite = true;
        else if (!strcmp(argv[i], "--stop-after"))
            opts.stop_after = util_parse_long("--stop-after", need_value(argc, argv, &i), 1, 1000000000L);
        else
            qat_fail("train: unknown option '%s' (see qat train --help)", argv[i]);
    }
    train_run(&cfg, path, &opts);
    dist_finalize();
    return 0;
}

static int cmd_eval(int argc, char **argv) {
    if (wants_help(argc, argv)) return fputs(HELP_EVAL, stdout), 0;
    const char *ckpt = NULL;
    EvalOptions o = {0};
    bool json = false;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--data"))
            o.data = need_value(argc, argv, &i);
        else if (!strcmp(argv[i], "--top1"))
            o.top1_out = need_value(argc, argv, &i);
        else if (!strcmp(argv[i], "--act-format"))
            o.act_format = need_value(argc, argv, &i);
        else if (!strcmp(argv[i], "--int"))
            o.int_kernels = true;
        else if (!strcmp(argv[i], "--json"))
            json = true;
        else if (argv[i][0] == '-')
            qat_fail("eval: unknown option '%s' (see qat eval --help)", argv[i]);
        else if (!ckpt)
            ckpt = argv[i];
        else
            qat_fail("eval: more than one checkpoint given");
    }
    if (!ckpt) qat_fail("eval: missing CHECKPOINT (see qat eval --help)");
    if (o.top1_out) util_check_output(o.top1_out);
    EvalResult r = eval_checkpoint(ckpt, &o);
    const char *data = o.data;
    if (json) {
        cJSON *j = cJSON_CreateObject();
        json_add_num(j, "val_loss", r.val_loss, 6);
        cJSON_AddStringToObject(j, "eval", r.mode);
        cJSON_AddNumberToObject(j, "windows", r.windows);
        cJSON_AddNumberToObject(j, "block_size", r.block_size);
        cJSON_AddNumberToObject(j, "tokens", (double)r.tokens);
        cJSON_AddStringToObject(j, "kernels", r.integer ? kernel_path_name(kernel_path()) : "float");
        cJSON_AddStringToObject(j, "act_format", r.act_blocks ? "q8_0" : "none");
        json_print_line(j, stdout);
    }
    else
        printf("val_loss %.4f (%ld tokens scored in %d %s windows of up to %d from %s%s%s%s)\n", r.val_loss, r.tokens,
               r.windows, r.mode, r.block_size, data ? data : "the validation split", r.integer ? ", integer kernels " : "",
               r.integer ? kernel_path_name(kernel_path()) : "", r.act_blocks ? ", q8_0 activation blocks" : "");
    return 0;
}

static int cmd_sample(int argc, char **argv) {
    if (wants_help(argc, argv)) return fputs(HELP_SAMPLE, stdout), 0;
    const char *ckpt = NULL, *act = NULL;
    SampleOptions o = {.prompt = NULL, .tokens = 200, .temperature = 0.8f, .top_k = 0, .seed = 1337};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--prompt"))
            o.prompt = need_value(argc, argv, &i);
        else if (!strcmp(a, "--tokens"))
            o.tokens = (int)util_parse_long(a, need_value(argc, argv, &i), 0, 1000000);
        else if (!strcmp(a, "--temperature"))
            o.temperature = util_parse_float(a, need_value(argc, argv, &i), 0.0f);
        else if (!strcmp(a, "--top-k"))
            o.top_k = (int)util_parse_long(a, need_value(argc, argv, &i), 0, 1 << 20);
        else if (!strcmp(a, "--seed"))
            o.seed = (uint64_t)util_parse_long(a, need_value(argc, argv, &i), 0, 0x7fffffffffffffffL);
        else if (!strcmp(a, "--act-format"))
            act = need_value(argc, argv, &i);
        else if (a[0] == '-')
            qat_fail("sample: unknown option '%s' (see qat sample --help)", a);
        else if (!ckpt)
            ckpt = a;
        else
            qat_fail("sample: more than one checkpoint given");
    }
    if (!ckpt) qat_fail("sample: missing CHECKPOINT (see qat sample --help)");
    InferModel m;
    Config cfg;
    model_load_infer(ckpt, &m, &cfg, act);
    apply_threads(&cfg);
    sample_text(&m, &o, stdout);
    infer_free(&m);
    return 0;
}

static int cmd_export(int argc, char **argv) {
    if (wants_help(argc, argv)) return fputs(HELP_EXPORT, stdout), 0;
    const char *ckpt = NULL, *out = NULL, *format = NULL;
    bool json = false, f16 = false;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "-o"))
            out = need_value(argc, argv, &i);
        else if (!strcmp(argv[i], "--json"))
            json = true;
        else if (!strcmp(argv[i], "--format"))
            format = need_value(argc, argv, &i);
        else if (!strcmp(argv[i], "--f16"))
            f16 = true;
        else if (argv[i][0] == '-')
            qat_fail("export: unknown option '%s' (see qat export --help)", argv[i]);
        else if (!ckpt)
            ckpt = argv[i];
        else
            qat_fail("export: more than one checkpoint given");
    }
    if (!ckpt) qat_fail("export: missing CHECKPOINT (see qat export --help)");
    if (!out) qat_fail("export: missing -o MODEL.h5 (see qat export --help)");
    size_t ol = strlen(out);
    if (!format) format = ol > 5 && !strcmp(out + ol - 5, ".gguf") ? "gguf" : "h5";
    if (strcmp(format, "gguf") && strcmp(format, "h5")) qat_fail("--format: expected gguf or h5, got '%s'", format);
    if (f16 && strcmp(format, "gguf")) qat_fail("--f16: float tensors in half precision are a GGUF option (--format gguf)");
    if (!strcmp(format, "gguf")) {
        if (json) qat_fail("--json: the GGUF export prints its per-tensor report as text");
        export_checkpoint_gguf(ckpt, out, f16, stdout);
        return 0;
    }
    ExportReport r = export_checkpoint(ckpt, out);
    /* everything in the file that is not float payload counts against the quantized part */
    double over = ((double)r.file_bytes - (double)r.float_bytes) / (double)r.quant_bytes - 1.0;
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "file_bytes", (double)r.file_bytes);
        cJSON_AddNumberToObject(j, "float_bytes", (double)r.float_bytes);
        cJSON_AddNumberToObject(j, "quant_layers", r.quant_layers);
        cJSON_AddNumberToObject(j, "quant_weights", (double)r.quant_weights);
        cJSON_AddNumberToObject(j, "quant_bytes", (double)r.quant_bytes);
        json_add_num(j, "quant_overhead", over, 4);
        json_print_line(j, stdout);
    }
    else
        printf("%s: %zu bytes; float tensors %zu bytes; %d quantized layers, %zu weights: codes and scales %zu bytes "
               "(the ideal); file minus float payload is %+.1f%% of ideal\n",
               out, r.file_bytes, r.float_bytes, r.quant_layers, r.quant_weights, r.quant_bytes, 100.0 * over);
    return 0;
}

static int cmd_ptq(int argc, char **argv) {
    if (wants_help(argc, argv)) return fputs(HELP_PTQ, stdout), 0;
    const char *ckpt = NULL, *out = NULL;
    bool json = false;
    char **rest = xmalloc((size_t)argc * sizeof(char *)); /* the method options, for ptq_options_parse */
    int n_rest = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-o")) out = need_value(argc, argv, &i);
        else if (!strcmp(a, "--json")) json = true;
        else if (a[0] != '-' && (strncmp(argv[i - 1], "--", 2) || ptq_option_is_flag(argv[i - 1]))) {
            /* a word that is not the value of a --option */
            if (ckpt) qat_fail("ptq: more than one checkpoint given ('%s' and '%s')", ckpt, a);
            ckpt = a;
        } else rest[n_rest++] = argv[i];
    }
    bool has_method = false;
    for (int i = 0; i < n_rest; i++) has_method |= !strcmp(rest[i], "--method");
    if (!has_method) qat_fail("ptq: missing --method M (rtn, gptq, awq, smoothquant or outlier; see qat ptq --help)");
    PtqOptions o;
    ptq_options_parse(&o, n_rest, rest, "ptq");
    free(rest);
    if (!ckpt) qat_fail("ptq: missing CHECKPOINT (see qat ptq --help)");
    if (!out) qat_fail("ptq: missing -o OUT.h5 (see qat ptq --help)");
    PtqReport *r = xmalloc(sizeof *r);
    o.log = json ? stderr : stdout;
    ptq_checkpoint(ckpt, &o, out, r);
    double e = 0.0, e_rtn = 0.0;
    for (int k = 0; k < r->n; k++)
        if (!isnan(r->layers[k].err)) e += r->layers[k].err, e_rtn += r->layers[k].err_rtn;
    char desc[512];
    ptq_describe(&o, desc, sizeof desc);
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "method", o.method);
        cJSON_AddStringToObject(j, "describe", desc);
        json_add_num(j, "seconds", r->seconds, 3);
        cJSON_AddNumberToObject(j, "calib_tokens", (double)r->calib_tokens);
        cJSON_AddNumberToObject(j, "err", e);
        cJSON_AddNumberToObject(j, "err_rtn", e_rtn);
        cJSON *layers = cJSON_AddArrayToObject(j, "layers");
        for (int k = 0; k < r->n; k++) {
            const PtqLayerReport *l = &r->layers[k];
            cJSON *x = cJSON_CreateObject();
            cJSON_AddStringToObject(x, "name", l->name);
            /* null: a layer the method left alone */
            if (isnan(l->err)) cJSON_AddNullToObject(x, "err");
            else cJSON_AddNumberToObject(x, "err", l->err);
            if (isnan(l->err_rtn)) cJSON_AddNullToObject(x, "err_rtn");
            else cJSON_AddNumberToObject(x, "err_rtn", l->err_rtn);
            if (!strcmp(o.method, "awq") || !strcmp(o.method, "smoothquant")) json_add_num(x, "alpha", l->awq_alpha, 3);
            if (!strcmp(o.method, "outlier")) cJSON_AddNumberToObject(x, "outliers", l->outliers);
            cJSON_AddItemToArray(layers, x);
        }
        json_print_line(j, stdout);
    } else {
        printf("%s: %s\n%-22s %14s %14s %8s\n", out, desc, "layer", "err (RTN)", "err", "ratio");
        for (int k = 0; k < r->n; k++) {
            const PtqLayerReport *l = &r->layers[k];
            printf("%-22s %14.6g %14.6g %8.3f", l->name, l->err_rtn, l->err, l->err / l->err_rtn);
            if (!strcmp(o.method, "awq") || !strcmp(o.method, "smoothquant")) printf("  alpha %.2f", l->awq_alpha);
            if (!strcmp(o.method, "outlier")) printf("  %d float features", l->outliers);
            printf("\n");
        }
        printf("output error (mean squared per calibration token, summed over layers): %.6g vs RTN %.6g (%.3f); "
               "%ld calibration tokens, %.2f s\n",
               e, e_rtn, e / e_rtn, r->calib_tokens, r->seconds);
    }
    free(r);
    return 0;
}

static int cmd_compare(int argc, char **argv) {
    if (wants_help(argc, argv)) return fputs(HELP_COMPARE, stdout), 0;
    const char *path = NULL;
    Config cfg;
    config_defaults(&cfg);
    for (int i = 2; i < argc; i++)
        if (argv[i][0] != '-') {
            if (path) qat_fail("compare: more than one config file ('%s' and '%s')", path, argv[i]);
            path = argv[i];
        } else if (!strcmp(argv[i], "--set") || !strcmp(argv[i], "--budget")) {
            i++;
        } else {
            qat_fail("compare: unknown option '%s' (see qat compare --help)", argv[i]);
        }
    if (!path) qat_fail("compare: missing CONFIG.yaml (see qat compare --help)");
    config_load_file(&cfg, path);
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "--set")) config_set_arg(&cfg, need_value(argc, argv, &i));
        else if (!strcmp(argv[i], "--budget")) config_set(&cfg, "compare.budget", need_value(argc, argv, &i), "--budget");
    compare_run(&cfg, path);
    return 0;
}

static const char *HELP_IMPORT =
    "usage: qat import MODEL.bin --tokenizer TOKENIZER.bin -o FLOAT.h5\n"
    "       qat import MODEL.gguf -o FLOAT.h5\n"
    "  MODEL.bin: a llama2.c checkpoint (legacy format: its header, then float32 weights;\n"
    "  a negative vocab_size marks an untied classifier); TOKENIZER.bin: llama2.c's\n"
    "  tokenizer.bin of the same vocab_size. MODEL.gguf: GGUF v2 or v3 of architecture\n"
    "  llama (SentencePiece vocabulary) or gpt2 (qat's byte-level one); tensors F32, F16,\n"
    "  BF16, Q8_0, Q4_0 or Q4_1, dequantized. Writes an ordinary float checkpoint with\n"
    "  the vocabulary stored in it.\n";

static int cmd_import(int argc, char **argv) {
    if (wants_help(argc, argv)) return fputs(HELP_IMPORT, stdout), 0;
    const char *in = NULL, *tok = NULL, *out = NULL;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--tokenizer")) tok = need_value(argc, argv, &i);
        else if (!strcmp(argv[i], "-o")) out = need_value(argc, argv, &i);
        else if (argv[i][0] == '-' || in) qat_fail("import: unexpected argument '%s' (see qat import --help)", argv[i]);
        else in = argv[i];
    }
    if (!in || !out) qat_fail("import: needs MODEL and -o FLOAT.h5 (see qat import --help)");
    bool gguf = gguf_is_file(in);
    size_t nl = strlen(in);
    if (!gguf && nl > 5 && !strcmp(in + nl - 5, ".gguf")) qat_fail("%s: not a GGUF file (no GGUF magic)", in);
    if (gguf && tok) qat_fail("%s: --tokenizer: a GGUF file carries its own vocabulary", in);
    if (!gguf && !tok) qat_fail("%s: import: a llama2.c model needs its --tokenizer TOKENIZER.bin", in);
    if (!strcmp(in, out) || (tok && !strcmp(tok, out))) qat_fail("%s: -o names an input file; choose another", out);
    Config cfg;
    config_defaults(&cfg);
    GPT g;
    Vocab v;
    if (gguf) {
        gguf_load_gpt(in, &g, &v, &cfg, true);
    } else {
        llama2c_load_model(in, &g, &cfg);
        llama2c_load_tokenizer(tok, g.cfg.vocab_size, &v);
    }
    config_validate(&cfg, in);
    ckpt_save(out, &cfg, &v, &g, NULL, 0, NULL, NULL);
    printf("%s: %s, %d layers, width %d, %d heads (%d kv), hidden %d, context %d, vocab %d (%s), "
           "%zu parameters, %s head -> %s\n",
           in, g.cfg.arch == ARCH_LLAMA ? "llama" : "gpt", g.cfg.n_layer, g.cfg.n_embd, g.cfg.n_head, g.cfg.n_kv_head, g.cfg.hidden, g.cfg.block_size,
           g.cfg.vocab_size, v.spm ? "SentencePiece" : "bytes", g.params.numel, g.cfg.untied_head ? "untied" : "tied", out);
    vocab_free(&v);
    gpt_free(&g);
    return 0;
}

/* The main job of ./quickstart: a small model on a corpus that Debian's
 * fortunes package installs, so it needs nothing outside the machine. */
/* qat demo (./quickstart's main job): the product end to end on the fortunes
 * text, from configs/demo/ (copy and edit them): the float model, qat
 * compare (RTN, GPTQ, AWQ and QAT at int8 and int4 g32, every row exported
 * and scored on the integer kernels), then the best int4 model as qat's
 * deployable file and as a GGUF, its integer-kernel loss beside the
 * fake-quant one, a sample from it, and what to run next. */
#define DEMO_CONFIG "configs/demo/compare.yaml"
#define DEMO_DIR "runs/demo"

static int cmd_demo(int argc, char **argv) {
    if (wants_help(argc, argv))
        return printf("usage: qat demo\n  Runs qat compare on %s (the float model, RTN, GPTQ, AWQ and QAT at int8 and "
                      "int4 g32),\n  exports the best int4 model to %s/model-int4.h5 and .gguf, evaluates it on the "
                      "integer kernels\n  and samples from it. Run it from qat's folder (./quickstart does).\n",
                      DEMO_CONFIG, DEMO_DIR), 0;
    for (int i = 2; i < argc; i++) qat_fail("demo: unexpected argument '%s' (qat demo takes none)", argv[i]);
    if (access(DEMO_CONFIG, R_OK) != 0)
        qat_fail("demo: %s: not found; run qat demo from qat's folder (./quickstart does)", DEMO_CONFIG);
    Config cfg;
    config_defaults(&cfg);
    config_load_file(&cfg, DEMO_CONFIG);
    printf("== qat demo: QAT against PTQ on %s, then a deployable int4 model ==\n", cfg.data.path);
    printf("== 1/4 qat compare %s (the table follows the runs) ==\n", DEMO_CONFIG);
    fflush(stdout);
    CompareRow *rows;
    int n = compare_run_rows(&cfg, DEMO_CONFIG, &rows);
    /* the best int4 row (lowest loss, measured on the integer kernels) */
    int best = -1;
    for (int i = 0; i < n; i++)
        if (rows[i].w_bits == 4 && rows[i].a_bits == 32 && rows[i].model[0] &&
            (best < 0 || rows[i].val_loss < rows[best].val_loss))
            best = i;
    if (best < 0) qat_fail("demo: %s has no int4 row", DEMO_CONFIG);
    const CompareRow *r = &rows[best];
    /* the training curves: the float run and the QAT runs fine-tuned from it */
    const char *curves[8];
    static char dirs[8][CONFIG_PATH_MAX + 256];
    int nc = 0;
    for (int i = 0; i < n && nc < 8; i++) {
        if (i > 0 && strncmp(rows[i].method, "qat", 3)) continue; /* row 0: the float model */
        snprintf(dirs[nc], sizeof dirs[0], "%s", rows[i].ckpt);
        char *slash = strrchr(dirs[nc], '/');
        if (slash) *slash = '\0', curves[nc] = dirs[nc], nc++;
    }
    FILE *quiet = xfopen("/dev/null", "w");
    plot_run_dirs(curves, nc, DEMO_DIR "/loss.png", "training curves: the float model, then QAT fine-tuning from it", quiet);
    fclose(quiet);
    printf("== 2/4 the best int4 model: %s, val loss %.4f (float %.4f) ==\n", r->method, r->val_loss, rows[0].val_loss);
    char h5[] = DEMO_DIR "/model-int4.h5", gg[] = DEMO_DIR "/model-int4.gguf";
    ExportReport er = export_checkpoint(r->ckpt, h5);
    printf("%s: %zu bytes (%d int4 layers; %s)\n", h5, er.file_bytes, er.quant_layers, r->ckpt);
    char *rep = NULL;
    size_t rlen = 0;
    FILE *mem = open_memstream(&rep, &rlen);
    if (!mem) qat_fail("demo: open_memstream failed");
    export_checkpoint_gguf(r->ckpt, gg, false, mem);
    fclose(mem);
    /* the report's last line: the file's bytes and how many tensors are in llama.cpp's blocks */
    while (rlen && rep[rlen - 1] == '\n') rep[--rlen] = '\0';
    char *last = strrchr(rep, '\n');
    printf("%s: %s (llama.cpp's gpt2 architecture)\n", gg, last ? last + 1 : rep);
    free(rep);
    printf("== 3/4 the exported model on the integer kernels ==\n");
    EvalResult ef = eval_checkpoint(r->ckpt, NULL), ei = eval_checkpoint(h5, NULL);
    printf("fake quantization (training's forward): %.6f\ninteger kernels (%s):       %.6f  (%ld tokens)\n",
           ef.val_loss, h5, ei.val_loss, ei.tokens);
    printf("== 4/4 a sample from %s ==\n", h5);
    fflush(stdout);
    char *sample_argv[] = {argv[0], "sample", h5, "--tokens", "300"};
    cmd_sample(5, sample_argv);
    char f1[CONFIG_PATH_MAX + 64], f2[CONFIG_PATH_MAX + 64];
    snprintf(f1, sizeof f1, "%s/compare.md, .csv, .json, .png", cfg.compare.out_dir);
    snprintf(f2, sizeof f2, "%s/layer_errors.png, .csv", cfg.compare.out_dir);
    printf("\n== what you got ==\n");
    printf("  %-48s %s\n", f1, "every method's loss, size and speed; the plot");
    printf("  %-48s %s\n", f2, "each Linear's output error per method: where bits matter");
    printf("  %-48s %s\n", DEMO_DIR "/loss.png", "training curves (qat plot RUN_DIR...)");
    printf("  %-48s %s\n", h5, "the best int4 model, qat's deployable file");
    printf("  %-48s %s\n", gg, "the same for llama.cpp (llama-cli -m, llama-perplexity)");
    char runs_line[1024];
    int rk = snprintf(runs_line, sizeof runs_line, "%s", curves[0]);
    for (int i = 1; i < nc && rk < (int)sizeof runs_line - 1; i++)
        rk += snprintf(runs_line + rk, sizeof runs_line - (size_t)rk, ", %s", curves[i]);
    printf("  %s\n  %-48s %s\n", runs_line, "", "the training runs (metrics.jsonl, checkpoint.h5)");
    printf("== next ==\n"
           "  your text:  build/qat compare " DEMO_CONFIG " --set data.path=my.txt   (every row follows it)\n"
           "  one run:    build/qat train configs/demo/qat-int4-g32.yaml, build/qat export CKPT -o model.h5\n"
           "  your model: build/qat import model.gguf -o float.h5 (or llama2.c's .bin --tokenizer tok.bin), then\n"
           "              qat compare with compare.float_checkpoint: float.h5 (configs/compare-stories260K.yaml)\n"
           "  look:       build/qat inspect %s; docs/tutorial.md, README.md, configs/README.md\n", h5);
    free(rows);
    return 0;
}

static const char *HELP_PLOT =
    "usage: qat plot RUN_DIR... [-o FILE.png] [--title TEXT]\n"
    "  Training curves of one or more run directories (qat train's out_dir) on one figure:\n"
    "  training loss of each logged step (thin), validation loss (dots), learning rate\n"
    "  (dotted, on the right axis), against step; the float run and the QAT runs\n"
    "  fine-tuned from it, say.\n"
    "  -o FILE.png    where to write it (default RUN_DIR/loss.png of the first run)\n"
    "  --title TEXT   the figure's title (default: the run directories)\n";

static int cmd_plot(int argc, char **argv) {
    if (wants_help(argc, argv)) return fputs(HELP_PLOT, stdout), 0;
    const char *out = NULL, *title = NULL;
    const char **dirs = xmalloc((size_t)argc * sizeof(char *));
    int n = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "-o")) out = need_value(argc, argv, &i);
        else if (!strcmp(argv[i], "--title")) title = need_value(argc, argv, &i);
        else if (argv[i][0] == '-') qat_fail("plot: unknown option '%s' (see qat plot --help)", argv[i]);
        else dirs[n++] = argv[i];
    }
    if (!n) qat_fail("plot: missing RUN_DIR (see qat plot --help)");
    char def[4096];
    if (!out) {
        xsnprintf(def, sizeof def, "run directory", "%s/loss.png", dirs[0]);
        out = def;
    }
    plot_run_dirs((const char *const *)dirs, n, out, title, stdout);
    printf("wrote %s\n", out);
    free(dirs);
    return 0;
}

static const char *HELP_INSPECT =
    "usage: qat inspect FILE [--json]\n"
    "  Describes any file qat reads or writes: a training checkpoint (float, QAT or PTQ), an\n"
    "  exported MODEL.h5, a GGUF file, a llama2.c model or tokenizer.bin. Architecture and\n"
    "  vocab; every tensor with its shape, storage type, quantization (bits, granularity, group,\n"
    "  symmetry; for a checkpoint the bits per weight it deploys at), bytes and bits per weight;\n"
    "  totals per type; and the checksums, every HDF5 dataset's CRC-32 recomputed (a corrupt\n"
    "  file fails naming the dataset). GGUF metadata is listed key by key.\n"
    "  --json      the same as one JSON object\n";

static int cmd_inspect(int argc, char **argv) {
    if (wants_help(argc, argv)) return fputs(HELP_INSPECT, stdout), 0;
    const char *path = NULL;
    bool json = false;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = true;
        else if (argv[i][0] == '-' || path) qat_fail("inspect: unexpected argument '%s' (see qat inspect --help)", argv[i]);
        else path = argv[i];
    }
    if (!path) qat_fail("inspect: missing FILE (see qat inspect --help)");
    inspect_file(path, json, stdout);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return QAT_EXIT_BADINPUT;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) return usage(stdout), 0;
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("qat %s (commit %s), kernels %s, %s\n", QAT_VERSION, QAT_GIT, kernel_path_name(kernel_path()),
#ifdef QAT_MPI
               "MPI data parallelism"
#else
               "without MPI"
#endif
        );
        return 0;
    }
    /* N copies of any other command would write the same files N times */
    if (strcmp(cmd, "train")) dist_refuse_launch(cmd);
    if (!strcmp(cmd, "train")) return cmd_train(argc, argv);
    if (!strcmp(cmd, "eval")) return cmd_eval(argc, argv);
    if (!strcmp(cmd, "sample")) return cmd_sample(argc, argv);
    if (!strcmp(cmd, "inspect")) return cmd_inspect(argc, argv);
    if (!strcmp(cmd, "plot")) return cmd_plot(argc, argv);
    if (!strcmp(cmd, "demo")) return cmd_demo(argc, argv);
    if (!strcmp(cmd, "import")) return cmd_import(argc, argv);
    if (!strcmp(cmd, "export")) return cmd_export(argc, argv);
    if (!strcmp(cmd, "ptq")) return cmd_ptq(argc, argv);
    if (!strcmp(cmd, "compare")) return cmd_compare(argc, argv);
    if (!strcmp(cmd, "config-keys")) {
        if (argc > 2) qat_fail("config-keys: unexpected argument '%s' (it takes none)", argv[2]);
        return config_print_keys(stdout), 0;
    }
    fprintf(stderr, "qat: unknown command '%s' (try qat --help)\n", cmd);
    return QAT_EXIT_BADINPUT;
}
