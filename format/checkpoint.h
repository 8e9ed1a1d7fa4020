/* checkpoint.h: training checkpoints in HDF5. Layout (format qat-checkpoint,
 * version 1):
 *   attributes on /: format, version, kind ("float", "qat" or "ptq"), step,
 *                     config (YAML text); ptq_method (PTQ: what made it)
 *   /vocab            uint8 [V]   token id -> byte
 *   /params/<name>    float32     every parameter by name
 *   /optim/m/<name>, /optim/v/<name>  AdamW moments; attribute optim_step on /
 *   /rng              uint64 [1]  batch sampler state after `step` steps
 *   /observers/<layer>/{range,counts,sample}  static-activation observers
 *                     still calibrating (step < quant.freeze_step): lo/hi,
 *                     {batches, values seen, rng state}, the reservoir
 * Every dataset has a "crc32" attribute (zlib's CRC-32 of its bytes), checked
 * at load; version 1 files (before checksums) are read unchecked. Loading
 * also refuses non-finite tensors, unknown kinds, steps outside
 * 0..train.iters and configs that fail config_validate, each in one line.
 * Written to PATH.tmp and renamed, so a checkpoint is whole or absent. */
#ifndef QAT_CHECKPOINT_H
#define QAT_CHECKPOINT_H

#include "data/data.h"
#include "layers/layers.h"
#include "optim/optim.h"
#include "train/config.h"

/* opt and rng may be NULL (no training state: a PTQ checkpoint, which names
 * its method in ptq_method; NULL otherwise). */
void ckpt_save(const char *path, const Config *cfg, const Vocab *v, const GPT *g, const AdamW *opt, long step,
               const Rng *rng, const char *ptq_method);
/* Config, vocab (v NULL: not read) and step of a checkpoint; fails when path
 * is not one. The vocab is the caller's to vocab_free. */
void ckpt_load_meta(const char *path, Config *cfg, Vocab *v, long *step);
/* Loads every parameter of g, checking names and shapes; with skip_quant,
 * fake-quant scales are left alone (fine-tuning a float checkpoint). */
void ckpt_load_params(const char *path, GPT *g, bool skip_quant);
/* The state of observers saved while still calibrating; true when every
 * static-activation layer of g had one (false: none saved). */
bool ckpt_load_observers(const char *path, GPT *g);
/* Loads the optimizer moments and sampler state saved with the weights. */
void ckpt_load_train_state(const char *path, const GPT *g, AdamW *opt, Rng *rng);

#endif
