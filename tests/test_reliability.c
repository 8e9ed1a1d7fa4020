/* test_reliability.c: one regression test per item of the reliability
 * report (issue #14): hostile configs, damaged and hand-edited files,
 * outputs that are not files, two runs on one directory, a run replaced by
 * mistake, JSON that must parse, and command-line arguments that used to be
 * ignored. Each runs the real qat binary and asserts exit status 2, one line
 * naming the file, key or tensor, and that nothing saved was touched. */
#define _DEFAULT_SOURCE /* flock, mkfifo */
#include <cJSON.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"
#include "format/checkpoint.h"
#include "train/trainer.h"
#include "util/h5io.h"
#include "quant/kernels.h"
#include "util/json.h"

static char *g_dir, *g_corpus;
static void setup(void) {
    g_dir = test_tmpdir();
    g_corpus = test_write(g_dir, "corpus.txt", test_corpus(30000, 7));
}
TestSuite(rel, .init = setup);

static char *path_in(const char *dir, const char *name) {
    char *p = xmalloc(strlen(dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", dir, name);
    return test_keep(p);
}

/* qat ARGS exits 2 with one line holding want1 (and want2). */
static void expect_exit2(const char *args, const char *want1, const char *want2) {
    test_expect_qat(args, 2, want1, want2);
}

static void expect_ok(const char *args) { test_expect_qat(args, 0, NULL, NULL); }

/* The suite's tiny model as a config file (model, data, train, out_dir)
 * plus extra YAML. */
static char *config_file(const char *name, const char *out, int iters, const char *extra) {
    char yaml[16384];
    snprintf(yaml, sizeof yaml,
             "model: {n_layer: 1, n_head: 2, n_embd: 32, block_size: 16}\n"
             "data: {path: %s}\n"
             "train: {batch_size: 8, iters: %d, lr: 1e-2, min_lr: 1e-3, warmup_iters: 2, eval_every: 5, log_every: 1,"
             " threads: 2}\n"
             "out_dir: %s\n%s",
             g_corpus, iters, out, extra);
    return test_write(g_dir, name, yaml);
}

/* A trained float checkpoint in g_dir/NAME; its path. */
static char *float_run(const char *name, int iters) {
    char *out = path_in(g_dir, name), args[4096];
    char file[128];
    snprintf(file, sizeof file, "%s.yaml", name);
    snprintf(args, sizeof args, "train %s", config_file(file, out, iters, ""));
    expect_ok(args);
    return path_in(out, "checkpoint.h5");
}

/* A QAT (int4 g16) checkpoint fine-tuned from a float one; its path. */
static char *qat_run(const char *name) {
    char *fl = float_run("qat-base", 10), *out = path_in(g_dir, name), extra[4096], args[4096], file[128];
    snprintf(extra, sizeof extra, "quant: {weight: {bits: 4, granularity: group, group_size: 16}, init_from: %s}\n", fl);
    snprintf(file, sizeof file, "%s.yaml", name);
    snprintf(args, sizeof args, "train %s", config_file(file, out, 5, extra));
    expect_ok(args);
    return path_in(out, "checkpoint.h5");
}

/* ---- HDF5 surgery: what a corrupted or hand-made file looks like ---- */

static void set_attr_str(const char *file, const char *obj, const char *name, const char *value) {
    hid_t f = H5Fopen(file, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t o = H5Oopen(f, obj, H5P_DEFAULT);
    if (H5Aexists(o, name) > 0) H5Adelete(o, name);
    h5_attr_str(o, name, value);
    H5Oclose(o);
    H5Fclose(f);
}

static void set_attr_i64(const char *file, const char *obj, const char *name, int64_t value) {
    hid_t f = H5Fopen(file, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t o = H5Oopen(f, obj, H5P_DEFAULT);
    if (H5Aexists(o, name) > 0) H5Adelete(o, name);
    h5_attr_i64(o, name, value);
    H5Oclose(o);
    H5Fclose(f);
}

static char *copy_file(const char *src, const char *name) {
    size_t n;
    char *b = test_slurp(src, &n), *dst = path_in(g_dir, name);
    FILE *f = fopen(dst, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
    return dst;
}

static bool same_bytes(const char *path, const char *bytes, size_t n) {
    size_t m;
    char *now = test_slurp(path, &m);
    return now && m == n && !memcmp(now, bytes, n);
}

static void pack_nan(void *unused) {
    (void)unused;
    float w[4] = {0.1f, NAN, 0.2f, 0.3f};
    QMatrix m;
    qmatrix_from_float(&m, w, 1, 4, 4, 4, NULL);
}

/* ---- 1. deep nesting ---- */

Test(rel, deeply_nested_yaml_is_refused_in_configs_and_checkpoints) {
    size_t depth = 5000;
    char *deep = xmalloc(8 * depth + 64);
    size_t k = (size_t)sprintf(deep, "model: ");
    for (size_t i = 0; i < depth; i++) k += (size_t)sprintf(deep + k, "{a: ");
    k += (size_t)sprintf(deep + k, "1");
    for (size_t i = 0; i < depth; i++) deep[k++] = '}';
    deep[k++] = '\n', deep[k] = '\0';
    char args[4096];
    snprintf(args, sizeof args, "train %s", test_write(g_dir, "deep.yaml", deep));
    expect_exit2(args, "deep.yaml:1", "nested deeper than 8 levels");
    /* the same text as a checkpoint's stored config */
    char *ck = copy_file(float_run("deep-run", 5), "deep.h5");
    set_attr_str(ck, "/", "config", deep);
    const char *cmds[] = {"eval %s", "sample %s --tokens 5", "export %s -o %s.out", "ptq %s --method rtn -o %s.out"};
    for (int i = 0; i < 4; i++) {
        snprintf(args, sizeof args, cmds[i], ck, ck);
        expect_exit2(args, "deep.h5:config:1", "nested deeper than 8 levels");
    }
    free(deep);
}

/* ---- 2. a flow list longer than the old value buffer ---- */

Test(rel, long_flow_list_is_refused_not_overflowed) {
    char *yaml = xmalloc(9000);
    int k = sprintf(yaml, "quant:\n  layers: [");
    for (int i = 0; i < 4100; i++) yaml[k++] = 'A';
    strcpy(yaml + k, ", B]\n");
    char args[4096];
    snprintf(args, sizeof args, "train %s", test_write(g_dir, "list.yaml", yaml));
    expect_exit2(args, "list.yaml:2: quant.layers", "value longer than");
    free(yaml);
}

/* ---- 4 and 13. non-finite weights and scales ---- */

Test(rel, nan_weight_is_refused_by_export_naming_the_tensor) {
    char *ck = copy_file(qat_run("nan-qat"), "nan-qat.h5");
    test_poison_f32(ck, "params/blocks.0.mlp.fc.weight", 3, NAN);
    char args[4096];
    snprintf(args, sizeof args, "export %s -o %s/nan.model.h5", ck, g_dir);
    expect_exit2(args, "tensor params/blocks.0.mlp.fc.weight holds nan at element 3", "not finite");
    cr_assert(access(path_in(g_dir, "nan.model.h5"), F_OK) != 0, "an export was written");
    /* and the kernel-side conversion itself refuses NaN instead of packing code 0 */
    char msg[512];
    cr_assert(capture_failure(pack_nan, NULL, msg, sizeof msg), "a NaN weight was packed");
    cr_assert(strstr(msg, "weight [0,1] is nan"), "%s", msg);
}

Test(rel, nan_scale_in_an_exported_model_is_refused) {
    char *ck = qat_run("nan-scale"), args[4096];
    char *model = path_in(g_dir, "scale.model.h5");
    snprintf(args, sizeof args, "export %s -o %s", ck, model);
    expect_ok(args);
    test_poison_f32(model, "quant/blocks.0.attn.qkv/scales", 2, INFINITY);
    snprintf(args, sizeof args, "eval %s", model);
    expect_exit2(args, "quant/blocks.0.attn.qkv/scales holds inf at element 2", "not finite");
}

/* ---- 5. outputs that are not regular files ---- */

Test(rel, outputs_that_are_not_regular_files_are_refused) {
    char *ck = qat_run("out-qat"), args[4096];
    char *fifo = path_in(g_dir, "out.fifo"), *dir = path_in(g_dir, "out.dir");
    cr_assert_eq(mkfifo(fifo, 0644), 0);
    cr_assert_eq(mkdir(dir, 0755), 0);
    snprintf(args, sizeof args, "export %s -o %s", ck, fifo);
    expect_exit2(args, "out.fifo: exists and is not a regular file", "refusing to replace it");
    snprintf(args, sizeof args, "export %s -o %s", ck, dir);
    expect_exit2(args, "out.dir: exists and is not a regular file", NULL);
    snprintf(args, sizeof args, "ptq %s --method rtn -o %s", path_in(path_in(g_dir, "qat-base"), "checkpoint.h5"), fifo);
    expect_exit2(args, "out.fifo: exists and is not a regular file", NULL);
    /* into a directory that does not exist: named, before any work */
    snprintf(args, sizeof args, "export %s -o %s/no-such-dir/model.h5", ck, g_dir);
    expect_exit2(args, "no-such-dir does not exist", "create it first");
    snprintf(args, sizeof args, "export %s --format gguf -o %s/no-such-dir/model.gguf", ck, g_dir);
    expect_exit2(args, "no-such-dir does not exist", NULL);
    struct stat st;
    cr_assert(stat(fifo, &st) == 0 && S_ISFIFO(st.st_mode), "the FIFO was replaced");
    cr_assert(stat(dir, &st) == 0 && S_ISDIR(st.st_mode), "the directory was replaced");
}

/* ---- 6. two trainings on one out_dir ---- */

Test(rel, second_training_on_a_locked_out_dir_stops_naming_the_holder) {
    char *out = path_in(g_dir, "locked"), args[4096];
    cr_assert_eq(mkdir(out, 0755), 0);
    /* hold the lock as a running qat would, pid and all */
    int fd = open(path_in(out, ".qat.lock"), O_RDWR | O_CREAT, 0644);
    cr_assert(fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0);
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    cr_assert_eq(write(fd, pid, (size_t)n), n);
    pid[n - 1] = '\0';
    snprintf(args, sizeof args, "train %s", config_file("locked.yaml", out, 5, ""));
    char want[256];
    snprintf(want, sizeof want, "another qat (pid %s) is training into this directory", pid);
    expect_exit2(args, out, want);
    cr_assert(access(path_in(out, "metrics.jsonl"), F_OK) != 0, "the second run wrote metrics");
    close(fd); /* released: now it runs */
    expect_ok(args);
}

/* ---- 7. replacing a run, or the model a run starts from ---- */

Test(rel, an_existing_run_is_kept_unless_overwrite_and_init_from_is_never_the_output) {
    char *ck = float_run("keep", 10), args[4096];
    char *metrics = path_in(path_in(g_dir, "keep"), "metrics.jsonl");
    size_t n, nm;
    char *before = test_slurp(ck, &n), *mbefore = test_slurp(metrics, &nm);
    snprintf(args, sizeof args, "train %s", path_in(g_dir, "keep.yaml"));
    expect_exit2(args, "already holds a run (checkpoint.h5)", "--overwrite replaces it");
    cr_assert(same_bytes(ck, before, n) && same_bytes(metrics, mbefore, nm), "the earlier run was touched");
    /* fine-tuning into the float model's own directory */
    char extra[4096];
    snprintf(extra, sizeof extra, "quant: {weight: {bits: 4, granularity: group, group_size: 16}, init_from: %s}\n", ck);
    snprintf(args, sizeof args, "train %s --overwrite",
             config_file("self.yaml", path_in(g_dir, "keep"), 5, extra));
    expect_exit2(args, "quant.init_from", "is this run's own checkpoint");
    cr_assert(same_bytes(ck, before, n), "the float model was overwritten");
    snprintf(args, sizeof args, "train %s --overwrite --resume", path_in(g_dir, "keep.yaml"));
    expect_exit2(args, "--resume and --overwrite", NULL);
    snprintf(args, sizeof args, "train %s --overwrite", path_in(g_dir, "keep.yaml"));
    expect_ok(args);
}

/* ---- 9 and 10. what is not a config, corpus or checkpoint ---- */

/* a FIFO used to block forever: the timeout turns a hang into a failure */
Test(rel, nul_bytes_devices_proc_files_directories_and_fifos_are_refused, .timeout = 120) {
    char args[4096];
    char *nul = path_in(g_dir, "nul.yaml");
    FILE *f = fopen(nul, "wb");
    fwrite("model: {n_layer: 1}\n\0train: {iters: 1}\n", 1, 40, f);
    fclose(f);
    snprintf(args, sizeof args, "train %s", nul);
    expect_exit2(args, "nul.yaml: contains a NUL byte at offset 20", NULL);
    expect_exit2("train /dev/zero", "/dev/zero: not a regular file", NULL);
    /* a /proc file has size 0 but content: read, it is no config */
    expect_exit2("train /proc/self/status", "/proc/self/status:1: unknown key", NULL);
    snprintf(args, sizeof args, "train %s", test_write(g_dir, "empty.yaml", "\n\n"));
    expect_exit2(args, "empty.yaml: the config is empty", NULL);
    char *fifo = path_in(g_dir, "in.fifo");
    cr_assert_eq(mkfifo(fifo, 0644), 0);
    char *ck = float_run("types", 5);
    const char *cmds[] = {"train %s", "eval %s", "sample %s", "export %s -o x.h5", "ptq %s --method rtn -o x.h5"};
    for (int i = 0; i < 5; i++) {
        snprintf(args, sizeof args, cmds[i], fifo);
        expect_exit2(args, "in.fifo: not a regular file", NULL);
        snprintf(args, sizeof args, cmds[i], g_dir);
        expect_exit2(args, "is a directory, not a file", NULL);
    }
    snprintf(args, sizeof args, "eval %s --data %s", ck, g_dir);
    expect_exit2(args, "is a directory, not a file", NULL);
    snprintf(args, sizeof args, "eval %s --data %s", ck, fifo);
    expect_exit2(args, "in.fifo: not a regular file", NULL);
    snprintf(args, sizeof args, "train %s --overwrite --set data.path=%s", path_in(g_dir, "types.yaml"), g_dir);
    expect_exit2(args, "is a directory, not a file", NULL);
}

/* ---- 11. YAML that was silently accepted ---- */

Test(rel, duplicate_keys_documents_lists_and_tags_are_refused_with_the_line) {
    char args[4096];
    struct {
        const char *yaml, *want;
    } cases[] = {
        {"model: {n_layer: 1, n_layer: 2}\n", "d1.yaml:1: model.n_layer is given twice (first at line 1)"},
        {"model:\n  n_layer: 1\ntrain:\n  iters: 3\nmodel:\n  n_head: 2\n", "d2.yaml:5: model is given twice (first at line 1)"},
        {"model: {n_layer: 1}\nmodel.n_layer: 2\n", "d3.yaml:2: model.n_layer is given twice"},
        {"model: {n_layer: 1}\n---\ntrain: {iters: 3}\n", "d4.yaml:2: more than one YAML document"},
        {"model: {n_layer: [1]}\n", "d5.yaml:1: model.n_layer: expected a single value, got a list"},
        {"model: {n_layer: !!str 1}\n", "d6.yaml:1: YAML tags"},
        {"model: {n_layer: &a 1, n_head: *a}\n", "d7.yaml:1: YAML anchors and aliases"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char name[16];
        snprintf(name, sizeof name, "d%zu.yaml", i + 1);
        snprintf(args, sizeof args, "train %s", test_write(g_dir, name, cases[i].yaml));
        expect_exit2(args, cases[i].want, NULL);
    }
}

/* ---- 12. JSON that parses, and the iterations actually done ---- */

static cJSON *parse_file(const char *path) {
    char *s = test_slurp(path, NULL);
    cr_assert(s, "cannot read %s", path);
    cJSON *j = cJSON_Parse(s);
    cr_assert(j, "%s is not valid JSON: %s", path, s);
    return j;
}

Test(rel, summaries_and_json_lines_are_valid_json_with_the_steps_done) {
    char *out = path_in(g_dir, "json"), args[4096];
    char *cfg = config_file("json.yaml", out, 10, "");
    snprintf(args, sizeof args, "train %s --stop-after 5", cfg);
    expect_ok(args);
    cJSON *s = parse_file(path_in(out, "summary.json"));
    cr_assert_eq(cJSON_GetObjectItem(s, "iters")->valueint, 5, "iters reports the planned steps");
    cr_assert_eq(cJSON_GetObjectItem(s, "planned_iters")->valueint, 10);
    cr_assert(cJSON_IsNumber(cJSON_GetObjectItem(s, "val_loss")));
    cJSON_Delete(s);
    /* resuming to a step the checkpoint already has is refused, not a nan summary */
    snprintf(args, sizeof args, "train %s --resume --stop-after 5", cfg);
    expect_exit2(args, "--stop-after 5", "already at step 5");
    snprintf(args, sizeof args, "train %s --resume --stop-after 3", cfg);
    expect_exit2(args, "--stop-after 3", "already at step 5");
    s = parse_file(path_in(out, "summary.json"));
    cr_assert_eq(cJSON_GetObjectItem(s, "iters")->valueint, 5);
    cJSON_Delete(s);
    /* every metrics line parses */
    char *m = test_slurp(path_in(out, "metrics.jsonl"), NULL);
    int lines = 0;
    for (char *line = strtok(m, "\n"); line; line = strtok(NULL, "\n"), lines++) {
        cJSON *j = cJSON_Parse(line);
        cr_assert(j, "metrics line is not JSON: %s", line);
        cJSON_Delete(j);
    }
    cr_assert_eq(lines, 5);
    /* a value that is not finite is null, never a bare nan */
    cJSON *o = cJSON_CreateObject();
    json_add_num(o, "a", NAN, 6);
    json_add_num(o, "b", INFINITY, 6);
    json_add_num(o, "c", 1.64420001, 6);
    char *line = json_take_line(o);
    cr_assert_str_eq(line, "{\"a\":null,\"b\":null,\"c\":1.6442}\n");
    free(line);
}

/* ---- 14. integrity and attributes of both file formats ---- */

Test(rel, flipped_bytes_and_bad_attributes_in_checkpoints_are_refused) {
    char *ck = float_run("flip", 10), args[4096];
    /* one flipped byte inside a weight's data */
    size_t n;
    char *bytes = test_slurp(ck, &n);
    hid_t f = H5Fopen(ck, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t ds = H5Dopen2(f, "params/wte", H5P_DEFAULT);
    haddr_t off = H5Dget_offset(ds);
    H5Dclose(ds);
    H5Fclose(f);
    cr_assert(off != HADDR_UNDEF && off + 16 < n);
    char *flip = path_in(g_dir, "flip.h5");
    bytes[off + 9] ^= 0x10;
    FILE *o = fopen(flip, "wb");
    fwrite(bytes, 1, n, o);
    fclose(o);
    snprintf(args, sizeof args, "eval %s", flip);
    expect_exit2(args, "flip.h5: tensor params/wte fails its checksum", "the file is corrupt");
    /* attributes a hand-edited file could hold */
    struct {
        const char *name;
        int64_t v;
        const char *want;
    } steps[] = {{"step", -5, "step -5 is outside 0..train.iters (10)"},
                 {"step", (int64_t)1 << 62, "is outside 0..train.iters"}};
    for (int i = 0; i < 2; i++) {
        char *c = copy_file(ck, "attr.h5");
        set_attr_i64(c, "/", steps[i].name, steps[i].v);
        snprintf(args, sizeof args, "train %s --resume --set out_dir=%s/attr-run", path_in(g_dir, "flip.yaml"), g_dir);
        char *rd = path_in(g_dir, "attr-run");
        mkdir(rd, 0755);
        copy_file(c, "attr-run/checkpoint.h5");
        expect_exit2(args, steps[i].want, NULL);
    }
    char *c = copy_file(ck, "kind.h5");
    set_attr_str(c, "/", "kind", "weird");
    snprintf(args, sizeof args, "eval %s", c);
    expect_exit2(args, "kind \"weird\" is none of float, qat, ptq", NULL);
    c = copy_file(ck, "ostep.h5");
    set_attr_i64(c, "/", "optim_step", 3);
    mkdir(path_in(g_dir, "ostep-run"), 0755);
    copy_file(c, "ostep-run/checkpoint.h5");
    snprintf(args, sizeof args, "train %s --resume --set out_dir=%s/ostep-run", path_in(g_dir, "flip.yaml"), g_dir);
    expect_exit2(args, "optim_step 3 differs from step 10", NULL);
}

Test(rel, bad_attributes_in_exported_models_are_refused) {
    char *ck = qat_run("attr-qat"), args[4096];
    char *model = path_in(g_dir, "attr.model.h5");
    snprintf(args, sizeof args, "export %s -o %s", ck, model);
    expect_ok(args);
    struct {
        const char *obj, *name;
        int64_t v;
        const char *s, *want;
    } cases[] = {
        {"/", "kv_bits", 3, NULL, "kv_bits 3, its config says quant.kv.bits 0"},
        {"quant/blocks.0.mlp.fc", "rows", 7, NULL, "quant/blocks.0.mlp.fc is 7x32, the model's layer is 128x32"},
        {"quant/blocks.0.mlp.fc", "cols", 64, NULL, "is 128x64, the model's layer is 128x32"},
        {"quant/blocks.0.mlp.fc", "granularity", 0, "channel", "granularity \"channel\""},
        {"quant/blocks.0.mlp.fc", "scheme", 0, "asymmetric", "scheme \"asymmetric\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *c = copy_file(model, "attr-edit.model.h5");
        if (cases[i].s) set_attr_str(c, cases[i].obj, cases[i].name, cases[i].s);
        else set_attr_i64(c, cases[i].obj, cases[i].name, cases[i].v);
        snprintf(args, sizeof args, "eval %s", c);
        expect_exit2(args, cases[i].want, NULL);
    }
}

/* ---- 15. configs that are valid only in part ---- */

Test(rel, inconsistent_configs_fail_before_they_run) {
    char *ck = copy_file(float_run("cfg", 5), "heads.h5"), args[4096];
    /* a stored config no model can have: every command says which file */
    char *yaml = NULL;
    {
        hid_t f = H5Fopen(ck, H5F_ACC_RDONLY, H5P_DEFAULT);
        yaml = h5_read_attr_str(f, ck, "config");
        H5Fclose(f);
    }
    char *p = strstr(yaml, "n_head: 2");
    cr_assert(p);
    p[8] = '3';
    set_attr_str(ck, "/", "config", yaml);
    free(yaml);
    const char *cmds[] = {"eval %s", "sample %s --tokens 5", "export %s -o y.h5"};
    for (int i = 0; i < 3; i++) {
        snprintf(args, sizeof args, cmds[i], ck);
        expect_exit2(args, "heads.h5:config: model.n_embd: 32 is not divisible by model.n_head 3", NULL);
    }
    snprintf(args, sizeof args, "train %s --set quant.weight.bits=4 --set 'quant.layers=,,,'",
             config_file("commas.yaml", path_in(g_dir, "commas"), 5, ""));
    expect_exit2(args, "quant.layers: ',,,' has an empty entry", NULL);
    /* what export cannot run is refused before training, unless asked for fake quantization only */
    char *fl = path_in(path_in(g_dir, "cfg"), "checkpoint.h5"), extra[4096];
    snprintf(extra, sizeof extra,
             "quant: {weight: {bits: 4, granularity: group, group_size: 16}, activation: {bits: 8, granularity: tensor},"
             " init_from: %s}\n", fl);
    char *w4 = config_file("w4a8.yaml", path_in(g_dir, "w4a8"), 3, extra);
    snprintf(args, sizeof args, "train %s", w4);
    expect_exit2(args, "no integer kernel for int8 static activations with int4 weights", "quant.deploy: false");
    snprintf(args, sizeof args, "train %s --set quant.deploy=false", w4);
    expect_ok(args);
    /* resuming under another model or quantization */
    snprintf(args, sizeof args, "train %s --resume --set quant.deploy=false --set quant.weight.group_size=32", w4);
    expect_exit2(args, "--resume: quant.weight.group_size differs from the run", NULL);
    snprintf(args, sizeof args, "train %s --resume --set quant.deploy=false --set model.n_embd=64", w4);
    expect_exit2(args, "model.n_embd", "differs from the model");
}

/* ---- 16. arguments that were ignored ---- */

Test(rel, stray_arguments_missing_options_and_thread_counts_are_refused) {
    expect_exit2("demo --bogus", "demo: unexpected argument '--bogus'", NULL);
    expect_exit2("config-keys foo", "config-keys: unexpected argument 'foo'", NULL);
    char *ck = float_run("args", 5), args[4096];
    snprintf(args, sizeof args, "ptq %s -o %s/args.out.h5", ck, g_dir);
    expect_exit2(args, "ptq: missing --method", NULL);
    char *cfg = path_in(g_dir, "args.yaml");
    snprintf(args, sizeof args, "train %s --stop-after 0", cfg);
    expect_exit2(args, "--stop-after: expected an integer in [1, 1000000000], got '0'", NULL);
    snprintf(args, sizeof args, "train %s --set train.threads=4096", cfg);
    expect_exit2(args, "train.threads: 4096 is more than 4 threads per core", NULL);
    /* blanks around a --set value are the shell's, on either side */
    snprintf(args, sizeof args, "train %s --overwrite --set 'train.iters=3 '", cfg);
    expect_ok(args);
    snprintf(args, sizeof args, "train %s --overwrite --set 'train.iters= 3'", cfg);
    expect_ok(args);
    /* a quoted YAML value keeps its blanks, which no number has */
    snprintf(args, sizeof args, "train %s", test_write(g_dir, "blank.yaml", "train: {iters: ' 3'}\n"));
    expect_exit2(args, "train.iters: expected an integer, got ' 3'", NULL);
}
