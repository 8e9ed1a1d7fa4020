/* fuzz_model.c: the exported-model loader (infer_load), as qat eval and
 * qat sample read a deployable file, followed by a forward pass over a few
 * tokens so that whatever it accepted is also safe to run. */
#include <stdlib.h>

#include "fuzz_util.h"
#include "infer/infer.h"
#include "train/config.h"
#include "util/h5io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_init();
    const char *path = fuzz_write_file(data, size);
    static char *yaml;
    static bool loaded, state;
    static InferModel m;
    static InferState s;
    free(yaml);
    yaml = NULL;
    if (setjmp(fuzz_jmp)) {
        fuzz_reset_hdf5();
        goto out;
    }
    /* the model's size first: a file may claim a model beyond the fuzzer's memory */
    hid_t f = h5in_open(path);
    yaml = h5_read_attr_str(f, path, "config");
    h5in_close(f);
    Config c;
    config_defaults(&c);
    config_load_string(&c, yaml, "fuzz:config");
    if (!fuzz_model_fits(&c)) goto out;
    infer_load(&m, path);
    loaded = true;
    infer_state_init(&s, &m, 4);
    state = true;
    int32_t tok[4] = {0, 1 % m.vocab.size, 2 % m.vocab.size, 0};
    int n = m.cfg.block_size < 4 ? m.cfg.block_size : 4;
    infer_forward(&m, &s, tok, n);
out:
    if (state) infer_state_free(&s);
    if (loaded) infer_free(&m);
    loaded = state = false;
    return 0;
}
