/* internal.h: kernels shared by several ops' backward passes (not public API). */
#ifndef QAT_AUTOGRAD_INTERNAL_H
#define QAT_AUTOGRAD_INTERNAL_H

#include <stddef.h>

/* acc[j] += sum over r of src[r*N + j] * (mul ? mul[r*N + j] : 1), for j < N.
 * Threads split the columns and walk rows in memory order, so the loads
 * stream and vectorise (a column-at-a-time loop strides through memory). */
void colsum_add(float *acc, const float *src, const float *mul, size_t R, size_t N);

#endif
