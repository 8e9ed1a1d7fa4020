/* chart.c: figure pieces over cairo (see chart.h). */
#include "train/chart.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

#define PI 3.14159265358979323846

static const double PALETTE[][3] = {{0.12, 0.47, 0.71}, {1.00, 0.50, 0.05}, {0.17, 0.63, 0.17}, {0.84, 0.15, 0.16},
                                    {0.58, 0.40, 0.74}, {0.55, 0.34, 0.29}, {0.89, 0.47, 0.76}, {0.50, 0.50, 0.50},
                                    {0.74, 0.74, 0.13}, {0.09, 0.75, 0.81}, {0.00, 0.00, 0.00}, {0.40, 0.65, 1.00},
                                    {1.00, 0.75, 0.40}, {0.60, 0.85, 0.55}};

const double *chart_color(int i) {
    int n = (int)(sizeof PALETTE / sizeof *PALETTE);
    return PALETTE[((i % n) + n) % n];
}

void chart_init(Chart *c, int w, int h, const char *title) {
    c->w = w, c->h = h;
    c->sf = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, w, h);
    c->cr = cairo_create(c->sf);
    c->legend_x = c->legend_y = 0;
    cairo_set_source_rgb(c->cr, 1, 1, 1);
    cairo_paint(c->cr);
    cairo_select_font_face(c->cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_source_rgb(c->cr, 0, 0, 0);
    chart_text(c, 20, 30, 15, title);
}

void chart_text(Chart *c, double x, double y, double size, const char *text) {
    cairo_set_font_size(c->cr, size);
    cairo_move_to(c->cr, x, y);
    cairo_show_text(c->cr, text);
}

static double nice_step(double range) {
    double raw = range / 6.0, mag = pow(10.0, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1.0 : f < 3.5 ? 2.0 : f < 7.5 ? 5.0 : 10.0) * mag;
}

double panel_x(const Panel *p, double x) { return p->px + (x - p->x0) / (p->x1 - p->x0) * p->pw; }
double panel_y(const Panel *p, double y) { return p->py + p->ph - (y - p->y0) / (p->y1 - p->y0) * p->ph; }
double panel_y2(const Panel *p, double v, double y0, double y1) { return p->py + p->ph - (v - y0) / (y1 - y0) * p->ph; }

/* "12k", "1.5M": tick labels of large counts stay short */
static void tick_label(double v, double step, char *buf, size_t n) {
    double a = fabs(v);
    if (a >= 1e6 && step >= 1e5) snprintf(buf, n, "%gM", v / 1e6);
    else if (a >= 1e4 && step >= 1e3) snprintf(buf, n, "%gk", v / 1e3);
    else snprintf(buf, n, "%.4g", v);
}

void chart_panel(Chart *c, Panel *p, double px, double py, double pw, double ph, double x0, double x1, double y0,
                 double y1, const char *xlabel, const char *ylabel) {
    if (!(x1 > x0)) x0 -= 0.5, x1 += 0.5;
    if (!(y1 > y0)) y0 -= 0.05, y1 += 0.05;
    double xpad = 0.04 * (x1 - x0), ypad = 0.06 * (y1 - y0);
    *p = (Panel){px, py, pw, ph, x0 - xpad, x1 + xpad, y0 - ypad, y1 + ypad};
    cairo_t *cr = c->cr;
    char buf[64];
    cairo_set_font_size(cr, 12);
    cairo_set_line_width(cr, 1);
    cairo_set_dash(cr, NULL, 0, 0);
    double xs = nice_step(p->x1 - p->x0), ys = nice_step(p->y1 - p->y0);
    cairo_text_extents_t te;
    for (double x = ceil(p->x0 / xs) * xs; x <= p->x1; x += xs) {
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, panel_x(p, x), py);
        cairo_line_to(cr, panel_x(p, x), py + ph);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
        tick_label(fabs(x) < xs * 1e-9 ? 0.0 : x, xs, buf, sizeof buf);
        cairo_text_extents(cr, buf, &te);
        cairo_move_to(cr, panel_x(p, x) - te.width / 2, py + ph + 18);
        cairo_show_text(cr, buf);
    }
    for (double y = ceil(p->y0 / ys) * ys; y <= p->y1; y += ys) {
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, px, panel_y(p, y));
        cairo_line_to(cr, px + pw, panel_y(p, y));
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
        tick_label(fabs(y) < ys * 1e-9 ? 0.0 : y, ys, buf, sizeof buf);
        cairo_text_extents(cr, buf, &te);
        cairo_move_to(cr, px - te.width - 8, panel_y(p, y) + 4);
        cairo_show_text(cr, buf);
    }
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_rectangle(cr, px, py, pw, ph);
    cairo_stroke(cr);
    cairo_set_font_size(cr, 14);
    cairo_text_extents(cr, xlabel, &te);
    cairo_move_to(cr, px + pw / 2 - te.width / 2, py + ph + 42);
    cairo_show_text(cr, xlabel);
    cairo_text_extents(cr, ylabel, &te);
    cairo_save(cr);
    cairo_move_to(cr, px - 58, py + ph / 2 + te.width / 2);
    cairo_rotate(cr, -PI / 2);
    cairo_show_text(cr, ylabel);
    cairo_restore(cr);
}

