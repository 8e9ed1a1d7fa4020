/* test_gguf.c: qat's GGUF export against llama.cpp itself. Models trained
 * here are exported with qat export --format gguf and loaded by the real
 * llama.cpp (node-llama-cpp 3.21.1's prebuilt libraries, through
 * tests/llamacpp/eval.mjs); its mean next-token loss over a text must be
 * qat's own evaluation of the same model, its tokenizer must give qat's ids,
 * and its greedy generation must be qat's. */
#include <cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

static char *g_dir, *g_corpus, *g_val;
static void setup(void) {
    g_dir = test_tmpdir();
    char *text = test_corpus(60000, 21);
    g_corpus = test_write(g_dir, "corpus.txt", text);
    g_val = test_write(g_dir, "val.txt", text + strlen(text) - 12000);
}
TestSuite(gguf, .init = setup, .timeout = 600);

static char *in(const char *dir, const char *name) {
    char *p = xmalloc(strlen(dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", dir, name);
    return test_keep(p);
}

/* Runs a shell command; its stdout (malloc'd, kept). */
static char *run(const char *cmd) {
    FILE *p = popen(cmd, "r");
    cr_assert(p, "cannot run %s", cmd);
    size_t cap = 1 << 16, k = 0, got;
    char *out = xmalloc(cap);
    while ((got = fread(out + k, 1, cap - 1 - k, p)) > 0)
        if ((k += got) + 1 >= cap) out = xrealloc(out, cap *= 2);
    out[k] = '\0';
    int st = pclose(p);
    cr_assert_eq(st, 0, "failed (%d): %s\n%s", st, cmd, out);
    return test_keep(out);
}

static cJSON *llama(const char *mode, const char *model, const char *arg, int n) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "node %s/tests/llamacpp/eval.mjs %s %s '%s' %d", getenv("QAT_SOURCE_DIR"), mode, model, arg,
             n);
    char *out = run(cmd);
    cJSON *j = cJSON_Parse(out);
    cr_assert(j, "llama.cpp said: %s", out);
    return j;
}

static char *qat(const char *args) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s/qat %s", getenv("QAT_BINARY_DIR"), args);
    return run(cmd);
}

static double qat_eval(const char *ckpt) {
    char args[4096];
    snprintf(args, sizeof args, "eval %s --data %s --json", ckpt, g_val);
    cJSON *j = cJSON_Parse(qat(args));
    double v = cJSON_GetObjectItem(j, "val_loss")->valuedouble;
    cJSON_Delete(j);
    return v;
}

/* The float model: width 32 (rows of whole 32-blocks), 2 layers, context
 * 128 (the greedy test's prompt and 100 tokens fit in it); small and short,
 * because the sanitizer pass trains it unoptimised. */
static char *train_float(void) {
    char yaml[4096];
    snprintf(yaml, sizeof yaml,
             "model: {n_layer: 2, n_head: 2, n_embd: 32, block_size: 128}\n"
             "data: {path: %s}\n"
             "train: {batch_size: 16, iters: 80, lr: 3e-3, min_lr: 3e-4, warmup_iters: 10, eval_every: 80, threads: 2}\n"
             "out_dir: %s/float\n",
             g_corpus, g_dir);
    char args[4096];
    snprintf(args, sizeof args, "train %s", test_write(g_dir, "float.yaml", yaml));
    qat(args);
    return in(in(g_dir, "float"), "checkpoint.h5");
}

static char *train_qat(const char *name, const char *quant) {
    char *fl = in(in(g_dir, "float"), "checkpoint.h5"), yaml[4096], file[128], args[4096];
    snprintf(yaml, sizeof yaml,
             "model: {n_layer: 2, n_head: 2, n_embd: 32, block_size: 128}\n"
             "data: {path: %s}\n"
             "train: {batch_size: 16, iters: 12, lr: 3e-4, min_lr: 3e-4, warmup_iters: 0, eval_every: 12, threads: 2}\n"
             "quant: {%s, init_from: %s}\n"
             "out_dir: %s/%s\n",
             g_corpus, quant, fl, g_dir, name);
    snprintf(file, sizeof file, "%s.yaml", name);
    snprintf(args, sizeof args, "train %s", test_write(g_dir, file, yaml));
    qat(args);
    return in(in(g_dir, name), "checkpoint.h5");
}

static char *export_gguf(const char *ckpt, const char *name, char **report) {
    char *out = in(g_dir, name), args[4096];
    snprintf(args, sizeof args, "export %s -o %s", ckpt, out);
    *report = qat(args);
    return out;
}

/* llama.cpp's loss of model against qat's evaluation of ckpt. */
static double nll_gap(const char *ckpt, const char *model) {
    double q = qat_eval(ckpt);
    cJSON *j = llama("nll", model, g_val, 128);
    double l = cJSON_GetObjectItem(j, "nll")->valuedouble;
    int scored = cJSON_GetObjectItem(j, "tokens")->valueint;
    cJSON_Delete(j);
    cr_assert_eq(scored, 11999, "llama.cpp scored %d tokens of the 12000-byte text", scored);
    cr_log_info("%s: qat %.6f, llama.cpp %.6f, difference %+.2e", model, q, l, l - q);
    return l - q;
}

