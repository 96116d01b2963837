/* test_full_disk.c - every poolprop command that writes files, on a full disk: a small tmpfs
 * mounted for the test (root only; otherwise the test is skipped with CTest's skip code).
 * First each command writes a good output there; then the tmpfs is filled to the last byte
 * and each command runs again, once onto its existing output and once onto a new target.
 * Each must exit non-zero with "No space left on device" and the path in its message, leave
 * the earlier output byte for byte as it was, create nothing at a new target, and leave no
 * temporary (staging folder, hidden temporary file) behind.
 * Usage: test_full_disk /path/to/poolprop */
#define _GNU_SOURCE
#include "tool_run.h"

#include "npy.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

static char scratch[64]; /* inputs, on the ordinary /tmp */
static char disk[64];    /* the tmpfs */
static int mounted;

static void unmount_disk(void)
{
    if (mounted) umount2(disk, MNT_DETACH);
    mounted = 0;
    if (disk[0]) rmdir(disk);
    if (scratch[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", scratch);
    }
}

/* A listing of everything under path (relative names, sizes and an FNV-1a-64 of each
 * file's bytes), sorted, one entry a line. */
static void snapshot_into(const char *root, const char *rel, char *out, size_t len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s%s%s", root, *rel ? "/" : "", rel);
    struct stat sb;
    if (lstat(path, &sb) != 0) {
        snprintf(out + strlen(out), len - strlen(out), "%s: absent\n", rel);
        return;
    }
    if (S_ISDIR(sb.st_mode)) {
        struct dirent **names;
        int n = scandir(path, &names, NULL, alphasort);
        CHECK(n >= 0, "scandir %s", path);
        snprintf(out + strlen(out), len - strlen(out), "%s/\n", rel);
        for (int i = 0; i < n; i++) {
            if (strcmp(names[i]->d_name, ".") && strcmp(names[i]->d_name, "..")) {
                char sub[1024];
                snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", names[i]->d_name);
                snapshot_into(root, sub, out, len);
            }
            free(names[i]);
        }
        free(names);
        return;
    }
    FILE *f = fopen(path, "rb");
    CHECK(f, "open %s", path);
    uint64_t h = 0xcbf29ce484222325ULL;
    int c;
    while ((c = fgetc(f)) != EOF) h = (h ^ (unsigned)c) * 0x100000001b3ULL;
    fclose(f);
    snprintf(out + strlen(out), len - strlen(out), "%s %lld %016llx\n", rel, (long long)sb.st_size,
             (unsigned long long)h);
}

static char *snapshot(void)
{
    char *s = calloc(1, 1 << 20);
    CHECK(s, "out of memory");
    snapshot_into(disk, "", s, 1 << 20);
    return s;
}

/* Fills the tmpfs to the last byte with one file. */
static void fill_disk(void)
{
    char path[128], buf[4096];
    snprintf(path, sizeof path, "%s/filler", disk);
    FILE *f = fopen(path, "wb");
    CHECK(f, "create %s", path);
    setvbuf(f, NULL, _IONBF, 0);
    memset(buf, 0x5a, sizeof buf);
    size_t total = 0;
    while (fwrite(buf, 1, sizeof buf, f) == sizeof buf) total += sizeof buf;
    CHECK(errno == ENOSPC, "filling stopped by %s, not a full disk", strerror(errno));
    while (fwrite(buf, 1, 1, f) == 1) total++;
    fclose(f);
    printf("filled the tmpfs with %zu bytes\n", total);
}

static void write_npy(const char *name, int rank, const size_t *shape, unsigned seed)
{
    size_t count = 1;
    for (int i = 0; i < rank; i++) count *= shape[i];
    float *a = malloc(count * sizeof *a);
    CHECK(a, "out of memory");
    for (size_t i = 0; i < count; i++) a[i] = (float)((i * 7919u + seed) % 97) / 97.0f - 0.5f;
    char path[256];
    snprintf(path, sizeof path, "%s/%s", scratch, name);
    char err[1024];
    CHECK(npy_write_f32(path, rank, shape, a, err, sizeof err) == PP_OK, "%s", err);
    free(a);
}

typedef struct command {
    const char *what;
    const char *format; /* poolprop arguments; %1$s: the inputs' folder, %2$s: the target */
    const char *target; /* relative to the tmpfs */
} command;

static void run_command(const command *c, const char *target, char *args, size_t len)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", disk, target);
    snprintf(args, len, c->format, scratch, path);
}

