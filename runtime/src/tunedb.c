/* tunedb.c - the per-device tuning database: its text file (format in tunedb.h), written
 * atomically and read strictly; damaged and stale files are reported and ignored. */
#include "tunedb.h"

#include "cache.h"
#include "file.h"
#include "hash.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char magic_line[] = "poolprop-tune 1";
static const char *const status_names[] = {"ok", "wrong", "compile_failed", "launch_failed", "skipped"};
enum {
    status_count = sizeof status_names / sizeof status_names[0],
    max_tokens = 10
};

void tunedb_init(tunedb *db, const tunedb_identity *id)
{
    memset(db, 0, sizeof *db);
    if (id) db->id = *id;
}

void tunedb_free(tunedb *db)
{
    for (int i = 0; i < db->count; i++) free(db->entries[i].trials);
    free(db->entries);
    db->entries = NULL;
    db->count = db->capacity = 0;
}

static void sanitize(const char *s, size_t size, char *out)
{
    size_t n = strnlen(s, size - 1);
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                   c == '-';
        out[i] = keep ? c : '_';
    }
    out[n] = '\0';
}

void tunedb_path(const char *dir, const tunedb_identity *id, char *out, size_t size)
{
    char device[sizeof id->device], backend[sizeof id->backend];
    sanitize(id->device, sizeof id->device, device);
    sanitize(id->backend, sizeof id->backend, backend);
    size_t n = strlen(dir);
    snprintf(out, size, "%s%s%s-sm%d-%dsm-%s.pptune", dir, n && dir[n - 1] != '/' ? "/" : "", device, id->arch,
             id->sm_count, backend);
}

/* Non-empty, shorter than the signature field, every byte in 0x21..0x7e. */
static int signature_ok(const char *s)
{
    size_t n = strnlen(s, sizeof((tunedb_entry *)0)->signature);
    if (n == 0 || n >= sizeof((tunedb_entry *)0)->signature) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e) return 0;
    return 1;
}

tunedb_entry *tunedb_find(tunedb *db, const char *signature)
{
    for (int i = 0; i < db->count; i++)
        if (strcmp(db->entries[i].signature, signature) == 0) return &db->entries[i];
    return NULL;
}

tunedb_entry *tunedb_put(pp_context *ctx, tunedb *db, const char *signature)
{
    if (!signature || !signature_ok(signature)) {
        ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "tuning signature '%.300s' is empty, too long or has whitespace",
                 signature ? signature : "(null)");
        return NULL;
    }
    tunedb_entry *e = tunedb_find(db, signature);
    if (!e) {
        if (db->count == db->capacity) {
            int cap = db->capacity ? 2 * db->capacity : 16;
            tunedb_entry *grown = realloc(db->entries, (size_t)cap * sizeof *grown);
            if (!grown) {
                ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "tuning database: out of memory");
                return NULL;
            }
            db->entries = grown;
            db->capacity = cap;
        }
        e = &db->entries[db->count++];
        memset(e, 0, sizeof *e);
        strcpy(e->signature, signature);
    }
    e->trial_count = 0;
    e->best_variant = -1;
    e->best_ms = e->default_ms = -1;
    return e;
}

static int trial_ok(const tunedb_trial *t)
{
    return t->variant >= 0 && (int)t->status >= 0 && (int)t->status < status_count && isfinite(t->median_ms);
}

pp_status tunedb_add_trial(pp_context *ctx, tunedb_entry *entry, const tunedb_trial *trial)
{
    if (!trial_ok(trial))
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "tuning trial for %s: variant %d, status %d, median %g ms",
                        entry->signature, trial->variant, (int)trial->status, trial->median_ms);
    if (entry->trial_count == entry->trial_capacity) {
        int cap = entry->trial_capacity ? 2 * entry->trial_capacity : 8;
        tunedb_trial *grown = realloc(entry->trials, (size_t)cap * sizeof *grown);
        if (!grown) return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "tuning database: out of memory");
        entry->trials = grown;
        entry->trial_capacity = cap;
    }
    tunedb_trial *t = &entry->trials[entry->trial_count++];
    *t = *trial;
    t->note[sizeof t->note - 1] = '\0';
    for (char *c = t->note; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' ';
    if (t->median_ms < 0) t->median_ms = -1;
    if (isnan(t->max_error))
        t->max_error = INFINITY;
    else if (t->max_error < 0)
        t->max_error = -1;
    return PP_OK;
}

