/* chart.h: the drawing pieces qat's PNG figures share, over cairo: a
 * canvas with a title, panels with linear axes (grid, ticks, labels, an
 * optional second y axis on the right), polylines with markers, horizontal
 * reference lines, a legend column, and the PNG written atomically. The
 * figures themselves (qat compare's, qat plot's) are in plot.c. */
#ifndef QAT_CHART_H
#define QAT_CHART_H

#include <cairo.h>
#include <stdbool.h>

typedef struct Chart {
    cairo_surface_t *sf;
    cairo_t *cr;
    int w, h;
    double legend_x, legend_y; /* where the next legend entry goes */
} Chart;

/* A plotting area at (px, py) of size pw x ph showing [x0,x1] x [y0,y1]. */
typedef struct Panel {
    double px, py, pw, ph;
    double x0, x1, y0, y1;
} Panel;

typedef struct Style {
    const double *rgb;
    double width;
    int dash;      /* 0 solid, 1 dashed, 2 dotted */
    double marker; /* radius of a dot at each point; 0 none */
} Style;

void chart_init(Chart *c, int w, int h, const char *title);
/* A colour of the palette (cycles). */
const double *chart_color(int i);
/* Pads the ranges (5%, at least minpad), draws grid, ticks, frame and labels. */
void chart_panel(Chart *c, Panel *p, double px, double py, double pw, double ph, double x0, double x1, double y0,
                 double y1, const char *xlabel, const char *ylabel);
/* Ticks and a label on the right edge for a second quantity on [y0, y1]
 * (the caller maps its values with panel_y2). */
void chart_right_axis(Chart *c, const Panel *p, double y0, double y1, const char *label);
double panel_x(const Panel *p, double x);
double panel_y(const Panel *p, double y);
/* y of a second-axis value v on [y0, y1]. */
double panel_y2(const Panel *p, double v, double y0, double y1);
/* A polyline through the points (x, y in the panel's units; NaN points are
 * skipped), clipped to the frame, with markers. */
void chart_line(Chart *c, const Panel *p, const double *x, const double *y, int n, const Style *s);
/* The same with y already in device units (a second axis). */
void chart_line_dev(Chart *c, const Panel *p, const double *x, const double *ydev, int n, const Style *s);
void chart_hline(Chart *c, const Panel *p, double y, const Style *s);
/* Legend entries go in a column from (x, y) down. */
void chart_legend_at(Chart *c, double x, double y);
void chart_legend(Chart *c, const Style *s, const char *text);
void chart_text(Chart *c, double x, double y, double size, const char *text);
/* Encodes in memory, then writes path atomically; frees the chart. */
void chart_save(Chart *c, const char *path);

#endif
