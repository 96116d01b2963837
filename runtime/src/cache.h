/* cache.h - the on-disk compile cache and the hash that keys it.
 *
 * An entry is one file <dir>/<32 hex digits of the key>.bin:
 *   "PPCACHE1" | u64 payload length | 16-byte key | 16-byte hash of payload | payload
 * written to a temporary name in the same directory and renamed, so readers never see
 * half an entry. An entry whose header, key, length or payload hash does not check out
 * is reported through the context's log, counted as corrupt, deleted and treated as a
 * miss, so the caller rebuilds it. */
#ifndef PP_CACHE_H
#define PP_CACHE_H

#include "context.h"

#include <stddef.h>
#include <stdint.h>

/* 128-bit FNV-1a, fed incrementally. */
typedef struct pp_hash {
    unsigned __int128 state;
} pp_hash;

typedef struct pp_hash_value {
    uint8_t bytes[16];
} pp_hash_value;

void hash_init(pp_hash *h);
void hash_bytes(pp_hash *h, const void *data, size_t len);
/* Hashes a string with its length, so ("ab","c") and ("a","bc") differ. */
void hash_str(pp_hash *h, const char *s);
void hash_u64(pp_hash *h, uint64_t v);
pp_hash_value hash_final(const pp_hash *h);
void hash_hex(const pp_hash_value *v, char out[33]);

/* Little-endian 64-bit fields of cache entries and payloads. */
void cache_store_u64(unsigned char *p, uint64_t v);
uint64_t cache_load_u64(const unsigned char *p);

/* Creates path and its missing parents (mode 0755); existing directories are fine. */
pp_status cache_make_dirs(pp_context *ctx, const char *path);
/* Resolves ctx->cache_dir from the options and the environment; creates it. */
pp_status cache_open(pp_context *ctx);
/* On a hit, *data is malloc'ed (caller frees) and *len set; on a miss *data is NULL.
 * Only I/O trouble that is not a damaged entry returns an error. */
pp_status cache_get(pp_context *ctx, const pp_hash_value *key, void **data, size_t *len);
pp_status cache_put(pp_context *ctx, const pp_hash_value *key, const void *data, size_t len);

/* Writes data to path atomically (temporary file in the same directory, then rename). */
pp_status file_write_atomic(pp_context *ctx, const char *path, const void *data, size_t len);
/* Reads a whole file; *data is malloc'ed with a terminating NUL not counted in *len. */
pp_status file_read_all(pp_context *ctx, const char *path, char **data, size_t *len);

#endif
