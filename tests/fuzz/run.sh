#!/usr/bin/env bash
# tests/fuzz/run.sh [SECONDS]: builds the libFuzzer targets (clang, ASan,
# UBSan) in build-fuzz/, generates their seed corpora with the qat it built
# (configs from configs/, checkpoints and exported models of a tiny model
# trained on the fortunes text), runs each target for SECONDS (default 60)
# and fails on any crash, sanitizer error or hang. Leak checking stays off
# (ASAN_OPTIONS below): error paths leave small allocations to the exit, and
# HDF5 1.10 loses memory inside its own calls on corrupt files. The corpora
# grow in build-fuzz/corpus/ across runs; nothing here is committed.
# Prints one line per target: executions, corpus size, result; the same
# lines go to build-fuzz/fuzz-report.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-60}
B=build-fuzz
cmake -S . -B $B -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQAT_FUZZ=ON -DQAT_TESTS=OFF >/dev/null
cmake --build $B -j"$(nproc)" --target qat fuzz_config fuzz_checkpoint fuzz_model fuzz_gguf fuzz_llama2c >/dev/null

# ---- seeds ----
S=$B/seeds
rm -rf $S && mkdir -p $S/config $S/checkpoint $S/model $S/gguf $S/llama2c
cp configs/*.yaml $S/config/
printf '{"iter":0,"val_loss":1.9}\n{"iter":1,"loss":0.99,"lr":3e-4,"grad_norm":3.5,"ce":1.96,"kl":0.02}\n' > $S/config/metrics.jsonl
printf 'model: {n_layer: 2, n_head: 2, n_embd: 32}\ntrain: {iters: 3, lr: 1e-3}\nquant:\n  layers: [blocks.0.*, lm_head]\n  overrides.blocks.0.mlp.fc.bits: 3\n' > $S/config/lists.yaml
# a planned mixed run's per-layer codebooks (quant.overrides.<layer>.codebook)
printf 'model: {n_layer: 1, n_head: 2, n_embd: 32}\nquant:\n  weight: {bits: 3, freeze_table: true}\n  overrides.blocks.0.mlp.fc.codebook: kmeans\n  overrides.blocks.0.mlp.fc.granularity: channel\n  overrides.blocks.0.attn.qkv.codebook: nf\n  overrides.blocks.0.attn.qkv.bits: 2\n  budget: {codebooks: "none,nf,kmeans"}\n' > $S/config/codebooks.yaml
# a layer in a block format of its own (quant.overrides.<layer>.format) and dampening
printf 'model: {n_layer: 1, n_head: 2, n_embd: 32}\nquant:\n  format: q4_0\n  layers: "blocks.*, lm_head"\n  overrides.lm_head.format: q8_0\n' > $S/config/layer-format.yaml
printf 'model: {n_layer: 1, n_head: 2, n_embd: 32}\nquant:\n  weight: {bits: 3, granularity: group, group_size: 32}\n  dampen: 0.1\n' > $S/config/dampen.yaml
export ASAN_OPTIONS=detect_leaks=0 OMP_NUM_THREADS=1
W=$B/seed-runs
rm -rf $W && mkdir -p $W
corpus=/usr/share/games/fortunes/songs-poems
[ -r $corpus ] || { echo "fuzz: $corpus missing (Debian package fortunes)" >&2; exit 1; }
tiny="model: {n_layer: 1, n_head: 2, n_embd: 16, block_size: 8}
data: {path: $corpus}
train: {batch_size: 4, iters: 6, eval_every: 3, eval: random, eval_batches: 2, threads: 1}"
printf '%s\nout_dir: %s/float\n' "$tiny" $W > $W/float.yaml
$B/qat train $W/float.yaml >/dev/null
printf '%s\nout_dir: %s/qat\nquant: {weight: {bits: 4, granularity: group, group_size: 8}, estimator: lsq, init_from: %s/float/checkpoint.h5}\n' \
  "$tiny" $W $W > $W/qat.yaml
$B/qat train $W/qat.yaml >/dev/null
printf '%s\nout_dir: %s/w8a8\nquant: {weight: {bits: 8}, activation: {bits: 8, granularity: tensor, observer: percentile}, freeze_step: 5, calib_batches: 1, kv: {bits: 8}, init_from: %s/float/checkpoint.h5}\n' \
  "$tiny" $W $W > $W/w8a8.yaml
$B/qat train $W/w8a8.yaml --stop-after 3 >/dev/null # observers still calibrating: their state is saved
cp $W/float/checkpoint.h5 $S/checkpoint/float.h5
cp $W/qat/checkpoint.h5 $S/checkpoint/qat.h5
cp $W/w8a8/checkpoint.h5 $S/checkpoint/w8a8-calibrating.h5
$B/qat export $W/qat/checkpoint.h5 -o $S/model/int4.h5 >/dev/null
$B/qat train $W/w8a8.yaml --resume >/dev/null
$B/qat export $W/w8a8/checkpoint.h5 -o $S/model/w8a8.h5 >/dev/null
$B/qat ptq $W/float/checkpoint.h5 --method outlier --threshold 0.5 -o $W/outlier.h5 >/dev/null
$B/qat export $W/outlier.h5 -o $S/model/outlier.h5 >/dev/null
# a kmeans table (its levels read from the file) in a checkpoint and an exported model
$B/qat ptq $W/float/checkpoint.h5 --method rtn --bits 3 --group 8 --codebook kmeans -o $W/kmeans.h5 >/dev/null
cp $W/kmeans.h5 $S/checkpoint/kmeans.h5
$B/qat export $W/kmeans.h5 -o $S/model/kmeans.h5 >/dev/null
# 8-bit codebooks: 256 levels, one index per byte (nf8's fixed, kmeans8's own)
$B/qat ptq $W/float/checkpoint.h5 --method rtn --bits 8 --group 8 --codebook nf -o $W/nf8.h5 >/dev/null
$B/qat export $W/nf8.h5 -o $S/model/nf8.h5 >/dev/null
$B/qat ptq $W/float/checkpoint.h5 --method rtn --bits 8 --group channel --codebook kmeans -o $W/kmeans8.h5 >/dev/null
cp $W/kmeans8.h5 $S/checkpoint/kmeans8.h5
$B/qat export $W/kmeans8.h5 -o $S/model/kmeans8.h5 >/dev/null
# kmeans tables per channel and per group (int8 table_levels in the exported model)
for t in channel group; do
  $B/qat ptq $W/float/checkpoint.h5 --method rtn --bits 2 --group 8 --codebook kmeans --tables $t -o $W/kmeans-$t.h5 >/dev/null
  cp $W/kmeans-$t.h5 $S/checkpoint/kmeans-tables-$t.h5
  $B/qat export $W/kmeans-$t.h5 -o $S/model/kmeans-tables-$t.h5 >/dev/null
done
# the full range (code_min -2 of int2): its checkpoint and exported model
$B/qat ptq $W/float/checkpoint.h5 --method rtn --bits 2 --group 8 --full-range -o $W/full.h5 >/dev/null
cp $W/full.h5 $S/checkpoint/full-range.h5
$B/qat export $W/full.h5 -o $S/model/full-range.h5 >/dev/null
# GGUF: F32, q8_0, q4_0/q4_1 and iq4_nl models as llama.cpp gets them (width 32: whole 32-blocks)
gg="model: {n_layer: 1, n_head: 2, n_embd: 32, block_size: 8}
data: {path: $corpus}
train: {batch_size: 4, iters: 4, eval_every: 4, eval: random, eval_batches: 2, threads: 1}"
printf '%s\nout_dir: %s/g-float\n' "$gg" $W > $W/g-float.yaml
$B/qat train $W/g-float.yaml >/dev/null
$B/qat export $W/g-float/checkpoint.h5 -o $S/gguf/f32.gguf >/dev/null
$B/qat export $W/g-float/checkpoint.h5 --f16 -o $S/gguf/f16.gguf >/dev/null
for f in q8_0 q4_0 q4_1 iq4_nl; do
  printf '%s\nout_dir: %s/g-%s\nquant: {format: %s, layers: "blocks.*, lm_head", init_from: %s/g-float/checkpoint.h5}\n' \
    "$gg" $W $f $f $W > $W/g-$f.yaml
  $B/qat train $W/g-$f.yaml >/dev/null
  $B/qat export $W/g-$f/checkpoint.h5 -o $S/gguf/$f.gguf >/dev/null
done
# a q8_0 tied token_embd beside q4_0 Linears, as llama.cpp's own quantizer
# writes it (when node-llama-cpp is installed: ./quickstart test does it)
if [ -d tests/llamacpp/node_modules ]; then
  python3 bench/llama_quantize.py $S/gguf/f32.gguf $S/gguf/llama-quantize-q4_0.gguf q4_0 >/dev/null 2>&1
fi

# the real pretrained model (../shared/data/stories260K) when it is there:
# llama2.c's checkpoint and tokenizer, the GGUF of the llama architecture,
# and the imported checkpoint with its SentencePiece vocabulary
D=../shared/data/stories260K
if [ -r $D/tok512.bin ]; then
  cp $D/tok512.bin $D/stories260K.bin $S/llama2c/
  cp $D/stories260K.gguf $S/gguf/
  $B/qat import $D/stories260K.bin --tokenizer $D/tok512.bin -o $S/checkpoint/stories260K.h5 >/dev/null
  # a llama GGUF in q8_0 blocks with float Linears beside them (mlp.proj's 172 inputs are no whole blocks)
  $B/qat ptq $S/checkpoint/stories260K.h5 --method rtn --bits 8 --group channel --calib-batches 1 -o $W/s260-q8.h5 >/dev/null
  $B/qat export $W/s260-q8.h5 --format gguf -o $S/gguf/s260-q8.gguf >/dev/null
else
  printf '\x08\x00\x00\x00' > $S/llama2c/empty-tokenizer.bin
fi

# ---- run ----
report=$B/fuzz-report.txt
: > $report
status=0
for t in config checkpoint model gguf llama2c; do
  C=$B/corpus/$t
  mkdir -p $C
  log=$B/fuzz_$t.log
  set +e
  (cd $B && ./fuzz_$t -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
     -artifact_prefix="crash-$t-" "corpus/$t" "seeds/$t") > $log 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' $log | grep -o '[0-9]*$' || echo 0)
  files=$(ls $C | wc -l)
  if [ $rc -eq 0 ]; then
    line="fuzz_$t: $execs executions in ${secs} s, corpus $files inputs, no crash"
  else
    status=1
    line="fuzz_$t: FAILED (exit $rc) after $execs executions; reproducer and log: $(ls $B/crash-$t-* 2>/dev/null | head -1) $log"
    grep -m1 -A12 'ERROR:\|runtime error\|deadly signal' $log >&2 || tail -20 $log >&2
  fi
  echo "$line" | tee -a $report
done
exit $status
