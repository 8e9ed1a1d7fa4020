/* kernels.c: run-time choice of the SIMD path, QMatrix construction with the
 * shared quantizer, and the matrix products built on the dot primitives. */
#include "kernels_impl.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

/* CPU features are a property of the process, so the chosen path is too. */
static int g_path = -1;

bool kernel_supported(KernelPath p) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (p == KERN_AVX512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vnni");
    if (p == KERN_AVX2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return p == KERN_SCALAR;
}

const char *kernel_path_name(KernelPath p) {
    return p == KERN_AVX512 ? "avx512" : p == KERN_AVX2 ? "avx2" : "scalar";
}

KernelPath kernel_path(void) {
    if (g_path >= 0) return (KernelPath)g_path;
    const char *env = getenv("QAT_KERNEL");
    if (env && *env) {
        KernelPath p = !strcmp(env, "scalar") ? KERN_SCALAR : !strcmp(env, "avx2") ? KERN_AVX2
                       : !strcmp(env, "avx512")                                     ? KERN_AVX512
                                                                                    : (KernelPath)-1;
        if ((int)p < 0) qat_fail("QAT_KERNEL=%s: expected scalar, avx2 or avx512", env);
        if (!kernel_supported(p)) qat_fail("QAT_KERNEL=%s: this CPU does not support that path", env);
        g_path = p;
    } else {
        g_path = kernel_supported(KERN_AVX512) ? KERN_AVX512 : kernel_supported(KERN_AVX2) ? KERN_AVX2 : KERN_SCALAR;
    }
    return (KernelPath)g_path;
}

KernelPath kernel_force(KernelPath p) {
    KernelPath old = kernel_path();
    if (!kernel_supported(p)) qat_fail("kernel path %s is not supported by this CPU", kernel_path_name(p));
    g_path = p;
    return old;
}

typedef void (*KrowQ8)(const int8_t *, const float *, int, const float *, int, int, float *);
typedef void (*KrowQ4)(const uint8_t *, const float *, int, const float *, int, int, float *);
typedef void (*KrowLut)(const uint8_t *, const float *, int, int, const float *, int, const float *, int, int, float *);
typedef void (*KW8A8)(const QMatrix *, const int8_t *, const float *, int, int, int, float *);

static KrowQ8 krow_q8_fn(void) {
    KernelPath p = kernel_path();
    return p == KERN_AVX512 ? krows_q8_f32_avx512 : p == KERN_AVX2 ? krows_q8_f32_avx2 : krows_q8_f32_scalar;
}
static KrowQ4 krow_q4_fn(void) {
    KernelPath p = kernel_path();
    return p == KERN_AVX512 ? krows_q4_f32_avx512 : p == KERN_AVX2 ? krows_q4_f32_avx2 : krows_q4_f32_scalar;
}
typedef void (*KrowLut8)(const uint8_t *, const float *, const float *, int, const float *, int, int, float *);
static KrowLut8 krow_lut8_fn(void) {
    KernelPath p = kernel_path();
    return p == KERN_AVX512 ? krows_lut8_f32_avx512 : p == KERN_AVX2 ? krows_lut8_f32_avx2 : krows_lut8_f32_scalar;
}

static KrowLut krow_lut_fn(void) {
    KernelPath p = kernel_path();
    return p == KERN_AVX512 ? krows_lut_f32_avx512 : p == KERN_AVX2 ? krows_lut_f32_avx2 : krows_lut_f32_scalar;
}
static KW8A8 kw8a8_fn(const QMatrix *w) {
    KernelPath p = kernel_path();
    if (w->lut) /* iq4_nl x q8_0: the table panels on AVX-512 */
        return p == KERN_AVX512 && w->pl && !w->plevels_two && w->group % 8 == 0 ? kw4a8_lut_panels_avx512
               : p == KERN_SCALAR                              ? kw4a8_panels_scalar
                                                               : kw4a8_lut_avx2;
    if (w->bits <= 4) /* W4A8 (q8_0 activations): the int4 panels on AVX-512, else the reference */
        return p == KERN_AVX512 && w->p4 ? kw4a8_panels_avx512 : kw4a8_panels_scalar;
    return p == KERN_AVX512 ? kw8a8_panels_avx512 : p == KERN_AVX2 ? kw8a8_panels_avx2 : kw8a8_panels_scalar;
}

void krows_q8_f32(const int8_t *q, const float *scales, int group, const float *x, int n, int nrows, float *out) {
    krow_q8_fn()(q, scales, group, x, n, nrows, out);
}
void krows_q4_f32(const uint8_t *q4, const float *scales, int group, const float *x_split, int n, int nrows, float *out) {
    krow_q4_fn()(q4, scales, group, x_split, n, nrows, out);
}
void krows_lut8_f32(const uint8_t *idx, const float *lut, const float *scales, int group, const float *x, int n, int nrows,
                    float *out) {
    krow_lut8_fn()(idx, lut, scales, group, x, n, nrows, out);
}

void krows_lut_f32(const uint8_t *q4, const float *lut, int lut_rs, int lut_gs, const float *scales, int group, const float *x_split, int n,
                   int nrows, float *out) {
    krow_lut_fn()(q4, lut, lut_rs, lut_gs, scales, group, x_split, n, nrows, out);
}

/* Whether products with w use a prepared activation (KAct). */
static bool kact_needed(const QMatrix *w) { return w->bits <= 4 || (w->p8 && kernel_path() == KERN_AVX512); }

static size_t round64(size_t b) { return (b + 63) & ~(size_t)63; }

size_t kact_bytes(int n) {
    /* x_split, 2 planes, bsum, bsum1 and bscale (blocks of at least 4 columns) */
    return 64 + round64((size_t)n * sizeof(float)) + 2 * round64((size_t)n) + 3 * round64((size_t)(n + 3) / 4 * sizeof(float));
}

int kact_block(const QMatrix *w) {
    if (w->group % 32 == 0) return 32;
    return w->group % 4 == 0 ? w->group : (w->cols + 3) / 4 * 4;
}

void kact_prepare(const float *x, int n, int block, void *buf, KAct *a) {
    /* 64-byte aligned, so that the planes start on cache lines */
    char *p = (char *)(((uintptr_t)buf + 63) & ~(uintptr_t)63);
    a->x_split = (float *)p;
    kx_split(x, n, a->x_split);
    a->nat = NULL;
    a->bsum = NULL;
    a->bsum1 = NULL;
    a->bscale = NULL;
    a->block = block;
    a->nat_stride = (int)round64((size_t)n);
#if defined(__x86_64__)
    if (kernel_path() == KERN_AVX512) {
        int8_t *nat = (int8_t *)(p + round64((size_t)n * sizeof(float)));
        size_t nb = round64((size_t)(n + 3) / 4 * sizeof(float));
        float *bsum = (float *)(nat + 2 * (size_t)a->nat_stride);
        float *bsum1 = (float *)((char *)bsum + nb), *bscale = (float *)((char *)bsum1 + nb);
        if (kact_planes_avx512(x, n, block, nat, a->nat_stride, bsum, bsum1, bscale))
            a->nat = nat, a->bsum = bsum, a->bsum1 = bsum1, a->bscale = bscale;
    }
#endif
}

void kx_split(const float *x, int n, float *x_split) {
    for (int i = 0; i < n / 2; i++) {
        x_split[i] = x[2 * i];
        x_split[n / 2 + i] = x[2 * i + 1];
    }
}

void qmatrix_from_float(QMatrix *m, const float *w, int rows, int cols, int bits, int group, const float *scales) {
    if (group < 1) qat_fail("qmatrix: group %d", group);
    QuantSpec s = {.bits = bits, .sym = true, .gran = group == cols ? QG_CHANNEL : QG_GROUP, .group = group};
    qmatrix_from_weights(m, w, rows, cols, &s, scales);
}

void qmatrix_from_weights(QMatrix *m, const float *w, int rows, int cols, const QuantSpec *spec, const float *scales) {
    int bits = spec->bits;
    if (bits < 2 || bits > 8) qat_fail("qmatrix: %d bits (kernels take 2..8)", bits);
    if (!spec->sym || spec->cb || spec->fmt || spec->gran == QG_TENSOR || (spec->full && !quant_full_range_applies(spec)))
        qat_fail("qmatrix: int%d weights take the symmetric even grid (full range at 2..4 bits), per channel or group", bits);
    int group = spec->gran == QG_CHANNEL ? cols : spec->group;
    if (group < 1) qat_fail("qmatrix: group %d", group);
    QuantSpec s = *spec;
    size_t ns = quant_n_scales(&s, rows, cols), n = (size_t)rows * cols;
    /* a NaN would round to no code at all (the cast is undefined); a scale
     * <= 0, which LSQ can learn, gives code 0 here as in fake quantization.
     * Checked before anything is allocated: a caller may recover from the
     * failure (qat_try) */
    for (size_t i = 0; i < n; i++)
        if (!isfinite(w[i])) qat_fail("qmatrix: weight [%zu,%zu] is %g, not finite", i / cols, i % cols, w[i]);
    for (size_t i = 0; scales && i < ns; i++)
        if (!isfinite(scales[i])) qat_fail("qmatrix: scale %zu is %g, not finite", i, scales[i]);
    float *sc = xmalloc(ns * sizeof(float));
    if (scales)
        memcpy(sc, scales, ns * sizeof(float));
    else
        quant_minmax(&s, w, rows, cols, sc, NULL);
    int qmin = quant_qmin(&s), qmax = quant_qmax(&s);
    int8_t *codes = xmalloc(n);
    for (size_t i = 0; i < n; i++)
        codes[i] = (int8_t)quant_code(w[i], sc[quant_scale_index(&s, cols, (int)(i / cols), (int)(i % cols))], 0.0f,
                                      qmin, qmax);
    qmatrix_from_codes(m, codes, rows, cols, bits, group, sc, NULL);
    m->full = s.full;
    free(codes), free(sc);
}

void qmatrix_from_codes(QMatrix *m, const int8_t *codes, int rows, int cols, int bits, int group, const float *scales,
                        const float *offsets) {
    if (bits < 2 || bits > 8) qat_fail("qmatrix: %d bits (kernels take 2..8)", bits);
    if (group < 1 || group > cols) qat_fail("qmatrix: group %d for %d columns", group, cols);
    if (bits <= 4 && group % 2) qat_fail("qmatrix: int%d needs an even group size, not %d", bits, group);
    memset(m, 0, sizeof *m);
    int in = cols, ng = quant_groups(in, group);
    cols = ng * group; /* whole groups: zero codes past in */
    m->rows = rows, m->cols = cols, m->in = in, m->bits = bits, m->group = group;
    size_t ns = (size_t)rows * ng, n = (size_t)rows * cols;
    int8_t *wide = NULL;
    if (in != cols) {
        wide = xcalloc(n, 1);
        for (int r = 0; r < rows; r++) memcpy(wide + (size_t)r * cols, codes + (size_t)r * in, (size_t)in);
        codes = wide;
    }
    m->scales = xmalloc(ns * sizeof(float));
    memcpy(m->scales, scales, ns * sizeof(float));
    if (offsets) {
        m->offsets = xmalloc(ns * sizeof(float));
        memcpy(m->offsets, offsets, ns * sizeof(float));
    }
    if (bits > 4) {
        m->q8 = xmalloc(n);
        memcpy(m->q8, codes, n);
        /* the panels serve the AVX-512 weight-only products (and W8A8) */
        if (cols % 4 == 0 && group % 4 == 0 && kernel_supported(KERN_AVX512)) qmatrix_pack_w8a8(m);
    } else {
        m->q4 = xmalloc(n / 2);
        for (size_t i = 0; i < n; i += 2) {
            if (codes[i] < -8 || codes[i] > 7 || codes[i + 1] < -8 || codes[i + 1] > 7)
                qat_fail("qmatrix: int4 code %d at %zu is outside -8..7", codes[i] < -8 || codes[i] > 7 ? codes[i] : codes[i + 1], i);
            m->q4[i / 2] = (uint8_t)((unsigned)(codes[i] + 8) | (unsigned)(codes[i + 1] + 8) << 4);
        }
        if (kernel_supported(KERN_AVX512)) qmatrix_pack_q4(m);
    }
    free(wide);
}

void qmatrix_from_lut(QMatrix *m, const uint8_t *idx, int rows, int in, int group, const float *scales, const float *lut,
                      int n_levels) {
    qmatrix_from_luts(m, idx, rows, in, group, scales, lut, n_levels, QG_TENSOR);
}

/* int8 codes [rows, cols] into the W8A8 panels' lines (kernels.h). */
static int8_t *pack_lines8(const QMatrix *m, const int8_t *codes) {
    int K = m->cols, L = K / 4, P = (m->rows + QPANEL - 1) / QPANEL;
    int8_t *lines = xcalloc((size_t)P * L * 64, 1);
    for (int r = 0; r < m->rows; r++)
        for (int c = 0; c < K; c++)
            lines[((((size_t)r / QPANEL) * L + c / 4) * QPANEL + r % QPANEL) * 4 + c % 4] = codes[(size_t)r * K + c];
    return lines;
}

/* Row r's level indices into the table panels' lines (pl; kernels.h), and
 * when levels is given the row's per-group sums of its levels into psums. */
static void table_lines_row(QMatrix *m, int r, const int8_t *levels) {
    int K = m->cols, L2 = K / 8, p = r / QPANEL, j = r % QPANEL, ng = K / m->group;
    for (int c = 0; c < K; c++) {
        uint8_t q = m->q4[((size_t)r * K + c) / 2], v = c % 2 ? q >> 4 : q & 15;
        int l = c / 4;
        m->pl[((size_t)p * L2 + l / 2) * 64 + 4 * j + c % 4] |= (uint8_t)(l % 2 ? v << 4 : v);
        if (levels) m->psums[((size_t)p * ng + c / m->group) * QPANEL + j] += levels[v];
    }
}

/* The table panels of a matrix with a table per row or per group (kmeans
 * levels on the grid of 1/127; else none: the vpermps rows): the index
 * lines as for one table, pscales the scales / 127, and ptab (kernels.h). */
static void table_panels_rows(QMatrix *m) {
    int rows = m->rows, K = m->cols, G = m->group, ng = K / G, L2 = K / 8, P = (rows + QPANEL - 1) / QPANEL;
    if (G % 8 || !kernel_supported(KERN_AVX512)) return;
    for (size_t i = 0; i < (size_t)m->n_tables * 16; i++)
        if (!(fabsf(m->lut[i]) <= 1.0f && rintf(m->lut[i] * 127.0f) / 127.0f == m->lut[i])) return;
    int tps = m->lut_gs ? ng : 1;
    m->pl = xcalloc((size_t)P * L2 * 64, 1);
    m->pscales = xcalloc((size_t)P * ng * QPANEL, sizeof(float));
    m->ptab = xcalloc((size_t)P * tps * 4 * 64, 1);
    for (int r = 0; r < rows; r++) {
        int p = r / QPANEL, j = r % QPANEL;
        table_lines_row(m, r, NULL);
        for (int g = 0; g < ng; g++) m->pscales[((size_t)p * ng + g) * QPANEL + j] = m->scales[(size_t)r * ng + g] / 127.0f;
        for (int ts = 0; ts < tps; ts++) {
            const float *lv = m->lut + (size_t)r * m->lut_rs + (size_t)ts * m->lut_gs;
            uint8_t *t = m->ptab + (((size_t)p * tps + ts) * 4 + (size_t)(j % 4)) * 64 + (size_t)(j / 4) * 16;
            for (int k = 0; k < 16; k++) t[k] = (uint8_t)((int)rintf(lv[k] * 127.0f) + 128);
        }
    }
}

static void qmatrix_from_lut8(QMatrix *m, const uint8_t *idx, int rows, int in, int group, const float *scales,
                              const float *lut) {
    memset(m, 0, sizeof *m);
    int ng = quant_groups(in, group), cols = ng * group;
    m->rows = rows, m->cols = cols, m->in = in, m->bits = 8, m->group = group;
    size_t ns = (size_t)rows * ng;
    m->scales = xmalloc(ns * sizeof(float));
    memcpy(m->scales, scales, ns * sizeof(float));
    m->lut = xmalloc(256 * sizeof(float));
    memcpy(m->lut, lut, 256 * sizeof(float));
    m->n_levels = 256, m->n_tables = 1, m->lut_tables = QG_TENSOR;
    m->idx8 = xcalloc((size_t)rows * cols, 1); /* index 0 past in, against zero activations */
    for (int r = 0; r < rows; r++) memcpy(m->idx8 + (size_t)r * cols, idx + (size_t)r * in, (size_t)in);
    /* AVX-512: the levels x 127 / their max in two bytes, a + b / 256 (as
     * two-byte 4-bit tables), on the int8 panels' lines: p8 holds a, p8lo
     * b, pscales the scales x max / 127 */
    float lmax = 0.0f;
    for (int i = 0; i < 256; i++) lmax = isfinite(lut[i]) ? fmaxf(lmax, fabsf(lut[i])) : INFINITY;
    if (!isfinite(lmax) || lmax == 0.0f || cols % 4 || group % 4 || !kernel_supported(KERN_AVX512)) return;
    int8_t a[256], b[256];
    for (int i = 0; i < 256; i++) {
        float v = lut[i] / lmax * 127.0f, lo;
        a[i] = (int8_t)rintf(v);
        lo = rintf((v - (float)a[i]) * 256.0f); /* in [-128, 128] */
        b[i] = (int8_t)(lo > 127.0f ? 127.0f : lo);
    }
    int8_t *ca = xmalloc((size_t)rows * cols), *cb = xmalloc((size_t)rows * cols);
    for (size_t i = 0; i < (size_t)rows * cols; i++) ca[i] = a[m->idx8[i]], cb[i] = b[m->idx8[i]];
    m->p8 = pack_lines8(m, ca);
    m->p8lo = pack_lines8(m, cb);
    free(ca), free(cb);
    int P = (rows + QPANEL - 1) / QPANEL;
    m->pscales = xcalloc((size_t)P * ng * QPANEL, sizeof(float));
    for (int r = 0; r < rows; r++)
        for (int g = 0; g < ng; g++)
            m->pscales[((size_t)(r / QPANEL) * ng + g) * QPANEL + r % QPANEL] = m->scales[(size_t)r * ng + g] * (lmax / 127.0f);
}

void qmatrix_from_luts(QMatrix *m, const uint8_t *idx, int rows, int in, int group, const float *scales,
                       const float *luts, int n_levels, QGranularity tables) {
    if (n_levels == 256 && tables == QG_TENSOR && group >= 1 && group <= in) {
        qmatrix_from_lut8(m, idx, rows, in, group, scales, luts);
        return;
    }
    if (n_levels < 2 || n_levels > 16) qat_fail("qmatrix: a table of %d levels (2..16, or 256 in one table)", n_levels);
    if (group < 2 || group % 2 || group > in) qat_fail("qmatrix: a table matrix needs an even group of at most %d, not %d", in, group);
    memset(m, 0, sizeof *m);
    int ng = quant_groups(in, group), cols = ng * group; /* whole groups: index 0 past in, against zero activations */
    m->rows = rows, m->cols = cols, m->in = in, m->bits = 4, m->group = group;
    size_t ns = (size_t)rows * ng;
    m->scales = xmalloc(ns * sizeof(float));
    memcpy(m->scales, scales, ns * sizeof(float));
    m->lut_tables = tables;
    m->n_tables = tables == QG_TENSOR ? 1 : tables == QG_CHANNEL ? rows : (int)ns;
    m->lut_rs = tables == QG_TENSOR ? 0 : tables == QG_CHANNEL ? 16 : 16 * ng;
    m->lut_gs = tables == QG_GROUP ? 16 : 0;
    m->lut = xcalloc((size_t)m->n_tables * 16, sizeof(float));
    for (int t = 0; t < m->n_tables; t++)
        memcpy(m->lut + (size_t)t * 16, luts + (size_t)t * n_levels, (size_t)n_levels * sizeof(float));
    m->n_levels = n_levels;
    m->q4 = xcalloc((size_t)rows * cols / 2, 1);
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < in; c++) {
            uint8_t v = idx[(size_t)r * in + c];
            if (v >= n_levels) qat_fail("qmatrix: level index %d at [%d,%d] is outside 0..%d", v, r, c, n_levels - 1);
            m->q4[((size_t)r * cols + c) / 2] |= (uint8_t)(c % 2 ? v << 4 : v);
        }
    if (m->n_tables > 1) {
        table_panels_rows(m);
        return;
    }
    /* integer levels (iq4_nl) as they are; levels on the grid of 1/127
     * (kmeans tables) as integers, the 1/127 moved into the panel scales;
     * any other finite levels in two bytes, a + b / 256, of levels x 127 /
     * their max */
    bool integer = true, grid = true, finite = true;
    float lmax = 0.0f;
    for (int i = 0; i < 16; i++) {
        integer = integer && m->lut[i] == rintf(m->lut[i]) && fabsf(m->lut[i]) <= 127.0f;
        grid = grid && fabsf(m->lut[i]) <= 1.0f && rintf(m->lut[i] * 127.0f) / 127.0f == m->lut[i];
        finite = finite && isfinite(m->lut[i]);
        lmax = fmaxf(lmax, fabsf(m->lut[i]));
    }
    if (!finite || lmax == 0.0f || group % 8 || m->n_tables > 1 || !kernel_supported(KERN_AVX512)) return;
    m->plevels_two = !integer && !grid;
    float pmul = integer ? 1.0f : m->plevels_two ? lmax / 127.0f : 1.0f / 127.0f;
    for (int i = 0; i < 16; i++) {
        float v = integer ? m->lut[i] : m->plevels_two ? m->lut[i] / lmax * 127.0f : m->lut[i] * 127.0f;
        m->plevels[i] = (int8_t)rintf(v);
        m->plevels_u[i] = (uint8_t)(m->plevels[i] + 128);
        float lo = rintf((v - (float)m->plevels[i]) * 256.0f); /* in [-128, 128] */
        m->plevels_lo_u[i] = (uint8_t)((lo > 127.0f ? 127.0f : lo) + 128.0f);
    }
    /* the table panels, for integer dot products against the activations' digits */
    int K = cols, L2 = K / 8, P = (rows + QPANEL - 1) / QPANEL;
    m->pl = xcalloc((size_t)P * L2 * 64, 1);
    m->pscales = xcalloc((size_t)P * ng * QPANEL, sizeof(float));
    m->psums = xcalloc((size_t)P * ng * QPANEL, sizeof(int32_t));
    for (int r = 0; r < rows; r++) {
        int p = r / QPANEL, j = r % QPANEL;
        table_lines_row(m, r, m->plevels);
        for (int g = 0; g < ng; g++) m->pscales[((size_t)p * ng + g) * QPANEL + j] = m->scales[(size_t)r * ng + g] * pmul;
    }
}

