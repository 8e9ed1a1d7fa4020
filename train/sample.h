/* sample.h: text generation (qat sample) on the inference engine with its KV cache. */
#ifndef QAT_SAMPLE_H
#define QAT_SAMPLE_H

#include <stdio.h>

#include "data/data.h"
#include "infer/infer.h"

typedef struct SampleOptions {
    const char *prompt; /* NULL or "" starts from a newline (or the first vocab entry) */
    int tokens;
    float temperature; /* 0 = greedy */
    int top_k;         /* 0 = whole vocabulary */
    uint64_t seed;
} SampleOptions;

/* Writes the prompt and the generated text to out. The prompt is one
 * forward; each new token one more over the KV cache. When the context
 * reaches block_size, the newest half is kept and run again (positions are
 * learned embeddings, so a cache cannot simply slide). */
void sample_text(const InferModel *m, const SampleOptions *o, FILE *out);
/* n_seq sequences of len + 1 tokens, each BOS (an spm vocab's, else the
 * newline or token 0) and len tokens sampled with temperature and top-k,
 * one generator seeded once for all, back to back in out [n_seq, len + 1];
 * len <= block_size. */
void sample_sequences(const InferModel *m, int n_seq, int len, float temperature, int top_k, uint64_t seed,
                      int32_t *out);

#endif
