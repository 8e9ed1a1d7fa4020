/* runlog.c: a run directory's metrics.jsonl as arrays (see plot.h). */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format/checkpoint.h"
#include "train/plot.h"
#include "util/util.h"

/* A field as a number: NaN when absent; a present one that is not a finite
 * number sets *bad to its key. */
static double field(const cJSON *o, const char *key, const char **bad) {
    const cJSON *v = cJSON_GetObjectItem(o, key);
    if (!v || cJSON_IsNull(v)) return NAN;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) {
        if (!*bad) *bad = key;
        return NAN;
    }
    return v->valuedouble;
}

typedef struct ReadCtx {
    const char *path;
    RunLog *r;
    char *text;
    size_t size;
} ReadCtx;

/* The lines of x->text into x->r's arrays (sized by the caller). */
static void parse_lines(void *p) {
    ReadCtx *x = p;
    RunLog *r = x->r;
    const char *path = x->path;
    char *text = x->text;
    int line = 0;
    for (char *s = text, *e; s < text + x->size; s = e + 1) {
        e = memchr(s, '\n', (size_t)(text + x->size - s));
        if (!e) e = text + x->size;
        line++;
        *e = '\0';
        if (s == e) continue;
        cJSON *o = cJSON_ParseWithLength(s, (size_t)(e - s));
        if (!cJSON_IsObject(o)) {
            cJSON_Delete(o);
            qat_fail("%s:%d: not a JSON object", path, line);
        }
        const cJSON *iv = cJSON_GetObjectItem(o, "iter");
        bool ok = cJSON_IsNumber(iv) && isfinite(iv->valuedouble) && iv->valuedouble >= 0;
        r->iter[r->n] = ok ? iv->valuedouble : NAN;
        const char *bad = NULL; /* static strings: they outlive o */
        double ce = field(o, "ce", &bad), loss = field(o, "loss", &bad);
        r->loss[r->n] = isfinite(ce) ? ce : loss;
        r->val[r->n] = field(o, "val_loss", &bad);
        r->lr[r->n] = field(o, "lr", &bad);
        cJSON_Delete(o);
        if (!ok) qat_fail("%s:%d: no iter (a step number)", path, line);
        if (bad) qat_fail("%s:%d: %s is not a finite number", path, line, bad);
        r->n++;
    }
    if (!r->n) qat_fail("%s: no logged steps", path);
}

void runlog_read(const char *dir, RunLog *r) {
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", dir);
    char path[4096];
    xsnprintf(path, sizeof path, "run directory", "%s/metrics.jsonl", dir);
    if (access(path, R_OK) != 0) qat_fail("%s: no metrics.jsonl here: not a qat run directory (qat train writes one)", dir);
    ReadCtx x = {.path = path, .r = r};
    x.text = xread_file(path, &x.size);
    int cap = 1;
    for (size_t i = 0; i < x.size; i++) cap += x.text[i] == '\n';
    r->iter = xmalloc((size_t)cap * sizeof(double)), r->loss = xmalloc((size_t)cap * sizeof(double));
    r->val = xmalloc((size_t)cap * sizeof(double)), r->lr = xmalloc((size_t)cap * sizeof(double));
    /* a field that fails inside a line's object must not leave the object */
    char msg[4400];
    bool ok = qat_try(parse_lines, &x, msg, sizeof msg);
    free(x.text);
    if (!ok) {
        runlog_free(r);
        qat_fail("%s", msg);
    }
    xsnprintf(path, sizeof path, "run directory", "%s/checkpoint.h5", dir);
    if (access(path, R_OK) == 0) {
        Config cfg;
        long step;
        ckpt_load_meta(path, &cfg, NULL, &step);
        r->tokens_per_step = (long)cfg.train.batch_size * cfg.model.block_size;
        snprintf(r->init_from, sizeof r->init_from, "%s", cfg.quant.init_from);
    }
}

void runlog_free(RunLog *r) {
    free(r->iter), free(r->loss), free(r->val), free(r->lr);
    r->iter = r->loss = r->val = r->lr = NULL;
    r->n = 0;
}

void plot_run_dirs(const char *const *dirs, int n, const char *out, const char *title, FILE *log) {
    RunLog *runs = xcalloc((size_t)n, sizeof(RunLog));
    for (int i = 0; i < n; i++) runlog_read(dirs[i], &runs[i]);
    /* a run fine-tuned from another one shown (quant.init_from = its
     * checkpoint) continues where that one ended, so the float run and the
     * QAT runs from it read as one story */
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < n && runs[i].init_from[0]; j++) {
            char ck[4200];
            snprintf(ck, sizeof ck, "%s/checkpoint.h5", dirs[j]);
            if (j == i || runs[j].init_from[0] || !util_same_file(runs[i].init_from, ck)) continue;
            double off = runs[j].iter[runs[j].n - 1];
            for (int k = 0; k < runs[i].n; k++) runs[i].iter[k] += off;
            fprintf(log, "%s: fine-tuned from %s, drawn from its step %.0f on\n", dirs[i], dirs[j], off);
        }
    }
    char t[1024];
    if (!title) {
        int k = snprintf(t, sizeof t, "training curves:");
        for (int i = 0; i < n && k < (int)sizeof t - 1; i++) k += snprintf(t + k, sizeof t - (size_t)k, " %s", dirs[i]);
        title = t;
    }
    plot_runs(out, runs, n, title);
    for (int i = 0; i < n; i++) {
        const RunLog *r = &runs[i];
        double last_val = NAN;
        for (int k = 0; k < r->n; k++)
            if (isfinite(r->val[k])) last_val = r->val[k];
        fprintf(log, "%s: %d logged steps to step %.0f, last validation loss %.4f\n", r->name, r->n, r->iter[r->n - 1],
                last_val);
        runlog_free(&runs[i]);
    }
    free(runs);
}
