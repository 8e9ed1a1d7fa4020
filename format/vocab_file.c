/* vocab_file.c: the spm vocabulary of a checkpoint, GGUF or tokenizer.bin (see vocab_file.h). */
#include "format/vocab_file.h"

#include <stdio.h>
#include <string.h>

#include "format/checkpoint.h"
#include "format/gguf.h"
#include "format/gguf_model.h"
#include "format/llama2c.h"

void vocab_load_file(const char *path, Vocab *v) {
    FILE *f = xfopen(path, "rb");
    unsigned char magic[8] = {0};
    size_t got = fread(magic, 1, sizeof magic, f);
    fclose(f);
    if (got == sizeof magic && !memcmp(magic, "\x89HDF\r\n\x1a\n", 8)) {
        Config saved;
        ckpt_load_meta(path, &saved, v, NULL);
        if (!v->spm) {
            vocab_free(v);
            qat_fail("%s: the checkpoint's vocabulary is %s, not spm", path, saved.model.vocab);
        }
    } else if (gguf_is_file(path)) {
        gguf_load_vocab(path, v);
    } else {
        llama2c_load_tokenizer(path, 0, v);
    }
}
