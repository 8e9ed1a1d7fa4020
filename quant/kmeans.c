/* kmeans.c: the tables of kmeans codebooks: one-dimensional weighted k-means
 * (k-means++ seeding, then Lloyd's iterations) over a layer's weights in
 * units of their scales. In one dimension the clusters of sorted centroids
 * are runs of the sorted values, so after one sort each iteration is k
 * binary searches over prefix sums rather than a pass over every weight. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ptq.h"
#include "util/util.h"

typedef struct {
    float u, w;
} Point;

static int point_cmp(const void *a, const void *b) {
    float x = ((const Point *)a)->u, y = ((const Point *)b)->u;
    return (x > y) - (x < y);
}

static int float_cmp(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* First index of the sorted points whose value is >= v. */
static size_t lower_bound(const Point *p, size_t n, float v) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (p[mid].u < v) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* A point drawn with probability proportional to wt[i] * d2[i] (d2 NULL: 1). */
static size_t draw(Rng *rng, const Point *p, const double *d2, size_t n) {
    double total = 0.0;
    for (size_t i = 0; i < n; i++) total += p[i].w * (d2 ? d2[i] : 1.0);
    if (!(total > 0.0)) return rng_below(rng, (uint32_t)(n < UINT32_MAX ? n : UINT32_MAX));
    double r = (double)rng_uniform(rng) * total, acc = 0.0;
    for (size_t i = 0; i < n; i++) {
        acc += p[i].w * (d2 ? d2[i] : 1.0);
        if (acc > r) return i;
    }
    return n - 1;
}

void ptq_kmeans_1d(const float *u, const float *wt, size_t n, int k, uint64_t seed, float *levels) {
    if (n == 0) { /* nothing to fit: evenly spaced levels in [-1, 1] */
        for (int j = 0; j < k; j++) levels[j] = k > 1 ? -1.0f + 2.0f * (float)j / (float)(k - 1) : 0.0f;
        return;
    }
    Point *p = xmalloc(n * sizeof(Point));
    bool any_w = false;
    for (size_t i = 0; i < n; i++) p[i] = (Point){u[i], wt ? wt[i] : 1.0f}, any_w |= p[i].w > 0.0f;
    if (!any_w)
        for (size_t i = 0; i < n; i++) p[i].w = 1.0f;
    qsort(p, n, sizeof(Point), point_cmp);
    /* k-means++: each next centroid drawn by weight x squared distance to the nearest chosen one */
    Rng rng;
    rng_seed(&rng, seed);
    double *d2 = xmalloc(n * sizeof(double));
    float c[256];
    c[0] = p[draw(&rng, p, NULL, n)].u;
    for (size_t i = 0; i < n; i++) d2[i] = (double)(p[i].u - c[0]) * (p[i].u - c[0]);
    for (int j = 1; j < k; j++) {
        c[j] = p[draw(&rng, p, d2, n)].u;
        for (size_t i = 0; i < n; i++) {
            double d = (double)(p[i].u - c[j]) * (p[i].u - c[j]);
            if (d < d2[i]) d2[i] = d;
        }
    }
    free(d2);
    double *W = xmalloc((n + 1) * sizeof(double)), *S = xmalloc((n + 1) * sizeof(double));
    W[0] = S[0] = 0.0;
    for (size_t i = 0; i < n; i++) W[i + 1] = W[i] + p[i].w, S[i + 1] = S[i] + (double)p[i].w * p[i].u;
    /* Lloyd: cluster j is the run between the midpoints to its neighbours
     * (a value on a midpoint goes to the upper level, as quant_level_index
     * rounds); an empty cluster keeps its centroid */
    for (int it = 0; it < 100; it++) {
        qsort(c, (size_t)k, sizeof(float), float_cmp);
        float moved = 0.0f;
        size_t lo = 0;
        float next[256];
        for (int j = 0; j < k; j++) {
            size_t hi = j + 1 < k ? lower_bound(p, n, 0.5f * (c[j] + c[j + 1])) : n;
            if (hi < lo) hi = lo;
            double wsum = W[hi] - W[lo];
            next[j] = wsum > 0.0 ? (float)((S[hi] - S[lo]) / wsum) : c[j];
            moved = fmaxf(moved, fabsf(next[j] - c[j]));
            lo = hi;
        }
        memcpy(c, next, (size_t)k * sizeof(float));
        if (moved < 1e-7f) break;
    }
    qsort(c, (size_t)k, sizeof(float), float_cmp);
    memcpy(levels, c, (size_t)k * sizeof(float));
    free(W), free(S), free(p);
}

void ptq_kmeans_table(const QuantSpec *s, const float *w, int rows, int cols, const float *scale, const float *col_wt,
                      uint64_t seed, float *levels) {
    /* each table's weights are one contiguous run: the matrix, a row, or a
     * scale's group; table t is seeded by seed + t */
    size_t nt = quant_n_tables(s, rows, cols), most = s->tables == QG_TENSOR ? (size_t)rows * cols : (size_t)cols;
    float *u = xmalloc(most * sizeof(float)), *wt = xmalloc(most * sizeof(float));
    int k = 1 << s->bits;
    for (size_t t = 0; t < nt; t++) {
        size_t at = 0, len = (size_t)rows * cols, m = 0;
        if (s->tables == QG_CHANNEL) at = t * (size_t)cols, len = (size_t)cols;
        else if (s->tables == QG_GROUP) quant_run(s, rows, cols, t, &at, &len);
        for (size_t i = at; i < at + len; i++) {
            int r = (int)(i / (size_t)cols), c = (int)(i % (size_t)cols);
            float sc = scale[quant_scale_index(s, cols, r, c)];
            if (!(sc > 0.0f)) continue; /* an all-zero group dequantizes to 0 at any level */
            u[m] = w[i] * (1.0f / sc);
            /* a level's error costs scale^2 in the weight itself (times diag H in the output) */
            wt[m] = sc * sc * (col_wt ? col_wt[c] : 1.0f);
            m++;
        }
        float *lv = levels + t * (size_t)k;
        ptq_kmeans_1d(u, wt, m, k, seed + t, lv);
        for (int j = 0; j < k; j++) lv[j] = quant_table_level(lv[j], k); /* as the table is used */
    }
    free(u), free(wt);
}
