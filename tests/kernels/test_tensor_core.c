/* test_tensor_core.c - the tensor-core, ldmatrix and cp.async wrappers (templates/ptx_mma.cuh,
 * templates/ptx_ldmatrix.cuh, templates/ptx_async_copy.cuh) through the test kernels of
 * tests/kernels/emu_mma.cu:
 * - mma m16n8k8 TF32 and m16n8k16 BF16 on small-integer matrices, whose products and sums
 *   are exact in every format, so D = A*B + C must hold exactly: any slip in a fragment
 *   layout (the host implementation's or the kernel's) shows as a wrong element;
 * - the f32 -> TF32 (to nearest, ties away) and f32 -> BF16 (to nearest even) conversions
 *   on ties, NaN and infinity, against bit patterns worked out by hand;
 * - ldmatrix.x4 and ldmatrix.x4.trans (m8n8, b16) against a plain statement of the PTX
 *   semantics: lanes 8i..8i+7 give the row addresses of matrix i; lane t receives in r_i
 *   the elements (row t/4, columns 2(t%4), 2(t%4)+1) of matrix i, with .trans (rows
 *   2(t%4), 2(t%4)+1, column t/4), the first in the low half. Every element is distinct
 *   and the lanes' row addresses are permuted, so any slip in the exchange shows;
 * - cp.async: data present after the waits, zero-fill for invalid sources, and on the host
 *   that copies land at the wait, not before (so a missing wait shows up there).
 * Usage: test_tensor_core [host|cuda]; cuda exits 77 (skipped) where no GPU exists. */
#include "context.h"
#include "test_util.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

static pp_context *ctx;

static pp_devptr upload(const void *data, size_t bytes)
{
    pp_devptr p;
    CHECK_OK(ctx, device_alloc(ctx, bytes, &p));
    if (data)
        CHECK_OK(ctx, ctx->ops->upload(ctx, p, data, bytes));
    else
        CHECK_OK(ctx, ctx->ops->memset_zero(ctx, p, bytes));
    return p;
}

static void run(pp_function *f, unsigned blocks, unsigned threads, void **args)
{
    const unsigned grid[3] = {blocks, 1, 1}, block[3] = {threads, 1, 1};
    CHECK_OK(ctx, ctx->ops->launch(ctx, f, grid, block, args, NULL));
    CHECK_OK(ctx, ctx->ops->synchronize(ctx));
}

/* Small integers in [-4, 4], exact in TF32 and BF16. */
static void fill_ints(float *a, int n, uint32_t seed)
{
    for (int i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        a[i] = (float)((int)(seed >> 24) % 9 - 4);
    }
}

