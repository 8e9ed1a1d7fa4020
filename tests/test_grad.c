/* test_grad.c: every op's backward against central finite differences, on odd
 * shapes and broadcasting cases.
 *
 * Tolerance: the forward runs in float32 and L = sum(out*R) is accumulated in
 * double. With h = 1e-2 the rounding error of L (about 1e-6 for these sizes)
 * contributes ~1e-4 to the difference quotient and the O(h^2) truncation
 * error is ~1e-5 * |f'''|, so |num - ana| <= 1e-3 + 1e-2 * |grad| leaves a wide
 * margin for a correct backward while a wrong one misses by O(1). */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "testutil.h"

#define H 1e-2f
#define ATOL 1e-3f
#define RTOL 1e-2f

static void check(GcBuild f, void *ctx, int nin, const GcInput *spec) {
    GcResult r = gradcheck(f, ctx, nin, spec, 42, H, ATOL, RTOL);
    cr_assert(r.checked > 0, "nothing was checked");
    cr_assert_leq(r.worst, 1.0, "gradient mismatch: worst ratio %.3g, max abs err %.3g over %zu elements", r.worst,
                  r.max_abs_err, r.checked);
}

/* ---- matmul ---- */
static Tensor *f_matmul(Tape *t, Tensor **in, void *c) { (void)c; return op_matmul(t, in[0], in[1]); }
Test(grad, matmul_2d) {
    GcInput s[] = {{"a", 2, {7, 13}, true}, {"b", 2, {13, 5}, true}};
    check(f_matmul, NULL, 2, s);
}
static Tensor *f_matmul_tt(Tape *t, Tensor **in, void *c) {
    (void)c; /* a^T @ b^T on transposed views exercises the strided paths */
    return op_matmul(t, op_transpose(t, in[0], 0, 1), op_transpose(t, in[1], 0, 1));
}
Test(grad, matmul_transposed_views) {
    GcInput s[] = {{"a", 2, {13, 7}, true}, {"b", 2, {5, 13}, true}};
    check(f_matmul_tt, NULL, 2, s);
}
/* large enough for the blocked kernel (autograd/gemm.c), transposed views included */
Test(grad, matmul_transposed_views_on_the_kernel) {
    GcInput s[] = {{"a", 2, {36, 40}, true}, {"b", 2, {30, 36}, true}};
    check(f_matmul_tt, NULL, 2, s);
}
Test(grad, matmul_batched) {
    GcInput s[] = {{"a", 3, {3, 5, 7}, true}, {"b", 3, {3, 7, 4}, true}};
    check(f_matmul, NULL, 2, s);
}
Test(grad, matmul_batched_by_shared_2d) {
    GcInput s[] = {{"a", 3, {3, 5, 7}, true}, {"b", 2, {7, 4}, true}};
    check(f_matmul, NULL, 2, s);
}
Test(grad, matmul_shared_2d_by_batched) {
    GcInput s[] = {{"a", 2, {5, 7}, true}, {"b", 3, {3, 7, 4}, true}};
    check(f_matmul, NULL, 2, s);
}
static Tensor *f_bmm_t(Tape *t, Tensor **in, void *c) {
    (void)c; /* q @ k^T, the attention-score pattern */
    return op_matmul(t, in[0], op_transpose(t, in[1], 1, 2));
}
Test(grad, matmul_batched_transposed) {
    GcInput s[] = {{"q", 3, {2, 5, 3}, true}, {"k", 3, {2, 6, 3}, true}};
    check(f_bmm_t, NULL, 2, s);
}

/* ---- linear ---- */
static Tensor *f_linear(Tape *t, Tensor **in, void *c) { (void)c; return op_linear(t, in[0], in[1], in[2]); }
static Tensor *f_linear_nobias(Tape *t, Tensor **in, void *c) { (void)c; return op_linear(t, in[0], in[1], NULL); }
Test(grad, linear_3d_with_bias) {
    GcInput s[] = {{"x", 3, {2, 3, 7}, true}, {"w", 2, {5, 7}, true}, {"b", 1, {5}, true}};
    check(f_linear, NULL, 3, s);
}
Test(grad, linear_no_bias) {
    GcInput s[] = {{"x", 2, {9, 11}, true}, {"w", 2, {3, 11}, true}};
    check(f_linear_nobias, NULL, 2, s);
}

