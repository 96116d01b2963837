/* tool_run.h - how the command-line tests run the poolprop command: with a shell fragment
 * of arguments (and optional environment assignments), capturing stdout and stderr
 * together into tool_output; a death by signal fails the test (a crash is never an
 * acceptable answer to bad input). Header-only: each test is one translation unit. */
#ifndef PP_TOOL_RUN_H
#define PP_TOOL_RUN_H

#include "test_util.h"

#include <stdio.h>
#include <sys/wait.h>

static const char *tool_path;     /* set from argv[1] */
static char tool_output[1 << 16]; /* the last run's stdout and stderr */

/* Returns the exit status. env: "NAME=value ..." or NULL. */
static int tool_run_env(const char *env, const char *args)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s '%s' %s 2>&1", env ? env : "", tool_path, args);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL, "popen");
    size_t n = fread(tool_output, 1, sizeof tool_output - 1, p);
    tool_output[n] = '\0';
    int status = pclose(p);
    CHECK(WIFEXITED(status), "poolprop %s did not exit normally (signal):\n%s", args, tool_output);
    return WEXITSTATUS(status);
}

static int tool_run(const char *args) { return tool_run_env(NULL, args); }

#endif
