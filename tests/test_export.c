/* test_export.c: qat export and the deployable file. Its layout as an outside
 * reader sees it (python3-h5py, checksums by zlib), and bad input: a float
 * checkpoint where a quantized one is needed, an exported model where a
 * training checkpoint is needed and the reverse, a corrupt dataset, a missing
 * attribute, another version, a tensor of the wrong shape; each one line,
 * exit 2, nothing overwritten. */
#include <criterion/criterion.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "testutil.h"
#include "train/trainer.h"

static char *g_dir, *g_float, *g_qat, *g_model;

static char *path_of(const char *dir, const char *name) {
    char *p = test_keep(xmalloc(strlen(dir) + strlen(name) + 2));
    sprintf(p, "%s/%s", dir, name);
    return p;
}

static void setup(void) {
    g_dir = test_keep(test_tmpdir());
    char *corpus = test_write(g_dir, "corpus.txt", test_corpus(30000, 3));
    char *fl = path_of(g_dir, "float"), *qa = path_of(g_dir, "qat");
    test_train_tiny(corpus, fl, 40, 4, "");
    char q[2048];
    snprintf(q, sizeof q,
             "quant: {weight: {bits: 4, granularity: group, group_size: 32}, estimator: lsq, init_from: %s/checkpoint.h5}\n",
             fl);
    test_train_tiny(corpus, qa, 10, 4, q);
    g_float = path_of(fl, "checkpoint.h5");
    g_qat = path_of(qa, "checkpoint.h5");
    g_model = path_of(g_dir, "model.h5");
    ExportReport r = export_checkpoint(g_qat, g_model);
    cr_assert_eq(r.quant_layers, 8); /* 2 blocks x 4 Linears: the default globs take blocks.* only */
}
TestSuite(export, .init = setup);

/* A copy of the exported model to damage. */
static char *copy_model(const char *name) {
    size_t n;
    char *bytes = test_slurp(g_model, &n);
    char *p = path_of(g_dir, name);
    FILE *f = fopen(p, "wb");
    fwrite(bytes, 1, n, f);
    fclose(f);
    return p;
}

static void expect_bad(const char *args, const char *needle) {
    char err[4096];
    int rc = test_run_qat(args, err, sizeof err);
    cr_assert_eq(rc, 2, "qat %s: exit %d (%s)", args, rc, err);
    cr_assert(strstr(err, needle), "qat %s: message lacks \"%s\": %s", args, needle, err);
    cr_assert(strchr(err, '\n') == strrchr(err, '\n'), "qat %s: more than one line: %s", args, err);
}

Test(export, layout_as_h5py_reads_it) {
    char out[4096];
    cr_assert(test_check_layout(g_model, g_qat, out, sizeof out), "layout check failed: %s", out);
}

Test(export, sizes_are_the_packed_codes_and_scales) {
    InferModel m;
    infer_load(&m, g_model);
    /* int4: half a byte per weight, plus one float per group of 32 */
    size_t w = 0;
    for (int i = 0; i < m.n_q; i++) w += (size_t)m.qm[i].rows * m.qm[i].cols;
    cr_assert_eq(infer_quant_bytes(&m), w / 2 + w / 32 * 4);
    infer_free(&m);
}

Test(export, float_checkpoint_is_refused) {
    char args[2048];
    snprintf(args, sizeof args, "export %s -o %s/never.h5", g_float, g_dir);
    expect_bad(args, "float checkpoint");
    FILE *f = fopen(path_of(g_dir, "never.h5"), "rb");
    cr_assert_null(f, "a file was written");
}

Test(export, exported_model_is_not_a_source) {
    char args[2048];
    snprintf(args, sizeof args, "export %s -o %s/again.h5", g_model, g_dir);
    expect_bad(args, "already an exported model");
}

Test(export, never_over_its_own_checkpoint) {
    size_t n0, n1;
    char *before = test_slurp(g_qat, &n0);
    char args[2048];
    snprintf(args, sizeof args, "export %s -o %s", g_qat, g_qat);
    expect_bad(args, "the checkpoint itself");
    char *after = test_slurp(g_qat, &n1);
    cr_assert(n0 == n1 && !memcmp(before, after, n0));
}

static void load_ckpt_as_model(void *path) {
    InferModel m;
    infer_load(&m, path);
}
Test(export, training_checkpoint_where_a_model_is_needed) {
    char msg[1024];
    cr_assert(capture_failure(load_ckpt_as_model, g_qat, msg, sizeof msg));
    cr_assert(strstr(msg, "training checkpoint, not an exported model"), "%s", msg);
}

