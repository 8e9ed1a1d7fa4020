/* fakequant.c: fake quantization as an autograd op (forward: quantize then
 * dequantize with the shared quantizer; backward: STE, clipped STE or LSQ,
 * on the even grid, a codebook's levels, or a block format's). */
#include <math.h>
#include <string.h>

#include "qat.h"

/* What a fake-quant node keeps in the tape arena: its spec and, for learned
 * tables, each table sorted (the spec's lut) with each sorted level's place
 * in its table (perm, per table). The spec comes first: n->idx points at it. */
typedef struct FqState {
    QuantSpec s;
    float *lut;
    int *perm;
} FqState;

static void fq_backward(Node *n) {
    Tensor *x = n->in[0], *scale = n->in[1], *zpt = n->i[1] ? NULL : n->in[2], *table = n->i[1] ? n->in[2] : NULL;
    Tensor *y = n->out;
    const FqState *st = (const FqState *)(const void *)n->idx;
    const QuantSpec *s = &st->s;
    Estimator est = (Estimator)n->i[0];
    int cols = x->shape[x->ndim - 1], rows = (int)(x->numel / (size_t)cols);
    int qmin = quant_qmin(s), qmax = quant_qmax(s);
    size_t ns = quant_n_scales(s, rows, cols);
    const float *sc = n->saved, *zp = n->saved2, *px = x->data, *gy = y->grad;
    bool ds = est == EST_LSQ && scale && scale->requires_grad;
    bool dz = est == EST_LSQ && zpt && zpt->requires_grad;
    int nl = 0;
    bool tab = quant_levels(s, &nl) != NULL;
#pragma omp parallel for schedule(static) if (x->numel > 65536)
    for (size_t k = 0; k < ns; k++) {
        float sk = sc[k], z = zp ? zp[k] : 0.0f, inv = sk > 0.0f ? 1.0f / sk : 0.0f;
        float acc_s = 0.0f, acc_z = 0.0f;
        size_t at, per;
        quant_run(s, rows, cols, k, &at, &per);
        int nk = nl;
        const float *lv = tab ? quant_levels_at(s, quant_table_of_scale(s, cols, k), &nk) : NULL;
        /* LSQ gradient scale: 1/sqrt(N_per_scale * Q_p) (Esser et al.), a partial group's own N; a
         * codebook's levels reach 1 */
        float gscale = 1.0f / sqrtf((float)per * (lv ? 1.0f : (float)qmax));
        if (lv) { /* the nearest level; past the outermost ones, clipped as the even grid is */
            for (size_t i = at; i < at + per; i++) {
                float u = px[i] * inv;
                bool below = u < lv[0], above = u > lv[nl - 1];
                if (x->requires_grad) x->grad[i] += est == EST_STE || !(below || above) ? gy[i] : 0.0f;
                if (ds) acc_s += gy[i] * (below ? lv[0] : above ? lv[nl - 1] : lv[quant_level_index(lv, nl, u)] - u);
            }
            if (ds) scale->grad[k] += acc_s * gscale;
            continue;
        }
        for (size_t i = at; i < at + per; i++) {
            float u = px[i] * inv;
            float code = rintf(u) + z; /* before clamping */
            bool below = code < (float)qmin, above = code > (float)qmax;
            if (x->requires_grad) x->grad[i] += est == EST_STE || !(below || above) ? gy[i] : 0.0f;
            if (ds) acc_s += gy[i] * (below ? (float)qmin - z : above ? (float)qmax - z : rintf(u) - u);
            if (dz) acc_z += gy[i] * (below || above ? -sk : 0.0f);
        }
        if (ds) scale->grad[k] += acc_s * gscale;
        if (dz) zpt->grad[k] += acc_z * gscale;
    }
    if (table && table->requires_grad) /* x_hat = scale * level[j]: level j gathers scale * grad of its weights */
        for (size_t k = 0; k < ns; k++) {
            float sk = sc[k], inv = sk > 0.0f ? 1.0f / sk : 0.0f;
            size_t at, per, t = quant_table_of_scale(s, cols, k), o = t * (size_t)nl;
            quant_run(s, rows, cols, k, &at, &per);
            const float *lv = st->lut + o;
            for (size_t i = at; i < at + per; i++)
                table->grad[o + (size_t)st->perm[o + (size_t)quant_level_index(lv, nl, px[i] * inv)]] += gy[i] * sk;
        }
}

