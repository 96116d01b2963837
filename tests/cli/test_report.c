/* test_report.c - `poolprop report` as a user runs it: training logs (CSV) in, one SVG chart
 * out. Checks that the chart is well-formed (and valid XML per xmllint where installed),
 * has one polyline per curve, names every run in the legend, escapes text for XML, keeps
 * the last row of a repeated epoch, skips nan validation values, draws a single epoch as
 * markers; and that every kind of bad input gives a message naming the problem, a non-zero
 * exit and no tool_output file (an existing chart is left as it was).
 * Usage: test_report /path/to/poolprop */
#include "tool_run.h"

#include <dirent.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[64];
static char svg[1 << 20];

static void write_file(const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f && fputs(text, f) >= 0 && fclose(f) == 0, "write %s", path);
}

/* Reads dir/name into svg; returns its length, or -1 if it does not exist. */
static long read_file(const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(svg, 1, sizeof svg - 1, f);
    svg[n] = '\0';
    fclose(f);
    return (long)n;
}

static int count(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

static void expect_in(const char *what, const char *text, const char *needle)
{
    CHECK(strstr(text, needle) != NULL, "%s lacks \"%s\":\n%s", what, needle, text);
    printf("  %s contains \"%s\"\n", what, needle);
}

/* No temporary file (CHART.tmpXXXXXX) left behind in dir. */
static void expect_no_temporaries(void)
{
    DIR *d = opendir(dir);
    CHECK(d != NULL, "opendir %s", dir);
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        CHECK(strstr(e->d_name, ".tmp") == NULL, "temporary file left behind: %s", e->d_name);
    closedir(d);
}

/* args: a shell fragment with %s for dir (up to four times). The run must fail, say
 * message_part, leave chart.svg as it was and x.svg unwritten. */
static void expect_failure(const char *args_fmt, const char *message_part, const char *message_part2)
{
    char args[2048];
    snprintf(args, sizeof args, args_fmt, dir, dir, dir, dir);
    int rc = tool_run(args);
    CHECK(rc != 0, "poolprop %s should fail; output:\n%s", args, tool_output);
    CHECK(strncmp(tool_output, "poolprop: ", 10) == 0, "message should start with 'poolprop: ':\n%s", tool_output);
    CHECK(strstr(tool_output, message_part) != NULL, "poolprop %s: message lacks \"%s\":\n%s", args, message_part,
          tool_output);
    CHECK(!message_part2 || strstr(tool_output, message_part2) != NULL, "poolprop %s: message lacks \"%s\":\n%s", args,
          message_part2, tool_output);
    CHECK(read_file("x.svg") < 0, "poolprop %s failed but wrote x.svg", args);
    expect_no_temporaries();
    printf("rejected as expected (exit %d; message has \"%s\"%s%s%s): poolprop report %s\n    -> %s", rc, message_part,
           message_part2 ? " and \"" : "", message_part2 ? message_part2 : "", message_part2 ? "\"" : "", args + 7,
           tool_output);
}

#define HEADER "epoch,train_loss,train_accuracy,val_loss,val_accuracy,seconds,peak_bytes\n"

static void four_runs_summary(void)
{
    char args[2048];
    snprintf(args, sizeof args,
             "report %s/a.csv %s/b.csv %s/c.csv %s/d.csv -o %s/chart.svg "
             "--title \"Runs & \\\"tests\\\" <1> it's\"",
             dir, dir, dir, dir, dir);
    int rc = tool_run(args);
    printf("poolprop %s\n%s", args, tool_output);
    CHECK(rc == 0, "exit %d", rc);
    expect_in("output", tool_output,
              "cifar_resnet8, policy 2 (a.csv): 4 epochs, final train accuracy 0.5575, val accuracy 0.5100");
    expect_in("output", tool_output,
              "cifar_resnet8, policy 2 (c.csv): 3 epochs, final train accuracy 0.6500, val accuracy 0.5500");
    expect_in("output", tool_output,
              "cifar_resnet8, policy stem=1,stage1=<4>: 3 epochs, final train accuracy 0.4000, val accuracy n/a, 1 "
              "nan/inf value not drawn");
    expect_in("output", tool_output, "d.csv: 1 epoch, final train accuracy 0.1000, val accuracy 0.1000");
    expect_in("output", tool_output, "chart.svg (4 runs)");
}

static void four_runs_chart(void)
{
    char args[2048];
    long len = read_file("chart.svg");
    CHECK(len > 0, "chart.svg written");
    printf("chart.svg: %ld bytes\n", len);
    CHECK(strncmp(svg, "<?xml", 5) == 0 || strncmp(svg, "<svg", 4) == 0, "starts with <?xml or <svg: %.40s", svg);
    while (len > 0 && (svg[len - 1] == '\n' || svg[len - 1] == ' ')) svg[--len] = '\0';
    CHECK(len >= 6 && strcmp(svg + len - 6, "</svg>") == 0, "ends with </svg>: ...%s", svg + (len > 40 ? len - 40 : 0));
    printf("  starts with \"%.5s\", ends with \"</svg>\"\n", svg);
    /* curves with >= 2 points: a 4, b 2 (train loss: epochs 1 and 3; train accuracy), c 4, d 0 */
    int polylines = count(svg, "<polyline");
    printf("  polylines: %d, expected 10 (a: 4 curves, b: 2 without validation, c: 4, d: 0 single epoch)\n", polylines);
    CHECK(polylines == 10, "polylines %d", polylines);
    /* markers (<= 15 points per curve): a 16, b 2 + 3, c 4 x 3 (epochs deduplicated), d 4 */
    int circles = count(svg, "<circle");
    printf("  markers: %d, expected 37 (a 16, b 5, c 12 after the repeated epochs, d 4 single points)\n", circles);
    CHECK(circles == 37, "circles %d", circles);
    expect_in("chart.svg", svg, ">cifar_resnet8, policy 2 (a.csv)</text>");
    expect_in("chart.svg", svg, ">cifar_resnet8, policy 2 (c.csv)</text>");
    expect_in("chart.svg", svg, ">cifar_resnet8, policy stem=1,stage1=&lt;4&gt;</text>");
    expect_in("chart.svg", svg, ">d.csv</text>");
    expect_in("chart.svg", svg, ">Runs &amp; &quot;tests&quot; &lt;1&gt; it&apos;s</text>");
    expect_in("chart.svg", svg, "stroke-dasharray");
    CHECK(strstr(svg, "<4>") == NULL && strstr(svg, "<1>") == NULL, "unescaped text in the chart");
    CHECK(strstr(svg, "<script") == NULL && strstr(svg, "href") == NULL && strstr(svg, "@import") == NULL,
          "no scripts or external resources");
    CHECK(strstr(svg, "nan") == NULL && strstr(svg, "inf") == NULL, "no nan/inf coordinates");
    printf("  no unescaped <4> or <1>, no script/href/@import, no nan/inf coordinates\n");
    expect_no_temporaries();
    if (system("command -v xmllint >/dev/null 2>&1") == 0) {
        snprintf(args, sizeof args, "xmllint --noout '%s/chart.svg'", dir);
        CHECK(system(args) == 0, "%s", args);
        printf("  xmllint --noout: well-formed\n");
    } else {
        printf("  xmllint not installed: XML well-formedness check skipped\n");
    }
}

/* A single single-epoch run, default title: axes without division by zero. */
static void single_epoch(void)
{
    char args[2048];
    snprintf(args, sizeof args, "report %s/d.csv -o %s/single.svg", dir, dir);
    CHECK(tool_run(args) == 0, "single epoch: %s", tool_output);
    CHECK(read_file("single.svg") > 0, "single.svg written");
    expect_in("single.svg", svg, ">poolprop training runs</text>");
    CHECK(count(svg, "<polyline") == 0 && count(svg, "<circle") == 4, "single epoch: markers only");
    CHECK(strstr(svg, "nan") == NULL && strstr(svg, "inf") == NULL, "no nan/inf coordinates");
    printf("  single epoch: 0 polylines, 4 markers, no nan/inf coordinates\n");
}

/* Bad inputs; chart.svg already exists and must survive every failure unchanged. */
static void bad_inputs(void)
{
    char args[2048];
    read_file("chart.svg");
    char *before = strdup(svg);
    write_file("noheader.csv", "# model: m\n# policy: 2\n1,2.1,0.2,1.9,0.2,41,1\n");
    write_file("comments.csv", "# model: m\n# policy: 2\n");
    write_file("fields.csv", "# model: m\n" HEADER "1,2.1,0.2,1.9,0.2,41,1\n2,2.0,0.3,1.8,0.3,41\n");
    write_file("number.csv", "# model: m\n" HEADER "1,2.1,0.2,1.9,0.2,41,1\n2,abc,0.3,1.8,0.3,41,1\n");
    write_file("norows.csv", "# model: m\n" HEADER);
    write_file("percent.csv", HEADER "1,2.1,23.1,1.9,28.0,41,1\n");
    write_file("epoch.csv", HEADER "1.5,2.1,0.2,1.9,0.2,41,1\n");
    write_file("hex.csv", HEADER "1,2.1,0.2,1.9,0.2,41,1\n0x2,2.0,0.2,1.9,0.2,41,1\n");
    snprintf(args, sizeof args, "%s/adir", dir);
    CHECK(mkdir(args, 0755) == 0, "mkdir %s", args);
    expect_failure("report -o %s/x.svg", "no input files", NULL);
    expect_failure("report %s/a.csv", "missing -o", NULL);
    expect_failure("report %s/a.csv -o", "needs a value", NULL);
    expect_failure("report %s/a.csv %s/nope.csv -o %s/x.svg", "nope.csv", "No such file");
    expect_failure("report %s/a.csv %s/noheader.csv -o %s/x.svg", "noheader.csv:3:", "expected the header line");
    expect_failure("report %s/comments.csv -o %s/x.svg", "comments.csv: no header line", NULL);
    expect_failure("report %s/fields.csv -o %s/x.svg", "fields.csv:4:", "expected 7 fields");
    expect_failure("report %s/number.csv -o %s/x.svg", "number.csv:4:", "'abc' is not a number");
    expect_failure("report %s/norows.csv -o %s/x.svg", "norows.csv: no rows", NULL);
    expect_failure("report %s/percent.csv -o %s/x.svg", "percent.csv:2:", "outside [0, 1]");
    expect_failure("report %s/epoch.csv -o %s/x.svg", "epoch.csv:2:", "whole number");
    expect_failure("report %s/hex.csv -o %s/x.svg", "hex.csv:3:", "'0x2' is not a number");
    expect_failure("report %s/a.csv -o %s/missing/x.svg", "cannot write", "missing/x.svg");
    expect_failure("report %s/a.csv -o %s/adir", "cannot write", "adir");
    expect_failure("report %s/a.csv -o %s/a.csv", "one of the input logs", NULL);
    expect_failure("report %s/a.csv --bogus -o %s/x.svg", "unknown option '--bogus'", NULL);
    expect_failure("report %s/a.csv %s/number.csv -o %s/chart.svg", "number.csv:4:", NULL);
    CHECK(read_file("chart.svg") > 0 && strcmp(svg, before) == 0, "chart.svg changed by a failed run");
    printf("chart.svg unchanged after the failed runs (%zu bytes compared)\n", strlen(before));
    free(before);
}

static const test_case tests[] = {
    TEST_CASE(four_runs_summary, "four logs (nan/inf values, repeated epochs, one epoch, no metadata): one line each"),
    TEST_CASE_AFTER(four_runs_chart, four_runs_summary,
                    "their chart: well-formed, 10 polylines, 37 markers, legend and title escaped, no nan/inf"),
    TEST_CASE(single_epoch, "a lone single-epoch run: markers only, the default title, no nan/inf coordinates"),
    TEST_CASE_AFTER(bad_inputs, four_runs_summary,
                    "17 kinds of bad input: a message naming the problem, exit != 0, no output, chart.svg unchanged"),
};

int main(int argc, char **argv)
{
    const char *only = test_select(&argc, argv);
    CHECK(argc == 2, "usage: test_report /path/to/poolprop");
    tool_path = argv[1];
    test_temp_dir(dir, sizeof dir, "report");

    /* a: 4 epochs, everything present */
    write_file("a.csv",
               "# poolprop train log\n# model: cifar_resnet8\n# policy: 2\n# data: synthetic\n# batch: 32\n" HEADER
               "1,2.1034,0.2312,1.9876,0.2800,41.2,1067192\n"
               "2,1.7021,0.3875,1.6540,0.4100,40.8,1067192\n"
               "3,1.4020,0.4875,1.4540,0.4700,40.8,1067192\n"
               "4,1.2021,0.5575,1.3540,0.5100,40.8,1067192\n");
    /* b: no validation set (nan), a diverged inf loss, a policy that needs escaping */
    write_file("b.csv",
               "# policy: stem=1,stage1=<4>\n# model: cifar_resnet8\n" HEADER "1,2.2,0.20,nan,nan,40.0,900000\n"
               "2,inf,0.30,nan,nan,40.0,900000\n"
               "3,1.6,0.40,nan,nan,40.0,900000\n");
    /* c: resumed after epoch 3 from the epoch-1 checkpoint: epochs 2 and 3 repeat, last wins;
     * the same model and policy as a, so both labels get their file name */
    write_file("c.csv", "# unknown: key\n# policy: 2\n# model: cifar_resnet8\n" HEADER "1,2.0,0.25,1.9,0.30,40,1\n"
                        "2,1.8,0.35,1.7,0.38,40,1\n"
                        "3,1.6,0.45,1.5,0.42,40,1\n"
                        "# resumed\n" HEADER "2,1.7,0.40,1.6,0.41,40,1\n"
                        "3,1.3,0.65,1.4,0.55,40,1\n");
    /* d: no metadata at all, a single epoch */
    write_file("d.csv", HEADER "1,2.3,0.1,2.31,0.1,40,1\n");

    int status = TEST_RUN(tests, only);
    CHECK(test_remove_dir(dir) == 0, "cleanup");
    if (!only) printf("report tests passed\n");
    return status;
}
