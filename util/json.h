/* json.h: JSON output through cJSON (Debian's libcjson), so every file and
 * --json line qat writes is valid JSON: a missing or non-finite number is
 * null, never a bare nan. */
#ifndef QAT_JSON_H
#define QAT_JSON_H

#include <cJSON.h>
#include <stdio.h>

/* Adds key: v rounded to digits decimals (null when v is not finite), so
 * files read 1.6442 rather than a float's 17-digit expansion. */
void json_add_num(cJSON *o, const char *key, double v, int digits);
/* Prints o compactly to f with a newline and deletes it. */
void json_print_line(cJSON *o, FILE *f);
/* o compactly as a malloc'd string with a newline; deletes o. */
char *json_take_line(cJSON *o);

#endif
