/* file.c - whole-file reads with a size cap and atomic writes (file.h). */
#include "file.h"

#include "context.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

pp_status file_write_atomic(pp_context *ctx, const char *path, const void *data, size_t len)
{
    /* A temporary name of its own (mkstemp), so that threads and processes writing the
     * same entry at once each rename a whole file. */
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    FILE *f = fd < 0 ? NULL : fdopen(fd, "wb");
    if (!f) {
        int e = errno;
        if (fd >= 0) close(fd), unlink(tmp);
        return ctx_fail(ctx, PP_ERR_IO, "cannot write %s: %s", tmp, strerror(e));
    }
    /* mkstemp creates 0600; cache entries and databases may be shared read-only. (umask
     * cannot be read without setting it, which would race with other threads.) */
    fchmod(fd, 0644);
    size_t wrote = len ? fwrite(data, 1, len, f) : 0;
    int flush_failed = fflush(f) != 0;
    int close_failed = fclose(f) != 0;
    if (wrote != len || flush_failed || close_failed) {
        unlink(tmp);
        return ctx_fail(ctx, PP_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return ctx_fail(ctx, PP_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(e));
    }
    return PP_OK;
}

pp_status file_read_all(pp_context *ctx, const char *path, char **data, size_t *len)
{
    return file_read_capped(ctx, path, SIZE_MAX / 2, NULL, data, len);
}

pp_status file_read_capped(pp_context *ctx, const char *path, size_t limit, const char *what, char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return ctx_fail(ctx, PP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode) && (uintmax_t)sb.st_size > limit) {
        fclose(f);
        return ctx_fail(ctx, PP_ERR_IO, "%s: %jd bytes, more than the %zu bytes %s may hold", path,
                        (intmax_t)sb.st_size, limit, what ? what : "a file");
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        fclose(f);
        return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    for (;;) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        /* Up to limit + 1 bytes: one more than allowed says the file is too large. */
        if (n > limit) break;
        size_t grown = cap <= limit / 2 ? 2 * cap : limit + 1;
        char *bigger = realloc(buf, grown + 1);
        if (!bigger) {
            free(buf);
            fclose(f);
            return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
        }
        buf = bigger;
        cap = grown;
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        free(buf);
        return ctx_fail(ctx, PP_ERR_IO, "%s: read error", path);
    }
    if (n > limit) {
        free(buf);
        return ctx_fail(ctx, PP_ERR_IO, "%s: more than the %zu bytes %s may hold", path, limit, what ? what : "a file");
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return PP_OK;
}
