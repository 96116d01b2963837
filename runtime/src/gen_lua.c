/* gen_lua.c - the bridge to the embedded Lua generator: one Lua state per call, its
 * modules loaded from the library's embedded files, the limits on the user's files it
 * evaluates, calls into generator/poolprop/api.lua and the conversion of their failures
 * into pp_status errors. Nothing persists between calls.
 * Invariant: every state runs under its limits. The allocator refuses to let the state's
 * Lua memory pass GEN_LUA_MEMORY_LIMIT; a count hook charges instructions to the call and,
 * while a user file's chunk runs, to that file. Once a limit is reached the state is
 * "tripped": from the next hook call on, every instruction raises an error, so that no
 * pcall in the generator (or a file) can resume the work, and the call's error is the
 * limit's, naming the file. */
#include "gen_lua.h"

#include "embedded.h"

#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

/* Instructions between two calls of the count hook: the budgets' granularity. */
#define HOOK_STEP 1000
/* Bytes of allocation charged as one instruction: a C function (string.rep, gsub, ..) or
 * a concatenation runs as one instruction whatever it copies, so its allocations pay for
 * it. Set so that bytes cost about the time instructions do (release build): a model file
 * growing a string a byte at a time (`s = s .. 8`) spends its budget in 0.24 s, as an
 * endless loop does in 0.25 s; at 128 it ran 0.9 s and churned 6 GB of strings through
 * the allocator (3 GB of RSS under ASan's quarantine), now 1.5 GB. */
#define BYTES_PER_INSTRUCTION 32
/* What the error path may allocate once the memory limit was reached. */
#define MEMORY_RESERVE ((size_t)16 << 20)

enum {
    TRIP_NONE,
    TRIP_USER,
    TRIP_TOTAL,
    TRIP_MEMORY
};

/* The allocator's userdata: one per state, freed by gen_lua_close after lua_close. */
typedef struct limits {
    lua_State *L; /* the main thread, once created */
    gen_lua_file files[GEN_LUA_MAX_FILES];
    int file_count;
    size_t used, limit;    /* Lua memory in bytes; limit grows by MEMORY_RESERVE once tripped */
    long long total, user; /* instructions of the call; of the user chunk being evaluated */
    int active;            /* 1 + index of the file whose chunk is running, 0 none */
    int trip;              /* TRIP_* */
    int trip_file;         /* index of the file the error names, -1: the generator's own work */
    int trip_line;         /* the line of that file that ran, 0 unknown */
} limits;

static limits *state_limits(lua_State *L)
{
    void *ud = NULL;
    lua_getallocf(L, &ud);
    return ud;
}

static void trip(limits *lim, int kind, int file, int line)
{
    if (lim->trip != TRIP_NONE) return;
    lim->trip = kind;
    lim->trip_file = file;
    lim->trip_line = line;
}

static void count_hook(lua_State *L, lua_Debug *event);

/* lua_Alloc with a ceiling on the bytes in use. ptr NULL: osize encodes the object type. */
static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    limits *lim = ud;
    if (!ptr) osize = 0;
    if (nsize == 0) {
        free(ptr);
        lim->used -= osize;
        return NULL;
    }
    if (nsize > osize) {
        if (nsize - osize > lim->limit - lim->used) {
            trip(lim, TRIP_MEMORY, lim->active - 1, 0);
            lim->limit = GEN_LUA_MEMORY_LIMIT + MEMORY_RESERVE;
            return NULL;
        }
        long long cost = (long long)((nsize - osize) / BYTES_PER_INSTRUCTION);
        lim->total += cost;
        if (lim->active) lim->user += cost;
        /* Past a budget: the hook judges at the next instruction, not HOOK_STEP later
         * (lua_sethook may be called at any time, even from a signal handler). */
        if (lim->L && (lim->user > GEN_LUA_USER_INSTRUCTIONS || lim->total > GEN_LUA_TOTAL_INSTRUCTIONS))
            lua_sethook(lim->L, count_hook, LUA_MASKCOUNT, 1);
    }
    void *p = realloc(ptr, nsize);
    if (p) lim->used = lim->used - osize + nsize;
    return p;
}

/* Index of the file a chunk name ("@path") names, -1 if none. */
static int file_of_source(const limits *lim, const char *source)
{
    if (!source || source[0] != '@') return -1;
    for (int i = 0; i < lim->file_count; i++)
        if (strcmp(source + 1, lim->files[i].name) == 0) return i;
    return -1;
}

/* The innermost frame of one of the user files: its file and line, for the error. */
static void user_position(lua_State *L, const limits *lim, int *file, int *line)
{
    lua_Debug ar;
    for (int level = 0; level < 64 && lua_getstack(L, level, &ar); level++) {
        if (!lua_getinfo(L, "Sl", &ar)) break;
        int f = file_of_source(lim, ar.source);
        if (f >= 0 && (*file < 0 || f == *file)) {
            *file = f;
            *line = ar.currentline > 0 ? ar.currentline : 0;
            return;
        }
    }
}

