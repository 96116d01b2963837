/* cache.h - the on-disk compile cache.
 *
 * An entry is one file <dir>/<32 hex digits of the key>.bin:
 *   "PPCACHE1" | u64 payload length | 16-byte key | 16-byte hash of payload | payload
 * written to a temporary name in the same directory and renamed, so readers never see
 * half an entry. An entry whose header, key, length or payload hash does not check out
 * is reported through the context's log, counted as corrupt, deleted and treated as a
 * miss, so the caller rebuilds it. Entries are keyed by hash.h's hash. */
#ifndef PP_CACHE_H
#define PP_CACHE_H

#include "context.h"
#include "hash.h"

#include <stddef.h>
#include <stdint.h>

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

#endif
