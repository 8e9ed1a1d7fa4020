/* config.c: the field table, a libyaml event reader that flattens nested
 * mappings into dotted keys, value parsing with range checks, and YAML output. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "util/util.h"

typedef enum { CF_INT, CF_FLOAT, CF_STR, CF_ENUM } CfType;

typedef struct Field {
    const char *key;
    CfType type;
    size_t off, size;
    double min, max;
    bool min_open, max_open; /* open interval ends: > min, < max */
    const char *def;
    const char *choices; /* CF_ENUM: "a|b" */
    const char *doc;
} Field;

#define F(k, t, member, lo, hi, open, d, ch, doc) \
    {k, t, offsetof(Config, member), sizeof(((Config *)0)->member), lo, hi, (open) & 1, (open) & 2, d, ch, doc}
/* interval ends for F(): 0 closed, 1 open below, 2 open above, 3 both */
#define BIG 1e18

static const Field FIELDS[] = {
    F("model.n_layer", CF_INT, model.n_layer, 1, 256, 0, "4", NULL, "number of transformer blocks"),
    F("model.n_head", CF_INT, model.n_head, 1, 256, 0, "4", NULL, "attention heads per block; must divide n_embd"),
    F("model.n_embd", CF_INT, model.n_embd, 1, 65536, 0, "128", NULL, "model width"),
    F("model.block_size", CF_INT, model.block_size, 1, 65536, 0, "128", NULL, "context length in tokens"),
    F("model.vocab", CF_ENUM, model.vocab, 0, 0, 0, "char", "char|byte",
      "char: the sorted set of distinct bytes of the corpus (stored in the checkpoint); byte: all 256 byte values"),
    F("data.path", CF_STR, data.path, 0, 0, 0, "/usr/share/games/fortunes/songs-poems", NULL,
      "training corpus (a text file), relative to the working directory"),
    F("data.val_fraction", CF_FLOAT, data.val_fraction, 0, 1, 3, "0.1",
      NULL, "last fraction of the token stream held out for validation"),
    F("train.batch_size", CF_INT, train.batch_size, 1, 1 << 20, 0, "32", NULL, "sequences per step"),
    F("train.iters", CF_INT, train.iters, 1, 1e9, 0, "2000", NULL, "optimizer steps"),
    F("train.lr", CF_FLOAT, train.lr, 0, 10, 1, "1e-3", NULL, "peak learning rate (AdamW)"),
    F("train.min_lr", CF_FLOAT, train.min_lr, 0, 10, 0, "1e-4", NULL, "floor of the cosine schedule"),
    F("train.warmup_iters", CF_INT, train.warmup_iters, 0, 1e9, 0, "100", NULL, "linear warmup steps"),
    F("train.weight_decay", CF_FLOAT, train.weight_decay, 0, 10, 0, "0.1", NULL,
      "decoupled weight decay, applied to 2-d weights only"),
    F("train.beta1", CF_FLOAT, train.beta1, 0, 1, 2, "0.9", NULL, "AdamW beta1, in [0,1)"),
    F("train.beta2", CF_FLOAT, train.beta2, 0, 1, 2, "0.99", NULL, "AdamW beta2, in [0,1)"),
    F("train.eps", CF_FLOAT, train.eps, 0, 1, 1, "1e-8", NULL, "AdamW epsilon"),
    F("train.grad_clip", CF_FLOAT, train.grad_clip, 0, BIG, 0, "1.0", NULL, "global gradient-norm clip; 0 = off"),
    F("train.seed", CF_INT, train.seed, 0, 2147483647, 0, "1337", NULL, "seed of initialisation and batch sampling"),
    F("train.eval_every", CF_INT, train.eval_every, 1, 1e9, 0, "250", NULL,
      "validation loss and checkpoint every this many steps (and at the end)"),
    F("train.eval_batches", CF_INT, train.eval_batches, 1, 1e6, 0, "50", NULL,
      "batches in the fixed, seeded validation set"),
    F("train.log_every", CF_INT, train.log_every, 1, 1e9, 0, "10", NULL, "a metrics.jsonl line every this many steps"),
    F("train.threads", CF_INT, train.threads, 0, 4096, 0, "0", NULL,
      "threads for OpenMP and OpenBLAS; 0 = OMP_NUM_THREADS or all cores"),
    F("out_dir", CF_STR, out_dir, 0, 0, 0, "runs/default", NULL,
      "run directory: metrics.jsonl, checkpoint.h5, summary.json"),
};
#define N_FIELDS (sizeof FIELDS / sizeof FIELDS[0])

static const Field *field_find(const char *key) {
    for (size_t i = 0; i < N_FIELDS; i++)
        if (!strcmp(FIELDS[i].key, key)) return &FIELDS[i];
    return NULL;
}

