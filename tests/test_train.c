/* test_train.c: the FP32 training path end to end: loss falls on a small
 * corpus, checkpoints round-trip exactly, resume reproduces an unbroken run,
 * and every kind of bad input gets one line and exit status 2 without
 * touching what was already saved. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "format/checkpoint.h"
#include "train/trainer.h"
#include "util/h5io.h"

/* A 1-layer model small enough to train in a second. */
static void tiny_config(Config *c, const char *corpus, const char *out_dir, int iters) {
    config_defaults(c);
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "model: {n_layer: 1, n_head: 2, n_embd: 32, block_size: 16, vocab: char}\n"
             "data: {path: %s, val_fraction: 0.1}\n"
             "train: {batch_size: 8, iters: %d, lr: 1e-2, min_lr: 1e-3, warmup_iters: 5, eval_every: 20,\n"
             "        eval_batches: 8, log_every: 1, threads: 2}\n"
             "out_dir: %s\n",
             corpus, iters, out_dir);
    config_load_string(c, yaml, "tiny config");
}

static char *g_dir, *g_corpus;
static int g_vocab; /* distinct characters of the corpus */
static void setup(void) {
    g_dir = test_tmpdir();
    char *text = test_corpus(40000, 5);
    g_corpus = test_write(g_dir, "corpus.txt", text);
    Vocab v;
    vocab_build_char(&v, (const uint8_t *)text, strlen(text));
    g_vocab = v.size;
}
TestSuite(train, .init = setup);