/* Block formats: the codes are recomputed from x and the half-precision
 * scale (q4_1: scale and minimum), as the forward made them. */
static void fqf_backward(Node *n) {
    Tensor *x = n->in[0], *scale = n->in[1], *y = n->out;
    const QuantSpec *s = (const QuantSpec *)n->idx;
    Estimator est = (Estimator)n->i[0];
    const float *sc = n->saved, *mn = n->saved2, *px = x->data, *gy = y->grad;
    size_t nb = x->numel / QBLOCK;
    bool ds = est == EST_LSQ && scale && scale->requires_grad;
    int lo = quant_qmin(s), hi = quant_qmax(s);
    float gscale = 1.0f / sqrtf((float)QBLOCK * (float)hi);
#pragma omp parallel for schedule(static) if (x->numel > 65536)
    for (size_t k = 0; k < nb; k++) {
        float dh = fp16_round(sc[k]), id = dh != 0.0f ? 1.0f / dh : 0.0f, m = mn ? mn[k] : 0.0f, acc = 0.0f;
        for (size_t i = k * QBLOCK; i < (k + 1) * QBLOCK; i++) {
            float u = (px[i] - m) * id;
            /* ggml's rounding, before clamping; iq4_nl's nearest level, out
             * of range past its outermost levels */
            float r = s->fmt == QF_Q8_0    ? roundf(u)
                      : s->fmt == QF_IQ4_NL ? (float)IQ4NL_LEVELS[iq4nl_index(u)]
                                           : floorf(u + 0.5f);
            bool below = (s->fmt == QF_IQ4_NL ? u : r) < (float)lo, above = (s->fmt == QF_IQ4_NL ? u : r) > (float)hi;
            if (x->requires_grad) x->grad[i] += est == EST_STE || !(below || above) ? gy[i] : 0.0f;
            if (ds) acc += gy[i] * (below ? (float)lo : above ? (float)hi : r - u);
        }
        if (ds) scale->grad[k] += acc * gscale;
    }
}

static Tensor *fake_quant_format(Tape *t, Tensor *x, const QuantSpec *s, Estimator est, Tensor *scale, Tensor *zp) {
    char sx[64];
    tensor_shape_str(x, sx, sizeof sx);
    int cols = x->shape[x->ndim - 1], rows = (int)(x->numel / (size_t)cols);
    if (cols % QBLOCK) qat_fail("fake_quant: %s needs rows of whole blocks of %d, input %s", qformat_name(s->fmt), QBLOCK, sx);
    size_t nb = x->numel / QBLOCK;
    if (scale && scale->numel != nb) qat_fail("fake_quant: %zu scales given, %s needs %zu", scale->numel, sx, nb);
    if (scale && s->fmt == QF_Q4_1 && (!zp || zp->numel != nb))
        qat_fail("fake_quant: q4_1 with given scales needs the blocks' minima too, %zu of them", nb);
    float *sc, *mn = NULL;
    if (scale) { /* q4_1: the minima are held (LSQ learns the scale only, as zero points stay frozen) */
        sc = scale->data;
        if (s->fmt == QF_Q4_1) {
            mn = arena_alloc(&t->arena, nb * sizeof(float));
            for (size_t k = 0; k < nb; k++) mn[k] = fp16_round(zp->data[k]);
        }
    } else { /* ggml's own scales (and minima) */
        sc = arena_alloc(&t->arena, nb * sizeof(float));
        if (s->fmt == QF_Q4_1) mn = arena_alloc(&t->arena, nb * sizeof(float));
        quant_minmax(s, x->data, rows, cols, sc, mn);
    }
    Tensor *y = tensor_new(t, x->ndim, x->shape);
    quant_fake(s, x->data, rows, cols, scale ? sc : NULL, scale ? mn : NULL, y->data);
    Node *n = tape_record(t, "fake_quant", fqf_backward, y, 3, (Tensor *[]){x, scale, NULL});
    if (n) {
        QuantSpec *keep = arena_alloc(&t->arena, sizeof *keep);
        *keep = *s;
        n->idx = (const int32_t *)(void *)keep;
        n->i[0] = (int)est;
        n->saved = sc;
        n->saved2 = mn;
    }
    return y;
}

