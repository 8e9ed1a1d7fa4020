/* sample.c: autoregressive sampling with temperature and top-k over the
 * inference engine's KV cache. */
#include "sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Picks a token from logits[V] with temperature and top-k. */
static int pick(const float *logits, int V, float temp, int top_k, Rng *rng, float *probs) {
    if (temp <= 0.0f) {
        int best = 0;
        for (int i = 1; i < V; i++)
            if (logits[i] > logits[best]) best = i;
        return best;
    }
    float kth = -INFINITY;
    if (top_k > 0 && top_k < V) {
        /* the k-th largest logit is the cut-off: copy, partial selection */
        memcpy(probs, logits, (size_t)V * sizeof(float));
        for (int i = 0; i < top_k; i++) {
            int m = i;
            for (int j = i + 1; j < V; j++)
                if (probs[j] > probs[m]) m = j;
            float tmp = probs[i];
            probs[i] = probs[m];
            probs[m] = tmp;
        }
        kth = probs[top_k - 1];
    }
    float mx = -INFINITY;
    for (int i = 0; i < V; i++)
        if (logits[i] > mx) mx = logits[i];
    double sum = 0.0;
    for (int i = 0; i < V; i++) {
        probs[i] = logits[i] < kth ? 0.0f : expf((logits[i] - mx) / temp);
        sum += probs[i];
    }
    double u = rng_uniform(rng) * sum, acc = 0.0;
    for (int i = 0; i < V; i++) {
        acc += probs[i];
        if (u < acc) return i;
    }
    for (int i = V - 1; i >= 0; i--)
        if (probs[i] > 0.0f) return i;
    return 0;
}

static int32_t start_token(const Vocab *v) { return v->spm ? v->spm->bos : v->index['\n'] >= 0 ? v->index['\n'] : 0; }

void sample_sequences(const InferModel *m, int n_seq, int len, float temperature, int top_k, uint64_t seed,
                      int32_t *out) {
    int V = m->cfg.vocab_size;
    if (len < 1 || len > m->cfg.block_size) qat_fail("sample: sequences of %d tokens exceed block_size %d", len, m->cfg.block_size);
    Rng rng;
    rng_seed(&rng, seed);
    InferState s;
    infer_state_init(&s, m, 1);
    float *probs = xmalloc((size_t)V * sizeof(float));
    for (int q = 0; q < n_seq; q++) {
        int32_t *seq = out + (size_t)q * (len + 1);
        seq[0] = start_token(&m->vocab);
        s.pos = 0;
        for (int k = 0; k < len; k++) seq[k + 1] = pick(infer_forward(m, &s, seq + k, 1), V, temperature, top_k, &rng, probs);
    }
    free(probs);
    infer_state_free(&s);
}

void sample_text(const InferModel *m, const SampleOptions *o, FILE *out) {
    const Vocab *v = &m->vocab;
    const char *prompt = o->prompt && *o->prompt ? o->prompt : NULL;
    size_t plen = prompt ? strlen(prompt) : 0;
    int32_t *ctx = xmalloc((plen + (size_t)o->tokens + 2) * sizeof(int32_t));
    size_t n = 0;
    if (prompt) {
        int32_t *enc = vocab_encode(v, (const uint8_t *)prompt, plen, &n, "--prompt");
        memcpy(ctx, enc, n * sizeof(int32_t));
        free(enc);
        fputs(prompt, out);
    } else {
        ctx[n++] = start_token(v);
    }
    char piece[1100];
    Rng rng;
    rng_seed(&rng, o->seed);
    int V = m->cfg.vocab_size, bs = m->cfg.block_size;
    InferState s;
    infer_state_init(&s, m, bs);
    float *probs = xmalloc((size_t)V * sizeof(float));
    size_t done = 0; /* tokens of ctx already in the cache */
    for (int k = 0; k < o->tokens; k++) {
        if (n - done + (size_t)s.pos > (size_t)bs) { /* full: restart from the newest half */
            size_t keep = n < (size_t)bs / 2 ? n : (size_t)bs / 2;
            s.pos = 0;
            done = n - keep;
        }
        const float *lg = infer_forward(m, &s, ctx + done, (int)(n - done));
        int id = pick(lg + (size_t)(n - done - 1) * V, V, o->temperature, o->top_k, &rng, probs);
        done = n;
        ctx[n++] = id;
        size_t len = vocab_decode(v, id, piece, sizeof piece);
        /* SentencePiece's leading space of a document is not text */
        size_t skip = v->spm && n == 2 && ctx[0] == v->spm->bos && len && piece[0] == ' ';
        fwrite(piece + skip, 1, len - skip, out);
    }
    fputc('\n', out);
    free(probs);
    infer_state_free(&s);
    free(ctx);
}
