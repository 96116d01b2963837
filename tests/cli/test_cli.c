/* test_cli.c - the poolprop command as a user runs it: `poolprop layer` on .npy files
 * agrees with the independent C reference (reference/conv_ref.c), `poolprop gen --model`
 * writes every kernel of a training step and a plan whose kernel lines (the form
 * `poolprop gen FILE` writes) name them, and every kind of bad input (bad .npy files,
 * shapes that do not fit, bad options, bad description files, a cuda backend without a GPU)
 * gives a clear message and a non-zero exit, never a crash.
 * Usage: test_cli /path/to/poolprop */
#include "conv_ref.h"
#include "npy.h"
#include "tool_run.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[64];
static char npy_err[1024]; /* the last .npy error */

static void expect_failure(const char *args, const char *message_part)
{
    int rc = tool_run(args);
    CHECK(rc != 0, "poolprop %s should fail; output:\n%s", args, tool_output);
    CHECK(strstr(tool_output, message_part) != NULL, "poolprop %s: message lacks \"%s\":\n%s", args, message_part,
          tool_output);
    printf("rejected as expected: poolprop %s\n    -> %s", args, tool_output);
}

static void write_array(const char *name, int rank, const size_t *shape, const float *data)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    pp_context_options o;
    pp_context_options_init(&o);
    char err[1024];
    CHECK(npy_write_f32(path, rank, shape, data, err, sizeof err) == PP_OK, "%s", err);
}

static void write_bytes(const char *name, const void *data, size_t len)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(data, 1, len, f) == len, "write %s", path);
    fclose(f);
}

static float *read_array(const char *name, int rank, const size_t *want_shape)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    npy_array a;
    CHECK(npy_read_f32(path, rank, &a, npy_err, sizeof npy_err) == PP_OK, "%s", npy_err);
    for (int i = 0; i < rank; i++)
        CHECK(a.shape[i] == want_shape[i], "%s dim %d: %zu, want %zu", name, i, a.shape[i], want_shape[i]);
    return a.data;
}

static void fill(float *a, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        a[i] = (float)((seed >> 9) & 0xffff) / 32768.0f - 1.0f;
    }
}

/* Runs poolprop layer on one shape and compares every tool_output with the reference. */
static void check_layer(int n, int c, int h, int w, int k, int r, int s, int stride, int pad, int pool, int max)
{
    conv_ref_shape sh = {n, c, h, w, k, r, s, stride, pad, pool, max, 0, 0, 0, 0};
    conv_ref_derive(&sh);
    size_t xs[4] = {(size_t)n, (size_t)c, (size_t)h, (size_t)w}, ws[4] = {(size_t)k, (size_t)c, (size_t)r, (size_t)s};
    size_t ys[4] = {(size_t)n, (size_t)k, (size_t)sh.p, (size_t)sh.q};
    size_t ps[4] = {(size_t)n, (size_t)c, (size_t)sh.hp, (size_t)sh.wp};
    size_t nx = xs[0] * xs[1] * xs[2] * xs[3], nw = ws[0] * ws[1] * ws[2] * ws[3];
    size_t ny = ys[0] * ys[1] * ys[2] * ys[3], np = ps[0] * ps[1] * ps[2] * ps[3];
    float *x = malloc(nx * 4), *wt = malloc(nw * 4), *dy = malloc(ny * 4);
    float *ry = malloc(ny * 4), *rxp = malloc(np * 4), *rdx = malloc(nx * 4), *rxu = malloc(nx * 4),
          *rdw = malloc(nw * 4);
    fill(x, nx, 1), fill(wt, nw, 2), fill(dy, ny, 3);
    write_array("x.npy", 4, xs, x);
    write_array("w.npy", 4, ws, wt);
    write_array("dy.npy", 4, ys, dy);
    char args[1024];
    snprintf(args, sizeof args,
             "layer --x %s/x.npy --w %s/w.npy --dy %s/dy.npy --stride %d --pad %d --pool %d --pool-mode %s "
             "--backend host --out %s/out",
             dir, dir, dir, stride, pad, pool, max ? "max" : "avg", dir);
    int rc = tool_run(args);
    CHECK(rc == 0, "poolprop %s failed:\n%s", args, tool_output);
    conv_fwd_ref(&sh, x, wt, ry);
    pool_ref(&sh, x, rxp);
    unpool_ref(&sh, rxp, rxu);
    conv_bwd_data_ref(&sh, dy, wt, rdx);
    conv_bwd_weight_ref(&sh, dy, rxu, rdw);
    float *y = read_array("out/y.npy", 4, ys), *xp = read_array("out/xp.npy", 4, ps);
    float *dx = read_array("out/dx.npy", 4, xs), *dw = read_array("out/dw.npy", 4, ws);
    double ey = max_rel_error(y, ry, ny), ep = max_rel_error(xp, rxp, np);
    double ex = max_rel_error(dx, rdx, nx), ew = max_rel_error(dw, rdw, nw);
    printf("poolprop layer N%d C%d %dx%d K%d %dx%d s%d p%d f%d %s vs reference: y %.2e xp %.2e dx %.2e dw %.2e\n", n, c,
           h, w, k, r, s, stride, pad, pool, max ? "max" : "avg", ey, ep, ex, ew);
    /* Tolerance 1e-4 relative to the tool_output's magnitude: fp32 sums of at most a few
     * thousand terms (layer_check.c derives the tighter per-shape bound used elsewhere). */
    CHECK(ey < 1e-4 && ep < 1e-6 && ex < 1e-4 && ew < 1e-4, "errors above tolerance");
    free(x), free(wt), free(dy), free(ry), free(rxp), free(rdx), free(rxu), free(rdw);
    free(y), free(xp), free(dx), free(dw);
}