static Tensor *fake_quant(Tape *t, Tensor *x, const QuantSpec *spec, Estimator est, Tensor *scale, Tensor *zp,
                          Tensor *table) {
    char sx[64];
    if (!tensor_is_contiguous(x)) qat_fail("fake_quant: input %s is not contiguous", tensor_shape_str(x, sx, sizeof sx));
    if (spec->fmt) return fake_quant_format(t, x, spec, est, scale, zp);
    FqState *st = arena_alloc(&t->arena, sizeof *st);
    st->s = *spec;
    const QuantSpec *s = &st->s;
    int cols = x->shape[x->ndim - 1], rows = (int)(x->numel / (size_t)cols);
    const char *bad = quant_tables_invalid(spec);
    if (bad) qat_fail("fake_quant: %s", bad);
    if (table) { /* sorted, so the nearest level is a binary search; perm maps back to the tensor */
        int nl = 1 << spec->bits;
        size_t nt = quant_n_tables(spec, rows, cols), n = nt * (size_t)nl;
        if (spec->cb != QCB_KMEANS || !quant_codebook_bits(spec->bits) || table->numel != n)
            qat_fail("fake_quant: a table of %zu levels for a %s%d spec of %zu tables (takes a kmeans spec of 2..4 or 8 bits, "
                     "2^bits levels a table)",
                     table->numel, quant_codebook_name(spec->cb), spec->bits, nt);
        st->lut = arena_alloc(&t->arena, n * sizeof(float));
        st->perm = arena_alloc(&t->arena, n * sizeof(int));
        /* on the grid of 1/127; straight through: the gradient reaches the entry as it is */
        for (size_t k = 0; k < nt; k++)
            quant_table_sort(table->data + k * nl, nl, st->lut + k * nl, st->perm + k * nl, "fake_quant");
        st->s.lut = st->lut;
    }
    if (s->bits < 2 || s->bits > 8) qat_fail("fake_quant: %d bits (allowed 2..8)", s->bits);
    int nl;
    if (s->cb && (!quant_levels(s, &nl) || !s->sym))
        qat_fail("fake_quant: a %s codebook takes 2..4 or 8 bits, symmetric (got %d bits%s)", quant_codebook_name(s->cb), s->bits,
                 s->sym ? "" : ", asymmetric");
    if (s->gran == QG_GROUP && s->group < 1) qat_fail("fake_quant: group size %d", s->group);
    size_t ns = quant_n_scales(s, rows, cols);
    if (scale && scale->numel != ns)
        qat_fail("fake_quant: %zu scales given, input %s needs %zu", scale->numel, tensor_shape_str(x, sx, sizeof sx), ns);
    if (!scale && est == EST_LSQ) qat_fail("fake_quant: the lsq estimator needs a learned scale tensor");
    float *sc, *z = NULL;
    if (scale) {
        sc = scale->data;
        if (!s->sym) {
            z = arena_alloc(&t->arena, ns * sizeof(float));
            int qmin = quant_qmin(s), qmax = quant_qmax(s);
            for (size_t k = 0; k < ns; k++) { /* a learned zero point is used rounded and in range */
                float v = zp ? rintf(zp->data[k]) : 0.0f;
                z[k] = v < qmin ? (float)qmin : v > qmax ? (float)qmax : v;
            }
        }
    } else {
        sc = arena_alloc(&t->arena, ns * sizeof(float));
        if (!s->sym) z = arena_alloc(&t->arena, ns * sizeof(float));
        quant_minmax(s, x->data, rows, cols, sc, z);
    }
    Tensor *y = tensor_new(t, x->ndim, x->shape);
    quant_fake(s, x->data, rows, cols, sc, z, y->data);
    Node *n = tape_record(t, "fake_quant", fq_backward, y, 3, (Tensor *[]){x, scale, table ? table : zp});
    if (n) {
        n->idx = (const int32_t *)(void *)st;
        n->i[0] = (int)est;
        n->i[1] = table != NULL;
        n->saved = sc;
        n->saved2 = z;
    }
    return y;
}

Tensor *op_fake_quant(Tape *t, Tensor *x, const QuantSpec *s, Estimator est, Tensor *scale, Tensor *zp) {
    return fake_quant(t, x, s, est, scale, zp, NULL);
}

Tensor *op_fake_quant_table(Tape *t, Tensor *x, const QuantSpec *s, Estimator est, Tensor *scale, Tensor *table) {
    return fake_quant(t, x, s, est, scale, NULL, table);
}

/* KV and activation blocks: the gradient passes straight through (their
 * scales are the max, so nothing is clipped). */