/* The commands' arguments for train (main). */
static char train_log[512], train_ck[512];
static const command commands[] = {
    {"gen (layer file)", "gen %1$s/layers.lua --out %2$s", "gen_layers"},
    {"gen --model", "gen --model cifar_resnet8 --batch 2 --image 8 --out %2$s", "gen_model"},
    {"init", "init cifar_resnet8 --seed 1 --out %2$s", "init"},
    {"layer",
     "layer --x %1$s/x.npy --w %1$s/w.npy --dy %1$s/dy.npy --stride 1 --pad 1 --pool 2 --backend host "
     "--out %2$s",
     "layer"},
    {"bench --json", "bench cifar_resnet8 --batch 2 --image 8 --backend host --step-only --steps 1 --json %2$s",
     "bench.json"},
    {"train --log", train_log, "train.csv"},
    {"train --checkpoint", train_ck, "ck"},
};
static const int n = sizeof commands / sizeof commands[0];
static char *before; /* snapshot() of the full disk (fill_disk_snapshot) */

static void outputs_with_space(void)
{
    char args[2048];
    for (int i = 0; i < n; i++) {
        run_command(&commands[i], commands[i].target, args, sizeof args);
        int rc = tool_run(args);
        CHECK(rc == 0, "%s with space failed (%d): poolprop %s\n%s", commands[i].what, rc, args, tool_output);
    }
}

static void fill_disk_snapshot(void)
{
    fill_disk();
    before = snapshot();
    printf("outputs before the full-disk runs:\n%s", before);
}

static void full_disk_runs(void)
{
    char args[2048];
    for (int i = 0; i < n; i++) {
        for (int fresh = 0; fresh < 2; fresh++) {
            char target[128];
            snprintf(target, sizeof target, "%s%s", fresh ? "new_" : "", commands[i].target);
            run_command(&commands[i], target, args, sizeof args);
            int rc = tool_run(args);
            CHECK(rc != 0, "%s onto a full disk exited 0: poolprop %s\n%s", commands[i].what, args, tool_output);
            CHECK(strstr(tool_output, "No space left on device") && strstr(tool_output, disk),
                  "%s: the message does not say the disk is full and where:\n%s", commands[i].what, tool_output);
            char *after = snapshot();
            CHECK(strcmp(before, after) == 0, "%s (%s target) changed the disk:\nbefore:\n%s\nafter:\n%s",
                  commands[i].what, fresh ? "new" : "existing", before, after);
            free(after);
            printf("%-20s %s target: exit %d, nothing changed; ", commands[i].what, fresh ? "new" : "existing", rc);
            const char *msg = strstr(tool_output, "No space left on device");
            while (msg > tool_output && msg[-1] != '\n') msg--;
            printf("%.*s\n", (int)strcspn(msg, "\n"), msg);
        }
    }
}

static const test_case tests[] = {
    TEST_CASE(outputs_with_space, "each of the 7 commands writes its output while there is space"),
    TEST_CASE_AFTER(fill_disk_snapshot, outputs_with_space, "the tmpfs is filled to the last byte; its outputs listed"),
    TEST_CASE_AFTER(full_disk_runs, fill_disk_snapshot,
                    "on the full disk each command, onto its output and a new target, fails with \"No space left on "
                    "device\" and the path, changing nothing"),
};

int main(int argc, char **argv)
{
    const char *only = test_select(&argc, argv);
    CHECK(argc == 2, "usage: test_full_disk /path/to/poolprop");
    tool_path = argv[1];
    if (geteuid() != 0) {
        printf("skipped: mounting a size-limited tmpfs needs root\n");
        return PP_TEST_SKIP;
    }
    test_temp_dir(scratch, sizeof scratch, "full_disk_in");
    test_temp_dir(disk, sizeof disk, "full_disk");
    atexit(unmount_disk);
    if (mount("tmpfs", disk, "tmpfs", 0, "size=4m") != 0) {
        printf("skipped: cannot mount a tmpfs at %s: %s\n", disk, strerror(errno));
        return PP_TEST_SKIP;
    }
    mounted = 1;

    /* Inputs: a small convolution for `layer`. */
    write_npy("x.npy", 4, (const size_t[]){1, 3, 8, 8}, 1);
    write_npy("w.npy", 4, (const size_t[]){4, 3, 3, 3}, 2);
    write_npy("dy.npy", 4, (const size_t[]){1, 4, 8, 8}, 3);
    char layers[256];
    snprintf(layers, sizeof layers, "%s/layers.lua", scratch);
    FILE *f = fopen(layers, "w");
    CHECK(f, "create %s", layers);
    fprintf(f,
            "layer { name = \"a\", N = 1, C = 4, H = 8, W = 8, K = 4, R = 3, S = 3, stride = 1, pad = 1, pool = 2 }\n");
    fclose(f);

    const char *train = "train cifar_resnet8 --backend host --image 8 --batch 4 --train-size 8 --val-size 4 "
                        "--epochs 1 --seed 3";
    snprintf(train_log, sizeof train_log, "%s --log %%2$s", train);
    snprintf(train_ck, sizeof train_ck, "%s --checkpoint %%2$s", train);

    int status = TEST_RUN(tests, only);
    free(before);
    if (!only) printf("full-disk tests passed: %d commands, existing and new targets\n", n);
    return status;
}