void qmatrix_pack_w8a8(QMatrix *m) {
    if (m->bits <= 4) qat_fail("qmatrix: W8A8 panels need int8 codes, not packed int%d", m->bits);
    if (m->idx8) qat_fail("qmatrix: W8A8 panels need int8 codes, not the level indices of an 8-bit table");
    if (m->cols % 4 || m->group % 4)
        qat_fail("qmatrix: W8A8 needs columns and group size divisible by 4 (%d columns, group %d)", m->cols, m->group);
    int K = m->cols, G = m->group, ng = K / G, P = (m->rows + QPANEL - 1) / QPANEL;
    free(m->p8), free(m->pscales), free(m->psums);
    m->p8 = pack_lines8(m, m->q8);
    m->pscales = xcalloc((size_t)P * ng * QPANEL, sizeof(float));
    m->psums = xcalloc((size_t)P * ng * QPANEL, sizeof(int32_t));
    for (int r = 0; r < m->rows; r++) {
        int p = r / QPANEL, j = r % QPANEL;
        for (int c = 0; c < K; c++) m->psums[((size_t)p * ng + c / G) * QPANEL + j] += m->q8[(size_t)r * K + c];
        for (int g = 0; g < ng; g++) m->pscales[((size_t)p * ng + g) * QPANEL + j] = m->scales[(size_t)r * ng + g];
    }
}

