/* test_cache.c - the compile cache: round trip, misses, and damaged entries of every
 * kind detected, reported through the log, counted, removed and treated as misses. */
#include "cache.h"
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64];
static pp_context ctx_storage, *ctx = &ctx_storage; /* with its cache in dir */
static pp_hash_value k1, k2;                        /* hash_fields */
static int warnings, cache_warnings;
static void count_warning(void *user, pp_log_level level, const char *message)
{
    (void)user;
    if (level == PP_LOG_WARNING && strstr(message, "corrupt")) warnings++;
    if (level == PP_LOG_WARNING && strstr(message, "the kernel cache directory")) {
        cache_warnings++;
        printf("warning: %s\n", message);
    }
}

/* A cache directory that cannot be created is not fatal: the context works without the
 * disk cache and the log says which directory and why (issue 10, item 7). */
static void unusable_dir(void)
{
    char file[512], bad[600];
    snprintf(file, sizeof file, "%s/a_file", dir);
    FILE *f = fopen(file, "w");
    CHECK(f && fclose(f) == 0, "create %s", file);
    snprintf(bad, sizeof bad, "%s/cache", file); /* under a regular file: mkdir fails */
    pp_context_options o;
    pp_context_options_init(&o);
    o.backend = PP_BACKEND_NONE;
    o.cache_dir = bad;
    o.log = count_warning;
    pp_context *ctx = NULL;
    CHECK_OK(ctx, pp_context_create(&o, &ctx));
    CHECK(cache_warnings == 1, "the unusable cache directory is reported once, got %d", cache_warnings);
    CHECK(ctx->options.disable_cache && !ctx->cache_dir[0], "the context runs without the disk cache");
    pp_context_destroy(ctx);
    unlink(file);
}

static void entry_file(pp_context *ctx, const pp_hash_value *key, char *out, size_t len)
{
    char hex[33];
    hash_hex(key, hex);
    snprintf(out, len, "%s/%s.bin", ctx->cache_dir, hex);
}

/* Applies damage to the entry file, then checks that a get reports it and misses. */
static void check_damage(pp_context *ctx, const pp_hash_value *key, const char *what, long offset, int truncate_to)
{
    const char payload[] = "cubin bytes for the cache test";
    CHECK_OK(ctx, cache_put(ctx, key, payload, sizeof payload));
    char path[4200];
    entry_file(ctx, key, path, sizeof path);
    if (truncate_to >= 0) {
        CHECK(truncate(path, truncate_to) == 0, "truncate %s", path);
    } else {
        FILE *f = fopen(path, "r+b");
        CHECK(f != NULL, "open %s", path);
        fseek(f, offset, SEEK_SET);
        int c = fgetc(f);
        fseek(f, offset, SEEK_SET);
        fputc(c ^ 0x5a, f);
        fclose(f);
    }
    int corrupt_before = ctx->cache_stats.corrupt, warnings_before = warnings;
    void *data;
    size_t len;
    CHECK_OK(ctx, cache_get(ctx, key, &data, &len));
    CHECK(data == NULL, "%s: damaged entry must be a miss", what);
    CHECK(ctx->cache_stats.corrupt == corrupt_before + 1, "%s: counted as corrupt", what);
    CHECK(warnings == warnings_before + 1, "%s: reported through the log", what);
    CHECK(access(path, F_OK) != 0, "%s: damaged entry removed", what);
    printf("damaged entry (%s): detected, reported, removed\n", what);
}

static void hash_fields(void)
{
    pp_hash h;
    hash_init(&h);
    hash_str(&h, "ab");
    hash_str(&h, "c");
    k1 = hash_final(&h);
    hash_init(&h);
    hash_str(&h, "a");
    hash_str(&h, "bc");
    k2 = hash_final(&h);
    CHECK(memcmp(k1.bytes, k2.bytes, 16) != 0, "hash_str separates field boundaries");
}

