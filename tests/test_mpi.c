#define _DEFAULT_SOURCE /* usleep */
/* test_mpi.c: data-parallel training under mpirun -np 2 (Open MPI) against
 * the same run in one process: float, int4 LSQ QAT fine-tuning and W8A8
 * with static min/max scales; resume across rank counts; the ranks'
 * agreement check; a batch that does not divide; other commands refused
 * under mpirun; a rank killed with -9.
 *
 * Why the bounds: a rank sums its slice's weight gradients and MPI_Allreduce
 * adds the slices, where one process sums all tokens in one pass: the same
 * terms in another order, so gradients differ by float rounding (about 1e-7
 * relative) and the losses drift apart slowly; 1e-5 relative over the first
 * 20 steps leaves room for that and none for a real error (a wrong slice or
 * a missing 1/N is off by 1e-2 or more at step 2). Under quantization a
 * weight that rounding moves across a rounding boundary changes its code,
 * so later steps may differ by more; 2e-3 absolute at the end is well under
 * any difference between schemes that qat's tables report. QAT is tested as
 * it is used, fine-tuning a float model at a low learning rate (2e-4: at
 * 5e-4 the first code flips reach 1e-5 by step 17 in the unoptimised build). */
#include <cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

static char *g_dir, *g_cfg, *g_float;
static char g_mpirun[256];

static void setup(void) {
    /* in the sanitizer build the ranks' leak reports need whole stacks to
     * match Open MPI's own leaks (.ci/lsan.supp); the ranks inherit this */
    if (!getenv("ASAN_OPTIONS")) setenv("ASAN_OPTIONS", "fast_unwind_on_malloc=0", 1);
    g_dir = test_tmpdir();
    char text[2048];
    snprintf(text, sizeof text,
             "model: {n_layer: 2, n_head: 2, n_embd: 32, block_size: 32}\n"
             "data: {path: /usr/share/games/fortunes/songs-poems}\n"
             "train: {batch_size: 8, iters: 40, lr: 3.0e-3, min_lr: 3.0e-4, warmup_iters: 5, eval_every: 10, "
             "log_every: 1, threads: 1, seed: 1}\n");
    g_cfg = test_write(g_dir, "mpi.yaml", text);
    /* CI runs as root; two ranks on however many cores there are */
    snprintf(g_mpirun, sizeof g_mpirun, "mpirun --oversubscribe%s -np 2", getuid() == 0 ? " --allow-run-as-root" : "");
    char args[4096];
    g_float = test_path(g_dir, "float");
    snprintf(args, sizeof args, "train %s --set out_dir=%s", g_cfg, g_float);
    test_qat(args);
}
TestSuite(mpi, .init = setup, .timeout = 300);

/* qat train under mpirun -np 2 (stdout kept) */
static char *mpi_train(const char *args) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "cd %s && %s %s/qat train %s", getenv("QAT_SOURCE_DIR"), g_mpirun, getenv("QAT_BINARY_DIR"),
             args);
    return test_run(cmd);
}

typedef struct Run {
    double loss[64], val_end;
    int n;
} Run;

static Run metrics_of(const char *out_dir) {
    Run r = {.n = 0, .val_end = NAN};
    char *p = test_path(out_dir, "metrics.jsonl");
    size_t len;
    char *text = test_slurp(p, &len);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(line);
        cr_assert(o, "%s: not JSON: %s", p, line);
        cJSON *it = cJSON_GetObjectItem(o, "iter"), *l = cJSON_GetObjectItem(o, "loss"), *v = cJSON_GetObjectItem(o, "val_loss");
        if (l && it->valueint < 64) r.loss[it->valueint] = l->valuedouble, r.n = it->valueint > r.n ? it->valueint : r.n;
        if (v) r.val_end = v->valuedouble;
        cJSON_Delete(o);
    }
    free(text);
    return r;
}

static void expect_same_run(const char *what, const Run *a, const Run *b) {
    cr_assert_eq(a->n, 40, "%s: %d steps logged", what, a->n);
    cr_assert_eq(b->n, 40, "%s: %d steps logged", what, b->n);
    for (int i = 1; i <= 20; i++)
        cr_assert(fabs(a->loss[i] - b->loss[i]) <= 1e-5 * fabs(a->loss[i]), "%s, step %d: loss %.7f (1 process) vs %.7f",
                  what, i, a->loss[i], b->loss[i]);
    cr_assert(fabs(a->loss[40] - b->loss[40]) <= 2e-3, "%s: last loss %.6f vs %.6f", what, a->loss[40], b->loss[40]);
    cr_assert(fabs(a->val_end - b->val_end) <= 2e-3, "%s: val_loss %.6f vs %.6f", what, a->val_end, b->val_end);
}