/* ---- writing ---- */

typedef struct outbuf {
    char *data;
    size_t len, cap;
    int failed;
} outbuf;

static void out_printf(outbuf *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_printf(outbuf *o, const char *fmt, ...)
{
    if (o->failed) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->data + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
        o->failed = 1;
        return;
    }
    if ((size_t)n >= o->cap - o->len) {
        size_t cap = 2 * o->cap + (size_t)n + 1;
        char *grown = realloc(o->data, cap);
        if (!grown) {
            o->failed = 1;
            return;
        }
        o->data = grown;
        o->cap = cap;
        va_start(ap, fmt);
        vsnprintf(o->data + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
    }
    o->len += (size_t)n;
}

enum {
    escaped_size = 3 * 256 + 1
};

/* s holds at most size-1 bytes; out has escaped_size bytes. */
static const char *escape(const char *s, size_t size, char *out)
{
    size_t n = strnlen(s, size - 1), k = 0;
    if (n == 0) return "-";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c > 0x7e || c == '%' || (n == 1 && c == '-'))
            k += (size_t)sprintf(out + k, "%%%02X", c);
        else
            out[k++] = (char)c;
    }
    out[k] = '\0';
    return out;
}

static const char *number(double v, char out[32])
{
    if (v < 0) return "-";
    snprintf(out, 32, "%.17g", v);
    return out;
}

/* NULL when e's best variant is none (-1) or one of its trials that passed its check; else
 * what is wrong with it. A best that failed or was never tried would be used by every model
 * build on the device. */
static const char *best_problem(const tunedb_entry *e)
{
    if (e->best_variant < 0) return NULL;
    const tunedb_trial *found = NULL;
    for (int j = 0; j < e->trial_count; j++) {
        if (e->trials[j].variant != e->best_variant) continue;
        if (e->trials[j].status == TUNEDB_OK) return NULL;
        if (!found) found = &e->trials[j];
    }
    if (!found) return "was never tried (no trial line names it)";
    static const char *const failed[] = {
        NULL, "failed its check (its trial is 'wrong')", "failed to compile (its trial is 'compile_failed')",
        "failed to launch (its trial is 'launch_failed')", "was never tried (its trial is 'skipped')"};
    return failed[found->status];
}

static pp_status check_db(pp_context *ctx, const tunedb *db)
{
    if (db->id.arch < 0 || db->id.sm_count < 0)
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "tuning database: arch %d, sm_count %d", db->id.arch,
                        db->id.sm_count);
    for (int i = 0; i < db->count; i++) {
        const tunedb_entry *e = &db->entries[i];
        int ok = signature_ok(e->signature) && isfinite(e->best_ms) && isfinite(e->default_ms) && e->trial_count >= 0;
        for (int j = 0; ok && j < e->trial_count; j++) ok = trial_ok(&e->trials[j]) && !isnan(e->trials[j].max_error);
        if (!ok)
            return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "tuning database entry %d ('%.256s') has values out of range",
                            i, e->signature);
        const char *why = best_problem(e);
        if (why)
            return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "tuning database entry %d ('%.256s'): best variant %d %s", i,
                            e->signature, e->best_variant, why);
    }
    return PP_OK;
}