/* Every HOOK_STEP instructions: charges them, checks the budgets; raises once tripped. */
static void count_hook(lua_State *L, lua_Debug *event)
{
    (void)event;
    limits *lim = state_limits(L);
    if (lim->trip == TRIP_NONE) {
        lim->total += HOOK_STEP;
        int file = lim->active - 1;
        lua_Debug ar;
        if (file < 0 && lua_getstack(L, 0, &ar) && lua_getinfo(L, "S", &ar)) file = file_of_source(lim, ar.source);
        if (file >= 0) lim->user += HOOK_STEP;
        int line = 0;
        if (file >= 0 && lim->user > GEN_LUA_USER_INSTRUCTIONS) {
            user_position(L, lim, &file, &line);
            trip(lim, TRIP_USER, file, line);
        } else if (lim->total > GEN_LUA_TOTAL_INSTRUCTIONS) {
            trip(lim, TRIP_TOTAL, -1, 0);
        }
    }
    if (lim->trip == TRIP_NONE) {
        if (lua_gethookcount(L) != HOOK_STEP) lua_sethook(L, count_hook, LUA_MASKCOUNT, HOOK_STEP);
        return;
    }
    lua_sethook(L, count_hook, LUA_MASKCOUNT, 1);
    luaL_error(L, "stopped: a limit of the generator was reached");
}

/* A user file's chunk, wrapped by limited_load: runs it with the file marked active, its
 * own instruction count starting from 0. Upvalues: the chunk, the file's index. */
static int run_user_chunk(lua_State *L)
{
    limits *lim = state_limits(L);
    int nargs = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    int saved_active = lim->active;
    long long saved_user = lim->user;
    lim->active = (int)lua_tointeger(L, lua_upvalueindex(2)) + 1;
    lim->user = 0;
    int status = lua_pcall(L, nargs, LUA_MULTRET, 0);
    lim->active = saved_active;
    lim->user = saved_user;
    if (status != LUA_OK) return lua_error(L);
    return lua_gettop(L);
}

/* load() for the generator: the chunk of one of the call's user files comes back wrapped
 * (run_user_chunk). Upvalue: the library's load. */
static int limited_load(lua_State *L)
{
    int nargs = lua_gettop(L);
    int file = lua_type(L, 2) == LUA_TSTRING ? file_of_source(state_limits(L), lua_tostring(L, 2)) : -1;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, nargs, LUA_MULTRET);
    if (file >= 0 && lua_isfunction(L, 1)) {
        lua_pushvalue(L, 1);
        lua_pushinteger(L, file);
        lua_pushcclosure(L, run_user_chunk, 2);
        lua_replace(L, 1);
    }
    return lua_gettop(L);
}

/* string.rep for the state: the library's loops n times even when every piece is empty,
 * which neither the hook (one instruction) nor the allocator (no bytes) would see, and
 * copies a piece at a time (a 1 GB string of "x" took 30 s under ASan, libFuzzer's
 * timeout). This one sizes the result first and fills it by doubling: O(log n) copies.
 * The allocation is charged as any other (BYTES_PER_INSTRUCTION). */
static int bounded_rep(lua_State *L)
{
    size_t len = 0, sep_len = 0;
    const char *s = luaL_checklstring(L, 1, &len);
    lua_Integer n = luaL_checkinteger(L, 2);
    const char *sep = luaL_optlstring(L, 3, "", &sep_len);
    if (n <= 0 || len + sep_len == 0) {
        lua_pushliteral(L, "");
        return 1;
    }
    /* n pieces of s..sep fill n*unit bytes; the result drops the last sep. */
    const size_t unit = len + sep_len;
    if (unit < len || (lua_Unsigned)n > (SIZE_MAX / 2) / unit) return luaL_error(L, "resulting string too large");
    const size_t whole = (size_t)n * unit;
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, whole);
    memcpy(p, s, len);
    memcpy(p + len, sep, sep_len);
    for (size_t filled = unit; filled < whole;) { /* filled stays a multiple of unit */
        size_t chunk = filled < whole - filled ? filled : whole - filled;
        memcpy(p + filled, p, chunk);
        filled += chunk;
    }
    luaL_pushresultsize(&b, whole - sep_len);
    return 1;
}