static char *path_in(const char *dir, const char *name) {
    char *p = xmalloc(strlen(dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", dir, name);
    return test_keep(p);
}

/* loss of a metrics.jsonl line */
static double field(const char *line, const char *key) {
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = strstr(line, k);
    return p ? atof(p + strlen(k)) : NAN;
}

Test(train, loss_falls_end_to_end) {
    char *out = path_in(g_dir, "run");
    Config c;
    tiny_config(&c, g_corpus, out, 120);
    TrainOptions o = {.quiet = true};
    train_run(&c, "tiny config", &o);
    char *metrics = test_slurp(path_in(out, "metrics.jsonl"), NULL);
    cr_assert(metrics, "no metrics.jsonl");
    double first = field(metrics, "loss");
    char *summary = test_slurp(path_in(out, "summary.json"), NULL);
    double val = field(summary, "val_loss");
    /* an untrained model sits near ln V (about 2.9 for the corpus's 19 symbols);
     * its word structure is learnable far below that in 120 steps */
    cr_assert_gt(first, logf((float)g_vocab) - 0.2, "first loss %.3f", first);
    cr_assert_lt(val, first - 1.2, "val loss %.3f did not fall 1.2 below the first loss %.3f", val, first);
    /* V*32 wte + 16*32 wpe + one block (2*64 LN, 32*96+96, 32*32+32, 32*128+128, 128*32+32) + 64 ln_f */
    cr_assert_eq((long)field(summary, "params"), g_vocab * 32 + 512 + 128 + 3168 + 1056 + 4224 + 4128 + 64, "params %g",
                 field(summary, "params"));
    cr_assert(strstr(summary, "\"tokens_per_s\":") && strstr(summary, "\"wall_s\":") &&
              strstr(summary, "\"peak_rss_mib\":") && strstr(summary, "\"iters\":120"));
    /* metrics: one line per step with every field, val_loss at evals */
    int lines = 0, vals = 0;
    for (char *l = metrics; (l = strchr(l, '\n')); l++) lines++;
    for (char *l = metrics; (l = strstr(l, "val_loss")); l++) vals++;
    cr_assert_eq(lines, 120);
    cr_assert_eq(vals, 6); /* every 20 steps */
    cr_assert(strstr(metrics, "\"lr\":") && strstr(metrics, "\"grad_norm\":") && strstr(metrics, "\"tokens_per_s\":"));
    /* qat eval reproduces the final validation loss */
    float again = eval_checkpoint(path_in(out, "checkpoint.h5"), NULL).val_loss;
    cr_assert_float_eq(again, val, 1e-5, "eval %.6f vs summary %.6f", again, val);
}

Test(train, checkpoint_round_trip_is_exact) {
    GPTConfig gc = {.vocab_size = 11, .n_layer = 2, .n_head = 2, .n_embd = 8, .block_size = 6};
    GPT a, b;
    gpt_build(&a, &gc, NULL, NULL);
    gpt_build(&b, &gc, NULL, NULL);
    Rng r;
    rng_seed(&r, 3);
    gpt_init_weights(&a, &r);
    AdamW oa, ob;
    adamw_init(&oa, &a.params, 0.9f, 0.99f, 1e-8f, 0.1f);
    adamw_init(&ob, &b.params, 0.9f, 0.99f, 1e-8f, 0.1f);
    for (size_t i = 0; i < a.params.numel; i++) {
        oa.m[i] = rng_normal(&r);
        oa.v[i] = rng_uniform(&r);
    }
    oa.step = 17;
    Config cfg;
    config_defaults(&cfg);
    Vocab v;
    vocab_build_char(&v, (const uint8_t *)"abcdefghijk", 11);
    char *path = path_in(g_dir, "rt.h5");
    ckpt_save(path, &cfg, &v, &a, &oa, 17, &r, NULL);
    Config c2;
    Vocab v2;
    long step;
    Rng r2;
    ckpt_load_meta(path, &c2, &v2, &step);
    ckpt_load_params(path, &b, false);
    ckpt_load_train_state(path, &b, &ob, &r2);
    cr_assert_eq(step, 17);
    cr_assert_eq(ob.step, 17);
    cr_assert_eq(r2.s, r.s);
    cr_assert_eq(v2.size, 11);
    cr_assert_eq(memcmp(v2.chars, v.chars, 11), 0);
    for (int i = 0; i < a.params.n; i++) {
        Tensor *x = a.params.list[i], *y = b.params.list[i];
        cr_assert_str_eq(x->name, y->name);
        cr_assert_eq(memcmp(x->data, y->data, x->numel * sizeof(float)), 0, "tensor %s differs", x->name);
    }
    cr_assert_eq(memcmp(oa.m, ob.m, a.params.numel * sizeof(float)), 0);
    cr_assert_eq(memcmp(oa.v, ob.v, a.params.numel * sizeof(float)), 0);
    char *y1 = config_to_yaml(&cfg), *y2 = config_to_yaml(&c2);
    cr_assert_str_eq(y1, y2);
    free(y1);
    free(y2);
    adamw_free(&oa);
    adamw_free(&ob);
    gpt_free(&a);
    gpt_free(&b);
}

/* Lines of metrics.jsonl without the tokens_per_s field, which is timing. */
static void strip_timing(char *s) {
    char *p;
    while ((p = strstr(s, ",\"tokens_per_s\":"))) {
        char *e = p + 16;
        while (*e && *e != ',' && *e != '}') e++;
        memmove(p, e, strlen(e) + 1);
    }
}

Test(train, resume_reproduces_unbroken_run) {
    char *a = path_in(g_dir, "full"), *b = path_in(g_dir, "split");
    Config ca, cb;
    tiny_config(&ca, g_corpus, a, 60);
    tiny_config(&cb, g_corpus, b, 60);
    TrainOptions full = {.quiet = true}, first = {.quiet = true, .stop_after = 20},
                 rest = {.quiet = true, .resume = true};
    train_run(&ca, "a", &full);
    train_run(&cb, "b", &first);
    train_run(&cb, "b", &rest);
    char *ma = test_slurp(path_in(a, "metrics.jsonl"), NULL), *mb = test_slurp(path_in(b, "metrics.jsonl"), NULL);
    strip_timing(ma);
    strip_timing(mb);
    cr_assert_str_eq(ma, mb, "metrics differ after resume");
    GPT ga, gb;
    Config x;
    Vocab v;
    model_load(path_in(a, "checkpoint.h5"), &ga, &x, &v);
    model_load(path_in(b, "checkpoint.h5"), &gb, &x, &v);
    cr_assert_eq(memcmp(ga.params.data, gb.params.data, ga.params.numel * sizeof(float)), 0, "weights differ");
    gpt_free(&ga);
    gpt_free(&gb);
}

/* ---- bad input through the real binary ---- */

static void expect_exit2(const char *args, const char *want1, const char *want2) {
    test_expect_qat(args, 2, want1, want2);
}

static char *bad_config(const char *name, const char *extra) {
    char yaml[4096];
    snprintf(yaml, sizeof yaml,
             "model: {n_layer: 1, n_head: 2, n_embd: 32, block_size: 16}\n"
             "data: {path: %s}\n"
             "train: {batch_size: 4, iters: 3, eval_every: 3, eval_batches: 2}\n"
             "out_dir: %s/bad-run\n%s",
             g_corpus, g_dir, extra);
    return test_write(g_dir, name, yaml);
}

Test(train, bad_unknown_key) {
    char args[1024];
    snprintf(args, sizeof args, "train %s", bad_config("k.yaml", "trian: {lr: 1}\n"));
    expect_exit2(args, "k.yaml:5", "unknown key 'trian.lr'");
    snprintf(args, sizeof args, "train %s --set train.lrr=1", bad_config("k2.yaml", ""));
    expect_exit2(args, "--set", "unknown key 'train.lrr'");
}

Test(train, bad_types_and_values) {
    char args[1024];
    snprintf(args, sizeof args, "train %s", bad_config("t.yaml", "train.log_every: abc\n"));
    expect_exit2(args, "t.yaml:5: train.log_every", "expected an integer");
    snprintf(args, sizeof args, "train %s --set train.lr=-1", bad_config("lr.yaml", ""));
    expect_exit2(args, "train.lr", "got '-1'");
    snprintf(args, sizeof args, "train %s --set model.n_head=3", bad_config("h.yaml", ""));
    expect_exit2(args, "h.yaml: model.n_embd", "not divisible by model.n_head 3");
    snprintf(args, sizeof args, "train %s --set model.vocab=word", bad_config("v.yaml", ""));
    expect_exit2(args, "model.vocab", "char|byte");
}

Test(train, bad_block_size_and_missing_corpus) {
    char args[1024];
    snprintf(args, sizeof args, "train %s --set model.block_size=30000", bad_config("b.yaml", ""));
    expect_exit2(args, "b.yaml", "model.block_size");
    snprintf(args, sizeof args, "train %s --set data.path=%s/nope.txt", bad_config("m.yaml", ""), g_dir);
    expect_exit2(args, "data.path", "nope.txt");
}

Test(train, bad_checkpoints_leave_files_alone) {
    /* a real checkpoint to damage */
    char *out = path_in(g_dir, "good");
    Config c;
    tiny_config(&c, g_corpus, out, 10);
    TrainOptions o = {.quiet = true};
    train_run(&c, "tiny", &o);
    char *ck = path_in(out, "checkpoint.h5");
    size_t n;
    char *bytes = test_slurp(ck, &n);

    char args[2048];
    /* truncated file */
    char *trunc = path_in(g_dir, "trunc.h5");
    FILE *f = fopen(trunc, "wb");
    fwrite(bytes, 1, n / 2, f);
    fclose(f);
    snprintf(args, sizeof args, "eval %s", trunc);
    expect_exit2(args, "trunc.h5", "truncated or corrupt");
    /* not HDF5 at all */
    snprintf(args, sizeof args, "eval %s", g_corpus);
    expect_exit2(args, "corpus.txt", "not a readable HDF5 file");
    /* missing */
    snprintf(args, sizeof args, "sample %s/none.h5", g_dir);
    expect_exit2(args, "none.h5", "cannot open");

    /* resuming with a model of another shape names the problem and keeps the checkpoint */
    char yaml[4096];
    snprintf(yaml, sizeof yaml,
             "model: {n_layer: 1, n_head: 2, n_embd: 48, block_size: 16}\n"
             "data: {path: %s}\ntrain: {batch_size: 8, iters: 20, eval_every: 20, eval_batches: 8}\nout_dir: %s\n",
             g_corpus, out);
    snprintf(args, sizeof args, "train %s --resume", test_write(g_dir, "other.yaml", yaml));
    expect_exit2(args, "other.yaml: model.n_embd differs from the model in", "checkpoint.h5");
    size_t n2;
    char *after = test_slurp(ck, &n2);
    cr_assert(n2 == n && memcmp(after, bytes, n) == 0, "checkpoint changed");

}

/* loading weights into a model of another shape names the tensor */
static GPT g_other; /* global: the failing load longjmps out before it could be freed */
static void load_other_shape(void *p) {
    GPTConfig gc = {.vocab_size = g_vocab, .n_layer = 1, .n_head = 2, .n_embd = 48, .block_size = 16};
    gpt_build(&g_other, &gc, NULL, NULL);
    ckpt_load_params(p, &g_other, false);
}

Test(train, other_shape_names_tensor) {
    char *out = path_in(g_dir, "shape");
    Config c;
    tiny_config(&c, g_corpus, out, 5);
    TrainOptions o = {.quiet = true};
    train_run(&c, "tiny", &o);
    char msg[512];
    cr_assert(capture_failure(load_other_shape, path_in(out, "checkpoint.h5"), msg, sizeof msg));
    char want[128];
    snprintf(want, sizeof want, "tensor params/wte has shape [%d,32], the model needs [%d,48]", g_vocab, g_vocab);
    cr_assert(strstr(msg, want), "got: %s", msg);
    gpt_free(&g_other);
}

/* A checkpoint whose weights hold NaN (with a checksum that matches, as a
 * diverged writer would store them) is refused at load naming the tensor,
 * for --resume as for eval and export, and is left as it is. */
Test(train, nan_checkpoint_is_refused_and_kept) {
    char *out = path_in(g_dir, "nan");
    Config c;
    tiny_config(&c, g_corpus, out, 10);
    TrainOptions o = {.quiet = true};
    train_run(&c, "tiny", &o);
    char *ck = path_in(out, "checkpoint.h5");
    test_poison_f32(ck, "params/wte", 5, NAN); /* with its CRC-32 rewritten: only the value check can refuse it */
    size_t n;
    char *before = test_slurp(ck, &n);
    char yaml[4096];
    snprintf(yaml, sizeof yaml,
             "model: {n_layer: 1, n_head: 2, n_embd: 32, block_size: 16}\n"
             "data: {path: %s}\ntrain: {batch_size: 8, iters: 20, eval_every: 5, eval_batches: 8, eval: random}\n"
             "out_dir: %s\n",
             g_corpus, out);
    char args[2048];
    snprintf(args, sizeof args, "train %s --resume", test_write(g_dir, "nan.yaml", yaml));
    expect_exit2(args, "tensor params/wte holds nan at element 5", "not finite");
    snprintf(args, sizeof args, "eval %s", ck);
    expect_exit2(args, "tensor params/wte holds nan at element 5", "not finite");
    size_t n2;
    char *after = test_slurp(ck, &n2);
    cr_assert(n2 == n && memcmp(before, after, n) == 0, "checkpoint changed");
}

/* configs/README.md must document every key the schema knows. */
Test(train, every_config_key_is_documented) {
    const char *src = getenv("QAT_SOURCE_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/configs/README.md", src ? src : ".");
    char *doc = test_slurp(path, NULL);
    cr_assert(doc, "cannot read %s", path);
    char *keys;
    size_t len;
    FILE *m = open_memstream(&keys, &len);
    config_print_keys(m);
    fclose(m);
    int n = 0;
    for (char *line = strtok(keys, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "| `", 3) != 0) continue;
        cr_assert(strstr(doc, line), "configs/README.md lacks or has an outdated row: %s", line);
        n++;
    }
    cr_assert_gt(n, 20);
    free(keys);
}
