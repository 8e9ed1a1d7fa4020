/* vocab_h5.c: vocabularies in qat's HDF5 files (layout in vocab_h5.h). */
#include "vocab_h5.h"

#include <math.h>
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

typedef struct SpmRead {
    hid_t f;
    const char *path;
    Vocab *v;
    int32_t *len, *type;
    float *score;
    uint8_t *text;
    const char **pieces;
} SpmRead;

static void read_spm(void *p) {
    SpmRead *x = p;
    hid_t f = x->f;
    const char *path = x->path;
    int n = (int)h5_read_len(f, path, "tokenizer/lengths", 1 << 24);
    size_t total = h5_read_len(f, path, "tokenizer/pieces", (size_t)n * 1024 + 1);
    int32_t sp[3];
    x->len = xmalloc((size_t)n * sizeof(int32_t)), x->type = xmalloc((size_t)n * sizeof(int32_t));
    x->score = xmalloc((size_t)n * sizeof(float));
    x->text = xmalloc(total);
    x->pieces = xmalloc((size_t)n * sizeof(char *));
    h5_read_checked(f, path, "tokenizer/lengths", H5T_NATIVE_INT32, 1, (int[]){n}, x->len);
    h5_read_checked(f, path, "tokenizer/types", H5T_NATIVE_INT32, 1, (int[]){n}, x->type);
    h5_read_checked(f, path, "tokenizer/scores", H5T_NATIVE_FLOAT, 1, (int[]){n}, x->score);
    h5_read_checked(f, path, "tokenizer/pieces", H5T_NATIVE_UINT8, 1, (int[]){(int)total}, x->text);
    h5_read_checked(f, path, "tokenizer/special", H5T_NATIVE_INT32, 1, (int[]){3}, sp);
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        if (x->len[i] < 0 || (size_t)x->len[i] > total - k)
            qat_fail("%s: tokenizer/lengths[%d] = %d runs past tokenizer/pieces", path, i, x->len[i]);
        x->pieces[i] = (const char *)x->text + k;
        k += (size_t)x->len[i];
        if (!isfinite(x->score[i])) qat_fail("%s: tokenizer/scores[%d] is %g", path, i, x->score[i]);
    }
    if (k != total) qat_fail("%s: tokenizer/lengths sum to %zu bytes, tokenizer/pieces holds %zu", path, k, total);
    for (int i = 0; i < 3; i++)
        if (sp[i] < 0 || sp[i] >= n) qat_fail("%s: tokenizer/special[%d] = %d is not a token id", path, i, sp[i]);
    vocab_spm_build(x->v, n, x->pieces, x->len, x->score, x->type, sp[0], sp[1], sp[2], path);
}

void vocab_h5_read(hid_t f, const char *path, bool spm, bool checked, Vocab *v) {
    if (!spm) {
        read_chars(f, path, checked, v);
        return;
    }
    SpmRead x = {.f = f, .path = path, .v = v};
    char msg[1024];
    bool ok = qat_try(read_spm, &x, msg, sizeof msg);
    free(x.pieces), free(x.len), free(x.type), free(x.score), free(x.text);
    if (!ok) qat_fail("%s", msg);
}