/* What a bundle written by `poolprop gen` holds, read from its plan.lua line by line the way
 * tools read it, with every kernel line's file checked to exist. */
typedef struct bundle_summary {
    int kernel_lines;   /* { name = ..., op = ..., file = ..., grid = ..., block = { t, 1, 1 }, args = ... } */
    int distinct_files; /* different files those lines name */
    int step_lines;     /* { phase = ... } lines (gen --model only) */
    int cu_files;       /* *.cu files in kernels/ */
    int conv_files, conv_tensor_core; /* distinct conv_* kernels, and those whose header says MATH=1 */
    int conv_ops_tensor_core[3];      /* conv_fwd, conv_bwd_data, conv_bwd_weight with MATH=1 */
    char first_conv_name[256];
} bundle_summary;

static bundle_summary read_bundle(const char *bundle)
{
    static char files[1024][300];
    bundle_summary b;
    memset(&b, 0, sizeof b);
    char path[512], line[4096];
    snprintf(path, sizeof path, "%s/plan.lua", bundle);
    FILE *plan = fopen(path, "r");
    CHECK(plan != NULL, "%s written", path);
    while (fgets(line, sizeof line, plan)) {
        const char *t = line + strspn(line, " ");
        if (strncmp(t, "{ phase = ", 10) == 0) b.step_lines++;
        char name[256], op[64], file[300];
        unsigned g[3], threads;
        if (sscanf(t,
                   "{ name = \"%255[^\"]\", op = \"%63[^\"]\", file = \"%299[^\"]\", grid = { %u, %u, %u }, block = { "
                   "%u, 1, 1 }, args = {",
                   name, op, file, &g[0], &g[1], &g[2], &threads) != 7)
            continue;
        b.kernel_lines++;
        CHECK(g[0] >= 1 && g[1] >= 1 && g[2] >= 1 && threads >= 32, "%s: launch geometry of %s", path, name);
        char want[300];
        snprintf(want, sizeof want, "kernels/%s.cu", name);
        CHECK(strcmp(file, want) == 0, "%s: kernel %s names file %s", path, name, file);
        int seen = 0;
        for (int i = 0; i < b.distinct_files && !seen; i++) seen = strcmp(files[i], file) == 0;
        if (seen) continue;
        CHECK(b.distinct_files < 1024, "too many kernels");
        snprintf(files[b.distinct_files++], sizeof files[0], "%s", file);
        char kernel_path[700];
        snprintf(kernel_path, sizeof kernel_path, "%s/%s", bundle, file);
        FILE *k = fopen(kernel_path, "r");
        CHECK(k != NULL, "%s: kernel line names %s, which does not exist", path, kernel_path);
        if (strncmp(op, "conv_", 5) == 0) {
            b.conv_files++;
            if (!b.first_conv_name[0]) snprintf(b.first_conv_name, sizeof b.first_conv_name, "%s", name);
            char header[512];
            int tensor_core = 0, found = 0;
            while (!found && fgets(header, sizeof header, k))
                if (strncmp(header, "// kernel:", 10) == 0) found = 1, tensor_core = strstr(header, " MATH=1") != NULL;
            CHECK(found, "%s has no '// kernel:' header line", kernel_path);
            b.conv_tensor_core += tensor_core;
            const char *ops[3] = {"conv_fwd", "conv_bwd_data", "conv_bwd_weight"};
            for (int i = 0; i < 3; i++) b.conv_ops_tensor_core[i] += tensor_core && strcmp(op, ops[i]) == 0;
        }
        fclose(k);
    }
    fclose(plan);
    snprintf(path, sizeof path, "%s/kernels", bundle);
    DIR *d = opendir(path);
    CHECK(d != NULL, "%s exists", path);
    for (struct dirent *e; (e = readdir(d));) {
        size_t n = strlen(e->d_name);
        if (n > 3 && strcmp(e->d_name + n - 3, ".cu") == 0) b.cu_files++;
    }
    closedir(d);
    return b;
}

/* The number after `label` in the last tool output ("wrote 60 kernels" -> 60 for "wrote "). */
static int number_after(const char *label)
{
    const char *at = strstr(tool_output, label);
    CHECK(at != NULL, "output lacks '%s':\n%s", label, tool_output);
    return atoi(at + strlen(label));
}

