/* plot.c: qat's figures (drawn with chart.h): qat compare's validation loss
 * against bits per weight and against model bytes, one line per method, the
 * float models as reference lines; qat compare's per-layer quantization
 * error; and qat plot's training curves of one or more runs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/chart.h"
#include "train/compare.h"
#include "train/plot.h"

/* ---- qat compare: loss against size ---- */

/* A line is a method at one activation width (W8A8 rows are their own line). */
static void line_name(const CompareRow *r, char *buf, size_t n) {
    snprintf(buf, n, "%s%s", r->method, r->a_bits < 32 ? " (int8 act)" : "");
}

/* Float rows (float, float+ft) are reference lines, not points. */
static bool is_reference(const CompareRow *r) { return r->w_bits >= 32 && r->a_bits >= 32; }

typedef struct Line {
    char name[sizeof ((CompareRow *)0)->method + 16];
    int *idx, n; /* rows in order of bits */
    int color;
    bool mixed;
} Line;

/* Groups the quantized rows into lines; a "+mixed" line takes the colour of
 * its method's uniform line and is dashed, so that each method's mixed
 * points read against its own uniform ones. */
static int group_lines(const CompareRow *rows, int n, Line *lines) {
    int nl = 0, colors = 0;
    bool *done = xcalloc((size_t)n, sizeof(bool));
    for (int i = 0; i < n; i++) {
        if (done[i] || is_reference(&rows[i])) continue;
        Line *L = &lines[nl++];
        line_name(&rows[i], L->name, sizeof L->name);
        L->idx = xmalloc((size_t)n * sizeof(int));
        L->n = 0;
        char other[sizeof L->name]; /* whole names: a cut one could merge two lines */
        for (int j = i; j < n; j++) {
            line_name(&rows[j], other, sizeof other);
            if (!done[j] && !strcmp(L->name, other)) L->idx[L->n++] = j, done[j] = true;
        }
        for (int a = 1; a < L->n; a++) /* insertion sort by bits */
            for (int c = a; c > 0 && rows[L->idx[c]].bits_per_weight < rows[L->idx[c - 1]].bits_per_weight; c--) {
                int t = L->idx[c];
                L->idx[c] = L->idx[c - 1], L->idx[c - 1] = t;
            }
        char base[sizeof L->name];
        snprintf(base, sizeof base, "%s", L->name);
        char *plus = strstr(base, "+mixed");
        L->mixed = plus != NULL;
        if (plus) memmove(plus, plus + 6, strlen(plus + 6) + 1);
        L->color = -1;
        for (int c = 0; c < nl - 1 && L->mixed; c++) {
            if (lines[c].mixed) continue;
            bool same = !strcmp(lines[c].name, base);
            /* qat+mixed(+kd): the uniform QAT line of the same kind (qat-lsq+kd, say) */
            bool qat = !strncmp(base, "qat", 3) && !strncmp(lines[c].name, "qat", 3) &&
                       (strstr(base, "+kd") != NULL) == (strstr(lines[c].name, "+kd") != NULL) &&
                       !strstr(lines[c].name, "act)");
            if (same || (qat && L->color < 0)) L->color = lines[c].color;
            if (same) break;
        }
        if (L->color < 0) L->color = colors++;
    }
    free(done);
    return nl;
}

