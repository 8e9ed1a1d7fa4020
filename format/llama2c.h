/* llama2.c.h: Karpathy's llama2.c files: the legacy checkpoint (a header of
 * seven int32: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
 * seq_len, a negative vocab_size meaning an untied classifier; then float32
 * token embedding, the per-layer rms_att, wq, wk, wv, wo, rms_ffn, w1, w2,
 * w3 stacked over layers, rms_final, the RoPE tables, and wcls when untied)
 * and tokenizer.bin (int32 max_token_length, then per piece float score,
 * int32 length, bytes). llama2.c's runner fixes RMSNorm eps 1e-5, RoPE theta
 * 10000 on adjacent pairs, <unk> 0, BOS 1, EOS 2. */
#ifndef QAT_LLAMA2C_H
#define QAT_LLAMA2C_H

#include "data/data.h"
#include "layers/layers.h"
#include "train/config.h"

/* Reads the tokenizer (its size must be vocab_size when vocab_size > 0). */
void llama2c_load_tokenizer(const char *path, int vocab_size, Vocab *v);
/* Builds g (arch llama, float) from the checkpoint and fills cfg's model
 * section; every size is checked against the file's length first, and
 * every weight must be finite. */
void llama2c_load_model(const char *path, GPT *g, Config *cfg);

#endif