static void check_gen_model(void)
{
    char args[1024], bundle[256];
    /* The form tools already read: a layer-description file. */
    snprintf(bundle, sizeof bundle, "%s/gen_layers", dir);
    snprintf(args, sizeof args, "gen --out %s", bundle);
    CHECK(tool_run(args) == 0, "gen failed:\n%s", tool_output);
    bundle_summary layers = read_bundle(bundle);
    CHECK(layers.kernel_lines > 0 && layers.distinct_files == layers.cu_files, "gen FILE: %d lines, %d files, %d .cu",
          layers.kernel_lines, layers.distinct_files, layers.cu_files);

    /* A model's training step, fp32 and TF32. */
    snprintf(bundle, sizeof bundle, "%s/gen_fp32", dir);
    snprintf(args, sizeof args, "gen --model cifar_resnet20 --policy 2 --batch 4 --out %s", bundle);
    CHECK(tool_run(args) == 0, "gen --model failed:\n%s", tool_output);
    printf("poolprop %s:\n%s", args, tool_output);
    int kernels = number_after("wrote "), launches = number_after(" kernels (");
    bundle_summary fp32 = read_bundle(bundle);
    printf("plan.lua: %d kernel lines naming %d files (%d .cu written), %d steps; %d conv kernels, %d with MATH=1\n",
           fp32.kernel_lines, fp32.distinct_files, fp32.cu_files, fp32.step_lines, fp32.conv_files,
           fp32.conv_tensor_core);
    CHECK(fp32.kernel_lines == launches && fp32.step_lines == launches, "kernel lines %d, steps %d, launches %d",
          fp32.kernel_lines, fp32.step_lines, launches);
    CHECK(fp32.distinct_files == kernels && fp32.cu_files == kernels, "files named %d, written %d, reported %d",
          fp32.distinct_files, fp32.cu_files, kernels);
    /* The step runs BN, pooling, classifier, loss and update kernels besides the convolutions'. */
    CHECK(fp32.conv_files >= 20 && kernels > fp32.conv_files && fp32.conv_tensor_core == 0,
          "fp32: %d conv kernels of %d, %d with MATH=1", fp32.conv_files, kernels, fp32.conv_tensor_core);

    snprintf(bundle, sizeof bundle, "%s/gen_tf32", dir);
    snprintf(args, sizeof args, "gen --model cifar_resnet20 --policy 2,math=tf32 --batch 4 --out %s", bundle);
    CHECK(tool_run(args) == 0, "gen --model (tf32) failed:\n%s", tool_output);
    CHECK(strstr(tool_output, "(math tf32)"), "math mode reported:\n%s", tool_output);
    bundle_summary tf32 = read_bundle(bundle);
    printf("math=tf32: %d conv kernels, %d with MATH=1 (conv_fwd %d, conv_bwd_data %d, conv_bwd_weight %d), first %s\n",
           tf32.conv_files, tf32.conv_tensor_core, tf32.conv_ops_tensor_core[0], tf32.conv_ops_tensor_core[1],
           tf32.conv_ops_tensor_core[2], tf32.first_conv_name);
    CHECK(tf32.kernel_lines == fp32.kernel_lines && tf32.distinct_files == tf32.cu_files,
          "tf32: %d lines (fp32 %d), %d files named, %d written", tf32.kernel_lines, fp32.kernel_lines,
          tf32.distinct_files, tf32.cu_files);
    CHECK(tf32.conv_ops_tensor_core[0] > 0 && tf32.conv_ops_tensor_core[1] > 0 && tf32.conv_ops_tensor_core[2] > 0,
          "math=tf32 gives tensor-core variants of every conv op");
    CHECK(strcmp(tf32.first_conv_name, fp32.first_conv_name) != 0, "tf32 and fp32 variants differ: %s",
          tf32.first_conv_name);

    /* Bad requests: a message, a non-zero exit, and nothing written. */
    char out[256];
    snprintf(out, sizeof out, "%s/gen_bad", dir);
    snprintf(args, sizeof args, "gen --model resnet19 --out %s", out);
    expect_failure(args, "unknown model 'resnet19'");
    snprintf(args, sizeof args, "gen --model cifar_resnet20 --policy 2,math=fp16 --out %s", out);
    expect_failure(args, "math must be one of fp32, tf32, bf16");
    snprintf(args, sizeof args, "gen --model cifar_resnet20 --policy stage9=2 --out %s", out);
    expect_failure(args, "policy names stage 'stage9'");
    snprintf(args, sizeof args, "gen --model resnet50 --image 16x16 --out %s", out);
    expect_failure(args, "too small for resnet50");
    snprintf(args, sizeof args, "gen --model cifar_resnet20 --image 0x5 --out %s", out);
    expect_failure(args, "--image: expected HxW");
    snprintf(args, sizeof args, "gen --model cifar_resnet20 --batch 0 --out %s", out);
    expect_failure(args, "--batch");
    snprintf(args, sizeof args, "gen models/layers_default.lua --model cifar_resnet20 --out %s", out);
    expect_failure(args, "not both");
    snprintf(args, sizeof args, "gen --policy 2 --out %s", out);
    expect_failure(args, "--policy applies to --model only");
    snprintf(args, sizeof args, "gen --model cifar_resnet20 --tuning-dir %s/tuning --out %s", dir, out);
    expect_failure(args, "give --backend host or cuda");
    expect_failure("gen --model cifar_resnet20", "missing --out");
    CHECK(access(out, F_OK) != 0, "a failed gen --model created %s", out);
    /* An output folder that cannot be created: under a regular file (fails as root too). */
    write_bytes("plain_file", "x", 1);
    snprintf(args, sizeof args, "gen --model cifar_resnet20 --out %s/plain_file/bundle", dir);
    expect_failure(args, "cannot create");
    snprintf(args, sizeof args, "gen --model cifar_resnet20 --out %s/plain_file", dir);
    expect_failure(args, "cannot create");
}