/* One panel: x is bits per weight (bytes false) or the model's kB. */
static void size_panel(Chart *c, const CompareRow *rows, int n, const Line *lines, int nl, double px, double pw,
                       bool bytes, double y0, double y1, bool *clipped) {
    double x0 = INFINITY, x1 = -INFINITY;
    for (int i = 0; i < n; i++) {
        if (is_reference(&rows[i])) continue; /* the float file's size is in the legend */
        double x = bytes ? rows[i].bytes / 1000.0 : rows[i].bits_per_weight;
        x0 = fmin(x0, x), x1 = fmax(x1, x);
    }
    if (!isfinite(x0)) x0 = 2.0, x1 = 9.0;
    Panel p;
    chart_panel(c, &p, px, 60, pw, 470, x0, x1, y0, y1,
                bytes ? "model file, kB (qat export)" : "bits per weight (codes + fp32 scales)", "validation loss");
    for (int i = 0; i < n; i++) {
        if (!is_reference(&rows[i])) continue;
        bool ft = strcmp(rows[i].method, "float") != 0;
        static const double grey[] = {0.3, 0.3, 0.3}, dark[] = {0.1, 0.1, 0.1};
        Style s = {ft ? dark : grey, ft ? 1.5 : 1.0, ft ? 2 : 1, 0};
        chart_hline(c, &p, rows[i].val_loss, &s);
    }
    double *xs = xmalloc((size_t)n * sizeof(double)), *ys = xmalloc((size_t)n * sizeof(double));
    for (int l = 0; l < nl; l++) {
        const Line *L = &lines[l];
        for (int a = 0; a < L->n; a++) {
            const CompareRow *r = &rows[L->idx[a]];
            xs[a] = bytes ? r->bytes / 1000.0 : r->bits_per_weight;
            ys[a] = r->val_loss;
        }
        Style s = {chart_color(L->color), 2, L->mixed ? 1 : 0, L->mixed ? 5 : 4};
        chart_line(c, &p, xs, ys, L->n, &s);
        for (int a = 0; a < L->n; a++) {
            if (ys[a] <= p.y1) continue;
            /* above the plotted range: a triangle at the top edge */
            double x = panel_x(&p, xs[a]);
            cairo_move_to(c->cr, x, p.py + 2);
            cairo_line_to(c->cr, x - 5, p.py + 10);
            cairo_line_to(c->cr, x + 5, p.py + 10);
            cairo_close_path(c->cr);
            cairo_fill(c->cr);
            *clipped = true;
        }
    }
    free(xs), free(ys);
}

void compare_plot(const char *path, const CompareRow *rows, int n, const char *title) {
    double y0 = INFINITY, y1 = -INFINITY, ref = INFINITY;
    for (int i = 0; i < n; i++) {
        y0 = fmin(y0, rows[i].val_loss), y1 = fmax(y1, rows[i].val_loss);
        if (is_reference(&rows[i])) ref = fmin(ref, rows[i].val_loss);
    }
    if (!isfinite(y0)) y0 = 0.0, y1 = 1.0;
    /* losses far above the float model (RTN at 2 bits, say) would squash the rest: the range
     * stops at 0.25 above the best float row, and rows beyond it are marked at the top edge */
    if (isfinite(ref) && y1 > ref + 0.25) y1 = ref + 0.25;
    Line *lines = xcalloc((size_t)(n > 0 ? n : 1), sizeof(Line));
    int nl = group_lines(rows, n, lines);
    Chart c;
    chart_init(&c, 1320, 600, title);
    bool clipped = false;
    size_panel(&c, rows, n, lines, nl, 90, 450, false, y0, y1, &clipped);
    size_panel(&c, rows, n, lines, nl, 630, 450, true, y0, y1, &clipped);
    chart_legend_at(&c, 1110, 80);
    char buf[128];
    for (int i = 0; i < n; i++) {
        if (!is_reference(&rows[i])) continue;
        bool ft = strcmp(rows[i].method, "float") != 0;
        static const double grey[] = {0.3, 0.3, 0.3}, dark[] = {0.1, 0.1, 0.1};
        Style s = {ft ? dark : grey, ft ? 1.5 : 1.0, ft ? 2 : 1, 0};
        snprintf(buf, sizeof buf, "%.40s (%.4f, %.0f kB)", rows[i].method, rows[i].val_loss, rows[i].bytes / 1000.0);
        chart_legend(&c, &s, buf);
    }
    for (int l = 0; l < nl; l++) {
        Style s = {chart_color(lines[l].color), 2, lines[l].mixed ? 1 : 0, lines[l].mixed ? 5 : 4};
        chart_legend(&c, &s, lines[l].name);
        free(lines[l].idx);
    }
    free(lines);
    cairo_set_source_rgb(c.cr, 0.3, 0.3, 0.3);
    chart_text(&c, 1110, c.legend_y + 6, 10, "lower is better; left: size per weight,");
    chart_text(&c, 1110, c.legend_y + 20, 10, "right: the whole file (embeddings too)");
    double note_y = c.legend_y + 40;
    for (int i = 0; i < n; i++)
        if (rows[i].w_bits < 4) { /* the right panel would otherwise look like a bug */
            chart_text(&c, 1110, note_y, 10, "2- and 3-bit codes are stored in 4 bits:");
            chart_text(&c, 1110, note_y + 14, 10, "their files are int4's size");
            note_y += 34;
            break;
        }
    if (clipped) {
        snprintf(buf, sizeof buf, "triangles at the top: loss above %.2f", y1);
        chart_text(&c, 1110, note_y, 10, buf);
    }
    chart_save(&c, path);
}

