/* test_blocks.c: qat's ggml block formats against ggml itself. The npm
 * package @node-llama-cpp/linux-x64 (3.21.1, installed by ./quickstart test
 * into tests/llamacpp) ships llama.cpp's real libggml-base.so; it is opened
 * with dlopen and asked for its half-precision conversion and its
 * ggml_quantize_chunk, which must give qat's blocks byte for byte. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "quant/blocks.h"
#include "testutil.h"

typedef uint16_t (*fp32_to_fp16_fn)(float);
typedef float (*fp16_to_fp32_fn)(uint16_t);
enum { GGML_Q4_0 = 2, GGML_Q4_1 = 3, GGML_Q8_0 = 8, GGML_IQ4_NL = 20 };

static fp32_to_fp16_fn g_to16;
static fp16_to_fp32_fn g_to32;
static GgmlQuantizeChunk g_quant;

static void open_ggml(void) {
    g_to16 = (fp32_to_fp16_fn)test_ggml_symbol("ggml_fp32_to_fp16");
    g_to32 = (fp16_to_fp32_fn)test_ggml_symbol("ggml_fp16_to_fp32");
    g_quant = (GgmlQuantizeChunk)test_ggml_symbol("ggml_quantize_chunk");
}
TestSuite(blocks, .init = open_ggml);

static float bits_f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

Test(blocks, half_precision_matches_ggml_on_every_kind_of_float) {
    Rng r;
    rng_seed(&r, 7);
    size_t n = 0;
    /* every float with these top bits, then random bit patterns */
    for (uint32_t u = 0; u < 0x80000000u; u += 0x1000u, n++) {
        float f = bits_f(u);
        if (isnan(f)) continue;
        cr_assert_eq(fp16_from_f32(f), g_to16(f), "fp16(%a): qat %04x ggml %04x", f, fp16_from_f32(f), g_to16(f));
        cr_assert_eq(fp16_from_f32(-f), g_to16(-f), "fp16(%a)", -f);
    }
    for (int i = 0; i < 2000000; i++) {
        float f = bits_f((uint32_t)rng_u64(&r));
        if (isnan(f)) continue;
        cr_assert_eq(fp16_from_f32(f), g_to16(f), "fp16(%a): qat %04x ggml %04x", f, fp16_from_f32(f), g_to16(f));
    }
    /* ties to even at the edges: 65504 + half an ulp, subnormal ties */
    float edges[] = {65519.99f, 65520.0f, 0x1p-25f, 0x1.8p-24f, 0x1p-14f, 0x1.ffcp-15f, 5.9604645e-8f, 2049.0f, 2051.0f};
    for (size_t i = 0; i < sizeof edges / sizeof *edges; i++)
        cr_assert_eq(fp16_from_f32(edges[i]), g_to16(edges[i]), "fp16(%a)", edges[i]);
    for (uint32_t h = 0; h < 0x10000u; h++) {
        if ((h & 0x7c00u) == 0x7c00u && (h & 0x3ffu)) continue; /* NaN payloads */
        float a = fp16_to_f32((uint16_t)h), b = g_to32((uint16_t)h);
        cr_assert(!memcmp(&a, &b, 4), "half %04x: qat %a ggml %a", h, a, b);
    }
    cr_log_info("%zu grid floats and 2M random ones agree", n);
}

/* Rows of weights as training makes them, plus the cases that decide the
 * rounding: ties, zero blocks, a single large value, negative maxima. */
static float *test_rows(size_t n, uint64_t seed) {
    Rng r;
    rng_seed(&r, seed);
    float *x = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = 0.02f * rng_normal(&r) * (i % 97 == 0 ? 8.0f : 1.0f);
    for (int j = 0; j < QBLOCK; j++) x[j] = 0.0f;                              /* an all-zero block */
    for (int j = 0; j < QBLOCK; j++) x[QBLOCK + j] = (float)(j - 16) * 0.125f; /* exact ties */
    x[2 * QBLOCK + 5] = -1.0f;                                                  /* a negative extreme */
    for (int j = 0; j < QBLOCK; j++) x[3 * QBLOCK + j] = 1e-30f * (float)(j + 1); /* tiny: subnormal half scales */
    for (int j = 0; j < QBLOCK; j++) x[4 * QBLOCK + j] = 3e4f * (float)(j % 3 - 1); /* large */
    return x;
}

