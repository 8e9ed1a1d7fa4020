/* tokenizer.c: char-level and byte-level vocabularies (the char vocab is
 * built on bytes, so for ASCII text it is exactly the set of characters), and
 * the entry points that also serve SentencePiece vocabularies (spm.c). */
#include <stdlib.h>
#include <string.h>

#include "data.h"

static void vocab_index(Vocab *v) {
    for (int i = 0; i < 256; i++) v->index[i] = -1;
    for (int i = 0; i < v->size; i++) v->index[v->chars[i]] = (int16_t)i;
}

void vocab_build_char(Vocab *v, const uint8_t *text, size_t n) {
    bool seen[256] = {false};
    v->spm = NULL;
    for (size_t i = 0; i < n; i++) seen[text[i]] = true;
    v->size = 0;
    v->is_byte = false;
    for (int c = 0; c < 256; c++)
        if (seen[c]) v->chars[v->size++] = (uint8_t)c;
    vocab_index(v);
}

void vocab_build_byte(Vocab *v) {
    v->spm = NULL;
    v->size = 256;
    v->is_byte = true;
    for (int c = 0; c < 256; c++) v->chars[c] = (uint8_t)c;
    vocab_index(v);
}

void vocab_from_chars(Vocab *v, const uint8_t *chars, int n) {
    v->spm = NULL;
    v->size = n;
    v->is_byte = n == 256;
    memcpy(v->chars, chars, (size_t)n);
    vocab_index(v);
}

void vocab_free(Vocab *v) {
    free(v->spm);
    v->spm = NULL;
}

void vocab_copy(Vocab *dst, const Vocab *src) {
    *dst = *src;
    if (!src->spm) return;
    const SpmVocab *s = src->spm;
    vocab_spm_build(dst, s->n, s->piece, s->len, s->score, s->type, s->bos, s->eos, s->unk, "vocab");
}

int32_t *vocab_encode(const Vocab *v, const uint8_t *text, size_t n, size_t *n_out, const char *origin) {
    int32_t *tok = xmalloc((n + 2) * sizeof(int32_t));
    if (v->spm) {
        *n_out = vocab_spm_encode(v, text, n, tok, true);
        return tok;
    }
    for (size_t i = 0; i < n; i++) {
        int id = v->index[text[i]];
        if (id < 0) {
            free(tok);
            qat_fail("%s: byte 0x%02x at offset %zu is not in the model's vocabulary of %d characters", origin, text[i],
                     i, v->size);
        }
        tok[i] = id;
    }
    *n_out = n;
    return tok;
}

size_t vocab_decode(const Vocab *v, int32_t id, char *buf, size_t cap) {
    if (id < 0 || id >= v->size) return 0;
    if (v->spm) return vocab_spm_decode(v, id, buf, cap);
    if (!cap) return 0;
    buf[0] = (char)v->chars[id];
    return 1;
}
