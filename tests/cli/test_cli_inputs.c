/* test_cli_inputs.c - what the poolprop command must refuse or must not leave behind
 * (issue 10, items 1, 2, 4 and 5, the command-line parts):
 *   - gen into a folder replaces the previous bundle whole (no stale kernels), and refuses
 *     a folder that is not a bundle, leaving it untouched;
 *   - step with the parameters of another model names the extra keys;
 *   - train --resume with a model or policy file whose contents changed says which;
 *   - train checks the plan before it allocates data or the input batch;
 *   - reads are capped: /dev/zero and files that declare huge sizes as .npy arrays,
 *     checkpoints, training logs (report) and CIFAR-10 files get an error naming the file
 *     and the limit, quickly and without a large allocation (the test runs them under a
 *     4 GB address-space limit);
 *   - an output is never renamed over a device or pipe, and a symbolic link stays a link.
 * Usage: test_cli_inputs /path/to/poolprop */
#include "tool_run.h"

#include <dirent.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];
static char args[4096];

/* Runs args under a 4 GB address-space limit (no large allocation happens on the way to
 * these errors) and checks the exit status and message. */
static const char *feed = ""; /* shell commands run (in the background) before poolprop */

static void expect_failure(const char *what, const char *part1, const char *part2)
{
    char env[1024];
    snprintf(env, sizeof env, "ulimit -v 4000000; %s", feed);
    int rc = tool_run_env(env, args);
    CHECK(rc != 0, "%s: poolprop %s exited 0:\n%s", what, args, tool_output);
    CHECK(strstr(tool_output, part1) != NULL, "%s: message lacks \"%s\":\n%s", what, part1, tool_output);
    CHECK(!part2 || strstr(tool_output, part2) != NULL, "%s: message lacks \"%s\":\n%s", what, part2, tool_output);
    printf("%s: rejected as expected:\n    %s", what, tool_output);
}

static void write_file(const char *name, const void *data, size_t len)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(data, 1, len, f) == len && fclose(f) == 0, "write %s", path);
}

static void append_file(const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "ab");
    CHECK(f && fputs(text, f) >= 0 && fclose(f) == 0, "append to %s", path);
}

/* A v1.0 .npy file: header_dict padded to 64 bytes, then len bytes of data (zeros if NULL). */
static void write_npy(const char *name, const char *header_dict, const void *data, size_t len)
{
    static unsigned char buf[8192];
    size_t dict = strlen(header_dict), hlen = dict + 1;
    hlen += (64 - (10 + hlen) % 64) % 64;
    CHECK(10 + hlen + len <= sizeof buf, "npy too long");
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)(hlen & 0xff), buf[9] = (unsigned char)(hlen >> 8);
    memset(buf + 10, ' ', hlen);
    memcpy(buf + 10, header_dict, dict);
    buf[10 + hlen - 1] = '\n';
    memset(buf + 10 + hlen, 0, len);
    if (data) memcpy(buf + 10 + hlen, data, len);
    write_file(name, buf, 10 + hlen + len);
}

static int count_entries(const char *path)
{
    DIR *d = opendir(path);
    CHECK(d, "opendir %s", path);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

/* Every kernel file plan.lua names exists and nothing else is in kernels/. */
static void check_bundle_exact(const char *bundle, int expected_kernels)
{
    char path[512];
    snprintf(path, sizeof path, "%s/plan.lua", bundle);
    FILE *f = fopen(path, "r");
    CHECK(f, "no %s", path);
    char line[8192];
    char names[256][160];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "file = \"kernels/");
        if (!p) continue;
        p += strlen("file = \"kernels/");
        size_t len = strcspn(p, "\"");
        int seen = 0;
        for (int i = 0; i < n && !seen; i++) seen = strlen(names[i]) == len && strncmp(names[i], p, len) == 0;
        if (!seen) {
            CHECK(n < 256 && len < 160, "too many kernels");
            memcpy(names[n], p, len);
            names[n++][len] = '\0';
        }
    }
    fclose(f);
    snprintf(path, sizeof path, "%s/kernels", bundle);
    int files = count_entries(path);
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/kernels/%.159s", bundle, names[i]);
        CHECK(access(path, F_OK) == 0, "%s named by plan.lua is missing", path);
    }
    CHECK(files == n && n == expected_kernels, "%s/kernels holds %d files, plan.lua names %d, expected %d", bundle,
          files, n, expected_kernels);
    printf("%s: plan.lua names %d kernels, kernels/ holds exactly those\n", bundle, n);
}

