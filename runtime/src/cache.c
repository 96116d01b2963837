/* cache.c - the on-disk compile cache (format in cache.h). */
#include "cache.h"

#include "file.h"
#include "hash.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char entry_magic[8] = {'P', 'P', 'C', 'A', 'C', 'H', 'E', '1'};
enum {
    header_size = 8 + 8 + 16 + 16
};

pp_status cache_make_dirs(pp_context *ctx, const char *path)
{
    char buf[4096];
    if (strlen(path) >= sizeof buf) return ctx_fail(ctx, PP_ERR_IO, "directory path is too long: %.200s", path);
    strcpy(buf, path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return ctx_fail(ctx, PP_ERR_IO, "cannot create directory %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return ctx_fail(ctx, PP_ERR_IO, "cannot create directory %s: %s", buf, strerror(errno));
    return PP_OK;
}

pp_status cache_open(pp_context *ctx)
{
    if (!ctx->cache_dir[0]) {
        const char *env = getenv("POOLPROP_CACHE_DIR");
        const char *xdg = getenv("XDG_CACHE_HOME");
        const char *home = getenv("HOME");
        int n;
        if (env && *env)
            n = snprintf(ctx->cache_dir, sizeof ctx->cache_dir, "%s", env);
        else if (xdg && *xdg)
            n = snprintf(ctx->cache_dir, sizeof ctx->cache_dir, "%s/poolprop", xdg);
        else if (home && *home)
            n = snprintf(ctx->cache_dir, sizeof ctx->cache_dir, "%s/.cache/poolprop", home);
        else
            n = snprintf(ctx->cache_dir, sizeof ctx->cache_dir, "/tmp/poolprop-cache-%ld", (long)getuid());
        if (n < 0 || (size_t)n >= sizeof ctx->cache_dir)
            return ctx_fail(ctx, PP_ERR_IO, "cache directory path is too long");
    }
    return cache_make_dirs(ctx, ctx->cache_dir);
}

static void entry_path(const pp_context *ctx, const pp_hash_value *key, char *out, size_t len)
{
    char hex[33];
    hash_hex(key, hex);
    snprintf(out, len, "%s/%s.bin", ctx->cache_dir, hex);
}

void cache_store_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

uint64_t cache_load_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static pp_hash_value payload_hash(const void *data, size_t len)
{
    pp_hash h;
    hash_init(&h);
    hash_bytes(&h, data, len);
    return hash_final(&h);
}

pp_status cache_get(pp_context *ctx, const pp_hash_value *key, void **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    if (ctx->options.disable_cache) return PP_OK;
    char path[4200];
    entry_path(ctx, key, path, sizeof path);
    FILE *f = fopen(path, "rb");
    if (!f) {
        ctx->cache_stats.misses++;
        return PP_OK;
    }
    const char *damage = NULL;
    unsigned char header[header_size];
    unsigned char *payload = NULL;
    uint64_t size = 0;
    if (fread(header, 1, header_size, f) != header_size) {
        damage = "shorter than its header";
    } else if (memcmp(header, entry_magic, 8) != 0) {
        damage = "bad magic";
    } else if (memcmp(header + 16, key->bytes, 16) != 0) {
        damage = "key does not match its name";
    } else {
        size = cache_load_u64(header + 8);
        long here = ftell(f);
        fseek(f, 0, SEEK_END);
        long end = ftell(f);
        fseek(f, here, SEEK_SET);
        if (end < 0 || (uint64_t)(end - here) != size) {
            damage = "length does not match the header";
        } else {
            payload = malloc(size ? size : 1);
            if (!payload) {
                fclose(f);
                return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "cache entry %s: %llu bytes", path,
                                (unsigned long long)size);
            }
            if (fread(payload, 1, size, f) != size) {
                damage = "truncated";
            } else {
                pp_hash_value h = payload_hash(payload, size);
                if (memcmp(h.bytes, header + 32, 16) != 0) damage = "checksum mismatch";
            }
        }
    }
    fclose(f);
    if (damage) {
        free(payload);
        ctx->cache_stats.corrupt++;
        ctx->cache_stats.misses++;
        ctx_log(ctx, PP_LOG_WARNING, "cache entry %s is corrupt (%s): ignored, removed and rebuilt", path, damage);
        unlink(path);
        return PP_OK;
    }
    ctx->cache_stats.hits++;
    *data = payload;
    *len = size;
    return PP_OK;
}

pp_status cache_put(pp_context *ctx, const pp_hash_value *key, const void *data, size_t len)
{
    if (ctx->options.disable_cache) return PP_OK;
    char path[4200];
    entry_path(ctx, key, path, sizeof path);
    unsigned char *buf = malloc(header_size + len);
    if (!buf) return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "cache entry: out of memory");
    memcpy(buf, entry_magic, 8);
    cache_store_u64(buf + 8, len);
    memcpy(buf + 16, key->bytes, 16);
    pp_hash_value h = payload_hash(data, len);
    memcpy(buf + 32, h.bytes, 16);
    memcpy(buf + header_size, data, len);
    pp_status st = file_write_atomic(ctx, path, buf, header_size + len);
    free(buf);
    if (st == PP_OK) ctx->cache_stats.writes++;
    return st;
}
