/* test_llama.c: a real pretrained Llama-architecture model, Karpathy's
 * stories260K (../shared/data/stories260K: the llama2.c checkpoint and
 * tokenizer, and the same weights as a GGUF file written by llama.cpp's
 * tooling), imported by qat and held against llama.cpp itself
 * (node-llama-cpp 3.21.1's prebuilt libraries through
 * tests/llamacpp/eval.mjs, F32 KV cache) on the TinyStories sample:
 *  - both tokenizers give the same ids for the whole sample;
 *  - the next-token log-probabilities of the first 256 positions agree
 *    within 0.02 and the mean NLL over every window within 1e-3;
 *  - greedy generation of 64 tokens is the same. */
#include <cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

static char *g_dir, *g_data, *g_ckpt;
static char *shared(const char *name) { return test_path(g_data, name); }

static void setup(void) {
    g_dir = test_tmpdir();
    g_data = test_path(getenv("QAT_SOURCE_DIR"), "../shared/data/stories260K");
    char args[4096];
    g_ckpt = test_path(g_dir, "s260.h5");
    snprintf(args, sizeof args, "import %s --tokenizer %s -o %s", shared("stories260K.bin"), shared("tok512.bin"), g_ckpt);
    test_qat(args);
}
TestSuite(llama, .init = setup, .timeout = 600);

/* The sample as qat's tokenizer makes it: BOS, then the BPE ids. */
static int32_t *qat_tokens(size_t *n) {
    Config cfg;
    Vocab v;
    ckpt_load_meta(g_ckpt, &cfg, &v, NULL);
    size_t len;
    char *text = xread_file(shared("tinystories-valid-sample.txt"), &len);
    int32_t *ids = vocab_encode(&v, (const uint8_t *)text, len, n, "sample");
    free(text);
    vocab_free(&v);
    return ids;
}

Test(llama, stories260K_matches_llama_cpp_on_the_tinystories_sample) {
    cJSON *j = test_llama("doc", shared("stories260K.gguf"), shared("tinystories-valid-sample.txt"), 512);
    /* the same ids from both tokenizers, for the whole sample */
    size_t n;
    int32_t *ids = qat_tokens(&n);
    cJSON *theirs = cJSON_GetObjectItem(j, "ids");
    cr_assert_eq((size_t)cJSON_GetArraySize(theirs), n, "llama.cpp made %d tokens, qat %zu", cJSON_GetArraySize(theirs),
                 n);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(cJSON_GetArrayItem(theirs, (int)i)->valueint, ids[i], "token %zu: llama.cpp %d, qat %d", i,
                     cJSON_GetArrayItem(theirs, (int)i)->valueint, ids[i]);
    /* per-position log-probabilities of the first window's first 256 */
    GPT g;
    Config cfg;
    Vocab v;
    model_load(g_ckpt, &g, &cfg, &v);
    Tape t;
    tape_init(&t, 64u << 20);
    tape_set_grad(&t, false);
    const int P = 256, V = g.cfg.vocab_size;
    Tensor *lg = gpt_forward(&g, &t, ids, 1, P);
    cJSON *lp = cJSON_GetObjectItem(j, "lp");
    cr_assert_geq(cJSON_GetArraySize(lp), P);
    double worst = 0.0;
    for (int p = 0; p < P; p++) {
        const float *r = lg->data + (size_t)p * V;
        double mx = r[0], e = 0.0;
        for (int k = 1; k < V; k++) mx = fmax(mx, r[k]);
        for (int k = 0; k < V; k++) e += exp(r[k] - mx);
        double ours = r[ids[p + 1]] - mx - log(e), them = cJSON_GetArrayItem(lp, p)->valuedouble;
        worst = fmax(worst, fabs(ours - them));
        cr_assert(fabs(ours - them) < 0.02, "position %d: log p %.5f (qat) vs %.5f (llama.cpp)", p, ours, them);
    }
    /* mean NLL over the whole sample, qat eval's windows */
    char args[4096];
    snprintf(args, sizeof args, "eval %s --data %s --json", g_ckpt, shared("tinystories-valid-sample.txt"));
    cJSON *e = cJSON_Parse(test_qat(args));
    double ours = cJSON_GetObjectItem(e, "val_loss")->valuedouble, them = cJSON_GetObjectItem(j, "nll")->valuedouble;
    cr_assert_eq(cJSON_GetObjectItem(e, "tokens")->valueint, cJSON_GetObjectItem(j, "tokens")->valueint);
    cr_assert(fabs(ours - them) < 1e-3, "mean NLL %.6f (qat) vs %.6f (llama.cpp)", ours, them);
    printf("stories260K: %zu tokens; worst log-prob gap %.2e over %d positions; mean NLL qat %.6f, llama.cpp %.6f\n", n,
           worst, P, ours, them);
    cJSON_Delete(e);
    cJSON_Delete(j);
    tape_free(&t);
    gpt_free(&g);
    vocab_free(&v);
    free(ids);
}

Test(llama, stories260K_greedy_generation_is_llama_cpps) {
    const char *prompt = "Once upon a time";
    cJSON *j = test_llama("greedy-doc", shared("stories260K.gguf"), prompt, 64);
    cJSON *ids = cJSON_GetObjectItem(j, "ids");
    cr_assert_eq(cJSON_GetArraySize(ids), 64);
    /* llama.cpp's tokens, spelled by qat's vocabulary, after the prompt */
    Config cfg;
    Vocab v;
    ckpt_load_meta(g_ckpt, &cfg, &v, NULL);
    char want[8192], piece[1100];
    size_t k = (size_t)snprintf(want, sizeof want, "%s", prompt);
    for (int i = 0; i < 64; i++) {
        size_t len = vocab_decode(&v, cJSON_GetArrayItem(ids, i)->valueint, piece, sizeof piece);
        cr_assert_lt(k + len, sizeof want);
        memcpy(want + k, piece, len);
        k += len;
    }
    want[k] = '\0';
    vocab_free(&v);
    char args[4096];
    snprintf(args, sizeof args, "sample %s --prompt '%s' --tokens 64 --temperature 0", g_ckpt, prompt);
    char *got = test_qat(args);
    size_t gl = strlen(got);
    if (gl && got[gl - 1] == '\n') got[--gl] = '\0';
    cr_assert_str_eq(got, want, "qat sample:\n%s\nllama.cpp:\n%s", got, want);
    cJSON_Delete(j);
}
