/* bench_ptq.c: how long each PTQ method takes (calibration forwards plus the
 * per-layer algorithm; loading and saving not included), on the reference
 * model (its float checkpoint and corpus) and on a GPT of about 20M
 * parameters with random weights and random calibration tokens.
 *
 *   bench_ptq [--ckpt runs/tiny-shakespeare/checkpoint.h5] [--repeats 3]
 *             [--big-seqs 128] [--skip-big]
 *
 * Medians of the repeats; the reference model calibrates on 4 batches of 32
 * windows (16,384 tokens, qat ptq's default), the 20M model on --big-seqs
 * windows of 256 tokens. The last line is JSON. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format/checkpoint.h"
#include "train/ptq_model.h"
#include "util/util.h"

static const char *METHODS[] = {"rtn --bits 4 --group 32",  "gptq --bits 4 --group 32", "gptq --bits 3 --group 32 --act-order",
                                "awq --bits 4 --group 32",  "awq --bits 4 --group channel", "smoothquant",
                                "smoothquant --alpha auto", "outlier"};
#define N_METHODS (int)(sizeof METHODS / sizeof *METHODS)

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void options_of(const char *entry, PtqOptions *o) {
    char buf[256], *argv[32];
    snprintf(buf, sizeof buf, "%s", entry);
    int argc = 0;
    for (char *t = strtok(buf, " "); t && argc < 32; t = strtok(NULL, " ")) argv[argc++] = t;
    ptq_options_parse(o, argc, argv, entry);
}

/* Median seconds of ptq_model over repeats, each on a fresh copy of the float weights. */
static double time_method(const PtqOptions *o, const GPTConfig *gc, const Params *src, const int32_t *calib, int n_seq,
                          int T, int repeats) {
    Config c;
    config_defaults(&c);
    ptq_quant_config(o, &c.quant);
    double t[16];
    for (int r = 0; r < repeats; r++) {
        GPT g;
        gpt_build(&g, gc, &c.quant, "bench");
        for (int i = 0; i < src->n; i++) {
            Tensor *d = params_find(&g.params, src->list[i]->name);
            memcpy(d->data, src->list[i]->data, src->list[i]->numel * sizeof(float));
        }
        PtqReport *rep = xmalloc(sizeof *rep);
        ptq_model(&g, o, calib, n_seq, T, rep);
        t[r] = rep->seconds;
        free(rep);
        gpt_free(&g);
    }
    qsort(t, (size_t)repeats, sizeof(double), cmp_double);
    return t[repeats / 2];
}

int main(int argc, char **argv) {
    const char *ckpt = "runs/tiny-shakespeare/checkpoint.h5";
    int repeats = 3, big_seqs = 128;
    bool skip_big = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--ckpt") && i + 1 < argc) ckpt = argv[++i];
        else if (!strcmp(argv[i], "--repeats") && i + 1 < argc) repeats = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--big-seqs") && i + 1 < argc) big_seqs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--skip-big")) skip_big = true;
        else {
            fprintf(stderr, "bench_ptq: unknown option %s (see the comment at the top of bench/bench_ptq.c)\n", argv[i]);
            return 2;
        }
    }
    if (repeats < 1 || repeats > 16 || big_seqs < 1) {
        fprintf(stderr, "bench_ptq: repeats 1..16, big-seqs >= 1\n");
        return 2;
    }
    double ref[N_METHODS] = {0}, big[N_METHODS] = {0};
    long ref_params = 0, big_params = 0;
    int ref_tokens = 0, big_tokens = 0;
    printf("threads %d\n", qat_get_threads());
    /* the reference model */
    if (access(ckpt, R_OK) == 0) {
        Config cfg;
        Vocab v;
        ckpt_load_meta(ckpt, &cfg, &v, NULL);
        GPTConfig gc = {.vocab_size = v.size, .n_layer = cfg.model.n_layer, .n_head = cfg.model.n_head,
                        .n_embd = cfg.model.n_embd, .block_size = cfg.model.block_size};
        GPT f;
        gpt_build(&f, &gc, &cfg.quant, ckpt);
        ckpt_load_params(ckpt, &f, false);
        ref_params = (long)f.params.numel;
        Dataset ds;
        dataset_load(&ds, &v, cfg.data.path, false, false);
        dataset_split(&ds, cfg.data.val_fraction, gc.block_size, cfg.data.path);
        int n_seq = 4 * cfg.train.batch_size;
        int32_t *calib = ptq_calib_windows(ds.tokens, ds.n_train, n_seq, gc.block_size, 1234);
        ref_tokens = n_seq * gc.block_size;
        printf("reference model %s: %ld parameters, %d calibration tokens\n", ckpt, ref_params, ref_tokens);
        for (int m = 0; m < N_METHODS; m++) {
            PtqOptions o;
            options_of(METHODS[m], &o);
            ref[m] = time_method(&o, &gc, &f.params, calib, n_seq, gc.block_size, repeats);
            printf("  %-40s %8.2f s\n", METHODS[m], ref[m]);
            fflush(stdout);
        }
        free(calib);
        dataset_free(&ds);
        gpt_free(&f);
    } else {
        printf("reference model: %s not found (train configs/tiny-shakespeare.yaml first); skipped\n", ckpt);
    }
    /* about 20M parameters, random weights */
    if (!skip_big) {
        GPTConfig gc = {.vocab_size = 256, .n_layer = 6, .n_head = 8, .n_embd = 512, .block_size = 256};
        Config c;
        config_defaults(&c);
        GPT f;
        gpt_build(&f, &gc, &c.quant, "bench");
        Rng r;
        rng_seed(&r, 7);
        gpt_init_weights(&f, &r);
        big_params = (long)f.params.numel;
        int32_t *calib = xmalloc((size_t)big_seqs * gc.block_size * sizeof(int32_t));
        for (int i = 0; i < big_seqs * gc.block_size; i++) calib[i] = (int32_t)rng_below(&r, 256);
        big_tokens = big_seqs * gc.block_size;
        printf("random GPT (6 layers, width 512, context 256): %ld parameters, %d calibration tokens\n", big_params, big_tokens);
        for (int m = 0; m < N_METHODS; m++) {
            PtqOptions o;
            options_of(METHODS[m], &o);
            big[m] = time_method(&o, &gc, &f.params, calib, big_seqs, gc.block_size, repeats);
            printf("  %-40s %8.2f s\n", METHODS[m], big[m]);
            fflush(stdout);
        }
        free(calib);
        gpt_free(&f);
    }
    printf("{\"threads\":%d,\"reference\":{\"params\":%ld,\"calib_tokens\":%d,\"seconds\":{", qat_get_threads(), ref_params,
           ref_tokens);
    for (int m = 0; m < N_METHODS; m++) printf("%s\"%s\":%.3f", m ? "," : "", METHODS[m], ref[m]);
    printf("}},\"big\":{\"params\":%ld,\"calib_tokens\":%d,\"seconds\":{", big_params, big_tokens);
    for (int m = 0; m < N_METHODS; m++) printf("%s\"%s\":%.3f", m ? "," : "", METHODS[m], big[m]);
    printf("}}}\n");
    return 0;
}
