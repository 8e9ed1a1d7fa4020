/* fuzz_util.h: what the libFuzzer targets share: qat_fail() longjmps back
 * into the target instead of exiting (bad input is the expected outcome),
 * and file loaders get their input as a real file, as qat's do. */
#ifndef QAT_FUZZ_UTIL_H
#define QAT_FUZZ_UTIL_H

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>

extern jmp_buf fuzz_jmp;
/* Installs the longjmp handler (once) and quietens HDF5. */
void fuzz_init(void);
/* Writes data to this process's scratch file; returns its path. */
const char *fuzz_write_file(const uint8_t *data, size_t n);
/* After a rejected input: close every HDF5 object the loader left open. */
void fuzz_reset_hdf5(void);
/* Whether the model a (fuzzed) config describes is small enough to build
 * inside the fuzzer's memory limit. */
struct Config;
int fuzz_model_fits(const struct Config *c);

#endif
