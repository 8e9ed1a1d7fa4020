/* test_kill.c: training survives kill -9 at any moment. A run with a
 * checkpoint every 2 steps is killed with SIGKILL at random moments (and its
 * resume is killed again), then resumed to the end; after every kill the
 * checkpoint must load, and at the end the weights must equal an unbroken
 * run's bit for bit, and metrics.jsonl must hold every step's line exactly
 * once with the unbroken run's losses. Once for float training and once for
 * QAT with LSQ scales and static activation observers still calibrating
 * when the first checkpoints are written. */
#define _DEFAULT_SOURCE
#include <criterion/criterion.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "format/checkpoint.h"
#include "train/trainer.h"

#define ITERS 30
#define TRIALS 20

static char *g_dir, *g_corpus;
static void setup(void) {
    g_dir = test_tmpdir();
    g_corpus = test_write(g_dir, "corpus.txt", test_corpus(30000, 11));
}
TestSuite(kill, .init = setup, .timeout = 600);

static char *in(const char *dir, const char *name) {
    char *p = xmalloc(strlen(dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", dir, name);
    return test_keep(p);
}

/* Starts qat with argv (NULL-terminated after "qat"), output discarded. */
static pid_t spawn(char *const *args) {
    const char *bin = getenv("QAT_BINARY_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/qat", bin ? bin : "./build");
    pid_t pid = fork();
    if (pid == 0) {
        freopen("/dev/null", "w", stdout);
        freopen("/dev/null", "w", stderr);
        execv(path, args);
        _exit(127);
    }
    return pid;
}

/* Runs qat to its end; returns the exit status. */
static int run_to_end(char *const *args) {
    int st;
    waitpid(spawn(args), &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Runs qat and kills it with SIGKILL after delay seconds; true if it was
 * killed (false when it had already finished). */
static bool run_and_kill(char *const *args, double delay) {
    pid_t pid = spawn(args);
    struct timespec ts = {(time_t)delay, (long)((delay - (double)(time_t)delay) * 1e9)};
    nanosleep(&ts, NULL);
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) {
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "qat failed before the kill");
        return false;
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return WIFSIGNALED(st);
}

/* The weights of a checkpoint, concatenated (malloc'd); *n floats. */
static float *weights_of(const char *ckpt, size_t *n) {
    GPT g;
    Config c;
    Vocab v;
    model_load(ckpt, &g, &c, &v);
    float *w = xmalloc(g.params.numel * sizeof(float));
    size_t off = 0;
    for (int i = 0; i < g.params.n; i++) {
        memcpy(w + off, g.params.list[i]->data, g.params.list[i]->numel * sizeof(float));
        off += g.params.list[i]->numel;
    }
    *n = off;
    gpt_free(&g);
    return w;
}

/* "iter N ... loss X" of each metrics line as a canonical string per line,
 * tokens_per_s left out (it is a timing). */
static char *metrics_core(const char *path) {
    char *text = test_slurp(path, NULL);
    cr_assert(text, "no %s", path);
    size_t cap = strlen(text) + 1, k = 0;
    char *out = xmalloc(cap);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char *tps = strstr(line, "\"tokens_per_s\":");
        size_t head = tps ? (size_t)(tps - line) : strlen(line);
        memcpy(out + k, line, head);
        k += head;
        if (tps) {
            const char *rest = strchr(tps, ',');
            if (!rest) rest = strchr(tps, '}');
            size_t rl = strlen(rest);
            memcpy(out + k, rest, rl);
            k += rl;
        }
        out[k++] = '\n';
    }
    out[k] = '\0';
    return test_keep(out);
}

/* Every step 1..ITERS once, in order (after an optional iter-0 line). */
static void check_steps(const char *path) {
    char *text = test_slurp(path, NULL);
    long want = 1;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        long it = atol(strstr(line, "\"iter\":") + 7);
        if (it == 0 && want == 1) continue;
        cr_assert_eq(it, want, "%s: step %ld where %ld was due (a gap or a duplicate)", path, it, want);
        want++;
    }
    cr_assert_eq(want, ITERS + 1, "%s ends at step %ld", path, want - 1);
}

static void kill_trials(const char *cfg, const char *tag) {
    /* the unbroken run, and how long it takes */
    char *ref = in(g_dir, tag), set[4096];
    snprintf(set, sizeof set, "out_dir=%s", ref);
    char *a_ref[] = {"qat", "train", (char *)cfg, "--set", set, NULL};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cr_assert_eq(run_to_end(a_ref), 0, "the unbroken run failed");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double dur = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    size_t n_ref;
    float *w_ref = weights_of(in(ref, "checkpoint.h5"), &n_ref);
    char *m_ref = metrics_core(in(ref, "metrics.jsonl"));
    check_steps(in(ref, "metrics.jsonl"));

    Rng rng;
    rng_seed(&rng, 20261201);
    int kills = 0;
    /* trials until TRIALS kills have landed (a kill that comes after the run
     * finished does not count), each one checked in full */
    int trial = 0;
    for (; kills < TRIALS && trial < 3 * TRIALS; trial++) {
        char name[64];
        snprintf(name, sizeof name, "%s-%d", tag, trial);
        char *out = in(g_dir, name), *ckpt = in(out, "checkpoint.h5");
        snprintf(set, sizeof set, "out_dir=%s", out);
        char *a_new[] = {"qat", "train", (char *)cfg, "--set", set, "--overwrite", NULL};
        char *a_res[] = {"qat", "train", (char *)cfg, "--set", set, "--resume", NULL};
        /* kill the first run, then (every other trial) its resume as well */
        for (int round = 0; round < 1 + trial % 2; round++) {
            bool have = access(ckpt, F_OK) == 0;
            /* anywhere in a fresh run; a resume has less left to do */
            double delay = (have ? 0.5 : 0.9) * dur * (double)rng_uniform(&rng);
            if (!run_and_kill(have ? a_res : a_new, delay)) continue;
            kills++;
            if (access(ckpt, F_OK) == 0) { /* whatever moment the kill hit, the checkpoint is whole */
                size_t n;
                free(weights_of(ckpt, &n));
                cr_assert_eq(n, n_ref);
            }
        }
        /* finish: resume when there is a checkpoint, start again otherwise */
        cr_assert_eq(run_to_end(access(ckpt, F_OK) == 0 ? a_res : a_new), 0, "trial %d: finishing failed", trial);
        size_t n;
        float *w = weights_of(ckpt, &n);
        cr_assert(n == n_ref && !memcmp(w, w_ref, n * sizeof(float)), "trial %d: final weights differ from the unbroken run",
                  trial);
        free(w);
        check_steps(in(out, "metrics.jsonl"));
        char *m = metrics_core(in(out, "metrics.jsonl"));
        cr_assert_str_eq(m, m_ref, "trial %d: metrics differ from the unbroken run", trial);
    }
    cr_assert_geq(kills, TRIALS, "only %d kills landed in %d trials", kills, trial);
    cr_log_info("%s: %d kills in %d trials, every resume exact", tag, kills, trial);
    free(w_ref);
}

static char *write_config(const char *name, const char *extra) {
    char yaml[8192];
    snprintf(yaml, sizeof yaml,
             "model: {n_layer: 1, n_head: 2, n_embd: 32, block_size: 16}\n"
             "data: {path: %s}\n"
             "train: {batch_size: 8, iters: %d, lr: 1e-2, min_lr: 1e-3, warmup_iters: 4, eval_every: 2, log_every: 1,"
             " threads: 1}\n" /* one thread: no OpenMP spinning when the machine is shared */
             "%s",
             g_corpus, ITERS, extra);
    return test_write(g_dir, name, yaml);
}

Test(kill, float_training_resumes_exactly_after_any_kill) {
    kill_trials(write_config("float.yaml", ""), "float");
}

Test(kill, qat_with_lsq_and_observers_resumes_exactly_after_any_kill) {
    /* the float model to fine-tune */
    char *fcfg = write_config("base.yaml", ""), set[4096];
    snprintf(set, sizeof set, "out_dir=%s/base", g_dir);
    char *a[] = {"qat", "train", fcfg, "--set", set, "--set", "train.iters=20", NULL};
    cr_assert_eq(run_to_end(a), 0);
    char extra[4096];
    /* observers keep calibrating through step 5: checkpoints 2 and 4 hold their state */
    snprintf(extra, sizeof extra,
             "quant: {weight: {bits: 8, granularity: channel}, estimator: lsq,\n"
             "        activation: {bits: 8, granularity: tensor, observer: percentile, percentile: 99.9},\n"
             "        calib_batches: 2, freeze_step: 5, init_from: %s/base/checkpoint.h5}\n",
             g_dir);
    kill_trials(write_config("qat.yaml", extra), "qat");
}
