/* fuzz_util.c: the shared harness of the fuzz targets (see fuzz_util.h). */
#include "fuzz_util.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "train/config.h"
#include "util/h5io.h"
#include "util/util.h"

jmp_buf fuzz_jmp;

static void on_fail(const char *msg, void *user) {
    (void)msg, (void)user;
    longjmp(fuzz_jmp, 1);
}

void fuzz_init(void) {
    static int done;
    if (done) return;
    done = 1;
    qat_set_error_handler(on_fail, NULL);
    h5_quiet();
}

const char *fuzz_write_file(const uint8_t *data, size_t n) {
    static char path[64];
    if (!path[0]) snprintf(path, sizeof path, "/tmp/qat-fuzz-%ld.h5", (long)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (n && fwrite(data, 1, n, f) != n) abort();
    fclose(f);
    return path;
}

void fuzz_reset_hdf5(void) {
    ssize_t n = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (n <= 0) return;
    hid_t *ids = malloc((size_t)n * sizeof(hid_t));
    n = H5Fget_obj_ids(H5F_OBJ_ALL, H5F_OBJ_ALL, (size_t)n, ids);
    for (ssize_t i = 0; i < n; i++) {
        H5I_type_t t = H5Iget_type(ids[i]);
        if (t == H5I_FILE) H5Fclose(ids[i]);
        else if (t == H5I_DATASET) H5Dclose(ids[i]);
        else if (t == H5I_GROUP) H5Gclose(ids[i]);
        else if (t == H5I_ATTR) H5Aclose(ids[i]);
        else if (t == H5I_DATATYPE) H5Tclose(ids[i]);
    }
    free(ids);
}

int fuzz_model_fits(const struct Config *c) {
    double C = c->model.n_embd, L = c->model.n_layer;
    double params = 12.0 * L * C * C + (256.0 + c->model.block_size) * C;
    return params < 4e6 && c->model.block_size <= 4096;
}