static void test_gen_replaces_bundle(void)
{
    char bundle[128];
    snprintf(bundle, sizeof bundle, "%s/bundle", dir);
    snprintf(args, sizeof args, "gen --out %s", bundle);
    CHECK(tool_run(args) == 0, "gen of the default set failed:\n%s", tool_output);
    char kernels[160];
    snprintf(kernels, sizeof kernels, "%s/kernels", bundle);
    int many = count_entries(kernels);
    CHECK(many > 8, "the default set has %d kernels", many);
    write_file(
        "one.lua",
        "layer { name = \"a\", N = 1, C = 4, H = 8, W = 8, K = 4, R = 3, S = 3, stride = 1, pad = 1, pool = 2 }\n",
        strlen("layer { name = \"a\", N = 1, C = 4, H = 8, W = 8, K = 4, R = 3, S = 3, stride = 1, pad = 1, "
               "pool = 2 }\n"));
    snprintf(args, sizeof args, "gen %s/one.lua --out %s/", dir, bundle);
    CHECK(tool_run(args) == 0, "gen of one layer failed:\n%s", tool_output);
    check_bundle_exact(bundle, 4);
    CHECK(count_entries(dir) == 2, "a staging or old folder was left next to the bundle (%d entries in %s)",
          count_entries(dir), dir);

    /* A folder that is not a bundle is refused, untouched. */
    snprintf(args, sizeof args, "mkdir -p %s/mine && echo keep > %s/mine/notes.txt", dir, dir);
    CHECK(system(args) == 0, "mkdir");
    snprintf(args, sizeof args, "gen %s/one.lua --out %s/mine", dir, dir);
    expect_failure("gen into a folder of other files", "is not a bundle written by poolprop gen", "refusing");
    char path[160];
    snprintf(path, sizeof path, "%s/mine", dir);
    CHECK(count_entries(path) == 1, "the folder was changed");
    snprintf(args, sizeof args, "rm -rf %s/mine %s/bundle %s/one.lua", dir, dir, dir);
    CHECK(system(args) == 0, "cleanup");
}

static void test_step_extra_params(void)
{
    snprintf(args, sizeof args, "init cifar_resnet20 --seed 1 --out %s/p20", dir);
    CHECK(tool_run(args) == 0, "init failed:\n%s", tool_output);
    static float x[2 * 3 * 8 * 8];
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++) x[i] = (float)(i % 13) / 13.0f;
    write_npy("x.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 8, 8), }", x, sizeof x);
    int64_t labels[2] = {1, 2};
    write_npy("labels.npy", "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }", labels, sizeof labels);
    snprintf(args, sizeof args,
             "step cifar_resnet8 --backend host --params %s/p20 --x %s/x.npy --labels %s/labels.npy --out %s/step", dir,
             dir, dir, dir);
    expect_failure("step with ResNet-20 parameters on ResNet-8", "that cifar_resnet8 does not have", "layer1.1.");
    snprintf(args, sizeof args, "%s/step", dir);
    CHECK(access(args, F_OK) != 0, "step wrote outputs after refusing its parameters");
}

