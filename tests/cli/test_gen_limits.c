/* test_gen_limits.c - `poolprop gen` on layer files whose sizes pass no 32-bit index: each
 * run exits non-zero, writes no plan, and its error names the file and line, the layer and
 * the tensor, listing the tensors in a fixed order (x, w, y, xp); a large layer inside the
 * limits is still generated. Usage: test_gen_limits <path of poolprop>. */
#include "tool_run.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64];

static void write_file(const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "cannot create %s", path);
    CHECK(fputs(text, f) >= 0 && fclose(f) == 0, "cannot write %s", path);
}

static int plan_written(void)
{
    char path[256];
    snprintf(path, sizeof path, "%s/out/plan.lua", dir);
    return access(path, F_OK) == 0;
}

/* Runs gen on name; it must fail with every one of the wanted fragments, in order. */
static void gen_fails(const char *name, const char *const *wanted)
{
    char args[512];
    snprintf(args, sizeof args, "gen '%s/%s' --out '%s/out'", dir, name, dir);
    int rc = tool_run(args);
    CHECK(rc != 0, "gen %s must fail, exited 0:\n%s", name, tool_output);
    CHECK(!plan_written(), "gen %s wrote a plan", name);
    const char *at = tool_output;
    for (int i = 0; wanted[i]; i++) {
        const char *hit = strstr(at, wanted[i]);
        CHECK(hit != NULL, "gen %s: '%s' not found (in this order) in:\n%s", name, wanted[i], tool_output);
        at = hit + strlen(wanted[i]);
    }
    printf("gen %s: exit %d, %s\n", name, rc, wanted[1]);
}

static void maxint_layer(void)
{
    write_file("maxint.lua", "layer { name = \"big\", N = math.maxinteger, C = math.maxinteger, H = 8, W = 8, K = 8,\n"
                             "        R = 3, S = 3, stride = 1, pad = 1 }\n");
    const char *maxint[] = {"maxint.lua:1: error: layer 'big': tensor x (N*C*H*W = about", "tensor w (K*C*R*S",
                            "tensor y (N*K*P*Q", "tensor xp (N*C*HP*WP", NULL};
    gen_fails("maxint.lua", maxint);
}

static void pad_overflow(void)
{
    write_file("pad.lua",
               "\nlayer { name = \"padded\", N = 1, C = 4, H = 4, W = 4, K = 4, R = 3, S = 3, pad = 1 << 31 }\n");
    const char *pad[] = {"pad.lua:2: error: layer 'padded': tensor x padded: its height", "pad=2147483648", NULL};
    gen_fails("pad.lua", pad);
}

static void product_overflow(void)
{
    /* Each factor fits an int, the product does not: y = 65536 * 65536 * 1 * 1. */
    write_file("product.lua", "layer { name = \"wide\", N = 65536, C = 1, H = 1, W = 1, K = 65536, R = 1, S = 1 }\n");
    const char *product[] = {"product.lua:1: error: layer 'wide': tensor y (N*K*P*Q = 4294967296 elements)",
                             "32-bit indexing", NULL};
    gen_fails("product.lua", product);
}

static void huge_float(void)
{
    write_file("huge.lua", "layer { name = \"f\", N = 1e300, C = 4, H = 4, W = 4, K = 4, R = 3, S = 3 }\n");
    const char *huge[] = {"huge.lua:1: error: field 'N' must be an integer", "1e+300", NULL};
    gen_fails("huge.lua", huge);
}

static void large_inside_limits(void)
{
    /* Inside the limits: x of 2^30 elements is generated. */
    write_file("large.lua", "layer { name = \"large\", N = 1, C = 1, H = 1, W = 1 << 30, K = 1, R = 1, S = 1 }\n");
    char args[512];
    snprintf(args, sizeof args, "gen '%s/large.lua' --out '%s/out'", dir, dir);
    CHECK(tool_run(args) == 0, "gen large.lua must succeed:\n%s", tool_output);
    CHECK(plan_written(), "gen large.lua wrote no plan");
    printf("gen large.lua: x of 2^30 elements generated\n");
}

static const test_case tests[] = {
    TEST_CASE(maxint_layer, "N = C = math.maxinteger: file:line, the layer, and tensors x, w, y, xp in that order"),
    TEST_CASE(pad_overflow, "pad = 2^31: the padded height of x is refused at file:line"),
    TEST_CASE(product_overflow, "factors that fit an int whose product (y, 2^32 elements) does not"),
    TEST_CASE(huge_float, "N = 1e300 is not an integer"),
    TEST_CASE(large_inside_limits, "a layer whose x has 2^30 elements is still generated"),
};

int main(int argc, char **argv)
{
    const char *only = test_select(&argc, argv);
    CHECK(argc == 2, "usage: test_gen_limits POOLPROP");
    tool_path = argv[1];
    test_temp_dir(dir, sizeof dir, "gen_limits");
    char cmd[256];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/out'", dir);
    CHECK(system(cmd) == 0, "%s", cmd);
    int status = TEST_RUN(tests, only);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "%s", cmd);
    return status;
}
