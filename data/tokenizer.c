/* tokenizer.c: char-level and byte-level vocabularies. The char vocab is
 * built on bytes, so for ASCII text it is exactly the set of characters. */
#include <stdlib.h>
#include <string.h>

#include "data.h"

static void vocab_index(Vocab *v) {
    for (int i = 0; i < 256; i++) v->index[i] = -1;
    for (int i = 0; i < v->size; i++) v->index[v->chars[i]] = (int16_t)i;
}

void vocab_build_char(Vocab *v, const uint8_t *text, size_t n) {
    bool seen[256] = {false};
    for (size_t i = 0; i < n; i++) seen[text[i]] = true;
    v->size = 0;
    v->is_byte = false;
    for (int c = 0; c < 256; c++)
        if (seen[c]) v->chars[v->size++] = (uint8_t)c;
    vocab_index(v);
}

void vocab_build_byte(Vocab *v) {
    v->size = 256;
    v->is_byte = true;
    for (int c = 0; c < 256; c++) v->chars[c] = (uint8_t)c;
    vocab_index(v);
}

void vocab_from_chars(Vocab *v, const uint8_t *chars, int n) {
    v->size = n;
    v->is_byte = n == 256;
    memcpy(v->chars, chars, (size_t)n);
    vocab_index(v);
}

int32_t *vocab_encode(const Vocab *v, const uint8_t *text, size_t n, const char *origin) {
    int32_t *tok = xmalloc((n ? n : 1) * sizeof(int32_t));
    for (size_t i = 0; i < n; i++) {
        int id = v->index[text[i]];
        if (id < 0) {
            free(tok);
            qat_fail("%s: byte 0x%02x at offset %zu is not in the model's vocabulary of %d characters", origin, text[i],
                     i, v->size);
        }
        tok[i] = id;
    }
    return tok;
}

void vocab_decode(const Vocab *v, const int32_t *tok, size_t n, char *out) {
    for (size_t i = 0; i < n; i++) out[i] = (char)v->chars[tok[i]];
}
