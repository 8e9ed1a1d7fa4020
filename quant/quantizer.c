/* quantizer.c: scales, zero points, codes and fake quantization (see quantizer.h). */
#include "quantizer.h"

#include "util/util.h"

#include <math.h>
#include <string.h>

/* Normal-float levels (see quantizer.h); tests/test_quant.c derives them
 * from the normal quantiles and checks NF4 against QLoRA's table. */
static const float NF2[4] = {-1.0f, 0.0f, 0.435818165f, 1.0f};
static const float NF3[8] = {-1.0f, -0.535022708f, -0.246931432f, 0.0f, 0.18333748f, 0.381993954f, 0.622985742f, 1.0f};
static const float NF4[16] = {-1.0f,        -0.696192806f, -0.525072959f, -0.394917426f, -0.284441309f, -0.184773403f,
                              -0.091049976f, 0.0f,         0.079580315f,  0.160930144f,  0.246112251f,  0.337915137f,
                              0.440709732f,  0.562616888f, 0.722956644f,  1.0f};

/* NF8: the same construction at 8 bits (128 levels above zero, 127 below),
 * printed to 9 digits from Python's statistics.NormalDist().inv_cdf; the
 * test derives it from the quantiles again. */
static const float NF8[256] = {
    -1.0f, -0.873253377f, -0.808976673f, -0.764345581f, -0.729649777f, -0.701018044f,
    -0.676496999f, -0.654957383f, -0.635685046f, -0.618198474f, -0.602156998f, -0.587310366f,
    -0.573469117f, -0.560486218f, -0.548245178f, -0.536652064f, -0.525629984f, -0.51511516f,
    -0.505054083f, -0.495401399f, -0.486118314f, -0.477171376f, -0.468531529f, -0.460173363f,
    -0.452074525f, -0.444215241f, -0.436577929f, -0.429146883f, -0.421908012f, -0.414848623f,
    -0.407957241f, -0.401223452f, -0.394637779f, -0.388191568f, -0.381876895f, -0.375686484f,
    -0.369613639f, -0.363652182f, -0.357796397f, -0.35204099f, -0.346381042f, -0.340811977f,
    -0.33532953f, -0.329929716f, -0.32460881f, -0.31936332f, -0.314189968f, -0.309085677f,
    -0.304047548f, -0.29907285f, -0.294159006f, -0.289303582f, -0.284504273f, -0.279758897f,
    -0.275065387f, -0.270421777f, -0.265826203f, -0.261276888f, -0.256772143f, -0.252310356f,
    -0.24788999f, -0.243509577f, -0.239167714f, -0.234863058f, -0.230594326f, -0.226360284f,
    -0.222159753f, -0.217991598f, -0.21385473f, -0.209748103f, -0.205670709f, -0.20162158f,
    -0.197599779f, -0.193604408f, -0.189634596f, -0.185689505f, -0.181768323f, -0.177870267f,
    -0.173994579f, -0.170140523f, -0.166307389f, -0.162494486f, -0.158701146f, -0.154926719f,
    -0.151170575f, -0.147432099f, -0.143710697f, -0.140005787f, -0.136316803f, -0.132643197f,
    -0.12898443f, -0.125339979f, -0.121709332f, -0.11809199f, -0.114487465f, -0.110895278f,
    -0.107314962f, -0.103746061f, -0.100188124f, -0.0966407129f, -0.0931033954f, -0.0895757481f,
    -0.0860573548f, -0.0825478063f, -0.0790467004f, -0.0755536409f, -0.0720682377f, -0.0685901065f,
    -0.0651188682f, -0.0616541486f, -0.0581955785f, -0.0547427929f, -0.0512954309f, -0.0478531356f,
    -0.0444155535f, -0.0409823346f, -0.0375531317f, -0.0341276005f, -0.0307053994f, -0.0272861888f,
    -0.0238696315f, -0.0204553917f, -0.0170431355f, -0.0136325302f, -0.0102232443f, -0.00681494726f,
    -0.00340730898f, 0.0f, 0.00338068853f, 0.0067616987f, 0.0101433524f, 0.0135259718f,
    0.0169098799f, 0.0202954005f, 0.0236828584f, 0.0270725798f, 0.0304648924f, 0.0338601255f,
    0.0372586107f, 0.0406606815f, 0.044066674f, 0.0474769268f, 0.0508917817f, 0.0543115834f,
    0.0577366802f, 0.0611674241f, 0.0646041708f, 0.0680472807f, 0.0714971183f, 0.0749540531f,
    0.0784184596f, 0.0818907179f, 0.0853712137f, 0.0888603389f, 0.0923584916f, 0.095866077f,
    0.0993835072f, 0.102911202f, 0.106449589f, 0.109999104f, 0.113560192f, 0.117133308f,
    0.120718914f, 0.124317486f, 0.127929508f, 0.131555476f, 0.135195898f, 0.138851295f,
    0.1425222f, 0.146209161f, 0.14991274f, 0.153633514f, 0.157372076f, 0.161129037f,
    0.164905024f, 0.168700683f, 0.172516682f, 0.176353705f, 0.180212463f, 0.184093686f,
    0.18799813f, 0.191926576f, 0.195879831f, 0.199858733f, 0.203864147f, 0.207896971f,
    0.211958136f, 0.21604861f, 0.220169396f, 0.224321538f, 0.228506123f, 0.23272428f,
    0.236977188f, 0.241266076f, 0.245592225f, 0.249956974f, 0.254361724f, 0.258807938f,
    0.263297152f, 0.267830972f, 0.272411086f, 0.277039265f, 0.281717372f, 0.286447367f,
    0.291231314f, 0.296071392f, 0.300969901f, 0.30592927f, 0.310952072f, 0.316041035f,
    0.321199051f, 0.326429194f, 0.331734735f, 0.33711916f, 0.342586191f, 0.348139804f,
    0.353784259f, 0.359524126f, 0.365364313f, 0.371310111f, 0.377367224f, 0.383541821f,
    0.389840591f, 0.396270798f, 0.402840354f, 0.409557901f, 0.416432903f, 0.423475757f,
    0.430697925f, 0.438112079f, 0.445732292f, 0.453574246f, 0.461655497f, 0.469995792f,
    0.47861745f, 0.487545844f, 0.496809986f, 0.50644328f, 0.516484457f, 0.526978804f,
    0.537979745f, 0.549550954f, 0.561769197f, 0.574728248f, 0.588544397f, 0.603364409f,
    0.61937739f, 0.636833096f, 0.656071486f, 0.677572992f, 0.702050021f, 0.730628768f,
    0.76525653f, 0.809789966f, 0.873890853f, 1.0f
};

