/* testutil.c: gradient checker and failure capture for the tests. */
/* nftw, for removing the tests' directories */
#define _XOPEN_SOURCE 700
#include <cJSON.h>
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <hdf5.h>
#include <zlib.h>

#include "testutil.h"

#include "train/trainer.h"

#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static double dot_out(const Tensor *out, const float *r) {
    double s = 0.0;
    for (size_t i = 0; i < out->numel; i++) s += (double)out->data[tensor_offset_of(out, i)] * r[i];
    return s;
}

GcResult gradcheck(GcBuild f, void *ctx, int nin, const GcInput *spec, uint64_t seed, float h, float atol, float rtol) {
    Params p;
    params_init(&p);
    Tensor *in[8];
    for (int i = 0; i < nin; i++) in[i] = params_add(&p, spec[i].name, spec[i].ndim, spec[i].shape);
    params_finalize(&p);
    Rng rng;
    rng_seed(&rng, seed);
    for (int i = 0; i < nin; i++) {
        float lo = spec[i].lo, hi = spec[i].hi;
        if (lo == 0.0f && hi == 0.0f) lo = -1.0f, hi = 1.0f;
        for (size_t k = 0; k < in[i]->numel; k++) in[i]->data[k] = lo + (hi - lo) * rng_uniform(&rng);
        in[i]->requires_grad = spec[i].grad;
    }
    Tape t;
    tape_init(&t, 1 << 20);
    Tensor *out = f(&t, in, ctx);
    float *r = malloc(out->numel * sizeof(float));
    for (size_t k = 0; k < out->numel; k++) r[k] = rng_normal(&rng);
    tape_backward_seed(&t, out, r);

    GcResult res = {0};
    for (int i = 0; i < nin; i++) {
        if (!spec[i].grad) continue;
        float *ana = malloc(in[i]->numel * sizeof(float));
        memcpy(ana, in[i]->grad, in[i]->numel * sizeof(float));
        for (size_t k = 0; k < in[i]->numel; k++) {
            float x0 = in[i]->data[k];
            tape_set_grad(&t, false);
            in[i]->data[k] = x0 + h;
            tape_reset(&t);
            double lp = dot_out(f(&t, in, ctx), r);
            in[i]->data[k] = x0 - h;
            tape_reset(&t);
            double lm = dot_out(f(&t, in, ctx), r);
            in[i]->data[k] = x0;
            double num = (lp - lm) / (2.0 * h);
            double err = fabs(num - ana[k]);
            double ratio = err / (atol + rtol * fmax(fabs(num), fabs(ana[k])));
            if (ratio > res.worst) res.worst = ratio;
            if (err > res.max_abs_err) res.max_abs_err = err;
            if (ratio > 1.0)
                fprintf(stderr, "gradcheck: %s[%zu]: numeric %.6g analytic %.6g\n", spec[i].name, k, num, ana[k]);
            res.checked++;
        }
        free(ana);
    }
    free(r);
    tape_free(&t);
    params_free(&p);
    return res;
}

bool capture_failure(void (*fn)(void *), void *ctx, char *msg, size_t n) { return !qat_try(fn, ctx, msg, n); }

const char *test_corpus_path(void) {
    static char path[4096];
    const char *src = getenv("QAT_SOURCE_DIR");
    snprintf(path, sizeof path, "%s/../shared/data/tinyshakespeare.txt", src ? src : ".");
    return access(path, R_OK) == 0 ? path : NULL;
}

void *test_keep(void *p) {
    static void **kept;
    static size_t n, cap;
    if (n == cap) kept = xrealloc(kept, (cap = cap ? 2 * cap : 64) * sizeof *kept);
    kept[n++] = p;
    return p;
}

/* The directories this process made, removed when it exits (each test runs
 * in a process of its own) unless QAT_TEST_KEEP is set; a child forked
 * from it leaves them to the process that made them. */
static char **tmpdirs;
static size_t n_tmpdirs;
static pid_t tmpdir_owner;

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

