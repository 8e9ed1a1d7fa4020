/* tape.c: recording ops and replaying their backward in reverse; the
 * parameter block. */
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "autograd.h"
#include "internal.h"

void tape_init(Tape *t, size_t arena_bytes) {
    memset(t, 0, sizeof *t);
    arena_init(&t->arena, arena_bytes);
    t->cap = 256;
    t->nodes = xmalloc((size_t)t->cap * sizeof(Node));
    t->grad_enabled = true;
}

static int prof_slot(TapeProfile *p, const char *op) {
    for (int i = 0; i < p->n; i++)
        if (p->op[i] == op || !strcmp(p->op[i], op)) return i;
    if (p->n == TAPE_PROF_MAX) return TAPE_PROF_MAX - 1;
    p->op[p->n] = op;
    return p->n++;
}

void tape_profile_enable(Tape *t) {
    if (!t->prof) t->prof = xcalloc(1, sizeof *t->prof);
    t->prof->last = now_seconds();
}

void tape_profile_print(const Tape *t, FILE *f, double steps) {
    const TapeProfile *p = t->prof;
    if (!p) return;
    double total = 0;
    for (int i = 0; i < p->n; i++) total += p->fwd_s[i] + p->bwd_s[i];
    fprintf(f, "%-14s %10s %10s %8s   (ms per step)\n", "op", "forward", "backward", "share");
    for (int i = 0; i < p->n; i++)
        fprintf(f, "%-14s %10.2f %10.2f %7.1f%%\n", p->op[i], 1e3 * p->fwd_s[i] / steps, 1e3 * p->bwd_s[i] / steps,
                100.0 * (p->fwd_s[i] + p->bwd_s[i]) / total);
    fprintf(f, "%-14s %21.2f\n", "total", 1e3 * total / steps);
}

float *tape_workspace(Tape *t, size_t n) {
    if (n > t->ws_floats) {
        free(t->ws);
        size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
        t->ws = aligned_alloc(64, bytes);
        if (!t->ws) qat_fail("out of memory (%zu bytes for the matrix product workspace)", bytes);
        t->ws_floats = n;
    }
    return t->ws;
}

void tape_gemm(Tape *t, const Gemm *g) {
    size_t n = gemm_ws_floats(g);
    gemm_run(g, n ? tape_workspace(t, n) : NULL);
}

void tape_free(Tape *t) {
    free(t->ws);
    free(t->prof);
    arena_free(&t->arena);
    free(t->nodes);
    memset(t, 0, sizeof *t);
}

void tape_reset(Tape *t) {
    t->n = 0;
    arena_reset(&t->arena);
    if (t->prof) t->prof->last = now_seconds();
}

bool tape_set_grad(Tape *t, bool enabled) {
    bool old = t->grad_enabled;
    t->grad_enabled = enabled;
    return old;
}

Node *tape_record(Tape *t, const char *op, backward_fn bw, Tensor *out, int nin, Tensor **in) {
    bool need = false;
    if (t->grad_enabled)
        for (int i = 0; i < nin; i++)
            if (in[i] && in[i]->requires_grad) need = true;
    out->requires_grad = need;
    if (!need) return NULL;
    if (t->n == t->cap) {
        /* grows during the first step only; later steps reuse the array */
        t->cap *= 2;
        t->nodes = xrealloc(t->nodes, (size_t)t->cap * sizeof(Node));
    }
    Node *n = &t->nodes[t->n++];
    memset(n, 0, sizeof *n);
    if (t->prof) {
        double now = now_seconds();
        int s = prof_slot(t->prof, op);
        t->prof->fwd_s[s] += now - t->prof->last;
        t->prof->calls[s]++;
        t->prof->last = now;
    }
    n->op = op;
    n->backward = bw;
    n->out = out;
    n->nin = nin;
    for (int i = 0; i < nin; i++) n->in[i] = in[i];
    n->tape = t;
    return n;
}

void par_zero(float *p, size_t n) {
#pragma omp parallel if (n > 65536)
    {
        size_t nt = (size_t)omp_get_num_threads(), id = (size_t)omp_get_thread_num();
        size_t lo = n * id / nt, hi = n * (id + 1) / nt;
        memset(p + lo, 0, (hi - lo) * sizeof(float));
    }
}

