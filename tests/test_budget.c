/* test_budget.c: budgeted mixed precision. The knapsack solver against
 * brute force; the per-layer sensitivities against quantizing each layer by
 * hand; the plan's size within the budget. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/budget.h"
#include "testutil.h"

/* the best assignment by enumeration */
static double brute(int L, int K, const double *cost, const double *sens, double budget, int l, double c, double s) {
    if (l == L) return c <= budget ? s : INFINITY;
    double b = INFINITY;
    for (int k = 0; k < K; k++)
        if (cost[l * K + k] >= 0) b = fmin(b, brute(L, K, cost, sens, budget, l + 1, c + cost[l * K + k], s + sens[l * K + k]));
    return b;
}

Test(budget, solver_equals_brute_force) {
    Rng r;
    rng_seed(&r, 11);
    for (int trial = 0; trial < 300; trial++) {
        int L = 1 + (int)rng_below(&r, 6), K = 1 + (int)rng_below(&r, 4);
        double cost[24], sens[24];
        double lo = 0, hi = 0;
        for (int l = 0; l < L; l++) {
            double cmin = INFINITY, cmax = 0;
            for (int k = 0; k < K; k++) {
                /* sizes as multiples of 32 bits, some candidates unavailable, sensitivities of either sign */
                cost[l * K + k] = rng_below(&r, 9) == 0 ? -1.0 : 32.0 * (1 + rng_below(&r, 40));
                sens[l * K + k] = rng_normal(&r);
                if (cost[l * K + k] >= 0) cmin = fmin(cmin, cost[l * K + k]), cmax = fmax(cmax, cost[l * K + k]);
            }
            if (!isfinite(cmin)) cost[l * K] = 64.0, cmin = cmax = 64.0;
            lo += cmin, hi += cmax;
        }
        double budget = lo + rng_uniform(&r) * (hi - lo) * 1.1 - 0.05 * (hi - lo);
        int choice[6];
        bool ok = budget_solve(L, K, cost, sens, budget, choice);
        double want = brute(L, K, cost, sens, budget, 0, 0, 0);
        cr_assert_eq(ok, isfinite(want), "trial %d: solver %d, brute force %g", trial, ok, want);
        if (!ok) continue;
        double c = 0, s = 0;
        for (int l = 0; l < L; l++) {
            cr_assert(cost[l * K + choice[l]] >= 0, "trial %d: an unavailable candidate was chosen", trial);
            c += cost[l * K + choice[l]], s += sens[l * K + choice[l]];
        }
        cr_assert_leq(c, budget, "trial %d: size %g over the budget %g", trial, c, budget);
        cr_assert(fabs(s - want) < 1e-9, "trial %d: sensitivity %g, the best is %g", trial, s, want);
    }
}

Test(budget, coarse_units_stay_within_budget) {
    /* costs without a useful common divisor: the rounded-up units must never overshoot */
    Rng r;
    rng_seed(&r, 5);
    enum { L = 40, K = 5 };
    double cost[L * K], sens[L * K], lo = 0;
    for (int l = 0; l < L; l++) {
        double m = INFINITY;
        for (int k = 0; k < K; k++) {
            cost[l * K + k] = 1e6 * (1.0 + k) + rng_uniform(&r) * 1e5 + 0.37;
            sens[l * K + k] = 1.0 / (1.0 + k) + 0.01 * rng_uniform(&r);
            m = fmin(m, cost[l * K + k]);
        }
        lo += m;
    }
    int choice[L];
    double budget = lo * 2.3;
    cr_assert(budget_solve(L, K, cost, sens, budget, choice));
    double c = 0;
    for (int l = 0; l < L; l++) c += cost[l * K + choice[l]];
    cr_assert_leq(c, budget);
    cr_assert_gt(c, 0.97 * budget, "a feasible solution with this much room uses it: %g of %g", c, budget);
}
