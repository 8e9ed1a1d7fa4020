/* model_h5.c: deployable model files (format qat-model, version 1; the schema
 * is in docs/checkpoint-format.md). Every dataset carries the CRC-32 of its
 * bytes, checked at load. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "format/vocab_h5.h"
#include "infer/internal.h"
#include "train/config.h"
#include "util/h5io.h"

static const char *act_name(bool w8a8, bool act_static) {
    return !w8a8 ? "float" : act_static ? "int8-per-tensor" : "int8-per-token";
}

/* A string attribute of obj into buf (truncated to n), its allocation
 * freed at once: the checks after it may fail, and exit, without leaks. */
static const char *attr_str(hid_t f, const char *path, const char *obj, const char *attr, char *buf, size_t n) {
    char *s = h5_read_obj_attr_str(f, path, obj, attr);
    snprintf(buf, n, "%s", s);
    free(s);
    return buf;
}

static void require_finite(const char *path, const char *name, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) qat_fail("%s: tensor %s holds %g at element %zu (not finite)", path, name, x[i], i);
}

void infer_save(const InferModel *m, const char *path, const char *source, long step) {
    H5Out o;
    h5out_open(&o, path);
    h5_attr_str(o.f, "format", INFER_FORMAT);
    h5_attr_i64(o.f, "version", INFER_VERSION);
    h5_attr_str(o.f, "kind", "int");
    h5_attr_str(o.f, "config", m->config_yaml);
    h5_attr_str(o.f, "source", source ? source : "");
    h5_attr_i64(o.f, "step", step);
    h5_attr_i64(o.f, "kv_bits", m->kv_bits);
    vocab_h5_write(o.f, &m->vocab);
    char name[256];
    for (int i = 0; i < m->n_ft; i++) {
        const InferTensor *t = &m->ft[i];
        snprintf(name, sizeof name, "float/%s", t->name);
        h5_write_checked(o.f, name, H5T_NATIVE_FLOAT, t->ndim, t->shape, t->data);
    }
    for (int i = 0; i < m->n_q; i++) {
        const QMatrix *q = &m->qm[i];
        snprintf(name, sizeof name, "quant/%s/codes", m->qnames[i]);
        if (q->idx8) {
            h5_write_checked(o.f, name, H5T_NATIVE_UINT8, 2, (int[]){q->rows, q->cols}, q->idx8);
            h5_obj_attr_str(o.f, name, "packing", "one level index per byte");
        } else if (q->bits > 4) {
            h5_write_checked(o.f, name, H5T_NATIVE_INT8, 2, (int[]){q->rows, q->cols}, q->q8);
        } else {
            h5_write_checked(o.f, name, H5T_NATIVE_UINT8, 2, (int[]){q->rows, q->cols / 2}, q->q4);
            h5_obj_attr_str(o.f, name, "packing", q->lut ? "two level indices per byte: low nibble = even column, high nibble = odd column"
                                                         : "two codes per byte: low nibble = even column, high nibble = odd column, each stored as code + 8");
        }
        if (q->lut && q->n_tables > 1) { /* w = table_levels[t, index] / 127 * scale, t the row's or group's */
            int nl = 1 << qmatrix_code_bits(q);
            int8_t *tl = xmalloc((size_t)q->n_tables * nl);
            for (int t = 0; t < q->n_tables; t++)
                for (int k = 0; k < nl; k++) {
                    float v = q->lut[(size_t)t * 16 + k] * 127.0f;
                    if (v != rintf(v) || fabsf(v) > 127.0f)
                        qat_fail("%s: %s: level %d of table %d is %g, not a multiple of 1/127 in [-1, 1]", path,
                                 m->qnames[i], k, t, q->lut[(size_t)t * 16 + k]);
                    tl[(size_t)t * nl + k] = (int8_t)v;
                }
            snprintf(name, sizeof name, "quant/%s/table_levels", m->qnames[i]);
            h5_write_checked(o.f, name, H5T_NATIVE_INT8, 2, (int[]){q->n_tables, nl}, tl);
            free(tl);
        } else if (q->lut) { /* w = levels[index] * scale */
            snprintf(name, sizeof name, "quant/%s/levels", m->qnames[i]);
            h5_write_checked(o.f, name, H5T_NATIVE_FLOAT, 1, (int[]){1 << qmatrix_code_bits(q)}, q->lut);
        }
        snprintf(name, sizeof name, "quant/%s/scales", m->qnames[i]);
        h5_write_checked(o.f, name, H5T_NATIVE_FLOAT, 2, (int[]){q->rows, q->cols / q->group}, q->scales);
        snprintf(name, sizeof name, "quant/%s", m->qnames[i]);
        h5_obj_attr_i64(o.f, name, "bits", qmatrix_code_bits(q));
        h5_obj_attr_i64(o.f, name, "group_size", q->group);
        h5_obj_attr_i64(o.f, name, "rows", q->rows);
        h5_obj_attr_i64(o.f, name, "cols", q->in);
        /* a partial last group: codes (zero past cols) and scales in whole groups */
        if (q->in != q->cols) h5_obj_attr_i64(o.f, name, "stored_cols", q->cols);
        h5_obj_attr_str(o.f, name, "granularity", q->group == q->cols ? "channel" : "group");
        h5_obj_attr_str(o.f, name, "scheme", q->lut ? "levels" : "symmetric");
        if (q->lut && q->n_tables > 1) h5_obj_attr_str(o.f, name, "tables", quant_tables_name(q->lut_tables));
        /* the smallest code the grid has: -(2^(b-1)-1), or -2^(b-1) on the full range */
        if (!q->lut) h5_obj_attr_i64(o.f, name, "code_min", -((1 << (qmatrix_code_bits(q) - 1)) - !q->full));
        h5_obj_attr_str(o.f, name, "activations", act_name(m->qw8a8[i], q->act_static));
        h5_obj_attr_i64(o.f, name, "float_columns", q->n_float);
        if (q->act_static) {
            snprintf(name, sizeof name, "quant/%s/act_scale", m->qnames[i]);
            h5_write_checked(o.f, name, H5T_NATIVE_FLOAT, 1, (int[]){1}, &q->act_scale);
        }
        if (q->n_float) {
            snprintf(name, sizeof name, "quant/%s/float_cols", m->qnames[i]);
            h5_write_checked(o.f, name, H5T_NATIVE_INT32, 1, (int[]){q->n_float}, q->float_cols);
            snprintf(name, sizeof name, "quant/%s/float_weight", m->qnames[i]);
            h5_write_checked(o.f, name, H5T_NATIVE_FLOAT, 2, (int[]){q->rows, q->n_float}, q->float_w);
        }
    }
    h5out_commit(&o);
}

