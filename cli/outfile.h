/* outfile.h - how the poolprop command writes every output file: never in place.
 *
 * One file: written to a unique temporary name in the target's own folder
 * (".NAME.XXXXXX", mkstemp), every write, the flush, fsync and close checked, then renamed
 * over the target; on any failure the temporary is removed and the target is left as it
 * was (absent, or its previous contents).
 *
 * A set of files (init's parameters, layer's arrays, step's gradients): every file of the
 * set is written to its temporary first, and only when all are written are they renamed,
 * one after another; on a failure before that, every temporary is removed, and so are the
 * folders the set created, so a failed command leaves no partial set. (A rename in the
 * same folder needs no space; should one fail, the rest of the set is removed and the
 * error says which files were already replaced.)
 *
 * Errors are printed ("poolprop: cannot write PATH: reason") and returned as non-zero. */
#ifndef PP_CLI_OUTFILE_H
#define PP_CLI_OUTFILE_H

#include <stddef.h>
#include <stdio.h>

typedef struct outfile {
    char *path; /* the target */
    char *tmp;  /* the temporary in the target's folder; NULL once renamed or removed */
    FILE *f;    /* open on tmp until outfile_commit / outfile_close */
} outfile;

/* Opens a temporary next to path; write through o->f. */
int outfile_open(outfile *o, const char *path);
/* Flushes, syncs and closes o->f (checking each), then renames the temporary to the path. */
int outfile_commit(outfile *o);
/* Closes and removes the temporary (after a failure elsewhere); the target is untouched. */
void outfile_discard(outfile *o);
/* The whole of a file in one call. */
int outfile_write(const char *path, const void *data, size_t len);

typedef struct outfile_set {
    outfile *files;
    int count, cap;
    char **dirs; /* folders the set created, in creation order */
    int dir_count, dir_cap;
} outfile_set;

/* Makes dir unless it is already a folder; a folder made here is removed by discard. */
int outfile_set_dir(outfile_set *s, const char *dir);
/* Writes path's contents to its temporary now (checked and synced); renamed by commit. */
int outfile_set_add(outfile_set *s, const char *path, const void *data, size_t len);
/* Renames every temporary to its path, and frees the set. */
int outfile_set_commit(outfile_set *s);
/* Removes every temporary and every folder the set made, and frees the set. */
void outfile_set_discard(outfile_set *s);

#endif
