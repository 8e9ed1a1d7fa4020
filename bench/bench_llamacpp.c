/* bench_llamacpp.c: qat's inference engine on the very GGUF files llama.cpp
 * runs, for bench/bench_llamacpp.py, which times llama.cpp on the same files
 * (bench/llamacpp_speed.mjs) and prints both side by side.
 *
 *   bench_llamacpp write DIR [--layers 6 --heads 8 --embd 512 --block 1024]
 *     a GPT of about 20M parameters with random weights (vocab 256) as
 *     DIR/f32.gguf, DIR/q8_0.gguf, DIR/q4_0.gguf and DIR/iq4_nl.gguf (qat export's writer;
 *     the blocks are ggml's own quantization of the same float weights)
 *   bench_llamacpp run FILE.gguf [--prompt 512] [--tokens 128] [--repeats 5] [--act-format q8_0|none]
 *     prompt processing (one forward of the prompt) and generation (tokens
 *     one at a time after it, greedy, KV cache) in tokens/s, medians of the
 *     repeats after a warm-up; one JSON line. The file is loaded as qat eval
 *     and qat sample load it: block layers as llama.cpp runs them,
 *     activations in q8_0 blocks against the weight blocks on the integer
 *     dot kernels; --act-format none gives them float activations.
 *
 * Threads: OMP_NUM_THREADS. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/gguf_model.h"
#include "infer/infer.h"
#include "train/config.h"
#include "train/trainer.h"
#include "util/util.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int opt(int argc, char **argv, const char *name, int def) {
    for (int i = 3; i + 1 < argc; i++)
        if (!strcmp(argv[i], name)) return atoi(argv[i + 1]);
    return def;
}

static int write_models(int argc, char **argv) {
    const char *dir = argv[2];
    GPTConfig gc = {.vocab_size = 256, .n_layer = opt(argc, argv, "--layers", 6), .n_head = opt(argc, argv, "--heads", 8),
                    .n_embd = opt(argc, argv, "--embd", 512), .block_size = opt(argc, argv, "--block", 1024)};
    Vocab v;
    vocab_build_byte(&v);
    static const char *fmts[] = {"f32", "q8_0", "q4_0", "iq4_nl"};
    for (int k = 0; k < 4; k++) {
        Config cfg;
        config_defaults(&cfg);
        char yaml[128], path[4096];
        snprintf(yaml, sizeof yaml, "quant: {format: %s}\n", fmts[k]);
        if (k) config_load_string(&cfg, yaml, "bench");
        GPT g;
        gpt_build(&g, &gc, &cfg.quant, "bench");
        Rng rng;
        rng_seed(&rng, 1); /* the same float weights for every file */
        gpt_init_weights(&g, &rng);
        snprintf(path, sizeof path, "%s/%s.gguf", dir, fmts[k]);
        FILE *devnull = xfopen("/dev/null", "w");
        gguf_export_gpt(&g, &v, "bench", path, false, devnull);
        fclose(devnull);
        gpt_free(&g);
        printf("%s\n", path);
    }
    return 0;
}

static int run_model(int argc, char **argv) {
    int P = opt(argc, argv, "--prompt", 512), N = opt(argc, argv, "--tokens", 128), R = opt(argc, argv, "--repeats", 5);
    if (R < 1 || R > 64 || P < 1 || N < 1) qat_fail("bench_llamacpp: need prompt, tokens >= 1 and repeats 1..64");
    InferModel m;
    Config cfg;
    const char *act_format = NULL;
    for (int i = 3; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--act-format")) act_format = argv[i + 1];
    model_load_infer(argv[2], &m, &cfg, act_format);
    bool act = false;
    for (int i = 0; i < m.n_q; i++) act |= m.qm[i].act_q8_0;
    int V = m.cfg.vocab_size;
    if (P + N > m.cfg.block_size) qat_fail("bench_llamacpp: prompt + tokens exceed the context %d", m.cfg.block_size);
    InferState s;
    infer_state_init(&s, &m, P);
    int32_t *tok = xmalloc((size_t)(P + N) * sizeof(int32_t));
    for (int i = 0; i < P; i++) tok[i] = (i * 37 + 11) % V;
    double pp[64], tg[64];
    for (int r = -1; r < R; r++) { /* r = -1: warm-up */
        s.pos = 0;
        double t0 = now_seconds();
        const float *lg = infer_forward(&m, &s, tok, P);
        double t1 = now_seconds();
        for (int i = 0; i < N; i++) {
            const float *row = i ? lg : lg + (size_t)(P - 1) * V;
            int best = 0;
            for (int j = 1; j < V; j++)
                if (row[j] > row[best]) best = j;
            tok[P + i] = best;
            lg = infer_forward(&m, &s, tok + P + i, 1);
        }
        double t2 = now_seconds();
        if (r >= 0) pp[r] = P / (t1 - t0), tg[r] = N / (t2 - t1);
    }
    qsort(pp, (size_t)R, sizeof(double), cmp_double);
    qsort(tg, (size_t)R, sizeof(double), cmp_double);
    printf("{\"runtime\":\"qat\",\"act\":\"%s\",\"threads\":%d,\"kernels\":\"%s\",\"pp\":%.2f,\"tg\":%.2f,\"pp_min\":%.2f,\"pp_max\":%.2f,"
           "\"tg_min\":%.2f,\"tg_max\":%.2f}\n",
           act ? "q8_0" : "float", omp_get_max_threads(), kernel_path_name(kernel_path()), pp[R / 2], tg[R / 2], pp[0], pp[R - 1], tg[0], tg[R - 1]);
    free(tok);
    infer_state_free(&s);
    infer_free(&m);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "write")) return write_models(argc, argv);
    if (argc >= 3 && !strcmp(argv[1], "run")) return run_model(argc, argv);
    fprintf(stderr, "usage: bench_llamacpp write DIR [--layers L --heads H --embd C --block T] | run FILE.gguf "
                    "[--prompt P --tokens N --repeats R]\n");
    return 2;
}
