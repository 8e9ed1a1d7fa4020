/* gguf.c: the GGUF writer (see gguf.h). Everything little-endian, as GGUF
 * requires and as x86-64 and arm64 store it. */
#include "gguf.h"

#include <math.h>
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

void gguf_kv_f32_array(GgufWriter *w, const char *key, size_t n, const float *values) {
    kv_head(w, key, GGUF_ARRAY);
    PUT(w, kv, (uint32_t)GGUF_FLOAT32);
    PUT(w, kv, (uint64_t)n);
    put(&w->kv, &w->kv_len, &w->kv_cap, values, n * sizeof(float));
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

/* ---- reading ---- */

#include <stdio.h>
#include <sys/stat.h>

typedef struct Cur {
    const GgufFile *f;
    size_t at;
} Cur;

static _Noreturn void bad(const GgufFile *f, const char *what) { qat_fail("%s: not a valid GGUF file: %s", f->path, what); }

static const uint8_t *take(Cur *c, size_t n, const char *what) {
    if (n > c->f->size - c->at) bad(c->f, what);
    const uint8_t *p = c->f->img + c->at;
    c->at += n;
    return p;
}

static uint64_t take_u64(Cur *c, const char *what) {
    uint64_t v;
    memcpy(&v, take(c, 8, what), 8);
    return v;
}

static uint32_t take_u32(Cur *c, const char *what) {
    uint32_t v;
    memcpy(&v, take(c, 4, what), 4);
    return v;
}

static size_t scalar_size(uint32_t t) {
    static const size_t sz[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t < sizeof sz / sizeof *sz ? sz[t] : 0;
}

/* skips one value of type t (not an array) */
static void skip_value(Cur *c, uint32_t t, const char *what) {
    if (t == GGUF_STRING) {
        uint64_t n = take_u64(c, what);
        take(c, n, what);
    } else if (scalar_size(t)) {
        take(c, scalar_size(t), what);
    } else {
        bad(c->f, what);
    }
}

size_t gguf_type_bytes(uint32_t type, int64_t ne0, int64_t rest) {
    size_t n = (size_t)ne0 * (size_t)rest;
    switch (type) {
    case GGML_TYPE_F32: return n * 4;
    case GGML_TYPE_F16: return n * 2;
    case GGML_TYPE_BF16: return n * 2;
    case GGML_TYPE_Q8_0: return ne0 % QBLOCK_GGUF ? 0 : n / QBLOCK_GGUF * 34;
    case GGML_TYPE_Q4_0: return ne0 % QBLOCK_GGUF ? 0 : n / QBLOCK_GGUF * 18;
    case GGML_TYPE_Q4_1: return ne0 % QBLOCK_GGUF ? 0 : n / QBLOCK_GGUF * 20;
    case GGML_TYPE_IQ4_NL: return ne0 % QBLOCK_GGUF ? 0 : n / QBLOCK_GGUF * 18;
    default: return 0;
    }
}

bool gguf_is_file(const char *path) {
    /* a FIFO would block the probe; the loader then says what path is */
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return false;
    FILE *fp = fopen(path, "rb");
    if (!fp) return false;
    char m[4] = {0};
    bool yes = fread(m, 1, 4, fp) == 4 && !memcmp(m, "GGUF", 4);
    fclose(fp);
    return yes;
}

static void parse(void *p) {
    GgufFile *f = p;
    const char *path = f->path;
    Cur c = {f, 0};
    if (f->size < 24 || memcmp(f->img, "GGUF", 4)) bad(f, "no GGUF magic");
    c.at = 4;
    uint32_t version = take_u32(&c, "header");
    /* v2 and v3 share the layout (v3 added big-endian files, which qat does not read) */
    if (version != 2 && version != 3) qat_fail("%s: GGUF version %u; qat reads versions 2 and 3", path, version);
    uint64_t n_t = take_u64(&c, "header"), n_kv = take_u64(&c, "header");
    /* every entry takes at least 16 bytes: counts beyond that are lies */
    if (n_t > f->size / 16 || n_kv > f->size / 16) bad(f, "tensor or key count larger than the file");
    f->kv = xcalloc(n_kv ? n_kv : 1, sizeof *f->kv);
    f->t = xcalloc(n_t ? n_t : 1, sizeof *f->t);
    for (uint64_t i = 0; i < n_kv; i++) {
        GgufKV *kv = &f->kv[i];
        kv->key_len = take_u64(&c, "a key");
        kv->key = (const char *)take(&c, kv->key_len, "a key");
        f->n_kv = i + 1;
        char what[160];
        snprintf(what, sizeof what, "the value of %.*s", (int)(kv->key_len < 100 ? kv->key_len : 100), kv->key);
        kv->type = take_u32(&c, what);
        kv->val = f->img + c.at;
        if (kv->type == GGUF_ARRAY) {
            kv->arr_type = take_u32(&c, what);
            kv->n = take_u64(&c, what);
            if (kv->arr_type == GGUF_ARRAY) bad(f, "nested arrays");
            if (kv->n > f->size) bad(f, what);
            kv->val = f->img + c.at;
            for (uint64_t k = 0; k < kv->n; k++) skip_value(&c, kv->arr_type, what);
        } else {
            skip_value(&c, kv->type, what);
        }
    }
    for (uint64_t i = 0; i < n_t; i++) {
        GgufTensor *t = &f->t[i];
        uint64_t nl = take_u64(&c, "a tensor name");
        const uint8_t *name = take(&c, nl, "a tensor name");
        if (nl == 0 || nl >= sizeof t->name) bad(f, "a tensor name is empty or longer than 95 bytes");
        memcpy(t->name, name, nl);
        f->n_t = i + 1;
        char what[160];
        snprintf(what, sizeof what, "tensor %s", t->name);
        t->nd = (int)take_u32(&c, what);
        if (t->nd < 1 || t->nd > 4) qat_fail("%s: tensor %s has %d dimensions (1..4)", path, t->name, t->nd);
        int64_t rest = 1;
        for (int d = 0; d < t->nd; d++) {
            uint64_t ne = take_u64(&c, what);
            if (ne < 1 || ne > (1u << 30)) qat_fail("%s: tensor %s has a dimension of %llu", path, t->name,
                                                   (unsigned long long)ne);
            t->ne[d] = (int64_t)ne;
            if (d) rest *= (int64_t)ne;
            if (rest > (int64_t)1 << 40) qat_fail("%s: tensor %s is larger than any file", path, t->name);
        }
        t->type = take_u32(&c, what);
        uint64_t off = take_u64(&c, what);
        t->bytes = gguf_type_bytes(t->type, t->ne[0], rest);
        if (!t->bytes) qat_fail("%s: tensor %s has ggml type %u with rows of %lld (qat reads f32, f16, bf16, q8_0, q4_0, q4_1)",
                                path, t->name, t->type, (long long)t->ne[0]);
        if (off % GGUF_ALIGNMENT) qat_fail("%s: tensor %s is not aligned to %d bytes", path, t->name, GGUF_ALIGNMENT);
        t->data = (const uint8_t *)(uintptr_t)off; /* relative until the data section is known */
        for (uint64_t k = 0; k < i; k++)
            if (!strcmp(f->t[k].name, t->name)) qat_fail("%s: tensor %s appears twice", path, t->name);
    }
    size_t data0 = (c.at + GGUF_ALIGNMENT - 1) / GGUF_ALIGNMENT * GGUF_ALIGNMENT;
    if (data0 > f->size) bad(f, "no data section");
    for (size_t i = 0; i < f->n_t; i++) {
        GgufTensor *t = &f->t[i];
        size_t off = (size_t)(uintptr_t)t->data;
        if (off > f->size - data0 || t->bytes > f->size - data0 - off)
            qat_fail("%s: tensor %s lies beyond the end of the file (truncated?)", path, t->name);
        t->data = f->img + data0 + off;
    }
}

void gguf_read(GgufFile *f, const char *path) {
    memset(f, 0, sizeof *f);
    f->path = path;
    f->img = (uint8_t *)xread_file(path, &f->size);
    /* a bad file frees its image and tables before the one-line error */
    char msg[1024];
    if (!qat_try(parse, f, msg, sizeof msg)) {
        gguf_free(f);
        qat_fail("%s", msg);
    }
}

void gguf_free(GgufFile *f) {
    free(f->img), free(f->kv), free(f->t);
    memset(f, 0, sizeof *f);
}

const GgufKV *gguf_find_kv(const GgufFile *f, const char *key) {
    size_t n = strlen(key);
    for (size_t i = 0; i < f->n_kv; i++)
        if (f->kv[i].key_len == n && !memcmp(f->kv[i].key, key, n)) return &f->kv[i];
    return NULL;
}

static const GgufKV *need(const GgufFile *f, const char *key, uint32_t type) {
    const GgufKV *kv = gguf_find_kv(f, key);
    if (!kv) qat_fail("%s: GGUF key %s is missing", f->path, key);
    if (kv->type != type) qat_fail("%s: GGUF key %s has value type %u, not %u", f->path, key, kv->type, type);
    return kv;
}

uint32_t gguf_get_u32(const GgufFile *f, const char *key) {
    uint32_t v;
    memcpy(&v, need(f, key, GGUF_UINT32)->val, 4);
    return v;
}

float gguf_get_f32(const GgufFile *f, const char *key) {
    float v;
    memcpy(&v, need(f, key, GGUF_FLOAT32)->val, 4);
    return v;
}

char *gguf_get_str(const GgufFile *f, const char *key) {
    const GgufKV *kv = need(f, key, GGUF_STRING);
    uint64_t n;
    memcpy(&n, kv->val, 8);
    char *s = xmalloc((size_t)n + 1);
    memcpy(s, kv->val + 8, (size_t)n);
    s[n] = '\0';
    return s;
}

uint32_t gguf_get_uint(const GgufFile *f, const char *key) {
    const GgufKV *kv = gguf_find_kv(f, key);
    if (!kv) qat_fail("%s: GGUF key %s is missing", f->path, key);
    uint64_t v = 0;
    switch (kv->type) {
    case GGUF_UINT32: { uint32_t u; memcpy(&u, kv->val, 4); v = u; break; }
    case GGUF_INT32: { int32_t i; memcpy(&i, kv->val, 4); if (i < 0) goto bad; v = (uint64_t)i; break; }
    case GGUF_UINT64: memcpy(&v, kv->val, 8); break;
    case GGUF_INT64: { int64_t i; memcpy(&i, kv->val, 8); if (i < 0) goto bad; v = (uint64_t)i; break; }
    default: qat_fail("%s: GGUF key %s has value type %u, not an integer", f->path, key, kv->type);
    }
    if (v > UINT32_MAX) goto bad;
    return (uint32_t)v;
bad:
    qat_fail("%s: GGUF key %s is out of range", f->path, key);
}

void gguf_get_array(const GgufFile *f, const char *key, uint32_t type, uint64_t n, void *out) {
    const GgufKV *kv = gguf_find_kv(f, key);
    if (!kv) qat_fail("%s: GGUF key %s is missing", f->path, key);
    if (kv->type != GGUF_ARRAY || kv->arr_type != type || kv->n != n)
        qat_fail("%s: GGUF key %s is not an array of %llu values of type %u", f->path, key, (unsigned long long)n, type);
    memcpy(out, kv->val, (size_t)n * 4); /* 4-byte element types only (f32, i32, u32) */
}

void gguf_array_strs(const GgufFile *f, const GgufKV *kv, const char **s, size_t *lens) {
    if (kv->type != GGUF_ARRAY || kv->arr_type != GGUF_STRING)
        qat_fail("%s: GGUF key %.*s is not an array of strings", f->path, (int)kv->key_len, kv->key);
    const uint8_t *p = kv->val;
    for (uint64_t k = 0; k < kv->n; k++) {
        uint64_t n;
        memcpy(&n, p, 8);
        s[k] = (const char *)p + 8, lens[k] = (size_t)n;
        p += 8 + n;
    }
}

const char *gguf_array_str(const GgufFile *f, const GgufKV *kv, uint64_t i, size_t *len) {
    if (kv->type != GGUF_ARRAY || kv->arr_type != GGUF_STRING || i >= kv->n)
        qat_fail("%s: GGUF key %.*s is not an array of at least %llu strings", f->path, (int)kv->key_len, kv->key,
                 (unsigned long long)i + 1);
    const uint8_t *p = kv->val; /* bounds were checked by gguf_read */
    for (uint64_t k = 0;; k++) {
        uint64_t n;
        memcpy(&n, p, 8);
        if (k == i) {
            *len = (size_t)n;
            return (const char *)p + 8;
        }
        p += 8 + n;
    }
}

const GgufTensor *gguf_find_tensor(const GgufFile *f, const char *name) {
    for (size_t i = 0; i < f->n_t; i++)
        if (!strcmp(f->t[i].name, name)) return &f->t[i];
    return NULL;
}

const char *ggml_type_name(uint32_t type, char *buf, size_t n) {
    switch (type) {
    case GGML_TYPE_F32: return "f32";
    case GGML_TYPE_F16: return "f16";
    case GGML_TYPE_BF16: return "bf16";
    case GGML_TYPE_Q8_0: return "q8_0";
    case GGML_TYPE_Q4_0: return "q4_0";
    case GGML_TYPE_Q4_1: return "q4_1";
    case GGML_TYPE_IQ4_NL: return "iq4_nl";
    default: snprintf(buf, n, "type %u", type); return buf;
    }
}

/* One scalar of type t at p (bounds checked by gguf_read) as JSON; sets
 * *used to the bytes it took. 64-bit integers become doubles, exact up to
 * 2^53 (no GGUF key qat meets comes near). */
static cJSON *scalar_json(uint32_t t, const uint8_t *p, size_t *used) {
    uint8_t b[8];
    memcpy(b, p, scalar_size(t) ? scalar_size(t) : 8);
    *used = scalar_size(t);
    switch (t) {
    case GGUF_UINT8: return cJSON_CreateNumber(b[0]);
    case GGUF_INT8: return cJSON_CreateNumber((int8_t)b[0]);
    case GGUF_BOOL: return cJSON_CreateBool(b[0]);
    case GGUF_UINT16: { uint16_t v; memcpy(&v, b, 2); return cJSON_CreateNumber(v); }
    case GGUF_INT16: { int16_t v; memcpy(&v, b, 2); return cJSON_CreateNumber(v); }
    case GGUF_UINT32: { uint32_t v; memcpy(&v, b, 4); return cJSON_CreateNumber(v); }
    case GGUF_INT32: { int32_t v; memcpy(&v, b, 4); return cJSON_CreateNumber(v); }
    case GGUF_FLOAT32: { float v; memcpy(&v, b, 4); return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull(); }
    case GGUF_UINT64: { uint64_t v; memcpy(&v, b, 8); return cJSON_CreateNumber((double)v); }
    case GGUF_INT64: { int64_t v; memcpy(&v, b, 8); return cJSON_CreateNumber((double)v); }
    case GGUF_FLOAT64: { double v; memcpy(&v, b, 8); return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull(); }
    case GGUF_STRING: {
        uint64_t n;
        memcpy(&n, p, 8);
        *used = 8 + (size_t)n;
        char *s = xmalloc((size_t)n + 1);
        memcpy(s, p + 8, (size_t)n);
        s[n] = '\0'; /* a NUL inside the value ends it here: JSON strings are C strings to cJSON */
        cJSON *j = cJSON_CreateString(s);
        free(s);
        return j;
    }
    default: return cJSON_CreateNull();
    }
}

static const char *value_type_name(uint32_t t) {
    static const char *names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr", "u64", "i64", "f64"};
    return t < sizeof names / sizeof *names ? names[t] : "?";
}

cJSON *gguf_kv_json(const GgufKV *kv, size_t max_elems) {
    size_t used;
    if (kv->type != GGUF_ARRAY) return scalar_json(kv->type, kv->val, &used);
    cJSON *o = cJSON_CreateObject(), *head = cJSON_CreateArray();
    cJSON_AddStringToObject(o, "array_of", value_type_name(kv->arr_type));
    cJSON_AddNumberToObject(o, "n", (double)kv->n);
    const uint8_t *p = kv->val;
    for (uint64_t i = 0; i < kv->n && i < max_elems; i++, p += used) cJSON_AddItemToArray(head, scalar_json(kv->arr_type, p, &used));
    cJSON_AddItemToObject(o, "head", head);
    return o;
}