static void test_mma(pp_function *f, const char *name, int kdim)
{
    float a[16 * 16], b[16 * 8], c[16 * 8], d[16 * 8];
    fill_ints(a, 16 * kdim, 11u + (uint32_t)kdim);
    fill_ints(b, kdim * 8, 23u + (uint32_t)kdim);
    fill_ints(c, 16 * 8, 37u);
    pp_devptr da = upload(a, sizeof(float) * 16 * (size_t)kdim), db = upload(b, sizeof(float) * (size_t)kdim * 8),
              dc = upload(c, sizeof c), dd = upload(NULL, sizeof d);
    void *args[4] = {&da, &db, &dc, &dd};
    run(f, 1, 32, args);
    CHECK_OK(ctx, ctx->ops->download(ctx, d, dd, sizeof d));
    int wrong = 0;
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 8; j++) {
            float expect = c[i * 8 + j];
            for (int k = 0; k < kdim; k++) expect += a[i * kdim + k] * b[k * 8 + j];
            if (d[i * 8 + j] != expect) {
                if (wrong++ < 4) printf("  %s: d[%d][%d] = %g, expected %g\n", name, i, j, d[i * 8 + j], expect);
            }
        }
    printf("%s: 16x8x%d product of small integers: %d of 128 elements differ from A*B + C (must be 0)\n", name, kdim,
           wrong);
    CHECK(wrong == 0, "%s gives a wrong product", name);
    device_free(ctx, da, 0), device_free(ctx, db, 0), device_free(ctx, dc, 0), device_free(ctx, dd, 0);
}

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void test_rounding(pp_function *f)
{
    /* input, expected tf32 bits, expected bf16 bits (of the value; the high half holds -x) */
    struct {
        float in;
        uint32_t tf32;
        uint16_t bf16;
    } cases[] = {
        {1.0f, 0x3f800000u, 0x3f80},
        {from_bits(0x3f801000u), 0x3f802000u, 0x3f80}, /* 1 + 2^-11: TF32 tie, away from zero */
        {from_bits(0x3f800fffu), 0x3f800000u, 0x3f80}, /* just below the tie: down */
        {from_bits(0xbf801000u), 0xbf802000u, 0xbf80}, /* negative tie: away from zero */
        {from_bits(0x3f808000u), 0x3f808000u, 0x3f80}, /* 1 + 2^-8: BF16 tie, to even (down) */
        {from_bits(0x3f818000u), 0x3f818000u, 0x3f82}, /* 1 + 3*2^-8: BF16 tie, to even (up) */
        {from_bits(0x3f808001u), 0x3f808000u, 0x3f81}, /* just above the BF16 tie: up */
        {INFINITY, 0x7f800000u, 0x7f80},
        {from_bits(0x7f7fffffu), 0x7f800000u, 0x7f80}, /* FLT_MAX rounds up to infinity in both */
        {NAN, 0u, 0x7fff},                             /* NaN: tf32 checked as NaN below */
    };
    const int n = (int)(sizeof cases / sizeof cases[0]);
    float in[16];
    uint32_t out[32];
    for (int i = 0; i < n; i++) in[i] = cases[i].in;
    int count = n;
    pp_devptr din = upload(in, sizeof(float) * (size_t)n), dout = upload(NULL, sizeof(uint32_t) * 2 * (size_t)n);
    void *args[3] = {&din, &dout, &count};
    run(f, 1, 32, args);
    CHECK_OK(ctx, ctx->ops->download(ctx, out, dout, sizeof(uint32_t) * 2 * (size_t)n));
    for (int i = 0; i < n; i++) {
        uint32_t in_bits;
        memcpy(&in_bits, &cases[i].in, 4);
        uint32_t tf = out[2 * i], lo = out[2 * i + 1] & 0xffffu, hi = out[2 * i + 1] >> 16;
        printf("rounding %08x: tf32 %08x (expected %08x), bf16 %04x (expected %04x), bf16(-x) %04x\n", in_bits, tf,
               cases[i].tf32, lo, cases[i].bf16, hi);
        if (isnan(cases[i].in)) {
            CHECK((tf & 0x7f800000u) == 0x7f800000u && (tf & 0x007fffffu) != 0, "tf32 of NaN is not a NaN");
            CHECK((lo & 0x7f80u) == 0x7f80u && (lo & 0x7fu) != 0, "bf16 of NaN is not a NaN");
            continue;
        }
        CHECK(tf == cases[i].tf32, "tf32 rounding of %08x", in_bits);
        CHECK(lo == cases[i].bf16, "bf16 rounding of %08x", in_bits);
        CHECK(hi == (cases[i].bf16 ^ 0x8000u), "bf16 rounding of -%08x (high half)", in_bits);
    }
    device_free(ctx, din, 0), device_free(ctx, dout, 0);
}

static void test_ldmatrix(pp_function *f)
{
    uint16_t in[32 * 8];
    uint32_t out[2 * 32 * 4];
    for (int i = 0; i < 32 * 8; i++) in[i] = (uint16_t)(0x1000 + 7 * i); /* all distinct */
    pp_devptr din = upload(in, sizeof in), dout = upload(NULL, sizeof out);
    void *args[2] = {&din, &dout};
    run(f, 1, 32, args);
    CHECK_OK(ctx, ctx->ops->download(ctx, out, dout, sizeof out));
    int wrong[2] = {0, 0};
    for (int t = 0; t < 32; t++)
        for (int i = 0; i < 4; i++) {
            /* Row j of matrix i is the tile row whose address lane 8i + j gave. */
#define ELEMENT(j, c) in[((5 * (8 * i + (j)) + 3) % 32) * 8 + (c)]
            uint32_t plain = (uint32_t)ELEMENT(t / 4, 2 * (t % 4)) | (uint32_t)ELEMENT(t / 4, 2 * (t % 4) + 1) << 16;
            uint32_t trans = (uint32_t)ELEMENT(2 * (t % 4), t / 4) | (uint32_t)ELEMENT(2 * (t % 4) + 1, t / 4) << 16;
#undef ELEMENT
            if (out[t * 4 + i] != plain && wrong[0]++ < 4)
                printf("  ldmatrix.x4: lane %d r%d = %08x, expected %08x\n", t, i, out[t * 4 + i], plain);
            if (out[128 + t * 4 + i] != trans && wrong[1]++ < 4)
                printf("  ldmatrix.x4.trans: lane %d r%d = %08x, expected %08x\n", t, i, out[128 + t * 4 + i], trans);
        }
    printf("ldmatrix.x4: %d of 128 registers differ from the PTX semantics; .trans: %d (both must be 0)\n", wrong[0],
           wrong[1]);
    CHECK(wrong[0] == 0 && wrong[1] == 0, "ldmatrix gives wrong fragments");
    device_free(ctx, din, 0), device_free(ctx, dout, 0);
}

