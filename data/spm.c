/* spm.c: SentencePiece-style BPE vocabularies (llama2.c's tokenizer.bin,
 * GGUF's tokenizer.ggml.model = llama). Encoding is the merge loop that
 * llama.cpp's SPM tokenizer and llama2.c run: the text, with a leading space,
 * starts as one symbol per UTF-8 character; the adjacent pair whose
 * concatenation is the best-scoring piece merges first (the leftmost among
 * equal scores) until no pair is a piece; a final symbol that is not a piece
 * is spelled with the byte-fallback pieces <0xXX>. A priority queue of
 * candidate pairs makes that O(n log n) rather than llama2.c's O(n^2) scans.
 *
 * Pieces are held as llama2.c spells them, with a plain space where
 * SentencePiece writes U+2581; the GGUF reader converts. Everything lives in
 * one allocation owned by the Vocab. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"

static uint32_t fnv1a(const char *s, int n) {
    uint32_t h = 2166136261u;
    for (int i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

int vocab_spm_lookup(const SpmVocab *s, const char *text, int n) {
    uint32_t mask = (uint32_t)s->nslot - 1;
    for (uint32_t k = fnv1a(text, n) & mask;; k = (k + 1) & mask) {
        int id = s->slot[k];
        if (id < 0) return -1;
        if (s->len[id] == n && !memcmp(s->piece[id], text, (size_t)n)) return id;
    }
}

/* "<0xAB>" -> 0xAB, else -1 */
static int byte_piece(const char *p, int n) {
    if (n != 6 || p[0] != '<' || p[1] != '0' || p[2] != 'x' || p[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

void vocab_spm_build(Vocab *v, int n, const char *const *pieces, const int *lens, const float *scores,
                     const int32_t *types, int bos, int eos, int unk, const char *origin) {
    if (n < 1 || n > (1 << 24)) qat_fail("%s: a vocabulary of %d pieces", origin, n);
    if (bos >= n || eos >= n || unk >= n)
        qat_fail("%s: special token ids (bos %d, eos %d, unknown %d) outside the %d pieces", origin, bos, eos, unk, n);
    size_t text = 0;
    for (int i = 0; i < n; i++) {
        if (lens[i] < 0 || lens[i] > 1024) qat_fail("%s: piece %d is %d bytes long", origin, i, lens[i]);
        text += (size_t)lens[i] + 1;
    }
    int nslot = 1;
    while (nslot < 2 * n) nslot *= 2;
    /* one block: the struct, then piece pointers, lengths, scores, types, hash slots, text */
    size_t sz = sizeof(SpmVocab) + (size_t)n * (sizeof(char *) + sizeof(int) + sizeof(float) + sizeof(int32_t)) +
                (size_t)nslot * sizeof(int) + text;
    char *blk = xmalloc(sz);
    SpmVocab *s = (SpmVocab *)(void *)blk;
    char *p = blk + sizeof *s;
    s->piece = (const char **)(void *)p, p += (size_t)n * sizeof(char *);
    s->len = (int *)(void *)p, p += (size_t)n * sizeof(int);
    s->score = (float *)(void *)p, p += (size_t)n * sizeof(float);
    s->type = (int32_t *)(void *)p, p += (size_t)n * sizeof(int32_t);
    s->slot = (int *)(void *)p, p += (size_t)nslot * sizeof(int);
    s->n = n, s->nslot = nslot, s->bos = bos, s->eos = eos, s->unk = unk, s->text_bytes = text;
    for (int k = 0; k < nslot; k++) s->slot[k] = -1;
    for (int b = 0; b < 256; b++) s->byte_id[b] = -1;
    for (int i = 0; i < n; i++) {
        memcpy(p, pieces[i], (size_t)lens[i]);
        p[lens[i]] = '\0';
        s->piece[i] = p;
        s->len[i] = lens[i];
        s->score[i] = scores[i];
        int bv = byte_piece(p, lens[i]);
        s->type[i] = types ? types[i] : bv >= 0 ? SPM_BYTE : i == unk ? SPM_UNKNOWN : i == bos || i == eos ? SPM_CONTROL : SPM_NORMAL;
        if (bv >= 0 && s->type[i] == SPM_BYTE && s->byte_id[bv] < 0) s->byte_id[bv] = i;
        /* the first of equal pieces wins, as in llama.cpp's text-to-token map */
        if (vocab_spm_lookup(s, p, lens[i]) < 0) {
            uint32_t mask = (uint32_t)nslot - 1, k = fnv1a(p, lens[i]) & mask;
            while (s->slot[k] >= 0) k = (k + 1) & mask;
            s->slot[k] = i;
        }
        p += lens[i] + 1;
    }
    memset(v, 0, sizeof *v);
    v->size = n;
    v->spm = s;
    for (int i = 0; i < 256; i++) v->index[i] = -1;
}

/* ---- encoding ---- */

typedef struct Sym {
    int start, len, prev, next;
} Sym;

typedef struct Pair {
    float score;
    int left, right, size;
} Pair;

/* a before b in the queue: the higher score, then the leftmost */
static bool pair_before(const Pair *a, const Pair *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

typedef struct Heap {
    Pair *a;
    size_t n, cap;
} Heap;

static void heap_push(Heap *h, Pair p) {
    if (h->n == h->cap) {
        h->cap = h->cap ? 2 * h->cap : 64;
        Pair *na = realloc(h->a, h->cap * sizeof(Pair));
        if (!na) qat_fail("tokenizer: out of memory");
        h->a = na;
    }
    size_t i = h->n++;
    while (i > 0 && pair_before(&p, &h->a[(i - 1) / 2])) {
        h->a[i] = h->a[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->a[i] = p;
}

static Pair heap_pop(Heap *h) {
    Pair top = h->a[0], last = h->a[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && pair_before(&h->a[c + 1], &h->a[c])) c++;
        if (!pair_before(&h->a[c], &last)) break;
        h->a[i] = h->a[c];
        i = c;
    }
    if (h->n) h->a[i] = last;
    return top;
}

static void try_pair(const SpmVocab *s, const char *text, const Sym *sym, int l, int r, Heap *h) {
    if (l < 0 || r < 0) return;
    int id = vocab_spm_lookup(s, text + sym[l].start, sym[l].len + sym[r].len);
    if (id >= 0) heap_push(h, (Pair){s->score[id], l, r, sym[l].len + sym[r].len});
}

/* UTF-8 length from the lead byte; stray continuation bytes stand alone */
static int utf8_len(uint8_t c) { return c < 0xC0 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4; }

size_t vocab_spm_encode(const Vocab *v, const uint8_t *in, size_t n, int32_t *out, bool bos) {
    const SpmVocab *s = v->spm;
    size_t k = 0;
    if (bos) out[k++] = s->bos;
    if (n == 0) return k;
    /* the leading space SentencePiece adds (its add_dummy_prefix) */
    char *text = xmalloc(n + 1);
    text[0] = ' ';
    memcpy(text + 1, in, n);
    int len = (int)(n + 1);
    Sym *sym = xmalloc((size_t)len * sizeof(Sym));
    int ns = 0;
    for (int i = 0; i < len;) {
        int l = utf8_len((uint8_t)text[i]);
        if (l > len - i) l = len - i;
        sym[ns] = (Sym){i, l, ns - 1, -1};
        if (ns) sym[ns - 1].next = ns;
        ns++;
        i += l;
    }
    Heap h = {0};
    for (int i = 0; i + 1 < ns; i++) try_pair(s, text, sym, i, i + 1, &h);
    while (h.n) {
        Pair p = heap_pop(&h);
        Sym *a = &sym[p.left], *b = &sym[p.right];
        if (!a->len || !b->len || a->len + b->len != p.size) continue; /* stale: a side merged since */
        a->len += b->len;
        b->len = 0;
        a->next = b->next;
        if (a->next >= 0) sym[a->next].prev = p.left;
        try_pair(s, text, sym, a->prev, p.left, &h);
        try_pair(s, text, sym, p.left, a->next, &h);
    }
    for (int i = 0; i >= 0 && i < ns; i = sym[i].next) {
        int id = vocab_spm_lookup(s, text + sym[i].start, sym[i].len);
        if (id >= 0) {
            out[k++] = id;
            continue;
        }
        for (int j = 0; j < sym[i].len; j++) {
            int b = s->byte_id[(uint8_t)text[sym[i].start + j]];
            out[k++] = b >= 0 ? b : s->unk;
        }
    }
    free(h.a);
    free(sym);
    free(text);
    return k;
}

size_t vocab_spm_decode(const Vocab *v, int32_t id, char *buf, size_t cap) {
    const SpmVocab *s = v->spm;
    if (s->type[id] == SPM_CONTROL || s->type[id] == SPM_UNKNOWN) return 0;
    int b = s->type[id] == SPM_BYTE ? byte_piece(s->piece[id], s->len[id]) : -1;
    if (b >= 0) {
        if (cap) buf[0] = (char)b;
        return cap ? 1 : 0;
    }
    size_t n = (size_t)s->len[id] < cap ? (size_t)s->len[id] : cap;
    memcpy(buf, s->piece[id], n);
    return n;
}
