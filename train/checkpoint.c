/* checkpoint.c: save and load training checkpoints (layout in checkpoint.h). */
#include "checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/h5io.h"

#define CKPT_FORMAT "qat-checkpoint"
#define CKPT_VERSION 1

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
    h5_write_u8(o.f, "vocab", (size_t)v->size, v->chars);
    char name[256];
    size_t off = 0;
    for (int i = 0; i < g->params.n; i++) {
        const Tensor *x = g->params.list[i];
        snprintf(name, sizeof name, "params/%s", x->name);
        h5_write_f32(o.f, name, x->ndim, x->shape, x->data);
        if (opt) {
            snprintf(name, sizeof name, "optim/m/%s", x->name);
            h5_write_f32(o.f, name, x->ndim, x->shape, opt->m + off);
            snprintf(name, sizeof name, "optim/v/%s", x->name);
            h5_write_f32(o.f, name, x->ndim, x->shape, opt->v + off);
        }
        off += x->numel;
    }
    if (opt) h5_attr_i64(o.f, "optim_step", opt->step);
    if (rng) h5_write_u64(o.f, "rng", 1, &rng->s);
    h5out_commit(&o);
}

static void check_format(hid_t f, const char *path) {
    char *fmt = h5_read_attr_str(f, path, "format");
    bool ok = !strcmp(fmt, CKPT_FORMAT);
    free(fmt);
    if (!ok) qat_fail("%s: not a qat training checkpoint (format attribute differs)", path);
    int64_t ver = h5_read_attr_i64(f, path, "version");
    if (ver != CKPT_VERSION)
        qat_fail("%s: checkpoint version %lld, this qat reads version %d", path, (long long)ver, CKPT_VERSION);
}

void ckpt_load_meta(const char *path, Config *cfg, Vocab *v, long *step) {
    hid_t f = h5in_open(path);
    check_format(f, path);
    char *yaml = h5_read_attr_str(f, path, "config");
    char origin[CONFIG_PATH_MAX + 16];
    snprintf(origin, sizeof origin, "%s:config", path);
    config_defaults(cfg);
    config_load_string(cfg, yaml, origin);
    free(yaml);
    uint8_t chars[256];
    size_t n = h5_read_u8(f, path, "vocab", chars, sizeof chars);
    if (n == 0) qat_fail("%s: vocab is empty", path);
    vocab_from_chars(v, chars, (int)n);
    if (step) *step = (long)h5_read_attr_i64(f, path, "step");
    h5in_close(f);
}

void ckpt_load_params(const char *path, GPT *g, bool skip_quant) {
    hid_t f = h5in_open(path);
    check_format(f, path);
    char name[256];
    for (int i = 0; i < g->params.n; i++) {
        Tensor *x = g->params.list[i];
        if (skip_quant && x->quant_state) continue;
        snprintf(name, sizeof name, "params/%s", x->name);
        h5_read_f32(f, path, name, x->ndim, x->shape, x->data);
    }
    h5in_close(f);
}

void ckpt_load_train_state(const char *path, const GPT *g, AdamW *opt, Rng *rng) {
    hid_t f = h5in_open(path);
    check_format(f, path);
    char name[256];
    size_t off = 0;
    for (int i = 0; i < g->params.n; i++) {
        const Tensor *x = g->params.list[i];
        snprintf(name, sizeof name, "optim/m/%s", x->name);
        h5_read_f32(f, path, name, x->ndim, x->shape, opt->m + off);
        snprintf(name, sizeof name, "optim/v/%s", x->name);
        h5_read_f32(f, path, name, x->ndim, x->shape, opt->v + off);
        off += x->numel;
    }
    opt->step = (long)h5_read_attr_i64(f, path, "optim_step");
    uint64_t s;
    h5_read_u64(f, path, "rng", &s, 1);
    rng->s = s;
    h5in_close(f);
}