static void hash_vectors(void)
{
    pp_hash h;
    /* Known FNV-1a-128 value of the empty input is the offset basis. */
    hash_init(&h);
    pp_hash_value empty = hash_final(&h);
    char hex[33];
    hash_hex(&empty, hex);
    CHECK(strcmp(hex, "6c62272e07bb014262b821756295c58d") == 0, "FNV-1a-128 basis, got %s", hex);
    /* FNV-1a-128("a") = d228cb696f1a8caf78912b704e4a8964 (published test vector) */
    hash_bytes(&h, "a", 1);
    pp_hash_value a = hash_final(&h);
    hash_hex(&a, hex);
    CHECK(strcmp(hex, "d228cb696f1a8caf78912b704e4a8964") == 0, "FNV-1a-128(\"a\"), got %s", hex);
}

static void round_trip(void)
{
    void *data;
    size_t len;
    CHECK_OK(ctx, cache_get(ctx, &k1, &data, &len));
    CHECK(data == NULL && ctx->cache_stats.misses == 1, "empty cache misses");
    const char payload[] = "payload";
    CHECK_OK(ctx, cache_put(ctx, &k1, payload, sizeof payload));
    CHECK_OK(ctx, cache_get(ctx, &k1, &data, &len));
    CHECK(data && len == sizeof payload && memcmp(data, payload, len) == 0, "round trip");
    CHECK(ctx->cache_stats.hits == 1, "hit counted");
    free(data);
}

static void damaged_entries(void)
{
    check_damage(ctx, &k1, "payload byte flipped", 48 + 3, -1);
    check_damage(ctx, &k1, "magic damaged", 0, -1);
    check_damage(ctx, &k1, "length field damaged", 9, -1);
    check_damage(ctx, &k1, "key damaged", 20, -1);
    check_damage(ctx, &k1, "truncated payload", 0, 50);
    check_damage(ctx, &k1, "truncated header", 0, 10);
    check_damage(ctx, &k1, "empty file", 0, 0);
}

static void disabled_cache(void)
{
    void *data;
    size_t len;
    const char payload[] = "payload";
    /* Disabled cache: never reads or writes. */
    ctx->options.disable_cache = 1;
    CHECK_OK(ctx, cache_put(ctx, &k2, payload, sizeof payload));
    ctx->options.disable_cache = 0;
    CHECK_OK(ctx, cache_get(ctx, &k2, &data, &len));
    CHECK(data == NULL, "disabled cache wrote nothing");
}

static const test_case tests[] = {
    TEST_CASE(unusable_dir, "a cache directory that cannot be created: one warning, the context runs without it"),
    TEST_CASE(hash_fields, "hash_str separates field boundaries (\"ab\",\"c\" vs \"a\",\"bc\")"),
    TEST_CASE(hash_vectors, "FNV-1a-128 of the empty input and of \"a\" are the published values"),
    TEST_CASE_AFTER(round_trip, hash_fields,
                    "an empty cache misses; put then get returns the payload and counts a hit"),
    TEST_CASE_AFTER(damaged_entries, hash_fields,
                    "7 kinds of damage (flipped bytes, truncations, empty): reported, counted, removed, a miss"),
    TEST_CASE_AFTER(disabled_cache, hash_fields, "a disabled cache writes nothing"),
};

int main(int argc, char **argv)
{
    const char *only = test_select(&argc, argv);
    test_temp_dir(dir, sizeof dir, "test_cache");
    memset(&ctx_storage, 0, sizeof ctx_storage);
    pp_context_options_init(&ctx->options);
    ctx->options.log = count_warning;
    strcpy(ctx->cache_dir, dir);
    CHECK_OK(ctx, cache_open(ctx));
    int status = TEST_RUN(tests, only);
    CHECK(test_remove_dir(dir) == 0, "cleanup");
    if (!only) printf("cache tests passed\n");
    return status;
}
