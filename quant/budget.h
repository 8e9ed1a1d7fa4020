/* budget.h: budgeted mixed precision on plain arrays. Each layer has a few
 * candidate formats (bits, group), each with a size in bits (codes plus
 * scales) and a measured sensitivity (the loss increase when that layer
 * alone is quantized so); the solver picks one candidate per layer that
 * minimises the summed sensitivity within a size budget: a multiple-choice
 * knapsack, solved exactly by dynamic programming over the size in units of
 * the costs' greatest common divisor (rounded up to a coarser unit only when
 * that would need too many cells, which keeps the result within budget). */
#ifndef QAT_BUDGET_H
#define QAT_BUDGET_H

#include <stdbool.h>
#include <stddef.h>

/* choice[l] in [0, K) for each of L layers minimising sum sens[l*K + choice]
 * subject to sum cost[l*K + choice] <= budget. A candidate with cost < 0 is
 * unavailable for that layer. Returns false when no assignment fits. */
bool budget_solve(int L, int K, const double *cost, const double *sens, double budget, int *choice);

#endif
