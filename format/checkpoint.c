/* checkpoint.c: save and load training checkpoints (layout in checkpoint.h). */
#include "checkpoint.h"

#include "format/vocab_h5.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/h5io.h"

#define CKPT_FORMAT "qat-checkpoint"
/* version 2: every dataset carries the CRC-32 of its bytes (as exported
 * models do). Version 1 files, written before, are still read, unchecked. */
#define CKPT_VERSION 2

/* Observers still calibrating (before quant.freeze_step): their running
 * range, counts, sampler state and reservoir, so that a resume continues
 * the same statistics instead of starting them again. */
static void save_observers(hid_t f, const GPT *g) {
    char name[256];
    for (int i = 0; i < g->n_q; i++) {
        const QLayer *q = &g->qlayers[i];
        if (!q->a_scale || q->mode != QMODE_CALIBRATE) continue;
        const Observer *ob = &q->obs;
        float range[2] = {ob->lo, ob->hi};
        uint64_t counts[3] = {(uint64_t)ob->batches, ob->n_seen, ob->rng.s};
        xsnprintf(name, sizeof name, "tensor name", "observers/%s/range", q->name);
        h5_write_checked(f, name, H5T_NATIVE_FLOAT, 1, (int[]){2}, range);
        xsnprintf(name, sizeof name, "tensor name", "observers/%s/counts", q->name);
        h5_write_checked(f, name, H5T_NATIVE_UINT64, 1, (int[]){3}, counts);
        if (ob->sample && ob->n_sample) {
            xsnprintf(name, sizeof name, "tensor name", "observers/%s/sample", q->name);
            h5_write_checked(f, name, H5T_NATIVE_FLOAT, 1, (int[]){(int)ob->n_sample}, ob->sample);
        }
    }
}

void ckpt_save(const char *path, const Config *cfg, const Vocab *v, const GPT *g, const AdamW *opt, long step,
               const Rng *rng, const char *ptq_method) {
    H5Out o;
    h5out_open(&o, path);
    h5_attr_str(o.f, "format", CKPT_FORMAT);
    h5_attr_i64(o.f, "version", CKPT_VERSION);
    h5_attr_str(o.f, "kind", ptq_method ? "ptq" : g->n_q ? "qat" : "float");
    if (ptq_method) h5_attr_str(o.f, "ptq_method", ptq_method);
    h5_attr_i64(o.f, "step", step);
    char *yaml = config_to_yaml(cfg);
    h5_attr_str(o.f, "config", yaml);
    free(yaml);
    vocab_h5_write(o.f, v);
    char name[256];
    size_t off = 0;
    for (int i = 0; i < g->params.n; i++) {
        const Tensor *x = g->params.list[i];
        xsnprintf(name, sizeof name, "tensor name", "params/%s", x->name);
        h5_write_checked(o.f, name, H5T_NATIVE_FLOAT, x->ndim, x->shape, x->data);
        if (opt) {
            xsnprintf(name, sizeof name, "tensor name", "optim/m/%s", x->name);
            h5_write_checked(o.f, name, H5T_NATIVE_FLOAT, x->ndim, x->shape, opt->m + off);
            xsnprintf(name, sizeof name, "tensor name", "optim/v/%s", x->name);
            h5_write_checked(o.f, name, H5T_NATIVE_FLOAT, x->ndim, x->shape, opt->v + off);
        }
        off += x->numel;
    }
    if (opt) h5_attr_i64(o.f, "optim_step", opt->step);
    if (rng) h5_write_checked(o.f, "rng", H5T_NATIVE_UINT64, 1, (int[]){1}, &rng->s);
    save_observers(o.f, g);
    h5out_commit(&o);
}

/* Opens path and checks format and version; returns the version. */
static int open_checked(const char *path, hid_t *f) {
    *f = h5in_open(path);
    char *fmt = h5_read_attr_str(*f, path, "format");
    bool ok = !strcmp(fmt, CKPT_FORMAT);
    free(fmt);
    if (!ok) qat_fail("%s: not a qat training checkpoint (format attribute differs)", path);
    int64_t ver = h5_read_attr_i64(*f, path, "version");
    if (ver != 1 && ver != CKPT_VERSION)
        qat_fail("%s: checkpoint version %lld, this qat reads versions 1 and %d", path, (long long)ver, CKPT_VERSION);
    return (int)ver;
}

/* A float tensor, its checksum verified from version 2 on, refused when it
 * holds a NaN or an infinity. */
static void read_f32(hid_t f, int ver, const char *path, const char *name, const Tensor *x, float *out) {
    if (ver >= 2)
        h5_read_checked(f, path, name, H5T_NATIVE_FLOAT, x->ndim, x->shape, out);
    else
        h5_read_f32(f, path, name, x->ndim, x->shape, out);
    for (size_t i = 0; i < x->numel; i++)
        if (!isfinite(out[i])) qat_fail("%s: tensor %s holds %g at element %zu (not finite)", path, name, out[i], i);
}

