/* teacher.c: sampled fine-tuning data and its cache. The cache is keyed by
 * a CRC-32 of the teacher's weights and every sampling setting, so a
 * different model or setting resamples instead of reusing stale data. */
#include "teacher.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "train/sample.h"
#include "train/trainer.h"
#include "util/h5io.h"

#define TEACHER_FORMAT "qat-teacher-data"

static void cache_key(const InferModel *m, const Config *cfg, char *key, size_t n) {
    size_t floats = 0;
    for (int i = 0; i < m->n_ft; i++) floats += (size_t)m->ft[i].shape[0] * m->ft[i].shape[1];
    uLong c = crc32(0L, Z_NULL, 0);
    const Bytef *p = (const Bytef *)m->fdata;
    for (size_t left = floats * sizeof(float); left;) { /* crc32 takes a uInt length */
        uInt k = left > (1u << 30) ? 1u << 30 : (uInt)left;
        c = crc32(c, p, k), p += k, left -= k;
    }
    snprintf(key, n, "weights crc32 %08lx, vocab %d, %d sequences of %d, temperature %g, top_k %d, seed %d", c,
             m->cfg.vocab_size, cfg->data.teacher_sequences, cfg->model.block_size, cfg->data.teacher_temperature,
             cfg->data.teacher_top_k, cfg->data.teacher_seed);
}

/* The cached stream when cache holds exactly key's, else NULL. */
static int32_t *cache_read(const char *cache, const char *key, size_t want, int V) {
    if (access(cache, R_OK) != 0) return NULL;
    hid_t f = h5in_open(cache);
    char *fmt = h5_read_attr_str(f, cache, "format"), *k = h5_read_attr_str(f, cache, "key");
    bool same = !strcmp(fmt, TEACHER_FORMAT) && !strcmp(k, key);
    free(fmt), free(k);
    int32_t *tok = NULL;
    if (same) {
        tok = xmalloc(want * sizeof(int32_t));
        h5_read_checked(f, cache, "tokens", H5T_NATIVE_INT32, 1, (int[]){(int)want}, tok);
        for (size_t i = 0; i < want; i++)
            if (tok[i] < 0 || tok[i] >= V) qat_fail("%s: tokens[%zu] = %d is outside the vocabulary", cache, i, tok[i]);
    }
    h5in_close(f);
    return tok;
}

int32_t *teacher_tokens(const Config *cfg, const char *teacher_ckpt, const char *cache, size_t *n, bool quiet) {
    if (!teacher_ckpt || !teacher_ckpt[0])
        qat_fail("data.source: teacher samples the float model of quant.init_from, which is not set");
    InferModel m;
    Config tc;
    model_load_infer(teacher_ckpt, &m, &tc, NULL);
    if (m.n_q) qat_fail("%s: data.source teacher: the teacher is quantized; sample the float model", teacher_ckpt);
    int T = cfg->model.block_size, S = cfg->data.teacher_sequences;
    if (T > m.cfg.block_size) qat_fail("%s: model.block_size %d exceeds the teacher's %d", teacher_ckpt, T, m.cfg.block_size);
    char key[512];
    cache_key(&m, cfg, key, sizeof key);
    *n = (size_t)S * (T + 1);
    if ((size_t)S * (T + 1) > (size_t)INT32_MAX) qat_fail("data.teacher.sequences: %d sequences of %d is too many", S, T + 1);
    int32_t *tok = cache_read(cache, key, *n, m.cfg.vocab_size);
    if (tok) {
        if (!quiet) printf("teacher data: %s (%s)\n", cache, key);
    } else {
        double t0 = now_seconds();
        tok = xmalloc(*n * sizeof(int32_t));
        sample_sequences(&m, S, T, cfg->data.teacher_temperature, cfg->data.teacher_top_k,
                         (uint64_t)cfg->data.teacher_seed, tok);
        H5Out o;
        h5out_open(&o, cache);
        h5_attr_str(o.f, "format", TEACHER_FORMAT);
        h5_attr_str(o.f, "key", key);
        h5_attr_str(o.f, "teacher", teacher_ckpt);
        h5_write_checked(o.f, "tokens", H5T_NATIVE_INT32, 1, (int[]){(int)*n}, tok);
        h5out_commit(&o);
        if (!quiet)
            printf("teacher data: sampled %d sequences of %d tokens from %s in %.1f s -> %s\n", S, T + 1, teacher_ckpt,
                   now_seconds() - t0, cache);
    }
    infer_free(&m);
    return tok;
}