/* ---- the fused MLP (GELU in the products' epilogues) ---- */
static Tensor *f_mlp(Tape *t, Tensor **in, void *c) { (void)c; return op_mlp(t, in[0], in[1], in[2], in[3], in[4]); }
Test(grad, mlp_fused) {
    GcInput s[] = {{"x", 3, {2, 3, 7}, true}, {"w1", 2, {12, 7}, true}, {"b1", 1, {12}, true},
                   {"w2", 2, {5, 12}, true}, {"b2", 1, {5}, true}};
    check(f_mlp, NULL, 5, s);
}
/* every product of this one is large enough for the blocked kernel */
Test(grad, mlp_fused_on_the_kernel) {
    GcInput s[] = {{"x", 3, {2, 20, 24}, true}, {"w1", 2, {40, 24}, true}, {"b1", 1, {40}, true},
                   {"w2", 2, {30, 40}, true}, {"b2", 1, {30}, true}};
    check(f_mlp, NULL, 5, s);
}

/* ---- pointwise ---- */
static Tensor *f_add(Tape *t, Tensor **in, void *c) { (void)c; return op_add(t, in[0], in[1]); }
static Tensor *f_mul(Tape *t, Tensor **in, void *c) { (void)c; return op_mul(t, in[0], in[1]); }
Test(grad, add_same_shape) {
    GcInput s[] = {{"a", 2, {5, 7}, true}, {"b", 2, {5, 7}, true}};
    check(f_add, NULL, 2, s);
}
Test(grad, add_bias_broadcast) {
    GcInput s[] = {{"a", 3, {3, 5, 7}, true}, {"b", 1, {7}, true}};
    check(f_add, NULL, 2, s);
}
Test(grad, add_matrix_broadcast) {
    GcInput s[] = {{"a", 3, {3, 5, 7}, true}, {"b", 2, {5, 7}, true}};
    check(f_add, NULL, 2, s);
}
Test(grad, mul_same_shape) {
    GcInput s[] = {{"a", 2, {5, 7}, true}, {"b", 2, {5, 7}, true}};
    check(f_mul, NULL, 2, s);
}
Test(grad, mul_bias_broadcast) {
    GcInput s[] = {{"a", 3, {3, 5, 7}, true}, {"b", 1, {7}, true}};
    check(f_mul, NULL, 2, s);
}
static Tensor *f_scale(Tape *t, Tensor **in, void *c) { (void)c; return op_scale(t, in[0], -1.7f); }
Test(grad, scale) {
    GcInput s[] = {{"a", 2, {5, 7}, true}};
    check(f_scale, NULL, 1, s);
}
static Tensor *f_gelu(Tape *t, Tensor **in, void *c) { (void)c; return op_gelu(t, in[0]); }
Test(grad, gelu) {
    GcInput s[] = {{"x", 2, {9, 13}, true, -3.0f, 3.0f}};
    check(f_gelu, NULL, 1, s);
}
static Tensor *f_residual(Tape *t, Tensor **in, void *c) {
    (void)c; /* x + gelu(x): one tensor used twice, so its grad must accumulate */
    return op_add(t, in[0], op_gelu(t, in[0]));
}
Test(grad, residual_accumulates) {
    GcInput s[] = {{"x", 2, {4, 7}, true, -2.0f, 2.0f}};
    check(f_residual, NULL, 1, s);
}

/* ---- normalisation ---- */
static Tensor *f_layernorm(Tape *t, Tensor **in, void *c) { (void)c; return op_layernorm(t, in[0], in[1], in[2], 1e-5f); }
Test(grad, layernorm) {
    GcInput s[] = {{"x", 3, {2, 3, 11}, true, -2.0f, 2.0f}, {"w", 1, {11}, true, 0.5f, 1.5f}, {"b", 1, {11}, true}};
    check(f_layernorm, NULL, 3, s);
}
/* more rows than the one-thread cutoff: threads sum their rows' weight and
 * bias grads apart, then add them */
