/* sample.h: text generation from a float checkpoint (qat sample). */
#ifndef QAT_SAMPLE_H
#define QAT_SAMPLE_H

#include <stdio.h>

#include "layers/layers.h"
#include "data/data.h"

typedef struct SampleOptions {
    const char *prompt; /* NULL or "" starts from a newline (or the first vocab entry) */
    int tokens;
    float temperature; /* 0 = greedy */
    int top_k;         /* 0 = whole vocabulary */
    uint64_t seed;
} SampleOptions;

/* Writes the prompt and the generated text to out. */
void sample_text(GPT *g, const Vocab *v, const SampleOptions *o, FILE *out);

#endif
