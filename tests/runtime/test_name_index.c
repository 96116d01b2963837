/* test_name_index.c - the plan reader's string -> int map: every key put is found with its
 * latest value across growth, absent keys (including prefixes and extensions of present
 * ones) give -1, and an empty index answers -1. */
#include "name_index.h"
#include "test_util.h"

#include <string.h>

enum {
    key_count = 20000
};
static char keys[key_count][24];

static name_index ix;

static void empty_index(void)
{
    name_index_init(&ix);
    CHECK(name_index_get(&ix, "anything") == -1, "an empty index found a key");
}

static void put_and_find(void)
{
    for (int i = 0; i < key_count; i++) {
        snprintf(keys[i], sizeof keys[i], "buffer.%d", i);
        CHECK(name_index_put(&ix, keys[i], i) == 0, "put %d failed", i);
    }
    CHECK(ix.count == key_count && ix.capacity >= 2 * ix.count, "count %zu, capacity %zu", ix.count, ix.capacity);
    for (int i = 0; i < key_count; i++)
        CHECK(name_index_get(&ix, keys[i]) == i, "key %s gives %d", keys[i], name_index_get(&ix, keys[i]));
}

static void whole_strings(void)
{
    /* Lookups compare whole strings: a key equal to a present one but stored elsewhere is found. */
    char copy[24];
    snprintf(copy, sizeof copy, "buffer.%d", 12345);
    CHECK(name_index_get(&ix, copy) == 12345, "an equal string stored elsewhere is not found");
    CHECK(name_index_get(&ix, "buffer.") == -1, "a prefix of present keys was found");
    CHECK(name_index_get(&ix, "buffer.123450") == -1, "an extension of a present key was found");
    CHECK(name_index_get(&ix, "") == -1, "the empty string was found");
}

static void replace_in_place(void)
{
    CHECK(name_index_put(&ix, keys[7], 70000) == 0 && name_index_get(&ix, keys[7]) == 70000 && ix.count == key_count,
          "a second put of a key did not replace its value in place");
}

static void free_empties(void)
{
    name_index_free(&ix);
    CHECK(ix.count == 0 && ix.capacity == 0 && name_index_get(&ix, keys[0]) == -1, "free did not empty the index");
}

static const test_case tests[] = {
    TEST_CASE(empty_index, "an empty index answers -1"),
    TEST_CASE_AFTER(put_and_find, empty_index, "20000 keys put are all found with their values across growth"),
    TEST_CASE_AFTER(whole_strings, put_and_find,
                    "lookups compare whole strings: an equal copy is found; a prefix, an extension and \"\" are not"),
    TEST_CASE_AFTER(replace_in_place, put_and_find, "a second put of a key replaces its value in place"),
    TEST_CASE_AFTER(free_empties, put_and_find, "free empties the index"),
};

int main(int argc, char **argv)
{
    const char *only = test_select(&argc, argv);
    int status = TEST_RUN(tests, only);
    if (!only) printf("test_name_index: %d keys put, found, replaced; absent keys refused\n", key_count);
    return status;
}