void qmatrix_pack_q4(QMatrix *m) {
    free(m->p4), free(m->p4scales);
    m->p4 = NULL, m->p4scales = NULL;
    if (m->bits > 4 || m->lut || m->group % 8 || m->cols % 8) return; /* a table matrix looks its levels up instead */
    int K = m->cols, G = m->group, ng = K / G, L = K / 8, P = (m->rows + QPANEL - 1) / QPANEL;
    m->p4 = xcalloc((size_t)P * L * 64, 1);
    m->p4scales = xcalloc((size_t)P * ng * QPANEL, sizeof(float));
    for (int r = 0; r < m->rows; r++) {
        int p = r / QPANEL, j = r % QPANEL;
        const uint8_t *q = m->q4 + (size_t)r * K / 2;
        for (int c = 0; c < K; c++) {
            int nib = c % 2 ? q[c / 2] >> 4 : q[c / 2] & 15, l = c / 8, b = c % 8;
            uint8_t *dst = m->p4 + ((size_t)p * L + l) * 64 + 4 * j + b % 4;
            *dst |= (uint8_t)(b < 4 ? nib : nib << 4);
        }
        for (int g = 0; g < ng; g++) m->p4scales[((size_t)p * ng + g) * QPANEL + j] = m->scales[(size_t)r * ng + g];
    }
}

