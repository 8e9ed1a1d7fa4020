/* data.h: tokenizers (char: the sorted set of the corpus's distinct bytes;
 * byte: all 256 values; spm: a SentencePiece BPE vocabulary of an imported
 * model), the token stream with its train/validation split, and batches of
 * random windows drawn from a seeded generator. */
#ifndef QAT_DATA_H
#define QAT_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

/* Token types, GGUF's numbering (tokenizer.ggml.token_type). */
enum { SPM_NORMAL = 1, SPM_UNKNOWN = 2, SPM_CONTROL = 3, SPM_USER = 4, SPM_UNUSED = 5, SPM_BYTE = 6 };

typedef struct SpmVocab {
    int n, bos, eos, unk;
    const char **piece; /* NUL-terminated, a plain space where SentencePiece writes U+2581 */
    int *len;
    float *score;
    int32_t *type;
    int byte_id[256]; /* the <0xXX> piece of each byte, -1 when absent */
    int *slot;        /* open-addressing hash of the pieces' text -> id */
    int nslot;
    size_t text_bytes; /* sum of piece lengths + 1 each */
} SpmVocab;

typedef struct Vocab {
    int size;
    bool is_byte;
    uint8_t chars[256];  /* char/byte: token id -> byte */
    int16_t index[256];  /* char/byte: byte -> token id, -1 when absent */
    SpmVocab *spm;       /* spm: the pieces (one allocation, owned: vocab_free), else NULL */
} Vocab;

void vocab_build_char(Vocab *v, const uint8_t *text, size_t n);
void vocab_build_byte(Vocab *v);
/* From a stored list of bytes (a checkpoint's vocab). */
void vocab_from_chars(Vocab *v, const uint8_t *chars, int n);
/* A SentencePiece vocabulary from its pieces (spaces as ' '), scores and
 * token types (NULL: byte pieces by their <0xXX> spelling, the special ids
 * control, the rest normal). Fails naming origin on sizes out of range. */
void vocab_spm_build(Vocab *v, int n, const char *const *pieces, const int *lens, const float *scores,
                     const int32_t *types, int bos, int eos, int unk, const char *origin);
void vocab_free(Vocab *v);
/* A deep copy: dst owns its own pieces. */
void vocab_copy(Vocab *dst, const Vocab *src);
/* The id of a piece, or -1. */
int vocab_spm_lookup(const SpmVocab *s, const char *text, int n);
/* BPE-encodes n bytes into out (room for n + 2 ids), BOS first when bos;
 * returns the count. */
size_t vocab_spm_encode(const Vocab *v, const uint8_t *text, size_t n, int32_t *out, bool bos);
size_t vocab_spm_decode(const Vocab *v, int32_t id, char *buf, size_t cap);
/* Encodes text into *n_out ids (an spm vocab puts BOS first: a document);
 * a byte outside a char vocab fails naming origin and offset. */
int32_t *vocab_encode(const Vocab *v, const uint8_t *text, size_t n, size_t *n_out, const char *origin);
/* The bytes of one token into buf (at most cap); returns how many. Control
 * tokens (BOS, EOS) decode to nothing. */
size_t vocab_decode(const Vocab *v, int32_t id, char *buf, size_t cap);
/* The BOS id of an spm vocab, or -1. */
static inline int vocab_bos(const Vocab *v) { return v->spm ? v->spm->bos : -1; }

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

/* The windows a validation loss is taken over. Window i predicts tokens
 * start[i]+1 .. start[i]+len[i] from the len[i] tokens before each.
 *  full:   consecutive non-overlapping windows of T over the whole split, the
 *          last one shorter when the split does not divide, so every token
 *          but the first is scored exactly once; no seed involved.
 *  random: n_batches x B windows of T at random starts, drawn from a
 *          generator seeded with seed exactly as batch_sample draws them. */
typedef struct EvalWindows {
    int n;         /* windows */
    size_t *start; /* first input token of each */
    int *len;      /* positions scored in each (T, or fewer for the last full-split window) */
    long tokens;   /* positions scored in all */
} EvalWindows;

void eval_windows_full(EvalWindows *w, size_t n_tokens, int T);
void eval_windows_random(EvalWindows *w, size_t n_tokens, int T, int n_batches, int B, uint64_t seed);
void eval_windows_free(EvalWindows *w);
/* Windows first..first+count-1 of w that share window first's length, at
 * most max of them: how many (a batch of equal-length rows). */
int eval_windows_run(const EvalWindows *w, int first, int max);
/* Fills x and y ([count, len]) with the inputs and targets of windows first.. */
void eval_windows_fill(const EvalWindows *w, const int32_t *tokens, int first, int count, int32_t *x, int32_t *y);

#endif
