/* test_train.c - `poolprop train` as a user runs it, on the host backend with the synthetic
 * data set: a short run (a few dozen steps) lowers the loss clearly and writes its CSV log
 * and checkpoints; a run stopped by Ctrl-C (the test raises SIGINT after 20 steps through
 * POOLPROP_TEST_INTERRUPT_AFTER_STEPS) writes a checkpoint, exits 130, and resumed it
 * produces exactly the numbers of the uninterrupted run; bad data specs, bad options and
 * a checkpoint of other settings are clear errors.
 * Usage: test_train /path/to/poolprop */
#include "tool_run.h"

#include <math.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[64];

typedef struct row {
    int epoch;
    double train_loss, train_acc, val_loss, val_acc;
} row;

/* Reads the rows of a CSV log; the last row of an epoch wins. Returns the epoch count. */
static int read_log(const char *path, row rows[8])
{
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "no log %s", path);
    char line[512];
    int header = 0, max_epoch = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        if (!header) {
            CHECK(strncmp(line, "epoch,train_loss,train_accuracy,val_loss,val_accuracy,seconds,peak_bytes", 72) == 0,
                  "%s: header %s", path, line);
            header = 1;
            continue;
        }
        row r;
        CHECK(sscanf(line, "%d,%lf,%lf,%lf,%lf", &r.epoch, &r.train_loss, &r.train_acc, &r.val_loss, &r.val_acc) == 5,
              "%s: row %s", path, line);
        CHECK(r.epoch >= 1 && r.epoch <= 8, "epoch %d", r.epoch);
        rows[r.epoch - 1] = r;
        if (r.epoch > max_epoch) max_epoch = r.epoch;
    }
    fclose(f);
    return max_epoch;
}

static const char *const common = "cifar_resnet8 --data synthetic --image 16 --batch 16 --epochs 3 --train-size 256 "
                                  "--val-size 64 --lr 0.05 --policy 2 --seed 7";
static row a[8]; /* the uninterrupted run's log */

static void uninterrupted_run(void)
{
    char args[2048];
    snprintf(args, sizeof args, "train %s --log %s/a.csv --checkpoint %s/ck_a", common, dir, dir);
    int rc = tool_run(args);
    CHECK(rc == 0, "training failed (%d):\n%s", rc, tool_output);
    printf("%s", tool_output);
    char path[256];
    snprintf(path, sizeof path, "%s/a.csv", dir);
    CHECK(read_log(path, a) == 3, "three epochs logged");
    printf("uninterrupted: train loss %.4f -> %.4f, val accuracy %.3f -> %.3f\n", a[0].train_loss, a[2].train_loss,
           a[0].val_acc, a[2].val_acc);
    /* 48 steps on a learnable set: the epoch-3 loss must be clearly below epoch 1's. */
    CHECK(a[2].train_loss < 0.8 * a[0].train_loss, "loss did not drop: %.4f -> %.4f", a[0].train_loss, a[2].train_loss);
    snprintf(path, sizeof path, "%s/ck_a/checkpoint.ppc", dir);
    CHECK(access(path, F_OK) == 0, "checkpoint written at the end of the epochs");
}

/* The same run, stopped after 20 steps (epoch 2, batch 4) and resumed. */
static void interrupted_and_resumed(void)
{
    char args[2048];
    snprintf(args, sizeof args, "train %s --log %s/b.csv --checkpoint %s/ck_b", common, dir, dir);
    int rc = tool_run_env("POOLPROP_TEST_INTERRUPT_AFTER_STEPS=20", args);
    CHECK(rc == 130, "an interrupted run exits 130, got %d:\n%s", rc, tool_output);
    CHECK(strstr(tool_output, "checkpoint written"), "interruption message:\n%s", tool_output);
    snprintf(args, sizeof args, "train %s --log %s/b.csv --checkpoint %s/ck_b --resume %s/ck_b", common, dir, dir, dir);
    rc = tool_run(args);
    CHECK(rc == 0, "resume failed (%d):\n%s", rc, tool_output);
    CHECK(strstr(tool_output, "resuming from"), "resume message:\n%s", tool_output);
    row b[8];
    char path[256];
    snprintf(path, sizeof path, "%s/b.csv", dir);
    CHECK(read_log(path, b) == 3, "three epochs logged across the interruption");
    for (int e = 0; e < 3; e++) {
        printf("epoch %d: uninterrupted %.6f %.6f %.6f %.6f | resumed %.6f %.6f %.6f %.6f\n", e + 1, a[e].train_loss,
               a[e].train_acc, a[e].val_loss, a[e].val_acc, b[e].train_loss, b[e].train_acc, b[e].val_loss,
               b[e].val_acc);
        CHECK(a[e].train_loss == b[e].train_loss && a[e].train_acc == b[e].train_acc &&
                  a[e].val_loss == b[e].val_loss && a[e].val_acc == b[e].val_acc,
              "epoch %d differs after resume", e + 1);
    }
}

