/* embedded.h - source files compiled into the library at build time (cmake/embed.cmake):
 * the generator's Lua modules, the CUDA templates, the host emulation header and the
 * default model files, so an installed library needs no source tree. Paths are relative
 * to the repository root, e.g. "templates/conv_fwd.cu". */
#ifndef PP_EMBEDDED_H
#define PP_EMBEDDED_H

#include <stddef.h>

typedef struct pp_embedded_file {
    const char *path;
    const char *data; /* NUL-terminated */
    size_t size;
} pp_embedded_file;

/* Terminated by an entry with path == NULL. */
extern const pp_embedded_file pp_embedded_files[];

/* NULL if absent. */
const pp_embedded_file *embedded_find(const char *path);

#endif