/* package.searchers entry: "poolprop.x" -> embedded "generator/poolprop/x.lua". */
static int search_embedded(lua_State *L)
{
    const char *module = luaL_checkstring(L, 1);
    char path[512];
    snprintf(path, sizeof path, "generator/%s.lua", module);
    for (char *p = path + strlen("generator/"); *p; p++)
        if (*p == '.' && strcmp(p, ".lua") != 0) *p = '/';
    const pp_embedded_file *f = embedded_find(path);
    if (!f) {
        lua_pushfstring(L, "\n\tno embedded file '%s'", path);
        return 1;
    }
    char chunkname[600];
    snprintf(chunkname, sizeof chunkname, "@%s", path);
    if (luaL_loadbufferx(L, f->data, f->size, chunkname, "t") != LUA_OK) return lua_error(L);
    lua_pushstring(L, path);
    return 2;
}

/* files.read replacement: templates come from the embedded files. */
static int read_embedded(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    const pp_embedded_file *f = embedded_find(path);
    if (!f) return luaL_error(L, "no embedded file '%s'", path);
    lua_pushlstring(L, f->data, f->size);
    return 1;
}

/* The state's setup, in protected mode: libraries, the bounded string.rep and load, the
 * embedded module searcher, and the embedded files.read. */
static int setup(lua_State *L)
{
    luaL_openlibs(L);
    lua_getglobal(L, "string");
    lua_pushcfunction(L, bounded_rep);
    lua_setfield(L, -2, "rep");
    lua_pop(L, 1);
    lua_getglobal(L, "load");
    lua_pushcclosure(L, limited_load, 1);
    lua_setglobal(L, "load");
    /* table.insert(package.searchers, 2, search_embedded) */
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "searchers");
    lua_Integer n = luaL_len(L, -1);
    for (lua_Integer i = n; i >= 2; i--) {
        lua_rawgeti(L, -1, i);
        lua_rawseti(L, -2, i + 1);
    }
    lua_pushcfunction(L, search_embedded);
    lua_rawseti(L, -2, 2);
    lua_pop(L, 2);
    /* require("poolprop.files").read = read_embedded */
    lua_getglobal(L, "require");
    lua_pushstring(L, "poolprop.files");
    lua_call(L, 1, 1);
    lua_pushcfunction(L, read_embedded);
    lua_setfield(L, -2, "read");
    return 0;
}

/* The error of a tripped state: "file[:line]: the <kind> ..." for a file's own work,
 * "file: generating from the <kind> ..." for the generator's work on it. */
static pp_status limit_error(pp_context *ctx, const limits *lim)
{
    const gen_lua_file *f = lim->trip_file >= 0 ? &lim->files[lim->trip_file] : lim->file_count ? &lim->files[0] : NULL;
    char who[4300] = "the generator";
    if (f && lim->trip_file >= 0 && lim->trip_line > 0)
        snprintf(who, sizeof who, "%s:%d: the %s", f->name, lim->trip_line, f->kind);
    else if (f && lim->trip_file >= 0)
        snprintf(who, sizeof who, "%s: the %s", f->name, f->kind);
    else if (f)
        snprintf(who, sizeof who, "%s: generating from the %s", f->name, f->kind);
    switch (lim->trip) {
    case TRIP_USER:
        return ctx_fail(ctx, PP_ERR_PARSE, "%s ran past its instruction budget of %lld instructions", who,
                        (long long)GEN_LUA_USER_INSTRUCTIONS);
    case TRIP_TOTAL:
        return ctx_fail(ctx, PP_ERR_GENERATOR, "%s ran past the generator's instruction budget of %lld instructions",
                        who, (long long)GEN_LUA_TOTAL_INSTRUCTIONS);
    default:
        return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "%s used more than %zu MiB of Lua memory", who,
                        GEN_LUA_MEMORY_LIMIT >> 20);
    }
}

/* The error of a failed lua_pcall, its message on top of the stack. */
static pp_status call_error(pp_context *ctx, lua_State *L)
{
    const limits *lim = state_limits(L);
    if (lim->trip != TRIP_NONE) return limit_error(ctx, lim);
    const char *msg = lua_tostring(L, -1);
    return ctx_fail(ctx, PP_ERR_INTERNAL, "generator: %s", msg ? msg : "(error object is not a string)");
}

static void free_limits(limits *lim)
{
    for (int i = 0; i < lim->file_count; i++) free((char *)lim->files[i].name);
    free(lim);
}

