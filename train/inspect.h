/* inspect.h: qat inspect, a description of any file qat reads or writes: a
 * GGUF file, an exported model, a training (float, QAT or PTQ) checkpoint, a
 * llama2.c model or tokenizer. Architecture, vocab kind and size, every
 * tensor with its shape, storage type, quantization scheme, bytes and bits
 * per weight, totals, and the checksums (every HDF5 dataset's CRC-32
 * recomputed). Fails in one line naming the file for anything else. */
#ifndef QAT_INSPECT_H
#define QAT_INSPECT_H

#include <stdbool.h>
#include <stdio.h>

#include <cJSON.h>

/* The description as JSON (the caller's to cJSON_Delete), without totals. */
cJSON *inspect_describe(const char *path);
/* Prints the description with totals: a listing, or one JSON line. */
void inspect_file(const char *path, bool json, FILE *out);

#endif