pp_status tunedb_save(pp_context *ctx, const char *path, const tunedb *db)
{
    PP_TRY(check_db(ctx, db));
    const char *slash = strrchr(path, '/');
    if (slash && slash != path) {
        char dir[4096];
        size_t n = (size_t)(slash - path);
        if (n >= sizeof dir) return ctx_fail(ctx, PP_ERR_IO, "tuning database path is too long: %.200s", path);
        memcpy(dir, path, n);
        dir[n] = '\0';
        PP_TRY(cache_make_dirs(ctx, dir));
    }
    outbuf o = {malloc(1 << 14), 0, 1 << 14, 0};
    if (!o.data) return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "tuning database: out of memory");
    const tunedb_identity *id = &db->id;
    char a[escaped_size], b[escaped_size], c[escaped_size], d[escaped_size];
    out_printf(&o, "%s\ndevice %s\narch %d\nsm_count %d\ntoolkit %s\ngenerator %s\nbackend %s\n", magic_line,
               escape(id->device, sizeof id->device, a), id->arch, id->sm_count,
               escape(id->toolkit, sizeof id->toolkit, b), escape(id->generator, sizeof id->generator, c),
               escape(id->backend, sizeof id->backend, d));
    for (int i = 0; i < db->count; i++) {
        const tunedb_entry *e = &db->entries[i];
        char best[16] = "-", x[32], y[32];
        if (e->best_variant >= 0) snprintf(best, sizeof best, "%d", e->best_variant);
        out_printf(&o, "entry %s best %s best_ms %s default_ms %s trials %d\n", e->signature, best,
                   number(e->best_ms, x), number(e->default_ms, y), e->trial_count);
        for (int j = 0; j < e->trial_count; j++) {
            const tunedb_trial *t = &e->trials[j];
            out_printf(&o, "trial %d %s %s %s %s\n", t->variant, status_names[t->status], number(t->median_ms, x),
                       number(t->max_error, y), escape(t->note, sizeof t->note, a));
        }
    }
    out_printf(&o, "end %d\n", db->count);
    if (!o.failed) {
        pp_hash h;
        hash_init(&h);
        hash_bytes(&h, o.data, o.len);
        pp_hash_value v = hash_final(&h);
        char hex[33];
        hash_hex(&v, hex);
        out_printf(&o, "checksum %s\n", hex);
    }
    pp_status st = o.failed ? ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "tuning database: out of memory")
                            : file_write_atomic(ctx, path, o.data, o.len);
    free(o.data);
    return st;
}

/* ---- reading ---- */

typedef struct parser {
    pp_context *ctx;
    char *next, *end; /* the unread part of the body (everything before the checksum line) */
    int line;         /* number of the line last read; 0 before the first */
    char *tok[max_tokens];
    int ntok;
    char reason[1024];
} parser;

static pp_status bad(parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static pp_status bad(parser *p, const char *fmt, ...)
{
    int k = p->line > 0 ? snprintf(p->reason, sizeof p->reason, "line %d: ", p->line) : 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->reason + k, sizeof p->reason - (size_t)k, fmt, ap);
    va_end(ap);
    return PP_ERR_PARSE;
}

/* 1: a line split into p->tok; 0: the body is exhausted; -1: malformed (reason set). */
static int next_line(parser *p)
{
    p->line++;
    if (p->next >= p->end) return 0;
    char *s = p->next, *nl = memchr(s, '\n', (size_t)(p->end - s));
    *nl = '\0';
    p->next = nl + 1;
    p->ntok = 0;
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c != ' ' && (*c < 0x21 || *c > 0x7e)) {
            bad(p, "control or non-ASCII byte 0x%02x", *c);
            return -1;
        }
    }
    for (;;) {
        char *sp = strchr(s, ' ');
        if (sp) *sp = '\0';
        if (!*s || p->ntok == max_tokens) {
            bad(p, *s ? "too many fields" : "empty field (stray space)");
            return -1;
        }
        p->tok[p->ntok++] = s;
        if (!sp) return 1;
        s = sp + 1;
    }
}

/* Non-negative decimal; "-" gives -1 where allowed. */
static int parse_int(const char *s, int allow_none, int *out)
{
    if (allow_none && strcmp(s, "-") == 0) {
        *out = -1;
        return 1;
    }
    if (*s < '0' || *s > '9') return 0;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*end || errno || v > INT_MAX) return 0;
    *out = (int)v;
    return 1;
}

/* Non-negative, not NaN, finite unless allow_inf; "-" gives -1. */
static int parse_double(const char *s, int allow_inf, double *out)
{
    if (strcmp(s, "-") == 0) {
        *out = -1;
        return 1;
    }
    if (*s == '+' || *s == '-') return 0;
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || isnan(v) || (isinf(v) && !allow_inf)) return 0;
    *out = v;
    return 1;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int unescape(const char *s, char *out, size_t size)
{
    size_t k = 0;
    if (strcmp(s, "-") == 0) s = "";
    for (; *s; s++) {
        int c = (unsigned char)*s;
        if (c == '%') {
            int hi = hex_digit(s[1]), lo = hi < 0 ? -1 : hex_digit(s[2]);
            if (lo < 0 || hi * 16 + lo == 0) return 0;
            c = hi * 16 + lo;
            s += 2;
        }
        if (k + 1 >= size) return 0;
        out[k++] = (char)c;
    }
    out[k] = '\0';
    return 1;
}