/* the same config in one process and on two ranks; the two-rank run's
 * directory is returned */
static char *compare_layouts(const char *name, const char *extra) {
    char args[4096], one[64], two[64];
    snprintf(one, sizeof one, "%s-1", name), snprintf(two, sizeof two, "%s-2", name);
    char *d1 = test_path(g_dir, one), *d2 = test_path(g_dir, two);
    snprintf(args, sizeof args, "train %s --set out_dir=%s %s", g_cfg, d1, extra);
    test_qat(args);
    snprintf(args, sizeof args, "%s --set out_dir=%s %s", g_cfg, d2, extra);
    mpi_train(args);
    Run a = metrics_of(d1), b = metrics_of(d2);
    expect_same_run(name, &a, &b);
    /* the whole job's figures, rank 0's files */
    size_t len;
    cJSON *s = cJSON_Parse(test_slurp(test_path(d2, "summary.json"), &len));
    cr_assert_eq(cJSON_GetObjectItem(s, "ranks")->valueint, 2);
    cr_assert_eq(cJSON_GetObjectItem(s, "threads")->valueint, 1);
    cr_assert(cJSON_GetObjectItem(s, "comm_ms_per_step")->valuedouble > 0.0);
    cJSON_Delete(s);
    printf("%s: step 20 loss %.7f (1 process) %.7f (2 ranks); val_loss %.6f %.6f\n", name, a.loss[20], b.loss[20],
           a.val_end, b.val_end);
    return d2;
}

/* float training on two ranks is the one-process run; and a two-rank run
 * stopped at 20 resumes on two ranks to the unbroken run's losses exactly
 * (same slices, same sums) and on one process to within the bounds */
Test(mpi, float_training_on_two_ranks_is_one_process_run_and_resumes_on_any_count) {
    char *whole = compare_layouts("float", ""), args[4096];
    char *r2 = test_path(g_dir, "r-2"), *r1 = test_path(g_dir, "r-1");
    snprintf(args, sizeof args, "%s --set out_dir=%s --stop-after 20", g_cfg, r2);
    mpi_train(args);
    snprintf(args, sizeof args, "cp -r %s %s", r2, r1);
    test_run(args);
    snprintf(args, sizeof args, "%s --set out_dir=%s --resume", g_cfg, r2);
    mpi_train(args);
    snprintf(args, sizeof args, "train %s --set out_dir=%s --resume", g_cfg, r1);
    test_qat(args);
    Run w = metrics_of(whole), a = metrics_of(r2), b = metrics_of(r1);
    for (int i = 1; i <= 40; i++)
        cr_assert_eq(a.loss[i], w.loss[i], "resumed on 2 ranks, step %d: %.7f vs %.7f unbroken", i, a.loss[i], w.loss[i]);
    expect_same_run("resumed on 1 process from 2 ranks", &w, &b);
}

Test(mpi, int4_lsq_qat_on_two_ranks_is_one_process_run) {
    char extra[2048];
    snprintf(extra, sizeof extra,
             "--set quant.weight.bits=4 --set quant.weight.granularity=group --set quant.estimator=lsq "
             "--set quant.init_from=%s/checkpoint.h5 --set train.lr=2e-4 --set train.min_lr=2e-5",
             g_float);
    compare_layouts("qat-int4", extra);
}

/* static activation scales: each rank observes its slice, the min/max merge
 * gives exactly one process's scales */
Test(mpi, static_int8_activation_scales_merge_across_ranks) {
    char extra[2048];
    snprintf(extra, sizeof extra,
             "--set quant.weight.bits=8 --set quant.activation.bits=8 --set quant.activation.granularity=tensor "
             "--set quant.calib_batches=4 --set quant.init_from=%s/checkpoint.h5 --set train.lr=2e-4 --set train.min_lr=2e-5",
             g_float);
    compare_layouts("w8a8", extra);
}