void qmatrix_set_float_cols(QMatrix *m, const float *w, const int32_t *cols, int n) {
    if (m->in != m->cols) qat_fail("qmatrix: an outlier split with a partial last group (%d of %d columns)", m->in, m->cols);
    if (m->lut) qat_fail("qmatrix: an outlier split of a table matrix (its levels have no zero)");
    m->n_float = n;
    m->float_cols = xmalloc((size_t)(n ? n : 1) * sizeof(int32_t));
    m->float_w = xmalloc((size_t)m->rows * (n ? n : 1) * sizeof(float));
    for (int k = 0; k < n; k++) {
        if (cols[k] < 0 || cols[k] >= m->cols || (k && cols[k] <= cols[k - 1]))
            qat_fail("qmatrix: float column %d out of order or range (%d columns)", cols[k], m->cols);
        m->float_cols[k] = cols[k];
    }
    for (int r = 0; r < m->rows; r++)
        for (int k = 0; k < n; k++) {
            size_t i = (size_t)r * m->cols + cols[k];
            m->float_w[(size_t)r * n + k] = w[i];
            if (m->bits > 4) m->q8[i] = 0;
            else m->q4[i / 2] = (uint8_t)(i % 2 ? (m->q4[i / 2] & 15) | 8 << 4 : (m->q4[i / 2] & 0xF0) | 8);
        }
    if (m->p4) qmatrix_pack_q4(m);
    if (m->p8) qmatrix_pack_w8a8(m);
}

