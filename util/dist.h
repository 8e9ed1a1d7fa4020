/* dist.h: data parallelism over MPI (Open MPI under mpirun), the one place
 * qat talks to it. A process started without mpirun, or a build without
 * MPI, is rank 0 of 1 and every call below is a no-op that costs nothing,
 * so single-process training is exactly what it was.
 *
 * Ranks hold bit-identical parameters: each runs the forward and backward of
 * its slice of the same global batch, the gradients are summed over the one
 * flat gradient block (MPI_Allreduce), and the same optimizer step follows
 * everywhere. Under mpirun a failure on any rank prints its line and ends
 * the whole job through MPI_Abort (status 2), so no rank waits forever on
 * a peer that is gone. */
#ifndef QAT_DIST_H
#define QAT_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct Dist {
    int rank, size;
    double comm_s; /* seconds spent in collectives since dist_attach */
} Dist;

/* Process start (qat train): MPI_Init when the process runs under mpirun
 * (Open MPI's, MPICH's or PMIx's environment), and an error handler that
 * aborts every rank. Fails in one line when mpirun started a qat built
 * without MPI. Returns the number of ranks. */
int dist_init(int *argc, char ***argv);
/* Commands that run in one process (all but train): under mpirun -np N > 1
 * rank 0 fails naming cmd, the other ranks exit with the same status
 * silently (one line, not N). mpirun's environment tells, MPI never starts. */
void dist_refuse_launch(const char *cmd);
/* Process end: MPI_Finalize when dist_init started MPI. */
void dist_finalize(void);
/* This process's rank and the job's size (rank 0 of 1 without MPI). */
void dist_attach(Dist *d);

/* In-place sums over ranks (every rank gets the same result). */
void dist_sum_f32(Dist *d, float *x, size_t n);
void dist_sum_f64(Dist *d, double *x, size_t n);
/* In-place elementwise min / max over ranks. */
void dist_min_f32(Dist *d, float *x, size_t n);
void dist_max_f32(Dist *d, float *x, size_t n);
/* True on every rank when v is the same on every rank. */
bool dist_all_equal_u32(Dist *d, uint32_t v);
/* Every rank's n_i floats, back to back in rank order (xmalloc'd; *total
 * gets the sum of the n_i). */
float *dist_gather_f32(Dist *d, const float *x, size_t n, size_t *total);
void dist_barrier(Dist *d);

#endif
