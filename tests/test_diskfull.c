/* test_diskfull.c: a full disk while qat writes (train's checkpoint, export's
 * model, ptq's output). The run directory is a small tmpfs, filled up to
 * just below what the next file needs; qat must exit 2 with one line, leave
 * the file it would have replaced byte for byte as it was, and leave no
 * temporary file behind. Mounting needs root (CAP_SYS_ADMIN): elsewhere the
 * tests skip with a message. */
#define _DEFAULT_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "testutil.h"

static char *g_dir, *g_mnt, *g_corpus;
static bool g_mounted;

static void setup(void) {
    g_dir = test_tmpdir();
    g_corpus = test_write(g_dir, "corpus.txt", test_corpus(30000, 3));
    g_mnt = xmalloc(strlen(g_dir) + 8);
    sprintf(g_mnt, "%s/full", g_dir);
    test_keep(g_mnt);
    mkdir(g_mnt, 0755);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "mount -t tmpfs -o size=4m qat-test %s 2>/dev/null", g_mnt);
    g_mounted = getuid() == 0 && system(cmd) == 0;
}

static void teardown(void) {
    if (!g_mounted) return;
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "umount -l %s", g_mnt);
    if (system(cmd) != 0) fprintf(stderr, "test_diskfull: could not unmount %s\n", g_mnt);
}

TestSuite(diskfull, .init = setup, .fini = teardown);

static void need_mount(void) {
    if (!g_mounted) cr_skip_test("cannot mount a tmpfs here (needs root); the full-disk tests are skipped");
}

static char *in(const char *dir, const char *name) {
    char *p = xmalloc(strlen(dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", dir, name);
    return test_keep(p);
}

/* Fills the tmpfs so that about `left` bytes stay free. */
static void fill_leaving(size_t left) {
    struct statvfs vs;
    cr_assert_eq(statvfs(g_mnt, &vs), 0);
    size_t freeb = (size_t)vs.f_bavail * vs.f_frsize;
    cr_assert(freeb > left, "only %zu bytes free", freeb);
    FILE *f = fopen(in(g_mnt, "filler"), "wb");
    cr_assert(f);
    static char zeros[65536];
    size_t want = freeb - left;
    while (want) {
        size_t k = want < sizeof zeros ? want : sizeof zeros;
        if (fwrite(zeros, 1, k, f) != k) break;
        want -= k;
    }
    fclose(f);
}

static void unfill(void) { unlink(in(g_mnt, "filler")); }

/* No *.tmp anywhere under dir. */
static void no_tmp_files(const char *dir) {
    DIR *d = opendir(dir);
    cr_assert(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        cr_assert(!(n > 4 && !strcmp(e->d_name + n - 4, ".tmp")), "temporary file left: %s/%s", dir, e->d_name);
    }
    closedir(d);
}

static size_t file_size(const char *path) {
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "%s is missing", path);
    return (size_t)st.st_size;
}

static void run(const char *args, int want_status, const char *want_msg) {
    test_expect_qat(args, want_status, want_msg, NULL);
}

static char *config(const char *out, const char *extra) {
    char yaml[8192];
    snprintf(yaml, sizeof yaml,
             "model: {n_layer: 1, n_head: 2, n_embd: 32, block_size: 16}\n"
             "data: {path: %s}\n"
             "train: {batch_size: 8, iters: 10, eval_every: 5, log_every: 1, threads: 2}\n"
             "out_dir: %s\n%s",
             g_corpus, out, extra);
    char name[64];
    static int k;
    snprintf(name, sizeof name, "c%d.yaml", k++);
    return test_write(g_dir, name, yaml);
}

Test(diskfull, train_keeps_the_last_checkpoint_and_resumes) {
    need_mount();
    char *out = in(g_mnt, "run"), *cfg = config(out, ""), args[4096];
    snprintf(args, sizeof args, "train %s --stop-after 5", cfg);
    run(args, 0, NULL);
    char *ck = in(out, "checkpoint.h5");
    size_t n;
    char *before = test_slurp(ck, &n);
    fill_leaving(n / 2); /* the step-10 checkpoint cannot fit */
    snprintf(args, sizeof args, "train %s --resume", cfg);
    run(args, 2, "checkpoint.h5.tmp: cannot write");
    size_t m;
    char *after = test_slurp(ck, &m);
    cr_assert(m == n && !memcmp(before, after, n), "the step-5 checkpoint changed");
    no_tmp_files(out);
    /* room again: the kept checkpoint resumes to the end */
    unfill();
    run(args, 0, NULL);
    cr_assert(file_size(ck) > 0);
}

Test(diskfull, export_and_ptq_keep_the_file_they_would_replace) {
    need_mount();
    /* the models live outside the tmpfs; only the outputs go there */
    char *fdir = in(g_dir, "float"), args[4096];
    snprintf(args, sizeof args, "train %s", config(fdir, ""));
    run(args, 0, NULL);
    char *fck = in(fdir, "checkpoint.h5"), *qdir = in(g_dir, "qat"), extra[4096];
    snprintf(extra, sizeof extra, "quant: {weight: {bits: 8, granularity: channel}, init_from: %s}\n", fck);
    snprintf(args, sizeof args, "train %s", config(qdir, extra));
    run(args, 0, NULL);
    char *model = in(g_mnt, "model.h5"), *ptq = in(g_mnt, "ptq.h5");
    snprintf(args, sizeof args, "export %s -o %s", in(qdir, "checkpoint.h5"), model);
    run(args, 0, NULL);
    snprintf(args, sizeof args, "ptq %s --method rtn --bits 8 --group channel -o %s", fck, ptq);
    run(args, 0, NULL);
    size_t nm, np;
    char *mb = test_slurp(model, &nm), *pb = test_slurp(ptq, &np);
    fill_leaving(nm / 4 < np / 4 ? nm / 4 : np / 4);
    snprintf(args, sizeof args, "export %s -o %s", in(qdir, "checkpoint.h5"), model);
    run(args, 2, "model.h5.tmp: cannot write");
    snprintf(args, sizeof args, "ptq %s --method rtn --bits 8 --group channel -o %s", fck, ptq);
    run(args, 2, "ptq.h5.tmp: cannot write");
    size_t m;
    char *now = test_slurp(model, &m);
    cr_assert(m == nm && !memcmp(now, mb, nm), "the earlier export changed");
    now = test_slurp(ptq, &m);
    cr_assert(m == np && !memcmp(now, pb, np), "the earlier ptq output changed");
    no_tmp_files(g_mnt);
}
