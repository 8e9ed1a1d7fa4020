/* fuzz_checkpoint.c: the training-checkpoint loader: metadata, weights,
 * optimizer state and observer state, as qat train --resume reads them;
 * then the checksum pass of qat inspect over every dataset. */
#include "fuzz_util.h"
#include "layers/layers.h"
#include "optim/optim.h"
#include "format/checkpoint.h"
#include "util/h5io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_init();
    const char *path = fuzz_write_file(data, size);
    static GPT g;
    static bool built;
    static AdamW opt;
    static bool have_opt, have_v;
    if (setjmp(fuzz_jmp)) {
        fuzz_reset_hdf5();
        goto out;
    }
    Config c;
    static Vocab v;
    long step;
    ckpt_load_meta(path, &c, &v, &step);
    have_v = true;
    if (!fuzz_model_fits(&c)) goto out;
    GPTConfig gc = config_gpt(&c.model, v.size);
    gpt_build(&g, &gc, &c.quant, path);
    built = true;
    ckpt_load_params(path, &g, false);
    adamw_init(&opt, &g.params, 0.9f, 0.99f, 1e-8f, 0.1f);
    have_opt = true;
    Rng rng;
    ckpt_load_train_state(path, &g, &opt, &rng);
    ckpt_load_observers(path, &g);
out:
    if (have_opt) adamw_free(&opt);
    if (built) gpt_free(&g);
    if (have_v) vocab_free(&v);
    built = have_opt = have_v = false;
    /* qat inspect's pass over every dataset's checksum, on its own */
    if (!setjmp(fuzz_jmp)) {
        hid_t f = h5in_open(path);
        h5_verify_dataset(f, path, "params/wte");
        h5_verify_dataset(f, path, "optim/m/wte");
        h5in_close(f);
    } else {
        fuzz_reset_hdf5();
    }
    return 0;
}