static void same_as_ggml(QFormat f, int ggml_type) {
    size_t rows = 24, cols = 256, n = rows * cols, bytes = n / QBLOCK * qformat_block_bytes(f);
    float *x = test_rows(n, 100 + (uint64_t)f);
    uint8_t *ours = xmalloc(bytes), *theirs = xmalloc(bytes);
    blocks_quantize(f, x, n, ours);
    size_t got = g_quant(ggml_type, x, theirs, 0, (int64_t)rows, (int64_t)cols, NULL);
    cr_assert_eq(got, bytes, "ggml wrote %zu bytes, qat %zu", got, bytes);
    for (size_t b = 0; b < bytes; b++)
        cr_assert_eq(ours[b], theirs[b], "%s: byte %zu (block %zu) differs: qat %02x ggml %02x", qformat_name(f), b,
                     b / qformat_block_bytes(f), ours[b], theirs[b]);
    /* dequantized, then quantized again by ggml: the same blocks (no tool can change an export) */
    float *w = xmalloc(n * sizeof(float));
    blocks_dequantize(f, ours, n, w);
    g_quant(ggml_type, w, theirs, 0, (int64_t)rows, (int64_t)cols, NULL);
    size_t bb = qformat_block_bytes(f), skipped = 0;
    if (f == QF_IQ4_NL) {
        /* ggml's scale search is not idempotent (a refit d moves on values
         * that already sit on levels), so requantizing may change blocks, in
         * ggml as in qat: the export writes the blocks and never requantizes.
         * On these inputs, all on the levels, qat still equals ggml. */
        uint8_t *again = xmalloc(bytes);
        blocks_quantize(f, w, n, again);
        for (size_t b = 0; b < bytes; b++)
            cr_assert_eq(again[b], theirs[b], "iq4_nl: on dequantized weights, byte %zu differs from ggml's", b);
        free(again);
    }
    for (size_t b = 0; f != QF_IQ4_NL && b < bytes; b++) {
        uint16_t d;
        memcpy(&d, ours + b / bb * bb, 2); /* d is every block's first field */
        /* a block whose scale underflows half precision (|x| < 1e-9 here)
         * dequantizes to zeros: its codes cannot survive, in ggml either */
        if ((d & 0x7fff) == 0) { /* +0 or -0 */
            skipped += b % bb == 0;
            continue;
        }
        cr_assert_eq(ours[b], theirs[b], "%s: requantizing qat's dequantized weights changed block %zu", qformat_name(f),
                     b / bb);
    }
    if (f != QF_IQ4_NL) cr_assert_eq(skipped, 2, "the zero block and the tiny one");
    /* the fake quantization of training is exactly the dequantized blocks */
    float out[QBLOCK];
    for (size_t b = 0; b < n / QBLOCK; b++) {
        block_fake(f, x + b * QBLOCK, out, NULL, NULL, NULL);
        cr_assert(!memcmp(out, w + b * QBLOCK, sizeof out), "%s: block %zu: fake quantization differs from the blocks",
                  qformat_name(f), b);
    }
    free(x), free(ours), free(theirs), free(w);
}

Test(blocks, q8_0_is_ggmls_byte_for_byte) { same_as_ggml(QF_Q8_0, GGML_Q8_0); }
Test(blocks, q4_0_is_ggmls_byte_for_byte) { same_as_ggml(QF_Q4_0, GGML_Q4_0); }
Test(blocks, q4_1_is_ggmls_byte_for_byte) { same_as_ggml(QF_Q4_1, GGML_Q4_1); }
/* ggml_quantize_chunk runs quantize_iq4_nl with no importance matrix, as llama-quantize does */
Test(blocks, iq4_nl_is_ggmls_byte_for_byte) { same_as_ggml(QF_IQ4_NL, GGML_IQ4_NL); }

/* A given scale (and minimum) at exactly the reference's gives the
 * reference's block up to one step where fp16 rounding of d moved a tie (iq4_nl: one level); on
 * the reference's dequantized values it gives the same codes exactly, so a
 * PTQ method's blocks survive export. */
Test(blocks, a_given_scale_equal_to_the_reference_reproduces_it) {
    float *x = test_rows(64 * QBLOCK, 9);
    for (QFormat f = QF_Q8_0; f <= QF_IQ4_NL; f++)
        for (int b = 5; b < 64; b++) {
            float ref[QBLOCK], got[QBLOCK], again[QBLOCK], d, m;
            int c_ref[QBLOCK], c_got[QBLOCK];
            block_fake(f, x + b * QBLOCK, ref, c_ref, &d, &m);
            block_fake_scaled(f, x + b * QBLOCK, d, m, got, NULL);
            for (int j = 0; j < QBLOCK; j++)
                /* iq4_nl: a value near the midpoint of two levels (up to 24 apart) */
                cr_assert_float_eq(got[j], ref[j], fabsf(d) * (f == QF_IQ4_NL ? 24.01f : 1.01f), "%s block %d [%d]: %g vs %g", qformat_name(f), b, j,
                                   got[j], ref[j]);
            block_fake_scaled(f, ref, d, m, again, c_got);
            for (int j = 0; j < QBLOCK; j++) {
                cr_assert_eq(c_got[j], c_ref[j], "%s block %d [%d]: code %d from its own value, stored %d", qformat_name(f),
                             b, j, c_got[j], c_ref[j]);
                cr_assert_eq(again[j], ref[j]);
            }
        }
    free(x);
}

/* llama.cpp's CPU GELU is a table of halves indexed by the input rounded to
 * half: qat's op_gelu_half (quant.act_format q8_0 simulates it) gives every
 * entry of ggml's own table. */
