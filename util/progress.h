/* progress.h: the progress line of a long step with a count and an ETA: on
 * a terminal one line redrawn in place (at most every 0.1 s) and erased at
 * the end; otherwise a plain line at most every 5 s, so logs show a step
 * that takes long without filling up on short ones. */
#ifndef QAT_PROGRESS_H
#define QAT_PROGRESS_H

#include <stdbool.h>
#include <stdio.h>

typedef struct Progress {
    FILE *f; /* NULL: silent */
    char what[160];
    int total;
    double t0, last;
    bool tty, drawn;
} Progress;

/* "1m05s" or "1h02m" (negative or non-finite: 0m00s). */
void progress_fmt_eta(char *buf, size_t n, double seconds);
void progress_begin(Progress *p, FILE *f, int total, const char *what);
/* done of total finished; what_now (may be NULL) names the item in hand. */
void progress_update(Progress *p, int done, const char *what_now);
void progress_end(Progress *p);

#endif