Test(grad, layernorm_threads) {
    GcInput s[] = {{"x", 2, {70, 20}, true, -2.0f, 2.0f}, {"w", 1, {20}, true, 0.5f, 1.5f}, {"b", 1, {20}, true}};
    check(f_layernorm, NULL, 3, s);
}
static Tensor *f_softmax(Tape *t, Tensor **in, void *c) { return op_softmax(t, in[0], c != NULL); }
Test(grad, softmax) {
    GcInput s[] = {{"x", 2, {5, 9}, true, -2.0f, 2.0f}};
    check(f_softmax, NULL, 1, s);
}
Test(grad, softmax_causal) {
    GcInput s[] = {{"x", 3, {2, 6, 6}, true, -2.0f, 2.0f}};
    check(f_softmax, (void *)1, 1, s);
}

/* ---- attention ---- */
static Tensor *f_attention(Tape *t, Tensor **in, void *c) { return op_attention(t, in[0], *(int *)c, *(int *)c); }
Test(grad, attention_fused) {
    int nh = 3;
    GcInput s[] = {{"qkv", 3, {2, 7, 3 * 12}, true}};
    check(f_attention, &nh, 1, s);
}
Test(grad, attention_multi_block_with_tail) {
    int nh = 2; /* T = 70: row blocks of 32, 32 and a tail of 6 */
    GcInput s[] = {{"qkv", 3, {1, 70, 3 * 4}, true}};
    check(f_attention, &nh, 1, s);
}
Test(grad, attention_single_head_odd) {
    int nh = 1;
    GcInput s[] = {{"qkv", 3, {1, 5, 3 * 5}, true}};
    check(f_attention, &nh, 1, s);
}

/* head sizes of 16..64 take the register-blocked path (four query rows at a
 * time, 16-key vectors): T not a multiple of 4 or 16, two batches */
Test(grad, attention_blocked_path_hs16) {
    int nh = 2;
    GcInput s[] = {{"qkv", 3, {2, 19, 3 * 32}, true}};
    check(f_attention, &nh, 1, s);
}
Test(grad, attention_blocked_path_hs32) {
    int nh = 1;
    GcInput s[] = {{"qkv", 3, {1, 37, 3 * 32}, true}};
    check(f_attention, &nh, 1, s);
}

/* T a multiple of 16 and of the 4-row blocks, as in the reference model
 * (T = 128): no partial vectors or blocks anywhere */
Test(grad, attention_blocked_path_whole_blocks_hs16) {
    int nh = 2;
    GcInput s[] = {{"qkv", 3, {2, 32, 3 * 32}, true}};
    check(f_attention, &nh, 1, s);
}
Test(grad, attention_blocked_path_whole_blocks_hs32) {
    int nh = 1;
    GcInput s[] = {{"qkv", 3, {1, 48, 3 * 32}, true}};
    check(f_attention, &nh, 1, s);
}

/* The blocked path's output against attention written out in double, at a
 * T with row tails and at one of whole blocks. */
static void attention_against_reference(int T) {
    enum { B = 2, NH = 2, HS = 32, C = NH * HS };
    Tape t;
    tape_init(&t, 1u << 20);
    Tensor *qkv = tensor_new(&t, 3, (int[]){B, T, 3 * C});
    Rng r;
    rng_seed(&r, 9);
    for (size_t i = 0; i < qkv->numel; i++) qkv->data[i] = rng_normal(&r);
    Tensor *o = op_attention(&t, qkv, NH, NH);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < T; i++) {
                const float *q = qkv->data + ((size_t)b * T + i) * 3 * C + h * HS;
                double sc[T], mx = -1e300, sum = 0;
                for (int j = 0; j <= i; j++) {
                    const float *k = qkv->data + ((size_t)b * T + j) * 3 * C + C + h * HS;
                    double d = 0;
                    for (int e = 0; e < HS; e++) d += (double)q[e] * k[e];
                    sc[j] = d / sqrt((double)HS);
                    mx = sc[j] > mx ? sc[j] : mx;
                }
                for (int j = 0; j <= i; j++) sum += (sc[j] = exp(sc[j] - mx));
                for (int e = 0; e < HS; e++) {
                    double ref = 0;
                    for (int j = 0; j <= i; j++) ref += sc[j] / sum * qkv->data[((size_t)b * T + j) * 3 * C + 2 * C + h * HS + e];
                    float got = o->data[((size_t)b * T + i) * C + h * HS + e];
                    cr_assert(fabs(got - ref) <= 1e-5 * (1 + fabs(ref)), "T %d b%d h%d row %d dim %d: %.8g vs %.8g", T, b,
                              h, i, e, got, ref);
                }
            }
    tape_free(&t);
}
Test(grad, attention_blocked_path_matches_reference) {
    attention_against_reference(45);
    attention_against_reference(64);
}