const float *quant_levels(const QuantSpec *s, int *n) {
    if (s->cb == QCB_NONE || !quant_codebook_bits(s->bits)) return NULL;
    if (s->cb == QCB_KMEANS) {
        if (!s->lut) qat_fail("quantizer: a kmeans codebook spec without its table");
        *n = 1 << s->bits;
        return s->lut;
    }
    *n = 1 << s->bits;
    return s->bits == 2 ? NF2 : s->bits == 3 ? NF3 : s->bits == 4 ? NF4 : NF8;
}

const char *quant_codebook_name(QCodebook cb) { return cb == QCB_NF ? "nf" : cb == QCB_KMEANS ? "kmeans" : "none"; }

QCodebook quant_codebook_of(const char *name) {
    return !strcmp(name, "nf")       ? QCB_NF
           : !strcmp(name, "kmeans") ? QCB_KMEANS
           : !strcmp(name, "none")   ? QCB_NONE
                                     : (QCodebook)-1;
}

const char *quant_tables_name(QGranularity t) { return t == QG_CHANNEL ? "channel" : t == QG_GROUP ? "group" : "layer"; }

QGranularity quant_tables_of(const char *name) {
    return !strcmp(name, "layer")     ? QG_TENSOR
           : !strcmp(name, "channel") ? QG_CHANNEL
           : !strcmp(name, "group")   ? QG_GROUP
                                      : (QGranularity)-1;
}

const char *quant_tables_invalid(const QuantSpec *s) {
    if (s->tables == QG_TENSOR) return NULL;
    if (s->cb != QCB_KMEANS) return "tables per channel or group are kmeans tables (quant.weight.codebook: kmeans)";
    if (s->gran == QG_TENSOR) return "tables per channel or group need scales per channel or group";
    if (s->tables == QG_GROUP && s->gran != QG_GROUP) return "tables per group need scales per group (granularity group)";
    if (s->tables != QG_CHANNEL && s->tables != QG_GROUP) return "tables are per layer, channel or group";
    if (s->bits > 4) return "tables per channel or group are for 2..4 bits (an 8-bit table is 256 levels)";
    return NULL;
}

void quant_table_sort(const float *table, int n, float *lut, int *perm, const char *what) {
    for (int j = 0; j < n; j++) { /* 16 entries at most: insertion */
        float v = table[j];
        if (!isfinite(v)) qat_fail("%s: level %d of the table is %g", what, j, v);
        v = quant_table_level(v, n);
        int at = j;
        for (; at > 0 && lut[at - 1] > v; at--) {
            lut[at] = lut[at - 1];
            if (perm) perm[at] = perm[at - 1];
        }
        lut[at] = v;
        if (perm) perm[at] = j;
    }
}

size_t quant_n_scales(const QuantSpec *s, int rows, int cols) {
    switch (s->gran) {
    case QG_TENSOR: return 1;
    case QG_CHANNEL: return (size_t)rows;
    default: return (size_t)rows * (size_t)quant_groups(cols, s->group);
    }
}