void chart_right_axis(Chart *c, const Panel *p, double y0, double y1, const char *label) {
    cairo_t *cr = c->cr;
    char buf[64];
    cairo_set_font_size(cr, 12);
    cairo_set_source_rgb(cr, 0.35, 0.35, 0.35);
    double ys = nice_step(y1 - y0);
    for (double y = ceil(y0 / ys) * ys; y <= y1 + ys * 1e-9; y += ys) {
        snprintf(buf, sizeof buf, "%.3g", fabs(y) < ys * 1e-9 ? 0.0 : y);
        double d = panel_y2(p, y, y0, y1);
        cairo_move_to(cr, p->px + p->pw, d);
        cairo_line_to(cr, p->px + p->pw + 5, d);
        cairo_stroke(cr);
        cairo_move_to(cr, p->px + p->pw + 8, d + 4);
        cairo_show_text(cr, buf);
    }
    cairo_text_extents_t te;
    cairo_set_font_size(cr, 14);
    cairo_text_extents(cr, label, &te);
    cairo_save(cr);
    cairo_move_to(cr, p->px + p->pw + 62, p->py + p->ph / 2 + te.width / 2);
    cairo_rotate(cr, -PI / 2);
    cairo_show_text(cr, label);
    cairo_restore(cr);
}

static void set_style(cairo_t *cr, const Style *s) {
    static const double dash[] = {7, 4}, dot[] = {2, 3};
    cairo_set_source_rgb(cr, s->rgb[0], s->rgb[1], s->rgb[2]);
    cairo_set_line_width(cr, s->width > 0 ? s->width : 2);
    if (s->dash == 1) cairo_set_dash(cr, dash, 2, 0);
    else if (s->dash == 2) cairo_set_dash(cr, dot, 2, 0);
    else cairo_set_dash(cr, NULL, 0, 0);
}

void chart_line_dev(Chart *c, const Panel *p, const double *x, const double *ydev, int n, const Style *s) {
    cairo_t *cr = c->cr;
    set_style(cr, s);
    cairo_save(cr);
    cairo_rectangle(cr, p->px, p->py, p->pw, p->ph);
    cairo_clip(cr);
    bool pen = false;
    for (int i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(ydev[i])) {
            pen = false;
            continue;
        }
        if (pen) cairo_line_to(cr, panel_x(p, x[i]), ydev[i]);
        else cairo_move_to(cr, panel_x(p, x[i]), ydev[i]), pen = true;
    }
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
    for (int i = 0; s->marker > 0 && i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(ydev[i])) continue;
        cairo_arc(cr, panel_x(p, x[i]), ydev[i], s->marker, 0, 2 * PI);
        cairo_fill(cr);
    }
    cairo_restore(cr);
}

void chart_line(Chart *c, const Panel *p, const double *x, const double *y, int n, const Style *s) {
    double *d = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(double));
    for (int i = 0; i < n; i++) d[i] = isfinite(y[i]) ? panel_y(p, y[i]) : NAN;
    chart_line_dev(c, p, x, d, n, s);
    free(d);
}

void chart_hline(Chart *c, const Panel *p, double y, const Style *s) {
    set_style(c->cr, s);
    cairo_move_to(c->cr, p->px, panel_y(p, y));
    cairo_line_to(c->cr, p->px + p->pw, panel_y(p, y));
    cairo_stroke(c->cr);
    cairo_set_dash(c->cr, NULL, 0, 0);
}

void chart_legend_at(Chart *c, double x, double y) { c->legend_x = x, c->legend_y = y; }

void chart_legend(Chart *c, const Style *s, const char *text) {
    cairo_t *cr = c->cr;
    double x = c->legend_x, y = c->legend_y;
    set_style(cr, s);
    cairo_move_to(cr, x, y);
    cairo_line_to(cr, x + 30, y);
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
    if (s->marker > 0) {
        cairo_arc(cr, x + 15, y, s->marker, 0, 2 * PI);
        cairo_fill(cr);
    }
    cairo_set_source_rgb(cr, 0, 0, 0);
    chart_text(c, x + 38, y + 4, 12, text);
    c->legend_y += 22;
}

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

void chart_save(Chart *c, const char *path) {
    cairo_destroy(c->cr);
    /* a plot is whole or absent, and a full disk leaves no temporary file */
    PngBuf png = {0};
    cairo_status_t st = cairo_surface_write_to_png_stream(c->sf, png_append, &png);
    cairo_surface_destroy(c->sf);
    if (st != CAIRO_STATUS_SUCCESS) qat_fail("%s: cannot encode the plot: %s", path, cairo_status_to_string(st));
    xwrite_file_atomic(path, png.data, png.n);
    free(png.data);
}
