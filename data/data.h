/* data.h: tokenizers (char: the sorted set of the corpus's distinct bytes;
 * byte: all 256 values), the token stream with its train/validation split,
 * and batches of random windows drawn from a seeded generator. */
#ifndef QAT_DATA_H
#define QAT_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

typedef struct Vocab {
    int size;
    bool is_byte;
    uint8_t chars[256];  /* token id -> byte */
    int16_t index[256];  /* byte -> token id, -1 when absent */
} Vocab;

void vocab_build_char(Vocab *v, const uint8_t *text, size_t n);
void vocab_build_byte(Vocab *v);
/* From a stored list of bytes (a checkpoint's vocab). */
void vocab_from_chars(Vocab *v, const uint8_t *chars, int n);
/* Encodes text; a byte outside the vocab fails naming origin and offset. */
int32_t *vocab_encode(const Vocab *v, const uint8_t *text, size_t n, const char *origin);
/* Decodes n tokens into out (n bytes, not terminated). */
void vocab_decode(const Vocab *v, const int32_t *tok, size_t n, char *out);

typedef struct Dataset {
    int32_t *tokens;
    size_t n;       /* tokens in all */
    size_t n_train; /* train = [0, n_train), validation = [n_train, n) */
} Dataset;

/* Reads path and encodes it; builds the vocab first when build_vocab. */
void dataset_load(Dataset *d, Vocab *v, const char *path, bool build_vocab, bool byte_vocab);
/* Splits at (1 - val_fraction) and checks each part holds a window of T+1. */
void dataset_split(Dataset *d, float val_fraction, int T, const char *origin);
void dataset_free(Dataset *d);

typedef struct Batch {
    int B, T;
    int32_t *x, *y; /* [B,T] inputs and next-token targets */
} Batch;

void batch_alloc(Batch *b, int B, int T);
void batch_free(Batch *b);
/* B random windows of T+1 tokens from tokens[0..n). */
void batch_sample(Batch *b, const int32_t *tokens, size_t n, Rng *rng);

#endif
