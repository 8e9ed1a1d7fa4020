/* inspect.h: qat inspect, a listing of any file qat reads: a GGUF file (its
 * metadata and tensors with types and sizes), an exported model (its integer
 * and float tensors) or a training checkpoint (its model, quantization and
 * parameters). */
#ifndef QAT_INSPECT_H
#define QAT_INSPECT_H

#include <stdio.h>

void inspect_file(const char *path, FILE *out);

#endif