/* ---- grouped-query attention (n_kv_head < n_head): query heads of a group
 * share one kv head, whose grads they add into ---- */
typedef struct { int nh, nkv; } Gqa;
static Tensor *f_gqa(Tape *t, Tensor **in, void *c) {
    const Gqa *g = c;
    return op_attention(t, in[0], g->nh, g->nkv);
}
Test(grad, attention_grouped_query_odd_head) {
    Gqa g = {4, 2}; /* head size 3: the sgemm path, T with a block tail */
    GcInput s[] = {{"qkv", 3, {2, 37, (4 + 2 * 2) * 3}, true}};
    check(f_gqa, &g, 1, s);
}
Test(grad, attention_grouped_query_single_kv_head) {
    Gqa g = {3, 1};
    GcInput s[] = {{"qkv", 3, {1, 9, (3 + 2) * 5}, true}};
    check(f_gqa, &g, 1, s);
}
Test(grad, attention_grouped_query_blocked_path) {
    Gqa g = {4, 2}; /* head size 16: the register-blocked path */
    GcInput s[] = {{"qkv", 3, {2, 19, (4 + 2 * 2) * 16}, true}};
    check(f_gqa, &g, 1, s);
}

/* ---- the Llama ops ---- */
static Tensor *f_rmsnorm(Tape *t, Tensor **in, void *c) { (void)c; return op_rmsnorm(t, in[0], in[1], 1e-5f); }
Test(grad, rmsnorm) {
    GcInput s[] = {{"x", 3, {2, 3, 7}, true}, {"w", 1, {7}, true}};
    check(f_rmsnorm, NULL, 2, s);
}
Test(grad, rmsnorm_threads) {
    GcInput s[] = {{"x", 2, {150, 5}, true}, {"w", 1, {5}, true}};
    check(f_rmsnorm, NULL, 2, s);
}
static Tensor *f_rope(Tape *t, Tensor **in, void *c) {
    const Gqa *g = c; /* theta 100 so that the pairs turn by whole radians over a few positions */
    return op_rope(t, in[0], g->nh, g->nkv, 100.0f);
}
Test(grad, rope_grouped_heads) {
    Gqa g = {3, 1};
    GcInput s[] = {{"qkv", 3, {2, 7, (3 + 2) * 6}, true}};
    check(f_rope, &g, 1, s);
}
static Tensor *f_swiglu(Tape *t, Tensor **in, void *c) { (void)c; return op_swiglu(t, in[0]); }
Test(grad, swiglu_odd_width) {
    GcInput s[] = {{"x", 3, {2, 5, 2 * 43}, true, -4.0f, 4.0f}};
    check(f_swiglu, NULL, 1, s);
}

/* Values: RoPE keeps each pair's length and turns position p's pair i by
 * p * theta^(-2i/hs); position 0 is unchanged; v is untouched. GQA equals
 * multi-head attention with each kv head repeated for its query heads. */
