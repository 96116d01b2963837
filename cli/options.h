/* options.h - what the poolprop command's subcommands share: option parsing (--name value
 * pairs, each at most once, one optional positional argument), error printing, and
 * creating a context. Everything prints its own error ("poolprop: ...") and returns
 * non-zero (or NULL) on failure. */
#ifndef PP_CLI_OPTIONS_H
#define PP_CLI_OPTIONS_H

#include "poolprop.h"

#include <stdio.h>

typedef struct cli_option {
    const char *name;
    const char *value;
    int is_flag; /* takes no value */
    int seen;
} cli_option;

int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Writes s to f as a JSON string: quoted, with '"', '\\' and control characters escaped. */
void cli_json_string(FILE *f, const char *s);
int cli_fail_ctx(pp_context *ctx, pp_status st);
void cli_log_to_stderr(void *user, pp_log_level level, const char *message);
/* A context, or NULL after printing why not. */
pp_context *cli_context(const pp_context_options *o);
int cli_parse_options(int argc, char **argv, cli_option *opts, int nopts, const char **positional);
/* The value of an option (flags: "1" when given), NULL when absent. */
const char *cli_opt(const cli_option *opts, int nopts, const char *name);
int cli_parse_int(const char *name, const char *text, int min, int max, int *out);
/* A finite number in [min, max]. */
int cli_parse_double(const char *name, const char *text, double min, double max, double *out);
int cli_parse_schedule(const char *text, pp_schedule *out);
/* --backend auto|host|cuda; absent means auto. */
int cli_parse_backend(const char *text, pp_backend *out);
/* A positive byte count for option --name: 16GiB, 500MB, 1.5e9; units K M G T (powers of
 * 1000, with B), Ki Mi Gi Ti (powers of 1024, with iB). Non-zero after printing the problem. */
int cli_parse_bytes(const char *name, const char *text, double *out);
/* Context options for commands that run kernels: --backend auto|host|cuda, --schedule. */
int cli_run_options(const cli_option *opts, int nopts, pp_context_options *o);
/* "224x224" or "32". */
int cli_parse_image(const char *text, int *h, int *w);
double cli_now_ms(void);
int cli_make_dir(const char *path);

#endif
