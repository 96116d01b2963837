/* test_tunedb.c - the tuning database: exact round trip, lookup, signature checks, and
 * damaged, stale and missing files loaded as empty databases with the right outcome and
 * (for damaged and stale ones) a warning naming the file and the reason. */
#include "file.h"
#include "hash.h"
#include "test_util.h"
#include "tunedb.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *outcome_names[] = {"loaded", "missing", "corrupt", "stale"};
static int warnings;
static char last_warning[2048];

static void capture(void *user, pp_log_level level, const char *message)
{
    (void)user;
    if (level != PP_LOG_WARNING) return;
    warnings++;
    snprintf(last_warning, sizeof last_warning, "%s", message);
}

static void write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "open %s", path);
    CHECK(fwrite(data, 1, len, f) == len && fclose(f) == 0, "write %s", path);
}

/* Replaces the trailing checksum line of text (in place, same length) with a correct one. */
static void fix_checksum(char *text)
{
    char *line = strstr(text, "checksum ");
    CHECK(line != NULL && strlen(line) == 9 + 32 + 1, "text ends with a checksum line");
    pp_hash h;
    hash_init(&h);
    hash_bytes(&h, text, (size_t)(line - text));
    pp_hash_value v = hash_final(&h);
    char hex[33];
    hash_hex(&v, hex);
    memcpy(line + 9, hex, 32);
}