pp_status gen_lua_open(pp_context *ctx, const gen_lua_file *files, int count, lua_State **out)
{
    *out = NULL;
    limits *lim = calloc(1, sizeof *lim);
    if (!lim) return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "cannot create a Lua state: out of memory");
    lim->limit = GEN_LUA_MEMORY_LIMIT;
    lim->trip_file = -1;
    for (int i = 0; i < count && i < GEN_LUA_MAX_FILES; i++) {
        char *name = malloc(strlen(files[i].name) + 1);
        if (!name) break;
        lim->files[lim->file_count++] = (gen_lua_file){strcpy(name, files[i].name), files[i].kind};
    }
    lua_State *L = lim->file_count == count ? lua_newstate(limited_alloc, lim) : NULL;
    if (!L) {
        free_limits(lim);
        return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "cannot create a Lua state");
    }
    lim->L = L;
    lua_sethook(L, count_hook, LUA_MASKCOUNT, HOOK_STEP);
    lua_pushcfunction(L, setup);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
        pp_status st = call_error(ctx, L);
        gen_lua_close(L);
        return st;
    }
    *out = L;
    return PP_OK;
}

void gen_lua_close(lua_State *L)
{
    if (!L) return;
    limits *lim = state_limits(L);
    lua_close(L);
    free_limits(lim);
}

pp_status gen_lua_read_file(pp_context *ctx, const char *path, const char *kind, char **text, size_t *len)
{
    *text = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return ctx_fail(ctx, PP_ERR_IO, "%s: cannot open the %s: %s", path, kind, strerror(errno));
    /* The buffer grows to at most the limit and one byte: reading that byte means too large. */
    size_t cap = (size_t)1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    pp_status st = buf ? PP_OK : ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    while (st == PP_OK) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) {
            if (ferror(f)) st = ctx_fail(ctx, PP_ERR_IO, "%s: cannot read the %s: %s", path, kind, strerror(errno));
            break;
        }
        if (cap > GEN_LUA_FILE_LIMIT) {
            st = ctx_fail(ctx, PP_ERR_PARSE, "%s: the %s is larger than %zu MiB, the limit for such files", path, kind,
                          GEN_LUA_FILE_LIMIT >> 20);
            break;
        }
        size_t grown = 2 * cap > GEN_LUA_FILE_LIMIT ? GEN_LUA_FILE_LIMIT + 1 : 2 * cap;
        char *bigger = realloc(buf, grown + 1);
        if (!bigger) {
            st = ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
            break;
        }
        buf = bigger;
        cap = grown;
    }
    fclose(f);
    if (st != PP_OK) {
        free(buf);
        return st;
    }
    buf[n] = '\0';
    *text = buf;
    *len = n;
    return PP_OK;
}

pp_status gen_lua_push_api(pp_context *ctx, lua_State *L, const char *fn)
{
    lua_getglobal(L, "require");
    lua_pushstring(L, "poolprop.api");
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) return call_error(ctx, L);
    lua_getfield(L, -1, fn);
    lua_remove(L, -2);
    return PP_OK;
}

pp_status gen_lua_call_api(pp_context *ctx, lua_State *L, int nargs)
{
    if (lua_pcall(L, nargs, 3, 0) != LUA_OK) return call_error(ctx, L);
    limits *lim = state_limits(L);
    if (lim->trip != TRIP_NONE) return limit_error(ctx, lim);
    /* The limits end with the call: reading its result (outside protected mode, where an
     * error would abort) runs no user code. */
    lua_sethook(L, NULL, 0, 0);
    lim->limit = (size_t)-1;
    if (lua_isnil(L, -3)) {
        const char *kind = lua_tostring(L, -1);
        pp_status st = PP_ERR_GENERATOR;
        if (kind && strcmp(kind, "parse") == 0) st = PP_ERR_PARSE;
        if (kind && strcmp(kind, "shape") == 0) st = PP_ERR_SHAPE;
        if (kind && strcmp(kind, "io") == 0) st = PP_ERR_IO;
        if (kind && strcmp(kind, "invalid") == 0) st = PP_ERR_INVALID_ARGUMENT;
        return ctx_fail(ctx, st, "%s", lua_tostring(L, -2));
    }
    lua_pop(L, 2);
    return PP_OK;
}

int gen_lua_int(lua_State *L, int t, const char *key)
{
    lua_getfield(L, t, key);
    int v = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    return v;
}

size_t gen_lua_size(lua_State *L, int t, const char *key)
{
    lua_getfield(L, t, key);
    size_t v = (size_t)lua_tointeger(L, -1);
    lua_pop(L, 1);
    return v;
}

char *gen_lua_string(lua_State *L, int t, const char *key)
{
    lua_getfield(L, t, key);
    size_t len = 0;
    const char *s = lua_tolstring(L, -1, &len);
    char *copy = NULL;
    if (s) {
        copy = malloc(len + 1);
        if (copy) memcpy(copy, s, len + 1);
    }
    lua_pop(L, 1);
    return copy;
}

void gen_lua_copy_field(lua_State *L, int t, const char *key, char *dst, size_t len)
{
    lua_getfield(L, t, key);
    const char *s = lua_tostring(L, -1);
    snprintf(dst, len, "%s", s ? s : "");
    lua_pop(L, 1);
}
