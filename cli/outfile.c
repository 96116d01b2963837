/* outfile.c - the poolprop command's output files: temporaries renamed into place (the
 * scheme is in outfile.h). */
#define _XOPEN_SOURCE 700
#include "outfile.h"

#include "options.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *copy_string(const char *s)
{
    size_t n = strlen(s) + 1;
    char *c = malloc(n);
    if (c) memcpy(c, s, n);
    return c;
}

/* The folder of path ("." when it has none), fsync'ed after a rename in it. */
static void sync_folder_of(const char *path)
{
    char *dir = copy_string(path);
    if (!dir) return;
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, strlen(dir) + 1, ".");
    else if (slash == dir)
        slash[1] = '\0';
    else
        *slash = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd); /* the rename's durability; the file itself was synced and checked */
        close(fd);
    }
    free(dir);
}

static int open_target(outfile *o, const char *path);

/* The file a write to path replaces: path itself, or what a symbolic link at path resolves
 * to (the link stays a link). A target that exists and is not a regular file (a device such
 * as /dev/full or /dev/stdout, a pipe, a folder) is refused: renaming over it would replace
 * the node itself. NULL after printing why; else malloc'ed. */
static char *target_of(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0) return copy_string(path); /* absent: created */
    char *target = S_ISLNK(sb.st_mode) ? realpath(path, NULL) : copy_string(path);
    if (S_ISLNK(sb.st_mode) && !target && errno == ENOENT) { /* a link to a file not made yet */
        char link[4096];
        ssize_t n = readlink(path, link, sizeof link - 1);
        if (n > 0) {
            link[n] = '\0';
            const char *slash = strrchr(path, '/');
            int dir_len = link[0] == '/' || !slash ? 0 : (int)(slash - path) + 1;
            size_t len = (size_t)dir_len + (size_t)n + 1;
            if ((target = malloc(len))) snprintf(target, len, "%.*s%s", dir_len, path, link);
            return target ? target : (cli_fail("out of memory"), NULL);
        }
    }
    if (!target) {
        cli_fail("cannot write %s: %s", path, strerror(errno));
        return NULL;
    }
    if (stat(target, &sb) == 0 && !S_ISREG(sb.st_mode)) {
        cli_fail("cannot write %s: it exists and is not a regular file (a device, pipe or folder), which an output "
                 "written to a temporary and renamed would replace",
                 path);
        free(target);
        return NULL;
    }
    return target;
}

int outfile_open(outfile *o, const char *given)
{
    memset(o, 0, sizeof *o);
    char *path = target_of(given);
    if (!path) return 1;
    int rc = open_target(o, path);
    free(path);
    return rc;
}

static int open_target(outfile *o, const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t dir_len = slash ? (size_t)(slash - path) + 1 : 0;
    const char *base = path + dir_len;
    if (!*base) return cli_fail("cannot write %s: not a file name", path);
    o->path = copy_string(path);
    o->tmp = malloc(strlen(path) + 16);
    if (!o->path || !o->tmp) {
        free(o->path), free(o->tmp);
        memset(o, 0, sizeof *o);
        return cli_fail("out of memory");
    }
    snprintf(o->tmp, strlen(path) + 16, "%.*s.%s.XXXXXX", (int)dir_len, path, base);
    int fd = mkstemp(o->tmp);
    if (fd < 0) {
        int e = errno;
        free(o->path), free(o->tmp);
        memset(o, 0, sizeof *o);
        return cli_fail("cannot write %s: %s", path, strerror(e));
    }
    mode_t mask = umask(0); /* mkstemp makes 0600; an output is as readable as any new file */
    umask(mask);
    if (fchmod(fd, 0666 & ~mask) != 0 || !(o->f = fdopen(fd, "wb"))) {
        int e = errno;
        close(fd);
        unlink(o->tmp);
        free(o->path), free(o->tmp);
        memset(o, 0, sizeof *o);
        return cli_fail("cannot write %s: %s", path, strerror(e));
    }
    return 0;
}

/* Flush, error flag, fsync and close, each checked; the temporary stays (closed) on success. */
static int finish(outfile *o)
{
    FILE *f = o->f;
    o->f = NULL;
    errno = 0;
    int bad = fflush(f) != 0 || ferror(f);
    int e = errno;
    if (!bad && fsync(fileno(f)) != 0) bad = 1, e = errno;
    if (fclose(f) != 0 && !bad) bad = 1, e = errno;
    if (!bad) return 0;
    unlink(o->tmp);
    cli_fail("cannot write %s: %s", o->path, strerror(e ? e : EIO));
    return 1;
}

