/* util.h: checked helpers shared by every module: allocation, files, errors,
 * a bump arena for per-step memory, and a small seeded RNG.
 * Library code reports bad input through qat_fail(), which calls the installed
 * error handler (default: print one line to stderr and exit 2). Tests install a
 * handler that longjmps back so the message itself can be asserted. */
#ifndef QAT_UTIL_H
#define QAT_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- errors ---- */
typedef void (*qat_error_fn)(const char *msg, void *user);
/* Formats one line and hands it to the current handler; never returns. */
_Noreturn void qat_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Returns the previous handler. A handler must not return (exit or longjmp). */
qat_error_fn qat_set_error_handler(qat_error_fn fn, void *user);
/* Runs fn(ctx) with a handler that catches qat_fail: true when fn returned,
 * false (the message in msg[n]) when it failed. The caller frees what fn
 * left behind and usually fails again with the message, so that loaders
 * release their resources on bad input (the fuzz targets run millions). */
bool qat_try(void (*fn)(void *), void *ctx, char *msg, size_t n);
/* Exit status used for bad input (configs, files, shapes). */
#define QAT_EXIT_BADINPUT 2

/* ---- checked allocation and files ---- */
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
/* snprintf into dst[n] that fails naming what when the result does not fit
 * (paths built from config values, which would otherwise be cut silently). */
void xsnprintf(char *dst, size_t n, const char *what, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
FILE *xfopen(const char *path, const char *mode);
/* Fails with one line unless path names a regular file (not a directory,
 * device, FIFO or socket), before anything opens it. */
/* zlib's CRC-32 of a file's bytes (0 for an empty file); fails naming it when unreadable. */
uint32_t util_file_crc32(const char *path);
/* True when a and b name the same existing file (device and inode). */
bool util_same_file(const char *a, const char *b);
void util_require_regular(const char *path);
/* Fails when path exists and is not a regular file (outputs never replace
 * devices or directories by rename; a symlink counts as its target), or
 * when its directory does not exist. */
void util_check_output(const char *path);
/* Reads a whole regular file; *len gets its size. The buffer is NUL-terminated. */
char *xread_file(const char *path, size_t *len);
/* mkdir -p; what names the setting in errors. */
void xmkdir_p(const char *dir, const char *what);
/* Writes to path.tmp, fsyncs and renames, so path is whole or untouched; on
 * any failure (a full disk) path.tmp is removed before the error. */
void xwrite_file_atomic(const char *path, const void *data, size_t len);

/* ---- arena: bump allocator reused every step ----
 * Allocations come from chained chunks; arena_reset() coalesces them into one
 * chunk the size of the high-water mark, so after the first step of a loop
 * with fixed shapes no further malloc happens. */
typedef struct ArenaChunk ArenaChunk;
typedef struct Arena {
    ArenaChunk *head;
    size_t used_total; /* bytes handed out since the last reset */
    size_t peak;       /* high-water mark over the arena's life */
    size_t n_chunk_allocs;
} Arena;
void arena_init(Arena *a, size_t initial_bytes);
void *arena_alloc(Arena *a, size_t bytes);  /* 64-byte aligned, uninitialised */
void *arena_calloc(Arena *a, size_t bytes); /* zeroed */
void arena_reset(Arena *a);
void arena_free(Arena *a);

/* ---- RNG: xorshift64* with Box-Muller normals; state is explicit ---- */
typedef struct Rng {
    uint64_t s;
} Rng;
void rng_seed(Rng *r, uint64_t seed);
uint64_t rng_u64(Rng *r);
uint32_t rng_u32(Rng *r);
float rng_uniform(Rng *r);          /* [0,1) */
float rng_normal(Rng *r);           /* N(0,1) */
uint32_t rng_below(Rng *r, uint32_t n); /* uniform in [0,n) */

/* ---- threads ----
 * qat links the OpenMP build of OpenBLAS, so one knob sets both pools and
 * BLAS calls made inside our own parallel regions run on one thread. */
void qat_set_threads(int n);
int qat_get_threads(void);

/* ---- command-line numbers: the whole string, within range, else one line naming opt ---- */
long util_parse_long(const char *opt, const char *s, long lo, long hi);
float util_parse_float(const char *opt, const char *s, float lo);

/* ---- time ---- */
double now_seconds(void);

#endif
