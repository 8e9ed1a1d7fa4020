/* json.c: the few helpers qat adds to cJSON (see json.h). */
#include "json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

void json_add_num(cJSON *o, const char *key, double v, int digits) {
    if (!isfinite(v)) {
        cJSON_AddNullToObject(o, key);
        return;
    }
    double p = pow(10.0, digits), r = round(v * p) / p;
    /* rounding a huge value could overflow; keep it as it is then */
    cJSON_AddNumberToObject(o, key, isfinite(r) ? r : v);
}

char *json_take_line(cJSON *o) {
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s) qat_fail("JSON: out of memory printing an object");
    size_t n = strlen(s);
    char *line = xmalloc(n + 2);
    memcpy(line, s, n);
    line[n] = '\n', line[n + 1] = '\0';
    cJSON_free(s);
    return line;
}

void json_print_line(cJSON *o, FILE *f) {
    char *s = json_take_line(o);
    fputs(s, f);
    free(s);
}