static void layer_vs_reference(void)
{
    check_layer(2, 5, 11, 9, 7, 3, 3, 2, 1, 2, 0);
    check_layer(1, 3, 13, 13, 4, 7, 7, 2, 3, 4, 1);
    check_layer(3, 4, 6, 5, 6, 1, 1, 1, 0, 1, 0);
}

static void bad_npy_files(void)
{
    char args[2048], path[256];
    /* Inputs for the bad cases: a valid x/w/dy set from the last check_layer call. */
    const char magic_bad[] = "NOTNUMPY-file-with-junk-content";
    write_bytes("magic.npy", magic_bad, sizeof magic_bad);
    snprintf(args, sizeof args,
             "layer --x %s/magic.npy --w %s/w.npy --dy %s/dy.npy --stride 1 --pad 0 --pool 1 --out %s/o", dir, dir, dir,
             dir);
    expect_failure(args, "magic.npy");

    size_t s3[3] = {3, 4, 6};
    float small[72] = {0};
    write_array("rank3.npy", 3, s3, small);
    snprintf(args, sizeof args,
             "layer --x %s/rank3.npy --w %s/w.npy --dy %s/dy.npy --stride 1 --pad 0 --pool 1 --out %s/o", dir, dir, dir,
             dir);
    expect_failure(args, "rank3.npy");

    /* float64 data */
    const char f8_header[] =
        "\x93NUMPY\x01\x00\x76\x00{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1, 1, 1), }";
    char f8[128 + 8];
    memset(f8, ' ', sizeof f8);
    memcpy(f8, f8_header, sizeof f8_header - 1);
    f8[127] = '\n';
    memset(f8 + 128, 0, 8);
    write_bytes("f8.npy", f8, sizeof f8);
    snprintf(args, sizeof args,
             "layer --x %s/f8.npy --w %s/w.npy --dy %s/dy.npy --stride 1 --pad 0 --pool 1 --out %s/o", dir, dir, dir,
             dir);
    expect_failure(args, "f8.npy");

    /* truncated: a valid file cut short */
    snprintf(path, sizeof path, "%s/x.npy", dir);
    snprintf(args, sizeof args, "head -c 200 %s > %s/trunc.npy", path, dir);
    CHECK(system(args) == 0, "truncate copy");
    snprintf(args, sizeof args,
             "layer --x %s/trunc.npy --w %s/w.npy --dy %s/dy.npy --stride 1 --pad 0 --pool 1 --out %s/o", dir, dir, dir,
             dir);
    expect_failure(args, "trunc.npy");
}

static void shapes_not_fitting(void)
{
    char args[2048];
    /* shapes that do not fit: W with other channel counts, dY of the wrong size */
    size_t wbad[4] = {6, 2, 1, 1};
    float wdata[12] = {0};
    write_array("wbad.npy", 4, wbad, wdata);
    snprintf(args, sizeof args,
             "layer --x %s/x.npy --w %s/wbad.npy --dy %s/dy.npy --stride 1 --pad 0 --pool 1 --out %s/o", dir, dir, dir,
             dir);
    expect_failure(args, "input channels");
    snprintf(args, sizeof args, "layer --x %s/x.npy --w %s/w.npy --dy %s/dy.npy --stride 2 --pad 0 --pool 1 --out %s/o",
             dir, dir, dir, dir);
    expect_failure(args, "--dy: expected shape");
    /* a kernel larger than the padded input */
    size_t wbig[4] = {6, 4, 9, 9};
    float *wbigdata = calloc(6 * 4 * 81, 4);
    write_array("wbig.npy", 4, wbig, wbigdata);
    free(wbigdata);
    snprintf(args, sizeof args,
             "layer --x %s/x.npy --w %s/wbig.npy --dy %s/dy.npy --stride 1 --pad 0 --pool 1 --out %s/o", dir, dir, dir,
             dir);
    expect_failure(args, "larger than the padded input");
    snprintf(args, sizeof args, "layer --x %s/x.npy --w %s/w.npy --dy %s/dy.npy --stride 1 --pad 0 --pool 3 --out %s/o",
             dir, dir, dir, dir);
    expect_failure(args, "pool factor must be 1, 2, 4 or 8");
    snprintf(args, sizeof args,
             "layer --x %s/missing.npy --w %s/w.npy --dy %s/dy.npy --stride 1 --pad 0 --pool 1 --out %s/o", dir, dir,
             dir, dir);
    expect_failure(args, "missing.npy");
}

static void bad_options(void)
{
    char args[2048];
    /* options */
    expect_failure("layer --x a.npy --stride two", "--stride: expected an integer");
    expect_failure("layer --bogus 1", "unknown option '--bogus'");
    expect_failure("frobnicate", "unknown command 'frobnicate'");
    snprintf(args, sizeof args,
             "layer --x %s/x.npy --w %s/w.npy --dy %s/dy.npy --stride 1 --pad 0 --pool 1 --pool-mode median --out %s/o",
             dir, dir, dir, dir);
    expect_failure(args, "--pool-mode: expected avg or max");
}

