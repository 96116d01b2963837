/* test_generator_limits.c - the limits on the model, layer and policy files the generator
 * evaluates (gen_lua.c): an endless loop, a file that eats memory or one too large to read
 * each ends in an error naming the file, in bounded time; legitimate large work still
 * passes. Each check prints what it ran, the error it got and how long it took. */
#define _GNU_SOURCE
#include "gen_lua.h"
#include "test_util.h"

#include <stdarg.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Seconds a check that stops a hostile file may take: the limits stop each in about
 * 1-10 s on a loaded 2-core machine; the bound only says "bounded", with room to spare. */
#define BOUND_SECONDS 120.0

static char dir[] = "/tmp/pp_limits_XXXXXX";

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Writes text to dir/name and returns the path (malloc'ed, kept until the test ends). */
static char *write_file(const char *name, const char *text)
{
    char *path = malloc(strlen(dir) + strlen(name) + 2);
    CHECK(path != NULL, "out of memory");
    sprintf(path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "cannot create %s", path);
    CHECK(fputs(text, f) >= 0 && fclose(f) == 0, "cannot write %s", path);
    return path;
}

static pp_status plan(pp_context *ctx, const char *model, const char *policy, double *seconds)
{
    pp_model_options o;
    pp_model_options_init(&o);
    o.model = model;
    o.policy = policy;
    o.batch = 2;
    pp_memory_report r;
    double t0 = now();
    pp_status st = pp_plan_memory(ctx, &o, &r);
    *seconds = now() - t0;
    return st;
}

static pp_status load_layers(pp_context *ctx, const char *path, int *count, double *seconds)
{
    pp_layer_desc *descs = NULL;
    double t0 = now();
    pp_status st = pp_layer_file_load(ctx, path, &descs, count);
    *seconds = now() - t0;
    if (st == PP_OK) pp_layer_descs_free(descs, *count);
    return st;
}

/* pp_bundle_write into dir/bundle, which a failed call must not create. */
static pp_status write_bundle(pp_context *ctx, const char *path, double *seconds)
{
    char out[600];
    snprintf(out, sizeof out, "%s/bundle", dir);
    double t0 = now();
    pp_status st = pp_bundle_write(ctx, path, out);
    *seconds = now() - t0;
    CHECK(st == PP_OK || access(out, F_OK) != 0, "a failed pp_bundle_write created %s", out);
    return st;
}

/* The call failed with status want, in bounded time, and its message holds each of the
 * NULL-terminated fragments. */
static void expect_error(pp_context *ctx, const char *what, pp_status st, double seconds, pp_status want, ...)
{
    const char *msg = pp_last_error(ctx);
    printf("%-44s %5.2f s  %s: %s\n", what, seconds, pp_status_string(st), msg);
    CHECK(st == want, "%s: expected %s, got %s: %s", what, pp_status_string(want), pp_status_string(st), msg);
    CHECK(seconds < BOUND_SECONDS, "%s took %.1f s", what, seconds);
    va_list ap;
    va_start(ap, want);
    for (const char *part; (part = va_arg(ap, const char *));)
        CHECK(strstr(msg, part) != NULL, "%s: the error does not say '%s': %s", what, part, msg);
    va_end(ap);
}

static void test_endless_loops(pp_context *ctx)
{
    char budget[64];
    snprintf(budget, sizeof budget, "instruction budget of %lld instructions", (long long)GEN_LUA_USER_INSTRUCTIONS);
    double s;
    char *model = write_file("loop_model.lua", "-- spins\nwhile true do end\n");
    pp_status st = plan(ctx, model, NULL, &s);
    char where[600];
    snprintf(where, sizeof where, "%s:2: the model file ran past its", model);
    expect_error(ctx, "model file: while true do end", st, s, PP_ERR_PARSE, where, budget, NULL);

    char *policy = write_file("loop_policy.lua", "local n = 0\nwhile true do n = n + 1 end\nreturn {}\n");
    st = plan(ctx, "cifar_resnet8", policy, &s);
    snprintf(where, sizeof where, "%s:2: the policy file ran past its", policy);
    expect_error(ctx, "policy file: while true do end", st, s, PP_ERR_PARSE, where, budget, NULL);

    char *layers = write_file("loop_layers.lua", "layer { N = 1, C = 1, H = 4, W = 4, K = 1, R = 1, S = 1 }\n"
                                                 "while true do end\n");
    int count = 0;
    st = load_layers(ctx, layers, &count, &s);
    snprintf(where, sizeof where, "%s:2: the layer file ran past its", layers);
    expect_error(ctx, "layer file: while true do end", st, s, PP_ERR_PARSE, where, budget, NULL);

    /* The generator's work a file asks for counts while the file runs. */
    char *calls = write_file("loop_calls.lua", "while true do\n"
                                               "  layer { N = 1, C = 1, H = 4, W = 4, K = 1, R = 1, S = 1 }\n"
                                               "end\n");
    st = load_layers(ctx, calls, &count, &s);
    snprintf(where, sizeof where, "%s:", calls);
    expect_error(ctx, "layer file: endless layer{...} calls", st, s, PP_ERR_PARSE, where, "the layer file ran past its",
                 budget, NULL);
    st = write_bundle(ctx, calls, &s);
    expect_error(ctx, "bundle of that layer file", st, s, PP_ERR_PARSE, where, budget, NULL);

    /* A C function copying much per instruction pays for its bytes (64 KiB a call here). */
    char *copies = write_file("copy_model.lua", "local k = string.rep('x', 1024)\n"
                                                "while true do local s = string.rep(k, 64) end\n");
    st = plan(ctx, copies, NULL, &s);
    snprintf(where, sizeof where, "%s:2: the model file ran past its", copies);
    expect_error(ctx, "model file: endless 64 KiB string.rep", st, s, PP_ERR_PARSE, where, budget, NULL);

    /* A string grown a byte at a time is copied whole each time: the copies pay, so it stops
     * about when an endless loop does (fuzz/corpus/model/crash_string_growth). */
    char *growth = write_file("growth_model.lua", "local s = 'x'\nwhile true do s = s .. 8 end\n");
    st = plan(ctx, growth, NULL, &s);
    snprintf(where, sizeof where, "%s:2: the model file ran past its", growth);
    expect_error(ctx, "model file: a string grown a byte at a time", st, s, PP_ERR_PARSE, where, budget, NULL);
}

static void test_memory(pp_context *ctx)
{
    char cap[64];
    snprintf(cap, sizeof cap, "used more than %zu MiB of Lua memory", GEN_LUA_MEMORY_LIMIT >> 20);
    double s;
    char *model = write_file("grow_model.lua", "local s = 'x'\nwhile true do s = s .. s end\n");
    pp_status st = plan(ctx, model, NULL, &s);
    char where[600];
    snprintf(where, sizeof where, "%s: the model file %s", model, cap);
    expect_error(ctx, "model file: string doubling", st, s, PP_ERR_OUT_OF_MEMORY, where, NULL);

    /* (A policy file's environment is empty: no string library.) */
    char *policy = write_file("grow_policy.lua", "local s = 'y'\nwhile true do s = s .. s end\n");
    st = plan(ctx, "cifar_resnet8", policy, &s);
    snprintf(where, sizeof where, "%s: the policy file %s", policy, cap);
    expect_error(ctx, "policy file: string doubling", st, s, PP_ERR_OUT_OF_MEMORY, where, NULL);

    /* One allocation past the limit (of 5 GiB: 1 GiB is really allocated). */
    char *layers = write_file("huge_layers.lua", "layer { N = 1, C = 1, H = 4, W = 4, K = 1, R = 1, S = 1 }\n"
                                                 "local s = ('x'):rep(1 << 20):rep(1 << 10)\n"
                                                 "local t = s .. s .. s .. s .. s\n");
    int count = 0;
    st = load_layers(ctx, layers, &count, &s);
    snprintf(where, sizeof where, "%s: the layer file %s", layers, cap);
    expect_error(ctx, "layer file: one 5 GiB concatenation", st, s, PP_ERR_OUT_OF_MEMORY, where, NULL);

    /* string.rep of empty pieces loops without allocating: it must not hang. */
    char *empty = write_file("empty_rep.lua", "local s = string.rep('', math.maxinteger, '')\n"
                                              "return cifar_resnet { depth = 8, name = 'empty' .. s }\n");
    st = plan(ctx, empty, NULL, &s);
    printf("%-44s %5.2f s  %s %s\n", "model file: string.rep('', maxinteger)", s, pp_status_string(st),
           pp_last_error(ctx));
    CHECK_OK(ctx, st);
    CHECK(s < BOUND_SECONDS, "string.rep of empty strings took %.1f s", s);

    /* The bounded string.rep gives the library's values (it fills by doubling). */
    /* (No `error` in a model file's environment: a wrong value makes the depth invalid.) */
    char *reps = write_file("rep_values.lua", "local big = string.rep('ab', 50000000, 'c')\n"
                                              "local ok = string.rep('ab', 3, ',') == 'ab,ab,ab'\n"
                                              "  and string.rep('ab', 1, ',') == 'ab'\n"
                                              "  and string.rep('', 5, '-') == '----'\n"
                                              "  and string.rep('xyz', 7) == 'xyzxyzxyzxyzxyzxyzxyz'\n"
                                              "  and string.rep('q', 0) == '' and string.rep('q', -3, ',') == ''\n"
                                              "  and #big == 149999999 and big:sub(-7) == 'bcabcab'\n"
                                              "return cifar_resnet { depth = ok and 8 or 7 }\n");
    st = plan(ctx, reps, NULL, &s);
    printf("%-44s %5.2f s  %s %s\n", "model file: string.rep values, 150 MB", s, pp_status_string(st),
           pp_last_error(ctx));
    CHECK_OK(ctx, st);
}

static void test_size_caps(pp_context *ctx)
{
    char limit[64];
    snprintf(limit, sizeof limit, "is larger than %zu MiB", GEN_LUA_FILE_LIMIT >> 20);
    double s;
    pp_status st = plan(ctx, "/dev/zero", NULL, &s);
    expect_error(ctx, "model file /dev/zero", st, s, PP_ERR_PARSE, "/dev/zero: the model file", limit, NULL);

    /* A policy is a file when its name ends in .lua. */
    char policy[600];
    snprintf(policy, sizeof policy, "%s/zero_policy.lua", dir);
    CHECK(symlink("/dev/zero", policy) == 0, "cannot link %s", policy);
    st = plan(ctx, "cifar_resnet8", policy, &s);
    char where[700];
    snprintf(where, sizeof where, "%s: the policy file", policy);
    expect_error(ctx, "policy file -> /dev/zero", st, s, PP_ERR_PARSE, where, limit, NULL);

    int count = 0;
    st = load_layers(ctx, "/dev/zero", &count, &s);
    expect_error(ctx, "layer file /dev/zero", st, s, PP_ERR_PARSE, "/dev/zero: the layer file", limit, NULL);
    st = write_bundle(ctx, "/dev/zero", &s);
    expect_error(ctx, "bundle of layer file /dev/zero", st, s, PP_ERR_PARSE, "/dev/zero: the layer file", limit, NULL);

    /* A file at the limit is read (and then judged as Lua): a comment of exactly the limit. */
    char *at_limit = malloc(GEN_LUA_FILE_LIMIT + 1);
    CHECK(at_limit != NULL, "out of memory");
    memset(at_limit, '-', GEN_LUA_FILE_LIMIT);
    memcpy(at_limit, "return 1 --", 11);
    at_limit[GEN_LUA_FILE_LIMIT] = '\0';
    char *path = write_file("at_limit_layers.lua", at_limit);
    st = load_layers(ctx, path, &count, &s);
    snprintf(where, sizeof where, "%s:1:", path);
    expect_error(ctx, "layer file of exactly the limit", st, s, PP_ERR_PARSE, where, "no layer{...} in the description",
                 NULL);
    free(at_limit);
}

/* Large legitimate work passes: a deep model, a long layer file, policy files. */
static void test_legitimate(pp_context *ctx)
{
    double s;
    char *model = write_file("deep_model.lua", "return cifar_resnet { depth = 158 }\n");
    char *policy = write_file("policy.lua", "local stages = {}\nfor i = 1, 3 do stages['stage' .. i] = 2 end\n"
                                            "return { default = 1, stages = stages }\n");
    pp_status st = plan(ctx, model, policy, &s);
    printf("%-44s %5.2f s  %s\n", "deep model (depth 158) with a policy file", s, pp_status_string(st));
    CHECK_OK(ctx, st);

    char *layers = write_file("many_layers.lua", "for i = 1, 20000 do\n"
                                                 "  layer { name = 'l' .. i, N = 2, C = 16, H = 8, W = 8, K = 16,"
                                                 " R = 3, S = 3, pad = 1, pool = 2 }\nend\n");
    int count = 0;
    st = load_layers(ctx, layers, &count, &s);
    printf("%-44s %5.2f s  %s, %d layers\n", "layer file with 20000 layer{...} calls", s, pp_status_string(st), count);
    CHECK_OK(ctx, st);
    CHECK(count == 20000, "expected 20000 layers, got %d", count);

    st = load_layers(ctx, NULL, &count, &s);
    printf("%-44s %5.2f s  %s, %d layers\n", "the default layer set", s, pp_status_string(st), count);
    CHECK_OK(ctx, st);
}

/* At exit, failed checks included. */
static void remove_dir(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}

int main(void)
{
    CHECK(mkdtemp(dir) != NULL, "cannot create a temporary directory");
    atexit(remove_dir);
    pp_context_options o;
    pp_context_options_init(&o);
    o.backend = PP_BACKEND_NONE;
    pp_context *ctx = NULL;
    CHECK_OK(ctx, pp_context_create(&o, &ctx));
    printf("limits: files %zu MiB, %lld instructions per user file, %lld per call, %zu MiB of Lua memory\n",
           GEN_LUA_FILE_LIMIT >> 20, (long long)GEN_LUA_USER_INSTRUCTIONS, (long long)GEN_LUA_TOTAL_INSTRUCTIONS,
           GEN_LUA_MEMORY_LIMIT >> 20);
    test_size_caps(ctx);
    test_endless_loops(ctx);
    test_memory(ctx);
    test_legitimate(ctx);
    pp_context_destroy(ctx);
    printf("ok\n");
    return 0;
}
