/* fuzz_config.c: the YAML config reader (config_load_bytes, then
 * config_validate). Any input must either load or fail through qat_fail;
 * a config that loads must write out as YAML that loads back to the same
 * YAML (what checkpoints store and read again). */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "train/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_init();
    static Config c, d;
    static char *yaml;
    free(yaml);
    yaml = NULL;
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
