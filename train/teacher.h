/* teacher.h: data-free fine-tuning data (data.source: teacher, as LLM-QAT
 * does): sequences sampled from the float model itself, so a user with only
 * the model file can run QAT, distillation and PTQ calibration. */
#ifndef QAT_TEACHER_H
#define QAT_TEACHER_H

#include <stddef.h>
#include <stdint.h>

#include "train/config.h"

/* The token stream of data.teacher.sequences sequences (BOS and
 * model.block_size sampled tokens each) from the float model at
 * teacher_ckpt, with data.teacher.{temperature, top_k, seed}. Cached in the
 * HDF5 file cache (written atomically) and reused while the model's weights
 * and those settings are the same; malloc'd, *n tokens. */
int32_t *teacher_tokens(const Config *cfg, const char *teacher_ckpt, const char *cache, size_t *n, bool quiet);

#endif
