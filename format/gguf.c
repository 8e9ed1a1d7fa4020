/* gguf.c: the GGUF writer (see gguf.h). Everything little-endian, as GGUF
 * requires and as x86-64 and arm64 store it. */
#include "gguf.h"

#include <stdlib.h>
#include <string.h>

#include "util/util.h"

static void put(uint8_t **buf, size_t *len, size_t *cap, const void *p, size_t n) {
    if (*len + n > *cap) {
        *cap = (*len + n) * 2 + 256;
        *buf = xrealloc(*buf, *cap);
    }
    memcpy(*buf + *len, p, n);
    *len += n;
}

#define PUT(w, field, v)                                                   \
    do {                                                                   \
        __typeof__(v) tmp_ = (v);                                          \
        put(&(w)->field, &(w)->field##_len, &(w)->field##_cap, &tmp_, sizeof tmp_); \
    } while (0)

static void put_str(uint8_t **buf, size_t *len, size_t *cap, const char *s, size_t n) {
    uint64_t l = n;
    put(buf, len, cap, &l, 8);
    put(buf, len, cap, s, n);
}

static void kv_head(GgufWriter *w, const char *key, uint32_t type) {
    put_str(&w->kv, &w->kv_len, &w->kv_cap, key, strlen(key));
    PUT(w, kv, type);
    w->n_kv++;
}

void gguf_writer_init(GgufWriter *w) { memset(w, 0, sizeof *w); }

void gguf_writer_free(GgufWriter *w) {
    for (uint64_t i = 0; i < w->n_tensors; i++) free(w->data[i]);
    free(w->data), free(w->bytes), free(w->kv), free(w->info);
    memset(w, 0, sizeof *w);
}

void gguf_kv_str(GgufWriter *w, const char *key, const char *value) {
    kv_head(w, key, GGUF_STRING);
    put_str(&w->kv, &w->kv_len, &w->kv_cap, value, strlen(value));
}

void gguf_kv_u32(GgufWriter *w, const char *key, uint32_t value) {
    kv_head(w, key, GGUF_UINT32);
    PUT(w, kv, value);
}

void gguf_kv_f32(GgufWriter *w, const char *key, float value) {
    kv_head(w, key, GGUF_FLOAT32);
    PUT(w, kv, value);
}

void gguf_kv_bool(GgufWriter *w, const char *key, bool value) {
    kv_head(w, key, GGUF_BOOL);
    PUT(w, kv, (uint8_t)(value ? 1 : 0));
}

void gguf_kv_str_array(GgufWriter *w, const char *key, size_t n, const char *const *values, const size_t *lens) {
    kv_head(w, key, GGUF_ARRAY);
    PUT(w, kv, (uint32_t)GGUF_STRING);
    PUT(w, kv, (uint64_t)n);
    for (size_t i = 0; i < n; i++) put_str(&w->kv, &w->kv_len, &w->kv_cap, values[i], lens[i]);
}

void gguf_kv_i32_array(GgufWriter *w, const char *key, size_t n, const int32_t *values) {
    kv_head(w, key, GGUF_ARRAY);
    PUT(w, kv, (uint32_t)GGUF_INT32);
    PUT(w, kv, (uint64_t)n);
    put(&w->kv, &w->kv_len, &w->kv_cap, values, n * sizeof(int32_t));
}

void gguf_add_tensor(GgufWriter *w, const char *name, int nd, const int64_t *ne, int type, const void *data,
                     size_t bytes) {
    put_str(&w->info, &w->info_len, &w->info_cap, name, strlen(name));
    PUT(w, info, (uint32_t)nd);
    for (int d = 0; d < nd; d++) PUT(w, info, (uint64_t)ne[d]);
    PUT(w, info, (uint32_t)type);
    PUT(w, info, w->offset);
    w->data = xrealloc(w->data, (size_t)(w->n_tensors + 1) * sizeof *w->data);
    w->bytes = xrealloc(w->bytes, (size_t)(w->n_tensors + 1) * sizeof *w->bytes);
    w->data[w->n_tensors] = xmalloc(bytes ? bytes : 1);
    memcpy(w->data[w->n_tensors], data, bytes);
    w->bytes[w->n_tensors] = bytes;
    w->n_tensors++;
    w->offset += (bytes + GGUF_ALIGNMENT - 1) / GGUF_ALIGNMENT * GGUF_ALIGNMENT;
}

size_t gguf_write(GgufWriter *w, const char *path) {
    size_t head = 4 + 4 + 8 + 8 + w->kv_len + w->info_len;
    size_t data0 = (head + GGUF_ALIGNMENT - 1) / GGUF_ALIGNMENT * GGUF_ALIGNMENT, total = data0 + w->offset;
    uint8_t *out = xcalloc(total, 1); /* zero padding */
    size_t k = 0;
    uint32_t magic = 0x46554747u, version = 3; /* "GGUF" */
    memcpy(out + k, &magic, 4), k += 4;
    memcpy(out + k, &version, 4), k += 4;
    memcpy(out + k, &w->n_tensors, 8), k += 8;
    memcpy(out + k, &w->n_kv, 8), k += 8;
    memcpy(out + k, w->kv, w->kv_len), k += w->kv_len;
    memcpy(out + k, w->info, w->info_len);
    size_t off = data0;
    for (uint64_t i = 0; i < w->n_tensors; i++) {
        memcpy(out + off, w->data[i], w->bytes[i]);
        off += (w->bytes[i] + GGUF_ALIGNMENT - 1) / GGUF_ALIGNMENT * GGUF_ALIGNMENT;
    }
    xwrite_file_atomic(path, out, total);
    free(out);
    return total;
}