static void test_resume_changed_files(void)
{
    snprintf(args, sizeof args, "cp %s/models/cifar_resnet8.lua %s/m.lua", PP_SOURCE_DIR, dir);
    CHECK(system(args) == 0, "copy the model");
    const char policy[] = "return { default = 2 }\n";
    write_file("p.lua", policy, strlen(policy));
    char common[1024];
    snprintf(common, sizeof common,
             "train %s/m.lua --policy %s/p.lua --backend host --image 8 --batch 4 --train-size 8 --val-size 4 "
             "--seed 5",
             dir, dir);
    snprintf(args, sizeof args, "%s --epochs 1 --checkpoint %s/ck", common, dir);
    CHECK(tool_run(args) == 0, "training failed:\n%s", tool_output);
    snprintf(args, sizeof args, "%s --epochs 2 --resume %s/ck", common, dir);
    CHECK(tool_run(args) == 0, "resume with unchanged files failed:\n%s", tool_output);

    append_file("m.lua", "-- edited after the checkpoint\n");
    snprintf(args, sizeof args, "%s --epochs 2 --resume %s/ck", common, dir);
    expect_failure("resume after the model file changed", "the model file", "has changed since the checkpoint");
    snprintf(args, sizeof args, "cp %s/models/cifar_resnet8.lua %s/m.lua", PP_SOURCE_DIR, dir);
    CHECK(system(args) == 0, "restore the model");
    append_file("p.lua", "-- edited after the checkpoint\n");
    snprintf(args, sizeof args, "%s --epochs 2 --resume %s/ck", common, dir);
    expect_failure("resume after the policy file changed", "the policy file", "has changed since the checkpoint");
}

static void test_train_plan_first(void)
{
    /* 4096 x 3 x 65536 x 65536 images: the plan refuses it before the data set or the
     * input batch (824 GB ... 211 TB) is allocated. */
    snprintf(args, sizeof args, "train cifar_resnet8 --batch 4096 --image 65536x65536 --backend host");
    expect_failure("train with an impossible batch", "that 32-bit indexing allows", NULL);
}

static void test_read_caps(void)
{
    /* .npy: a stream, and a header that declares 2^40 floats (4 TiB) over 16 bytes of data. */
    char layer_args[1024];
    snprintf(layer_args, sizeof layer_args,
             "layer --x %%s --w %s/x.npy --dy %s/x.npy --stride 1 --pad 1 --pool 1 --backend host --out %s/l", dir, dir,
             dir);
    snprintf(args, sizeof args, layer_args, "/dev/zero");
    expect_failure(".npy from /dev/zero", "/dev/zero", "not a NumPy .npy file");
    /* (A regular file is checked against its size first: a stream has none.) */
    write_npy("huge.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (1024, 1024, 1024, 1024), }", NULL, 16);
    char huge[256], feed_cmd[600];
    snprintf(huge, sizeof huge, "%s/huge.fifo", dir);
    CHECK(mkfifo(huge, 0600) == 0, "mkfifo %s", huge);
    snprintf(feed_cmd, sizeof feed_cmd, "(cat %s/huge.npy /dev/zero > %s 2>/dev/null &);", dir, huge);
    feed = feed_cmd;
    snprintf(args, sizeof args, layer_args, huge);
    expect_failure(".npy stream declaring 4 TiB", "huge.fifo", "more than the limit of");
    feed = "";

    /* Checkpoints: /dev/zero, and a file that declares 2^40 parameters. */
    snprintf(args, sizeof args, "mkdir -p %s/ckz %s/ckh && ln -sf /dev/zero %s/ckz/checkpoint.ppc", dir, dir, dir);
    CHECK(system(args) == 0, "mkdir");
    const char *train = "train cifar_resnet8 --backend host --image 8 --batch 4 --train-size 8 --val-size 4";
    snprintf(args, sizeof args, "%s --resume %s/ckz", train, dir);
    expect_failure("checkpoint from /dev/zero", "ckz/checkpoint.ppc", "not a regular file");
    unsigned char ck[8 + 8 + 8 + 64] = {'P', 'P', 'C', 'K', 'P', 'T', '0', '2'};
    ck[16 + 5] = 1; /* text length 0, then a parameter count of 2^40 */
    write_file("ckh/checkpoint.ppc", ck, sizeof ck);
    snprintf(args, sizeof args, "%s --resume %s/ckh", train, dir);
    expect_failure("checkpoint declaring 2^40 floats", "ckh/checkpoint.ppc", "more than the limit of");

    /* Training logs (report) and CIFAR-10 files. */
    snprintf(args, sizeof args, "report /dev/zero -o %s/chart.svg", dir);
    expect_failure("report of /dev/zero", "/dev/zero", "longer than the limit of");
    snprintf(args, sizeof args, "mkdir -p %s/cifar && truncate -s %lld %s/cifar/data_batch_1.bin", dir, 100001LL * 3073,
             dir);
    CHECK(system(args) == 0, "a sparse CIFAR file");
    snprintf(args, sizeof args, "train cifar_resnet8 --backend host --data cifar10:%s/cifar", dir);
    expect_failure("CIFAR file of 100001 records", "data_batch_1.bin", "more than the limit of 100000");
}