size_t qmatrix_bytes(const QMatrix *m) {
    size_t n = (size_t)m->rows * m->in; /* the layer's codes; the zero padding is the kernels' */
    /* several tables are int8 levels in the file (1/127 each), one table its floats */
    size_t tables = !m->lut ? 0 : m->n_tables > 1 ? (size_t)m->n_tables * m->n_levels : (size_t)m->n_levels * sizeof(float);
    /* an 8-bit table matrix's indices: a byte each */
    return (m->bits > 4 ? n : n / 2) + (size_t)m->rows * (m->cols / m->group) * sizeof(float) * (m->offsets ? 2 : 1) + tables;
}

void qmatrix_dequant_rows(const QMatrix *m, int r0, int nr, float *out) {
    int K = m->cols, G = m->group, ng = K / G;
    for (int r = 0; r < nr; r++) {
        const float *sc = m->scales + (size_t)(r0 + r) * ng;
        float *o = out + (size_t)r * K;
        if (m->idx8) {
            const uint8_t *q = m->idx8 + (size_t)(r0 + r) * K;
            for (int k = 0; k < K; k++) o[k] = m->lut[q[k]] * sc[k / G];
        } else if (m->bits > 4) {
            const int8_t *q = m->q8 + (size_t)(r0 + r) * K;
            for (int k = 0; k < K; k++) o[k] = (float)q[k] * sc[k / G];
        } else {
            const uint8_t *q = m->q4 + (size_t)(r0 + r) * K / 2;
            const float *lr = m->lut ? m->lut + (size_t)(r0 + r) * m->lut_rs : NULL;
            for (int k = 0; m->lut && k < K; k += 2) {
                o[k] = lr[(size_t)(k / G) * m->lut_gs + (q[k / 2] & 15)] * sc[k / G];
                o[k + 1] = lr[(size_t)((k + 1) / G) * m->lut_gs + (q[k / 2] >> 4)] * sc[(k + 1) / G];
            }
            for (int k = 0; !m->lut && k < K; k += 2) {
                o[k] = (float)((int)(q[k / 2] & 15) - 8) * sc[k / G];
                o[k + 1] = (float)((int)(q[k / 2] >> 4) - 8) * sc[(k + 1) / G];
            }
        }
        if (m->offsets)
            for (int k = 0; k < K; k++) o[k] += m->offsets[(size_t)(r0 + r) * ng + k / G];
    }
}

/* With q8_0 activations, as llama.cpp's q4_1 x q8_1 product takes them: its
 * activation blocks also carry s = d x (the sum of their codes) as a half, d
 * unrounded (max|x| / 127), and the product adds the weight block's minimum
 * m times that s. qat's offset is m + 8 d (its codes are q - 8): the 8 d part
 * goes against the activation block's own values, the m part against the
 * half s. */
static void add_offsets_q8(const QMatrix *w, const float *x, const int8_t *xq, const float *xs, int M, int lo, int hi,
                           float *y) {
    int K = w->cols, ng = K / QBLOCK, N = w->rows;
    float s_half[ng > 0 ? ng : 1], s_exact[ng > 0 ? ng : 1];
    for (int m = 0; m < M; m++) {
        for (int g = 0; g < ng; g++) {
            const float *xb = x + (size_t)m * K + (size_t)g * QBLOCK;
            const int8_t *qb = xq + (size_t)m * K + (size_t)g * QBLOCK;
            int32_t s = 0;
            float amax = 0.0f;
            for (int k = 0; k < QBLOCK; k++) s += qb[k], amax = fmaxf(amax, fabsf(xb[k]));
            s_half[g] = fp16_round(amax / 127.0f * (float)s);
            s_exact[g] = xs[(size_t)m * ng + g] * (float)s;
        }
        for (int r = lo; r < hi; r++) {
            const float *off = w->offsets + (size_t)r * ng, *d = w->scales + (size_t)r * ng;
            float acc = 0.0f;
            for (int g = 0; g < ng; g++) acc += (off[g] - 8.0f * d[g]) * s_half[g] + 8.0f * d[g] * s_exact[g];
            y[(size_t)m * N + r] += acc;
        }
    }
}