/* ---- qat compare: the error of each layer ---- */

void plot_layer_errors(const char *path, const char *const *layers, int n_layers, const char *const *methods,
                       int n_methods, const double *err, const char *title) {
    /* a table of cells: rows are layers, columns methods, each cell coloured
     * by its relative output error on a log scale (white 0.1% .. red 100%) */
    int cw = 130, ch = 22, lx = 230, top = 90;
    int w = lx + cw * n_methods + 40, h = top + ch * n_layers + 70;
    if (w < 640) w = 640;
    Chart c;
    chart_init(&c, w, h, title);
    cairo_t *cr = c.cr;
    cairo_set_source_rgb(cr, 0.25, 0.25, 0.25);
    chart_text(&c, 20, 52, 11,
               "relative output error ||W x - Q x|| / ||W x||: W the float model's weights, Q a row's deployed ones, "
               "x each layer's inputs in the float model; darker = worse, bold = each column's worst layer");
    chart_text(&c, 20, 68, 11,
               "(QAT rows' Q also holds what fine-tuning moved: compare them among themselves, and use the loss "
               "table for the verdict)");
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_text_extents_t te;
    for (int m = 0; m < n_methods; m++) {
        cairo_set_font_size(cr, 12);
        cairo_text_extents(cr, methods[m], &te);
        cairo_move_to(cr, lx + cw * m + cw / 2.0 - te.width / 2, top - 8);
        cairo_show_text(cr, methods[m]);
    }
    char buf[32];
    for (int m = 0; m < n_methods; m++) {
        int worst = 0;
        for (int l = 0; l < n_layers; l++)
            if (err[(size_t)l * n_methods + m] > err[(size_t)worst * n_methods + m]) worst = l;
        for (int l = 0; l < n_layers; l++) {
            double e = err[(size_t)l * n_methods + m];
            double t = isfinite(e) && e > 0 ? (log10(e) + 3.0) / 3.0 : 0.0; /* 0.1% -> 0, 100% -> 1 */
            t = t < 0 ? 0 : t > 1 ? 1 : t;
            cairo_set_source_rgb(cr, 1.0 - 0.15 * t, 1.0 - 0.85 * t, 1.0 - 0.85 * t);
            cairo_rectangle(cr, lx + cw * m, top + ch * l, cw - 2, ch - 2);
            cairo_fill(cr);
            if (isfinite(e)) snprintf(buf, sizeof buf, "%.2f%%", 100.0 * e);
            else snprintf(buf, sizeof buf, "-");
            cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                                   l == worst ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
            cairo_set_font_size(cr, 12);
            cairo_text_extents(cr, buf, &te);
            cairo_set_source_rgb(cr, t > 0.6 ? 1 : 0, t > 0.6 ? 1 : 0, t > 0.6 ? 1 : 0);
            cairo_move_to(cr, lx + cw * m + cw / 2.0 - te.width / 2, top + ch * l + 15);
            cairo_show_text(cr, buf);
        }
    }
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_source_rgb(cr, 0, 0, 0);
    for (int l = 0; l < n_layers; l++) chart_text(&c, 20, top + ch * l + 15, 12, layers[l]);
    chart_save(&c, path);
}

/* ---- qat plot: training curves ---- */