/* An output is never renamed over a device, pipe or folder; through a symbolic link it
 * replaces the file the link names, and the link stays. */
static void test_output_targets(void)
{
    const char log[] = "epoch,train_loss,train_accuracy,val_loss,val_accuracy,seconds,peak_bytes\n"
                       "1,2.0,0.1,2.1,0.1,1.0,100\n2,1.5,0.3,1.6,0.3,1.0,100\n";
    write_file("run.csv", log, strlen(log));
    char fifo[128];
    snprintf(fifo, sizeof fifo, "%s/out.fifo", dir);
    CHECK(mkfifo(fifo, 0600) == 0, "mkfifo");
    snprintf(args, sizeof args, "report %s/run.csv -o %s", dir, fifo);
    expect_failure("report onto a pipe", "out.fifo", "not a regular file");
    struct stat sb;
    CHECK(lstat(fifo, &sb) == 0 && S_ISFIFO(sb.st_mode), "the pipe was replaced");
    snprintf(args, sizeof args, "ln -s real.svg %s/link.svg", dir);
    CHECK(system(args) == 0, "ln -s");
    snprintf(args, sizeof args, "report %s/run.csv -o %s/link.svg", dir, dir);
    CHECK(tool_run(args) == 0, "report through a link failed:\n%s", tool_output);
    char path[160];
    snprintf(path, sizeof path, "%s/link.svg", dir);
    CHECK(lstat(path, &sb) == 0 && S_ISLNK(sb.st_mode), "the link was replaced by a file");
    snprintf(path, sizeof path, "%s/real.svg", dir);
    CHECK(lstat(path, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 100, "the linked file was not written");
    printf("report through a symbolic link wrote the file it names; the link stays a link\n");
}

static const test_case tests[] = {
    TEST_CASE(test_gen_replaces_bundle,
              "gen into a bundle replaces it whole; a folder that is not a bundle is refused, untouched"),
    TEST_CASE(test_output_targets, "an output is never renamed over a pipe; through a symbolic link the link stays"),
    TEST_CASE(test_step_extra_params,
              "step with ResNet-20 parameters on ResNet-8 names the extra keys, writes nothing"),
    TEST_CASE_AFTER(test_read_caps, test_step_extra_params,
                    "/dev/zero and huge declared sizes (.npy, checkpoints, logs, CIFAR-10) refused naming the limit"),
    TEST_CASE(test_train_plan_first, "train refuses an impossible batch by its plan, before allocating data"),
    TEST_CASE(test_resume_changed_files, "train --resume says which of the model and policy files changed"),
};

int main(int argc, char **argv)
{
    const char *only = test_select(&argc, argv);
    CHECK(argc == 2, "usage: test_cli_inputs /path/to/poolprop");
    tool_path = argv[1];
    test_temp_dir(dir, sizeof dir, "cli_inputs");
    int status = TEST_RUN(tests, only);
    CHECK(test_remove_dir(dir) == 0, "cleanup");
    if (!only) printf("cli input tests passed\n");
    return status;
}
