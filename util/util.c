/* util.c: error reporting, checked allocation and file helpers, time, threads. */
#define _POSIX_C_SOURCE 200809L
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <omp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>
#include <time.h>
#include <unistd.h>

static void default_error(const char *msg, void *user) {
    (void)user;
    fprintf(stderr, "qat: %s\n", msg);
    fflush(stderr);
    exit(QAT_EXIT_BADINPUT);
}

/* The handler is process-wide by nature, like a signal handler. */
static qat_error_fn g_error_fn = default_error;
static void *g_error_user = NULL;

qat_error_fn qat_set_error_handler(qat_error_fn fn, void *user) {
    qat_error_fn old = g_error_fn;
    g_error_fn = fn ? fn : default_error;
    g_error_user = user;
    return old;
}

typedef struct Trap {
    jmp_buf jb;
    char *msg;
    size_t n;
} Trap;

static void trap_handler(const char *msg, void *user) {
    Trap *t = user;
    if (t->n) snprintf(t->msg, t->n, "%s", msg);
    longjmp(t->jb, 1);
}

bool qat_try(void (*fn)(void *), void *ctx, char *msg, size_t n) {
    qat_error_fn old_fn = g_error_fn;
    void *old_user = g_error_user;
    Trap *t = xmalloc(sizeof *t); /* not an automatic: it must survive the longjmp intact */
    t->msg = msg, t->n = n;
    if (n) msg[0] = '\0';
    g_error_fn = trap_handler, g_error_user = t;
    bool ok = true;
    if (setjmp(t->jb) == 0)
        fn(ctx);
    else
        ok = false;
    g_error_fn = old_fn, g_error_user = old_user;
    free(t);
    return ok;
}

void qat_fail(const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    g_error_fn(buf, g_error_user);
    abort(); /* a handler that returns is a bug */
}

static _Noreturn void die_oom(size_t n) {
    fprintf(stderr, "qat: out of memory allocating %zu bytes\n", n);
    exit(1);
}

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) die_oom(n);
    return p;
}

void *xcalloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) die_oom(count * size);
    return p;
}

void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) die_oom(n);
    return q;
}

char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = xmalloc(n);
    memcpy(d, s, n);
    return d;
}

void xsnprintf(char *dst, size_t n, const char *what, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(dst, n, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= n) qat_fail("%s: longer than %zu characters", what, n - 1);
}

FILE *xfopen(const char *path, const char *mode) {
    FILE *f = fopen(path, mode);
    if (!f) qat_fail("%s: cannot open: %s", path, strerror(errno));
    return f;
}

uint32_t util_file_crc32(const char *path) {
    FILE *f = xfopen(path, "rb");
    static const size_t CH = 1 << 20;
    unsigned char *buf = xmalloc(CH);
    uLong c = crc32(0L, Z_NULL, 0);
    size_t n;
    while ((n = fread(buf, 1, CH, f)) > 0) c = crc32(c, buf, (uInt)n);
    bool bad = ferror(f);
    fclose(f);
    free(buf);
    if (bad) qat_fail("%s: read failed", path);
    return (uint32_t)c;
}

bool util_same_file(const char *a, const char *b) {
    struct stat x, y;
    return stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino;
}

void util_require_regular(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) qat_fail("%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) qat_fail("%s: is a directory, not a file", path);
    if (!S_ISREG(st.st_mode)) qat_fail("%s: not a regular file (a device, FIFO or socket)", path);
}

void util_check_output(const char *path) {
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        qat_fail("%s: exists and is not a regular file; refusing to replace it", path);
    /* the file goes through PATH.tmp in the same directory: name a missing one up front */
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path) return;
    char dir[4096];
    size_t n = (size_t)(slash - path) < sizeof dir - 1 ? (size_t)(slash - path) : sizeof dir - 1;
    memcpy(dir, path, n);
    dir[n] = '\0';
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        qat_fail("%s: the directory %s does not exist (create it first)", path, dir);
}

char *xread_file(const char *path, size_t *len) {
    /* the type first: opening a FIFO blocks, and a directory or device has no size */
    util_require_regular(path);
    FILE *f = xfopen(path, "rb");
    /* read to EOF rather than trusting st_size, which /proc files report as 0 */
    size_t cap = 1 << 16, n = 0;
    char *buf = xmalloc(cap + 1);
    for (;;) {
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (n < cap) break;
        buf = xrealloc(buf, (cap *= 2) + 1);
    }
    if (ferror(f)) qat_fail("%s: read failed: %s", path, strerror(errno));
    fclose(f);
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

void xwrite_file_atomic(const char *path, const void *data, size_t len) {
    util_check_output(path);
    size_t n = strlen(path);
    char *tmp = xmalloc(n + 5);
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".tmp", 5);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) qat_fail("%s: cannot write: %s", tmp, strerror(errno));
    /* write(2) directly: a full disk is seen here, not in a later buffered flush */
    const char *p = data;
    size_t left = len;
    while (left) {
        ssize_t k = write(fd, p, left);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            int e = k < 0 ? errno : ENOSPC;
            close(fd);
            unlink(tmp);
            qat_fail("%s: write failed: %s (%s is unchanged)", tmp, strerror(e), path);
        }
        p += k, left -= (size_t)k;
    }
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        qat_fail("%s: flush failed: %s (%s is unchanged)", tmp, strerror(e), path);
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        qat_fail("%s: rename failed: %s", path, strerror(e));
    }
    free(tmp);
}

void qat_set_threads(int n) {
    if (n < 1) n = 1;
    omp_set_num_threads(n);
    /* The OpenMP build of OpenBLAS reads the same OpenMP setting. */
}

int qat_get_threads(void) { return omp_get_max_threads(); }

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

long util_parse_long(const char *opt, const char *s, long lo, long hi) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi) qat_fail("%s: expected an integer in [%ld, %ld], got '%s'", opt, lo, hi, s);
    return v;
}

float util_parse_float(const char *opt, const char *s, float lo) {
    char *end;
    float v = strtof(s, &end);
    if (end == s || *end || !(v >= lo)) qat_fail("%s: expected a number >= %g, got '%s'", opt, lo, s);
    return v;
}

void xmkdir_p(const char *dir, const char *what) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) qat_fail("%s: cannot create %s: %s", what, buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) qat_fail("%s: cannot create %s: %s", what, buf, strerror(errno));
}
