/* plot.h: qat's figures beyond the comparison plot (compare.h): the
 * training curves of run directories (qat plot) and the per-layer
 * quantization error of qat compare; and the reader of a run's
 * metrics.jsonl they are drawn from (runlog.c). */
#ifndef QAT_PLOT_H
#define QAT_PLOT_H

#include <stdio.h>

/* A run directory's log: one entry per logged step, NaN where a line has
 * no such field (validation is logged every train.eval_every steps). */
typedef struct RunLog {
    char name[256];       /* the directory, as given */
    int n;
    double *iter, *loss, *val, *lr;
    long tokens_per_step; /* train.batch_size x model.block_size from its checkpoint; 0 unknown */
    char init_from[4096]; /* quant.init_from of its config: the checkpoint it was fine-tuned from, or "" */
} RunLog;

/* Reads DIR/metrics.jsonl (training loss: the cross-entropy "ce" where a
 * distillation run logs it beside its mixed objective, else "loss") (and the config of DIR/checkpoint.h5 when there):
 * a missing file, a line that is not a JSON object with a numeric iter, or
 * non-finite numbers fail in one line naming the file and line. */
void runlog_read(const char *dir, RunLog *r);
void runlog_free(RunLog *r);

/* qat plot: reads the run directories, draws a run fine-tuned from another
 * one of them (quant.init_from) from where that one ended, writes out
 * (title NULL: the directories) and a line per run to log. */
void plot_run_dirs(const char *const *dirs, int n, const char *out, const char *title, FILE *log);

/* Loss against step for every run on one figure: training loss thin,
 * validation as dots joined, learning rate dotted on a second axis. */
void plot_runs(const char *path, const RunLog *runs, int n, const char *title);

/* The comparison's table of relative output errors: err[layer * n_methods + m]. */
void plot_layer_errors(const char *path, const char *const *layers, int n_layers, const char *const *methods,
                       int n_methods, const double *err, const char *title);

#endif