static void fq_straight_backward(Node *n) {
    Tensor *x = n->in[0], *y = n->out;
    for (size_t i = 0; i < x->numel; i++) x->grad[i] += y->grad[i];
}

Tensor *op_fake_quant_kv(Tape *t, Tensor *qkv, int n_head, int n_kv_head, int bits) {
    char sx[64];
    int units = n_head + 2 * n_kv_head;
    if (qkv->ndim != 3 || qkv->shape[2] % units != 0 || !tensor_is_contiguous(qkv))
        qat_fail("fake_quant_kv: expected a contiguous qkv [B,T,(%d + 2 * %d) heads], got %s", n_head, n_kv_head,
                 tensor_shape_str(qkv, sx, sizeof sx));
    int C3 = qkv->shape[2], hs = C3 / units, C = n_head * hs;
    size_t rows = qkv->numel / (size_t)C3;
    Tensor *y = tensor_new(t, 3, qkv->shape);
    const float *px = qkv->data;
    float *py = y->data;
#pragma omp parallel for schedule(static) if (rows > 64)
    for (size_t r = 0; r < rows; r++) {
        const float *xr = px + r * C3;
        float *yr = py + r * C3;
        memcpy(yr, xr, (size_t)C * sizeof(float)); /* queries stay float */
        quant_fake_groups(xr + C, 2 * n_kv_head, hs, bits, yr + C); /* one scale per token and head, for K then V */
    }
    tape_record(t, "fake_quant_kv", fq_straight_backward, y, 1, (Tensor *[]){qkv});
    return y;
}

Tensor *op_fake_quant_act_q8_0(Tape *t, Tensor *x) {
    char sx[64];
    int cols = x->ndim ? x->shape[x->ndim - 1] : 0;
    if (!tensor_is_contiguous(x) || cols % QBLOCK)
        qat_fail("fake_quant: q8_0 activations need a contiguous input of whole blocks of %d per row, got %s", QBLOCK,
                 tensor_shape_str(x, sx, sizeof sx));
    Tensor *y = tensor_new(t, x->ndim, x->shape);
    size_t nb = x->numel / QBLOCK;
    const float *px = x->data;
    float *py = y->data;
#pragma omp parallel for schedule(static) if (nb > 2048)
    for (size_t b = 0; b < nb; b++) block_act_q8_0(px + b * QBLOCK, py + b * QBLOCK, NULL, NULL);
    tape_record(t, "fake_quant_act_q8_0", fq_straight_backward, y, 1, (Tensor *[]){x});
    return y;
}

double quant_dampen(const QuantSpec *s, const float *w, int rows, int cols, const float *scale, const float *zp,
                    float coef, float *grad) {
    /* The penalty is on the distance to the weight's own grid point in units
     * of its scale, so groups with small scales are pulled as hard as large
     * ones; the grid point is a constant (no gradient), and weights past the
     * clipping range are left alone, their distance being the clip's. */
    int nl = 0, qmin = quant_qmin(s), qmax = quant_qmax(s);
    bool table = quant_levels(s, &nl) != NULL;
    size_t ns = quant_n_scales(s, rows, cols);
    double total = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : total) if ((size_t)rows * cols > 65536)
    for (size_t k = 0; k < ns; k++) {
        size_t at, per, t = quant_table_of_scale(s, cols, k);
        quant_run(s, rows, cols, k, &at, &per);
        int nk = nl;
        const float *lv = table ? quant_levels_at(s, t, &nk) : NULL;
        float sc, z = 0.0f;
        if (scale) {
            sc = scale[k], z = zp ? zp[k] : 0.0f;
        } else {
            float lo = w[at], hi = w[at];
            for (size_t i = at + 1; i < at + per; i++) lo = fminf(lo, w[i]), hi = fmaxf(hi, w[i]);
            quant_params_from_range(s, lo, hi, &sc, s->sym ? NULL : &z);
        }
        if (!(sc > 0.0f)) continue;
        float lo = lv ? lv[0] * sc : quant_dequant(qmin, sc, z), hi = lv ? lv[nl - 1] * sc : quant_dequant(qmax, sc, z);
        float inv = 1.0f / sc;
        for (size_t i = at; i < at + per; i++) {
            if (w[i] < lo || w[i] > hi) continue;
            float d = (w[i] - quant_round_at(s, t, w[i], sc, z)) * inv;
            total += (double)d * d;
            grad[i] += coef * 2.0f * d * inv;
        }
    }
    return total;
}
