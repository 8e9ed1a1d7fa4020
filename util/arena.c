/* arena.c: chunked bump allocator that settles into one chunk after a step. */
#include "util.h"

#include <stdlib.h>
#include <string.h>

#define ARENA_ALIGN 64

struct ArenaChunk {
    ArenaChunk *next;
    size_t cap, used;
    char *mem;
};

static ArenaChunk *chunk_new(size_t cap) {
    ArenaChunk *c = xmalloc(sizeof *c);
    c->next = NULL;
    c->cap = cap;
    c->used = 0;
    c->mem = aligned_alloc(ARENA_ALIGN, (cap + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN);
    if (!c->mem) {
        fprintf(stderr, "qat: out of memory allocating an arena of %zu bytes\n", cap);
        exit(1);
    }
    return c;
}

static void free_chunks(ArenaChunk *c) {
    while (c) {
        ArenaChunk *n = c->next;
        free(c->mem);
        free(c);
        c = n;
    }
}

void arena_init(Arena *a, size_t initial_bytes) {
    memset(a, 0, sizeof *a);
    if (initial_bytes < 4096) initial_bytes = 4096;
    a->head = chunk_new(initial_bytes);
    a->n_chunk_allocs = 1;
}

void *arena_alloc(Arena *a, size_t bytes) {
    size_t need = (bytes + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    if (need == 0) need = ARENA_ALIGN;
    ArenaChunk *c = a->head;
    if (c->used + need > c->cap) {
        size_t cap = c->cap * 2 > need ? c->cap * 2 : need;
        ArenaChunk *n = chunk_new(cap);
        n->next = c;
        a->head = c = n;
        a->n_chunk_allocs++;
    }
    void *p = c->mem + c->used;
    c->used += need;
    a->used_total += need;
    if (a->used_total > a->peak) a->peak = a->used_total;
    return p;
}

void *arena_calloc(Arena *a, size_t bytes) {
    void *p = arena_alloc(a, bytes);
    memset(p, 0, bytes);
    return p;
}

void arena_reset(Arena *a) {
    if (a->head->next) {
        /* Several chunks were needed: replace them by one that fits the peak. */
        free_chunks(a->head);
        a->head = chunk_new(a->peak);
        a->n_chunk_allocs++;
    }
    a->head->used = 0;
    a->used_total = 0;
}

void arena_free(Arena *a) {
    free_chunks(a->head);
    memset(a, 0, sizeof *a);
}
