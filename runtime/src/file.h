/* file.h - whole-file reads with a size cap and atomic writes (file.c). */
#ifndef PP_FILE_H
#define PP_FILE_H

#include "poolprop.h"

#include <stddef.h>

/* Writes data to path atomically (temporary file in the same directory, then rename). */
pp_status file_write_atomic(pp_context *ctx, const char *path, const void *data, size_t len);
/* Reads a whole file; *data is malloc'ed with a terminating NUL not counted in *len. */
pp_status file_read_all(pp_context *ctx, const char *path, char **data, size_t *len);
/* file_read_all of a file that may hold at most limit bytes: a larger one (a regular file
 * by its size, anything else such as /dev/zero once limit + 1 bytes are read) is refused
 * with PP_ERR_IO and a message naming the file, what it is meant to be and the limit. */
pp_status file_read_capped(pp_context *ctx, const char *path, size_t limit, const char *what, char **data, size_t *len);

#endif
