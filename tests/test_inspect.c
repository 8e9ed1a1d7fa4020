/* test_inspect.c: qat inspect on every kind of file qat reads or writes (a
 * float, a QAT and a PTQ checkpoint, an exported model, a GGUF file, a
 * llama2.c model and tokenizer): the figures of --json against what the
 * files hold (sizes from the schemes, dataset counts from h5py), the listing
 * against --json, and a corrupt dataset that loading never reads, a foreign
 * file and a missing one refused in one line. */
#include <cJSON.h>
#include <criterion/criterion.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include "testutil.h"

static char *g_dir, *g_float, *g_qat, *g_ptq, *g_model, *g_gguf, *g_data;

/* Criterion runs each test in a process forked from one runner: the files
 * are made by the first test and shared by the rest (they only read them);
 * the runner removes them after the last. */
ReportHook(POST_ALL)(struct criterion_global_stats *stats) {
    (void)stats;
    test_shared_remove("inspect");
}

static void setup(void) {
    bool build;
    int lk;
    g_dir = test_shared_claim("inspect", &build, &lk);
    g_float = test_path(g_dir, "float/checkpoint.h5");
    g_qat = test_path(g_dir, "qat/checkpoint.h5");
    g_ptq = test_path(g_dir, "ptq.h5");
    g_model = test_path(g_dir, "model.h5");
    g_gguf = test_path(g_dir, "model.gguf");
    g_data = test_path(getenv("QAT_SOURCE_DIR"), "../shared/data/stories260K");
    if (!build) return;
    char *corpus = test_write(g_dir, "corpus.txt", test_corpus(20000, 5));
    char *fl = test_path(g_dir, "float"), *qa = test_path(g_dir, "qat");
    test_train_tiny(corpus, fl, 10, 2, "");
    char q[2048];
    snprintf(q, sizeof q, "quant: {weight: {bits: 4, granularity: group, group_size: 32}, estimator: lsq, init_from: %s}\n",
             g_float);
    test_train_tiny(corpus, qa, 4, 2, q);
    char args[4096];
    snprintf(args, sizeof args, "ptq %s --method rtn --bits 3 --group channel --asym --calib-batches 1 -o %s", g_float, g_ptq);
    test_qat(args);
    snprintf(args, sizeof args, "export %s -o %s", g_qat, g_model);
    test_qat(args);
    snprintf(args, sizeof args, "export %s --format gguf -o %s", g_qat, g_gguf);
    test_qat(args);
    test_shared_release(g_dir, lk);
}
TestSuite(inspect, .init = setup, .timeout = 300);

static cJSON *inspect_json(const char *path) {
    char args[4096];
    snprintf(args, sizeof args, "inspect %s --json", path);
    cJSON *j = cJSON_Parse(test_qat(args));
    cr_assert(j, "qat inspect %s --json: not JSON", path);
    return j;
}

static double num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItem(o, key);
    cr_assert(cJSON_IsNumber(v), "no number %s", key);
    return v->valuedouble;
}
static const char *str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItem(o, key);
    cr_assert(cJSON_IsString(v), "no string %s", key);
    return v->valuestring;
}
static const cJSON *tensor(const cJSON *j, const char *name) {
    const cJSON *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItem(j, "tensors")) if (!strcmp(str(t, "name"), name)) return t;
    cr_assert_fail("no tensor %s", name);
    return NULL;
}

/* The totals are the sums of the tensors', and every entry's bits per
 * weight is 8 bytes / weights. */
static void check_totals(const cJSON *j) {
    double n = 0, b = 0;
    int k = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItem(j, "tensors")) {
        double tn = num(t, "weights"), tb = num(t, "bytes");
        cr_assert_float_eq(num(t, "bits_per_weight"), 8 * tb / tn, 1e-4, "%s", str(t, "name"));
        n += tn, b += tb, k++;
    }
    const cJSON *tot = cJSON_GetObjectItem(j, "totals");
    cr_assert_eq(num(tot, "tensors"), k);
    cr_assert_eq(num(tot, "weights"), n);
    cr_assert_eq(num(tot, "bytes"), b);
}

