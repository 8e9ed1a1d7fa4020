/* h5io.c: HDF5 helpers (see h5io.h). HDF5's own error stack printing is
 * switched off; every failure becomes one qat_fail line. */
#include "h5io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "util.h"

/* zlib's CRC-32 (IEEE), as Python's zlib.crc32 gives it, in pieces because
 * zlib counts in unsigned int */
static uint32_t crc32_of(const void *data, size_t n) {
    uLong c = crc32(0L, Z_NULL, 0);
    const Bytef *p = data;
    while (n) {
        uInt k = n > (1u << 30) ? 1u << 30 : (uInt)n;
        c = crc32(c, p, k);
        p += k, n -= k;
    }
    return (uint32_t)c;
}

void h5_quiet(void) {
    /* No exit-time close of open files: after a failed write (a full disk)
     * that close crashed inside HDF5. Every file qat writes is closed
     * explicitly before its rename, so nothing depends on it. Only the first
     * call, before HDF5 initialises, takes effect; later ones fail harmlessly. */
    H5dont_atexit();
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

/* A write into the temporary file at loc failed: remove the file (the
 * destination is untouched) and fail naming what. */
static _Noreturn void fail_write(hid_t loc, const char *what, const char *name) {
    char tmp[4096] = "";
    ssize_t n = H5Fget_name(loc, tmp, sizeof tmp);
    if (n > 0 && (size_t)n < sizeof tmp) unlink(tmp);
    qat_fail("%s: cannot write %s %s (disk full?); the file it replaces is unchanged", n > 0 ? tmp : "HDF5", what, name);
}

void h5out_open(H5Out *o, const char *path) {
    h5_quiet();
    util_check_output(path);
    size_t n = strlen(path);
    o->path = xstrdup(path);
    o->tmp = xmalloc(n + 5);
    memcpy(o->tmp, path, n);
    memcpy(o->tmp + n, ".tmp", 5);
    /* the 1.8 object-header format: a fraction of the metadata size of the
     * default one (export reports file size against the ideal) and still
     * read by every HDF5 since 1.8 */
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST);
    o->f = H5Fcreate(o->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (o->f < 0) qat_fail("%s: cannot create HDF5 file: %s", o->tmp, strerror(errno));
}

static void out_free(H5Out *o) {
    free(o->path);
    free(o->tmp);
    o->path = o->tmp = NULL;
    o->f = -1;
}

void h5out_commit(H5Out *o) {
    if (H5Fflush(o->f, H5F_SCOPE_GLOBAL) < 0 || H5Fclose(o->f) < 0) {
        unlink(o->tmp);
        qat_fail("%s: cannot write the file (disk full?); %s is unchanged", o->tmp, o->path);
    }
    /* HDF5 has closed the file; force its bytes to disk before the rename */
    int fd = open(o->tmp, O_RDONLY);
    if (fd < 0 || fsync(fd) != 0) {
        unlink(o->tmp);
        qat_fail("%s: flush failed: %s; %s is unchanged", o->tmp, strerror(errno), o->path);
    }
    close(fd);
    if (rename(o->tmp, o->path) != 0) {
        unlink(o->tmp);
        qat_fail("%s: cannot rename into place: %s", o->path, strerror(errno));
    }
    out_free(o);
}

void h5out_abort(H5Out *o) {
    H5Fclose(o->f);
    unlink(o->tmp);
    out_free(o);
}

static void write_ds(hid_t loc, const char *name, hid_t type, int ndim, const hsize_t *dims, const void *data) {
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t space = H5Screate_simple(ndim, dims, NULL);
    hid_t ds = H5Dcreate2(loc, name, type, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    if (ds < 0 || H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) fail_write(loc, "dataset", name);
    H5Dclose(ds);
    H5Sclose(space);
    H5Pclose(lcpl);
}

void h5_write_f32(hid_t loc, const char *name, int ndim, const int *shape, const float *data) {
    hsize_t dims[8];
    for (int d = 0; d < ndim; d++) dims[d] = (hsize_t)shape[d];
    write_ds(loc, name, H5T_NATIVE_FLOAT, ndim, dims, data);
}

void h5_write_u8(hid_t loc, const char *name, size_t n, const uint8_t *data) {
    hsize_t d = n;
    write_ds(loc, name, H5T_NATIVE_UINT8, 1, &d, data);
}

void h5_write_u64(hid_t loc, const char *name, size_t n, const uint64_t *data) {
    hsize_t d = n;
    write_ds(loc, name, H5T_NATIVE_UINT64, 1, &d, data);
}

void h5_write_checked(hid_t loc, const char *name, hid_t type, int ndim, const int *shape, const void *data) {
    hsize_t dims[8];
    size_t n = H5Tget_size(type);
    for (int d = 0; d < ndim; d++) dims[d] = (hsize_t)shape[d], n *= (size_t)shape[d];
    write_ds(loc, name, type, ndim, dims, data);
    h5_obj_attr_i64(loc, name, "crc32", (int64_t)crc32_of(data, n));
}

void h5_obj_attr_i64(hid_t loc, const char *obj, const char *name, int64_t value) {
    hid_t o = H5Oopen(loc, obj, H5P_DEFAULT);
    if (o < 0) fail_write(loc, "the attributes of", obj);
    h5_attr_i64(o, name, value);
    H5Oclose(o);
}

void h5_obj_attr_str(hid_t loc, const char *obj, const char *name, const char *value) {
    hid_t o = H5Oopen(loc, obj, H5P_DEFAULT);
    if (o < 0) fail_write(loc, "the attributes of", obj);
    h5_attr_str(o, name, value);
    H5Oclose(o);
}

void h5_attr_str(hid_t loc, const char *name, const char *value) {
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, strlen(value) + 1);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || H5Awrite(a, type, value) < 0) fail_write(loc, "attribute", name);
    H5Aclose(a);
    H5Sclose(space);
    H5Tclose(type);
}

