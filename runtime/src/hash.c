/* hash.c - 128-bit FNV-1a (hash.h): the key of cache entries and the checksum of tuning
 * databases and checkpoints. */
#include "hash.h"

#include <string.h>

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