/* Every dataset of an HDF5 file, as h5py counts them: what inspect must have verified. */
static void check_all_datasets_verified(const cJSON *j, const char *path) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import h5py,sys; n=[]; h5py.File(sys.argv[1],'r').visititems("
             "lambda k,o: n.append(k) if isinstance(o,h5py.Dataset) else None); print(len(n))\" %s",
             path);
    int datasets = atoi(test_run(cmd));
    const cJSON *c = cJSON_GetObjectItem(j, "checksums");
    cr_assert_str_eq(str(c, "algorithm"), "crc32");
    cr_assert_gt(datasets, 0);
    cr_assert_eq(num(c, "verified"), datasets, "%s: %g verified of %d datasets", path, num(c, "verified"), datasets);
    cr_assert_eq(num(c, "without_checksum"), 0);
}

static void check_tiny_arch(const cJSON *j) {
    const cJSON *a = cJSON_GetObjectItem(j, "architecture");
    cr_assert_str_eq(str(a, "arch"), "gpt");
    cr_assert_eq(num(a, "n_layer"), 2);
    cr_assert_eq(num(a, "n_embd"), 32);
    cr_assert_eq(num(a, "block_size"), 16);
    const cJSON *v = cJSON_GetObjectItem(j, "vocab");
    cr_assert_str_eq(str(v, "kind"), "char");
    cr_assert_eq(num(v, "size"), num(a, "vocab_size"));
}

Test(inspect, a_float_checkpoint) {
    cJSON *j = inspect_json(g_float);
    cr_assert_str_eq(str(j, "kind"), "checkpoint");
    const cJSON *c = cJSON_GetObjectItem(j, "checkpoint");
    cr_assert_str_eq(str(c, "kind"), "float");
    cr_assert_eq(num(c, "step"), 10);
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(c, "optimizer_state")));
    check_tiny_arch(j);
    const cJSON *w = tensor(j, "blocks.0.attn.qkv.weight");
    cr_assert_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(w, "shape"), 0)->valuedouble, 96);
    cr_assert_eq(num(w, "bytes"), 96 * 32 * 4);
    cr_assert_null(cJSON_GetObjectItem(w, "quant"));
    check_totals(j);
    check_all_datasets_verified(j, g_float);
    cJSON_Delete(j);
}

Test(inspect, a_qat_checkpoint_names_each_layers_scheme) {
    cJSON *j = inspect_json(g_qat);
    cr_assert_str_eq(str(cJSON_GetObjectItem(j, "checkpoint"), "kind"), "qat");
    const cJSON *q = cJSON_GetObjectItem(tensor(j, "blocks.1.mlp.proj.weight"), "quant");
    cr_assert(q);
    cr_assert_eq(num(q, "bits"), 4);
    cr_assert_str_eq(str(q, "granularity"), "group");
    cr_assert_eq(num(q, "group"), 32);
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(q, "symmetric")));
    /* 4 bits of code and one fp32 scale per 32 weights */
    cr_assert_float_eq(num(q, "deploy_bits_per_weight"), 4 + 32.0 / 32, 1e-9);
    cr_assert_str_eq(str(tensor(j, "blocks.1.mlp.proj.weight_scale"), "role"),
                     "quantization state: a learned scale or zero point");
    check_totals(j);
    check_all_datasets_verified(j, g_qat);
    cJSON_Delete(j);
}

