/* plot.c: the comparison's PNG (cairo): validation loss against bits per
 * weight, one line per method through its rows in order of bits, the float
 * model as a dashed horizontal line. */
#include <cairo.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/compare.h"

#define PI 3.14159265358979323846
#define W 960
#define H 600
#define ML 80  /* margins: left, right (legend), top, bottom */
#define MR 250
#define MT 50
#define MB 60

static const double PALETTE[][3] = {{0.12, 0.47, 0.71}, {1.00, 0.50, 0.05}, {0.17, 0.63, 0.17}, {0.84, 0.15, 0.16},
                                    {0.58, 0.40, 0.74}, {0.55, 0.34, 0.29}, {0.89, 0.47, 0.76}, {0.50, 0.50, 0.50},
                                    {0.74, 0.74, 0.13}, {0.09, 0.75, 0.81}, {0.00, 0.00, 0.00}, {0.40, 0.65, 1.00},
                                    {1.00, 0.75, 0.40}, {0.60, 0.85, 0.55}};

/* A line is a method at one activation width (W8A8 rows are their own line). */
static void line_name(const CompareRow *r, char *buf, size_t n) {
    snprintf(buf, n, "%s%s", r->method, r->a_bits < 32 ? " (int8 act)" : "");
}

static double nice_step(double range) {
    double raw = range / 6.0, mag = pow(10.0, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1.0 : f < 3.5 ? 2.0 : f < 7.5 ? 5.0 : 10.0) * mag;
}

/* Float rows (float, float+ft) are reference lines, not points. */
static bool is_reference(const CompareRow *r) { return r->w_bits >= 32 && r->a_bits >= 32; }

typedef struct PngBuf {
    unsigned char *data;
    size_t n, cap;
} PngBuf;

static cairo_status_t png_append(void *user, const unsigned char *data, unsigned int len) {
    PngBuf *b = user;
    if (b->n + len > b->cap) {
        b->cap = (b->n + len) * 2;
        b->data = xrealloc(b->data, b->cap);
    }
    memcpy(b->data + b->n, data, len);
    b->n += len;
    return CAIRO_STATUS_SUCCESS;
}

void compare_plot(const char *path, const CompareRow *rows, int n, const char *title) {
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int i = 0; i < n; i++) {
        y0 = fmin(y0, rows[i].val_loss), y1 = fmax(y1, rows[i].val_loss);
        if (is_reference(&rows[i])) continue;
        x0 = fmin(x0, rows[i].bits_per_weight), x1 = fmax(x1, rows[i].bits_per_weight);
    }
    if (!isfinite(x0)) x0 = 2.0, x1 = 9.0;
    if (!isfinite(y0)) y0 = 0.0, y1 = 1.0;
    /* losses far above the float model (RTN at 2 bits, say) would squash the rest: the range
     * stops at 0.25 above the best float row, and rows beyond it are marked at the top edge */
    double ref = INFINITY;
    for (int i = 0; i < n; i++)
        if (is_reference(&rows[i])) ref = fmin(ref, rows[i].val_loss);
    if (isfinite(ref) && y1 > ref + 0.25) y1 = ref + 0.25;
    double xpad = fmax(0.25, 0.05 * (x1 - x0)), ypad = fmax(1e-3, 0.06 * (y1 - y0));
    x0 -= xpad, x1 += xpad, y0 -= ypad, y1 += ypad;
    double pw = W - ML - MR, ph = H - MT - MB;
