/* gguf_model.h: a qat model as a GGUF file that llama.cpp runs.
 * llama (model.arch llama, SentencePiece vocabulary): token_embd, output (when
 * untied or quantized), output_norm, blk.N.{attn_norm, attn_q, attn_k,
 * attn_v (the rows of qkv), attn_output, ffn_norm, ffn_gate, ffn_up (the
 * rows of mlp.fc), ffn_down}, each block tensor with its rows' own scales.
 * gpt2 (model.arch gpt): qat's tensors map one to one (token_embd, position_embd,
 * blk.N.{attn_norm, attn_qkv, attn_output, ffn_norm, ffn_up, ffn_down},
 * output_norm; weights are [out, in] in both, so nothing is transposed); a
 * tied head is token_embd alone, a quantized head its own output.weight.
 * The char vocabulary becomes a BPE vocabulary without merges whose tokens
 * are the bytes in GPT-2's byte-to-unicode spelling, plus one control token,
 * <|endoftext|>, as BOS and EOS, whose head row is built so that its logit is
 * -100 on every input (generation never stops on a character).
 *
 * Quantized Linears become their blocks: trained in a block format
 * (quant.format), exactly the blocks the forward computed; trained on qat's
 * symmetric grids with groups of whole blocks, q8_0 (5..8 bits) or q4_0
 * (2..4 bits) with the scales rounded to half precision (reported). Anything
 * else falls back to its fake-quantized values in float, reported per tensor. */
#ifndef QAT_GGUF_MODEL_H
#define QAT_GGUF_MODEL_H

#include <stdbool.h>
#include <stdio.h>

#include "data/data.h"
#include "layers/layers.h"

/* Writes path (atomically); every tensor's type and every change goes to
 * report. Float tensors in F16 with f16 (norms and biases stay F32).
 * Returns the file size. */
size_t gguf_export_gpt(const GPT *g, const Vocab *v, const char *name, const char *path, bool f16, FILE *report);

#endif

/* Reads a GGUF file (v2 or v3) of llama.cpp's llama architecture (a
 * SentencePiece vocabulary; every tensor dequantized to float) or of its gpt2
 * architecture with a byte-level
 * vocabulary (what gguf_export_gpt writes) into a GPT and its config: float
 * tensors as they are; Linears in blocks (all of one type: q8_0, q4_0 or
 * q4_1) become layers of that quant.format holding the dequantized weights
 * and the blocks' own half-precision scales (and q4_1's minima) as stored
 * scales (estimator lsq), so the forward re-makes exactly the file's codes
 * and qat's integer kernels run them as they are (q4_1 with an offset per
 * block). Anything else
 * (other architectures or types, merges, untied heads that are not the
 * embedding's blocks) fails in one line naming the file and the key or
 * tensor. */
#include "train/config.h"
/* as_float: every tensor dequantized, a float model (qat import). */
void gguf_load_gpt(const char *path, GPT *g, Vocab *v, Config *cfg, bool as_float);
/* Only the SentencePiece vocabulary (tokenizer.ggml.model = llama) of a GGUF file. */
void gguf_load_vocab(const char *path, Vocab *v);