static void cuda_without_gpu(void)
{
    char args[2048];
    /* a cuda backend where no GPU exists is an error, never a silent fall-back */
    snprintf(args, sizeof args,
             "layer --x %s/x.npy --w %s/w.npy --dy %s/dy.npy --stride 1 --pad 0 --pool 1 --backend cuda --out %s/o",
             dir, dir, dir, dir);
    int rc = tool_run(args);
    if (rc == 0) {
        printf("a GPU is present: --backend cuda ran\n");
    } else {
        CHECK(strstr(tool_output, "cuda") || strstr(tool_output, "CUDA"), "cuda failure message: %s", tool_output);
        printf("rejected as expected (no GPU): --backend cuda -> %s", tool_output);
    }
}

static void bad_description_files(void)
{
    char args[2048], path[256];
    /* description files: file:line errors, nothing written */
    snprintf(path, sizeof path, "%s/bad_layers.lua", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "layer { N = 1, C = 3, H = 8, W = 8, K = 4, R = 3, S = 3 }\n\nlayer { N = 1, C = 3, H = 8, W = 8, K = "
               "4, R = 3, S = 3, stride = 0 }\n");
    fclose(f);
    snprintf(args, sizeof args, "verify --layers %s", path);
    char want[300];
    snprintf(want, sizeof want, "%s:3: error: field 'stride' must be >= 1", path);
    expect_failure(args, want);
    snprintf(args, sizeof args, "gen %s --out %s/bundle", path, dir);
    expect_failure(args, want);
    snprintf(path, sizeof path, "%s/bundle", dir);
    CHECK(access(path, F_OK) != 0, "gen wrote %s for a bad description", path);
    snprintf(args, sizeof args, "verify --layers %s/nonexistent.lua", dir);
    expect_failure(args, "nonexistent.lua");
}

static void plan_table_json(void)
{
    char args[2048], path[256];
    /* poolprop plan: the table, JSON with the figures a script reads, and bad input */
    CHECK(tool_run("plan resnet50 --batch 64 --image 224x224 --policy 2") == 0, "plan failed:\n%s", tool_output);
    CHECK(strstr(tool_output, "saving:") && strstr(tool_output, "saved: stage1") &&
              strstr(tool_output, "largest transient"),
          "plan table incomplete:\n%s", tool_output);
    printf("poolprop plan resnet50 --batch 64 --policy 2:\n%s", tool_output);
    CHECK(tool_run("plan resnet18 --batch 8 --policy 4 --json") == 0, "plan --json failed:\n%s", tool_output);
    CHECK(strstr(tool_output, "\"peak_bytes\": ") && strstr(tool_output, "\"baseline_peak_bytes\": "),
          "JSON lacks peaks:\n%s", tool_output);
    size_t peak = 0, base = 0;
    CHECK(sscanf(strstr(tool_output, "\"peak_bytes\": "), "\"peak_bytes\": %zu", &peak) == 1 &&
              sscanf(strstr(tool_output, "\"baseline_peak_bytes\": "), "\"baseline_peak_bytes\": %zu", &base) == 1,
          "JSON peaks unreadable");
    CHECK(peak > 0 && peak < base, "f = 4 must plan less than the baseline: %zu vs %zu", peak, base);
    /* JSON strings are escaped: a model path with a quote in it (issue 10, item 4). */
    snprintf(path, sizeof path, "%s/we\"ird", dir);
    CHECK(mkdir(path, 0755) == 0 || errno == EEXIST, "mkdir %s", path);
    snprintf(path, sizeof path, "%s/we\"ird/m.lua", dir);
    FILE *mf = fopen(path, "w");
    CHECK(mf && fputs("return resnet { block = \"basic\", layers = { 1, 1, 1, 1 } }\n", mf) >= 0 && fclose(mf) == 0,
          "write %s", path);
    snprintf(args, sizeof args, "plan '%s' --batch 2 --json", path);
    CHECK(tool_run(args) == 0, "plan --json of %s failed:\n%s", path, tool_output);
    CHECK(strstr(tool_output, "/we\\\"ird/m.lua\"") != NULL, "the model path is not escaped in JSON:\n%s", tool_output);
    CHECK(tool_run("plan resnet50 --batch 64 --policy 2 --budget 8GiB") == 0, "plan --budget failed:\n%s", tool_output);
    CHECK(strstr(tool_output, "largest batch within"), "budget line missing:\n%s", tool_output);
}

static void plan_bad_input(void)
{
    char args[2048];
    expect_failure("plan resnet18 --batch 0", "at least one image");
    expect_failure("plan resnet19 --batch 2", "unknown model 'resnet19'");
    snprintf(args, sizeof args, "plan %s/no_such_model.lua --batch 2", dir);
    expect_failure(args, "no_such_model.lua");
    expect_failure("plan resnet18 --batch 2 --policy stage5=2", "policy names stage 'stage5'");
    expect_failure("plan resnet18 --batch 2 --policy layer1.0.conv7=2", "policy names layer 'layer1.0.conv7'");
    expect_failure("plan resnet50 --batch 2 --image 16x16", "too small for resnet50");
    expect_failure("plan resnet50 --batch 2 --budget lots", "--budget");
}

