/* main.c: the qat command line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "optim/optim.h"

#define DEFAULT_CORPUS "/usr/share/games/fortunes/songs-poems"

static void usage(FILE *f) {
    fprintf(f,
            "usage: qat COMMAND [options]\n"
            "commands:\n"
            "  demo [CORPUS]   train a byte-level bigram model with AdamW (default corpus: %s)\n"
            "  --help          this message\n",
            DEFAULT_CORPUS);
}

/* A byte bigram model: logits[t] = W[x[t]]; trained with AdamW on random batches. */
static int cmd_demo(const char *path) {
    size_t n;
    unsigned char *text = (unsigned char *)xread_file(path, &n);
    if (n < 1024) qat_fail("%s: corpus too small (%zu bytes)", path, n);
    Params p;
    params_init(&p);
    Tensor *w = params_add(&p, "bigram", 2, (int[]){256, 256});
    params_finalize(&p);
    AdamW opt;
    adamw_init(&opt, &p, 0.9f, 0.99f, 1e-8f, 0.0f);
    LrSchedule sched = {.lr = 0.1f, .min_lr = 0.01f, .warmup_iters = 10, .iters = 300};
    Tape t;
    tape_init(&t, 1 << 20);
    enum { BATCH = 4096 };
    int32_t *x = xmalloc(BATCH * sizeof(int32_t)), *y = xmalloc(BATCH * sizeof(int32_t));
    Rng rng;
    rng_seed(&rng, 1337);
    printf("demo: bigram model on %s (%zu bytes), %zu parameters\n", path, n, p.numel);
    for (int it = 0; it <= sched.iters; it++) {
        for (int i = 0; i < BATCH; i++) {
            size_t j = rng_below(&rng, (uint32_t)(n - 1));
            x[i] = text[j];
            y[i] = text[j + 1];
        }
        tape_reset(&t);
        params_zero_grad(&p);
        Tensor *logits = op_embedding(&t, w, x, 1, (int[]){BATCH});
        Tensor *loss = op_cross_entropy(&t, logits, y);
        tape_backward(&t, loss);
        float norm = grad_clip_norm(&p, 1.0f);
        adamw_step(&opt, &p, lr_at(&sched, it));
        if (it % 50 == 0) printf("iter %4d  loss %.4f  grad_norm %.3f\n", it, loss->data[0], norm);
    }
    tape_free(&t);
    adamw_free(&opt);
    params_free(&p);
    free(text);
    free(x);
    free(y);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? QAT_EXIT_BADINPUT : 0;
    }
    if (!strcmp(argv[1], "demo")) return cmd_demo(argc > 2 ? argv[2] : DEFAULT_CORPUS);
    fprintf(stderr, "qat: unknown command '%s' (try qat --help)\n", argv[1]);
    return QAT_EXIT_BADINPUT;
}
