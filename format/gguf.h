/* gguf.h: GGUF version 3, the file format llama.cpp loads, written and read
 * by qat's own code (the layout from llama.cpp's gguf documentation, written
 * anew). A file is a header (magic "GGUF", version, tensor count, key-value
 * count), typed key-value metadata, tensor descriptions (name, dimensions
 * innermost first, ggml type, offset), then the tensor data, each tensor
 * aligned to general.alignment (32 bytes). */
#ifndef QAT_GGUF_H
#define QAT_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ggml tensor types qat writes */
enum { GGML_TYPE_F32 = 0, GGML_TYPE_F16 = 1, GGML_TYPE_Q4_0 = 2, GGML_TYPE_Q4_1 = 3, GGML_TYPE_Q8_0 = 8 };
/* GGUF metadata value types */
enum {
    GGUF_UINT8 = 0, GGUF_INT8, GGUF_UINT16, GGUF_INT16, GGUF_UINT32, GGUF_INT32, GGUF_FLOAT32, GGUF_BOOL,
    GGUF_STRING, GGUF_ARRAY, GGUF_UINT64, GGUF_INT64, GGUF_FLOAT64
};
#define GGUF_ALIGNMENT 32

typedef struct GgufWriter {
    /* metadata, serialised as it is added */
    uint8_t *kv;
    size_t kv_len, kv_cap;
    uint64_t n_kv;
    /* tensors: descriptions serialised as added, data kept until the save */
    uint8_t *info;
    size_t info_len, info_cap;
    uint64_t n_tensors;
    uint8_t **data;
    size_t *bytes;
    uint64_t offset; /* of the next tensor in the data section */
} GgufWriter;

void gguf_writer_init(GgufWriter *w);
void gguf_writer_free(GgufWriter *w);
void gguf_kv_str(GgufWriter *w, const char *key, const char *value);
void gguf_kv_u32(GgufWriter *w, const char *key, uint32_t value);
void gguf_kv_f32(GgufWriter *w, const char *key, float value);
void gguf_kv_bool(GgufWriter *w, const char *key, bool value);
/* Arrays: n strings (each of the given length), or n int32s. */
void gguf_kv_str_array(GgufWriter *w, const char *key, size_t n, const char *const *values, const size_t *lens);
void gguf_kv_i32_array(GgufWriter *w, const char *key, size_t n, const int32_t *values);
/* A tensor of ggml type with dims ne[0..nd) (ne[0] the row length); data of
 * bytes bytes is copied. */
void gguf_add_tensor(GgufWriter *w, const char *name, int nd, const int64_t *ne, int type, const void *data,
                     size_t bytes);
/* Writes the file atomically (PATH.tmp, then rename); returns its size. */
size_t gguf_write(GgufWriter *w, const char *path);

#endif
