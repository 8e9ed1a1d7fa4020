/* fuzz_config.c: the text readers. The YAML config reader
 * (config_load_bytes, then config_validate): any input must either load or
 * fail through qat_fail; a config that loads must write out as YAML that
 * loads back to the same YAML (what checkpoints store and read again). Then
 * the same bytes as a run's metrics.jsonl (qat plot's runlog_read). */
#include <stdlib.h>
#include <string.h>

#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_util.h"
#include "train/config.h"
#include "train/plot.h"

static void fuzz_runlog(const uint8_t *data, size_t size) {
    static char dir[64], path[96];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/qat-fuzz-run-%ld", (long)getpid());
        mkdir(dir, 0755);
        snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    }
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    fclose(f);
    if (setjmp(fuzz_jmp)) return;
    RunLog r;
    runlog_read(dir, &r);
    for (int i = 0; i < r.n; i++)
        if (!(r.iter[i] >= 0)) abort(); /* a step that loads is a step number */
    runlog_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_init();
    static Config c, d;
    static char *yaml;
    free(yaml);
    yaml = NULL;
    fuzz_runlog(data, size);
    if (setjmp(fuzz_jmp)) return 0;
    config_defaults(&c);
    config_load_bytes(&c, (const char *)data, size, "fuzz.yaml");
    config_validate(&c, "fuzz.yaml");
    yaml = config_to_yaml(&c);
    config_defaults(&d);
    config_load_string(&d, yaml, "round trip");
    char *again = config_to_yaml(&d);
    if (strcmp(yaml, again)) abort(); /* a config that does not survive its own YAML */
    free(again);
    return 0;
}