Test(grad, rope_values) {
    enum { T = 5, NH = 2, NKV = 1, HS = 4, C3 = (NH + 2 * NKV) * HS };
    Tape t;
    tape_init(&t, 1u << 16);
    Tensor *x = tensor_new(&t, 3, (int[]){1, T, C3});
    for (size_t i = 0; i < x->numel; i++) x->data[i] = (float)((i * 7) % 11) - 5.0f;
    Tensor *y = op_rope(&t, x, NH, NKV, 10000.0f);
    for (int p = 0; p < T; p++)
        for (int hd = 0; hd < NH + NKV; hd++)
            for (int i = 0; i < HS / 2; i++) {
                const float *a = x->data + p * C3 + hd * HS + 2 * i, *b = y->data + p * C3 + hd * HS + 2 * i;
                double ang = p * pow(10000.0, -2.0 * i / HS);
                double e0 = a[0] * cos(ang) - a[1] * sin(ang), e1 = a[0] * sin(ang) + a[1] * cos(ang);
                cr_assert(fabs(b[0] - e0) < 1e-5 && fabs(b[1] - e1) < 1e-5, "pos %d head %d pair %d", p, hd, i);
            }
    for (int p = 0; p < T; p++)
        for (int c = (NH + NKV) * HS; c < C3; c++) cr_assert_eq(y->data[p * C3 + c], x->data[p * C3 + c]);
    tape_free(&t);
}
Test(grad, grouped_query_equals_repeated_kv) {
    enum { B = 2, T = 6, NH = 4, NKV = 2, HS = 5, C = NH * HS, KV = NKV * HS };
    Tape t;
    tape_init(&t, 1u << 18);
    Tensor *g = tensor_new(&t, 3, (int[]){B, T, C + 2 * KV}), *m = tensor_new(&t, 3, (int[]){B, T, 3 * C});
    Rng r;
    rng_seed(&r, 3);
    for (size_t i = 0; i < g->numel; i++) g->data[i] = rng_normal(&r);
    for (int bt = 0; bt < B * T; bt++) {
        const float *src = g->data + (size_t)bt * (C + 2 * KV);
        float *dst = m->data + (size_t)bt * 3 * C;
        memcpy(dst, src, C * sizeof(float));
        for (int h = 0; h < NH; h++) {
            memcpy(dst + C + h * HS, src + C + (h / (NH / NKV)) * HS, HS * sizeof(float));
            memcpy(dst + 2 * C + h * HS, src + C + KV + (h / (NH / NKV)) * HS, HS * sizeof(float));
        }
    }
    Tensor *a = op_attention(&t, g, NH, NKV), *b = op_attention(&t, m, NH, NH);
    for (size_t i = 0; i < a->numel; i++) cr_assert(fabsf(a->data[i] - b->data[i]) < 1e-6f, "element %zu", i);
    tape_free(&t);
}

/* ---- index ops ---- */
static const int32_t k_idx[] = {3, 0, 3, 5, 1, 3, 2, 0, 4, 5, 5, 1};
static Tensor *f_embedding(Tape *t, Tensor **in, void *c) {
    (void)c;
    return op_embedding(t, in[0], k_idx, 2, (int[]){3, 4});
}
Test(grad, embedding_repeated_ids) {
    GcInput s[] = {{"wte", 2, {6, 5}, true}};
    check(f_embedding, NULL, 1, s);
}
static Tensor *f_xent(Tape *t, Tensor **in, void *c) {
    (void)c;
    return op_cross_entropy(t, in[0], k_idx);
}
Test(grad, cross_entropy) {
    GcInput s[] = {{"logits", 3, {3, 4, 7}, true, -3.0f, 3.0f}};
    check(f_xent, NULL, 1, s);
}

/* distillation: in[1] is the teacher, no gradient; both temperatures, odd V */
static Tensor *f_kl(Tape *t, Tensor **in, void *c) { return op_kl_distill(t, in[0], in[1], *(float *)c); }
Test(grad, kl_distill) {
    for (int k = 0; k < 2; k++) {
        float temp = k ? 2.5f : 1.0f;
        GcInput s[] = {{"logits", 3, {3, 5, 11}, true, -4.0f, 4.0f}, {"teacher", 3, {3, 5, 11}, false, -4.0f, 4.0f}};
        check(f_kl, &temp, 2, s);
    }
}

