/* bench_generate.c: generation speed of qat's inference engine on a GPT of
 * about 20M parameters with random weights: fp32 (sgemv), int8 per-channel
 * and int4 g32 weights (the integer kernels), and the table matrices of the
 * same size (nf4 and kmeans4 g32, iq4_nl: 4-bit indices looked up among 16
 * levels), same prompt, greedy, KV cache.
 *
 *   bench_generate [--layers 6 --heads 8 --embd 512 --block 256 --vocab 256]
 *                  [--prompt 16] [--tokens 128] [--repeats 5]
 *
 * tokens/s counts the generated tokens after the prompt's forward (timed
 * apart as prefill), median of the repeats; the last line is JSON.
 * bench/bench_generate.py runs this beside PyTorch (fp32 and dynamic int8). */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/infer.h"
#include "train/config.h"
#include "util/util.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int argmax(const float *v, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

int main(int argc, char **argv) {
    int L = 6, H = 8, C = 512, T = 256, V = 256, P = 16, N = 128, R = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        int v = atoi(argv[i + 1]);
        if (!strcmp(argv[i], "--layers")) L = v;
        else if (!strcmp(argv[i], "--heads")) H = v;
        else if (!strcmp(argv[i], "--embd")) C = v;
        else if (!strcmp(argv[i], "--block")) T = v;
        else if (!strcmp(argv[i], "--vocab")) V = v;
        else if (!strcmp(argv[i], "--prompt")) P = v;
        else if (!strcmp(argv[i], "--tokens")) N = v;
        else if (!strcmp(argv[i], "--repeats")) R = v;
        else {
            fprintf(stderr, "bench_generate: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (P + N > T || P < 1 || N < 1 || R < 1 || R > 64) {
        fprintf(stderr, "bench_generate: need 1 <= prompt, tokens; prompt + tokens <= block; repeats 1..64\n");
        return 2;
    }
    enum { NM = 6 };
    static const char *modes[NM] = {"fp32", "int8", "int4", "nf4", "kmeans4", "iq4_nl"};
    static const char *quant[NM] = {"", "quant: {weight: {bits: 8, granularity: channel}}\n",
                                    "quant: {weight: {bits: 4, granularity: group, group_size: 32}}\n",
                                    "quant: {weight: {bits: 4, granularity: group, group_size: 32, codebook: nf}}\n",
                                    "quant: {weight: {bits: 4, granularity: group, group_size: 32, codebook: kmeans}}\n",
                                    "quant: {weight: {bits: 4}, format: iq4_nl}\n"};
    GPTConfig gc = {.vocab_size = V, .n_layer = L, .n_head = H, .n_embd = C, .block_size = T};
    Vocab vocab;
    vocab_build_byte(&vocab);
    vocab.size = V;
    double med[NM] = {0}, pre[NM] = {0};
    long params = 0;
    printf("qat generation: %d layers, %d heads, width %d, vocab %d, prompt %d, %d new tokens, %d threads, kernels %s\n", L,
           H, C, V, P, N, omp_get_max_threads(), kernel_path_name(kernel_path()));
    printf("%-7s %12s %10s %10s %10s %12s\n", "mode", "weights MiB", "tok/s", "min", "max", "prefill ms");
    for (int k = 0; k < NM; k++) {
        Config cfg;
        config_defaults(&cfg);
        if (*quant[k]) config_load_string(&cfg, quant[k], "bench");
        GPT g;
        gpt_build(&g, &gc, &cfg.quant, "bench");
        Rng rng;
        rng_seed(&rng, 1);
        gpt_init_weights(&g, &rng);
        gpt_quant_init_scales(&g); /* kmeans: the tables fitted to these weights */
        params = 0;
        for (int i = 0; i < g.params.n; i++)
            if (!g.params.list[i]->quant_state) params += (long)g.params.list[i]->numel;
        InferModel m;
        infer_from_gpt(&m, &g, &vocab, "");
        gpt_free(&g);
        double mib = (infer_float_bytes(&m) + infer_quant_bytes(&m)) / 1048576.0;
        InferState s;
        infer_state_init(&s, &m, P);
        int32_t *tok = xmalloc((size_t)(P + N) * sizeof(int32_t));
        for (int i = 0; i < P; i++) tok[i] = (i * 37 + 11) % V;
        double tps[64], pms[64];
        for (int r = -1; r < R; r++) { /* r = -1: warm-up */
            s.pos = 0;
            double t0 = now_seconds();
            const float *lg = infer_forward(&m, &s, tok, P);
            tok[P] = argmax(lg + (size_t)(P - 1) * V, V);
            double t1 = now_seconds();
            for (int i = 0; i < N; i++) {
                lg = infer_forward(&m, &s, tok + P + i, 1);
                if (P + i + 1 < P + N) tok[P + i + 1] = argmax(lg, V);
            }
            double t2 = now_seconds();
            if (r >= 0) tps[r] = N / (t2 - t1), pms[r] = 1e3 * (t1 - t0);
        }
        qsort(tps, (size_t)R, sizeof(double), cmp_double);
        qsort(pms, (size_t)R, sizeof(double), cmp_double);
        med[k] = tps[R / 2], pre[k] = pms[R / 2];
        printf("%-7s %12.1f %10.1f %10.1f %10.1f %12.1f\n", modes[k], mib, med[k], tps[0], tps[R - 1], pre[k]);
        fflush(stdout);
        free(tok);
        infer_state_free(&s);
        infer_free(&m);
    }
    printf("int8 / fp32 = %.2fx, int4 / fp32 = %.2fx; tables / int4: nf4 %.2fx, kmeans4 %.2fx, iq4_nl %.2fx\n",
           med[1] / med[0], med[2] / med[0], med[3] / med[2], med[4] / med[2], med[5] / med[2]);
    printf("{\"bench\":\"qat_generate\",\"threads\":%d,\"kernels\":\"%s\",\"params\":%ld,\"results\":{",
           omp_get_max_threads(), kernel_path_name(kernel_path()), params);
    for (int k = 0; k < NM; k++)
        printf("%s\"%s\":{\"tok_s\":%.2f,\"prefill_ms\":%.2f}", k ? "," : "", modes[k], med[k], pre[k]);
    printf("}}\n");
    return 0;
}
