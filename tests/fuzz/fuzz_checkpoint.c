/* fuzz_checkpoint.c: the training-checkpoint loader: metadata, weights,
 * optimizer state and observer state, as qat train --resume reads them. */
#include "fuzz_util.h"
#include "layers/layers.h"
#include "optim/optim.h"
#include "format/checkpoint.h"

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
    return 0;
}