bool infer_is_model_file(const char *path) {
    h5_quiet();
    /* a FIFO would block HDF5's probe; the loader then says what path is */
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return false;
    htri_t is = H5Fis_hdf5(path);
    if (is <= 0) return false;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return false;
    bool yes = false;
    if (H5Aexists(f, "format") > 0) {
        char *fmt = h5_read_attr_str(f, path, "format");
        yes = !strcmp(fmt, INFER_FORMAT);
        free(fmt);
    }
    H5Fclose(f);
    return yes;
}

void infer_load(InferModel *m, const char *path) {
    hid_t f = h5in_open(path);
    char *fmt = h5_read_attr_str(f, path, "format");
    if (!strcmp(fmt, "qat-checkpoint"))
        qat_fail("%s: a training checkpoint, not an exported model (make one with qat export %s -o MODEL.h5)", path, path);
    if (strcmp(fmt, INFER_FORMAT)) qat_fail("%s: format \"%s\" is not %s", path, fmt, INFER_FORMAT);
    free(fmt);
    int64_t ver = h5_read_attr_i64(f, path, "version");
    if (ver != INFER_VERSION)
        qat_fail("%s: model format version %lld, this qat reads version %d", path, (long long)ver, INFER_VERSION);
    char *yaml = h5_read_attr_str(f, path, "config");
    char origin[CONFIG_PATH_MAX + 16];
    snprintf(origin, sizeof origin, "%s:config", path);
    Config cfg;
    config_defaults(&cfg);
    config_load_string(&cfg, yaml, origin);
    config_validate(&cfg, origin);
    int64_t kv = h5_read_attr_i64(f, path, "kv_bits");
    if (kv != cfg.quant.kv_bits)
        qat_fail("%s: kv_bits %lld, its config says quant.kv.bits %d", path, (long long)kv, cfg.quant.kv_bits);
    Vocab v;
    vocab_h5_read(f, path, !strcmp(cfg.model.vocab, "spm"), true, &v);
    if (!strcmp(cfg.model.vocab, "byte")) v.is_byte = true;
    GPTConfig gc = config_gpt(&cfg.model, v.size);
    GPT g;
    gpt_build(&g, &gc, &cfg.quant, origin);
    char name[256];
    for (int i = 0; i < g.params.n; i++) {
        Tensor *t = g.params.list[i];
        if (!infer_keeps_float(&g, t)) continue;
        snprintf(name, sizeof name, "float/%s", t->name);
        h5_read_checked(f, path, name, H5T_NATIVE_FLOAT, t->ndim, t->shape, t->data);
        require_finite(path, name, t->data, t->numel);
    }
    QMatrix *qm = xcalloc((size_t)(g.n_q ? g.n_q : 1), sizeof(QMatrix));
    for (int i = 0; i < g.n_q; i++) {
        const QLayer *q = &g.qlayers[i];
        const Linear *l = gpt_qlayer_linear(&g, q);
        int rows = l->w->shape[0], cols = l->w->shape[1];
        int group = q->w.gran == QG_CHANNEL ? cols : q->w.group;
        snprintf(name, sizeof name, "quant/%s", q->name);
        int64_t bits = h5_read_obj_attr_i64(f, path, name, "bits"), gs = h5_read_obj_attr_i64(f, path, name, "group_size");
        if (bits != q->w.bits || gs != group)
            qat_fail("%s: %s holds int%lld weights in groups of %lld, its config says int%d in groups of %d", path, name,
                     (long long)bits, (long long)gs, q->w.bits, group);
        int64_t ar = h5_read_obj_attr_i64(f, path, name, "rows"), ac = h5_read_obj_attr_i64(f, path, name, "cols");
        if (ar != rows || ac != cols)
            qat_fail("%s: %s is %lldx%lld, the model's layer is %dx%d", path, name, (long long)ar, (long long)ac, rows, cols);
        char gran[64], scheme[64], ft[64], act[64];
        attr_str(f, path, name, "granularity", gran, sizeof gran);
        attr_str(f, path, name, "scheme", scheme, sizeof scheme);
        if (strcmp(gran, group == cols ? "channel" : "group"))
            qat_fail("%s: %s has granularity \"%s\", its group size %d of %d columns means \"%s\"", path, name, gran, group,
                     cols, group == cols ? "channel" : "group");
        bool table = q->w.cb || q->w.fmt == QF_IQ4_NL;
        const char *want = table ? "levels" : "symmetric";
        if (strcmp(scheme, want))
            qat_fail("%s: %s has scheme \"%s\"; its config (quant.weight.codebook %s) means \"%s\"", path, name, scheme,
                     quant_codebook_name(q->w.cb), want);
        /* absent: one table per layer (or none) */
        QGranularity tables = q->w.cb == QCB_KMEANS ? q->w.tables : QG_TENSOR;
        if (h5_obj_attr_exists(f, name, "tables")) attr_str(f, path, name, "tables", ft, sizeof ft);
        else snprintf(ft, sizeof ft, "layer");
        if (strcmp(ft, quant_tables_name(tables)))
            qat_fail("%s: %s has tables \"%s\", its config (quant.weight.tables) says \"%s\"", path, name, ft,
                     quant_tables_name(tables));
        attr_str(f, path, name, "activations", act, sizeof act);
        bool w8a8 = q->a_bits == 8, act_static = w8a8 && !q->a_dynamic;
        if (strcmp(act, act_name(w8a8, act_static)))
            qat_fail("%s: %s has activations \"%s\", its config says \"%s\"", path, name, act, act_name(w8a8, act_static));
        /* absent in files written before outlier splits existed: none */
        int64_t n_float = h5_obj_attr_exists(f, name, "float_columns") ? h5_read_obj_attr_i64(f, path, name, "float_columns") : 0;
        if (n_float < 0 || n_float > cols || (n_float && !q->outlier))
            qat_fail("%s: %s has %lld float columns; its config has %s", path, name, (long long)n_float,
                     q->outlier ? "an outlier split" : "no outlier split (quant.outlier_threshold)");
        int stored = quant_groups(cols, group) * group; /* whole groups, the last one padded with zero codes */
        int64_t sc_attr = h5_obj_attr_exists(f, name, "stored_cols") ? h5_read_obj_attr_i64(f, path, name, "stored_cols") : cols;
        if (sc_attr != stored)
            qat_fail("%s: %s stores %lld columns; %d columns in groups of %d are stored as %d", path, name,
                     (long long)sc_attr, cols, group, stored);
        QMatrix *o = &qm[i];
        o->rows = rows, o->in = cols, o->bits = (int)bits, o->group = group;
        cols = o->cols = stored;
        if (bits <= 4 && cols % 2) qat_fail("%s: %s: int%lld codes in %d columns do not pack in pairs", path, name, (long long)bits, cols);
        int qmax = (1 << (bits - 1)) - 1; /* symmetric codes [qmin, qmax]: qmin -qmax, or -qmax-1 on the full range */
        int qmin = -qmax;
        if (q->w.fmt == QF_Q4_0 || q->w.fmt == QF_Q4_1) /* qat export refuses them: offset codes the file has no place for */
            qat_fail("%s: %s is in llama.cpp's %s blocks, which qat's model files do not hold (export them as GGUF)", path,
                     name, qformat_name(q->w.fmt));
        if (!table) { /* absent in files from before the full range: the narrow grid */
            int want = q->w.full ? -qmax - 1 : -qmax;
            int64_t cm = h5_obj_attr_exists(f, name, "code_min") ? h5_read_obj_attr_i64(f, path, name, "code_min") : -qmax;
            if (cm != want)
                qat_fail("%s: %s has code_min %lld; its config (quant.weight.narrow_range %s) means %d", path, name,
                         (long long)cm, q->w.full ? "false" : "true", want);
            qmin = want;
            o->full = q->w.full;
        }
        snprintf(name, sizeof name, "quant/%s/codes", q->name);
        int nl = 0;
        const float *lv = q->w.fmt == QF_IQ4_NL ? (nl = 16, IQ4NL_LEVELS_F) : quant_levels(&q->w, &nl);
        if (lv) { /* level indices (nibbles, or bytes for 256 levels), then the levels, which must be the config's codebook's (or iq4_nl's) */
            bool bytes = nl > 16;
            o->q4 = xmalloc((size_t)rows * cols / (bytes ? 1 : 2));
            h5_read_checked(f, path, name, H5T_NATIVE_UINT8, 2, (int[]){rows, bytes ? cols : cols / 2}, o->q4);
            uint8_t *idx = xmalloc((size_t)rows * o->in);
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < o->in; c++) {
                    size_t k = (size_t)r * cols + c;
                    int v = bytes ? o->q4[k] : k % 2 ? o->q4[k / 2] >> 4 : o->q4[k / 2] & 15;
                    if (v >= nl) qat_fail("%s: %s holds level index %d, past its %d levels", path, name, v, nl);
                    idx[(size_t)r * o->in + c] = (uint8_t)v;
                }
            snprintf(name, sizeof name, "quant/%s/scales", q->name);
            float *sc = xmalloc((size_t)rows * (cols / group) * sizeof(float));
            h5_read_checked(f, path, name, H5T_NATIVE_FLOAT, 2, (int[]){rows, cols / group}, sc);
            require_finite(path, name, sc, (size_t)rows * (cols / group));
            if (tables != QG_TENSOR) { /* kmeans tables per channel or group: int8 levels in 1/127ths, each ascending */
                int nt = tables == QG_CHANNEL ? rows : rows * (cols / group);
                int8_t *tl = xmalloc((size_t)nt * nl);
                float *luts = xmalloc((size_t)nt * nl * sizeof(float));
                snprintf(name, sizeof name, "quant/%s/table_levels", q->name);
                h5_read_checked(f, path, name, H5T_NATIVE_INT8, 2, (int[]){nt, nl}, tl);
                for (int t = 0; t < nt; t++)
                    for (int k = 0; k < nl; k++) {
                        int v = tl[(size_t)t * nl + k];
                        if (v < -127 || (k && v < tl[(size_t)t * nl + k - 1]))
                            qat_fail("%s: %s[%d, %d] is %d; a kmeans table holds levels -127..127 (in 1/127ths) in "
                                     "ascending order", path, name, t, k, v);
                        luts[(size_t)t * nl + k] = (float)v / 127.0f;
                    }
                free(o->q4);
                qmatrix_from_luts(o, idx, rows, o->in, group, sc, luts, nl, tables);
                free(idx), free(sc), free(tl), free(luts);
                continue;
            }
            float file_lv[256];
            snprintf(name, sizeof name, "quant/%s/levels", q->name);
            h5_read_checked(f, path, name, H5T_NATIVE_FLOAT, 1, (int[]){nl}, file_lv);
            if (q->w.cb == QCB_KMEANS) { /* the layer's own table: any finite levels, ascending */
                for (int k = 0; k < nl; k++)
                    if (!isfinite(file_lv[k]) || (k && file_lv[k] < file_lv[k - 1]))
                        qat_fail("%s: %s[%d] is %g; a kmeans table holds finite levels in ascending order", path, name, k,
                                 file_lv[k]);
                lv = file_lv;
            }
            for (int k = 0; k < nl; k++)
                if (file_lv[k] != lv[k])
                    qat_fail("%s: %s[%d] is %g, the %s%d codebook's level is %g", path, name, k, file_lv[k],
                             q->w.fmt ? "iq4_nl" : quant_codebook_name(q->w.cb), q->w.fmt ? 4 : q->w.bits, lv[k]);
            free(o->q4);
            qmatrix_from_lut(o, idx, rows, o->in, group, sc, lv, nl);
            free(idx), free(sc);
            continue;
        }
        if (bits > 4) {
            o->q8 = xmalloc((size_t)rows * cols);
            h5_read_checked(f, path, name, H5T_NATIVE_INT8, 2, (int[]){rows, cols}, o->q8);
            for (size_t k = 0; k < (size_t)rows * cols; k++)
                if (o->q8[k] < qmin || o->q8[k] > qmax)
                    qat_fail("%s: %s holds code %d, outside the symmetric int%lld range %d..%d", path, name, o->q8[k],
                             (long long)bits, qmin, qmax);
        } else {
            o->q4 = xmalloc((size_t)rows * cols / 2);
            h5_read_checked(f, path, name, H5T_NATIVE_UINT8, 2, (int[]){rows, cols / 2}, o->q4);
            for (size_t k = 0; k < (size_t)rows * cols / 2; k++)
                for (int h = 0; h < 2; h++) {
                    int code = (h ? o->q4[k] >> 4 : o->q4[k] & 15) - 8;
                    if (code < qmin || code > qmax)
                        qat_fail("%s: %s holds code %d, outside the symmetric int%lld range %d..%d", path, name, code,
                                 (long long)bits, qmin, qmax);
                }
        }
        for (int r = 0; r < rows; r++) /* the padding of a partial last group holds code 0 */
            for (int c = o->in; c < cols; c++) {
                size_t k = (size_t)r * cols + c;
                int code = bits > 4 ? o->q8[k] : (int)((k % 2 ? o->q4[k / 2] >> 4 : o->q4[k / 2] & 15)) - 8;
                if (code) qat_fail("%s: %s holds code %d in column %d, past the layer's %d", path, name, code, c, o->in);
            }
        snprintf(name, sizeof name, "quant/%s/scales", q->name);
        o->scales = xmalloc((size_t)rows * (cols / group) * sizeof(float));
        h5_read_checked(f, path, name, H5T_NATIVE_FLOAT, 2, (int[]){rows, cols / group}, o->scales);
        for (size_t k = 0; k < (size_t)rows * (cols / group); k++)
            if (!isfinite(o->scales[k]))
                qat_fail("%s: %s holds %g at element %zu (not finite)", path, name, o->scales[k], k);
        if (kernel_supported(KERN_AVX512)) { /* the panels of the AVX-512 weight-only products */
            if (bits <= 4) qmatrix_pack_q4(o);
            else if (cols % 4 == 0 && group % 4 == 0) qmatrix_pack_w8a8(o);
        }
        if (n_float) {
            int32_t *fc = xmalloc((size_t)n_float * sizeof(int32_t));
            float *fw = xmalloc((size_t)rows * n_float * sizeof(float)), *wfull = xcalloc((size_t)rows * cols, sizeof(float));
            snprintf(name, sizeof name, "quant/%s/float_cols", q->name);
            h5_read_checked(f, path, name, H5T_NATIVE_INT32, 1, (int[]){(int)n_float}, fc);
            snprintf(name, sizeof name, "quant/%s/float_weight", q->name);
            h5_read_checked(f, path, name, H5T_NATIVE_FLOAT, 2, (int[]){rows, (int)n_float}, fw);
            require_finite(path, name, fw, (size_t)rows * n_float);
            for (int r = 0; r < rows; r++)
                for (int k = 0; k < n_float; k++) {
                    if (fc[k] < 0 || fc[k] >= cols || (k && fc[k] <= fc[k - 1]))
                        qat_fail("%s: %s/float_cols: column %d out of order or range", path, q->name, fc[k]);
                    wfull[(size_t)r * cols + fc[k]] = fw[(size_t)r * n_float + k];
                }
            qmatrix_set_float_cols(o, wfull, fc, (int)n_float);
            free(fc), free(fw), free(wfull);
        }
        if (act_static) {
            snprintf(name, sizeof name, "quant/%s/act_scale", q->name);
            h5_read_checked(f, path, name, H5T_NATIVE_FLOAT, 1, (int[]){1}, &o->act_scale);
            if (!(o->act_scale >= 0.0f) || isinf(o->act_scale))
                qat_fail("%s: %s/act_scale is %g, not a finite scale", path, q->name, o->act_scale);
            o->act_static = true;
        }
        if (w8a8) qmatrix_pack_w8a8(o);
    }
    h5in_close(f);
    infer_build(m, &g, &v, yaml, qm);
    vocab_free(&v);
    free(yaml);
    gpt_free(&g);
}