Test(gguf, f32_export_is_the_same_model_in_llama_cpp) {
    char *ck = train_float(), *rep;
    char *model = export_gguf(ck, "f32.gguf", &rep);
    cr_assert(strstr(rep, "0 tensors in blocks, 28 in float"), "%s", rep);
    /* the byte-level vocabulary: llama.cpp's tokenizer gives qat's ids */
    cJSON *j = llama("nll", model, g_val, 128);
    cJSON *ids = cJSON_GetObjectItem(j, "ids");
    Vocab v;
    Config c;
    long step;
    ckpt_load_meta(ck, &c, &v, &step);
    char *val = test_slurp(g_val, NULL);
    for (int i = 0; i < cJSON_GetArraySize(ids); i++)
        cr_assert_eq(cJSON_GetArrayItem(ids, i)->valueint, v.index[(uint8_t)val[i]], "token %d of the text", i);
    cr_assert_eq(cJSON_GetObjectItem(j, "n_tokens")->valueint, 12000, "one token per byte");
    cJSON_Delete(j);
    double back = qat_eval(model), orig = qat_eval(ck);
    cr_assert_lt(fabs(back - orig), 2e-6, "qat eval of the GGUF %.6f, of the checkpoint %.6f", back, orig);
    /* measured 2e-6 (llama.cpp's CPU path takes GELU from a half-precision table) */
    cr_assert_lt(fabs(nll_gap(ck, model)), 1e-4);
}

Test(gguf, block_formats_trained_by_qat_run_in_llama_cpp_with_the_trained_loss) {
    train_float();
    const char *fmts[] = {"q8_0", "q4_0", "q4_1"};
    for (int i = 0; i < 3; i++) {
        char quant[64], name[32], *rep;
        snprintf(quant, sizeof quant, "format: %s", fmts[i]);
        char *ck = train_qat(fmts[i], quant);
        snprintf(name, sizeof name, "%s.gguf", fmts[i]);
        char *model = export_gguf(ck, name, &rep);
        cr_assert(strstr(rep, "8 tensors in blocks"), "%s", rep);
        cr_assert(!strstr(rep, "fallback"), "%s", rep);
        /* llama.cpp also quantizes the activations (to q8_0) before each block product */
        cr_assert_lt(fabs(nll_gap(ck, model)), 1e-3, "%s", fmts[i]);
        /* and qat reads the file back: the same model, q8_0 on the integer kernels */
        double back = qat_eval(model), fq = qat_eval(ck);
        cr_assert_lt(fabs(back - fq), 2e-6, "%s: qat eval of the GGUF %.6f, of the checkpoint %.6f", fmts[i], back, fq);
    }
    /* with llama.cpp's q8_0 activations simulated, qat evaluates what llama.cpp computes */
    char *rep, *ck = train_qat("q4_0-act", "format: q4_0, act_format: q8_0");
    double gap = nll_gap(ck, export_gguf(ck, "q4_0-act.gguf", &rep));
    cr_assert_lt(fabs(gap), 2e-5, "q4_0 with act_format q8_0: %+.2e", gap);
}

Test(gguf, grids_without_a_block_type_fall_back_to_float_and_say_so) {
    train_float();
    /* int4 in groups of 16: no GGUF type; the fake-quantized weights are written in float */
    char *ck = train_qat("g16", "weight: {bits: 4, granularity: group, group_size: 16}"), *rep;
    char *model = export_gguf(ck, "g16.gguf", &rep);
    cr_assert(strstr(rep, "blk.0.attn_qkv.weight") && strstr(rep, "fallback: groups of 16 are not whole blocks of 32"),
              "%s", rep);
    cr_assert_lt(fabs(nll_gap(ck, model)), 1e-4);
    /* int4 g32 maps onto q4_0 exactly up to the half-precision scales */
    ck = train_qat("g32", "weight: {bits: 4, granularity: group, group_size: 32}");
    model = export_gguf(ck, "g32.gguf", &rep);
    cr_assert(strstr(rep, "q4_0") && strstr(rep, "scales rounded to half precision"), "%s", rep);
    cr_assert_lt(fabs(nll_gap(ck, model)), 1e-3);
}

Test(gguf, greedy_generation_is_qats_and_never_stops_on_a_character) {
    char *ck = train_float(), *rep;
    char *q8 = train_qat("gen-q8", "format: q8_0");
    const char *pairs[][2] = {{ck, export_gguf(ck, "gen.gguf", &rep)}, {q8, export_gguf(q8, "gen-q8.gguf", &rep)}};
    for (int k = 0; k < 2; k++) {
        char args[4096];
        snprintf(args, sizeof args, "sample %s --prompt 'the ' --tokens 100 --temperature 0", pairs[k][0]);
        char *ours = qat(args);
        cJSON *j = llama("greedy", pairs[k][1], "the ", 100);
        const char *theirs = cJSON_GetObjectItem(j, "text")->valuestring;
        cJSON *ids = cJSON_GetObjectItem(j, "ids");
        cr_assert_eq(cJSON_GetArraySize(ids), 100);
        Vocab v;
        Config c;
        ckpt_load_meta(pairs[k][0], &c, &v, NULL);
        for (int i = 0; i < 100; i++)
            cr_assert_lt(cJSON_GetArrayItem(ids, i)->valueint, v.size, "llama.cpp generated the end-of-text token");
        /* qat prints the prompt, then the generated text */
        cr_assert(!strncmp(ours, "the ", 4) && !strncmp(ours + 4, theirs, strlen(theirs)),
                  "%s:\nqat:   %s\nllama: %s", pairs[k][1], ours + 4, theirs);
        cJSON_Delete(j);
    }
}
