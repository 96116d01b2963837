/* npy.h - reading and writing NumPy .npy files (format versions 1.0, 2.0 and 3.0),
 * float32 little-endian C order, with checks that name the file and what is wrong.
 * Integer label vectors ('<i8' or '<i4', rank 1) are read into int64. */
#ifndef PP_NPY_H
#define PP_NPY_H

#include "context.h"

#define PP_NPY_MAX_RANK 8

typedef struct pp_npy_array {
    int rank;
    size_t shape[PP_NPY_MAX_RANK];
    size_t count; /* product of shape */
    float *data;  /* malloc'ed (never NULL after a successful read, even when count is 0) */
} pp_npy_array;

typedef struct pp_npy_labels {
    size_t count;
    int64_t *data; /* malloc'ed (never NULL after a successful read) */
} pp_npy_labels;

/* Reads a float32 ('<f4'), C-order array. expected_rank < 0 accepts any rank.
 * Errors (PP_ERR_PARSE / PP_ERR_IO) name the path: bad magic, unsupported version,
 * malformed header, dtype, fortran order, rank, truncated or oversized data. */
pp_status npy_read_f32(pp_context *ctx, const char *path, int expected_rank, pp_npy_array *out);
/* Writes a float32 C-order array (format 1.0) atomically. rank 0..PP_NPY_MAX_RANK. */
pp_status npy_write_f32(pp_context *ctx, const char *path, int rank, const size_t *shape, const float *data);
void npy_array_free(pp_npy_array *a);

/* Reads a rank-1 integer array ('<i8' or '<i4', C order) of class labels into int64. */
pp_status npy_read_labels(pp_context *ctx, const char *path, pp_npy_labels *out);
void npy_labels_free(pp_npy_labels *l);

#endif
