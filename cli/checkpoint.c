/* checkpoint.c - training checkpoints (format in checkpoint.h). */
#include "checkpoint.h"

#include "cache.h"
#include "file.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char magic[8] = {'P', 'P', 'C', 'K', 'P', 'T', '0', '1'};

static int fail(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
    return 1;
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
    size_t bytes = 8 + 8 + text_len + 8 + total * 4 + 8 + momentum * 4 + 16;
    unsigned char *buf = malloc(bytes);
    if (!buf) return fail(err, err_len, "checkpoint: out of memory (%zu bytes)", bytes);
    unsigned char *p = buf;
    memcpy(p, magic, 8), p += 8;
    cache_store_u64(p, text_len), p += 8;
    memcpy(p, text, text_len), p += text_len;
    cache_store_u64(p, total), p += 8;
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
    cache_store_u64(p, momentum), p += 8;
    if (!rc && pp_model_optimizer_read(m, tmp, momentum) != PP_OK)
        rc = fail(err, err_len, "checkpoint: %s", pp_last_error(ctx));
    if (!rc) memcpy(p, tmp, momentum * 4);
    p += momentum * 4;
    free(tmp);
    pp_hash h;
    hash_init(&h);
    hash_bytes(&h, buf, (size_t)(p - buf));
    pp_hash_value v = hash_final(&h);
    memcpy(p, v.bytes, 16);
    if (!rc && mkdir(dir, 0755) != 0 && errno != EEXIST)
        rc = fail(err, err_len, "checkpoint: cannot create %s: %s", dir, strerror(errno));
    if (!rc) {
        char path[4200];
        snprintf(path, sizeof path, "%s/checkpoint.ppc", dir);
        if (file_write_atomic(ctx, path, buf, bytes) != PP_OK)
            rc = fail(err, err_len, "checkpoint: %s", pp_last_error(ctx));
    }
    free(buf);
    return rc;
}

int checkpoint_load(pp_context *ctx, const char *dir, checkpoint *out, char *err, size_t err_len)
{
    memset(out, 0, sizeof *out);
    char path[4200];
    snprintf(path, sizeof path, "%s/checkpoint.ppc", dir);
    char *data;
    size_t len;
    if (file_read_all(ctx, path, &data, &len) != PP_OK) return fail(err, err_len, "%s", pp_last_error(ctx));
    const unsigned char *p = (const unsigned char *)data, *end = p + len;
    int rc = 0;
    size_t text_len = 0;
    if (len < 8 + 8 + 8 + 8 + 16 || memcmp(p, magic, 8) != 0) {
        rc = fail(err, err_len, "%s: not a poolprop checkpoint (bad magic or too short)", path);
    } else {
        pp_hash h;
        hash_init(&h);
        hash_bytes(&h, p, len - 16);
        pp_hash_value v = hash_final(&h);
        if (memcmp(v.bytes, end - 16, 16) != 0) rc = fail(err, err_len, "%s: checksum mismatch (damaged file)", path);
    }
    if (!rc) {
        p += 8;
        text_len = cache_load_u64(p), p += 8;
        if (text_len >= CHECKPOINT_TEXT_MAX || text_len > (size_t)(end - p))
            rc = fail(err, err_len, "%s: malformed header", path);
    }
    if (!rc) {
        memcpy(out->text, p, text_len);
        out->text[text_len] = '\0';
        p += text_len;
        for (int part = 0; part < 2 && !rc; part++) {
            if ((size_t)(end - p) < 8 + 16) {
                rc = fail(err, err_len, "%s: truncated", path);
                break;
            }
            size_t count = cache_load_u64(p);
            p += 8;
            if (count > (size_t)(end - p - 16) / 4) {
                rc = fail(err, err_len, "%s: truncated (%zu floats announced)", path, count);
                break;
            }
            float *dst = malloc(count * 4 + 4);
            if (!dst) {
                rc = fail(err, err_len, "%s: out of memory", path);
                break;
            }
            memcpy(dst, p, count * 4);
            p += count * 4;
            if (part == 0) out->params = dst, out->param_count = count;
            else out->momentum = dst, out->momentum_count = count;
        }
        if (!rc && p != end - 16) rc = fail(err, err_len, "%s: trailing data", path);
    }
    free(data);
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
