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
#include <stdio.h>

#include <cJSON.h>

/* ggml tensor types qat writes */
enum { GGML_TYPE_F32 = 0, GGML_TYPE_F16 = 1, GGML_TYPE_Q4_0 = 2, GGML_TYPE_Q4_1 = 3, GGML_TYPE_Q8_0 = 8, GGML_TYPE_IQ4_NL = 20, GGML_TYPE_BF16 = 30 };
/* GGUF metadata value types */
enum {
    GGUF_UINT8 = 0, GGUF_INT8, GGUF_UINT16, GGUF_INT16, GGUF_UINT32, GGUF_INT32, GGUF_FLOAT32, GGUF_BOOL,
    GGUF_STRING, GGUF_ARRAY, GGUF_UINT64, GGUF_INT64, GGUF_FLOAT64
};
#define GGUF_ALIGNMENT 32
#define QBLOCK_GGUF 32 /* elements per q8_0/q4_0/q4_1/iq4_nl block */

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
void gguf_kv_f32_array(GgufWriter *w, const char *key, size_t n, const float *values);
/* A tensor of ggml type with dims ne[0..nd) (ne[0] the row length); data of
 * bytes bytes is copied. */
void gguf_add_tensor(GgufWriter *w, const char *name, int nd, const int64_t *ne, int type, const void *data,
                     size_t bytes);
/* Writes the file atomically (PATH.tmp, then rename); returns its size. */
size_t gguf_write(GgufWriter *w, const char *path);

#endif

/* ---- reading ---- */

typedef struct GgufKV {
    const char *key; /* not NUL-terminated: key_len bytes */
    size_t key_len;
    uint32_t type, arr_type; /* arr_type and n: arrays */
    uint64_t n;
    const uint8_t *val; /* the value's bytes in the file image */
} GgufKV;

typedef struct GgufTensor {
    char name[96];
    int nd;
    int64_t ne[4];
    uint32_t type;
    const uint8_t *data;
    size_t bytes;
} GgufTensor;

typedef struct GgufFile {
    const char *path;
    uint8_t *img; /* the whole file */
    size_t size;
    GgufKV *kv;
    size_t n_kv;
    GgufTensor *t;
    size_t n_t;
} GgufFile;

/* True when path starts with GGUF's magic. */
bool gguf_is_file(const char *path);
/* Reads and checks the whole structure (bounds of every string, array and
 * tensor, known types, sizes that match the types, aligned offsets); any
 * fault is one line naming the file and the key or tensor. */
void gguf_read(GgufFile *f, const char *path);
void gguf_free(GgufFile *f);
const GgufKV *gguf_find_kv(const GgufFile *f, const char *key);
/* Typed getters: fail naming the key when missing or of another type. */
uint32_t gguf_get_u32(const GgufFile *f, const char *key);
float gguf_get_f32(const GgufFile *f, const char *key);
/* Any non-negative integer type that fits 32 bits (files differ in which they write). */
uint32_t gguf_get_uint(const GgufFile *f, const char *key);
/* n values of an array of a 4-byte type (GGUF_FLOAT32, GGUF_INT32, GGUF_UINT32). */
void gguf_get_array(const GgufFile *f, const char *key, uint32_t type, uint64_t n, void *out);
/* Every string of an array: pointers into the image and lengths (kv->n each). */
void gguf_array_strs(const GgufFile *f, const GgufKV *kv, const char **s, size_t *lens);
/* malloc'd copy of a string value */
char *gguf_get_str(const GgufFile *f, const char *key);
/* String i of an array of strings: pointer into the image and its length. */
const char *gguf_array_str(const GgufFile *f, const GgufKV *kv, uint64_t i, size_t *len);
const GgufTensor *gguf_find_tensor(const GgufFile *f, const char *name);
/* A metadata value as JSON: a scalar as its number, bool or string; an array
 * as {"array_of": type, "n": length, "head": [its first max_elems values]}. */
cJSON *gguf_kv_json(const GgufKV *kv, size_t max_elems);
/* "f32", "f16", "q8_0", "q4_0", "q4_1", or "type N". */
const char *ggml_type_name(uint32_t type, char *buf, size_t n);
/* Bytes of a tensor of type with ne[0] x rest elements, 0 for an unknown type. */
size_t gguf_type_bytes(uint32_t type, int64_t ne0, int64_t rest);