/* The keys of key's section (or every key) as "a, b, c", to help with typos. */
static void known_keys(const char *key, char *buf, size_t n) {
    const char *dot = strchr(key, '.');
    size_t plen = dot ? (size_t)(dot - key) + 1 : 0;
    bool section_exists = false;
    for (size_t i = 0; i < N_FIELDS && plen; i++) section_exists |= !strncmp(FIELDS[i].key, key, plen);
    size_t k = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < N_FIELDS && k < n; i++)
        if (!section_exists || !strncmp(FIELDS[i].key, key, plen))
            k += (size_t)snprintf(buf + k, n - k, "%s%s", k ? ", " : "", FIELDS[i].key);
}

void config_set(Config *c, const char *key, const char *value, const char *origin) {
    const Field *f = field_find(key);
    if (!f) {
        char known[1024];
        known_keys(key, known, sizeof known);
        qat_fail("%s: unknown key '%s' (known: %s)", origin, key, known);
    }
    char *p = (char *)c + f->off;
    char *end = NULL;
    errno = 0;
    switch (f->type) {
    case CF_INT: {
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end) qat_fail("%s: %s: expected an integer, got '%s'", origin, key, value);
        if (v < f->min || v > f->max)
            qat_fail("%s: %s: expected an integer in [%.0f, %.0f], got '%s'", origin, key, f->min, f->max, value);
        *(int *)p = (int)v;
        break;
    }
    case CF_FLOAT: {
        double v = strtod(value, &end);
        if (errno || end == value || *end || !isfinite(v))
            qat_fail("%s: %s: expected a number, got '%s'", origin, key, value);
        bool low = f->min_open ? v <= f->min : v < f->min;
        bool high = f->max_open ? v >= f->max : v > f->max;
        if (low || high)
            qat_fail("%s: %s: expected a number in %s%g, %g%s, got '%s'", origin, key, f->min_open ? "(" : "[", f->min,
                     f->max, f->max_open ? ")" : "]", value);
        *(float *)p = (float)v;
        break;
    }
    case CF_STR:
        if (!*value) qat_fail("%s: %s: expected a non-empty string", origin, key);
        if (strlen(value) >= f->size) qat_fail("%s: %s: value longer than %zu characters", origin, key, f->size - 1);
        strcpy(p, value);
        break;
    case CF_ENUM: {
        size_t n = strlen(value);
        const char *ch = f->choices;
        bool ok = false;
        while (*ch) {
            size_t l = strcspn(ch, "|");
            if (l == n && !strncmp(ch, value, n)) ok = true;
            ch += l + (ch[l] == '|');
        }
        if (!ok) qat_fail("%s: %s: expected one of %s, got '%s'", origin, key, f->choices, value);
        strcpy(p, value);
        break;
    }
    }
}

void config_defaults(Config *c) {
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < N_FIELDS; i++) config_set(c, FIELDS[i].key, FIELDS[i].def, "defaults");
}

void config_set_arg(Config *c, const char *arg) {
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg) qat_fail("--set %s: expected section.key=value", arg);
    char key[256];
    if ((size_t)(eq - arg) >= sizeof key) qat_fail("--set %s: key too long", arg);
    snprintf(key, sizeof key, "%.*s", (int)(eq - arg), arg);
    config_set(c, key, eq + 1, "--set");
}

/* ---- YAML reading: nested mappings become dotted keys; a sequence of
 * scalars becomes one comma-separated value ---- */

typedef struct Reader {
    yaml_parser_t p;
    const char *origin;
} Reader;

static _Noreturn void yaml_fail(Reader *r, const char *what, size_t line) {
    qat_fail("%s:%zu: %s", r->origin, line + 1, what);
}

static void next(Reader *r, yaml_event_t *ev) {
    if (!yaml_parser_parse(&r->p, ev)) {
        char what[256];
        snprintf(what, sizeof what, "invalid YAML: %s", r->p.problem ? r->p.problem : "parse error");
        yaml_fail(r, what, r->p.problem_mark.line);
    }
}

