/* budget.c: the multiple-choice knapsack of budget.h. */
#include "budget.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

#define BUDGET_MAX_CELLS 200000 /* size resolution: finer units cost time and memory, not quality */

static uint64_t gcd64(uint64_t a, uint64_t b) {
    while (b) {
        uint64_t t = a % b;
        a = b, b = t;
    }
    return a;
}

bool budget_solve(int L, int K, const double *cost, const double *sens, double budget, int *choice) {
    if (L <= 0) return true;
    if (!(budget >= 0.0)) return false;
    /* the unit: the gcd of the (integer) costs, or budget / BUDGET_MAX_CELLS if coarser */
    uint64_t g = 0;
    bool integral = true;
    for (int i = 0; i < L * K; i++) {
        if (cost[i] < 0.0) continue;
        if (cost[i] != floor(cost[i]) || cost[i] > 9e15) integral = false;
        else g = gcd64(g, (uint64_t)cost[i]);
    }
    double unit = integral && g > 0 ? (double)g : 1.0;
    if (budget / unit > BUDGET_MAX_CELLS) unit = budget / BUDGET_MAX_CELLS;
    size_t U = (size_t)floor(budget / unit + 1e-9); /* capacity in units */
    /* cost in units, rounded up so that a solution in units is within budget */
    size_t *cu = xmalloc((size_t)L * K * sizeof(size_t));
    for (int i = 0; i < L * K; i++) cu[i] = cost[i] < 0.0 ? SIZE_MAX : (size_t)ceil(cost[i] / unit - 1e-9);
    /* best[u]: least sensitivity of layers 0..l using at most u units */
    double *best = xmalloc((U + 1) * sizeof(double)), *next = xmalloc((U + 1) * sizeof(double));
    int8_t *pick = xmalloc((size_t)L * (U + 1));
    if (K > 127) qat_fail("budget: %d candidates per layer, at most 127", K);
    for (size_t u = 0; u <= U; u++) best[u] = 0.0;
    for (int l = 0; l < L; l++) {
        for (size_t u = 0; u <= U; u++) {
            double b = INFINITY;
            int8_t k_best = -1;
            for (int k = 0; k < K; k++) {
                size_t c = cu[(size_t)l * K + k];
                if (c > u || !isfinite(best[u - c])) continue;
                double v = best[u - c] + sens[(size_t)l * K + k];
                if (v < b) b = v, k_best = (int8_t)k;
            }
            next[u] = b;
            pick[(size_t)l * (U + 1) + u] = k_best;
        }
        double *t = best;
        best = next, next = t;
    }
    bool ok = isfinite(best[U]);
    if (ok) /* walk back from the full capacity */
    {
        size_t used = 0;
        for (int l = L - 1; l >= 0; l--) {
            int k = pick[(size_t)l * (U + 1) + (U - used)];
            choice[l] = k;
            used += cu[(size_t)l * K + k];
        }
    }
    free(cu), free(best), free(next), free(pick);
    return ok;
}
