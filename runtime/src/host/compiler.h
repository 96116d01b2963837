/* compiler.h - the host backend's compiler driver (compiler.c): the translation unit of a
 * kernel, its cache key, the host C++ compiler run on it, and the scratch files of builds. */
#ifndef PP_HOST_COMPILER_H
#define PP_HOST_COMPILER_H

#include "backend.h"
#include "hash.h"

#include <stddef.h>

typedef struct compiler_state {
    int use_isa_flags;
    char cxx[1024];
    char cxx_version[2048]; /* whole --version output; empty if the compiler did not run */
    char cxx_problem[1024]; /* why it did not */
} compiler_state;

/* Finds the compiler and runs its --version. One that does not run is not an error here:
 * compiler_build reports it, so a context without one can still run modules it has. Fails
 * only on a compiler path that is too long. */
pp_status compiler_init(pp_context *ctx, compiler_state *cs);
/* "g++ 12.2.0" from the compiler's path and the last word of its --version first line. */
void compiler_label(const compiler_state *cs, char *out, size_t len);
/* The whole translation unit of req (the embedded headers' text, then the source);
 * *out is malloc'ed. */
pp_status compiler_unit(pp_context *ctx, const pp_compile_request *req, char **out, size_t *out_len);
/* The cache key of the module of the unit tu. */
pp_hash_value compiler_module_key(const compiler_state *cs, const char *tu, size_t tu_len);
/* Compiles req (whose whole unit is tu), through the precompiled prelude where there is
 * one; on success *so is the malloc'ed shared object. Its build directory is gone when
 * this returns. */
pp_status compiler_build(pp_context *ctx, const compiler_state *cs, const pp_compile_request *req, const char *tu,
                         size_t tu_len, char **so, size_t *so_len);

/* $TMPDIR, else /tmp. */
const char *compiler_temp_dir(void);
/* In out, the mkstemp/mkdtemp template of a scratch file or directory of this process in
 * dir: <kind>.<host>.<pid>.XXXXXX, kind "pp_emu_build" or "pp_emu_module" ("" if it does
 * not fit, which mkstemp refuses). */
void compiler_scratch_template(const char *dir, const char *kind, char *out, size_t len);
/* Removes the scratch files and directories in dir of this host's processes that have
 * died (killed during a compile: the library installs no signal handlers). */
void compiler_sweep(pp_context *ctx, const char *dir);

#endif