Test(export, corrupt_dataset_fails_its_checksum) {
    char *bad = copy_model("corrupt.h5");
    hid_t f = H5Fopen(bad, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "quant/blocks.0.mlp.fc/codes", H5P_DEFAULT);
    haddr_t off = H5Dget_offset(d);
    H5Dclose(d);
    H5Fclose(f);
    cr_assert_neq(off, HADDR_UNDEF);
    FILE *fp = fopen(bad, "r+b");
    fseek(fp, (long)off + 100, SEEK_SET);
    int c = fgetc(fp);
    fseek(fp, (long)off + 100, SEEK_SET);
    fputc(c ^ 0x11, fp);
    fclose(fp);
    char args[2048];
    snprintf(args, sizeof args, "eval %s", bad);
    expect_bad(args, "quant/blocks.0.mlp.fc/codes fails its checksum");
}

static char *with_edit(const char *name, void (*edit)(hid_t f)) {
    char *p = copy_model(name);
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    edit(f);
    H5Fclose(f);
    return p;
}

/* Replaces (or adds) the int64 attribute name of obj. */
static void set_attr_i64(hid_t obj, const char *name, int64_t v) {
    if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, H5T_NATIVE_INT64, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
    H5Sclose(sp);
}

static void drop_bits(hid_t f) {
    hid_t g = H5Oopen(f, "quant/blocks.1.attn.qkv", H5P_DEFAULT);
    H5Adelete(g, "bits");
    H5Oclose(g);
}
Test(export, missing_attribute) {
    char args[2048];
    snprintf(args, sizeof args, "sample %s --tokens 5", with_edit("noattr.h5", drop_bits));
    expect_bad(args, "quant/blocks.1.attn.qkv has no attribute bits");
}

static void drop_float_columns(hid_t f) {
    char name[64];
    for (int b = 0; b < 2; b++)
        for (int k = 0; k < 4; k++) {
            static const char *parts[] = {"attn.qkv", "attn.proj", "mlp.fc", "mlp.proj"};
            snprintf(name, sizeof name, "quant/blocks.%d.%s", b, parts[k]);
            hid_t g = H5Oopen(f, name, H5P_DEFAULT);
            H5Adelete(g, "float_columns");
            H5Oclose(g);
        }
}
/* files written before the outlier split have no float_columns: they load as before */
Test(export, files_without_float_columns_still_load) {
    char *old = with_edit("old.h5", drop_float_columns);
    float a = eval_checkpoint(g_model, NULL).val_loss, b = eval_checkpoint(old, NULL).val_loss;
    cr_assert_eq(a, b, "%g vs %g", a, b);
}

static void code_min_full(hid_t f) {
    hid_t g = H5Oopen(f, "quant/blocks.0.attn.proj", H5P_DEFAULT);
    set_attr_i64(g, "code_min", -8);
    H5Oclose(g);
}
/* a full-range code_min where the config says narrow_range true */
Test(export, code_min_against_the_config) {
    char args[2048];
    snprintf(args, sizeof args, "eval %s", with_edit("codemin.h5", code_min_full));
    expect_bad(args, "quant/blocks.0.attn.proj has code_min -8; its config (quant.weight.narrow_range true) means -7");
}

/* kmeans tables per channel: a model with them, then one edit each */
static char *tables_model(const char *name, void (*edit)(hid_t f)) {
    static char *model;
    if (!model) {
        char cmd[4096], err[1024], *ck = path_of(g_dir, "tables.h5");
        model = path_of(g_dir, "tables.model.h5");
        snprintf(cmd, sizeof cmd, "ptq %s --method rtn --bits 3 --group 16 --codebook kmeans --tables channel -o %s > /dev/null", g_float, ck);
        cr_assert_eq(test_run_qat(cmd, err, sizeof err), 0, "%s", err);
        snprintf(cmd, sizeof cmd, "export %s -o %s > /dev/null", ck, model);
        cr_assert_eq(test_run_qat(cmd, err, sizeof err), 0, "%s", err);
    }
    size_t n;
    char *bytes = test_slurp(model, &n), *p = path_of(g_dir, name);
    FILE *fp = fopen(p, "wb");
    fwrite(bytes, 1, n, fp);
    fclose(fp);
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    edit(f);
    H5Fclose(f);
    return p;
}
static void tables_per_group(hid_t f) {
    hid_t g = H5Oopen(f, "quant/blocks.1.mlp.fc", H5P_DEFAULT);
    H5Adelete(g, "tables");
    hid_t sp = H5Screate(H5S_SCALAR), ty = H5Tcopy(H5T_C_S1);
    H5Tset_size(ty, 5);
    hid_t a = H5Acreate2(g, "tables", ty, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, ty, "group");
    H5Aclose(a), H5Tclose(ty), H5Sclose(sp), H5Oclose(g);
}
static void table_out_of_order(hid_t f) {
    hid_t d = H5Dopen2(f, "quant/blocks.0.attn.qkv/table_levels", H5P_DEFAULT);
    hid_t sp = H5Dget_space(d);
    hsize_t dims[2];
    H5Sget_simple_extent_dims(sp, dims, NULL);
    int8_t *t = malloc(dims[0] * dims[1]);
    H5Dread(d, H5T_NATIVE_INT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, t);
    int8_t v = t[dims[1] + 2]; /* row 1's levels 2 and 3 swapped */
    t[dims[1] + 2] = t[dims[1] + 3], t[dims[1] + 3] = v;
    H5Dwrite(d, H5T_NATIVE_INT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, t);
    set_attr_i64(d, "crc32", (int64_t)crc32(crc32(0L, Z_NULL, 0), (const Bytef *)t, (uInt)(dims[0] * dims[1])));
    free(t);
    H5Sclose(sp), H5Dclose(d);
}
static void no_edit(hid_t f) { (void)f; }
/* the file's tables against its config, and each table ascending (with a checksum that matches) */
Test(export, tables_per_channel_are_checked) {
    char args[2048];
    InferModel m;
    infer_load(&m, tables_model("tables-ok.h5", no_edit));
    cr_assert_eq(m.qm[0].n_tables, m.qm[0].rows, "a table per row");
    infer_free(&m);
    snprintf(args, sizeof args, "eval %s", tables_model("tables-group.h5", tables_per_group));
    expect_bad(args, "quant/blocks.1.mlp.fc has tables \"group\", its config (quant.weight.tables) says \"channel\"");
    snprintf(args, sizeof args, "eval %s", tables_model("tables-order.h5", table_out_of_order));
    expect_bad(args, "quant/blocks.0.attn.qkv/table_levels[1, 3] is");
}