static void plan_act_bf16(void)
{
    /* act=bf16 is compared against the AMP-like baseline, which itself saves less than fp32 */
    CHECK(tool_run("plan resnet50 --batch 64 --image 224x224 --policy 2,act=bf16") == 0, "plan act=bf16 failed:\n%s",
          tool_output);
    CHECK(strstr(tool_output, "baseline: policy baseline,act=bf16"), "act=bf16 not against its baseline:\n%s",
          tool_output);
    printf("poolprop plan resnet50 --batch 64 --policy 2,act=bf16:\n%s", tool_output);
    CHECK(tool_run("plan resnet18 --batch 8 --policy baseline,act=bf16 --json") == 0, "plan failed:\n%s", tool_output);
    size_t amp = 0, fp32_base = 0;
    CHECK(sscanf(strstr(tool_output, "\"peak_bytes\": "), "\"peak_bytes\": %zu", &amp) == 1, "JSON peak unreadable");
    CHECK(tool_run("plan resnet18 --batch 8 --policy baseline --json") == 0, "plan failed:\n%s", tool_output);
    CHECK(sscanf(strstr(tool_output, "\"peak_bytes\": "), "\"peak_bytes\": %zu", &fp32_base) == 1,
          "JSON peak unreadable");
    CHECK(amp > 0 && amp < fp32_base, "baseline,act=bf16 must plan less than baseline: %zu vs %zu", amp, fp32_base);
    expect_failure("plan resnet18 --batch 2 --policy 2,act=bf16,math=tf32", "math must be bf16");
    expect_failure("plan resnet18 --batch 2 --policy 2,act=half", "act must be one of fp32, bf16");
}

static void plan_data_parallel(void)
{
    /* --world: the global batch shared by the ranks; synchronised BN's gather buffer counted */
    CHECK(tool_run("plan resnet18 --batch 32 --world 4 --sync-bn --json") == 0, "plan --world failed:\n%s",
          tool_output);
    size_t comm = 0, peak_sync = 0, peak_local = 0;
    int batch = 0;
    CHECK(sscanf(strstr(tool_output, "\"batch\": "), "\"batch\": %d", &batch) == 1 && batch == 8,
          "4 ranks of a global 32 must plan batch 8:\n%s", tool_output);
    CHECK(sscanf(strstr(tool_output, "\"communication\": "), "\"communication\": %zu", &comm) == 1 && comm > 0,
          "synchronised BN plans no communication buffer:\n%s", tool_output);
    CHECK(sscanf(strstr(tool_output, "\"peak_bytes\": "), "\"peak_bytes\": %zu", &peak_sync) == 1, "no peak");
    CHECK(tool_run("plan resnet18 --batch 8 --json") == 0, "plan failed:\n%s", tool_output);
    CHECK(sscanf(strstr(tool_output, "\"peak_bytes\": "), "\"peak_bytes\": %zu", &peak_local) == 1, "no peak");
    CHECK(peak_sync > peak_local, "the gather buffer is not in the peak: %zu vs %zu", peak_sync, peak_local);
    CHECK(tool_run("plan resnet18 --batch 32 --world 4") == 0 && strstr(tool_output, "communication (none)"),
          "plan --world without sync BN:\n%s", tool_output);
    expect_failure("plan resnet18 --batch 30 --world 4", "does not divide among 4 ranks");
}

static void policy_bad_input(void)
{
    /* poolprop policy refuses what it cannot use before any probe runs */
    expect_failure("policy cifar_resnet8 --batch 8", "--budget BYTES is required");
    expect_failure("policy cifar_resnet8 --batch 8 --budget 0", "--budget: expected a byte count");
    expect_failure("policy cifar_resnet8 --batch 8 --budget -5MiB", "--budget: expected a byte count");
    expect_failure("policy cifar_resnet8 --batch 8 --budget 1GiB --factors 1,3", "--factors: expected factors");
    expect_failure("policy cifar_resnet8 --batch 8 --budget 1GiB --factors 2,4", "must include 1");
    expect_failure("policy cifar_resnet8 --batch 8 --budget 1GiB --modes min", "--modes: expected avg");
    expect_failure("policy cifar_resnet8 --batch 8 --budget 1GiB --allow act=bf16", "--allow: only bn=bf16");
    expect_failure("policy cifar_resnet8 --batch 8 --budget 1GiB,2GiB --out p.lua", "--out writes one policy");
    expect_failure("policy cifar_resnet8 --batch 8 --budget 1GiB,,2GiB", "--budget: expected a byte count");
    expect_failure("policy cifar_resnet8 --batch 8 --budget 1GiB --modes avg,,max", "--modes: an empty item");
    expect_failure("policy cifar_resnet8 --batch 8 --budget 100KB --backend host", "is below what cifar_resnet8 holds");
}

static void backend_and_values(void)
{
    expect_failure("demo --backend gpu", "--backend: expected auto, host or cuda, got 'gpu'");
    expect_failure("train cifar_resnet8 --backend gpu", "--backend: expected auto, host or cuda, got 'gpu'");
    /* train defaults to auto too: it says which backend it chose before the plan is refused. */
    expect_failure("train cifar_resnet8 --batch 4096 --image 65536x65536", "that 32-bit indexing allows");
    CHECK(strstr(tool_output, "poolprop: backend cuda (auto: ") ||
              strstr(tool_output, "poolprop: backend host (auto: "),
          "train without --backend does not use auto:\n%s", tool_output);
    /* Values that used to be accepted silently (issue 10, item 4). */
    expect_failure("demo --lr inf", "--lr: expected a positive finite number, got 'inf'");
    expect_failure("demo --lr nan", "--lr: expected a positive finite number");
    expect_failure("plan resnet18 --batch 2 --budget nan", "--budget: expected a byte count");
    expect_failure("plan resnet18 --batch 2 --policy stage1=2,stage1=8", "stage1 is given twice");
    expect_failure("plan resnet18 --batch 2 --policy ,", "an empty item in ','");
}

