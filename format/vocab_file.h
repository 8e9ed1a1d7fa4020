/* vocab_file.h: a SentencePiece vocabulary out of whichever file holds one,
 * told apart by magic: a qat checkpoint (HDF5), a GGUF model
 * (tokenizer.ggml.model llama) or a llama2.c tokenizer.bin. Training from
 * scratch with model.vocab spm takes its vocabulary from data.tokenizer. */
#ifndef QAT_VOCAB_FILE_H
#define QAT_VOCAB_FILE_H

#include "data/data.h"

/* Fails in one line naming the file when it holds no spm vocabulary. */
void vocab_load_file(const char *path, Vocab *v);

#endif
