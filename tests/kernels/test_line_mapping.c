/* test_line_mapping.c - compiler messages about generated code point at the template line
 * they come from: an error injected into the body of the generated conv_fwd kernel is
 * reported by NVRTC and by the host compiler as templates/conv_fwd.cu at the line where
 * that statement stands in the template file. */
#include "gen_layer.h"
#include "nvrtc_compile.h"
#include "test_util.h"

#include <string.h>

static const char statement[] = "const int tid = threadIdx.x;";

/* Line number of the first line of templates/conv_fwd.cu containing statement. */
static int template_line(void)
{
    char *src = test_read_source("templates/conv_fwd.cu");
    int n = test_line_of(src, statement);
    free(src);
    return n;
}

static pp_context *ctx;
static gen_layer g;   /* the layer whose conv_fwd kernel is broken */
static char *broken;  /* its source with an undeclared name added on the statement's line */
static int want_line; /* the statement's line in templates/conv_fwd.cu */

static void nvrtc_error_line(void)
{
    char nvrtc_want[128];
    snprintf(nvrtc_want, sizeof nvrtc_want, "templates/conv_fwd.cu(%d)", want_line);
    pp_nvrtc_output out;
    pp_status st = nvrtc_compile(ctx, broken, "broken_fwd.cu", 90, &out);
    CHECK(st == PP_ERR_COMPILE, "NVRTC must reject the broken kernel, got %s", pp_status_string(st));
    CHECK(strstr(pp_last_error(ctx), nvrtc_want) && strstr(pp_last_error(ctx), "not_declared_anywhere"),
          "NVRTC message does not point at %s:\n%s", nvrtc_want, pp_last_error(ctx));
    printf("NVRTC error maps to %s\n", nvrtc_want);
}

static void host_compiler_error_line(void)
{
    char host_want[128];
    snprintf(host_want, sizeof host_want, "templates/conv_fwd.cu:%d:", want_line);
    const char *names[1] = {g.kernels[0].name};
    pp_compile_request req = {broken, "broken_fwd.cu", names, 1};
    pp_compile_result res;
    pp_module *mod = NULL;
    pp_status st = ctx->ops->compile(ctx, &req, &mod, &res);
    CHECK(st == PP_ERR_COMPILE, "the host compiler must reject the broken kernel, got %s", pp_status_string(st));
    CHECK(strstr(pp_last_error(ctx), host_want) != NULL, "host compiler message does not point at %s:\n%s", host_want,
          pp_last_error(ctx));
    printf("host compiler error maps to %s\n", host_want);
}

static const test_case tests[] = {
    TEST_CASE(nvrtc_error_line, "NVRTC's error in the generated conv_fwd names templates/conv_fwd.cu(LINE)"),
    TEST_CASE(host_compiler_error_line, "the host compiler's error names templates/conv_fwd.cu:LINE:"),
};

int main(int argc, char **argv)
{
    const char *only = test_select(&argc, argv);
    want_line = template_line();
    pp_context_options o;
    pp_context_options_init(&o);
    o.backend = PP_BACKEND_HOST;
    CHECK_OK(ctx, pp_context_create(&o, &ctx));
    pp_layer_desc d;
    pp_layer_desc_init(&d);
    d.n = 1, d.c = 3, d.h = 8, d.w = 8, d.k = 4, d.r = 3, d.s = 3, d.pad = 1, d.pool = 2;
    CHECK_OK(ctx, gen_layer_from_desc(ctx, &d, &g));
    const char *src = g.kernels[0].source;
    const char *at = strstr(src, statement);
    CHECK(at != NULL, "generated source lacks the statement");
    /* Same line, one undeclared name added: line numbers are unchanged. */
    size_t prefix = (size_t)(at - src) + strlen(statement) - 1;
    broken = malloc(strlen(src) + 64);
    memcpy(broken, src, prefix);
    strcpy(broken + prefix, " + not_declared_anywhere");
    strcat(broken, src + prefix);

    int status = TEST_RUN(tests, only);
    free(broken);
    gen_layer_free(&g);
    pp_context_destroy(ctx);
    return status;
}
