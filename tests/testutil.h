/* testutil.h: helpers for the Criterion suite: a central-difference gradient
 * checker over any op graph, and capture of qat_fail() messages. */
#ifndef QAT_TESTUTIL_H
#define QAT_TESTUTIL_H

#include <stdbool.h>

#include "autograd/autograd.h"

typedef struct GcInput {
    const char *name;
    int ndim;
    int shape[TENSOR_MAX_DIMS];
    bool grad;      /* check the gradient of this input */
    float lo, hi;   /* uniform init range; both 0 means [-1,1] */
} GcInput;

typedef Tensor *(*GcBuild)(Tape *t, Tensor **in, void *ctx);

typedef struct GcResult {
    double worst;       /* max |num-ana| / (atol + rtol*max(|num|,|ana|)); <= 1 passes */
    double max_abs_err;
    size_t checked;
} GcResult;

/* Builds the graph once for analytic grads of L = sum(out * R) (R fixed random),
 * then perturbs every element of every grad input by +-h and compares. */
GcResult gradcheck(GcBuild f, void *ctx, int nin, const GcInput *spec, uint64_t seed, float h, float atol, float rtol);

/* Runs fn(ctx); if it calls qat_fail, returns true with the message in msg. */
bool capture_failure(void (*fn)(void *), void *ctx, char *msg, size_t n);

/* Path of the shared corpus, or NULL when ../shared is not there. */
const char *test_corpus_path(void);



/* Keeps p reachable until exit (test helpers' strings live for a whole test
 * binary; a registry keeps LeakSanitizer's report for real leaks). */
void *test_keep(void *p);
/* A fresh directory under /tmp (malloc'd path), removed with everything in
 * it when the process that made it exits, unless QAT_TEST_KEEP is set. */
char *test_tmpdir(void);
/* Removes path and everything under it (unless QAT_TEST_KEEP is set). */
void test_remove_tree(const char *path);
/* Files shared by the tests of one run: Criterion forks each test from one
 * runner, so /tmp/qat-test-NAME-<runner pid> is the run's. test_shared_claim
 * returns that directory (malloc'd) with *build set when the caller is the
 * first (it then holds *lock, makes the files and calls
 * test_shared_release); otherwise the files are ready. Tests running in
 * parallel wait for the first. test_shared_remove(NAME), from the runner's
 * ReportHook(POST_ALL), removes them after the last test. */
char *test_shared_claim(const char *name, bool *build, int *lock);
void test_shared_release(const char *dir, int lock);
void test_shared_remove(const char *name);
/* Runs a shell command; its stdout (kept). The test fails on a non-zero exit. */
char *test_run(const char *cmd);
/* The build's qat with args; its stdout. */
char *test_qat(const char *args);
/* llama.cpp's view through tests/llamacpp/eval.mjs MODE MODEL 'ARG' N: its
 * JSON line, parsed (cJSON_Delete it). */
struct cJSON *test_llama(const char *mode, const char *model, const char *arg, int n);
/* DIR/NAME (kept). */
char *test_path(const char *dir, const char *name);
/* Writes text to dir/name; returns the malloc'd path. */
char *test_write(const char *dir, const char *name, const char *text);
/* A learnable synthetic corpus of about n bytes (word-level Markov text). */
char *test_corpus(size_t n, uint64_t seed);
/* Runs the qat binary with args via the shell; returns its exit status and
 * puts its stderr in err. */
int test_run_qat(const char *args, char *err, size_t n);
/* Runs qat ARGS and asserts its exit status; with want1 (and want2) also
 * that stderr is exactly one line holding them. */
void test_expect_qat(const char *args, int status, const char *want1, const char *want2);
/* tests/check_model_layout.py (python3-h5py) on an exported model and the
 * checkpoint it came from; true when it reports the layout ok (its output in out). */
bool test_check_layout(const char *model, const char *source, char *out, size_t n);
/* Trains the suite's tiny GPT (2 layers, 2 heads, width 32, context 16,
 * batch 8, lr 1e-2 to 1e-3) on corpus for iters steps into out_dir, quietly;
 * extra is more YAML (a quant section, say) or "". */
void test_train_tiny(const char *corpus, const char *out_dir, int iters, int eval_batches, const char *extra);
struct Config;
/* The suite's 1-layer config (2 heads, width 32, context 16, batch 8, lr 1e-2
 * to 1e-3) on corpus for iters steps into out, plus extra YAML (a quant
 * section, say) or "". */
void test_tiny_config(struct Config *c, const char *corpus, const char *out, int iters, const char *extra);
/* Bytes of a file (malloc'd), for before/after comparisons. */
char *test_slurp(const char *path, size_t *n);
/* Sets element k of a float dataset of an HDF5 file to v and rewrites the
 * dataset's crc32 attribute to match: a value only the loader's checks can refuse. */
void test_poison_f32(const char *file, const char *ds_name, size_t k, float v);
/* A symbol of llama.cpp's real libggml-base.so (the npm package
 * @node-llama-cpp/linux-x64 3.21.1 that ./quickstart test installs into
 * tests/llamacpp), opened once; fails the test when it is missing. */
void *test_ggml_symbol(const char *name);
/* The same in its baseline CPU backend, libggml-cpu-x64.so. */
void *test_ggml_cpu_symbol(const char *name);
/* The same in the CPU backend llama.cpp loads on this machine: of the
 * package's variants (x64, sse42, haswell, skylakex, zen4, ...), the one whose
 * ggml_backend_score is highest, as ggml's loader chooses; its name in *variant. */
void *test_ggml_cpu_best_symbol(const char *name, const char **variant);
typedef size_t (*GgmlQuantizeChunk)(int type, const float *src, void *dst, int64_t start, int64_t nrows,
                                    int64_t n_per_row, const float *imatrix);

#endif
