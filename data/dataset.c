/* dataset.c: the token stream, its split, and batch sampling. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"

void dataset_load(Dataset *d, Vocab *v, const char *path, bool build_vocab, bool byte_vocab) {
    size_t n;
    uint8_t *text = (uint8_t *)xread_file(path, &n);
    if (n == 0) qat_fail("%s: corpus is empty", path);
    if (build_vocab) {
        if (byte_vocab)
            vocab_build_byte(v);
        else
            vocab_build_char(v, text, n);
    }
    d->tokens = vocab_encode(v, text, n, &d->n, path);
    d->n_train = d->n;
    free(text);
}

void dataset_split(Dataset *d, float val_fraction, int T, const char *origin) {
    d->n_train = (size_t)((double)d->n * (1.0 - (double)val_fraction));
    size_t n_val = d->n - d->n_train;
    if (d->n_train < (size_t)T + 1 || n_val < (size_t)T + 1)
        qat_fail("%s: model.block_size: %d needs %d tokens per window, but the corpus splits into %zu train and %zu "
                 "validation tokens",
                 origin, T, T + 1, d->n_train, n_val);
}

void dataset_free(Dataset *d) {
    free(d->tokens);
    memset(d, 0, sizeof *d);
}

void batch_alloc(Batch *b, int B, int T) {
    b->B = B;
    b->T = T;
    b->x = xmalloc((size_t)B * T * sizeof(int32_t));
    b->y = xmalloc((size_t)B * T * sizeof(int32_t));
}

void batch_free(Batch *b) {
    free(b->x);
    free(b->y);
    b->x = b->y = NULL;
}

void batch_sample(Batch *b, const int32_t *tokens, size_t n, Rng *rng) {
    size_t T = (size_t)b->T;
    uint32_t starts = (uint32_t)(n - T); /* windows [s, s+T] with s in [0, n-T-1] */
    for (int i = 0; i < b->B; i++) {
        size_t s = rng_below(rng, starts);
        memcpy(b->x + i * T, tokens + s, T * sizeof(int32_t));
        memcpy(b->y + i * T, tokens + s + 1, T * sizeof(int32_t));
    }
}

static void windows_alloc(EvalWindows *w, int n) {
    w->n = n;
    w->start = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(size_t));
    w->len = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(int));
    w->tokens = 0;
}

void eval_windows_full(EvalWindows *w, size_t n_tokens, int T) {
    /* n_tokens - 1 positions have a target; whole windows of T, then the rest */
    size_t scored = n_tokens > 0 ? n_tokens - 1 : 0;
    size_t whole = scored / (size_t)T, rest = scored % (size_t)T;
    if (whole + (rest > 0) > (size_t)INT32_MAX) qat_fail("eval: %zu tokens make too many windows of %d", n_tokens, T);
    windows_alloc(w, (int)(whole + (rest > 0)));
    for (size_t i = 0; i < whole; i++) w->start[i] = i * (size_t)T, w->len[i] = T;
    if (rest) w->start[whole] = whole * (size_t)T, w->len[whole] = (int)rest;
    w->tokens = (long)scored;
}

void eval_windows_random(EvalWindows *w, size_t n_tokens, int T, int n_batches, int B, uint64_t seed) {
    if (n_tokens < (size_t)T + 1) qat_fail("eval: %zu tokens, fewer than a window of %d + 1", n_tokens, T);
    windows_alloc(w, n_batches * B);
    Rng rng;
    rng_seed(&rng, seed);
    uint32_t starts = (uint32_t)(n_tokens - (size_t)T); /* as batch_sample draws them */
    for (int i = 0; i < w->n; i++) {
        w->start[i] = rng_below(&rng, starts);
        w->len[i] = T;
    }
    w->tokens = (long)w->n * T;
}

void eval_windows_free(EvalWindows *w) {
    free(w->start);
    free(w->len);
    memset(w, 0, sizeof *w);
}

int eval_windows_run(const EvalWindows *w, int first, int max) {
    int k = 0;
    while (first + k < w->n && k < max && w->len[first + k] == w->len[first]) k++;
    return k;
}

void eval_windows_fill(const EvalWindows *w, const int32_t *tokens, int first, int count, int32_t *x, int32_t *y) {
    for (int i = 0; i < count; i++) {
        size_t s = w->start[first + i], L = (size_t)w->len[first + i];
        memcpy(x + i * L, tokens + s, L * sizeof(int32_t));
        memcpy(y + i * L, tokens + s + 1, L * sizeof(int32_t));
    }
}
