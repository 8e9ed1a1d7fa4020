/* vocab_h5.h: a vocabulary inside qat's HDF5 files (training checkpoints and
 * deployable models), so evaluation and sampling never need the original
 * tokenizer file.
 *   char/byte: /vocab uint8 [V], token id -> byte, a sorted set.
 *   spm:       /tokenizer/pieces uint8 [bytes] (the pieces back to back,
 *              spaces as ' '), /tokenizer/lengths int32 [V],
 *              /tokenizer/scores float32 [V], /tokenizer/types int32 [V],
 *              /tokenizer/special int32 [3] = bos, eos, unknown.
 * Every dataset carries its crc32 (h5_write_checked). */
#ifndef QAT_VOCAB_H5_H
#define QAT_VOCAB_H5_H

#include <hdf5.h>

#include "data/data.h"

void vocab_h5_write(hid_t f, const Vocab *v);
/* spm: the file's model.vocab says spm. checked: datasets carry checksums
 * (version 1 checkpoints' /vocab does not). */
void vocab_h5_read(hid_t f, const char *path, bool spm, bool checked, Vocab *v);

#endif
