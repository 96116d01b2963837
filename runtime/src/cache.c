/* cache.c - the on-disk compile cache (format in cache.h), the FNV-1a-128 hash that keys
 * it, and atomic file writes. */
#include "cache.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char entry_magic[8] = {'P', 'P', 'C', 'A', 'C', 'H', 'E', '1'};
enum { header_size = 8 + 8 + 16 + 16 };

void hash_init(pp_hash *h)
{
    /* FNV-1a 128-bit offset basis 0x6c62272e07bb014262b821756295c58d */
    h->state = ((unsigned __int128)0x6c62272e07bb0142ULL << 64) | 0x62b821756295c58dULL;
}

void hash_bytes(pp_hash *h, const void *data, size_t len)
{
    /* FNV 128-bit prime 2^88 + 2^8 + 0x3b */
    const unsigned __int128 prime = ((unsigned __int128)1 << 88) | 0x13b;
    const unsigned char *p = data;
    unsigned __int128 s = h->state;
    for (size_t i = 0; i < len; i++) {
        s ^= p[i];
        s *= prime;
    }
    h->state = s;
}

void hash_u64(pp_hash *h, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
    hash_bytes(h, b, sizeof b);
}

void hash_str(pp_hash *h, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    hash_u64(h, n);
    hash_bytes(h, s, n);
}

pp_hash_value hash_final(const pp_hash *h)
{
    pp_hash_value v;
    for (int i = 0; i < 16; i++) v.bytes[i] = (uint8_t)(h->state >> (8 * (15 - i)));
    return v;
}

void hash_hex(const pp_hash_value *v, char out[33])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = digits[v->bytes[i] >> 4];
        out[2 * i + 1] = digits[v->bytes[i] & 15];
    }
    out[32] = '\0';
}

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

pp_status file_write_atomic(pp_context *ctx, const char *path, const void *data, size_t len)
{
    /* A temporary name of its own (mkstemp), so that threads and processes writing the
     * same entry at once each rename a whole file. */
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    FILE *f = fd < 0 ? NULL : fdopen(fd, "wb");
    if (!f) {
        int e = errno;
        if (fd >= 0) close(fd), unlink(tmp);
        return ctx_fail(ctx, PP_ERR_IO, "cannot write %s: %s", tmp, strerror(e));
    }
    /* mkstemp creates 0600; cache entries and databases may be shared read-only. (umask
     * cannot be read without setting it, which would race with other threads.) */
    fchmod(fd, 0644);
    size_t wrote = len ? fwrite(data, 1, len, f) : 0;
    int flush_failed = fflush(f) != 0;
    int close_failed = fclose(f) != 0;
    if (wrote != len || flush_failed || close_failed) {
        unlink(tmp);
        return ctx_fail(ctx, PP_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return ctx_fail(ctx, PP_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(e));
    }
    return PP_OK;
}

pp_status file_read_all(pp_context *ctx, const char *path, char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return ctx_fail(ctx, PP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        fclose(f);
        return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    for (;;) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        char *bigger = realloc(buf, 2 * cap + 1);
        if (!bigger) {
            free(buf);
            fclose(f);
            return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
        }
        buf = bigger;
        cap *= 2;
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        free(buf);
        return ctx_fail(ctx, PP_ERR_IO, "%s: read error", path);
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
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