void test_remove_tree(const char *path) {
    if (!getenv("QAT_TEST_KEEP")) nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static char *shared_path(const char *name, int pid, const char *suffix) {
    size_t n = strlen(name) + strlen(suffix) + 48;
    char *p = xmalloc(n);
    snprintf(p, n, "/tmp/qat-test-%s-%d%s", name, pid, suffix);
    return test_keep(p);
}

char *test_shared_claim(const char *name, bool *build, int *lock) {
    char *dir = shared_path(name, (int)getppid(), ""), *lk = shared_path(name, (int)getppid(), ".lock");
    *lock = open(lk, O_CREAT | O_RDWR, 0644);
    cr_assert_geq(*lock, 0, "cannot open %s", lk);
    flock(*lock, LOCK_EX);
    *build = access(test_path(dir, "ready"), F_OK) != 0;
    if (!*build) {
        close(*lock);
        return dir;
    }
    test_remove_tree(dir);
    cr_assert(mkdir(dir, 0755) == 0, "cannot make %s", dir);
    return dir;
}

void test_shared_release(const char *dir, int lock) {
    fclose(xfopen(test_path(dir, "ready"), "w"));
    close(lock);
}

void test_shared_remove(const char *name) {
    test_remove_tree(shared_path(name, (int)getpid(), ""));
    if (!getenv("QAT_TEST_KEEP")) unlink(shared_path(name, (int)getpid(), ".lock"));
}

static void remove_tmpdirs(void) {
    if (getpid() != tmpdir_owner) return;
    for (size_t i = 0; i < n_tmpdirs; i++) test_remove_tree(tmpdirs[i]);
}

char *test_tmpdir(void) {
    char *t = xstrdup("/tmp/qat-test-XXXXXX");
    if (!mkdtemp(t)) {
        perror("mkdtemp");
        abort();
    }
    if (tmpdir_owner != getpid()) { /* the first in this process */
        tmpdir_owner = getpid();
        n_tmpdirs = 0;
        atexit(remove_tmpdirs);
    }
    tmpdirs = xrealloc(tmpdirs, (n_tmpdirs + 1) * sizeof *tmpdirs);
    tmpdirs[n_tmpdirs++] = t;
    return test_keep(t);
}

char *test_write(const char *dir, const char *name, const char *text) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    FILE *f = xfopen(p, "wb");
    fputs(text, f);
    fclose(f);
    return test_keep(p);
}

char *test_corpus(size_t n, uint64_t seed) {
    static const char *words[] = {"the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to",
                                  "her", "hat", "with", "big", "red", "sun", "in", "old", "town", "rain"};
    enum { NW = sizeof words / sizeof words[0] };
    Rng r;
    rng_seed(&r, seed);
    char *s = xmalloc(n + 16);
    size_t k = 0;
    int w = 0;
    while (k < n) {
        /* each word strongly prefers two successors: learnable structure */
        int nxt = rng_uniform(&r) < 0.8f ? (w * 7 + 3 + (int)rng_below(&r, 2)) % NW : (int)rng_below(&r, NW);
        const char *t = words[nxt];
        size_t l = strlen(t);
        if (k + l + 1 >= n) break;
        memcpy(s + k, t, l);
        k += l;
        s[k++] = rng_below(&r, 8) == 0 ? '\n' : ' ';
        w = nxt;
    }
    s[k] = '\0';
    return test_keep(s);
}

int test_run_qat(const char *args, char *err, size_t n) {
    const char *bin = getenv("QAT_BINARY_DIR");
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s/qat %s 2>&1 >/dev/null", bin ? bin : "./build", args);
    FILE *p = popen(cmd, "r");
    size_t k = 0;
    if (n) err[0] = '\0';
    if (p) {
        size_t got;
        while (k + 1 < n && (got = fread(err + k, 1, n - 1 - k, p)) > 0) k += got;
        err[k] = '\0';
        char sink[256];
        while (fread(sink, 1, sizeof sink, p) > 0) {
        }
    }
    int st = p ? pclose(p) : -1;
    return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

void test_expect_qat(const char *args, int status, const char *want1, const char *want2) {
    char err[4096];
    int st = test_run_qat(args, err, sizeof err);
    cr_assert_eq(st, status, "exit %d (want %d) for: qat %s\nstderr: %s", st, status, args, err);
    if (!want1) return;
    cr_assert(strstr(err, want1), "'%s' missing from: %s", want1, err);
    if (want2) cr_assert(strstr(err, want2), "'%s' missing from: %s", want2, err);
    char *nl = strchr(err, '\n');
    cr_assert(nl && nl[1] == '\0', "not one line: %s", err);
}

void test_train_tiny(const char *corpus, const char *out_dir, int iters, int eval_batches, const char *extra) {
    char yaml[8192];
    snprintf(yaml, sizeof yaml,
             "model: {n_layer: 2, n_head: 2, n_embd: 32, block_size: 16}\n"
             "data: {path: %s}\n"
             "train: {batch_size: 8, iters: %d, lr: 1e-2, min_lr: 1e-3, warmup_iters: 5, eval_every: 1000,"
             " eval_batches: %d, threads: 2}\n"
             "%s"
             "out_dir: %s\n",
             corpus, iters, eval_batches, extra, out_dir);
    Config c;
    config_defaults(&c);
    config_load_string(&c, yaml, out_dir);
    TrainOptions o = {.quiet = true};
    train_run(&c, out_dir, &o);
}

bool test_check_layout(const char *model, const char *source, char *out, size_t n) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/check_model_layout.py %s %s 2>&1", getenv("QAT_SOURCE_DIR"),
             model, source);
    FILE *p = popen(cmd, "r");
    size_t k = p ? fread(out, 1, n - 1, p) : 0;
    out[k] = '\0';
    int st = p ? pclose(p) : -1;
    return st == 0 && strstr(out, "layout ok") != NULL;
}

char *test_slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    char *b = xmalloc((size_t)len + 1);
    size_t got = fread(b, 1, (size_t)len, f);
    fclose(f);
    b[got] = '\0';
    if (n) *n = got;
    return test_keep(b);
}