#define PX(x) (ML + ((x) - x0) / (x1 - x0) * pw)
#define PY(y) (MT + ph - ((y) - y0) / (y1 - y0) * ph)

    cairo_surface_t *sf = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, W, H);
    cairo_t *cr = cairo_create(sf);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    char buf[256];
    /* grid and tick labels */
    cairo_set_font_size(cr, 12);
    cairo_set_line_width(cr, 1);
    double xs = nice_step(x1 - x0), ys = nice_step(y1 - y0);
    for (double x = ceil(x0 / xs) * xs; x <= x1; x += xs) {
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, PX(x), MT);
        cairo_line_to(cr, PX(x), MT + ph);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
        snprintf(buf, sizeof buf, "%g", x);
        cairo_move_to(cr, PX(x) - 8, MT + ph + 18);
        cairo_show_text(cr, buf);
    }
    for (double y = ceil(y0 / ys) * ys; y <= y1; y += ys) {
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, ML, PY(y));
        cairo_line_to(cr, ML + pw, PY(y));
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
        snprintf(buf, sizeof buf, "%.3g", y);
        cairo_move_to(cr, ML - 50, PY(y) + 4);
        cairo_show_text(cr, buf);
    }
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_rectangle(cr, ML, MT, pw, ph);
    cairo_stroke(cr);
    cairo_set_font_size(cr, 14);
    cairo_move_to(cr, ML + pw / 2 - 140, H - 15);
    cairo_show_text(cr, "bits per weight (codes + fp32 scales)");
    cairo_save(cr);
    cairo_move_to(cr, 20, MT + ph / 2 + 50);
    cairo_rotate(cr, -PI / 2);
    cairo_show_text(cr, "validation loss");
    cairo_restore(cr);
    cairo_set_font_size(cr, 15);
    cairo_move_to(cr, ML, 30);
    cairo_show_text(cr, title);
    /* float references: dashed (float) and dotted (float+ft, one per schedule) */
    int legend = 0;
    cairo_set_font_size(cr, 12);
    for (int i = 0; i < n; i++) {
        if (!is_reference(&rows[i])) continue;
        bool ft = strcmp(rows[i].method, "float") != 0;
        double dash[] = {6, 4}, dot[] = {2, 3};
        cairo_set_dash(cr, ft ? dot : dash, 2, 0);
        cairo_set_source_rgb(cr, ft ? 0.1 : 0.3, ft ? 0.1 : 0.3, ft ? 0.1 : 0.3);
        cairo_set_line_width(cr, ft ? 1.5 : 1.0);
        double ly = MT + 20 + 22 * legend++;
        cairo_move_to(cr, ML, PY(rows[i].val_loss));
        cairo_line_to(cr, ML + pw, PY(rows[i].val_loss));
        cairo_stroke(cr);
        cairo_move_to(cr, W - MR + 20, ly);
        cairo_line_to(cr, W - MR + 50, ly);
        cairo_stroke(cr);
        cairo_set_dash(cr, NULL, 0, 0);
        snprintf(buf, sizeof buf, "%s (%.4f)", rows[i].method, rows[i].val_loss);
        cairo_move_to(cr, W - MR + 58, ly + 4);
        cairo_show_text(cr, buf);
    }
    /* one line per method, points in order of bits */
    char names[32][sizeof rows[0].method + 16]; /* uniform lines' names, in colour order */
    bool clipped = false;
    int n_names = 0;
    bool *done = xcalloc((size_t)n, sizeof(bool));
    int *idx = xmalloc((size_t)n * sizeof(int));
    int color = 0;
    for (int i = 0; i < n; i++) {
        if (done[i] || is_reference(&rows[i])) continue;
        char name[sizeof rows[i].method + 16], other[sizeof rows[i].method + 16]; /* whole names: a cut one could merge two lines */
        line_name(&rows[i], name, sizeof name);
        int m = 0;
        for (int j = i; j < n; j++) {
            line_name(&rows[j], other, sizeof other);
            if (!done[j] && !strcmp(name, other)) idx[m++] = j, done[j] = true;
        }
        for (int a = 1; a < m; a++) /* insertion sort by bits */
            for (int c = a; c > 0 && rows[idx[c]].bits_per_weight < rows[idx[c - 1]].bits_per_weight; c--) {
                int t = idx[c];
                idx[c] = idx[c - 1], idx[c - 1] = t;
            }
        /* a "+mixed" line takes the colour of its method's uniform line and is dashed, so that
         * each method's mixed-precision points read against its own uniform ones */
        char base[sizeof name];
        snprintf(base, sizeof base, "%s", name);
        char *plus = strstr(base, "+mixed");
        bool mixed = plus != NULL;
        if (plus) memmove(plus, plus + 6, strlen(plus + 6) + 1);
        int ci = -1;
        for (int c = 0; c < n_names; c++)
            if (!strcmp(names[c], base)) ci = c;
        /* qat+mixed(+kd): the uniform QAT line of the same kind (qat-lsq+kd, say) */
        bool kd = strstr(base, "+kd") != NULL;
        for (int c = 0; c < n_names && ci < 0 && mixed && !strncmp(base, "qat", 3); c++)
            if (!strncmp(names[c], "qat", 3) && (strstr(names[c], "+kd") != NULL) == kd && !strstr(names[c], "act)"))
                ci = c;
        if (ci < 0 && n_names < (int)(sizeof names / sizeof *names)) {
            snprintf(names[n_names], sizeof names[0], "%s", base);
            ci = n_names++;
            color++;
        }
        const double *rgb = PALETTE[(ci < 0 ? color : ci) % (int)(sizeof PALETTE / sizeof *PALETTE)];
        double dash[] = {7, 4};
        cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
        cairo_set_line_width(cr, 2);
        cairo_set_dash(cr, dash, mixed ? 2 : 0, 0);
        cairo_save(cr); /* lines stop at the frame */
        cairo_rectangle(cr, ML, MT, pw, ph);
        cairo_clip(cr);
        for (int a = 0; a < m; a++) {
            const CompareRow *r = &rows[idx[a]];
            if (a == 0) cairo_move_to(cr, PX(r->bits_per_weight), PY(r->val_loss));
            else cairo_line_to(cr, PX(r->bits_per_weight), PY(r->val_loss));
        }
        cairo_stroke(cr);
        cairo_restore(cr);
        for (int a = 0; a < m; a++) {
            const CompareRow *r = &rows[idx[a]];
            if (r->val_loss > y1) { /* above the plotted range: a triangle at the top edge */
                double x = PX(r->bits_per_weight);
                cairo_move_to(cr, x, MT + 2);
                cairo_line_to(cr, x - 5, MT + 10);
                cairo_line_to(cr, x + 5, MT + 10);
                cairo_close_path(cr);
                cairo_fill(cr);
                clipped = true;
                continue;
            }
            cairo_arc(cr, PX(r->bits_per_weight), PY(r->val_loss), mixed ? 5 : 4, 0, 2 * PI);
            cairo_fill(cr);
        }
        double ly = MT + 20 + 22 * legend++;
        cairo_move_to(cr, W - MR + 20, ly);
        cairo_line_to(cr, W - MR + 50, ly);
        cairo_stroke(cr);
        cairo_set_dash(cr, NULL, 0, 0);
        cairo_arc(cr, W - MR + 35, ly, 4, 0, 2 * PI);
        cairo_fill(cr);
        cairo_set_source_rgb(cr, 0, 0, 0);
        cairo_move_to(cr, W - MR + 58, ly + 4);
        cairo_show_text(cr, name);
    }
    if (clipped) {
        snprintf(buf, sizeof buf, "triangles at the top: loss above %.2f", y1);
        cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
        cairo_move_to(cr, W - MR + 20, MT + 20 + 22 * legend + 10);
        cairo_set_font_size(cr, 10);
        cairo_show_text(cr, buf);
    }
    free(done), free(idx);
    cairo_destroy(cr);
    /* encoded in memory, then written atomically: a plot is whole or absent,
     * and a full disk leaves no temporary file */
    PngBuf png = {0};
    cairo_status_t st = cairo_surface_write_to_png_stream(sf, png_append, &png);
    cairo_surface_destroy(sf);
    if (st != CAIRO_STATUS_SUCCESS) qat_fail("%s: cannot encode the plot: %s", path, cairo_status_to_string(st));
    xwrite_file_atomic(path, png.data, png.n);
    free(png.data);
}