/* A checkpoint made with other settings is refused. */
static void bad_checkpoints(void)
{
    char args[2048];
    snprintf(args, sizeof args, "train %s --momentum 0.8 --resume %s/ck_a", common, dir);
    CHECK(tool_run(args) != 0 && strstr(tool_output, "the checkpoint was made with"), "mismatched resume:\n%s",
          tool_output);
    printf("rejected as expected: %s", tool_output);
    snprintf(args, sizeof args, "train %s --resume %s/nothing_here", common, dir);
    CHECK(tool_run(args) != 0 && strstr(tool_output, "checkpoint.ppc"), "missing checkpoint:\n%s", tool_output);
    printf("rejected as expected: %s", tool_output);
    char path[256];
    snprintf(path, sizeof path, "%s/ck_a/checkpoint.ppc", dir);
    FILE *f = fopen(path, "r+b");
    fseek(f, 200, SEEK_SET);
    fputc(0x55, f);
    fclose(f);
    snprintf(args, sizeof args, "train %s --resume %s/ck_a", common, dir);
    CHECK(tool_run(args) != 0 && strstr(tool_output, "checksum"), "damaged checkpoint:\n%s", tool_output);
    printf("rejected as expected: %s", tool_output);
}

static void bad_data_and_options(void)
{
    CHECK(tool_run("train cifar_resnet8 --data cifar10:/nonexistent/cifar") != 0 &&
              strstr(tool_output, "/nonexistent/cifar"),
          "missing CIFAR directory:\n%s", tool_output);
    printf("rejected as expected: %s", tool_output);
    CHECK(tool_run("train cifar_resnet8 --data imagenet") != 0 && strstr(tool_output, "imagenet"), "unknown data:\n%s",
          tool_output);
    printf("rejected as expected: %s", tool_output);
    CHECK(tool_run("train cifar_resnet8 --schedule linear") != 0 && strstr(tool_output, "--schedule"), "schedule:\n%s",
          tool_output);
    CHECK(tool_run("train cifar_resnet8 --lr -1") != 0 && strstr(tool_output, "--lr"), "negative lr:\n%s", tool_output);
}

static const test_case tests[] = {
    TEST_CASE(uninterrupted_run, "3 epochs: the loss drops below 0.8 of epoch 1's; CSV log and checkpoint written"),
    TEST_CASE_AFTER(interrupted_and_resumed, uninterrupted_run,
                    "stopped by SIGINT after 20 steps: exit 130, checkpoint; resumed: the uninterrupted run's numbers"),
    TEST_CASE_AFTER(bad_checkpoints, uninterrupted_run,
                    "a checkpoint of other settings, a missing one and a damaged one are refused with clear messages"),
    TEST_CASE(bad_data_and_options,
              "a missing CIFAR directory, unknown data, --schedule linear and --lr -1 are errors"),
};

int main(int argc, char **argv)
{
    const char *only = test_select(&argc, argv);
    CHECK(argc == 2, "usage: test_train /path/to/poolprop");
    tool_path = argv[1];
    test_temp_dir(dir, sizeof dir, "test_train");
    int status = TEST_RUN(tests, only);
    CHECK(test_remove_dir(dir) == 0, "cleanup");
    if (!only) printf("train tests passed\n");
    return status;
}