static int same_double(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

/* Loads path expecting outcome; a non-loaded outcome must leave an empty database with
 * identity *expect and log exactly one warning (none for missing) containing each of the
 * NULL-terminated words. */
static void check_load(pp_context *ctx, const char *what, const char *path, const tunedb_identity *expect,
                       tunedb_load_outcome want, const char *const *words)
{
    tunedb db;
    tunedb_load_outcome got;
    int before = warnings;
    last_warning[0] = '\0';
    CHECK_OK(ctx, tunedb_load(ctx, path, expect, &db, &got));
    printf("%s: outcome %s (expected %s), %d entries, warning: %s\n", what, outcome_names[got], outcome_names[want],
           db.count, warnings > before ? last_warning : "(none)");
    CHECK(got == want, "%s: outcome %s, expected %s", what, outcome_names[got], outcome_names[want]);
    CHECK(db.count == 0 && db.entries == NULL, "%s: database is empty", what);
    CHECK(memcmp(&db.id, expect, sizeof *expect) == 0, "%s: identity is the expected one", what);
    CHECK(warnings == before + (want == TUNEDB_MISSING ? 0 : 1), "%s: %d warnings logged", what, warnings - before);
    if (want != TUNEDB_MISSING) CHECK(strstr(last_warning, path) != NULL, "%s: warning names the file", what);
    for (int i = 0; words && words[i]; i++)
        CHECK(strstr(last_warning, words[i]) != NULL, "%s: warning mentions '%s'", what, words[i]);
    tunedb_free(&db);
}

/* Copies text with the first occurrence of from replaced by to, fixes the checksum, and
 * writes it to path. */
static void write_mutated(const char *text, const char *from, const char *to, const char *path, int fix)
{
    const char *at = strstr(text, from);
    CHECK(at != NULL, "'%s' occurs in the saved file", from);
    size_t n = strlen(text) + strlen(to) + 1;
    char *out = malloc(n);
    snprintf(out, n, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    if (fix) fix_checksum(out);
    write_file(path, out, strlen(out));
    free(out);
}

static tunedb_trial trial(int variant, tunedb_trial_status status, double ms, double err, const char *note)
{
    tunedb_trial t;
    memset(&t, 0, sizeof t);
    t.variant = variant;
    t.status = status;
    t.median_ms = ms;
    t.max_error = err;
    snprintf(t.note, sizeof t.note, "%s", note);
    return t;
}

/* What the cases share: the temporary directory, the database file (path_sanitised's, then
 * round_trip's, saved into tune_dir) and the file the damaged copies are written to. */
static char dir[64], path[4200], tune_dir[4200], bad_path[4200];
static pp_context *ctx;
static tunedb_identity id; /* the identity every database here is saved and loaded with */
static tunedb db;          /* sig1 and sig2 (put_and_trials) */
static const char *sig1 = "conv_fwd:n64c64h56w56k64r3s3u1p1f2avg:tf32", *sig2 = "pool_bwd:n8c16h32w32f2max:fp32";
static char *text; /* the saved file (save_again), len bytes */
static size_t len;

static void path_sanitised(void)
{
    /* Path: everything outside [A-Za-z0-9._-] of the device name becomes '_'. */
    tunedb_identity pid;
    memset(&pid, 0, sizeof pid);
    strcpy(pid.device, "NVIDIA H200 (x)");
    pid.arch = 90;
    pid.sm_count = 132;
    strcpy(pid.backend, "cuda");
    const char *want_path = "/some/dir/NVIDIA_H200__x_-sm90-132sm-cuda.pptune";
    tunedb_path("/some/dir", &pid, path, sizeof path);
    printf("path: %s (expected %s)\n", path, want_path);
    CHECK(strcmp(path, want_path) == 0, "sanitised path %s", path);
    tunedb_path("/some/dir/", &pid, path, sizeof path);
    CHECK(strcmp(path, want_path) == 0, "trailing slash in dir: %s", path);
}

static void put_and_trials(void)
{
    tunedb_init(&db, &id);
    tunedb_entry *e = tunedb_put(ctx, &db, sig1);
    CHECK(e != NULL, "put %s: %s", sig1, pp_last_error(ctx));
    e->best_variant = 17;
    e->best_ms = 0.125;
    e->default_ms = 1.0 / 3.0;
    const tunedb_trial trials[] = {
        trial(0, TUNEDB_OK, 1.0 / 3.0, 0.01, ""),
        trial(17, TUNEDB_OK, 0.125, 0.1 + 0.2, "first\nsecond\rthird % 100"),
        trial(40, TUNEDB_COMPILE_FAILED, -1, -1, "too much shared memory"),
        trial(41, TUNEDB_WRONG, 5e-324, INFINITY, "-"),
        trial(42, TUNEDB_LAUNCH_FAILED, 1e300, NAN, "\xc3\xbc"),
        trial(43, TUNEDB_SKIPPED, -7, -3, "%20"),
    };
    const int ntrials = (int)(sizeof trials / sizeof trials[0]);
    for (int i = 0; i < ntrials; i++) CHECK_OK(ctx, tunedb_add_trial(ctx, e, &trials[i]));
    /* What add_trial stores: newlines as spaces, NaN error as +inf, negatives as -1. */
    CHECK(strcmp(e->trials[1].note, "first second third % 100") == 0, "newlines stored as spaces: '%s'",
          e->trials[1].note);
    CHECK(isinf(e->trials[4].max_error) && e->trials[4].max_error > 0, "NaN error stored as +inf");
    CHECK(e->trials[5].median_ms == -1 && e->trials[5].max_error == -1, "negatives stored as -1");
    printf("add_trial: note '%s', NaN error -> %g, -7 ms -> %g\n", e->trials[1].note, e->trials[4].max_error,
           e->trials[5].median_ms);
    tunedb_trial bad_trial = trial(-1, TUNEDB_OK, 1, 0, "");
    CHECK(tunedb_add_trial(ctx, e, &bad_trial) == PP_ERR_INVALID_ARGUMENT, "negative variant rejected");
    bad_trial = trial(3, TUNEDB_OK, NAN, 0, "");
    CHECK(tunedb_add_trial(ctx, e, &bad_trial) == PP_ERR_INVALID_ARGUMENT, "NaN median rejected");
    CHECK(e->trial_count == ntrials, "rejected trials not stored");
    tunedb_entry *e2 = tunedb_put(ctx, &db, sig2);
    CHECK(e2 != NULL && e2->best_variant == -1 && e2->trial_count == 0, "new entry is empty");
}

static void bad_signatures(void)
{
    /* Signatures: empty, whitespace or too long are rejected. */
    char longsig[300];
    memset(longsig, 'a', sizeof longsig - 1);
    longsig[sizeof longsig - 1] = '\0';
    const char *bad_sigs[] = {"", "conv fwd", "conv\tfwd", "conv_fwd\n", longsig};
    for (int i = 0; i < 5; i++) {
        ctx_clear_error(ctx);
        tunedb_entry *r = tunedb_put(ctx, &db, bad_sigs[i]);
        printf("put rejects signature #%d (%zu bytes): %s\n", i, strlen(bad_sigs[i]),
               r ? "accepted" : pp_last_error(ctx));
        CHECK(r == NULL && pp_last_error(ctx)[0], "signature #%d rejected with an error", i);
    }
    CHECK(db.count == 2, "rejected signatures added nothing: %d entries", db.count);
}

static void lookup(void)
{
    /* Lookup. */
    CHECK(tunedb_find(&db, sig1) == &db.entries[0] && tunedb_find(&db, sig2) == &db.entries[1], "find present");
    CHECK(tunedb_find(&db, "conv_fwd:absent") == NULL, "find absent");
    printf("find: %s and %s present, conv_fwd:absent absent\n", sig1, sig2);
}

static void round_trip(void)
{
    /* Round trip through a directory that does not exist yet. */
    snprintf(tune_dir, sizeof tune_dir, "%s/tune/nested", dir);
    tunedb_path(tune_dir, &id, path, sizeof path);
    CHECK_OK(ctx, tunedb_save(ctx, path, &db));
    tunedb back;
    tunedb_load_outcome outcome;
    int before = warnings;
    CHECK_OK(ctx, tunedb_load(ctx, path, &id, &back, &outcome));
    printf("round trip: outcome %s, %d entries (saved %d)\n", outcome_names[outcome], back.count, db.count);
    CHECK(outcome == TUNEDB_LOADED && warnings == before, "loaded without warnings");
    CHECK(memcmp(&back.id, &id, sizeof id) == 0, "identity round trip");
    CHECK(back.count == db.count, "entry count");
    for (int i = 0; i < db.count; i++) {
        const tunedb_entry *a = &db.entries[i], *b = tunedb_find(&back, a->signature);
        CHECK(b != NULL, "entry %s loaded", a->signature);
        printf("  entry %s: best %d/%d best_ms %.17g/%.17g default_ms %.17g/%.17g trials %d/%d\n", a->signature,
               a->best_variant, b->best_variant, a->best_ms, b->best_ms, a->default_ms, b->default_ms, a->trial_count,
               b->trial_count);
        CHECK(a->best_variant == b->best_variant && same_double(a->best_ms, b->best_ms) &&
                  same_double(a->default_ms, b->default_ms) && a->trial_count == b->trial_count,
              "entry %s fields", a->signature);
        for (int j = 0; j < a->trial_count; j++) {
            const tunedb_trial *x = &a->trials[j], *y = &b->trials[j];
            printf("    trial %d/%d status %d/%d median %.17g/%.17g error %.17g/%.17g note '%s'/'%s'\n", x->variant,
                   y->variant, x->status, y->status, x->median_ms, y->median_ms, x->max_error, y->max_error, x->note,
                   y->note);
            CHECK(x->variant == y->variant && x->status == y->status && same_double(x->median_ms, y->median_ms) &&
                      same_double(x->max_error, y->max_error) && strcmp(x->note, y->note) == 0,
                  "trial %d of %s", j, a->signature);
        }
    }
    tunedb_free(&back);
}

static void save_leaves_one_file(void)
{
    /* The save left exactly the database file in its directory. */
    DIR *d = opendir(tune_dir);
    CHECK(d != NULL, "open %s", tune_dir);
    int files = 0;
    for (struct dirent *de; (de = readdir(d)) != NULL;) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        printf("directory holds: %s\n", de->d_name);
        CHECK(strstr(path, de->d_name) != NULL && !strstr(de->d_name, ".tmp"), "unexpected file %s", de->d_name);
        files++;
    }
    closedir(d);
    CHECK(files == 1, "one file after saving, found %d", files);
}

static void save_again(void)
{
    /* Saving the same database again replaces the file and still leaves no temporary. */
    CHECK_OK(ctx, tunedb_save(ctx, path, &db));
    CHECK_OK(ctx, file_read_all(ctx, path, &text, &len));
    printf("saved file (%zu bytes):\n%s", len, text);
}

static void damaged_files(void)
{
    /* One byte flipped in the middle. */
    char *copy = malloc(len + 1);
    memcpy(copy, text, len + 1);
    copy[len / 2] ^= 0x01;
    write_file(bad_path, copy, len);
    check_load(ctx, "byte flipped", bad_path, &id, TUNEDB_CORRUPT, (const char *const[]){"corrupt", "checksum", NULL});

    /* Cut before the checksum line, and in the middle of a line. */
    size_t body = (size_t)(strstr(text, "checksum ") - text);
    write_file(bad_path, text, body);
    check_load(ctx, "cut before checksum", bad_path, &id, TUNEDB_CORRUPT, (const char *const[]){"truncated", NULL});
    write_file(bad_path, text, len / 2);
    check_load(ctx, "cut mid-line", bad_path, &id, TUNEDB_CORRUPT, (const char *const[]){"truncated", NULL});
    write_file(bad_path, "", 0);
    check_load(ctx, "empty file", bad_path, &id, TUNEDB_CORRUPT, NULL);
    write_mutated(text, "checksum", "poolprop-tune 1\ncheck", bad_path, 0);
    check_load(ctx, "checksum not the last line", bad_path, &id, TUNEDB_CORRUPT, NULL);
    free(copy);
}

static void malformed_files(void)
{
    tunedb back;
    tunedb_load_outcome outcome;
    /* Well-checksummed but malformed: the parser itself must reject them. */
    static const struct {
        const char *from, *to, *reason;
    } mutations[] = {
        {"arch 90\n", "arch 9x\n", "line 3: bad arch '9x'"},
        {"arch 90\n", "arch  90\n", "line 3: empty field"},
        {"sm_count 132", "sm_count -132", "line 4: bad sm_count"},
        {"best_ms 0.125 ", "best_ms 0.125ms ", "line 8: bad best_ms"},
        {"best 17 ", "best -17 ", "bad best variant"},
        {"trials 6", "trials 5", "line 14: expected 'entry' or 'end'"},
        {"trials 6", "trials 7", "line 15: expected 'trial'"},
        {"trial 40 ", "trial -40 ", "bad variant"},
        {" ok ", " fine ", "unknown trial status 'fine'"},
        {"compile_failed - -", "compile_failed nan -", "bad median_ms"},
        {"compile_failed - -", "compile_failed inf -", "bad median_ms"},
        {"end 2", "end 3", "expected 'end 2'"},
        {"end 2\n", "end 2\nend 2\n", "text after 'end'"},
        {"pool_bwd:n8c16h32w32f2max:fp32", "conv_fwd:n64c64h56w56k64r3s3u1p1f2avg:tf32", "duplicate entry"},
        {"toolkit nvrtc%2013.0", "toolkit nvrtc%2", "bad toolkit"},
        {"toolkit nvrtc%2013.0", "toolkit nvrtc%0013.0", "bad toolkit"},
        {"generator", "generator_x", "line 6: expected 'generator <value>'"},
        {"poolprop-tune 1", "poolprop-tune 2", "unsupported format version"},
        {"poolprop-tune 1", "poolprop-tun3 1", "bad magic"},
        /* A best variant that is not one of the entry's passing trials: the file is corrupt,
         * its warning names the entry's line and signature. */
        {"best 17 ", "best 41 ",
         "line 8: entry conv_fwd:n64c64h56w56k64r3s3u1p1f2avg:tf32: best variant 41 failed its check"},
        {"best 17 ", "best 40 ",
         "line 8: entry conv_fwd:n64c64h56w56k64r3s3u1p1f2avg:tf32: best variant 40 failed to compile"},
        {"best 17 ", "best 42 ", "best variant 42 failed to launch"},
        {"best 17 ", "best 43 ", "best variant 43 was never tried (its trial is 'skipped')"},
        {"best 17 ", "best 5 ",
         "line 8: entry conv_fwd:n64c64h56w56k64r3s3u1p1f2avg:tf32: best variant 5 was never tried"},
        {"best - ", "best 0 ", "line 15: entry pool_bwd:n8c16h32w32f2max:fp32: best variant 0 was never tried"},
    };
    for (size_t i = 0; i < sizeof mutations / sizeof mutations[0]; i++) {
        char what[200];
        snprintf(what, sizeof what, "'%s' -> '%s'", mutations[i].from, mutations[i].to);
        for (char *c = what; *c; c++)
            if (*c == '\n') *c = ' ';
        write_mutated(text, mutations[i].from, mutations[i].to, bad_path, 1);
        check_load(ctx, what, bad_path, &id, TUNEDB_CORRUPT,
                   (const char *const[]){"corrupt", mutations[i].reason, NULL});
    }
    /* The unmodified text with a recomputed checksum still loads (the mutations are what failed). */
    write_mutated(text, "end 2", "end 2", bad_path, 1);
    CHECK_OK(ctx, tunedb_load(ctx, bad_path, &id, &back, &outcome));
    CHECK(outcome == TUNEDB_LOADED && back.count == 2, "control copy loads: %s", outcome_names[outcome]);
    tunedb_free(&back);
    printf("control copy with recomputed checksum: loaded\n");
}

static void save_refuses_bad_best(void)
{
    /* Saving refuses what loading would: a best variant that failed or was never tried. */
    const int best_tries[] = {41, 5};
    for (int i = 0; i < 2; i++) {
        db.entries[0].best_variant = best_tries[i];
        pp_status st = tunedb_save(ctx, bad_path, &db);
        printf("save with best v%d: %s: %s\n", best_tries[i], pp_status_string(st), pp_last_error(ctx));
        CHECK(st == PP_ERR_INVALID_ARGUMENT && strstr(pp_last_error(ctx), sig1), "save refused naming the entry");
    }
    db.entries[0].best_variant = 17;
}

static void read_cap(void)
{
    /* Reads are capped at TUNEDB_MAX_BYTES: a larger file (sparse here, so nothing is written)
     * is refused by its size, a device that never ends after TUNEDB_MAX_BYTES + 1 bytes. */
    FILE *big = fopen(bad_path, "wb");
    CHECK(big != NULL && ftruncate(fileno(big), (off_t)TUNEDB_MAX_BYTES + 1) == 0 && fclose(big) == 0,
          "a sparse file of %zu bytes", TUNEDB_MAX_BYTES + 1);
    char limit_text[64];
    snprintf(limit_text, sizeof limit_text, "more than the %zu bytes a tuning database may hold", TUNEDB_MAX_BYTES);
    check_load(ctx, "64 MiB + 1 byte", bad_path, &id, TUNEDB_CORRUPT,
               (const char *const[]){"corrupt", limit_text, NULL});
    check_load(ctx, "/dev/zero", "/dev/zero", &id, TUNEDB_CORRUPT, (const char *const[]){"corrupt", limit_text, NULL});
    char *zeros;
    size_t zero_len;
    pp_status zst = file_read_capped(ctx, "/dev/zero", 1000, "a test file", &zeros, &zero_len);
    printf("/dev/zero with a 1000-byte cap: %s: %s\n", pp_status_string(zst), pp_last_error(ctx));
    CHECK(zst == PP_ERR_IO && zeros == NULL &&
              strstr(pp_last_error(ctx), "/dev/zero: more than the 1000 bytes a test file"),
          "refused after the cap");
    CHECK_OK(ctx, file_read_capped(ctx, path, len, "the database", &zeros, &zero_len));
    CHECK(zero_len == len && memcmp(zeros, text, len) == 0, "a file of exactly the cap is read whole");
    free(zeros);
}

static void stale_files(void)
{
    /* Stale: saved for another toolkit, then for another toolkit and generator. */
    char stale_path[4200];
    snprintf(stale_path, sizeof stale_path, "%s/stale.pptune", dir);
    strcpy(db.id.toolkit, "nvrtc 12.8");
    CHECK_OK(ctx, tunedb_save(ctx, stale_path, &db));
    check_load(ctx, "toolkit differs", stale_path, &id, TUNEDB_STALE,
               (const char *const[]){"stale", "toolkit is 'nvrtc 12.8', expected 'nvrtc 13.0'", NULL});
    CHECK(strstr(last_warning, "generator") == NULL, "only the toolkit is named: %s", last_warning);
    strcpy(db.id.generator, "0000");
    CHECK_OK(ctx, tunedb_save(ctx, stale_path, &db));
    check_load(ctx, "toolkit and generator differ", stale_path, &id, TUNEDB_STALE,
               (const char *const[]){"toolkit", "generator is '0000'", NULL});
    db.id = id;
    db.id.sm_count = 66;
    CHECK_OK(ctx, tunedb_save(ctx, stale_path, &db));
    check_load(ctx, "sm_count differs", stale_path, &id, TUNEDB_STALE,
               (const char *const[]){"sm_count is '66', expected '132'", NULL});
}

static void missing_file(void)
{
    /* Missing. */
    char missing[4200];
    snprintf(missing, sizeof missing, "%s/absent/none.pptune", dir);
    check_load(ctx, "missing file", missing, &id, TUNEDB_MISSING, NULL);
}

static void put_existing_empties(void)
{
    tunedb_entry *e;
    /* tunedb_put on an existing signature empties it. */
    e = tunedb_put(ctx, &db, sig1);
    CHECK(e == &db.entries[0] && e->trial_count == 0 && e->best_variant == -1 && e->best_ms == -1,
          "put on an existing entry empties it");
    printf("put on existing %s: emptied, %d entries\n", sig1, db.count);
}

static const test_case tests[] = {
    TEST_CASE(path_sanitised, "the file name: every byte outside [A-Za-z0-9._-] of the device becomes '_'"),
    TEST_CASE(put_and_trials, "put and add_trial: what a trial stores (newlines, NaN, negatives), bad trials refused"),
    TEST_CASE_AFTER(bad_signatures, put_and_trials,
                    "empty, whitespace and too long signatures are refused, adding nothing"),
    TEST_CASE_AFTER(lookup, put_and_trials, "find returns present entries and NULL for an absent one"),
    TEST_CASE_AFTER(round_trip, put_and_trials, "save into a new nested directory and load: every field bit for bit"),
    TEST_CASE_AFTER(save_leaves_one_file, round_trip, "the save leaves only the database file, no temporary"),
    TEST_CASE_AFTER(save_again, round_trip, "saving again replaces the file (printed)"),
    TEST_CASE_AFTER(damaged_files, save_again, "a flipped byte, cuts, an empty file, a misplaced checksum: corrupt"),
    TEST_CASE_AFTER(malformed_files, save_again,
                    "25 well-checksummed malformed files are corrupt with the reason; the unmodified text loads"),
    TEST_CASE_AFTER(save_refuses_bad_best, put_and_trials,
                    "save refuses a best variant that failed or was never tried"),
    TEST_CASE_AFTER(read_cap, save_again,
                    "reads are capped: a larger (sparse) file and /dev/zero refused, exactly "
                    "the cap read whole"),
    TEST_CASE_AFTER(stale_files, put_and_trials, "another toolkit, generator or sm_count: stale, naming what differs"),
    TEST_CASE(missing_file, "a missing file loads as an empty database without a warning"),
    TEST_CASE_AFTER(put_existing_empties, put_and_trials, "put on an existing signature empties the entry"),
};

int main(int argc, char **argv)
{
    const char *only = test_select(&argc, argv);
    test_temp_dir(dir, sizeof dir, "test_tunedb");

    pp_context_options options;
    pp_context_options_init(&options);
    options.backend = PP_BACKEND_NONE;
    options.disable_cache = 1;
    options.log = capture;
    CHECK_OK(NULL, pp_context_create(&options, &ctx));

    memset(&id, 0, sizeof id);
    strcpy(id.device, "NVIDIA H200 100%\t\xc3\xbc"); /* space, '%', tab, UTF-8 */
    id.arch = 90;
    id.sm_count = 132;
    strcpy(id.toolkit, "nvrtc 13.0");
    strcpy(id.generator, "3f2a9c0d11e2b4a7");
    strcpy(id.backend, "cuda");
    snprintf(bad_path, sizeof bad_path, "%s/damaged.pptune", dir);

    int status = TEST_RUN(tests, only);
    free(text);
    tunedb_free(&db);
    pp_context_destroy(ctx);
    CHECK(test_remove_dir(dir) == 0, "cleanup");
    if (!only) printf("tunedb tests passed\n");
    return status;
}