static void nibble_minus_8(hid_t f) {
    hid_t d = H5Dopen2(f, "quant/blocks.1.mlp.fc/codes", H5P_DEFAULT);
    hid_t sp = H5Dget_space(d);
    hsize_t dims[2];
    H5Sget_simple_extent_dims(sp, dims, NULL);
    uint8_t *c = malloc(dims[0] * dims[1]);
    H5Dread(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, c);
    c[3] = (uint8_t)(c[3] & 0xF0); /* code -8: outside the narrow int4 grid */
    H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, c);
    /* with a checksum that matches, so the range check is what must catch it */
    set_attr_i64(d, "crc32", (int64_t)crc32(crc32(0L, Z_NULL, 0), c, (uInt)(dims[0] * dims[1])));
    free(c);
    H5Sclose(sp);
    H5Dclose(d);
}
Test(export, code_outside_the_grid) {
    char args[2048];
    snprintf(args, sizeof args, "eval %s", with_edit("minus8.h5", nibble_minus_8));
    expect_bad(args, "quant/blocks.1.mlp.fc/codes holds code -8, outside the symmetric int4 range -7..7");
}

static void version_2(hid_t f) { set_attr_i64(f, "version", 2); }
Test(export, another_version) {
    char args[2048];
    snprintf(args, sizeof args, "eval %s", with_edit("v2.h5", version_2));
    expect_bad(args, "version 2");
}

static void short_ln(hid_t f) {
    H5Ldelete(f, "float/blocks.0.ln1.weight", H5P_DEFAULT);
    hsize_t d = 7;
    hid_t sp = H5Screate_simple(1, &d, NULL);
    hid_t ds = H5Dcreate2(f, "float/blocks.0.ln1.weight", H5T_NATIVE_FLOAT, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    float z[7] = {0};
    H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, z);
    H5Dclose(ds);
    H5Sclose(sp);
}
Test(export, tensor_of_another_shape) {
    char args[2048];
    snprintf(args, sizeof args, "eval %s", with_edit("shape.h5", short_ln));
    expect_bad(args, "float/blocks.0.ln1.weight has shape [7]");
}

Test(export, exported_model_samples_and_matches_checkpoint) {
    /* same greedy text from the QAT checkpoint (converted in memory) and its export */
    char a[4096], b[4096], cmd[4096];
    const char *bin = getenv("QAT_BINARY_DIR");
    snprintf(cmd, sizeof cmd, "%s/qat sample %s --tokens 40 --temperature 0 --prompt ab", bin, g_qat);
    FILE *p = popen(cmd, "r");
    size_t k = fread(a, 1, sizeof a - 1, p);
    a[k] = '\0';
    cr_assert_eq(pclose(p), 0);
    snprintf(cmd, sizeof cmd, "%s/qat sample %s --tokens 40 --temperature 0 --prompt ab", bin, g_model);
    p = popen(cmd, "r");
    k = fread(b, 1, sizeof b - 1, p);
    b[k] = '\0';
    cr_assert_eq(pclose(p), 0);
    cr_assert_eq(strlen(a), 2 + 40 + 1, "%s", a);
    cr_assert_str_eq(a, b);
}