/* the value: T^2 * mean KL(p_t || p_s), against a double-precision sum */
Test(grad, kl_distill_value) {
    Tape t;
    tape_init(&t, 1 << 20);
    const int R = 6, V = 13;
    Tensor *zs = tensor_new(&t, 2, (int[]){R, V}), *zt = tensor_new(&t, 2, (int[]){R, V});
    Rng r;
    rng_seed(&r, 4);
    for (int i = 0; i < R * V; i++) zs->data[i] = 3.0f * rng_normal(&r), zt->data[i] = 3.0f * rng_normal(&r);
    zt->data[5] = -200.0f; /* a teacher probability that underflows to 0 contributes 0, not NaN */
    for (int k = 0; k < 2; k++) {
        double T = k ? 3.0 : 1.0, ref = 0.0;
        for (int i = 0; i < R; i++) {
            double ms = -1e30, mt = -1e30, ss = 0, st = 0;
            for (int c = 0; c < V; c++) ms = fmax(ms, zs->data[i * V + c] / T), mt = fmax(mt, zt->data[i * V + c] / T);
            for (int c = 0; c < V; c++) ss += exp(zs->data[i * V + c] / T - ms), st += exp(zt->data[i * V + c] / T - mt);
            for (int c = 0; c < V; c++) {
                double lp = zt->data[i * V + c] / T - mt - log(st), lq = zs->data[i * V + c] / T - ms - log(ss);
                ref += exp(lp) * (lp - lq);
            }
        }
        ref = ref / R * T * T;
        Tensor *y = op_kl_distill(&t, zs, zt, (float)T);
        cr_assert(fabs(y->data[0] - ref) < 1e-5 * fmax(1.0, ref), "T %g: %.7f vs %.7f", T, y->data[0], ref);
    }
    /* identical distributions: exactly no divergence */
    Tensor *y = op_kl_distill(&t, zt, zt, 2.0f);
    cr_assert(fabsf(y->data[0]) < 1e-6f, "KL(p || p) = %g", y->data[0]);
    tape_free(&t);
}

/* ---- views and reductions ---- */
static Tensor *f_view_chain(Tape *t, Tensor **in, void *c) {
    (void)c; /* reshape -> transpose -> contiguous -> mul by a second input */
    Tensor *x = op_reshape(t, in[0], 3, (int[]){3, 5, 4});
    Tensor *y = op_contiguous(t, op_transpose(t, x, 0, 2));
    return op_mul(t, y, in[1]);
}
Test(grad, reshape_transpose_contiguous) {
    GcInput s[] = {{"x", 2, {15, 4}, true}, {"m", 3, {4, 5, 3}, true}};
    check(f_view_chain, NULL, 2, s);
}
static Tensor *f_sum(Tape *t, Tensor **in, void *c) { (void)c; return op_sum(t, op_mul(t, in[0], in[0])); }
static Tensor *f_mean(Tape *t, Tensor **in, void *c) { (void)c; return op_mean(t, op_transpose(t, in[0], 0, 1)); }
Test(grad, sum) {
    GcInput s[] = {{"x", 2, {5, 7}, true}};
    check(f_sum, NULL, 1, s);
}
Test(grad, mean_of_view) {
    GcInput s[] = {{"x", 2, {5, 7}, true}};
    check(f_mean, NULL, 1, s);
}

/* ---- a composed attention against the fused op, gradients included ---- */
static Tensor *f_attention_composed(Tape *t, Tensor **in, void *c) {
    (void)c; /* single head: softmax_causal(q k^T / sqrt(d)) v from separate q, k, v */
    Tensor *s = op_scale(t, op_matmul(t, in[0], op_transpose(t, in[1], 1, 2)), 1.0f / sqrtf(4.0f));
    return op_matmul(t, op_softmax(t, s, true), in[2]);
}
Test(grad, attention_composed) {
    GcInput s[] = {{"q", 3, {2, 5, 4}, true}, {"k", 3, {2, 5, 4}, true}, {"v", 3, {2, 5, 4}, true}};
    check(f_attention_composed, NULL, 3, s);
}
