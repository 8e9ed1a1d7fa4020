/* dataset.c: the token stream, its split, and batch sampling. */
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
    d->tokens = vocab_encode(v, text, n, path);
    d->n = n;
    d->n_train = n;
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