static void init_step(void)
{
    char args[2048], path[256];
    /* poolprop init + step: parameters and gradients as .npy files per state_dict key */
    snprintf(args, sizeof args, "init cifar_resnet8 --classes 10 --seed 3 --out %s/params", dir);
    CHECK(tool_run(args) == 0, "init failed:\n%s", tool_output);
    size_t xs8[4] = {2, 3, 8, 8};
    float x8[2 * 3 * 8 * 8];
    fill(x8, sizeof x8 / sizeof x8[0], 9);
    write_array("x8.npy", 4, xs8, x8);
    /* int64 labels, as torch.save(...).numpy() gives them: a hand-written v1.0 header */
    char labels[128 + 16];
    memset(labels, ' ', 128);
    const char lh[] = "\x93NUMPY\x01\x00\x76\x00{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }";
    memcpy(labels, lh, sizeof lh - 1);
    labels[127] = '\n';
    int64_t lv[2] = {3, 7};
    memcpy(labels + 128, lv, sizeof lv);
    write_bytes("labels.npy", labels, sizeof labels);
    snprintf(args, sizeof args,
             "step cifar_resnet8 --params %s/params --x %s/x8.npy --labels %s/labels.npy --policy 2 --out %s/step", dir,
             dir, dir, dir);
    CHECK(tool_run(args) == 0, "step failed:\n%s", tool_output);
    printf("%s", tool_output);
    /* No --backend: auto, which says which backend it chose and why. */
    CHECK(strstr(tool_output, "poolprop: backend cuda (auto: a usable GPU)") ||
              strstr(tool_output, "poolprop: backend host (auto: no usable GPU: "),
          "step without --backend does not say which backend auto chose:\n%s", tool_output);
    npy_array loss, g;
    snprintf(path, sizeof path, "%s/step/loss.npy", dir);
    CHECK(npy_read_f32(path, 0, &loss, npy_err, sizeof npy_err) == PP_OK, "%s", npy_err);
    CHECK(loss.count == 1 && loss.data[0] > 0 && loss.data[0] < 20, "loss %f", loss.data[0]);
    snprintf(path, sizeof path, "%s/step/grad/layer2.0.conv1.weight.npy", dir);
    CHECK(npy_read_f32(path, 4, &g, npy_err, sizeof npy_err) == PP_OK, "%s", npy_err);
    CHECK(g.shape[0] == 32 && g.shape[1] == 16 && g.shape[2] == 3, "gradient shape");
    double norm = 0;
    for (size_t i = 0; i < g.count; i++) norm += g.data[i] * g.data[i];
    CHECK(norm > 0 && isfinite(norm), "gradient norm %g", norm);
    snprintf(path, sizeof path, "%s/step/running/bn1.running_var.npy", dir);
    CHECK(access(path, F_OK) == 0, "updated running statistics written");
    npy_array_free(&loss), npy_array_free(&g);
    snprintf(args, sizeof args,
             "step cifar_resnet8 --params %s/params --x %s/x.npy --labels %s/labels.npy --out %s/step2", dir, dir, dir,
             dir);
    expect_failure(args, "expected images of shape (N, 3, H, W), got 4 channels");
    size_t xs3[4] = {3, 3, 8, 8};
    float x3[3 * 3 * 8 * 8] = {0};
    write_array("x3.npy", 4, xs3, x3);
    snprintf(args, sizeof args,
             "step cifar_resnet8 --params %s/params --x %s/x3.npy --labels %s/labels.npy --out %s/step2", dir, dir, dir,
             dir);
    expect_failure(args, "2 labels for a batch of 3 images");
    snprintf(path, sizeof path, "%s/params/layer1.0.bn1.weight.npy", dir);
    unlink(path);
    snprintf(args, sizeof args,
             "step cifar_resnet8 --params %s/params --x %s/x8.npy --labels %s/labels.npy --out %s/step3", dir, dir, dir,
             dir);
    expect_failure(args, "layer1.0.bn1.weight.npy");
}

static void bench_host(void)
{
    char args[2048], path[256];
    /* poolprop bench: the mechanism on the host (its figures only mean something on a GPU) */
    snprintf(args, sizeof args, "bench cifar_resnet8 --batch 2 --image 8 --repeats 2 --steps 1 --json %s/bench.json",
             dir);
    CHECK(tool_run(args) == 0, "bench failed:\n%s", tool_output);
    printf("%s", tool_output);
    size_t planned = 0, allocated = 0;
    const char *line = strstr(tool_output, "peak ");
    CHECK(line && sscanf(line, "peak %zu bytes planned, %zu allocated", &planned, &allocated) == 2,
          "bench peak line:\n%s", tool_output);
    CHECK(planned > 0 && planned == allocated, "bench: planned %zu, allocated %zu", planned, allocated);
    snprintf(path, sizeof path, "%s/bench.json", dir);
    FILE *bj = fopen(path, "r");
    CHECK(bj != NULL, "bench JSON written");
    char json[8192];
    size_t jn = fread(json, 1, sizeof json - 1, bj);
    json[jn] = '\0';
    fclose(bj);
    CHECK(strstr(json, "\"fwd_ms\": ") && strstr(json, "\"images_per_s\": "), "bench JSON fields:\n%s", json);
    expect_failure("bench resnet19", "unknown model 'resnet19'");
}

