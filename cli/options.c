/* options.c - the poolprop command's shared option parsing and helpers (options.h). */
#include "options.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int cli_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "poolprop: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return 1;
}

int cli_fail_ctx(pp_context *ctx, pp_status st)
{
    fprintf(stderr, "poolprop: %s\n", ctx ? pp_last_error(ctx) : pp_status_string(st));
    return 1;
}

void cli_log_to_stderr(void *user, pp_log_level level, const char *message)
{
    (void)user;
    fprintf(stderr, "poolprop: %s: %s\n", level == PP_LOG_WARNING ? "warning" : "note", message);
}

pp_context *cli_context(const pp_context_options *o)
{
    pp_context *ctx = NULL;
    pp_status st = pp_context_create(o, &ctx);
    if (st == PP_OK && o->backend == PP_BACKEND_AUTO)
        fprintf(stderr, "poolprop: backend %s (auto: %s)\n",
                pp_context_backend(ctx) == PP_BACKEND_CUDA ? "cuda" : "host", pp_context_backend_reason(ctx));
    if (st == PP_OK) return ctx;
    cli_fail_ctx(ctx, st);
    pp_context_destroy(ctx);
    return NULL;
}

int cli_parse_options(int argc, char **argv, cli_option *opts, int nopts, const char **positional)
{
    if (positional) *positional = NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0) {
            if (positional && !*positional) {
                *positional = a;
                continue;
            }
            return cli_fail("unexpected argument '%s' (see poolprop --help)", a);
        }
        cli_option *o = NULL;
        for (int j = 0; j < nopts; j++)
            if (strcmp(a + 2, opts[j].name) == 0) o = &opts[j];
        if (!o) return cli_fail("unknown option '%s' (see poolprop --help)", a);
        if (o->seen) return cli_fail("option '%s' given twice", a);
        o->seen = 1;
        if (o->is_flag) continue;
        if (i + 1 >= argc) return cli_fail("option '%s' needs a value", a);
        o->value = argv[++i];
    }
    return 0;
}

const char *cli_opt(const cli_option *opts, int nopts, const char *name)
{
    for (int j = 0; j < nopts; j++)
        if (strcmp(opts[j].name, name) == 0) return opts[j].is_flag ? (opts[j].seen ? "1" : NULL) : opts[j].value;
    return NULL;
}

int cli_parse_int(const char *name, const char *text, int min, int max, int *out)
{
    if (!text) return cli_fail("missing --%s", name);
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < min || v > max)
        return cli_fail("--%s: expected an integer in %d..%d, got '%s'", name, min, max, text);
    *out = (int)v;
    return 0;
}

int cli_parse_schedule(const char *text, pp_schedule *out)
{
    if (!text || strcmp(text, "forward") == 0)
        *out = PP_SCHEDULE_FORWARD;
    else if (strcmp(text, "reverse") == 0)
        *out = PP_SCHEDULE_REVERSE;
    else if (strcmp(text, "shuffled") == 0)
        *out = PP_SCHEDULE_SHUFFLED;
    else
        return cli_fail("--schedule: expected forward, reverse or shuffled, got '%s'", text);
    return 0;
}

int cli_parse_backend(const char *text, pp_backend *out)
{
    if (!text || strcmp(text, "auto") == 0)
        *out = PP_BACKEND_AUTO;
    else if (strcmp(text, "host") == 0)
        *out = PP_BACKEND_HOST;
    else if (strcmp(text, "cuda") == 0)
        *out = PP_BACKEND_CUDA;
    else
        return cli_fail("--backend: expected auto, host or cuda, got '%s'", text);
    return 0;
}

int cli_run_options(const cli_option *opts, int nopts, pp_context_options *o)
{
    pp_context_options_init(o);
    o->log = cli_log_to_stderr;
    if (cli_parse_backend(cli_opt(opts, nopts, "backend"), &o->backend)) return 1;
    return cli_parse_schedule(cli_opt(opts, nopts, "schedule"), &o->host_schedule);
}

double cli_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int cli_make_dir(const char *path)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST) return cli_fail("cannot create %s: %s", path, strerror(errno));
    return 0;
}

int cli_parse_image(const char *text, int *h, int *w)
{
    *h = *w = 0;
    if (!text) return 0;
    char *end;
    long a = strtol(text, &end, 10), b = a;
    if (end != text && (*end == 'x' || *end == 'X')) b = strtol(end + 1, &end, 10);
    if (*end || a < 1 || b < 1 || a > 65536 || b > 65536)
        return cli_fail("--image: expected HxW or a size, e.g. 224x224 or 32, got '%s'", text);
    *h = (int)a;
    *w = (int)b;
    return 0;
}

int cli_parse_double(const char *name, const char *text, double min, double max, double *out)
{
    if (!text) return cli_fail("missing --%s", name);
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !isfinite(v) || v < min || v > max)
        return cli_fail("--%s: expected a number in [%g, %g], got '%s'", name, min, max, text);
    *out = v;
    return 0;
}

void cli_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

int cli_parse_bytes(const char *name, const char *text, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    double scale = 1;
    const char *units[] = {"", "K", "M", "G", "T"};
    if (errno || end == text || !isfinite(v) || v <= 0)
        return cli_fail("--%s: expected a byte count such as 16GiB, got '%s'", name, text);
    if (*end) {
        int found = 0;
        for (int i = 1; i < 5 && !found; i++) {
            char a[8], b[8], c[8];
            snprintf(a, sizeof a, "%s", units[i]);
            snprintf(b, sizeof b, "%sB", units[i]);
            snprintf(c, sizeof c, "%siB", units[i]);
            if (strcmp(end, c) == 0)
                scale = ldexp(1.0, 10 * i), found = 1;
            else if (strcmp(end, a) == 0 || strcmp(end, b) == 0)
                scale = pow(1000.0, i), found = 1;
        }
        if (!found && strcmp(end, "B") != 0) return cli_fail("--%s: unknown unit in '%s'", name, text);
    }
    *out = v * scale;
    return 0;
}
