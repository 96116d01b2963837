/* hash.h - 128-bit FNV-1a, fed incrementally (hash.c). */
#ifndef PP_HASH_H
#define PP_HASH_H

#include <stddef.h>
#include <stdint.h>

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

#endif