/* Reads "key value" into a string (escaped) or an int field. */
static pp_status field(parser *p, const char *key, char *str, size_t size, int *num)
{
    int r = next_line(p);
    if (r < 0) return PP_ERR_PARSE;
    if (r == 0 || p->ntok != 2 || strcmp(p->tok[0], key) != 0) return bad(p, "expected '%s <value>'", key);
    if (str ? !unescape(p->tok[1], str, size) : !parse_int(p->tok[1], 0, num))
        return bad(p, "bad %s '%.100s'", key, p->tok[1]);
    return PP_OK;
}

static pp_status parse_trial(parser *p, tunedb_entry *e, int index, int count)
{
    int r = next_line(p);
    if (r < 0) return PP_ERR_PARSE;
    if (r == 0 || p->ntok != 6 || strcmp(p->tok[0], "trial") != 0)
        return bad(p, "expected 'trial' (%d of %d of entry %s)", index + 1, count, e->signature);
    tunedb_trial t;
    memset(&t, 0, sizeof t);
    int status = 0;
    while (status < status_count && strcmp(p->tok[2], status_names[status]) != 0) status++;
    t.status = (tunedb_trial_status)status;
    if (!parse_int(p->tok[1], 0, &t.variant)) return bad(p, "bad variant '%.100s'", p->tok[1]);
    if (status == status_count) return bad(p, "unknown trial status '%.100s'", p->tok[2]);
    if (!parse_double(p->tok[3], 0, &t.median_ms)) return bad(p, "bad median_ms '%.100s'", p->tok[3]);
    if (!parse_double(p->tok[4], 1, &t.max_error)) return bad(p, "bad max_error '%.100s'", p->tok[4]);
    if (!unescape(p->tok[5], t.note, sizeof t.note)) return bad(p, "bad note");
    return tunedb_add_trial(p->ctx, e, &t);
}

/* PP_OK, PP_ERR_PARSE with p->reason set, or PP_ERR_OUT_OF_MEMORY. db->id is filled from the file. */
static pp_status parse_file(parser *p, char *data, size_t len, tunedb *db)
{
    size_t first = strcspn(data, "\n");
    if (len == 0) return bad(p, "empty file");
    if (strncmp(data, "poolprop-tune ", 14) != 0) return bad(p, "bad magic: not a tuning database");
    if (first != strlen(magic_line) || memcmp(data, magic_line, first) != 0)
        return bad(p, "unsupported format version");
    if (strlen(data) != len) return bad(p, "contains a NUL byte");
    if (data[len - 1] != '\n') return bad(p, "truncated: no newline at the end");
    size_t body = len - 1;
    while (body > 0 && data[body - 1] != '\n') body--;
    if (len - 1 - body != 9 + 32 || strncmp(data + body, "checksum ", 9) != 0)
        return bad(p, "truncated: the last line is not the checksum");
    pp_hash h;
    hash_init(&h);
    hash_bytes(&h, data, body);
    pp_hash_value v = hash_final(&h);
    char hex[33];
    hash_hex(&v, hex);
    if (memcmp(hex, data + body + 9, 32) != 0) return bad(p, "checksum mismatch");

    p->next = data + first + 1;
    p->end = data + body;
    p->line = 1;
    tunedb_identity *id = &db->id;
    PP_TRY(field(p, "device", id->device, sizeof id->device, NULL));
    PP_TRY(field(p, "arch", NULL, 0, &id->arch));
    PP_TRY(field(p, "sm_count", NULL, 0, &id->sm_count));
    PP_TRY(field(p, "toolkit", id->toolkit, sizeof id->toolkit, NULL));
    PP_TRY(field(p, "generator", id->generator, sizeof id->generator, NULL));
    PP_TRY(field(p, "backend", id->backend, sizeof id->backend, NULL));
    for (;;) {
        int r = next_line(p), n;
        if (r < 0) return PP_ERR_PARSE;
        if (r == 0) return bad(p, "expected 'entry' or 'end'");
        char **t = p->tok;
        if (strcmp(t[0], "end") == 0) {
            if (p->ntok != 2 || !parse_int(t[1], 0, &n) || n != db->count)
                return bad(p, "expected 'end %d'", db->count);
            if (p->next == p->end) return PP_OK;
            p->line++;
            return bad(p, "text after 'end'");
        }
        if (strcmp(t[0], "entry") != 0) return bad(p, "expected 'entry' or 'end'");
        if (p->ntok != 10 || strcmp(t[2], "best") || strcmp(t[4], "best_ms") || strcmp(t[6], "default_ms") ||
            strcmp(t[8], "trials"))
            return bad(p, "expected 'entry <signature> best <variant> best_ms <ms> default_ms <ms> trials <n>'");
        if (!signature_ok(t[1])) return bad(p, "signature too long");
        if (tunedb_find(db, t[1])) return bad(p, "duplicate entry %.256s", t[1]);
        int best;
        double best_ms, default_ms;
        if (!parse_int(t[3], 1, &best)) return bad(p, "bad best variant '%.100s'", t[3]);
        if (!parse_double(t[5], 0, &best_ms)) return bad(p, "bad best_ms '%.100s'", t[5]);
        if (!parse_double(t[7], 0, &default_ms)) return bad(p, "bad default_ms '%.100s'", t[7]);
        if (!parse_int(t[9], 0, &n)) return bad(p, "bad trial count '%.100s'", t[9]);
        tunedb_entry *e = tunedb_put(p->ctx, db, t[1]);
        if (!e) return PP_ERR_OUT_OF_MEMORY;
        e->best_variant = best;
        e->best_ms = best_ms;
        e->default_ms = default_ms;
        int entry_line = p->line;
        for (int i = 0; i < n; i++) PP_TRY(parse_trial(p, e, i, n));
        const char *why = best_problem(e);
        if (why) {
            p->line = entry_line;
            return bad(p, "entry %s: best variant %d %s", e->signature, best, why);
        }
    }
}

