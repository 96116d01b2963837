/* fuzz_tunedb.c - libFuzzer target: the tuning database reader (tunedb_load; format in
 * runtime/src/tunedb.h). The input is a whole .pptune file. It is loaded as given, then
 * once more with its checksum line replaced by the right one (appended if it has none), so
 * that mutations reach the parser behind the checksum. Whatever the file, the load returns
 * PP_OK with an outcome; a database that loads is saved and loads back the same (tunedb_save
 * refuses only what tunedb_load would reject). The expected identity is fixed; the seeds
 * in corpus/tunedb carry it. */
#define _GNU_SOURCE /* memmem */
#include "hash.h"
#include "fuzz_util.h"
#include "tunedb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void load(const uint8_t *data, size_t size)
{
    pp_context *ctx = fuzz_util_context();
    tunedb_identity id;
    memset(&id, 0, sizeof id);
    snprintf(id.device, sizeof id.device, "fuzz device");
    id.arch = 90, id.sm_count = 2;
    snprintf(id.toolkit, sizeof id.toolkit, "13.0");
    snprintf(id.generator, sizeof id.generator, "fuzz");
    snprintf(id.backend, sizeof id.backend, "host");
    char path[4200];
    snprintf(path, sizeof path, "%s", fuzz_util_write("input.pptune", data, size));
    tunedb db;
    tunedb_load_outcome outcome;
    FUZZ_ASSERT(tunedb_load(ctx, path, &id, &db, &outcome) == PP_OK);
    FUZZ_ASSERT(outcome == TUNEDB_LOADED || outcome == TUNEDB_CORRUPT || outcome == TUNEDB_STALE);
    if (outcome != TUNEDB_LOADED) {
        FUZZ_ASSERT(db.count == 0 && memcmp(&db.id, &id, sizeof id) == 0);
        tunedb_free(&db);
        return;
    }
    FUZZ_ASSERT(db.count >= 0 && db.count <= db.capacity);
    for (int i = 0; i < db.count; i++) {
        const tunedb_entry *e = &db.entries[i];
        FUZZ_ASSERT(memchr(e->signature, '\0', sizeof e->signature) && e->signature[0]);
        FUZZ_ASSERT(tunedb_find(&db, e->signature) == e); /* signatures are unique */
        FUZZ_ASSERT(e->trial_count >= 0 && e->trial_count <= e->trial_capacity);
        for (int t = 0; t < e->trial_count; t++) {
            FUZZ_ASSERT(e->trials[t].variant >= 0);
            FUZZ_ASSERT(memchr(e->trials[t].note, '\0', sizeof e->trials[t].note));
        }
    }
    char again[4200];
    snprintf(again, sizeof again, "%s/saved/db.pptune", fuzz_util_dir());
    FUZZ_ASSERT(tunedb_save(ctx, again, &db) == PP_OK);
    tunedb back;
    FUZZ_ASSERT(tunedb_load(ctx, again, &id, &back, &outcome) == PP_OK && outcome == TUNEDB_LOADED);
    FUZZ_ASSERT(back.count == db.count);
    for (int i = 0; i < db.count; i++) {
        const tunedb_entry *a = &db.entries[i], *b = tunedb_find(&back, a->signature);
        FUZZ_ASSERT(b && b->best_variant == a->best_variant && b->trial_count == a->trial_count);
        for (int t = 0; t < a->trial_count; t++)
            FUZZ_ASSERT(b->trials[t].variant == a->trials[t].variant && b->trials[t].status == a->trials[t].status);
    }
    tunedb_free(&back);
    tunedb_free(&db);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    load(data, size);
    /* body: everything up to the last "checksum " line (or all of it, with a newline added) */
    const uint8_t *line = size >= 10 ? memmem(data, size, "\nchecksum ", 10) : NULL;
    for (const uint8_t *l = line; l;) { /* the last one */
        line = l;
        l = memmem(l + 1, size - (size_t)(l + 1 - data), "\nchecksum ", 10);
    }
    size_t body = line ? (size_t)(line - data) + 1 : size;
    int newline = !line && size > 0 && data[size - 1] != '\n';
    uint8_t *fixed = malloc(body + 1 + 9 + 32 + 1);
    if (!fixed) return 0;
    memcpy(fixed, data, body);
    if (newline) fixed[body++] = '\n';
    pp_hash h;
    hash_init(&h);
    hash_bytes(&h, fixed, body);
    pp_hash_value v = hash_final(&h);
    char hex[33];
    hash_hex(&v, hex);
    memcpy(fixed + body, "checksum ", 9);
    memcpy(fixed + body + 9, hex, 32);
    fixed[body + 41] = '\n';
    size_t n = body + 42;
    if (n != size || memcmp(fixed, data, size) != 0) load(fixed, n);
    free(fixed);
    return 0;
}