void h5_attr_i64(hid_t loc, const char *name, int64_t value) {
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, H5T_NATIVE_INT64, space, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || H5Awrite(a, H5T_NATIVE_INT64, &value) < 0) fail_write(loc, "attribute", name);
    H5Aclose(a);
    H5Sclose(space);
}

hid_t h5in_open(const char *path) {
    h5_quiet();
    util_require_regular(path);
    if (access(path, R_OK) != 0) qat_fail("%s: cannot open: not readable", path);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) qat_fail("%s: not a readable HDF5 file (truncated or corrupt)", path);
    return f;
}

void h5in_close(hid_t f) { H5Fclose(f); }

bool h5_exists(hid_t loc, const char *name) {
    /* H5Lexists needs each intermediate link to exist, so walk the path */
    char buf[512];
    snprintf(buf, sizeof buf, "%s", name);
    for (char *p = buf; (p = strchr(p, '/')); p++) {
        *p = '\0';
        if (*buf && H5Lexists(loc, buf, H5P_DEFAULT) <= 0) return false;
        *p = '/';
    }
    return H5Lexists(loc, buf, H5P_DEFAULT) > 0;
}

static hid_t open_ds(hid_t f, const char *file, const char *name) {
    if (!h5_exists(f, name)) qat_fail("%s: tensor %s is missing", file, name);
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    if (ds < 0) qat_fail("%s: tensor %s cannot be opened (corrupt file)", file, name);
    return ds;
}

static int ds_dims(hid_t ds, hsize_t *dims) {
    hid_t space = H5Dget_space(ds);
    int nd = H5Sget_simple_extent_ndims(space);
    if (nd > 8) nd = -1;
    if (nd > 0) H5Sget_simple_extent_dims(space, dims, NULL);
    H5Sclose(space);
    return nd;
}