static void read_mapping(Reader *r, Config *c, const char *prefix) {
    for (;;) {
        yaml_event_t ev;
        next(r, &ev);
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            return;
        }
        if (ev.type != YAML_SCALAR_EVENT) yaml_fail(r, "expected a key", ev.start_mark.line);
        char key[256];
        snprintf(key, sizeof key, "%s%s%s", prefix, *prefix ? "." : "", (const char *)ev.data.scalar.value);
        size_t line = ev.start_mark.line;
        yaml_event_delete(&ev);
        char where[CONFIG_PATH_MAX + 32];
        snprintf(where, sizeof where, "%s:%zu", r->origin, line + 1);
        next(r, &ev);
        if (ev.type == YAML_SCALAR_EVENT) {
            config_set(c, key, (const char *)ev.data.scalar.value, where);
            yaml_event_delete(&ev);
        } else if (ev.type == YAML_MAPPING_START_EVENT) {
            yaml_event_delete(&ev);
            read_mapping(r, c, key);
        } else if (ev.type == YAML_SEQUENCE_START_EVENT) {
            yaml_event_delete(&ev);
            char val[4096] = "";
            size_t k = 0;
            for (;;) {
                next(r, &ev);
                if (ev.type == YAML_SEQUENCE_END_EVENT) break;
                if (ev.type != YAML_SCALAR_EVENT) qat_fail("%s: %s: expected a list of plain values", where, key);
                k += (size_t)snprintf(val + k, sizeof val - k, "%s%s", k ? "," : "", (const char *)ev.data.scalar.value);
                yaml_event_delete(&ev);
            }
            yaml_event_delete(&ev);
            config_set(c, key, val, where);
        } else {
            qat_fail("%s: %s: unsupported YAML value", where, key);
        }
    }
}

static void load(Config *c, yaml_parser_t *p, const char *origin) {
    Reader r = {.origin = origin};
    r.p = *p;
    yaml_event_t ev;
    bool done = false;
    while (!done) {
        next(&r, &ev);
        switch (ev.type) {
        case YAML_STREAM_END_EVENT: done = true; break;
        case YAML_MAPPING_START_EVENT: read_mapping(&r, c, ""); break;
        case YAML_STREAM_START_EVENT:
        case YAML_DOCUMENT_START_EVENT:
        case YAML_DOCUMENT_END_EVENT: break;
        case YAML_SCALAR_EVENT:
            if (ev.data.scalar.length == 0) break; /* empty document */
            /* fallthrough */
        default: yaml_fail(&r, "expected a mapping of sections", ev.start_mark.line);
        }
        yaml_event_delete(&ev);
    }
    *p = r.p;
}

void config_load_string(Config *c, const char *yaml, const char *origin) {
    yaml_parser_t p;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_string(&p, (const unsigned char *)yaml, strlen(yaml));
    load(c, &p, origin);
    yaml_parser_delete(&p);
}

void config_load_file(Config *c, const char *path) {
    char *text = xread_file(path, NULL);
    config_load_string(c, text, path);
    free(text);
}

void config_validate(const Config *c, const char *origin) {
    if (c->model.n_embd % c->model.n_head != 0)
        qat_fail("%s: model.n_embd: %d is not divisible by model.n_head %d", origin, c->model.n_embd, c->model.n_head);
    if (c->train.min_lr > c->train.lr)
        qat_fail("%s: train.min_lr: %g is larger than train.lr %g", origin, c->train.min_lr, c->train.lr);
}

char *config_to_yaml(const Config *c) {
    size_t cap = 8192, k = 0;
    char *out = xmalloc(cap);
    char section[64] = "";
    for (size_t i = 0; i < N_FIELDS; i++) {
        const Field *f = &FIELDS[i];
        const char *dot = strchr(f->key, '.');
        const char *name = f->key;
        const char *indent = "";
        if (dot) {
            size_t sl = (size_t)(dot - f->key);
            if (strlen(section) != sl || strncmp(section, f->key, sl)) {
                snprintf(section, sizeof section, "%.*s", (int)sl, f->key);
                k += (size_t)snprintf(out + k, cap - k, "%s:\n", section);
            }
            name = dot + 1;
            indent = "  ";
        } else {
            section[0] = '\0';
        }
        const char *p = (const char *)c + f->off;
        if (cap - k < 2 * CONFIG_PATH_MAX) out = xrealloc(out, cap *= 2);
        switch (f->type) {
        case CF_INT: k += (size_t)snprintf(out + k, cap - k, "%s%s: %d\n", indent, name, *(const int *)p); break;
        case CF_FLOAT: k += (size_t)snprintf(out + k, cap - k, "%s%s: %.9g\n", indent, name, *(const float *)p); break;
        case CF_STR:
        case CF_ENUM: k += (size_t)snprintf(out + k, cap - k, "%s%s: \"%s\"\n", indent, name, p); break;
        }
    }
    return out;
}

void config_print_keys(FILE *f) {
    fprintf(f, "| key | type | default | meaning |\n|---|---|---|---|\n");
    static const char *tn[] = {"integer", "number", "string", "one of"};
    for (size_t i = 0; i < N_FIELDS; i++) {
        fprintf(f, "| `%s` | %s", FIELDS[i].key, tn[FIELDS[i].type]);
        if (FIELDS[i].choices) fputc(' ', f);
        for (const char *c = FIELDS[i].choices; c && *c; c++) {
            if (*c == '|') fputc('\\', f); /* a bare | would end the Markdown cell */
            fputc(*c, f);
        }
        fprintf(f, " | `%s` | %s |\n", FIELDS[i].def, FIELDS[i].doc);
    }
}
