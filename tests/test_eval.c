/* test_eval.c: the validation windows and the losses taken over them. The
 * full split is scored as consecutive windows, every token once; the loss
 * of the training forward, of the inference engine and of a per-token double
 * reference agree; random windows are the ones batch_sample draws. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "train/trainer.h"

Test(eval, full_windows_cover_every_token_once) {
    int T = 16;
    for (size_t n = 2; n < 120; n++) {
        EvalWindows w;
        eval_windows_full(&w, n, T);
        /* window i predicts tokens start+1 .. start+len; together they are 1..n-1, once each */
        size_t next = 1;
        long sum = 0;
        for (int i = 0; i < w.n; i++) {
            cr_assert_eq(w.start[i] + 1, next, "n %zu window %d starts at %zu", n, i, w.start[i]);
            cr_assert(w.len[i] >= 1 && w.len[i] <= T);
            if (i + 1 < w.n) cr_assert_eq(w.len[i], T, "only the last window may be short");
            next += (size_t)w.len[i];
            sum += w.len[i];
        }
        cr_assert_eq(next, n, "n %zu: windows end at %zu", n, next);
        cr_assert_eq(sum, w.tokens);
        cr_assert_eq(w.tokens, (long)n - 1);
        cr_assert_eq(w.n, (int)((n - 1 + T - 1) / T));
        eval_windows_free(&w);
    }
    /* the reference split: 111,540 tokens at block_size 128 */
    EvalWindows w;
    eval_windows_full(&w, 111540, 128);
    cr_assert_eq(w.n, 872);
    cr_assert_eq(w.len[870], 128);
    cr_assert_eq(w.len[871], 51);
    cr_assert_eq(w.tokens, 111539);
    eval_windows_free(&w);
}

Test(eval, random_windows_are_batch_sample_draws) {
    int32_t tok[500];
    for (int i = 0; i < 500; i++) tok[i] = i;
    EvalWindows w;
    eval_windows_random(&w, 500, 16, 3, 4, 77);
    cr_assert_eq(w.n, 12);
    cr_assert_eq(w.tokens, 12 * 16);
    Rng rng;
    rng_seed(&rng, 77);
    Batch b;
    batch_alloc(&b, 4, 16);
    for (int k = 0; k < 3; k++) {
        batch_sample(&b, tok, 500, &rng);
        for (int i = 0; i < 4; i++) cr_assert_eq((size_t)b.x[i * 16], w.start[k * 4 + i]);
    }
    batch_free(&b);
    eval_windows_free(&w);
}

/* a small random model of either architecture (llama: grouped-query
 * attention, an MLP width that is no multiple of anything, an untied head) */
static void tiny_model_arch(GPT *g, int V, int T, Arch arch) {
    GPTConfig gc = {.vocab_size = V, .n_layer = 2, .n_head = 2, .n_embd = 16, .block_size = T};
    if (arch == ARCH_LLAMA)
        gc = (GPTConfig){.vocab_size = V, .n_layer = 2, .n_head = 4, .n_embd = 16, .block_size = T, .arch = ARCH_LLAMA,
                         .n_kv_head = 2, .hidden = 23, .untied_head = true, .rope_theta = 500.0f};
    gpt_build(g, &gc, NULL, "test");
    Rng r;
    rng_seed(&r, 3);
    gpt_init_weights(g, &r);
    for (size_t i = 0; i < g->params.numel; i++) g->params.data[i] += 0.3f * rng_normal(&r);
}

/* The inference engine's model of g, with a vocabulary of letters. */
static void infer_of(InferModel *m, const GPT *g) {
    Vocab v;
    uint8_t chars[64];
    for (int i = 0; i < g->cfg.vocab_size; i++) chars[i] = (uint8_t)('a' + i);
    vocab_from_chars(&v, chars, g->cfg.vocab_size);
    infer_from_gpt(m, g, &v, "");
}

