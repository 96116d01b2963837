/* fuzz_csv.c - libFuzzer target: the CSV training logs `poolprop report` reads
 * (cli/report.c, format at its top), through report_main as the command line calls it:
 * the input is a log, given twice (two runs, so the labelling of runs is exercised too),
 * and the chart goes to a scratch directory. Either the report succeeds and the chart is
 * an SVG document, or it fails and leaves nothing behind: no chart, no temporary file. */
#define _XOPEN_SOURCE 700
#include "fuzz_util.h"
#include "report.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* How many entries dir holds, other than . and ..; *chart: whether out.svg is one. */
static int count_entries(const char *dir, int *chart)
{
    int n = 0;
    *chart = 0;
    DIR *d = opendir(dir);
    FUZZ_ASSERT(d != NULL);
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        n++;
        *chart |= strcmp(e->d_name, "out.svg") == 0;
    }
    closedir(d);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char log[4200], dir[4200], out[4300];
    snprintf(log, sizeof log, "%s", fuzz_util_write("run.csv", data, size));
    snprintf(dir, sizeof dir, "%s/chart", fuzz_util_dir());
    snprintf(out, sizeof out, "%s/out.svg", dir);
    mkdir(dir, 0777);
    unlink(out);
    char *argv[] = {log, log, "-o", out, NULL};
    int rc = report_main(4, argv);
    fflush(stdout);
    int chart, entries = count_entries(dir, &chart);
    if (rc == 0) {
        FUZZ_ASSERT(entries == 1 && chart);
        FILE *f = fopen(out, "rb");
        FUZZ_ASSERT(f != NULL);
        char head[64] = "";
        size_t n = fread(head, 1, sizeof head - 1, f);
        fclose(f);
        head[n] = '\0';
        FUZZ_ASSERT(strstr(head, "<svg") || strstr(head, "<?xml"));
    } else {
        FUZZ_ASSERT(entries == 0); /* a failed report writes nothing, not even a temporary file */
    }
    return 0;
}