/* y[m, r] += sum over groups g of offset[r, g] * (sum of x[m] over g), for
 * output rows [lo, hi). */
static void add_offsets(const QMatrix *w, const float *x, int M, int lo, int hi, float *y) {
    int K = w->cols, G = w->group, ng = K / G, N = w->rows;
    for (int m = 0; m < M; m++) {
        const float *xm = x + (size_t)m * K;
        for (int r = lo; r < hi; r++) {
            const float *off = w->offsets + (size_t)r * ng;
            float acc = 0.0f;
            for (int g = 0; g < ng; g++) {
                float s = 0.0f;
                for (int k = g * G; k < (g + 1) * G; k++) s += xm[k];
                acc += off[g] * s;
            }
            y[(size_t)m * N + r] += acc;
        }
    }
}

void qmatrix_free(QMatrix *m) {
    free(m->q8);
    free(m->q4);
    free(m->scales);
    free(m->offsets);
    free(m->p8);
    free(m->pscales);
    free(m->psums);
    free(m->float_cols);
    free(m->float_w);
    free(m->p4);
    free(m->p4scales);
    free(m->lut);
    free(m->idx8);
    free(m->p8lo);
    free(m->ptab);
    free(m->pl);
    memset(m, 0, sizeof *m);
}

#define QTILE 64 /* weight rows dequantized per sgemm call when M is large */
#define QPANEL_RUN 8 /* int4 panels per pass of the activation rows */

/* Activation floats up to which every M takes the row primitives: they
 * reread the activations (from L2) for each 4 weight rows, and measured
 * 1.5-2x faster than dequantized tiles through sgemm while those fit in L2
 * (M = 16..256, K = 512..4096: 160-220 against 26-130 GFLOP/s). */
#define QROWS_MAX_ACT (1 << 18)

/* Whether products with w take the AVX-512 panels (a lane's digit sums
 * reach 128 * 255 per column of an activation block, so blocks up to 32768
 * columns). */
static bool qgemm_panels(const QMatrix *w) {
    return kernel_path() == KERN_AVX512 && kact_block(w) <= 32768 &&
           (w->idx8 ? w->p8 != NULL : w->lut ? w->pl != NULL : w->bits <= 4 ? w->p4 != NULL : w->p8 != NULL);
}

/* This thread's contiguous share [lo, hi) of n items (inside a team). */
static void team_range(int n, int *lo, int *hi) {
    int nt = omp_get_num_threads(), t = omp_get_thread_num();
    *lo = (int)((long)n * t / nt);
    *hi = (int)((long)n * (t + 1) / nt);
}

/* Output rows of y [M, rows] = epi(x @ W^T + bias) for M < 8, each thread of
 * the team its contiguous share of 4-row blocks, then a barrier (called
 * inside a parallel region). */
static void qgemm_rows_team(const QMatrix *w, const float *x, const KAct *act, int M, const float *bias, KEpilogue epi,
                            float *y) {
    int N = w->rows, K = w->cols, G = w->group, ng = K / G, b0, b1;
    KrowQ8 f8 = krow_q8_fn();
    KrowQ4 f4 = krow_q4_fn();
    KrowLut fl = krow_lut_fn();
    KrowLut8 fl8 = krow_lut8_fn();
#if defined(__x86_64__)
    bool panels = qgemm_panels(w);
    for (int m = 0; m < M && panels; m++) panels = act[m].nat != NULL;
    if (panels) { /* 16-row panels: each thread its share of them */
        int P = (N + QPANEL - 1) / QPANEL, p0, p1;
        team_range(P, &p0, &p1);
        int lo = p0 * QPANEL < N ? p0 * QPANEL : N, hi = p1 * QPANEL < N ? p1 * QPANEL : N;
        /* QPANEL_RUN panels stay in L1/L2 while every activation row passes */
        for (int pb = p0; pb < p1; pb += QPANEL_RUN) {
            int np = p1 - pb < QPANEL_RUN ? p1 - pb : QPANEL_RUN;
            int r0 = pb * QPANEL, r1 = (pb + np) * QPANEL < N ? (pb + np) * QPANEL : N;
            if (w->lut && !w->idx8) klut_panels_avx512(w, act, M, pb, np, y, N);
            else if (w->bits <= 4) kq4_panels_avx512(w, act, M, pb, np, y, N);
            else kq8_panels_avx512(w, act, M, pb, np, y, N);
            if (bias)
                for (int m = 0; m < M; m++)
                    for (int r = r0; r < r1; r++) y[(size_t)m * N + r] += bias[r];
        }
        if (w->offsets && hi > lo) add_offsets(w, x, M, lo, hi, y);
        if (epi && hi > lo)
            for (int m = 0; m < M; m++) epi(y + (size_t)m * N + lo, hi - lo);
#pragma omp barrier
        return;
    }
#endif
    team_range((N + 3) / 4, &b0, &b1);
    int lo = 4 * b0, hi = 4 * b1 < N ? 4 * b1 : N;
    for (int n = lo; n < hi; n += 4) {
        const float *sc = w->scales + (size_t)n * ng;
        int nr = N - n < 4 ? N - n : 4;
        float out[4];
        for (int m = 0; m < M; m++) {
            if (w->idx8) fl8(w->idx8 + (size_t)n * K, w->lut, sc, G, x + (size_t)m * K, K, nr, out);
            else if (w->bits > 4) f8(w->q8 + (size_t)n * K, sc, G, x + (size_t)m * K, K, nr, out);
            else if (w->lut) fl(w->q4 + (size_t)n * K / 2, w->lut + (size_t)n * w->lut_rs, w->lut_rs, w->lut_gs, sc, G, act[m].x_split, K, nr, out);
            else f4(w->q4 + (size_t)n * K / 2, sc, G, act[m].x_split, K, nr, out);
            for (int r = 0; r < nr; r++) y[(size_t)m * N + n + r] = out[r] + (bias ? bias[n + r] : 0.0f);
        }
    }
    if (w->offsets && hi > lo) add_offsets(w, x, M, lo, hi, y);
    if (epi && hi > lo)
        for (int m = 0; m < M; m++) epi(y + (size_t)m * N + lo, hi - lo);
#pragma omp barrier
}