static void tune_database(void)
{
    char args[2048];
    /* poolprop tune: one variant per kernel into a fresh database, which bench then reads */
    snprintf(args, sizeof args,
             "tune cifar_resnet8 --batch 1 --image 8 --max-variants 1 --repeats 1 --warmup 0 "
             "--tuning-dir %s/tuning",
             dir);
    CHECK(tool_run(args) == 0, "tune failed:\n%s", tool_output);
    CHECK(strstr(tool_output, "23 kernels: 23 variants tried (23 verified and timed, 0 wrong, 0 unusable)") &&
              strstr(tool_output, "[23/23] conv_bwd_weight_") && strstr(tool_output, "wrote "),
          "tune summary:\n%s", tool_output);
    printf("poolprop tune: 23 kernels, one variant each, verified, timed and written\n");
    snprintf(args, sizeof args,
             "bench cifar_resnet8 --batch 1 --image 8 --repeats 1 --steps 1 --layers-only "
             "--tuning-dir %s/tuning",
             dir);
    CHECK(tool_run(args) == 0 && strstr(tool_output, "tuning database: 23 entries"), "bench with the database:\n%s",
          tool_output);
    printf("poolprop bench read the 23 entries back\n");
    snprintf(args, sizeof args,
             "gen --model cifar_resnet8 --batch 1 --image 8 --backend host --tuning-dir %s/tuning "
             "--out %s/gen_tuned",
             dir, dir);
    CHECK(tool_run(args) == 0 && strstr(tool_output, "(23 entries)"), "gen --model with the database:\n%s",
          tool_output);
    printf("poolprop gen --model read the 23 entries back\n");
    expect_failure("tune", "which model?");
    expect_failure("tune cifar_resnet8 --policy 2,math=fp16", "math must be one of fp32, tf32, bf16");
    expect_failure("tune cifar_resnet8 --max-variants -1", "--max-variants");
    expect_failure("tune cifar_resnet8 --budget-seconds soon", "--budget-seconds");
    snprintf(args, sizeof args,
             "tune cifar_resnet8 --batch 1 --image 8 --max-variants 1 --tuning-dir /proc/no/such/dir");
    expect_failure(args, "/proc/no/such/dir");
}

static const test_case tests[] = {
    TEST_CASE(layer_vs_reference, "poolprop layer on 3 shapes (avg and max pooling) agrees with the C reference"),
    TEST_CASE_AFTER(bad_npy_files, layer_vs_reference,
                    "bad .npy inputs (bad magic, rank 3, float64, truncated) are rejected naming the file"),
    TEST_CASE_AFTER(shapes_not_fitting, layer_vs_reference,
                    "shapes that do not fit (channels, dY shape, kernel larger than the input, pool 3, a missing "
                    "file) are rejected"),
    TEST_CASE_AFTER(bad_options, layer_vs_reference,
                    "bad options, an unknown command and a bad --pool-mode are rejected"),
    TEST_CASE_AFTER(cuda_without_gpu, layer_vs_reference,
                    "--backend cuda without a GPU is an error naming cuda, never a silent fall-back"),
    TEST_CASE(bad_description_files,
              "a bad description file gives file:line errors in verify and gen; gen writes nothing"),
    TEST_CASE(check_gen_model, "gen FILE and gen --model (fp32, tf32) write the kernels their plan lines name; bad "
                               "requests write nothing"),
    TEST_CASE(plan_table_json, "plan prints its table, JSON peaks below the baseline, escaped paths and a budget line"),
    TEST_CASE(plan_bad_input,
              "plan rejects a zero batch, unknown models, stages, layers, too small images, bad budgets"),
    TEST_CASE(plan_act_bf16, "act=bf16 is planned against its own (smaller) baseline; bad act/math combinations fail"),
    TEST_CASE(plan_data_parallel, "plan --world: per-rank batch, the sync-BN gather buffer in the peak, refusals"),
    TEST_CASE(policy_bad_input, "policy: missing or bad budget, factors, modes, --allow; a budget below the weights"),
    TEST_CASE(backend_and_values, "bad --backend values, train's auto backend, and values once accepted silently"),
    TEST_CASE_AFTER(init_step, layer_vs_reference,
                    "init + step write loss, gradients and running statistics; bad images, labels and params fail"),
    TEST_CASE(bench_host, "bench on the host: planned peak equals allocated, its JSON fields; an unknown model fails"),
    TEST_CASE(tune_database, "tune writes 23 entries that bench and gen --model read back; bad tune options fail"),
};

int main(int argc, char **argv)
{
    const char *only = test_select(&argc, argv);
    CHECK(argc == 2, "usage: test_cli /path/to/poolprop");
    tool_path = argv[1];
    test_temp_dir(dir, sizeof dir, "test_cli");
    int status = TEST_RUN(tests, only);
    CHECK(test_remove_dir(dir) == 0, "cleanup");
    if (!only) printf("command-line tests passed\n");
    return status;
}
