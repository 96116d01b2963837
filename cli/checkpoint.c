/* checkpoint.c - training checkpoints (format and read limits in checkpoint.h), and the
 * FNV-1a-64 hash the checkpoint and `train --resume` use. */
#include "checkpoint.h"

#include "outfile.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char magic[8] = {'P', 'P', 'C', 'K', 'P', 'T', '0', '2'};
static const char old_magic[8] = {'P', 'P', 'C', 'K', 'P', 'T', '0', '1'};

static int fail(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
    return 1;
}

uint64_t checkpoint_fnv1a(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

static void store_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t load_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

int checkpoint_hash_file(const char *path, uint64_t max_bytes, uint64_t *out, char *err, size_t err_len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return fail(err, err_len, "%s: cannot open: %s", path, strerror(errno));
    uint64_t h = CHECKPOINT_FNV_BASIS, total = 0;
    unsigned char buf[1 << 16];
    size_t got;
    int rc = 0;
    while (!rc && (got = fread(buf, 1, sizeof buf, f)) > 0) {
        total += got;
        if (total > max_bytes)
            rc = fail(err, err_len, "%s: larger than the limit of %llu bytes for this kind of file", path,
                      (unsigned long long)max_bytes);
        h = checkpoint_fnv1a(h, buf, got);
    }
    if (!rc && ferror(f)) rc = fail(err, err_len, "%s: read error: %s", path, strerror(errno));
    fclose(f);
    if (!rc) *out = h;
    return rc;
}

/* Total floats of the model's parameters and statistics. */
static int entry_total(pp_model *m, size_t *total, int *entries)
{
    *total = 0;
    if (pp_model_param_count(m, entries) != PP_OK) return 1;
    for (int i = 0; i < *entries; i++) {
        pp_param_info info;
        if (pp_model_param_info(m, i, &info) != PP_OK) return 1;
        *total += info.count;
    }
    return 0;
}

int checkpoint_save(pp_context *ctx, pp_model *m, const char *dir, const char *text, char *err, size_t err_len)
{
    size_t total, momentum;
    int entries;
    if (entry_total(m, &total, &entries) || pp_model_optimizer_size(m, &momentum) != PP_OK)
        return fail(err, err_len, "checkpoint: %s", pp_last_error(ctx));
    size_t text_len = strlen(text);
    size_t bytes = 8 + 8 + text_len + 8 + total * 4 + 8 + momentum * 4 + 8;
    unsigned char *buf = malloc(bytes);
    if (!buf) return fail(err, err_len, "checkpoint: out of memory (%zu bytes)", bytes);
    unsigned char *p = buf;
    memcpy(p, magic, 8), p += 8;
    store_u64(p, text_len), p += 8;
    memcpy(p, text, text_len), p += text_len;
    store_u64(p, total), p += 8;
    /* Floats are gathered in an aligned array, then copied after the unaligned text. */
    float *tmp = malloc((total > momentum ? total : momentum) * 4 + 4);
    int rc = tmp ? 0 : fail(err, err_len, "checkpoint: out of memory");
    size_t at = 0;
    for (int i = 0; i < entries && !rc; i++) {
        pp_param_info info;
        pp_model_param_info(m, i, &info);
        if (pp_model_param_read(m, info.key, tmp + at, info.count) != PP_OK)
            rc = fail(err, err_len, "checkpoint: %s", pp_last_error(ctx));
        at += info.count;
    }
    if (!rc) memcpy(p, tmp, total * 4);
    p += total * 4;
    store_u64(p, momentum), p += 8;
    if (!rc && pp_model_optimizer_read(m, tmp, momentum) != PP_OK)
        rc = fail(err, err_len, "checkpoint: %s", pp_last_error(ctx));
    if (!rc) memcpy(p, tmp, momentum * 4);
    p += momentum * 4;
    free(tmp);
    store_u64(p, checkpoint_fnv1a(CHECKPOINT_FNV_BASIS, buf, (size_t)(p - buf)));
    /* outfile prints its own error; err then only says where. A folder made here is removed
     * again when the write fails. */
    outfile_set set = {0};
    char path[4200];
    snprintf(path, sizeof path, "%s/checkpoint.ppc", dir);
    if (!rc && (outfile_set_dir(&set, dir) || outfile_set_add(&set, path, buf, bytes))) {
        outfile_set_discard(&set);
        rc = fail(err, err_len, "checkpoint: %s was not written", path);
    } else if (!rc && outfile_set_commit(&set)) {
        rc = fail(err, err_len, "checkpoint: %s was not written", path);
    } else if (rc) {
        outfile_set_discard(&set);
    }
    free(buf);
    return rc;
}

/* Reads exactly len bytes into dst, hashing them; non-zero (message in err) at a short read. */
static int read_exact(FILE *f, const char *path, void *dst, size_t len, uint64_t *h, char *err, size_t err_len)
{
    if (len && fread(dst, 1, len, f) != len)
        return ferror(f) ? fail(err, err_len, "%s: read error: %s", path, strerror(errno))
                         : fail(err, err_len, "%s: truncated", path);
    *h = checkpoint_fnv1a(*h, dst, len);
    return 0;
}

int checkpoint_load(pp_context *ctx, const char *dir, checkpoint *out, char *err, size_t err_len)
{
    (void)ctx;
    memset(out, 0, sizeof *out);
    char path[4200];
    snprintf(path, sizeof path, "%s/checkpoint.ppc", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return fail(err, err_len, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    int rc = 0;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode))
        rc = fail(err, err_len, "%s: not a regular file (a checkpoint is a file poolprop train wrote)", path);
    uint64_t size = rc ? 0 : (uint64_t)sb.st_size, h = CHECKPOINT_FNV_BASIS;
    const uint64_t max_size = 8 + 8 + CHECKPOINT_TEXT_MAX + 2 * (8 + 4 * CHECKPOINT_MAX_FLOATS) + 8;
    if (!rc && size > max_size)
        rc = fail(err, err_len, "%s: %llu bytes, more than a checkpoint can hold (limit %llu bytes)", path,
                  (unsigned long long)size, (unsigned long long)max_size);
    unsigned char head[16];
    if (!rc && (size < 8 + 8 + 8 + 8 + 8 || read_exact(f, path, head, 16, &h, err, err_len)))
        rc = fail(err, err_len, "%s: not a poolprop checkpoint (too short)", path);
    if (!rc && memcmp(head, old_magic, 8) == 0)
        rc = fail(err, err_len, "%s: a checkpoint of an older poolprop (format PPCKPT01); start the run again", path);
    else if (!rc && memcmp(head, magic, 8) != 0)
        rc = fail(err, err_len, "%s: not a poolprop checkpoint (bad magic)", path);
    uint64_t text_len = rc ? 0 : load_u64(head + 8), at = 16;
    if (!rc && (text_len >= CHECKPOINT_TEXT_MAX || text_len > size - at))
        rc = fail(err, err_len, "%s: malformed header (text of %llu bytes; the limit is %d)", path,
                  (unsigned long long)text_len, CHECKPOINT_TEXT_MAX - 1);
    if (!rc && !(rc = read_exact(f, path, out->text, (size_t)text_len, &h, err, err_len))) {
        out->text[text_len] = '\0';
        at += text_len;
    }
    for (int part = 0; part < 2 && !rc; part++) {
        unsigned char b[8];
        if (size - at < 8 + 8 || read_exact(f, path, b, 8, &h, err, err_len)) {
            rc = fail(err, err_len, "%s: truncated", path);
            break;
        }
        at += 8;
        uint64_t count = load_u64(b);
        /* The declared size is checked against the limit and the file before allocating. */
        if (count > CHECKPOINT_MAX_FLOATS) {
            rc = fail(err, err_len, "%s: %llu floats announced, more than the limit of %llu", path,
                      (unsigned long long)count, (unsigned long long)CHECKPOINT_MAX_FLOATS);
            break;
        }
        if (count * 4 > size - at - 8) {
            rc = fail(err, err_len, "%s: truncated (%llu floats announced)", path, (unsigned long long)count);
            break;
        }
        float *dst = malloc((size_t)count * 4 + 4);
        if (!dst) {
            rc = fail(err, err_len, "%s: out of memory", path);
            break;
        }
        if (part == 0)
            out->params = dst, out->param_count = (size_t)count;
        else
            out->momentum = dst, out->momentum_count = (size_t)count;
        rc = read_exact(f, path, dst, (size_t)count * 4, &h, err, err_len);
        at += count * 4;
    }
    unsigned char sum[8];
    if (!rc && size - at != 8) rc = fail(err, err_len, "%s: trailing data", path);
    if (!rc) {
        uint64_t want = h;
        rc = read_exact(f, path, sum, 8, &h, err, err_len);
        if (!rc && load_u64(sum) != want) rc = fail(err, err_len, "%s: checksum mismatch (damaged file)", path);
    }
    fclose(f);
    if (rc) checkpoint_free(out);
    return rc;
}

int checkpoint_restore(pp_model *m, const checkpoint *c, char *err, size_t err_len)
{
    size_t total, momentum;
    int entries;
    if (entry_total(m, &total, &entries) || pp_model_optimizer_size(m, &momentum) != PP_OK)
        return fail(err, err_len, "checkpoint: cannot read the model's sizes");
    if (total != c->param_count || momentum != c->momentum_count)
        return fail(err, err_len, "checkpoint holds %zu parameters and %zu momentum values; the model has %zu and %zu",
                    c->param_count, c->momentum_count, total, momentum);
    const float *p = c->params;
    for (int i = 0; i < entries; i++) {
        pp_param_info info;
        pp_model_param_info(m, i, &info);
        if (pp_model_param_write(m, info.key, p, info.count) != PP_OK)
            return fail(err, err_len, "checkpoint: cannot restore %s", info.key);
        p += info.count;
    }
    if (pp_model_optimizer_write(m, c->momentum, c->momentum_count) != PP_OK)
        return fail(err, err_len, "checkpoint: cannot restore the momentum");
    return 0;
}

void checkpoint_free(checkpoint *c)
{
    free(c->params);
    free(c->momentum);
    c->params = c->momentum = NULL;
}

const char *checkpoint_get(const checkpoint *c, const char *key, char *buf, size_t len)
{
    size_t klen = strlen(key);
    for (const char *line = c->text; *line;) {
        const char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        if (n > klen && strncmp(line, key, klen) == 0 && line[klen] == '=') {
            size_t vlen = n - klen - 1 < len - 1 ? n - klen - 1 : len - 1;
            memcpy(buf, line + klen + 1, vlen);
            buf[vlen] = '\0';
            return buf;
        }
        if (!nl) break;
        line = nl + 1;
    }
    return NULL;
}