static void fmt_dims(char *buf, size_t n, int nd, const hsize_t *d) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < nd && k < n; i++) k += (size_t)snprintf(buf + k, n - k, i ? ",%llu" : "%llu", (unsigned long long)d[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* Opens name and checks its shape against shape[ndim]. */
static hid_t open_shaped(hid_t f, const char *file, const char *name, int ndim, const int *shape) {
    hid_t ds = open_ds(f, file, name);
    hsize_t dims[8], want[8];
    int nd = ds_dims(ds, dims);
    for (int d = 0; d < ndim; d++) want[d] = (hsize_t)shape[d];
    bool ok = nd == ndim;
    for (int d = 0; ok && d < ndim; d++) ok = dims[d] == want[d];
    if (!ok) {
        char a[128], b[128];
        fmt_dims(a, sizeof a, nd, dims);
        fmt_dims(b, sizeof b, ndim, want);
        H5Dclose(ds);
        qat_fail("%s: tensor %s has shape %s, the model needs %s (checkpoint of another model?)", file, name, a, b);
    }
    return ds;
}

static void read_all(hid_t ds, const char *file, const char *name, hid_t type, void *out) {
    if (H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) {
        H5Dclose(ds);
        qat_fail("%s: tensor %s cannot be read (truncated or corrupt file)", file, name);
    }
}

void h5_read_f32(hid_t f, const char *file, const char *name, int ndim, const int *shape, float *out) {
    hid_t ds = open_shaped(f, file, name, ndim, shape);
    read_all(ds, file, name, H5T_NATIVE_FLOAT, out);
    H5Dclose(ds);
}

void h5_read_checked(hid_t f, const char *file, const char *name, hid_t type, int ndim, const int *shape, void *out) {
    hid_t ds = open_shaped(f, file, name, ndim, shape);
    hid_t ft = H5Dget_type(ds);
    bool same = H5Tget_class(ft) == H5Tget_class(type) && H5Tget_size(ft) == H5Tget_size(type) &&
                (H5Tget_class(ft) != H5T_INTEGER || H5Tget_sign(ft) == H5Tget_sign(type));
    H5Tclose(ft);
    if (!same) {
        H5Dclose(ds);
        qat_fail("%s: tensor %s has another element type than this format stores", file, name);
    }
    read_all(ds, file, name, type, out);
    if (H5Aexists(ds, "crc32") <= 0) {
        H5Dclose(ds);
        qat_fail("%s: tensor %s has no crc32 attribute", file, name);
    }
    int64_t want = 0;
    hid_t a = H5Aopen(ds, "crc32", H5P_DEFAULT);
    herr_t e = H5Aread(a, H5T_NATIVE_INT64, &want);
    H5Aclose(a);
    H5Dclose(ds);
    size_t n = H5Tget_size(type);
    for (int d = 0; d < ndim; d++) n *= (size_t)shape[d];
    uint32_t got = crc32_of(out, n);
    if (e < 0 || (int64_t)got != want)
        qat_fail("%s: tensor %s fails its checksum (crc32 %08x, stored %08llx): the file is corrupt", file, name, got,
                 (unsigned long long)want);
}

/* One dataset's bytes read in the file's own type (what was written: every
 * type qat stores is little-endian native) against its attribute. Opened
 * by name, never by iterating the file's groups: HDF5 1.10 crashes
 * iterating the links of some corrupt groups. */
int h5_verify_dataset(hid_t f, const char *file, const char *name) {
    if (!h5_exists(f, name)) return -1;
    hid_t o = H5Dopen2(f, name, H5P_DEFAULT);
    if (o < 0) qat_fail("%s: dataset %s cannot be opened: the file is corrupt", file, name);
    if (H5Aexists(o, "crc32") <= 0) return H5Dclose(o), 0;
    hid_t ft = H5Dget_type(o), mt = ft < 0 ? -1 : H5Tget_native_type(ft, H5T_DIR_ASCEND), sp = H5Dget_space(o);
    hssize_t n = sp < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
    size_t esz = mt < 0 ? 0 : H5Tget_size(mt), bytes = n > 0 ? (size_t)n * esz : 0;
    hsize_t fsz = 0;
    H5Fget_filesize(f, &fsz);
    /* qat's datasets are contiguous and uncompressed: none is larger than the file */
    bool ok = n >= 0 && esz > 0 && esz <= 8 && (hsize_t)n <= fsz / esz;
    void *buf = ok ? malloc(bytes ? bytes : 1) : NULL;
    int64_t want = -1;
    hid_t a = H5Aopen(o, "crc32", H5P_DEFAULT);
    ok = ok && buf && (!bytes || H5Dread(o, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0) &&
         H5Aread(a, H5T_NATIVE_INT64, &want) >= 0;
    uint32_t got = ok ? crc32_of(buf, bytes) : 0;
    free(buf);
    if (a >= 0) H5Aclose(a);
    if (sp >= 0) H5Sclose(sp);
    if (mt >= 0) H5Tclose(mt);
    if (ft >= 0) H5Tclose(ft);
    H5Dclose(o);
    if (!ok) qat_fail("%s: dataset %s cannot be read: the file is corrupt", file, name);
    if ((int64_t)got != want)
        qat_fail("%s: dataset %s fails its checksum (crc32 %08x, stored %08llx): the file is corrupt", file, name, got,
                 (unsigned long long)want);
    return 1;
}

int64_t h5_read_obj_attr_i64(hid_t f, const char *file, const char *obj, const char *name) {
    if (!h5_exists(f, obj)) qat_fail("%s: %s is missing", file, obj);
    hid_t o = H5Oopen(f, obj, H5P_DEFAULT);
    if (o < 0 || H5Aexists(o, name) <= 0) qat_fail("%s: %s has no attribute %s", file, obj, name);
    int64_t v = h5_read_attr_i64(o, file, name);
    H5Oclose(o);
    return v;
}

bool h5_obj_attr_exists(hid_t f, const char *obj, const char *name) {
    if (!h5_exists(f, obj)) return false;
    hid_t o = H5Oopen(f, obj, H5P_DEFAULT);
    if (o < 0) return false;
    bool e = H5Aexists(o, name) > 0;
    H5Oclose(o);
    return e;
}

char *h5_read_obj_attr_str(hid_t f, const char *file, const char *obj, const char *name) {
    if (!h5_exists(f, obj)) qat_fail("%s: %s is missing", file, obj);
    hid_t o = H5Oopen(f, obj, H5P_DEFAULT);
    if (o < 0 || H5Aexists(o, name) <= 0) qat_fail("%s: %s has no attribute %s", file, obj, name);
    char *v = h5_read_attr_str(o, file, name);
    H5Oclose(o);
    return v;
}

static size_t read_1d(hid_t f, const char *file, const char *name, hid_t type, void *out, size_t cap) {
    hid_t ds = open_ds(f, file, name);
    hsize_t dims[8];
    int nd = ds_dims(ds, dims);
    if (nd != 1 || dims[0] > cap) {
        H5Dclose(ds);
        qat_fail("%s: dataset %s has an unexpected shape", file, name);
    }
    if (H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) {
        H5Dclose(ds);
        qat_fail("%s: dataset %s cannot be read (truncated or corrupt file)", file, name);
    }
    H5Dclose(ds);
    return (size_t)dims[0];
}

size_t h5_read_len(hid_t f, const char *file, const char *name, size_t cap) {
    hid_t ds = open_ds(f, file, name);
    hsize_t dims[8];
    int nd = ds_dims(ds, dims);
    H5Dclose(ds);
    if (nd != 1 || dims[0] < 1 || dims[0] > cap)
        qat_fail("%s: dataset %s is not a list of 1..%zu entries", file, name, cap);
    return (size_t)dims[0];
}

size_t h5_read_u8(hid_t f, const char *file, const char *name, uint8_t *out, size_t cap) {
    return read_1d(f, file, name, H5T_NATIVE_UINT8, out, cap);
}

size_t h5_read_u64(hid_t f, const char *file, const char *name, uint64_t *out, size_t cap) {
    return read_1d(f, file, name, H5T_NATIVE_UINT64, out, cap);
}

char *h5_read_attr_str(hid_t f, const char *file, const char *name) {
    if (H5Aexists(f, name) <= 0) qat_fail("%s: attribute %s is missing (not a qat file?)", file, name);
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    hid_t type = H5Aget_type(a);
    if (H5Tget_class(type) != H5T_STRING) qat_fail("%s: attribute %s is not a string", file, name);
    size_t n = H5Tget_size(type);
    char *s = xcalloc(n + 1, 1);
    hid_t mem = H5Tcopy(H5T_C_S1);
    H5Tset_size(mem, n + 1);
    if (H5Aread(a, mem, s) < 0) qat_fail("%s: attribute %s cannot be read", file, name);
    H5Tclose(mem);
    H5Tclose(type);
    H5Aclose(a);
    return s;
}

int64_t h5_read_attr_i64(hid_t f, const char *file, const char *name) {
    if (H5Aexists(f, name) <= 0) qat_fail("%s: attribute %s is missing (not a qat file?)", file, name);
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    int64_t v = 0;
    if (H5Aread(a, H5T_NATIVE_INT64, &v) < 0) qat_fail("%s: attribute %s cannot be read", file, name);
    H5Aclose(a);
    return v;
}