static void mean_over_every_scored_token(Arch arch) {
    const int V = 11, T = 8, n = 61; /* 60 scored tokens: 7 whole windows and one of 4 */
    GPT g;
    tiny_model_arch(&g, V, T, arch);
    int32_t tok[61];
    Rng r;
    rng_seed(&r, 9);
    for (int i = 0; i < n; i++) tok[i] = (int32_t)rng_below(&r, V);
    EvalWindows w;
    eval_windows_full(&w, n, T);
    Tape t;
    tape_init(&t, 1 << 20);
    /* reference: each window alone through the forward, per-token -log softmax in double */
    double ref = 0.0;
    for (int i = 0; i < w.n; i++) {
        int L = w.len[i];
        tape_reset(&t);
        Tensor *lg = gpt_forward(&g, &t, tok + w.start[i], 1, L);
        for (int p = 0; p < L; p++) {
            const float *row = lg->data + (size_t)p * V;
            double mx = row[0], e = 0.0;
            for (int j = 1; j < V; j++) mx = fmax(mx, row[j]);
            for (int j = 0; j < V; j++) e += exp(row[j] - mx);
            ref += mx + log(e) - row[tok[w.start[i] + p + 1]];
        }
    }
    ref /= 60.0;
    for (int B = 1; B <= 9; B += 4) { /* batching the windows does not change the figure */
        double got = eval_loss(&g, &t, tok, &w, B, NULL);
        cr_assert(fabs(got - ref) < 2e-6, "B %d: %.8f vs reference %.8f", B, got, ref);
    }
    /* the inference engine scores the same windows to the same figure */
    InferModel m;
    infer_of(&m, &g);
    double inf = infer_eval_loss(&m, tok, &w, NULL);
    cr_assert(fabs(inf - ref) < 2e-5, "inference %.8f vs reference %.8f", inf, ref);
    infer_free(&m);
    tape_free(&t);
    eval_windows_free(&w);
    gpt_free(&g);
}
Test(eval, loss_is_the_mean_over_every_scored_token) { mean_over_every_scored_token(ARCH_GPT); }
Test(eval, loss_is_the_mean_over_every_scored_token_llama) { mean_over_every_scored_token(ARCH_LLAMA); }

/* Generation one token at a time over the KV cache (RoPE at each cached
 * position, grouped kv heads) gives the logits of the whole-window forward. */
Test(eval, llama_token_by_token_equals_the_window) {
    const int V = 13, T = 12;
    GPT g;
    tiny_model_arch(&g, V, T, ARCH_LLAMA);
    int32_t tok[12];
    for (int i = 0; i < T; i++) tok[i] = (int32_t)((i * 5 + 3) % V);
    Tape t;
    tape_init(&t, 1 << 20);
    Tensor *lg = gpt_forward(&g, &t, tok, 1, T);
    InferModel m;
    infer_of(&m, &g);
    InferState s;
    infer_state_init(&s, &m, T);
    for (int p = 0; p < T; p++) {
        const float *r = infer_forward(&m, &s, tok + p, 1);
        for (int j = 0; j < V; j++)
            cr_assert(fabsf(r[j] - lg->data[(size_t)p * V + j]) < 1e-4f, "position %d logit %d: %.6f vs %.6f", p, j, r[j],
                      lg->data[(size_t)p * V + j]);
    }
    /* and a prompt of 5 then single tokens: the multi-token path's cache */
    s.pos = 0;
    infer_forward(&m, &s, tok, 5);
    for (int p = 5; p < T; p++) {
        const float *r = infer_forward(&m, &s, tok + p, 1);
        for (int j = 0; j < V; j++) cr_assert(fabsf(r[j] - lg->data[(size_t)p * V + j]) < 1e-4f, "after prompt: pos %d", p);
    }
    infer_state_free(&s);
    infer_free(&m);
    tape_free(&t);
    gpt_free(&g);
}
