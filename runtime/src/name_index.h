/* name_index.h - a string -> int map for the plan reader's lookups by name (buffers, tensor
 * infos, kernels, tensors), so that reading a plan is linear in its size instead of one
 * linear search per reference. Keys are borrowed, not copied: they must outlive the index. */
#ifndef PP_NAME_INDEX_H
#define PP_NAME_INDEX_H

#include <stddef.h>

typedef struct name_index {
    const char **keys; /* NULL: empty slot */
    int *values;
    size_t capacity; /* a power of two, at least twice the count */
    size_t count;
} name_index;

/* An empty index; name_index_free releases it. */
void name_index_init(name_index *ix);
void name_index_free(name_index *ix);
/* Maps key to value, replacing an earlier value of the same key. Returns 0, or -1 where
 * memory runs out (the index is then unchanged). */
int name_index_put(name_index *ix, const char *key, int value);
/* The value of key, or -1 where it is absent. */
int name_index_get(const name_index *ix, const char *key);

#endif
