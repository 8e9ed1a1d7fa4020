/* fuzz_gguf.c: the GGUF reader, its listing (qat inspect) and the gpt2 and
 * llama model loaders (qat eval and qat sample of a .gguf file, with q8_0,
 * q4_0, q4_1 and iq4_nl blocks: q4_1 layers baked to float as
 * model_load_infer does), then a forward pass over a few tokens; and the
 * SentencePiece vocabulary alone (data.tokenizer). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/gguf.h"
#include "format/gguf_model.h"
#include "fuzz_util.h"
#include "infer/infer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_init();
    const char *path = fuzz_write_file(data, size);
    static GgufFile f;
    static GPT g;
    static bool read, loaded, have_g, have_v;
    static Vocab v;
    static FILE *devnull;
    if (!devnull) devnull = fopen("/dev/null", "w");
    static InferModel m;
    /* the vocabulary alone (data.tokenizer): frees what it read when it fails */
    if (!setjmp(fuzz_jmp)) {
        Vocab tv;
        gguf_load_vocab(path, &tv);
        vocab_free(&tv);
    }
    if (setjmp(fuzz_jmp)) goto out;
    /* the size first: a file may describe a model beyond the fuzzer's memory */
    gguf_read(&f, path);
    read = true;
    for (size_t k = 0; k < f.n_kv; k++) cJSON_Delete(gguf_kv_json(&f.kv[k], 6));
    bool llama = gguf_find_kv(&f, "llama.embedding_length") != NULL;
    const char *a = llama ? "llama" : "gpt2";
    char k1[64], k2[64], k3[64], k4[64];
    snprintf(k1, sizeof k1, "%s.embedding_length", a), snprintf(k2, sizeof k2, "%s.block_count", a);
    snprintf(k3, sizeof k3, "%s.context_length", a), snprintf(k4, sizeof k4, "%s.feed_forward_length", a);
    const GgufKV *c = gguf_find_kv(&f, k1), *l = gguf_find_kv(&f, k2), *t = gguf_find_kv(&f, k3), *h = gguf_find_kv(&f, k4);
    if (!c || !l || !t || c->type != GGUF_UINT32 || l->type != GGUF_UINT32 || t->type != GGUF_UINT32) goto out;
    uint32_t C, L, T, Hd = 0;
    memcpy(&C, c->val, 4), memcpy(&L, l->val, 4), memcpy(&T, t->val, 4);
    if (llama && (!h || h->type != GGUF_UINT32)) goto out;
    if (h && h->type == GGUF_UINT32) memcpy(&Hd, h->val, 4);
    if ((double)C * (C + Hd) * L * 12.0 > 4e6 || T > 4096) goto out;
    Config cfg;
    gguf_load_gpt(path, &g, &v, &cfg, false); /* frees g and v itself when it fails */
    have_g = have_v = true;
    char *yaml = config_to_yaml(&cfg);
    infer_from_gpt(&m, &g, &v, yaml);
    free(yaml);
    gpt_free(&g);
    vocab_free(&v);
    have_g = have_v = false;
    loaded = true;
    InferState s;
    infer_state_init(&s, &m, 4);
    int32_t tok[4] = {0, 1 % m.vocab.size, 2 % m.vocab.size, 0};
    infer_forward(&m, &s, tok, m.cfg.block_size < 4 ? m.cfg.block_size : 4);
    infer_state_free(&s);
out:
    if (have_g) gpt_free(&g);
    if (have_v) vocab_free(&v);
    if (loaded) infer_free(&m);
    if (read) gguf_free(&f);
    read = loaded = have_g = have_v = false;
    return 0;
}
