/* name_index.c - an open-addressing hash map from borrowed strings to ints (FNV-1a, linear
 * probing), for lookups by name while a plan is read. */
#include "name_index.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

void name_index_init(name_index *ix) { memset(ix, 0, sizeof *ix); }

void name_index_free(name_index *ix)
{
    free(ix->keys);
    free(ix->values);
    name_index_init(ix);
}

/* The slot holding key, or the empty slot where it would go. capacity > count, so one exists. */
static size_t slot_of(const name_index *ix, const char *key)
{
    size_t mask = ix->capacity - 1, i = (size_t)hash_name(key) & mask;
    while (ix->keys[i] && strcmp(ix->keys[i], key) != 0) i = (i + 1) & mask;
    return i;
}

static int grow(name_index *ix)
{
    size_t capacity = ix->capacity ? ix->capacity * 2 : 64;
    name_index bigger = {calloc(capacity, sizeof *bigger.keys), malloc(capacity * sizeof *bigger.values), capacity, 0};
    if (!bigger.keys || !bigger.values) {
        free(bigger.keys), free(bigger.values);
        return -1;
    }
    for (size_t i = 0; i < ix->capacity; i++)
        if (ix->keys[i]) {
            size_t s = slot_of(&bigger, ix->keys[i]);
            bigger.keys[s] = ix->keys[i];
            bigger.values[s] = ix->values[i];
            bigger.count++;
        }
    free(ix->keys), free(ix->values);
    *ix = bigger;
    return 0;
}

int name_index_put(name_index *ix, const char *key, int value)
{
    if ((ix->count + 1) * 2 > ix->capacity && grow(ix) != 0) return -1;
    size_t s = slot_of(ix, key);
    if (!ix->keys[s]) {
        ix->keys[s] = key;
        ix->count++;
    }
    ix->values[s] = value;
    return 0;
}

int name_index_get(const name_index *ix, const char *key)
{
    if (ix->count == 0) return -1;
    size_t s = slot_of(ix, key);
    return ix->keys[s] ? ix->values[s] : -1;
}
