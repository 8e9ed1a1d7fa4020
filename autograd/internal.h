/* internal.h: kernels shared by several ops' backward passes (not public API). */
#ifndef QAT_AUTOGRAD_INTERNAL_H
#define QAT_AUTOGRAD_INTERNAL_H

#include <stddef.h>

#include "autograd.h"
#include "gemm.h"

/* acc[j] += sum over r of src[r*N + j] * (mul ? mul[r*N + j] : 1), for j < N.
 * Threads split the columns and walk rows in memory order, so the loads
 * stream and vectorise (a column-at-a-time loop strides through memory). */
void colsum_add(float *acc, const float *src, const float *mul, size_t R, size_t N);

/* A workspace of at least n floats, 64-byte aligned, owned by the tape and
 * reused by every call (ops use it for one product at a time). */
float *tape_workspace(Tape *t, size_t n);
/* g on the tape's workspace. */
void tape_gemm(Tape *t, const Gemm *g);

#endif
