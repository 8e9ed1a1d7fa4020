/* tensor.c: tensor creation in the tape arena, shape helpers, and the view
 * ops (reshape, transpose) plus the contiguous copy that undoes a view. */
#include <stdio.h>
#include <string.h>

#include "autograd.h"

static void set_contiguous_strides(Tensor *x) {
    int s = 1;
    for (int d = x->ndim - 1; d >= 0; d--) {
        x->stride[d] = s;
        s *= x->shape[d];
    }
}

static Tensor *tensor_struct(Tape *t, int ndim, const int *shape, const char *op) {
    if (ndim < 1 || ndim > TENSOR_MAX_DIMS) qat_fail("%s: %d dimensions (allowed 1..%d)", op, ndim, TENSOR_MAX_DIMS);
    Tensor *x = arena_calloc(&t->arena, sizeof *x);
    x->ndim = ndim;
    x->numel = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 1) qat_fail("%s: dimension %d has size %d", op, d, shape[d]);
        x->shape[d] = shape[d];
        x->numel *= (size_t)shape[d];
    }
    set_contiguous_strides(x);
    return x;
}

Tensor *tensor_new(Tape *t, int ndim, const int *shape) {
    Tensor *x = tensor_struct(t, ndim, shape, "tensor_new");
    x->data = arena_alloc(&t->arena, x->numel * sizeof(float));
    return x;
}

Tensor *tensor_zeros(Tape *t, int ndim, const int *shape) {
    Tensor *x = tensor_struct(t, ndim, shape, "tensor_zeros");
    x->data = arena_calloc(&t->arena, x->numel * sizeof(float));
    return x;
}

Tensor *tensor_from(Tape *t, int ndim, const int *shape, const float *src) {
    Tensor *x = tensor_new(t, ndim, shape);
    memcpy(x->data, src, x->numel * sizeof(float));
    return x;
}

bool tensor_is_contiguous(const Tensor *x) {
    int s = 1;
    for (int d = x->ndim - 1; d >= 0; d--) {
        if (x->shape[d] != 1 && x->stride[d] != s) return false;
        s *= x->shape[d];
    }
    return true;
}

bool tensor_same_shape(const Tensor *a, const Tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return false;
    return true;
}

char *tensor_shape_str(const Tensor *x, char *buf, size_t n) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int d = 0; d < x->ndim && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, d ? ",%d" : "%d", x->shape[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

size_t tensor_offset_of(const Tensor *x, size_t i) {
    size_t off = 0;
    for (int d = x->ndim - 1; d >= 0; d--) {
        size_t c = i % (size_t)x->shape[d];
        i /= (size_t)x->shape[d];
        off += c * (size_t)x->stride[d];
    }
    return off;
}

float *tensor_ensure_grad(Tape *t, Tensor *x) {
    if (x->grad) {
        if (x->grad_fresh) {
            par_zero(x->grad, x->numel);
            x->grad_fresh = false;
        }
        return x->grad;
    }
    if (x->base) {
        x->grad = tensor_ensure_grad(t, x->base) + x->offset;
        return x->grad;
    }
    x->grad = arena_alloc(&t->arena, x->numel * sizeof(float));
    par_zero(x->grad, x->numel);
    return x->grad;
}

/* A view is recorded nowhere: it aliases data and grad of its root. */
static Tensor *make_view(Tape *t, Tensor *x) {
    Tensor *v = arena_calloc(&t->arena, sizeof *v);
    *v = *x;
    v->base = x->base ? x->base : x;
    v->offset = x->base ? x->offset : 0;
    v->name = NULL;
    v->grad = v->base->grad ? v->base->grad + v->offset : NULL;
    v->requires_grad = x->requires_grad && t->grad_enabled;
    return v;
}

Tensor *op_reshape(Tape *t, Tensor *x, int ndim, const int *shape) {
    char sb[64];
    if (!tensor_is_contiguous(x))
        qat_fail("reshape: input %s is not contiguous (call op_contiguous first)", tensor_shape_str(x, sb, sizeof sb));
    if (ndim < 1 || ndim > TENSOR_MAX_DIMS) qat_fail("reshape: %d dimensions (allowed 1..%d)", ndim, TENSOR_MAX_DIMS);
    size_t n = 1;
    for (int d = 0; d < ndim; d++) n *= (size_t)(shape[d] > 0 ? shape[d] : 0);
    if (n != x->numel) {
        char nb[64];
        Tensor tmp = {.ndim = ndim};
        memcpy(tmp.shape, shape, (size_t)ndim * sizeof(int));
        qat_fail("reshape: shape mismatch: %s (%zu elements) cannot become %s", tensor_shape_str(x, sb, sizeof sb),
                 x->numel, tensor_shape_str(&tmp, nb, sizeof nb));
    }
    Tensor *v = make_view(t, x);
    v->ndim = ndim;
    memcpy(v->shape, shape, (size_t)ndim * sizeof(int));
    set_contiguous_strides(v);
    return v;
}

Tensor *op_transpose(Tape *t, Tensor *x, int d0, int d1) {
    if (d0 < 0) d0 += x->ndim;
    if (d1 < 0) d1 += x->ndim;
    if (d0 < 0 || d1 < 0 || d0 >= x->ndim || d1 >= x->ndim)
        qat_fail("transpose: dims (%d,%d) out of range for a %d-d tensor", d0, d1, x->ndim);
    Tensor *v = make_view(t, x);
    int s = v->shape[d0];
    v->shape[d0] = v->shape[d1];
    v->shape[d1] = s;
    s = v->stride[d0];
    v->stride[d0] = v->stride[d1];
    v->stride[d1] = s;
    return v;
}

static void contiguous_backward(Node *n) {
    Tensor *x = n->in[0], *y = n->out;
    for (size_t i = 0; i < y->numel; i++) x->grad[tensor_offset_of(x, i)] += y->grad[i];
}

Tensor *op_contiguous(Tape *t, Tensor *x) {
    Tensor *y = tensor_new(t, x->ndim, x->shape);
    for (size_t i = 0; i < y->numel; i++) y->data[i] = x->data[tensor_offset_of(x, i)];
    tape_record(t, "contiguous", contiguous_backward, y, 1, (Tensor *[]){x});
    return y;
}