/* Gives x a grad for n's backward. A plain activation's first grad is left
 * uninitialised when the op can overwrite it, saving a zero fill per tensor
 * per step; views and parameters always accumulate into real memory. */
static void grad_prepare(Tape *t, Node *n, Tensor *x) {
    if (!x->grad && n->overwrite && !x->base) {
        x->grad = arena_alloc(&t->arena, x->numel * sizeof(float));
        x->grad_fresh = true;
        return;
    }
    tensor_ensure_grad(t, x); /* also zero-fills a fresh grad this op cannot take */
}

static void run_backward(Tape *t) {
    for (int k = t->n - 1; k >= 0; k--) {
        Node *n = &t->nodes[k];
        if (!n->out->grad) continue; /* nothing downstream used this output */
        for (int i = 0; i < n->nin; i++)
            if (n->in[i] && n->in[i]->requires_grad) grad_prepare(t, n, n->in[i]);
        double t0 = t->prof ? now_seconds() : 0.0;
        n->backward(n);
        if (t->prof) t->prof->bwd_s[prof_slot(t->prof, n->op)] += now_seconds() - t0;
        for (int i = 0; i < n->nin; i++)
            if (n->in[i] && n->in[i]->grad_fresh) qat_fail("%s backward left an input grad unwritten", n->op);
    }
}

void tape_backward(Tape *t, Tensor *loss) {
    if (loss->numel != 1) qat_fail("backward: loss must be a scalar, got %zu elements", loss->numel);
    if (!loss->requires_grad) qat_fail("backward: loss does not depend on any tensor that requires grad");
    tensor_ensure_grad(t, loss)[0] += 1.0f;
    run_backward(t);
}

void tape_backward_seed(Tape *t, Tensor *out, const float *seed) {
    if (!out->requires_grad) qat_fail("backward: output does not depend on any tensor that requires grad");
    float *g = tensor_ensure_grad(t, out);
    for (size_t i = 0; i < out->numel; i++) g[tensor_offset_of(out, i)] += seed[i];
    run_backward(t);
}

/* ---- parameters ---- */

void params_init(Params *p) { memset(p, 0, sizeof *p); }

Tensor *params_add(Params *p, const char *name, int ndim, const int *shape) {
    if (p->finalized) qat_fail("params: cannot add %s after finalize", name);
    if (ndim < 1 || ndim > TENSOR_MAX_DIMS) qat_fail("params: %s has %d dimensions", name, ndim);
    if (params_find(p, name)) qat_fail("params: duplicate parameter name %s", name);
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 16;
        p->list = xrealloc(p->list, (size_t)p->cap * sizeof(Tensor *));
    }
    Tensor *x = xcalloc(1, sizeof *x);
    x->ndim = ndim;
    x->numel = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        if (shape[d] < 1) qat_fail("params: %s dimension %d has size %d", name, d, shape[d]);
        x->shape[d] = shape[d];
        x->stride[d] = (int)x->numel;
        x->numel *= (size_t)shape[d];
    }
    x->requires_grad = true;
    x->lr_scale = 1.0f;
    x->name = xstrdup(name);
    p->list[p->n++] = x;
    p->numel += x->numel;
    return x;
}

void params_finalize(Params *p) {
    p->data = xcalloc(p->numel, sizeof(float));
    p->grad = xcalloc(p->numel, sizeof(float));
    size_t off = 0;
    for (int i = 0; i < p->n; i++) {
        p->list[i]->data = p->data + off;
        p->list[i]->grad = p->grad + off;
        off += p->list[i]->numel;
    }
    p->finalized = true;
}

void params_zero_grad(Params *p) { memset(p->grad, 0, p->numel * sizeof(float)); }

Tensor *params_find(const Params *p, const char *name) {
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->list[i]->name, name) == 0) return p->list[i];
    return NULL;
}

void params_free(Params *p) {
    for (int i = 0; i < p->n; i++) {
        free((char *)p->list[i]->name);
        free(p->list[i]);
    }
    free(p->list);
    free(p->data);
    free(p->grad);
    memset(p, 0, sizeof *p);
}