static int mpi_status(const char *args, char *err, size_t n) {
    char cmd[8192], *errf = test_path(g_dir, "mpi.err");
    snprintf(cmd, sizeof cmd, "cd %s && %s %s/qat %s >/dev/null 2>%s", getenv("QAT_SOURCE_DIR"), g_mpirun,
             getenv("QAT_BINARY_DIR"), args, errf);
    int st = system(cmd);
    size_t len;
    char *e = test_slurp(errf, &len);
    snprintf(err, n, "%s", e);
    free(e);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(mpi, bad_layouts_and_disagreeing_ranks_stop_the_job) {
    char args[4096], err[8192];
    snprintf(args, sizeof args, "train %s --set out_dir=%s/odd --set train.batch_size=7", g_cfg, g_dir);
    cr_assert_eq(mpi_status(args, err, sizeof err), 2, "%s", err);
    /* one line from qat (mpirun's own MPI_ABORT banner may arrive before or after it: its
     * output and the ranks' are forwarded separately) */
    const char *q = strstr(err, "qat: ");
    cr_assert(q && (q == err || q[-1] == '\n') && !strstr(q + 1, "qat: ") &&
                  strstr(q, "train.batch_size: 7 sequences do not divide among 2 ranks"),
              "%s", err);
    /* rank 1's parameters nudged after the first step: the check at the first evaluation stops the job */
    snprintf(args, sizeof args, "train %s --set out_dir=%s/nudged", g_cfg, g_dir);
    setenv("QAT_TEST_NUDGE_RANK", "1", 1);
    int st = mpi_status(args, err, sizeof err);
    unsetenv("QAT_TEST_NUDGE_RANK");
    cr_assert_eq(st, 2, "%s", err);
    cr_assert(strstr(err, "iter 10: the parameters differ across the 2 ranks"), "%s", err);
    /* other commands run in one process: one line from rank 0, not two copies of the job */
    snprintf(args, sizeof args, "eval %s/checkpoint.h5", g_float);
    cr_assert_eq(mpi_status(args, err, sizeof err), 2, "%s", err);
    /* (mpirun adds its own banner about the exit status) */
    char *line = strstr(err, "qat: eval: runs in one process");
    cr_assert(line && !strstr(line + 1, "qat: eval"), "%s", err);
}

/* The step a checkpoint holds, as qat inspect --json reports it. */
static long ckpt_step(const char *ckpt) {
    char args[4096];
    snprintf(args, sizeof args, "inspect %s --json", ckpt);
    cJSON *j = cJSON_Parse(test_qat(args));
    cr_assert(j, "inspect %s --json", ckpt);
    long step = (long)cJSON_GetObjectItem(cJSON_GetObjectItem(j, "checkpoint"), "step")->valuedouble;
    cJSON_Delete(j);
    return step;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* kill -9 of one rank: mpirun ends the job promptly, the last checkpoint
 * is whole and the run resumes from it */
Test(mpi, a_killed_rank_ends_the_job_and_the_run_resumes) {
    char *d = test_path(g_dir, "killed"), cmd[8192], args[4096];
    snprintf(cmd, sizeof cmd,
             "cd %s && %s %s/qat train %s --set out_dir=%s --set train.iters=1000000 --set train.eval_every=50 "
             "--set train.log_every=1000 > %s/killed.log 2>&1 & echo $!",
             getenv("QAT_SOURCE_DIR"), g_mpirun, getenv("QAT_BINARY_DIR"), g_cfg, d, g_dir);
    int mpirun = atoi(test_run(cmd));
    cr_assert_gt(mpirun, 0);
    char *ckpt = test_path(d, "checkpoint.h5");
    double t0 = now();
    while (access(ckpt, F_OK) != 0 && now() - t0 < 120) usleep(100000);
    cr_assert_eq(access(ckpt, F_OK), 0, "no checkpoint after 120 s");
    usleep(500000);
    /* the ranks are mpirun's children; kill the last */
    snprintf(cmd, sizeof cmd, "pgrep -P %d | tail -1", mpirun);
    int rank = atoi(test_run(cmd));
    cr_assert_gt(rank, 0);
    double tk = now();
    kill(rank, SIGKILL);
    while (kill(mpirun, 0) == 0 && now() - tk < 60) {
        waitpid(mpirun, NULL, WNOHANG);
        usleep(50000);
    }
    double down = now() - tk;
    cr_assert_lt(down, 30.0, "the job still ran %.0f s after a rank was killed", down);
    printf("killed rank %d: job down in %.2f s\n", rank, down);
    long step = ckpt_step(ckpt);
    cr_assert_gt(step, 0);
    snprintf(args, sizeof args, "%s --set out_dir=%s --set train.iters=1000000 --set train.eval_every=50 --resume --stop-after %ld",
             g_cfg, d, step + 20);
    mpi_train(args);
    cr_assert_eq(ckpt_step(ckpt), step + 20, "resumed from step %ld", step);
}