void ckpt_load_meta(const char *path, Config *cfg, Vocab *v, long *step) {
    hid_t f;
    int ver = open_checked(path, &f);
    char *kind = h5_read_attr_str(f, path, "kind");
    bool kind_ok = !strcmp(kind, "float") || !strcmp(kind, "qat") || !strcmp(kind, "ptq");
    if (!kind_ok) qat_fail("%s: kind \"%s\" is none of float, qat, ptq", path, kind);
    free(kind);
    char *yaml = h5_read_attr_str(f, path, "config");
    char origin[CONFIG_PATH_MAX + 16];
    snprintf(origin, sizeof origin, "%s:config", path);
    config_defaults(cfg);
    config_load_string(cfg, yaml, origin);
    free(yaml);
    config_validate(cfg, origin);
    if (v) vocab_h5_read(f, path, !strcmp(cfg->model.vocab, "spm"), ver >= 2, v);
    int64_t st = h5_read_attr_i64(f, path, "step");
    if (st < 0 || st > cfg->train.iters)
        qat_fail("%s: step %lld is outside 0..train.iters (%d)", path, (long long)st, cfg->train.iters);
    if (step) *step = (long)st;
    h5in_close(f);
}

void ckpt_load_params(const char *path, GPT *g, bool skip_quant) {
    hid_t f;
    int ver = open_checked(path, &f);
    char name[256];
    for (int i = 0; i < g->params.n; i++) {
        Tensor *x = g->params.list[i];
        if (skip_quant && x->quant_state) continue;
        xsnprintf(name, sizeof name, "tensor name", "params/%s", x->name);
        read_f32(f, ver, path, name, x, x->data);
    }
    h5in_close(f);
    gpt_quant_sync_tables(g);
}

void ckpt_load_train_state(const char *path, const GPT *g, AdamW *opt, Rng *rng) {
    hid_t f;
    int ver = open_checked(path, &f);
    char name[256];
    size_t off = 0;
    for (int i = 0; i < g->params.n; i++) {
        const Tensor *x = g->params.list[i];
        xsnprintf(name, sizeof name, "tensor name", "optim/m/%s", x->name);
        read_f32(f, ver, path, name, x, opt->m + off);
        xsnprintf(name, sizeof name, "tensor name", "optim/v/%s", x->name);
        read_f32(f, ver, path, name, x, opt->v + off);
        for (size_t k = 0; k < x->numel; k++)
            if (opt->v[off + k] < 0.0f) qat_fail("%s: tensor %s holds a negative second moment", path, name);
        off += x->numel;
    }
    int64_t os = h5_read_attr_i64(f, path, "optim_step"), step = h5_read_attr_i64(f, path, "step");
    /* every step is one optimizer update, from step 0 of this run */
    if (os != step) qat_fail("%s: optim_step %lld differs from step %lld", path, (long long)os, (long long)step);
    opt->step = (long)os;
    uint64_t s;
    if (ver >= 2)
        h5_read_checked(f, path, "rng", H5T_NATIVE_UINT64, 1, (int[]){1}, &s);
    else
        h5_read_u64(f, path, "rng", &s, 1);
    /* xorshift never leaves state 0 */
    if (s == 0) qat_fail("%s: rng holds the state 0, which no sampler reaches", path);
    rng->s = s;
    h5in_close(f);
}

bool ckpt_load_observers(const char *path, GPT *g) {
    hid_t f;
    int ver = open_checked(path, &f);
    char name[256];
    int found = 0, wanted = 0;
    for (int i = 0; i < g->n_q && ver >= 2; i++) {
        QLayer *q = &g->qlayers[i];
        if (!q->a_scale) continue;
        wanted++;
        xsnprintf(name, sizeof name, "tensor name", "observers/%s/counts", q->name);
        if (!h5_exists(f, name)) continue;
        found++;
        Observer *ob = &q->obs;
        uint64_t counts[3];
        float range[2];
        h5_read_checked(f, path, name, H5T_NATIVE_UINT64, 1, (int[]){3}, counts);
        xsnprintf(name, sizeof name, "tensor name", "observers/%s/range", q->name);
        h5_read_checked(f, path, name, H5T_NATIVE_FLOAT, 1, (int[]){2}, range);
        if (counts[0] < 1 || counts[0] > (uint64_t)1 << 40 || counts[2] == 0 || !isfinite(range[0]) ||
            !isfinite(range[1]) || range[0] > range[1])
            qat_fail("%s: observers/%s holds no valid observer state", path, q->name);
        ob->lo = range[0], ob->hi = range[1], ob->batches = (long)counts[0], ob->n_seen = counts[1];
        ob->rng.s = counts[2];
        ob->n_sample = 0;
        xsnprintf(name, sizeof name, "tensor name", "observers/%s/sample", q->name);
        if (ob->sample) {
            size_t n = h5_exists(f, name) ? h5_read_len(f, path, name, ob->cap) : 0;
            if (n) h5_read_checked(f, path, name, H5T_NATIVE_FLOAT, 1, (int[]){(int)n}, ob->sample);
            /* the reservoir fills before it samples: it holds min(seen, cap) values */
            if (n != (ob->n_seen < ob->cap ? ob->n_seen : ob->cap))
                qat_fail("%s: observers/%s/sample holds %zu values for %llu seen", path, q->name, n,
                         (unsigned long long)ob->n_seen);
            for (size_t k = 0; k < n; k++)
                if (!isfinite(ob->sample[k])) qat_fail("%s: tensor %s holds %g (not finite)", path, name, ob->sample[k]);
            ob->n_sample = n;
        }
    }
    h5in_close(f);
    if (found && found != wanted) qat_fail("%s: observer state for %d of %d static layers", path, found, wanted);
    return wanted > 0 && found == wanted;
}
