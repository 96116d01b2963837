/* gen_lua.h - the bridge to the embedded Lua generator (generator/poolprop/api.lua): a
 * Lua state per call with the generator's modules found in the library, the limits on
 * the user's files it evaluates (size, instructions, memory), calls into api.lua with
 * their failures turned into pp_status errors, and field readers for the results. */
#ifndef PP_GEN_LUA_H
#define PP_GEN_LUA_H

#include "context.h"

/* As lua.h has it: files that use this header need not see Lua's headers. */
typedef struct lua_State lua_State;

/* Limits (README.md, "Limits on model, layer and policy files"). A model, layer or
 * policy file is read only up to GEN_LUA_FILE_LIMIT bytes. While such a file's chunk is
 * evaluated (including the generator functions it calls, such as layer{...}), it may run
 * GEN_LUA_USER_INSTRUCTIONS Lua instructions; the whole call, generator included, may run
 * GEN_LUA_TOTAL_INSTRUCTIONS and hold GEN_LUA_MEMORY_LIMIT bytes of Lua memory. Every 32
 * bytes allocated count as one instruction (C functions and concatenations run as one).
 * Measured (release build; instructions, peak Lua memory, process peak): planning
 * cifar_resnet depth 1202 at batch 64 with policy 2 7.5e6, 27 MiB, 77 MB; depth 6002
 * 3.6e7, 124 MiB, 235 MB; resnet152 at batch 1024 1.9e6, 9 MiB; the training bundle of
 * resnet50 2.1e6, 9 MiB, of resnet152 at batch 1024 3.2e6, 14 MiB, of depth 6002 at
 * batch 64 6.8e7, 244 MiB, 349 MB; the bundle of a layer file about 0.19 MiB per layer
 * (1000 layers 3.6e7, 188 MiB; 4000 1.4e8, 724 MiB); the chunk of a layer file of 20000
 * layer{...} calls 2.9e7 (9.6e6 when these limits were set). The limits are 70x the most
 * instructions of a call, 4x the memory of the depth-6002 bundle and 1.7x that chunk.
 * The memory cap stays below the fuzz targets' 2 GiB RSS limit (a file that fills it
 * peaks at 1.15 GB under ASan), so hostile inputs end in the named error. */
#define GEN_LUA_FILE_LIMIT ((size_t)16 << 20)
#define GEN_LUA_USER_INSTRUCTIONS 50000000LL
#ifndef GEN_LUA_TOTAL_INSTRUCTIONS /* lower in the libFuzzer build (CMakeLists.txt) */
#define GEN_LUA_TOTAL_INSTRUCTIONS 10000000000LL
#endif
#define GEN_LUA_MEMORY_LIMIT ((size_t)1024 << 20)

/* A user file a call evaluates: its chunk name (the path, or the embedded name) and what
 * it is ("model file", "layer file", "policy file"), for errors. */
typedef struct gen_lua_file {
    const char *name;
    const char *kind;
} gen_lua_file;

#define GEN_LUA_MAX_FILES 2

/* A state with the generator loaded and the limits armed for the files (the first one is
 * the call's main input; count <= GEN_LUA_MAX_FILES; the names are copied, the kinds must
 * be static). Close with gen_lua_close. */
pp_status gen_lua_open(pp_context *ctx, const gen_lua_file *files, int count, lua_State **out);
void gen_lua_close(lua_State *L);

/* Reads a user file of the given kind, refusing one over GEN_LUA_FILE_LIMIT without
 * reading more than the limit and one byte. *text is NUL-terminated, malloc'ed. */
pp_status gen_lua_read_file(pp_context *ctx, const char *path, const char *kind, char **text, size_t *len);

/* Pushes require("poolprop.api")[fn] onto the stack. */
pp_status gen_lua_push_api(pp_context *ctx, lua_State *L, const char *fn);
/* Calls the api function on the stack with nargs arguments; on success leaves its result
 * on the stack and lifts the limits (one call per state). Generator failures become ctx
 * errors with the generator's message; a limit reached becomes an error naming the file. */
pp_status gen_lua_call_api(pp_context *ctx, lua_State *L, int nargs);

/* Fields of the table at stack index t: 0, NULL or "" when absent. gen_lua_string's copy
 * is malloc'ed (NULL also when out of memory). */
int gen_lua_int(lua_State *L, int t, const char *key);
size_t gen_lua_size(lua_State *L, int t, const char *key);
char *gen_lua_string(lua_State *L, int t, const char *key);
void gen_lua_copy_field(lua_State *L, int t, const char *key, char *dst, size_t len);

#endif