static void test_async_copy(pp_function *f, int host)
{
    float in[64], out[160];
    for (int i = 0; i < 64; i++) in[i] = (float)(i + 1);
    pp_devptr din = upload(in, sizeof in), dout = upload(NULL, sizeof out);
    void *args[2] = {&din, &dout};
    run(f, 1, 32, args);
    CHECK_OK(ctx, ctx->ops->download(ctx, out, dout, sizeof out));
    int wrong_first = 0, wrong_final = 0, early = 0;
    for (int t = 0; t < 32; t++) {
        if (out[t] != in[t]) wrong_first++; /* older group: landed */
        if (out[64 + t] != in[t]) wrong_final++;
        float expect_hi = t % 2 == 0 ? in[t + 32] : 0.0f; /* odd lanes: zero-fill */
        if (out[64 + 32 + t] != expect_hi) wrong_final++;
        uint32_t bits;
        memcpy(&bits, &out[128 + t], 4);
        if (bits != 0xdeadu) early++;
    }
    printf("cp.async: older group after wait_group 1: %d wrong; both groups after wait_group 0: %d wrong "
           "(zero-fill on odd lanes); newer group visible before its wait: %d of 32 lanes%s\n",
           wrong_first, wrong_final, early, host ? " (must be 0 on the host)" : " (not checked on a GPU)");
    CHECK(wrong_first == 0 && wrong_final == 0, "cp.async results");
    if (host) CHECK(early == 0, "the host emulation let a copy land before its wait");
    device_free(ctx, din, 0), device_free(ctx, dout, 0);
}

static pp_function *fns[5]; /* emu_mma.cu's kernels, in the order of main's names */
static int on_host;

static void mma_tf32(void) { test_mma(fns[0], "mma.m16n8k8 tf32", 8); }
static void mma_bf16(void) { test_mma(fns[1], "mma.m16n8k16 bf16", 16); }
static void rounding(void) { test_rounding(fns[2]); }
static void async_copy(void) { test_async_copy(fns[3], on_host); }
static void ldmatrix(void) { test_ldmatrix(fns[4]); }

static const test_case tests[] = {
    TEST_CASE(mma_tf32, "mma.m16n8k8 TF32 on small integers: D = A*B + C exactly"),
    TEST_CASE(mma_bf16, "mma.m16n8k16 BF16 on small integers: D = A*B + C exactly"),
    TEST_CASE(rounding, "f32 -> TF32 (ties away) and -> BF16 (ties to even) on ties, NaN, infinity: hand-made bits"),
    TEST_CASE(async_copy, "cp.async: data after the waits, zero-fill; on the host no copy lands before its wait"),
    TEST_CASE(ldmatrix, "ldmatrix.x4 and .x4.trans give the PTX semantics' fragments"),
};

int main(int argc, char **argv)
{
    const char *only = test_select(&argc, argv);
    int cuda = argc > 1 && strcmp(argv[1], "cuda") == 0;
    pp_context_options o;
    pp_context_options_init(&o);
    o.backend = cuda ? PP_BACKEND_CUDA : PP_BACKEND_HOST;
    o.disable_cache = 1;
    pp_status st = pp_context_create(&o, &ctx);
    if (cuda && st == PP_ERR_NO_DEVICE) {
        printf("skipped: %s\n", pp_last_error(ctx));
        pp_context_destroy(ctx);
        return PP_TEST_SKIP;
    }
    CHECK_OK(ctx, st);
    if (cuda && ctx->arch < 80) {
        printf("skipped: tensor-core instructions need sm_80, the device is sm_%d\n", ctx->arch);
        pp_context_destroy(ctx);
        return PP_TEST_SKIP;
    }
    printf("backend: %s\n", pp_context_device_name(ctx));
    const char *files[4] = {"templates/ptx_async_copy.cuh", "templates/ptx_mma.cuh", "templates/ptx_ldmatrix.cuh",
                            "tests/kernels/emu_mma.cu"};
    char *parts[4];
    size_t len = 64;
    for (int i = 0; i < 4; i++) {
        parts[i] = test_read_source(files[i]);
        len += strlen(parts[i]) + strlen(files[i]) + 64;
    }
    char *src = malloc(len);
    CHECK(src != NULL, "out of memory");
    size_t used = 0;
    for (int i = 0; i < 4; i++)
        used += (size_t)snprintf(src + used, len - used, "#line 1 \"%s\"\n%s\n", files[i], parts[i]);
    const char *names[] = {"mma_tf32", "mma_bf16", "rounding", "async_copy", "ldmatrix"};
    pp_compile_request req = {src, "emu_mma.cu", names, 5};
    pp_compile_result res;
    pp_module *mod;
    CHECK_OK(ctx, ctx->ops->compile(ctx, &req, &mod, &res));
    for (int i = 0; i < 5; i++) CHECK_OK(ctx, ctx->ops->get_function(ctx, mod, names[i], 0, &fns[i]));
    on_host = !cuda;
    int status = TEST_RUN(tests, only);
    ctx->ops->module_destroy(ctx, mod);
    for (int i = 0; i < 4; i++) free(parts[i]);
    free(src);
    pp_context_destroy(ctx);
    if (!only) printf("tensor-core, ldmatrix and cp.async wrappers: all checks passed\n");
    return status;
}