void quant_params_from_range(const QuantSpec *s, float lo, float hi, float *scale, float *zp) {
    int qmin = quant_qmin(s), qmax = quant_qmax(s);
    if (s->sym) {
        float amax = fmaxf(fabsf(lo), fabsf(hi));
        *scale = s->cb     ? amax /* codebook levels reach +-1 */
                 : s->full ? fmaxf(fmaxf(-lo, 0.0f) / (float)-qmin, fmaxf(hi, 0.0f) / (float)qmax)
                           : amax / (float)qmax;
        if (zp) *zp = 0.0f;
        return;
    }
    lo = fminf(lo, 0.0f); /* zero must be representable exactly */
    hi = fmaxf(hi, 0.0f);
    float sc = (hi - lo) / (float)(qmax - qmin);
    float z = sc > 0.0f ? rintf(-lo / sc) : 0.0f;
    z = fminf(fmaxf(z, (float)qmin), (float)qmax);
    *scale = sc;
    if (zp) *zp = z;
}

QuantSpec quant_spec_of_format(QFormat f) {
    return (QuantSpec){.bits = f == QF_Q8_0 ? 8 : 4, .sym = f != QF_Q4_1, .gran = QG_GROUP, .group = QBLOCK, .fmt = f};
}

void quant_minmax(const QuantSpec *s, const float *x, int rows, int cols, float *scale, float *zp) {
    size_t ns = quant_n_scales(s, rows, cols);
    if (s->fmt) { /* ggml's scales (and q4_1's minima), as stored: half precision */
        float tmp[QBLOCK];
#pragma omp parallel for schedule(static) private(tmp) if (ns > 64)
        for (size_t k = 0; k < ns; k++) block_fake(s->fmt, x + k * QBLOCK, tmp, NULL, &scale[k], zp ? &zp[k] : NULL);
        return;
    }
#pragma omp parallel for schedule(static) if (ns > 64)
    for (size_t k = 0; k < ns; k++) {
        size_t at, per;
        quant_run(s, rows, cols, k, &at, &per);
        const float *p = x + at;
        float lo = p[0], hi = p[0];
        for (size_t i = 1; i < per; i++) {
            lo = fminf(lo, p[i]);
            hi = fmaxf(hi, p[i]);
        }
        quant_params_from_range(s, lo, hi, &scale[k], zp ? &zp[k] : NULL);
    }
}

void quant_fake(const QuantSpec *s, const float *x, int rows, int cols, const float *scale, const float *zp,
                float *out) {
    int qmin = quant_qmin(s), qmax = quant_qmax(s);
    size_t ns = quant_n_scales(s, rows, cols);
    if (s->fmt) {
#pragma omp parallel for schedule(static) if (ns > 256)
        for (size_t k = 0; k < ns; k++) {
            if (scale) block_fake_scaled(s->fmt, x + k * QBLOCK, scale[k], zp ? zp[k] : 0.0f, out + k * QBLOCK, NULL);
            else block_fake(s->fmt, x + k * QBLOCK, out + k * QBLOCK, NULL, NULL, NULL);
        }
        return;
    }
    int nl = 0;
    bool table = quant_levels(s, &nl) != NULL;
#pragma omp parallel for schedule(static) if ((size_t)rows * cols > 65536)
    for (size_t k = 0; k < ns; k++) {
        float sc = scale[k], z = zp ? zp[k] : 0.0f, inv = sc > 0.0f ? 1.0f / sc : 0.0f;
        size_t at, per;
        quant_run(s, rows, cols, k, &at, &per);
        int nk = nl;
        const float *lv = table ? quant_levels_at(s, quant_table_of_scale(s, cols, k), &nk) : NULL;
        if (lv)
            for (size_t i = at; i < at + per; i++) out[i] = sc * lv[quant_level_index(lv, nl, x[i] * inv)];
        else
            for (size_t i = at; i < at + per; i++) out[i] = quant_dequant(quant_code(x[i], sc, z, qmin, qmax), sc, z);
    }
}

void quant_fake_groups(const float *x, int n_groups, int gsize, int bits, float *out) {
    QuantSpec s = {.bits = bits, .sym = true, .gran = QG_TENSOR};
    int qmin = quant_qmin(&s), qmax = quant_qmax(&s);
    for (int g = 0; g < n_groups; g++) {
        const float *xg = x + (size_t)g * gsize;
        float *yg = out + (size_t)g * gsize;
        float amax = 0.0f;
        for (int j = 0; j < gsize; j++) amax = fmaxf(amax, fabsf(xg[j]));
        float sc;
        quant_params_from_range(&s, -amax, amax, &sc, NULL);
        for (int j = 0; j < gsize; j++) yg[j] = quant_dequant(quant_code(xg[j], sc, 0.0f, qmin, qmax), sc, 0.0f);
    }
}
