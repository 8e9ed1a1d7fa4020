/* progress.c: progress lines (see progress.h). */
#include "util/progress.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

#include "util/util.h"

void progress_fmt_eta(char *buf, size_t n, double s) {
    if (s < 0 || !isfinite(s)) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
}

void progress_begin(Progress *p, FILE *f, int total, const char *what) {
    memset(p, 0, sizeof *p);
    p->f = f;
    p->total = total;
    snprintf(p->what, sizeof p->what, "%s", what);
    p->tty = f && isatty(fileno(f));
    p->t0 = p->last = now_seconds();
}

void progress_update(Progress *p, int done, const char *what_now) {
    if (!p->f) return;
    double now = now_seconds();
    if (now - p->last < (p->tty ? 0.1 : 5.0) && done < p->total) return;
    if (!p->tty && done >= p->total) return; /* a plain log gets the caller's result line instead */
    char eta[32];
    progress_fmt_eta(eta, sizeof eta, done > 0 ? (now - p->t0) / done * (p->total - done) : NAN);
    fprintf(p->f, "%s%s %d/%d%s%s, ETA %s%s", p->tty ? "\r" : "", p->what, done, p->total, what_now ? " " : "",
            what_now ? what_now : "", eta, p->tty ? "\033[K" : "\n");
    fflush(p->f);
    p->last = now;
    p->drawn = true;
}

void progress_end(Progress *p) {
    if (p->f && p->tty && p->drawn) fputs("\r\033[K", p->f), fflush(p->f);
    p->drawn = false;
}
