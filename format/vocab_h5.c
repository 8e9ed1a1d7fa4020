/* vocab_h5.c: vocabularies in qat's HDF5 files (layout in vocab_h5.h). */
#include "vocab_h5.h"

#include <stdlib.h>
#include <string.h>

#include "util/h5io.h"

void vocab_h5_write(hid_t f, const Vocab *v) {
    if (!v->spm) {
        h5_write_checked(f, "vocab", H5T_NATIVE_UINT8, 1, (int[]){v->size}, v->chars);
        return;
    }
    const SpmVocab *s = v->spm;
    size_t total = 0;
    for (int i = 0; i < s->n; i++) total += (size_t)s->len[i];
    uint8_t *text = xmalloc(total ? total : 1);
    size_t k = 0;
    for (int i = 0; i < s->n; i++) memcpy(text + k, s->piece[i], (size_t)s->len[i]), k += (size_t)s->len[i];
    h5_write_checked(f, "tokenizer/pieces", H5T_NATIVE_UINT8, 1, (int[]){(int)total}, text);
    h5_write_checked(f, "tokenizer/lengths", H5T_NATIVE_INT32, 1, (int[]){s->n}, s->len);
    h5_write_checked(f, "tokenizer/scores", H5T_NATIVE_FLOAT, 1, (int[]){s->n}, s->score);
    h5_write_checked(f, "tokenizer/types", H5T_NATIVE_INT32, 1, (int[]){s->n}, s->type);
    h5_write_checked(f, "tokenizer/special", H5T_NATIVE_INT32, 1, (int[]){3}, (int32_t[]){s->bos, s->eos, s->unk});
    free(text);
}

static void read_chars(hid_t f, const char *path, bool checked, Vocab *v) {
    uint8_t chars[256];
    size_t n;
    if (checked) {
        n = h5_read_len(f, path, "vocab", sizeof chars);
        h5_read_checked(f, path, "vocab", H5T_NATIVE_UINT8, 1, (int[]){(int)n}, chars);
    } else {
        n = h5_read_u8(f, path, "vocab", chars, sizeof chars);
    }
    if (n == 0) qat_fail("%s: vocab is empty", path);
    for (size_t i = 1; i < n; i++)
        if (chars[i] <= chars[i - 1]) qat_fail("%s: vocab is not a sorted set of distinct bytes (entry %zu)", path, i);
    vocab_from_chars(v, chars, (int)n);
}

void vocab_h5_read(hid_t f, const char *path, bool spm, bool checked, Vocab *v) {
    if (!spm) {
        read_chars(f, path, checked, v);
        return;
    }
    int n = (int)h5_read_len(f, path, "tokenizer/lengths", 1 << 24);
    size_t total = h5_read_len(f, path, "tokenizer/pieces", (size_t)n * 1024 + 1);
    int32_t *len = xmalloc((size_t)n * sizeof(int32_t)), *type = xmalloc((size_t)n * sizeof(int32_t)), sp[3];
    float *score = xmalloc((size_t)n * sizeof(float));
    uint8_t *text = xmalloc(total);
    h5_read_checked(f, path, "tokenizer/lengths", H5T_NATIVE_INT32, 1, (int[]){n}, len);
    h5_read_checked(f, path, "tokenizer/types", H5T_NATIVE_INT32, 1, (int[]){n}, type);
    h5_read_checked(f, path, "tokenizer/scores", H5T_NATIVE_FLOAT, 1, (int[]){n}, score);
    h5_read_checked(f, path, "tokenizer/pieces", H5T_NATIVE_UINT8, 1, (int[]){(int)total}, text);
    h5_read_checked(f, path, "tokenizer/special", H5T_NATIVE_INT32, 1, (int[]){3}, sp);
    const char **pieces = xmalloc((size_t)n * sizeof(char *));
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        if (len[i] < 0 || (size_t)len[i] > total - k)
            qat_fail("%s: tokenizer/lengths[%d] = %d runs past tokenizer/pieces", path, i, len[i]);
        pieces[i] = (const char *)text + k;
        k += (size_t)len[i];
    }
    if (k != total) qat_fail("%s: tokenizer/lengths sum to %zu bytes, tokenizer/pieces holds %zu", path, k, total);
    for (int i = 0; i < 3; i++)
        if (sp[i] < 0 || sp[i] >= n) qat_fail("%s: tokenizer/special[%d] = %d is not a token id", path, i, sp[i]);
    vocab_spm_build(v, n, pieces, len, score, type, sp[0], sp[1], sp[2], path);
    free(pieces), free(len), free(type), free(score), free(text);
}
