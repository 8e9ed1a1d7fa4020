/* h5io.h: thin checked wrappers over HDF5. Writers go to PATH.tmp and are
 * renamed into place on commit, so a file is whole or untouched; a failed
 * write (a full disk) removes PATH.tmp before its one-line error. Readers check
 * shapes and fail with one line naming the file and the dataset. */
#ifndef QAT_H5IO_H
#define QAT_H5IO_H

#include <hdf5.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct H5Out {
    hid_t f;
    char *path, *tmp;
} H5Out;

/* HDF5 without its error-stack printing and without its exit-time close of
 * open files; every h5io entry point calls it. */
void h5_quiet(void);
void h5out_open(H5Out *o, const char *path);
void h5out_commit(H5Out *o);
void h5out_abort(H5Out *o);

/* Dataset names may contain '/', intermediate groups are created. */
void h5_write_f32(hid_t loc, const char *name, int ndim, const int *shape, const float *data);
void h5_write_u8(hid_t loc, const char *name, size_t n, const uint8_t *data);
void h5_write_u64(hid_t loc, const char *name, size_t n, const uint64_t *data);
void h5_attr_str(hid_t loc, const char *name, const char *value);
void h5_attr_i64(hid_t loc, const char *name, int64_t value);

/* An n-d dataset of any native type with a "crc32" attribute: the CRC-32 of
 * its raw bytes (little-endian, row-major), checked by h5_read_checked. */
void h5_write_checked(hid_t loc, const char *name, hid_t type, int ndim, const int *shape, const void *data);
/* Attributes on the object (group or dataset) at path obj under loc. */
void h5_obj_attr_i64(hid_t loc, const char *obj, const char *name, int64_t value);
void h5_obj_attr_str(hid_t loc, const char *obj, const char *name, const char *value);

/* Opens for reading or fails: "PATH: not a readable HDF5 file ...". */
hid_t h5in_open(const char *path);
void h5in_close(hid_t f);
bool h5_exists(hid_t loc, const char *name);
/* Reads a float32 dataset whose shape must equal shape[ndim]. */
void h5_read_f32(hid_t f, const char *file, const char *name, int ndim, const int *shape, float *out);
/* Reads a dataset written by h5_write_checked: type class and size, shape
 * (must equal shape[ndim]) and checksum are verified, each failure one line
 * naming the file and the tensor. */
void h5_read_checked(hid_t f, const char *file, const char *name, hid_t type, int ndim, const int *shape, void *out);
/* Recomputes the CRC-32 of dataset name and compares it with its crc32
 * attribute, failing in one line naming it on a mismatch or an unreadable
 * dataset. Returns 1 when it matched, 0 when the dataset has no attribute
 * (a file from before checksums), -1 when there is no such dataset. */
int h5_verify_dataset(hid_t f, const char *file, const char *name);
/* Integer or string attribute of the object at path obj (fails naming it). */
int64_t h5_read_obj_attr_i64(hid_t f, const char *file, const char *obj, const char *name);
bool h5_obj_attr_exists(hid_t f, const char *obj, const char *name);
char *h5_read_obj_attr_str(hid_t f, const char *file, const char *obj, const char *name);
/* The length of the 1-d dataset name, which must hold 1..cap elements. */
size_t h5_read_len(hid_t f, const char *file, const char *name, size_t cap);
/* Reads a 1-d dataset of up to cap elements; returns the count. */
size_t h5_read_u8(hid_t f, const char *file, const char *name, uint8_t *out, size_t cap);
size_t h5_read_u64(hid_t f, const char *file, const char *name, uint64_t *out, size_t cap);
/* malloc'd string attribute of the root group; fails when missing. */
char *h5_read_attr_str(hid_t f, const char *file, const char *name);
int64_t h5_read_attr_i64(hid_t f, const char *file, const char *name);

#endif