Test(inspect, a_ptq_checkpoint_names_its_method) {
    cJSON *j = inspect_json(g_ptq);
    const cJSON *c = cJSON_GetObjectItem(j, "checkpoint");
    cr_assert_str_eq(str(c, "kind"), "ptq");
    cr_assert(!strncmp(str(c, "ptq_method"), "rtn int3 channel asym", 21), "%s", str(c, "ptq_method"));
    cr_assert(!cJSON_IsTrue(cJSON_GetObjectItem(c, "optimizer_state")));
    const cJSON *q = cJSON_GetObjectItem(tensor(j, "blocks.0.mlp.fc.weight"), "quant");
    cr_assert_eq(num(q, "bits"), 3);
    cr_assert_str_eq(str(q, "granularity"), "channel");
    cr_assert(!cJSON_IsTrue(cJSON_GetObjectItem(q, "symmetric")));
    /* a scale and a zero point per row of 32 inputs */
    cr_assert_float_eq(num(q, "deploy_bits_per_weight"), 3 + 64.0 / 32, 1e-9);
    check_all_datasets_verified(j, g_ptq);
    cJSON_Delete(j);
}

Test(inspect, an_exported_model_gives_the_bytes_of_its_codes_and_scales) {
    cJSON *j = inspect_json(g_model);
    cr_assert_str_eq(str(j, "kind"), "exported model");
    cr_assert_str_eq(str(cJSON_GetObjectItem(j, "source"), "checkpoint"), g_qat);
    check_tiny_arch(j);
    const cJSON *t = tensor(j, "blocks.0.mlp.proj");
    cr_assert_str_eq(str(t, "type"), "int4");
    /* [32 x 128]: two codes per byte and an fp32 scale per 32 */
    cr_assert_eq(num(t, "bytes"), 32 * 128 / 2 + 32 * 4 * 4);
    cr_assert_float_eq(num(t, "bits_per_weight"), 5.0, 1e-9);
    cr_assert_eq(num(cJSON_GetObjectItem(t, "quant"), "group"), 32);
    /* a group as wide as the row is a scale per channel */
    cr_assert_str_eq(str(cJSON_GetObjectItem(tensor(j, "blocks.0.mlp.fc"), "quant"), "granularity"), "channel");
    cr_assert_str_eq(str(tensor(j, "wte"), "type"), "f32");
    check_totals(j);
    check_all_datasets_verified(j, g_model);
    cJSON_Delete(j);
}

Test(inspect, a_gguf_file_lists_metadata_and_blocks) {
    cJSON *j = inspect_json(g_gguf);
    cr_assert_str_eq(str(j, "kind"), "gguf");
    const cJSON *m = cJSON_GetObjectItem(j, "metadata");
    cr_assert_str_eq(str(m, "general.architecture"), "gpt2");
    cr_assert_eq(num(m, "gpt2.block_count"), 2);
    const cJSON *toks = cJSON_GetObjectItem(m, "tokenizer.ggml.tokens");
    cr_assert_str_eq(str(toks, "array_of"), "str");
    cr_assert_eq(num(cJSON_GetObjectItem(j, "vocab"), "size"), num(toks, "n"));
    cr_assert_eq(num(cJSON_GetObjectItem(j, "architecture"), "n_embd"), 32);
    /* int4 g32: ggml's q4_0, 32 codes and an f16 scale in 18 bytes */
    const cJSON *t = tensor(j, "blk.0.ffn_down.weight");
    cr_assert_str_eq(str(t, "type"), "q4_0");
    cr_assert_float_eq(num(t, "bits_per_weight"), 4.5, 1e-9);
    cr_assert_eq(num(cJSON_GetObjectItem(t, "quant"), "group"), 32);
    cr_assert_str_eq(str(tensor(j, "token_embd.weight"), "type"), "f32");
    check_totals(j);
    /* the data section's tensors fill the file but for the header and padding */
    cr_assert_leq(num(cJSON_GetObjectItem(j, "totals"), "bytes"), num(j, "file_bytes"));
    cr_assert(strstr(str(cJSON_GetObjectItem(j, "checksums"), "note"), "GGUF carries none"));
    cJSON_Delete(j);
}

