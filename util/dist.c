/* dist.c: MPI behind dist.h (QAT_MPI), or one rank without it. */
#define _POSIX_C_SOURCE 200809L /* nanosleep, clock_gettime */
#include "util/dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/util.h"

#ifdef QAT_MPI
#include <mpi.h>
#endif

#ifdef QAT_MPI
static double wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
#endif

/* mpirun's environment: Open MPI, PMIx (Open MPI 5, Slurm) or MPICH's PMI. */
static int launched_size(void) {
    const char *keys[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        const char *v = getenv(keys[i]);
        if (v && atoi(v) > 0) return atoi(v);
    }
    return 1;
}

/* A failure before MPI starts, the same on every rank: ranks other than 0
 * leave silently, after rank 0's line (mpirun ends the job at the first exit). */
static void leave_unless_rank0(void) {
    const char *keys[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        if (getenv(keys[i]) && atoi(getenv(keys[i])) != 0) {
            struct timespec pause = {0, 500000000};
            nanosleep(&pause, NULL);
            exit(QAT_EXIT_BADINPUT);
        }
}

void dist_refuse_launch(const char *cmd) {
    int n = launched_size();
    if (n <= 1) return;
    leave_unless_rank0();
    qat_fail("%s: runs in one process; of qat's commands only train runs under mpirun (here -np %d)", cmd, n);
}

#ifdef QAT_MPI
/* Under mpirun: the line (with its rank when not 0), then the whole job ends. */
static void abort_all(const char *msg, void *user) {
    (void)user;
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    /* bad input fails on every rank alike: rank 0's line is the one to see,
     * and its abort ends the others during this pause; a failure of one
     * rank alone still prints after it */
    if (rank) {
        struct timespec pause = {0, 300000000};
        nanosleep(&pause, NULL);
        fprintf(stderr, "qat (rank %d of %d): %s\n", rank, size, msg);
    } else {
        fprintf(stderr, "qat: %s\n", msg);
    }
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, QAT_EXIT_BADINPUT);
    exit(QAT_EXIT_BADINPUT);
}

int dist_init(int *argc, char ***argv) {
    if (launched_size() <= 1) return 1; /* mpirun -np 1 included: the single-process path */
    int provided;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        qat_fail("MPI_Init_thread failed (mpirun started qat, but MPI would not initialize)");
    int size;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    /* a failing collective returns to qat_fail rather than aborting silently */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    if (size > 1) qat_set_error_handler(abort_all, NULL);
    return size;
}

void dist_finalize(void) {
    int on = 0, off = 0;
    MPI_Initialized(&on);
    MPI_Finalized(&off);
    if (on && !off) MPI_Finalize();
}

void dist_attach(Dist *d) {
    memset(d, 0, sizeof *d);
    int on = 0;
    MPI_Initialized(&on);
    d->size = 1;
    if (!on) return;
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->size);
}

static void check(int rc, const char *what) {
    if (rc == MPI_SUCCESS) return;
    char s[MPI_MAX_ERROR_STRING];
    int n = 0;
    MPI_Error_string(rc, s, &n);
    qat_fail("%s failed: %s (a rank of this job is gone or unreachable)", what, s);
}

/* MPI counts are int: large buffers go in chunks */
#define CHUNK ((size_t)1 << 28)

static void reduce(Dist *d, void *x, size_t n, MPI_Datatype t, size_t esz, MPI_Op op, const char *what) {
    if (d->size <= 1) return;
    double t0 = wall();
    for (size_t at = 0; at < n; at += CHUNK) {
        size_t k = n - at < CHUNK ? n - at : CHUNK;
        check(MPI_Allreduce(MPI_IN_PLACE, (char *)x + at * esz, (int)k, t, op, MPI_COMM_WORLD), what);
    }
    d->comm_s += wall() - t0;
}