/* x [M, in] widened to the stored [M, cols] with zeros past in (a partial
 * last group) into buf, or x itself when nothing is partial. */
static const float *widen_rows(const QMatrix *w, const float *x, int M, float *buf) {
    if (w->in == w->cols) return x;
    for (int m = 0; m < M; m++) {
        memcpy(buf + (size_t)m * w->cols, x + (size_t)m * w->in, (size_t)w->in * sizeof(float));
        memset(buf + (size_t)m * w->cols + w->in, 0, (size_t)(w->cols - w->in) * sizeof(float));
    }
    return buf;
}

static void qgemm_f32_wide(const QMatrix *w, const float *x, int M, float *y);

void qgemm_f32(const QMatrix *w, const float *x, int M, float *y) {
    float *buf = w->in != w->cols ? xmalloc((size_t)M * w->cols * sizeof(float)) : NULL;
    qgemm_f32_wide(w, widen_rows(w, x, M, buf), M, y);
    free(buf);
}

static void qgemm_f32_wide(const QMatrix *w, const float *x, int M, float *y) {
    int N = w->rows, K = w->cols;
    /* the AVX-512 panels beat dequantized tiles through sgemm at any M and K
     * (M = 1024, K = N = 512: 250 GFLOP/s against 64), so large inputs go
     * through them in blocks of rows whose activations fit L2 (the weights
     * are streamed once per block) */
    bool panels = qgemm_panels(w);
    if (M < 8 || (size_t)M * K <= QROWS_MAX_ACT || panels) {
        int mb = (size_t)M * K <= QROWS_MAX_ACT ? M : (int)(QROWS_MAX_ACT / (size_t)K);
        if (mb < 8) mb = 8;
        if (mb > M) mb = M;
        KAct *act = xmalloc((size_t)(mb ? mb : 1) * sizeof(KAct));
        char *abuf = NULL;
        size_t ab = kact_bytes(K);
        if (kact_needed(w)) abuf = xmalloc((size_t)mb * ab);
        for (int m0 = 0; m0 < M; m0 += mb) {
            int mr = M - m0 < mb ? M - m0 : mb;
            const float *xb = x + (size_t)m0 * K;
            if (abuf)
                for (int m = 0; m < mr; m++) kact_prepare(xb + (size_t)m * K, K, kact_block(w), abuf + (size_t)m * ab, &act[m]);
#pragma omp parallel
            qgemm_rows_team(w, xb, act, mr, NULL, NULL, y + (size_t)m0 * N);
        }
        free(abuf);
        free(act);
        return;
    }
    /* many rows: a block of weight rows dequantized into a per-thread tile
     * (never the whole matrix) is reused by all M rows through sgemm */
#pragma omp parallel
    {
        float *tile = xmalloc((size_t)QTILE * K * sizeof(float));
#pragma omp for schedule(dynamic, 1)
        for (int n0 = 0; n0 < N; n0 += QTILE) {
            int nr = N - n0 < QTILE ? N - n0 : QTILE;
            qmatrix_dequant_rows(w, n0, nr, tile);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, nr, K, 1.0f, x, K, tile, K, 0.0f, y + n0, N);
        }
        free(tile);
    }
}

static void kquant_rows_i8(const float *x, int M, int K, int8_t *xq, float *xs) {
    /* dynamic per-token scales with the shared quantizer, as in training */
    KernelPath p = kernel_path();
    void (*f)(const float *, int, int8_t *, float *) = p == KERN_AVX512 ? kquant_row_i8_avx512
                                                       : p == KERN_AVX2 ? kquant_row_i8_avx2
                                                                        : kquant_row_i8_scalar;
#pragma omp parallel for schedule(static) if (M > 16)
    for (int m = 0; m < M; m++) f(x + (size_t)m * K, K, xq + (size_t)m * K, xs + m);
}

static void kquant_rows_i8_special(const QMatrix *w, const float *x, int M, int8_t *xq, float *xs);

/* llama.cpp's activation blocks: each row in q8_0 blocks of 32, as its CPU
 * products quantize them (block_act_q8_0, the fake quantization of
 * quant.act_format). */
static void kquant_rows_q8_0(const float *x, int M, int K, int8_t *xq, float *xs) {
    int nb = K / QBLOCK;
#pragma omp parallel for schedule(static) if (M > 16)
    for (int m = 0; m < M; m++)
        for (int b = 0; b < nb; b++) {
            size_t at = (size_t)m * K + (size_t)b * QBLOCK;
            block_act_q8_0(x + at, NULL, xq + at, &xs[(size_t)m * nb + b]);
        }
}

static void quantize_acts(const QMatrix *w, const float *x, int M, int8_t *xq, float *xs) {
    if (w->act_q8_0 && w->group != QBLOCK) qat_fail("qgemm_w8a8: q8_0 activations need weight groups of %d", QBLOCK);
    if (w->act_q8_0) kquant_rows_q8_0(x, M, w->cols, xq, xs);
    else if (w->act_static || w->n_float) kquant_rows_i8_special(w, x, M, xq, xs);
    else kquant_rows_i8(x, M, w->cols, xq, xs);
}

#define W8A8_MBLOCK 64 /* activation rows per work item: their codes stay in L2 across panels */

/* The integer products on the panels, shared out over the team (orphaned). */
static void qgemm_w8a8_codes_for(const QMatrix *w, const int8_t *xq, const float *xs, int M, float *y) {
    int N = w->rows, K = w->cols, P = (N + QPANEL - 1) / QPANEL, pairs = (P + 1) / 2;
    int mb = (M + W8A8_MBLOCK - 1) / W8A8_MBLOCK;
    KW8A8 f = kw8a8_fn(w);
#pragma omp for collapse(2) schedule(static)
    for (int b = 0; b < mb; b++)
        for (int c = 0; c < pairs; c++) {
            int m0 = b * W8A8_MBLOCK, mr = M - m0 < W8A8_MBLOCK ? M - m0 : W8A8_MBLOCK;
            int np = 2 * c + 1 < P ? 2 : 1;
            f(w, xq + (size_t)m0 * K, xs + (size_t)m0 * (w->act_q8_0 ? K / w->group : 1), mr, 2 * c, np, y + (size_t)m0 * N);
        }
}