Test(inspect, llama2c_model_and_tokenizer) {
    char *bin = test_path(g_data, "stories260K.bin"), *tok = test_path(g_data, "tok512.bin");
    cJSON *j = inspect_json(bin);
    cr_assert_str_eq(str(j, "kind"), "llama2.c model");
    const cJSON *a = cJSON_GetObjectItem(j, "architecture");
    cr_assert_str_eq(str(a, "arch"), "llama");
    cr_assert_eq(num(a, "n_layer"), 5);
    cr_assert_eq(num(a, "n_head"), 8);
    cr_assert_eq(num(a, "n_kv_head"), 4);
    cr_assert_eq(num(a, "vocab_size"), 512);
    /* the weights are the file but for the 7-int header and the RoPE tables (2 x 512 x 4 floats) */
    cr_assert_eq(num(cJSON_GetObjectItem(j, "totals"), "bytes"), num(j, "file_bytes") - 28 - 2 * 512 * 4 * 4);
    check_totals(j);
    cJSON_Delete(j);
    j = inspect_json(tok);
    cr_assert_str_eq(str(j, "kind"), "llama2.c tokenizer");
    cr_assert_str_eq(str(cJSON_GetObjectItem(j, "vocab"), "kind"), "sentencepiece");
    cr_assert_eq(num(cJSON_GetObjectItem(j, "vocab"), "size"), 512);
    cJSON_Delete(j);
}

/* The listing is printed from the same description. */
Test(inspect, the_listing_says_what_json_says) {
    char args[4096];
    snprintf(args, sizeof args, "inspect %s", g_model);
    char *txt = test_qat(args);
    cJSON *j = inspect_json(g_model);
    char want[256];
    snprintf(want, sizeof want, "crc32 of %.0f datasets verified", num(cJSON_GetObjectItem(j, "checksums"), "verified"));
    cr_assert(strstr(txt, want), "no \"%s\" in:\n%s", want, txt);
    const cJSON *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItem(j, "tensors")) {
        snprintf(want, sizeof want, "%.0f bytes, %.2f bits/weight", num(t, "bytes"), num(t, "bits_per_weight"));
        cr_assert(strstr(txt, str(t, "name")) && strstr(txt, want), "%s: no \"%s\"", str(t, "name"), want);
    }
    cr_assert(strstr(txt, "int4 sym g32"));
    cJSON_Delete(j);
}

/* An optimizer moment that eval and export never read: inspect still
 * recomputes its checksum. */
Test(inspect, a_corrupt_dataset_loading_never_reads_fails_naming_it) {
    char *bad = test_path(g_dir, "bad.h5");
    size_t n;
    char *bytes = test_slurp(g_float, &n);
    FILE *f = fopen(bad, "wb");
    fwrite(bytes, 1, n, f);
    fclose(f);
    hid_t h = H5Fopen(bad, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t ds = H5Dopen2(h, "/optim/m/wpe", H5P_DEFAULT);
    cr_assert_geq(ds, 0);
    float v[16 * 32];
    H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
    v[7] += 1.0f;
    H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
    H5Dclose(ds);
    H5Fclose(h);
    char args[4096];
    snprintf(args, sizeof args, "inspect %s", bad);
    test_expect_qat(args, 2, "optim/m/wpe fails its checksum", bad);
}

Test(inspect, foreign_and_missing_files_are_refused_in_one_line) {
    char *txt = test_write(g_dir, "notes.txt", "not a model, just some text that is long enough to hold a header\n");
    char args[4096];
    snprintf(args, sizeof args, "inspect %s", txt);
    test_expect_qat(args, 2, "not a file qat reads", txt);
    snprintf(args, sizeof args, "inspect %s/none.h5", g_dir);
    test_expect_qat(args, 2, "none.h5", NULL);
    test_expect_qat("inspect", 2, "missing FILE", NULL);
}