void plot_runs(const char *path, const RunLog *runs, int n, const char *title) {
    double x1 = 0, y0 = INFINITY, y1 = -INFINITY, lr1 = 0;
    long tps = runs[0].tokens_per_step;
    for (int r = 0; r < n; r++) {
        const RunLog *L = &runs[r];
        if (L->tokens_per_step != tps) tps = 0;
        double last = L->n ? L->iter[L->n - 1] : 0;
        x1 = fmax(x1, last);
        for (int i = 0; i < L->n; i++) {
            if (isfinite(L->val[i])) y0 = fmin(y0, L->val[i]), y1 = fmax(y1, L->val[i]);
            /* the first tenth of a run (the loss falling from log V) would squash the rest */
            if (isfinite(L->loss[i]) && L->iter[i] - L->iter[0] >= 0.1 * (last - L->iter[0])) y0 = fmin(y0, L->loss[i]), y1 = fmax(y1, L->loss[i]);
            if (isfinite(L->lr[i])) lr1 = fmax(lr1, L->lr[i]);
        }
    }
    if (!isfinite(y0)) y0 = 0, y1 = 1;
    Chart c;
    chart_init(&c, 1260, 600, title);
    Panel p;
    char xl[128];
    if (tps) snprintf(xl, sizeof xl, "step (%ld tokens each)", tps);
    else snprintf(xl, sizeof xl, "step");
    chart_panel(&c, &p, 90, 60, 760, 460, 0, x1, y0, y1, xl, "loss");
    bool lr = lr1 > 0;
    if (lr) chart_right_axis(&c, &p, 0, lr1 * 1.05, "learning rate (dotted)");
    chart_legend_at(&c, 960, 80);
    char buf[300];
    for (int r = 0; r < n; r++) {
        const RunLog *L = &runs[r];
        const double *rgb = chart_color(r);
        Style train = {rgb, 1.0, 0, 0}, val = {rgb, 2.5, 0, 4}, lrs = {rgb, 1.0, 2, 0};
        chart_line(&c, &p, L->iter, L->loss, L->n, &train);
        /* validation points only (the lines between them skip the NaN steps) */
        int nv = 0;
        double *vx = xmalloc((size_t)(L->n ? L->n : 1) * sizeof(double)), *vy = xmalloc((size_t)(L->n ? L->n : 1) * sizeof(double));
        for (int i = 0; i < L->n; i++)
            if (isfinite(L->val[i])) vx[nv] = L->iter[i], vy[nv++] = L->val[i];
        chart_line(&c, &p, vx, vy, nv, &val);
        if (lr) {
            double *d = xmalloc((size_t)(L->n ? L->n : 1) * sizeof(double));
            for (int i = 0; i < L->n; i++) d[i] = isfinite(L->lr[i]) ? panel_y2(&p, L->lr[i], 0, lr1 * 1.05) : NAN;
            chart_line_dev(&c, &p, L->iter, d, L->n, &lrs);
            free(d);
        }
        /* the directory's last component: runs/demo/qat-int8 -> qat-int8 */
        const char *nm = L->name;
        size_t len = strlen(nm);
        while (len > 1 && nm[len - 1] == '/') len--;
        const char *base = nm + len;
        while (base > nm && base[-1] != '/') base--;
        int bl = (int)(nm + len - base);
        if (nv) snprintf(buf, sizeof buf, "%.*s validation (last %.4f)", bl > 36 ? 36 : bl, base, vy[nv - 1]);
        else snprintf(buf, sizeof buf, "%.*s validation (none)", bl > 36 ? 36 : bl, base);
        chart_legend(&c, &val, buf);
        snprintf(buf, sizeof buf, "%.*s training", bl > 36 ? 36 : bl, base);
        chart_legend(&c, &train, buf);
        free(vx), free(vy);
    }
    cairo_set_source_rgb(c.cr, 0.3, 0.3, 0.3);
    chart_text(&c, 960, c.legend_y + 6, 10, "thin: training loss of each logged step;");
    chart_text(&c, 960, c.legend_y + 20, 10, "dots: validation; dotted: learning rate");
    chart_save(&c, path);
}
