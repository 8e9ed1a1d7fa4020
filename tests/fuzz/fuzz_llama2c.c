/* fuzz_llama2c.c: llama2.c's readers (qat import MODEL.bin --tokenizer
 * TOKENIZER.bin): the same bytes as a tokenizer.bin, then as a checkpoint;
 * a tokenizer that loads encodes and decodes a few strings, a model that
 * loads runs one forward over its first tokens. */
#include <stdlib.h>
#include <string.h>

#include "format/llama2c.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_init();
    const char *path = fuzz_write_file(data, size);
    static Vocab v;
    static GPT g;
    static Tape t;
    static bool have_v, have_g, have_t;
    static Config cfg;
    if (setjmp(fuzz_jmp)) goto model;
    llama2c_load_tokenizer(path, 0, &v);
    have_v = true;
    static const char *texts[] = {"Once upon a time", "\xff\xfe \xc3", ""};
    for (int i = 0; i < 3; i++) {
        size_t n;
        int32_t *ids = vocab_encode(&v, (const uint8_t *)texts[i], strlen(texts[i]), &n, "fuzz");
        char buf[2048];
        for (size_t k = 0; k < n; k++) vocab_decode(&v, ids[k], buf, sizeof buf);
        free(ids);
    }
model:
    if (have_v) vocab_free(&v);
    have_v = false;
    if (setjmp(fuzz_jmp)) goto out;
    config_defaults(&cfg);
    /* the reader checks the file's length against its header before building */
    llama2c_load_model(path, &g, &cfg);
    have_g = true;
    if (g.params.numel > 4000000) goto out;
    tape_init(&t, 16u << 20);
    have_t = true;
    tape_set_grad(&t, false);
    int32_t tok[4] = {0, 1 % g.cfg.vocab_size, 2 % g.cfg.vocab_size, 0};
    gpt_forward(&g, &t, tok, 1, g.cfg.block_size < 4 ? g.cfg.block_size : 4);
out:
    if (have_t) tape_free(&t);
    if (have_g) gpt_free(&g);
    have_t = have_g = false;
    return 0;
}