void dist_sum_f32(Dist *d, float *x, size_t n) { reduce(d, x, n, MPI_FLOAT, 4, MPI_SUM, "MPI_Allreduce (sum)"); }
void dist_sum_f64(Dist *d, double *x, size_t n) { reduce(d, x, n, MPI_DOUBLE, 8, MPI_SUM, "MPI_Allreduce (sum)"); }
void dist_min_f32(Dist *d, float *x, size_t n) { reduce(d, x, n, MPI_FLOAT, 4, MPI_MIN, "MPI_Allreduce (min)"); }
void dist_max_f32(Dist *d, float *x, size_t n) { reduce(d, x, n, MPI_FLOAT, 4, MPI_MAX, "MPI_Allreduce (max)"); }

bool dist_all_equal_u32(Dist *d, uint32_t v) {
    if (d->size <= 1) return true;
    unsigned lo = v, hi = v;
    reduce(d, &lo, 1, MPI_UNSIGNED, 4, MPI_MIN, "MPI_Allreduce (min)");
    reduce(d, &hi, 1, MPI_UNSIGNED, 4, MPI_MAX, "MPI_Allreduce (max)");
    return lo == hi;
}

float *dist_gather_f32(Dist *d, const float *x, size_t n, size_t *total) {
    if (d->size <= 1) {
        float *out = xmalloc((n ? n : 1) * sizeof(float));
        if (n) memcpy(out, x, n * sizeof(float));
        *total = n;
        return out;
    }
    if (n > (size_t)1 << 30) qat_fail("dist_gather_f32: %zu values on one rank, more than MPI_Allgatherv takes", n);
    double t0 = wall();
    int *counts = xmalloc((size_t)d->size * sizeof(int)), *displs = xmalloc((size_t)d->size * sizeof(int));
    int mine = (int)n;
    check(MPI_Allgather(&mine, 1, MPI_INT, counts, 1, MPI_INT, MPI_COMM_WORLD), "MPI_Allgather");
    size_t sum = 0;
    for (int r = 0; r < d->size; r++) {
        if (sum + (size_t)counts[r] > (size_t)1 << 30) qat_fail("dist_gather_f32: more than 2^30 values in all");
        displs[r] = (int)sum, sum += (size_t)counts[r];
    }
    float *out = xmalloc((sum ? sum : 1) * sizeof(float));
    check(MPI_Allgatherv(x, mine, MPI_FLOAT, out, counts, displs, MPI_FLOAT, MPI_COMM_WORLD), "MPI_Allgatherv");
    free(counts), free(displs);
    d->comm_s += wall() - t0;
    *total = sum;
    return out;
}

void dist_barrier(Dist *d) {
    if (d->size <= 1) return;
    check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
}

#else /* no MPI in this build: one rank */

int dist_init(int *argc, char ***argv) {
    (void)argc, (void)argv;
    int n = launched_size();
    if (n > 1) leave_unless_rank0();
    if (n > 1)
        qat_fail("mpirun started %d processes, but this qat was built without MPI: install the Debian packages "
                 "libopenmpi-dev and openmpi-bin and rebuild (cmake finds MPI by itself)", n);
    return 1;
}
void dist_finalize(void) {}
void dist_attach(Dist *d) {
    memset(d, 0, sizeof *d);
    d->size = 1;
}
void dist_sum_f32(Dist *d, float *x, size_t n) { (void)d, (void)x, (void)n; }
void dist_sum_f64(Dist *d, double *x, size_t n) { (void)d, (void)x, (void)n; }
void dist_min_f32(Dist *d, float *x, size_t n) { (void)d, (void)x, (void)n; }
void dist_max_f32(Dist *d, float *x, size_t n) { (void)d, (void)x, (void)n; }
bool dist_all_equal_u32(Dist *d, uint32_t v) { return (void)d, (void)v, true; }
float *dist_gather_f32(Dist *d, const float *x, size_t n, size_t *total) {
    (void)d;
    float *out = xmalloc((n ? n : 1) * sizeof(float));
    if (n) memcpy(out, x, n * sizeof(float));
    *total = n;
    return out;
}
void dist_barrier(Dist *d) { (void)d; }

#endif