Test(blocks, gelu_half_is_ggmls_table) {
    ((void (*)(void))test_ggml_cpu_symbol("ggml_cpu_init"))();
    const uint16_t *table = test_ggml_cpu_symbol("ggml_table_gelu_f16");
    int checked = 0;
    for (uint32_t h = 0; h < 0x10000u; h++) {
        float x = g_to32((uint16_t)h), y;
        if (!(x > -10.0f && x < 10.0f)) continue; /* ggml takes 0 and x outside, not the table */
        gelu_rows_half(&x, 1, &y);
        cr_assert_eq(fp16_from_f32(y), table[h], "gelu(%a): qat %04x, ggml's table %04x", x, fp16_from_f32(y), table[h]);
        checked++;
    }
    cr_assert_gt(checked, 30000);
}

/* llama.cpp's CPU products quantize their float input to q8_0 blocks with
 * their own quantizer, not the weights' reference one: block_act_q8_0 (what
 * quant.act_format q8_0 and the W8A8 kernels use) gives the blocks of the
 * CPU backend llama.cpp loads here, byte for byte, both its row quantizer
 * and the 4-row interleaved one of its repacked q4_0 products; and it is not
 * the reference rounding (which the blocks with exact halves tell apart). */
Test(blocks, activation_blocks_are_llama_cpps_cpu_quantizer) {
    const char *variant;
    void (*row)(const float *, void *, int64_t) = test_ggml_cpu_best_symbol("quantize_row_q8_0", &variant);
    void (*rows4)(const float *, void *, int64_t) = test_ggml_cpu_best_symbol("ggml_quantize_mat_q8_0_4x8", NULL);
    /* llama.cpp's builds without AVX (x64, sse42) round as the reference does;
     * qat simulates the AVX builds, which every x86 server since 2011 loads */
    if (!strcmp(variant, "x64") || !strcmp(variant, "sse42"))
        cr_skip_test("llama.cpp loads its %s build here, which rounds activations as the reference does", variant);
    enum { K = 4096, NB = K / QBLOCK };
    float *x = xmalloc(4 * K * sizeof(float));
    Rng r;
    rng_seed(&r, 11);
    for (int i = 0; i < 4 * K; i++) x[i] = rng_normal(&r) * (i % 97 == 0 ? 8.0f : 1.0f);
    for (int j = 0; j < QBLOCK; j++) x[j] = j ? (float)(j % 8) - 3.5f : 127.0f; /* 127 / max = 1: exact halves */
    for (int j = QBLOCK; j < 2 * QBLOCK; j++) x[j] = 0.0f;
    BlockQ8_0 *ggml = xmalloc(4 * NB * sizeof(BlockQ8_0));
    row(x, ggml, 4 * K);
    int differ_from_ref = 0;
    for (int b = 0; b < 4 * NB; b++) {
        float out[QBLOCK], d, ref_out[QBLOCK];
        int8_t c[QBLOCK];
        int ref[QBLOCK];
        block_act_q8_0(x + b * QBLOCK, out, c, &d);
        cr_assert_eq(fp16_from_f32(d), ggml[b].d, "%s: block %d: d %04x, llama.cpp's %04x", variant, b, fp16_from_f32(d),
                     ggml[b].d);
        for (int j = 0; j < QBLOCK; j++) {
            cr_assert_eq(c[j], ggml[b].qs[j], "%s: block %d value %d (%a): code %d, llama.cpp's %d", variant, b, j,
                         x[b * QBLOCK + j], c[j], ggml[b].qs[j]);
            cr_assert_eq(out[j], (float)c[j] * d);
        }
        block_fake(QF_Q8_0, x + b * QBLOCK, ref_out, ref, NULL, NULL);
        for (int j = 0; j < QBLOCK; j++) differ_from_ref += ref[j] != c[j];
    }
    cr_assert_geq(differ_from_ref, 8, "%d codes differ from the reference rounding", differ_from_ref);
    /* the repacked products' quantizer: 4 rows of K, blocks interleaved 8 bytes at a time */
    struct {
        uint16_t d[4];
        int8_t qs[4 * QBLOCK];
    } *four = xmalloc(NB * sizeof *four);
    rows4(x, four, K);
    for (int b = 0; b < NB; b++)
        for (int rr = 0; rr < 4; rr++) {
            float d;
            int8_t c[QBLOCK];
            block_act_q8_0(x + (size_t)rr * K + b * QBLOCK, NULL, c, &d);
            cr_assert_eq(fp16_from_f32(d), four[b].d[rr], "%s 4x8: row %d block %d", variant, rr, b);
            for (int j = 0; j < QBLOCK; j++)
                cr_assert_eq(c[j], four[b].qs[(j / 8) * 32 + rr * 8 + j % 8], "%s 4x8: row %d block %d value %d", variant, rr,
                             b, j);
        }
    cr_log_info("%s: %d codes differ from the reference rounding", variant, differ_from_ref);
    free(x), free(ggml), free(four);
}
