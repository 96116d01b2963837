/* replay_main.c - the corpus replay: a main() linked with one fuzz target (in place of
 * libFuzzer's) that runs every file named on the command line, or every file of every
 * directory named, through LLVMFuzzerTestOneInput once, in name order. A bug the target
 * detects aborts (the test fails); a target must return 0 for every input. Used by CTest
 * (test_fuzz_replay_<name>) with the normal build and under the sanitizer build. */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
        return 1;
    }
    size_t cap = 4096, len = 0;
    uint8_t *data = malloc(cap);
    for (size_t n; data && (n = fread(data + len, 1, cap - len, f)) > 0;) {
        len += n;
        if (len == cap) {
            uint8_t *more = realloc(data, cap *= 2);
            if (!more) free(data);
            data = more;
        }
    }
    int bad = !data || ferror(f);
    fclose(f);
    if (bad) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        free(data);
        return 1;
    }
    int rc = LLVMFuzzerTestOneInput(data, len);
    free(data);
    if (rc != 0) fprintf(stderr, "replay: %s: the target returned %d\n", path, rc);
    return rc != 0;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Runs every regular file of dir (not recursively); *count gets how many. */
static int run_dir(const char *dir, int *count)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "replay: cannot open %s: %s\n", dir, strerror(errno));
        return 1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int failed = 0;
    for (struct dirent *e; !failed && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            char **more = realloc(names, (cap = cap ? 2 * cap : 64) * sizeof *names);
            if (!more)
                failed = 1;
            else
                names = more;
        }
        if (!failed && !(names[n] = malloc(strlen(dir) + strlen(e->d_name) + 2))) failed = 1;
        if (!failed) sprintf(names[n++], "%s/%s", dir, e->d_name);
    }
    closedir(d);
    if (failed) fprintf(stderr, "replay: out of memory listing %s\n", dir);
    qsort(names, n, sizeof *names, by_name);
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (!failed && stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
            failed |= run_file(names[i]);
            ++*count;
        }
        free(names[i]);
    }
    free(names);
    return failed;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
        return 2;
    }
    int failed = 0, count = 0;
    for (int i = 1; i < argc && !failed; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            failed = 1;
        } else if (S_ISDIR(st.st_mode)) {
            failed = run_dir(argv[i], &count);
        } else {
            failed = run_file(argv[i]);
            count++;
        }
    }
    if (!failed && count == 0) {
        fprintf(stderr, "replay: no inputs found in the corpus (nothing would be checked)\n");
        failed = 1;
    }
    printf("replay: %d input%s %s\n", count, count == 1 ? "" : "s", failed ? "FAILED" : "ran, no finding");
    return failed;
}