static void differs(char *out, size_t size, const char *field, const char *got, const char *want)
{
    size_t k = strlen(out);
    if (strcmp(got, want) != 0 && k + 1 < size)
        snprintf(out + k, size - k, "%s%s is '%.100s', expected '%.100s'", k ? "; " : "", field, got, want);
}

static void differs_int(char *out, size_t size, const char *field, int got, int want)
{
    char a[16], b[16];
    snprintf(a, sizeof a, "%d", got);
    snprintf(b, sizeof b, "%d", want);
    differs(out, size, field, a, b);
}

pp_status tunedb_load(pp_context *ctx, const char *path, const tunedb_identity *expect, tunedb *db,
                      tunedb_load_outcome *outcome)
{
    tunedb_init(db, expect);
    *outcome = TUNEDB_MISSING;
    if (access(path, F_OK) != 0 && errno == ENOENT) return PP_OK;
    parser p;
    memset(&p, 0, sizeof p);
    p.ctx = ctx;
    tunedb loaded;
    tunedb_init(&loaded, NULL);
    char *data;
    size_t len;
    pp_status st = file_read_capped(ctx, path, TUNEDB_MAX_BYTES, "a tuning database", &data, &len);
    if (st == PP_OK) {
        st = parse_file(&p, data, len, &loaded);
        free(data);
    } else if (st != PP_ERR_OUT_OF_MEMORY) {
        st = bad(&p, "cannot read it: %s", ctx ? ctx->error : pp_status_string(st));
    }
    if (st != PP_OK && st != PP_ERR_PARSE) {
        tunedb_free(&loaded);
        return st;
    }
    if (st == PP_OK) {
        const tunedb_identity *a = &loaded.id;
        differs(p.reason, sizeof p.reason, "device", a->device, expect->device);
        differs_int(p.reason, sizeof p.reason, "arch", a->arch, expect->arch);
        differs_int(p.reason, sizeof p.reason, "sm_count", a->sm_count, expect->sm_count);
        differs(p.reason, sizeof p.reason, "toolkit", a->toolkit, expect->toolkit);
        differs(p.reason, sizeof p.reason, "generator", a->generator, expect->generator);
        differs(p.reason, sizeof p.reason, "backend", a->backend, expect->backend);
        if (!p.reason[0]) {
            *db = loaded;
            *outcome = TUNEDB_LOADED;
            return PP_OK;
        }
        ctx_log(ctx, PP_LOG_WARNING, "tuning database %s is stale (%s): ignored", path, p.reason);
        *outcome = TUNEDB_STALE;
    } else {
        ctx_log(ctx, PP_LOG_WARNING, "tuning database %s is corrupt (%s): ignored", path, p.reason);
        *outcome = TUNEDB_CORRUPT;
    }
    tunedb_free(&loaded);
    return PP_OK;
}