/* y += x[:, float_cols] @ float_w^T (outlier split), over the team (orphaned). */
static void qgemm_w8a8_float_for(const QMatrix *w, const float *x, int M, float *y) {
    int N = w->rows, K = w->cols, nf = w->n_float;
#pragma omp for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *wf = w->float_w + (size_t)n * nf;
        for (int m = 0; m < M; m++) {
            const float *xm = x + (size_t)m * K;
            float acc = 0.0f;
            for (int k = 0; k < nf; k++) acc += xm[w->float_cols[k]] * wf[k];
            y[(size_t)m * N + n] += acc;
        }
    }
}

/* Activation codes when the scale is static or must skip float columns:
 * the shared quantizer's scalar code, as fake quantization computes it. */
static void kquant_rows_i8_special(const QMatrix *w, const float *x, int M, int8_t *xq, float *xs) {
    int K = w->cols;
#pragma omp parallel for schedule(static) if (M > 16)
    for (int m = 0; m < M; m++) {
        const float *xm = x + (size_t)m * K;
        float sc = w->act_scale;
        if (!w->act_static) { /* dynamic: the max over the integer columns only */
            float amax = 0.0f;
            for (int k = 0, f = 0; k < K; k++) {
                if (f < w->n_float && w->float_cols[f] == k) {
                    f++;
                    continue;
                }
                amax = fmaxf(amax, fabsf(xm[k]));
            }
            QuantSpec s8 = {.bits = 8, .sym = true, .gran = QG_CHANNEL};
            quant_params_from_range(&s8, -amax, amax, &sc, NULL);
        }
        for (int k = 0; k < K; k++) xq[(size_t)m * K + k] = (int8_t)quant_code(xm[k], sc, 0.0f, -127, 127);
        xs[m] = sc;
    }
}

void qgemm_w8a8(const QMatrix *w, const float *x, int M, float *y, int8_t *xq, float *xs) {
    if (w->bits <= 4 && !w->act_q8_0) qat_fail("qgemm_w8a8: weights are packed int%d, not int8 codes", w->bits);
    if (w->bits > 4 && !w->p8) qat_fail("qgemm_w8a8: weights were not packed (qmatrix_pack_w8a8)");
    float *buf = w->in != w->cols ? xmalloc((size_t)M * w->cols * sizeof(float)) : NULL;
    x = widen_rows(w, x, M, buf);
    quantize_acts(w, x, M, xq, xs);
#pragma omp parallel
    {
        qgemm_w8a8_codes_for(w, xq, xs, M, y);
        if (w->n_float) qgemm_w8a8_float_for(w, x, M, y);
        if (w->offsets) {
            int lo, hi;
#pragma omp barrier
            team_range(w->rows, &lo, &hi);
            if (w->act_q8_0) add_offsets_q8(w, x, xq, xs, M, lo, hi, y);
            else add_offsets(w, x, M, lo, hi, y);
        }
    }
    free(buf);
}

/* W8A8 for one row inside a team: each thread its contiguous share of panel
 * pairs, then the float columns, bias and epilogue of the rows those hold. */
static void w8a8_row_team(const QMatrix *w, const float *x, const int8_t *xq, const float *xs, const float *bias,
                          KEpilogue epi, float *y) {
    int N = w->rows, P = (N + QPANEL - 1) / QPANEL, c0, c1, nf = w->n_float;
    KW8A8 f = kw8a8_fn(w);
    team_range((P + 1) / 2, &c0, &c1);
    for (int c = c0; c < c1; c++) f(w, xq, xs, 1, 2 * c, 2 * c + 1 < P ? 2 : 1, y);
    int lo = 2 * QPANEL * c0 < N ? 2 * QPANEL * c0 : N, hi = 2 * QPANEL * c1 < N ? 2 * QPANEL * c1 : N;
    for (int n = lo; n < hi; n++) {
        if (nf) {
            const float *wf = w->float_w + (size_t)n * nf;
            float acc = 0.0f;
            for (int k = 0; k < nf; k++) acc += x[w->float_cols[k]] * wf[k];
            y[n] += acc;
        }
        if (bias) y[n] += bias[n];
    }
    if (w->offsets && hi > lo) {
        if (w->act_q8_0) add_offsets_q8(w, x, xq, xs, 1, lo, hi, y);
        else add_offsets(w, x, 1, lo, hi, y);
    }
    if (epi && hi > lo) epi(y + lo, hi - lo);
#pragma omp barrier
}

_Static_assert(sizeof(KAct) <= 64, "KAct must fit before its arrays in the scratch");

size_t qgemv_team_scratch_bytes(int cols) {
    /* W8A8: the codes, then one scale (or, q8_0 activations, one per 32 columns) */
    size_t q4 = 64 + kact_bytes(cols), w8 = (((size_t)cols + 63) & ~(size_t)63) + (((size_t)cols / 8 + 4 + 63) & ~(size_t)63);
    /* then the activation widened to whole groups, when the last one is partial */
    return (q4 > w8 ? q4 : w8) + round64((size_t)cols * sizeof(float));
}

void qgemv_team(const QMatrix *w, bool w8a8, const float *x, const float *bias, KEpilogue epi, float *y, void *scratch) {
    size_t head = qgemv_team_scratch_bytes(w->cols) - round64((size_t)w->cols * sizeof(float));
    x = widen_rows(w, x, 1, (float *)(void *)((char *)scratch + head));
    if (w8a8) {
        if (w->bits <= 4 ? !w->act_q8_0 : !w->p8) qat_fail("qgemv_team: W8A8 needs packed int8 weights");
        int8_t *xq = scratch;
        float *xs = (float *)((char *)scratch + (((size_t)w->cols + 63) & ~(size_t)63));
        quantize_acts(w, x, 1, xq, xs);
        w8a8_row_team(w, x, xq, xs, bias, epi, y);
        return;
    }
    KAct *act = scratch;
    if (kact_needed(w)) kact_prepare(x, w->cols, kact_block(w), (char *)scratch + 64, act);
    qgemm_rows_team(w, x, act, 1, bias, epi, y);
}