static void release(outfile *o)
{
    free(o->path);
    free(o->tmp);
    memset(o, 0, sizeof *o);
}

int outfile_commit(outfile *o)
{
    if (!o->f) return cli_fail("internal error: outfile_commit of a file that is not open");
    int rc = finish(o);
    if (!rc && rename(o->tmp, o->path) != 0) {
        int e = errno;
        unlink(o->tmp);
        rc = cli_fail("cannot write %s: renaming %s: %s", o->path, o->tmp, strerror(e));
    }
    if (!rc) sync_folder_of(o->path);
    release(o);
    return rc;
}

void outfile_discard(outfile *o)
{
    if (o->f) fclose(o->f);
    if (o->tmp) unlink(o->tmp);
    release(o);
}

int outfile_write(const char *path, const void *data, size_t len)
{
    outfile o;
    if (outfile_open(&o, path)) return 1;
    if (len && fwrite(data, 1, len, o.f) != len) {
        int e = errno;
        outfile_discard(&o);
        return cli_fail("cannot write %s: %s", path, strerror(e ? e : EIO));
    }
    return outfile_commit(&o);
}

/* ---- sets ---- */

static int grow(void **items, int *cap, int count, size_t size)
{
    if (count < *cap) return 0;
    int n = *cap ? 2 * *cap : 8;
    void *p = realloc(*items, (size_t)n * size);
    if (!p) return 1;
    *items = p;
    *cap = n;
    return 0;
}

static void set_free(outfile_set *s)
{
    for (int i = 0; i < s->count; i++) release(&s->files[i]);
    for (int i = 0; i < s->dir_count; i++) free(s->dirs[i]);
    free(s->files);
    free(s->dirs);
    memset(s, 0, sizeof *s);
}

int outfile_set_dir(outfile_set *s, const char *dir)
{
    struct stat sb;
    if (stat(dir, &sb) == 0) {
        if (S_ISDIR(sb.st_mode)) return 0;
        return cli_fail("cannot create the folder %s: a file of that name exists", dir);
    }
    if (grow((void **)&s->dirs, &s->dir_cap, s->dir_count, sizeof *s->dirs)) return cli_fail("out of memory");
    char *copy = copy_string(dir);
    if (!copy) return cli_fail("out of memory");
    if (mkdir(dir, 0777) != 0) {
        int e = errno;
        free(copy);
        return cli_fail("cannot create the folder %s: %s", dir, strerror(e));
    }
    s->dirs[s->dir_count++] = copy;
    return 0;
}

int outfile_set_add(outfile_set *s, const char *path, const void *data, size_t len)
{
    if (grow((void **)&s->files, &s->cap, s->count, sizeof *s->files)) return cli_fail("out of memory");
    outfile *o = &s->files[s->count];
    if (outfile_open(o, path)) return 1;
    if (len && fwrite(data, 1, len, o->f) != len) {
        int e = errno;
        outfile_discard(o);
        return cli_fail("cannot write %s: %s", path, strerror(e ? e : EIO));
    }
    if (finish(o)) {
        release(o);
        return 1;
    }
    s->count++;
    return 0;
}

int outfile_set_commit(outfile_set *s)
{
    int rc = 0, renamed = 0;
    for (int i = 0; i < s->count && !rc; i++) {
        if (rename(s->files[i].tmp, s->files[i].path) != 0) {
            int e = errno;
            rc = cli_fail("cannot write %s: renaming %s: %s (%d of the %d files were already replaced)",
                          s->files[i].path, s->files[i].tmp, strerror(e), renamed, s->count);
        } else {
            free(s->files[i].tmp);
            s->files[i].tmp = NULL;
            renamed++;
        }
    }
    for (int i = 0; i < s->count; i++)
        if (s->files[i].tmp) unlink(s->files[i].tmp);
    if (s->count) sync_folder_of(s->files[s->count - 1].path);
    set_free(s);
    return rc;
}

void outfile_set_discard(outfile_set *s)
{
    for (int i = 0; i < s->count; i++)
        if (s->files[i].tmp) unlink(s->files[i].tmp);
    for (int i = s->dir_count - 1; i >= 0; i--) rmdir(s->dirs[i]);
    set_free(s);
}
