/* npy.h - the poolprop command's reading and writing of NumPy .npy files (format versions
 * 1.0, 2.0 and 3.0), float32 little-endian C order, with checks that name the file and what
 * is wrong. Integer label vectors ('<i8' or '<i4', rank 1) are read into int64. Functions
 * return a pp_status and put the message (starting with the path) in err. */
#ifndef PP_CLI_NPY_H
#define PP_CLI_NPY_H

#include "outfile.h"
#include "poolprop.h"

#include <stddef.h>
#include <stdint.h>

#define NPY_MAX_RANK 8
/* The most data one array may declare (16 GiB); a larger declared shape is refused before
 * anything is allocated. Headers are at most 1 MiB; a file must end exactly where its
 * declared data does (a stream such as /dev/zero fails at the magic or the end check). */
#define NPY_MAX_DATA_BYTES ((uint64_t)16 << 30)

typedef struct npy_array {
    int rank;
    size_t shape[NPY_MAX_RANK];
    size_t count; /* product of shape */
    float *data;  /* malloc'ed (never NULL after a successful read, even when count is 0) */
} npy_array;

typedef struct npy_labels {
    size_t count;
    int64_t *data; /* malloc'ed (never NULL after a successful read) */
} npy_labels;

/* Reads a float32 ('<f4'), C-order array. expected_rank < 0 accepts any rank.
 * Errors (PP_ERR_PARSE / PP_ERR_IO) name the path: bad magic, unsupported version,
 * malformed header, dtype, fortran order, rank, truncated or oversized data. */
pp_status npy_read_f32(const char *path, int expected_rank, npy_array *out, char *err, size_t err_len);
/* Writes a float32 C-order array (format 1.0) atomically (outfile.h). rank 0..NPY_MAX_RANK. */
pp_status npy_write_f32(const char *path, int rank, const size_t *shape, const float *data, char *err, size_t err_len);
/* The bytes npy_write_f32 writes, in a malloc'ed buffer; path only names the array in errors. */
pp_status npy_encode_f32(const char *path, int rank, const size_t *shape, const float *data, unsigned char **out,
                         size_t *out_len, char *err, size_t err_len);
void npy_array_free(npy_array *a);

/* Reads a rank-1 integer array ('<i8' or '<i4', C order) of class labels into int64. */
pp_status npy_read_labels(const char *path, npy_labels *out, char *err, size_t err_len);
void npy_labels_free(npy_labels *l);

/* For the subcommands, printing their own errors ("poolprop: --x: ...") and returning
 * non-zero: the array of option --role (missing: an error), and an array encoded and staged
 * in an output set (renamed with the rest of the set). */
int npy_read_option(const char *role, const char *path, int rank, npy_array *out);
int npy_stage(outfile_set *set, const char *path, int rank, const size_t *shape, const float *data);
/* A parameter (or its gradient) staged as dir/<state_dict key>.npy in its shape. */
int npy_stage_param(outfile_set *set, const char *dir, const pp_param_info *info, const float *data);

#endif