void test_tiny_config(Config *c, const char *corpus, const char *out, int iters, const char *extra) {
    config_defaults(c);
    char yaml[4096];
    snprintf(yaml, sizeof yaml,
             "model: {n_layer: 1, n_head: 2, n_embd: 32, block_size: 16}\n"
             "data: {path: %s}\n"
             "train: {batch_size: 8, iters: %d, lr: 1e-2, min_lr: 1e-3, warmup_iters: 5, eval_every: 1000,"
             " log_every: 1, threads: 2}\n"
             "out_dir: %s\n%s",
             corpus, iters, out, extra);
    config_load_string(c, yaml, "tiny");
}

static void *ggml_symbol_in(void **lib, const char *file, const char *name) {
    if (!*lib) {
        const char *src = getenv("QAT_SOURCE_DIR");
        char path[4096];
        snprintf(path, sizeof path, "%s/tests/llamacpp/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/%s",
                 src ? src : ".", file);
        *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        cr_assert(*lib, "cannot open llama.cpp's %s (%s): ./quickstart test installs it (npm, tests/llamacpp)", path,
                  dlerror());
    }
    void *f = dlsym(*lib, name);
    cr_assert(f, "%s lacks %s", file, name);
    return f;
}

void *test_ggml_symbol(const char *name) {
    static void *lib;
    return ggml_symbol_in(&lib, "libggml-base.so", name);
}

void *test_ggml_cpu_symbol(const char *name) {
    static void *lib;
    return ggml_symbol_in(&lib, "libggml-cpu-x64.so", name);
}

void *test_ggml_cpu_best_symbol(const char *name, const char **variant) {
    static void *best;
    static const char *best_name;
    static const char *const variants[] = {"x64",        "sse42",       "sandybridge", "ivybridge", "piledriver",
                                           "haswell",    "skylakex",    "cannonlake",  "cascadelake", "cooperlake",
                                           "icelake",    "alderlake",   "zen4",        "sapphirerapids"};
    if (!best) {
        int top = 0;
        for (size_t i = 0; i < sizeof variants / sizeof *variants; i++) {
            void *lib = NULL;
            char file[64];
            snprintf(file, sizeof file, "libggml-cpu-%s.so", variants[i]);
            int score = ((int (*)(void))ggml_symbol_in(&lib, file, "ggml_backend_score"))();
            if (score > top) {
                if (best) dlclose(best);
                top = score, best = lib, best_name = variants[i];
            } else {
                dlclose(lib);
            }
        }
        cr_assert(best, "no CPU backend of llama.cpp's package runs on this machine");
        ((void (*)(void))ggml_symbol_in(&best, "", "ggml_cpu_init"))();
    }
    if (variant) *variant = best_name;
    return ggml_symbol_in(&best, "", name);
}

void test_poison_f32(const char *file, const char *ds_name, size_t k, float v) {
    hid_t f = H5Fopen(file, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t ds = H5Dopen2(f, ds_name, H5P_DEFAULT);
    cr_assert(ds >= 0, "%s has no %s", file, ds_name);
    hid_t sp = H5Dget_space(ds);
    size_t n = (size_t)H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    float *w = xmalloc(n * sizeof(float));
    H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, w);
    w[k] = v;
    H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, w);
    int64_t crc = (int64_t)crc32(crc32(0L, Z_NULL, 0), (const Bytef *)w, (uInt)(n * sizeof(float)));
    hid_t a = H5Aopen(ds, "crc32", H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &crc);
    H5Aclose(a);
    free(w);
    H5Dclose(ds);
    H5Fclose(f);
}

char *test_path(const char *dir, const char *name) {
    char *p = xmalloc(strlen(dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", dir, name);
    return test_keep(p);
}

char *test_run(const char *cmd) {
    FILE *p = popen(cmd, "r");
    cr_assert(p, "cannot run %s", cmd);
    size_t cap = 1 << 16, k = 0, got;
    char *out = xmalloc(cap);
    while ((got = fread(out + k, 1, cap - 1 - k, p)) > 0)
        if ((k += got) + 1 >= cap) out = xrealloc(out, cap *= 2);
    out[k] = '\0';
    int st = pclose(p);
    cr_assert_eq(st, 0, "failed (%d): %s\n%s", st, cmd, out);
    return test_keep(out);
}

char *test_qat(const char *args) {
    size_t n = strlen(args) + 4096;
    char *cmd = test_keep(xmalloc(n));
    snprintf(cmd, n, "%s/qat %s", getenv("QAT_BINARY_DIR"), args);
    return test_run(cmd);
}

struct cJSON *test_llama(const char *mode, const char *model, const char *arg, int n) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "node %s/tests/llamacpp/eval.mjs %s %s '%s' %d", getenv("QAT_SOURCE_DIR"), mode, model, arg,
             n);
    char *out = test_run(cmd);
    cJSON *j = cJSON_Parse(out);
    cr_assert(j, "llama.cpp said: %s", out);
    return j;
}
