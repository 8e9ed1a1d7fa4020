/* inspect.c: qat inspect (see inspect.h). */
#include "train/inspect.h"

#include <string.h>

#include "format/gguf.h"
#include "infer/infer.h"
#include "format/checkpoint.h"
#include "train/trainer.h"

static void print_spec(FILE *out, const QuantSpec *s) {
    if (s->fmt) {
        fprintf(out, "%s blocks", qformat_name(s->fmt));
        return;
    }
    fprintf(out, "int%d %s ", s->bits, s->sym ? "sym" : "asym");
    if (s->gran == QG_GROUP) fprintf(out, "g%d", s->group);
    else fprintf(out, "%s", s->gran == QG_CHANNEL ? "per channel" : "per tensor");
}

/* "llama, 5 layers, 8 heads (4 kv), width 64, hidden 172, context 512, vocab 512 (SentencePiece)" */
static void arch_line(const GPTConfig *c, bool spm, char *buf, size_t n) {
    snprintf(buf, n, "%s, %d layers, %d heads (%d kv), width %d, hidden %d, context %d, vocab %d%s",
             c->arch == ARCH_LLAMA ? "llama" : "gpt", c->n_layer, c->n_head, c->n_kv_head, c->n_embd, c->hidden,
             c->block_size, c->vocab_size, spm ? " (SentencePiece)" : "");
}

static void inspect_exported(const char *path, FILE *out) {
    InferModel m;
    infer_load(&m, path);
    const GPTConfig *c = &m.cfg;
    char arch[160];
    arch_line(c, m.vocab.spm != NULL, arch, sizeof arch);
    fprintf(out, "%s: exported qat model: %s\n", path, arch);
    for (int i = 0; i < m.n_q; i++) {
        const QMatrix *q = &m.qm[i];
        fprintf(out, "  %-28s int%d [%d x %d] group %d%s, %zu bytes (codes and scales)\n", m.qnames[i], q->bits, q->rows,
                q->cols, q->group, m.qw8a8[i] ? ", int8 activations" : "", qmatrix_bytes(q));
    }
    for (int i = 0; i < m.n_ft; i++)
        fprintf(out, "  %-28s f32  [%d%s%.0d]\n", m.ft[i].name, m.ft[i].shape[0], m.ft[i].ndim > 1 ? " x " : "",
                m.ft[i].ndim > 1 ? m.ft[i].shape[1] : 0);
    fprintf(out, "  total: %d integer tensors, %zu bytes; %zu float bytes\n", m.n_q, infer_quant_bytes(&m),
            infer_float_bytes(&m));
    infer_free(&m);
}

static void inspect_checkpoint(const char *path, FILE *out) {
    GPT g;
    Config cfg;
    Vocab v;
    long step = 0;
    model_load(path, &g, &cfg, &v);
    ckpt_load_meta(path, &cfg, NULL, &step);
    char arch[160];
    arch_line(&g.cfg, v.spm != NULL, arch, sizeof arch);
    fprintf(out, "%s: training checkpoint, step %ld of %d: %s\n", path, step, cfg.train.iters, arch);
    size_t n = 0;
    for (int i = 0; i < g.params.n; i++) {
        const Tensor *t = g.params.list[i];
        char sh[64];
        fprintf(out, "  %-36s %s%s\n", t->name, tensor_shape_str(t, sh, sizeof sh), t->quant_state ? " (quantization state)" : "");
        if (!t->quant_state) n += t->numel;
    }
    for (int i = 0; i < g.n_q; i++) {
        const QLayer *q = &g.qlayers[i];
        fprintf(out, "  quantized %-26s ", q->name);
        print_spec(out, &q->w);
        fprintf(out, ", %s%s%s\n", q->w_scale ? "stored scales" : "min-max scales", q->a_bits ? ", int8 activations" : "",
                q->a_blocks ? ", q8_0 activation blocks" : "");
    }
    fprintf(out, "  total: %zu parameters, %d quantized Linears\n", n, g.n_q);
    gpt_free(&g);
    vocab_free(&v);
}

void inspect_file(const char *path, FILE *out) {
    util_require_regular(path);
    if (gguf_is_file(path)) {
        GgufFile f;
        gguf_read(&f, path);
        gguf_print(&f, out);
        gguf_free(&f);
    } else if (infer_is_model_file(path)) {
        inspect_exported(path, out);
    } else {
        inspect_checkpoint(path, out);
    }
}
