/* report.c - `poolprop report RUN.csv [RUN.csv ...] -o CHART.svg [--title TEXT]`: reads the
 * CSV logs that `poolprop train` writes and draws every run's loss and accuracy curves
 * (train solid, validation dashed, one color per run) on one self-contained SVG 1.1 chart.
 *
 * The log (one file per run):
 *     # key: value                 metadata, any order; `model` and `policy` name the run
 *     epoch,train_loss,train_accuracy,val_loss,val_accuracy,seconds,peak_bytes
 *     1,2.1034,0.2312,1.9876,0.2800,41.2,1067192      one row per epoch
 * Values may be nan or inf (not drawn; nan validation means no validation set); finite
 * accuracies must be fractions in [0, 1]; a repeated epoch (a resumed run) keeps its last row.
 *
 * Invariant: every input is read and checked before anything is written, and the chart is
 * written to a temporary file next to the output and renamed over it, so a failure never
 * leaves a half-written or partly updated chart. */
#define _POSIX_C_SOURCE 200809L
#include "report.h"

#include "options.h"
#include "outfile.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define REPORT_LOG_MAX (64ULL << 20) /* bytes of one log; train's logs are a row per epoch */
#define REPORT_LINE_MAX 65536

enum {
    COL_EPOCH,
    COL_TRAIN_LOSS,
    COL_TRAIN_ACC,
    COL_VAL_LOSS,
    COL_VAL_ACC,
    COL_SECONDS,
    COL_PEAK,
    NCOLS
};

static const char header_line[] = "epoch,train_loss,train_accuracy,val_loss,val_accuracy,seconds,peak_bytes";
static const char *const col_names[NCOLS] = {"epoch",        "train_loss", "train_accuracy", "val_loss",
                                             "val_accuracy", "seconds",    "peak_bytes"};

/* The four curves of a run: which column, which panel (0 loss, 1 accuracy), dashed or not. */
static const struct {
    int col, panel, dashed;
    const char *name;
} series[4] = {
    {COL_TRAIN_LOSS, 0, 0, "train loss"},
    {COL_VAL_LOSS, 0, 1, "validation loss"},
    {COL_TRAIN_ACC, 1, 0, "train accuracy"},
    {COL_VAL_ACC, 1, 1, "validation accuracy"},
};

static const struct {
    const char *title, *axis;
} panels[2] = {{"Loss", "loss"}, {"Accuracy", "accuracy"}};

/* Tableau 10: distinguishable, also in print; runs past ten reuse the colors in order. */
static const char *const palette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                      "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
#define PALETTE_SIZE (sizeof palette / sizeof palette[0])

/* Layout of the chart, in SVG user units (px). Two panels side by side, legend below. */
enum {
    CHART_W = 1000,
    PANEL_W = 500,
    PLOT_LEFT = 80,   /* plot area x offset inside its panel (room for tick labels, axis title) */
    PLOT_RIGHT = 480, /* plot area right edge inside its panel */
    PLOT_TOP = 70,
    PLOT_BOTTOM = 370,
    LEGEND_TOP = 440,
    LEGEND_ROW = 22,
    MARKER_MAX_POINTS = 15, /* curves with at most this many points also get a marker per point */
    LEGEND_MAX_CHARS = 120,
};

typedef struct {
    double v[NCOLS];
    size_t seq; /* position in the file: of rows repeating an epoch, the last wins */
} row;

typedef struct {
    const char *path;
    char *model, *policy; /* from the metadata, or NULL */
    char *label;
    row *rows; /* sorted by epoch, one per epoch */
    size_t count, cap;
} run;

typedef struct {
    double lo, hi, step;
    int ticks;
    int decimals; /* digits after the point in tick labels; -1: %g */
} axis;

static char *format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *format(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* A value that can be placed on a chart axis (nan, inf and absurd magnitudes cannot). */
static int drawable(double v) { return isfinite(v) && fabs(v) < 1e100; }

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'; }

/* Trims s in place; returns the first non-space character. */
static char *trim(char *s)
{
    while (is_space(*s)) s++;
    size_t n = strlen(s);
    while (n > 0 && is_space(s[n - 1])) s[--n] = '\0';
    return s;
}

/* "# key: value": remembers model and policy (the last one given wins); ignores the rest. */
static int parse_meta(run *r, char *text)
{
    char *colon = strchr(text, ':');
    if (!colon) return 0;
    *colon = '\0';
    char *key = trim(text), *value = trim(colon + 1);
    char **slot = strcmp(key, "model") == 0 ? &r->model : strcmp(key, "policy") == 0 ? &r->policy : NULL;
    if (!slot || !*value) return 0;
    char *copy = strdup(value);
    if (!copy) return cli_fail("out of memory");
    free(*slot);
    *slot = copy;
    return 0;
}

/* A whole field as a decimal number (strtod's syntax without its hexadecimal form, so nan
 * and inf too; surrounding spaces ok). */
static int parse_number(const char *text, double *out)
{
    while (is_space(*text)) text++;
    if (!*text) return 1;
    const char *digits = text + (*text == '+' || *text == '-');
    if (digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X')) return 1;
    char *end;
    *out = strtod(text, &end); /* out of range gives +-HUGE_VAL or a tiny value: both fine */
    if (end == text) return 1;
    while (is_space(*end)) end++;
    return *end != '\0';
}

/* One data row: exactly NCOLS numbers; the epoch a whole number; accuracies in [0, 1]. */
static int parse_row(run *r, char *s, long line)
{
    int n = 1;
    for (const char *p = s; *p; p++) n += *p == ',';
    if (n != NCOLS) return cli_fail("%s:%ld: expected %d fields (%s), got %d", r->path, line, NCOLS, header_line, n);
    row w;
    char *field = s;
    for (int c = 0; c < NCOLS; c++) {
        char *comma = strchr(field, ',');
        if (comma) *comma = '\0';
        if (parse_number(field, &w.v[c]))
            return cli_fail("%s:%ld: field %d (%s): '%.40s' is not a number", r->path, line, c + 1, col_names[c],
                            trim(field));
        if (c == COL_EPOCH && !(w.v[c] >= 0 && w.v[c] <= 1e9 && w.v[c] == floor(w.v[c])))
            return cli_fail("%s:%ld: field 1 (epoch): '%.40s' is not a whole number >= 0", r->path, line, trim(field));
        if ((c == COL_TRAIN_ACC || c == COL_VAL_ACC) && isfinite(w.v[c]) && (w.v[c] < 0 || w.v[c] > 1))
            return cli_fail("%s:%ld: field %d (%s): %g is outside [0, 1] (accuracy is a fraction, not a percentage)",
                            r->path, line, c + 1, col_names[c], w.v[c]);
        field = comma ? comma + 1 : field;
    }
    w.seq = r->count;
    if (r->count == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 64;
        row *rows = realloc(r->rows, cap * sizeof *rows);
        if (!rows) return cli_fail("out of memory");
        r->rows = rows, r->cap = cap;
    }
    r->rows[r->count++] = w;
    return 0;
}

static int by_epoch(const void *a, const void *b)
{
    const row *p = a, *q = b;
    double x = p->v[COL_EPOCH], y = q->v[COL_EPOCH];
    if (x != y) return (x > y) - (x < y);
    return (p->seq > q->seq) - (p->seq < q->seq);
}

/* Sorts the rows by epoch and keeps the last row of each epoch (a resumed run repeats
 * epochs): n log n in the number of rows. */
static void sort_rows(run *r)
{
    qsort(r->rows, r->count, sizeof *r->rows, by_epoch);
    size_t kept = 0;
    for (size_t i = 0; i < r->count; i++) {
        if (kept > 0 && r->rows[kept - 1].v[COL_EPOCH] == r->rows[i].v[COL_EPOCH]) kept--;
        r->rows[kept++] = r->rows[i];
    }
    r->count = kept;
}

/* Reads one line (with its '\n', if any) into buf, NUL-terminated: its length, 0 at the end
 * of the file, -1 when the line does not fit in cap - 1 bytes (nothing more is read). */
static long read_line(FILE *f, char *buf, size_t cap)
{
    size_t n = 0;
    int c;
    while ((c = getc(f)) != EOF) {
        if (n + 1 >= cap) return -1;
        buf[n++] = (char)c;
        if (c == '\n') break;
    }
    buf[n] = '\0';
    return (long)n;
}

/* Reads and checks one log, at most REPORT_LOG_MAX bytes in lines of at most REPORT_LINE_MAX
 * (a stream such as /dev/zero is refused at its first overlong line). Errors name the file
 * and line. */
static int read_run(run *r)
{
    FILE *f = fopen(r->path, "r");
    if (!f) return cli_fail("cannot open %s: %s", r->path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode) && (unsigned long long)sb.st_size > REPORT_LOG_MAX) {
        fclose(f);
        return cli_fail("%s: %lld bytes, more than the limit of %llu bytes for a training log", r->path,
                        (long long)sb.st_size, (unsigned long long)REPORT_LOG_MAX);
    }
    char *buf = malloc(REPORT_LINE_MAX);
    if (!buf) {
        fclose(f);
        return cli_fail("out of memory");
    }
    long len;
    unsigned long long total = 0;
    long line = 0;
    int have_header = 0, rc = 0;
    errno = 0;
    while (!rc && (len = read_line(f, buf, REPORT_LINE_MAX)) != 0) {
        line++;
        if (len < 0) {
            rc = cli_fail("%s:%ld: a line longer than the limit of %d bytes (not a training log)", r->path, line,
                          REPORT_LINE_MAX - 1);
            break;
        }
        total += (unsigned long long)len;
        if (total > REPORT_LOG_MAX) {
            rc = cli_fail("%s: more than the limit of %llu bytes for a training log", r->path,
                          (unsigned long long)REPORT_LOG_MAX);
            break;
        }
        if (memchr(buf, '\0', (size_t)len)) {
            rc = cli_fail("%s:%ld: contains a NUL byte (not a text file)", r->path, line);
            break;
        }
        char *s = buf;
        if (line == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0) s += 3; /* a UTF-8 byte order mark */
        s = trim(s);
        if (!*s) continue;
        if (*s == '#')
            rc = parse_meta(r, s + 1);
        else if (strcmp(s, header_line) == 0)
            have_header = 1; /* again after rows (a resumed run's log): harmless */
        else if (!have_header)
            rc = cli_fail("%s:%ld: expected the header line '%s', got '%.60s'", r->path, line, header_line, s);
        else
            rc = parse_row(r, s, line);
    }
    if (!rc && ferror(f)) rc = cli_fail("cannot read %s: %s", r->path, strerror(errno ? errno : EIO));
    free(buf);
    fclose(f);
    if (!rc && !have_header)
        rc = cli_fail("%s: no header line '%s' (is this a log written by poolprop train?)", r->path, header_line);
    if (!rc && r->count == 0) rc = cli_fail("%s: no rows after the header line (no epoch was logged)", r->path);
    if (!rc) sort_rows(r);
    return rc;
}

/* The label of a run at a level of detail: 0 model and policy only, 1 + file name,
 * 2 + path as given, 3 + the run's position. Runs lacking model or policy start at 1. */
static char *make_label(const run *r, int level, int index)
{
    const char *base = strrchr(r->path, '/') ? strrchr(r->path, '/') + 1 : r->path;
    const char *name = level >= 2 ? r->path : base;
    char *head = r->model && r->policy ? format("%s, policy %s", r->model, r->policy)
                 : r->model            ? format("%s", r->model)
                 : r->policy           ? format("policy %s", r->policy)
                                       : format("%s", "");
    if (!head) return NULL;
    char *label = !*head ? format("%s", name) : level == 0 ? format("%s", head) : format("%s (%s)", head, name);
    free(head);
    if (label && level >= 3) {
        char *numbered = format("%s #%d", label, index + 1);
        free(label);
        label = numbered;
    }
    return label;
}

/* Labels every run "<model>, policy <policy>", adding the file name (then the path, then a
 * number) where model or policy is unknown or two runs would otherwise look the same. */
static int label_runs(run *runs, int n)
{
    int *level = calloc((size_t)n, sizeof *level), *bump = calloc((size_t)n, sizeof *bump);
    int rc = level && bump ? 0 : cli_fail("out of memory");
    for (int i = 0; !rc && i < n; i++) level[i] = runs[i].model && runs[i].policy ? 0 : 1;
    for (int pass = 0; !rc && pass < 4; pass++) {
        for (int i = 0; !rc && i < n; i++) {
            free(runs[i].label);
            runs[i].label = make_label(&runs[i], level[i], i);
            if (!runs[i].label) rc = cli_fail("out of memory");
        }
        int changed = 0;
        for (int i = 0; !rc && i < n; i++) {
            bump[i] = 0;
            for (int j = 0; j < n; j++)
                if (j != i && strcmp(runs[i].label, runs[j].label) == 0) bump[i] = 1;
        }
        for (int i = 0; !rc && i < n; i++)
            if (bump[i] && level[i] < 3) level[i]++, changed = 1;
        if (!changed) break;
    }
    free(level), free(bump);
    return rc;
}

/* The "nice" number (1, 2 or 5 times a power of ten) nearest to x > 0. */
static double nice_number(double x)
{
    double p = pow(10, floor(log10(x))), f = x / p;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * p;
}

/* An axis covering [lo, hi] (lo < hi) with about 4..9 round ticks, ending on ticks. */
static axis make_axis(double lo, double hi, int whole_numbers)
{
    axis a;
    a.step = nice_number((hi - lo) / 5);
    if (whole_numbers && a.step < 1) a.step = 1;
    a.lo = floor(lo / a.step) * a.step;
    a.hi = ceil(hi / a.step) * a.step;
    if (!(a.hi > a.lo)) a.hi = a.lo + a.step;
    a.ticks = (int)floor((a.hi - a.lo) / a.step + 0.5) + 1;
    double biggest = fmax(fabs(a.lo), fabs(a.hi));
    a.decimals = a.step >= 1 ? 0 : (int)ceil(-log10(a.step) - 1e-9);
    if (a.decimals > 6 || biggest >= 1e7) a.decimals = -1;
    return a;
}

static void tick_text(char *buf, size_t len, const axis *a, int i)
{
    double v = a->lo + i * a->step;
    if (fabs(v) < a->step * 1e-6) v = 0; /* no "-0.0" */
    if (a->decimals < 0)
        snprintf(buf, len, "%g", v);
    else
        snprintf(buf, len, "%.*f", a->decimals, v);
}

/* Length of the UTF-8 sequence starting at s if it is a character XML allows, else 0. */
static int xml_char_len(const unsigned char *s)
{
    unsigned c = s[0];
    if (c < 0x80) return c >= 0x20 || c == '\t' || c == '\n' ? 1 : 0;
    int n = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    if (n == 3 && ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] > 0x9F))) return 0; /* overlong, surrogate */
    if (n == 3 && c == 0xEF && s[1] == 0xBF && s[2] >= 0xBE) return 0;                  /* U+FFFE, U+FFFF */
    if (n == 4 && ((c == 0xF0 && s[1] < 0x90) || (c == 0xF4 && s[1] > 0x8F))) return 0; /* overlong, > U+10FFFF */
    return n;
}

/* Characters in s as put_xml counts them. */
static size_t text_chars(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; n++) {
        int k = xml_char_len(p);
        p += k ? k : 1;
    }
    return n;
}

/* Writes s as XML text (also safe inside an attribute): & < > " ' escaped, control
 * characters and invalid UTF-8 replaced by '?'; at most max_chars characters, else cut
 * with "...". */
static void put_xml(FILE *f, const char *s, size_t max_chars)
{
    size_t total = text_chars(s), keep = total > max_chars ? max_chars - 3 : total;
    const unsigned char *p = (const unsigned char *)s;
    for (size_t n = 0; *p && n < keep; n++) {
        int k = xml_char_len(p);
        if (!k)
            fputc('?', f), p++;
        else if (*p == '&')
            fputs("&amp;", f), p++;
        else if (*p == '<')
            fputs("&lt;", f), p++;
        else if (*p == '>')
            fputs("&gt;", f), p++;
        else if (*p == '"')
            fputs("&quot;", f), p++;
        else if (*p == '\'')
            fputs("&apos;", f), p++;
        else
            fwrite(p, 1, (size_t)k, f), p += k;
    }
    if (keep < total) fputs("...", f);
}

/* Plot-area geometry of a panel. */
typedef struct {
    double x0, x1, y0, y1; /* left, right, top, bottom */
} frame;

static frame panel_frame(int panel)
{
    frame fr = {panel * PANEL_W + PLOT_LEFT, panel * PANEL_W + PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM};
    return fr;
}

static double map_x(const frame *fr, const axis *a, double v)
{
    return fr->x0 + (v - a->lo) / (a->hi - a->lo) * (fr->x1 - fr->x0);
}

static double map_y(const frame *fr, const axis *a, double v)
{
    return fr->y1 - (v - a->lo) / (a->hi - a->lo) * (fr->y1 - fr->y0);
}

/* Axes, grid, ticks, labels and titles of one panel. */
static void draw_panel(FILE *f, int panel, const axis *ax, const axis *ay)
{
    frame fr = panel_frame(panel);
    char text[64];
    fprintf(f, "<g font-size=\"11\" fill=\"#444444\">\n");
    for (int i = 0; i < ax->ticks; i++) {
        double x = map_x(&fr, ax, ax->lo + i * ax->step);
        tick_text(text, sizeof text, ax, i);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e6e6e6\"/>\n", x, fr.y0, x, fr.y1);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444444\"/>\n", x, fr.y1, x,
                fr.y1 + 5);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", x, fr.y1 + 18, text);
    }
    for (int i = 0; i < ay->ticks; i++) {
        double y = map_y(&fr, ay, ay->lo + i * ay->step);
        tick_text(text, sizeof text, ay, i);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e6e6e6\"/>\n", fr.x0, y, fr.x1, y);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444444\"/>\n", fr.x0 - 5, y, fr.x0,
                y);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", fr.x0 - 8, y + 4, text);
    }
    fprintf(f, "</g>\n");
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#444444\"/>\n", fr.x0,
            fr.y0, fr.x1 - fr.x0, fr.y1 - fr.y0);
    double mid_x = (fr.x0 + fr.x1) / 2, mid_y = (fr.y0 + fr.y1) / 2, title_x = panel * PANEL_W + 20;
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"15\" font-weight=\"bold\" text-anchor=\"middle\">%s</text>\n",
            mid_x, fr.y0 - 12, panels[panel].title);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\">epoch</text>\n", mid_x, fr.y1 + 40);
    fprintf(f,
            "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\" "
            "transform=\"rotate(-90 %.1f %.1f)\">%s</text>\n",
            title_x, mid_y, title_x, mid_y, panels[panel].axis);
}

/* One curve: a polyline through its drawable points (a marker alone for a single point). */
static void draw_series(FILE *f, const run *r, int s, const char *color, const axis *ax, const axis *ay)
{
    frame fr = panel_frame(series[s].panel);
    int col = series[s].col;
    size_t points = 0;
    for (size_t i = 0; i < r->count; i++) points += drawable(r->rows[i].v[col]);
    if (points == 0) return;
    if (points >= 2) {
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" stroke-linejoin=\"round\"%s points=\"",
                color, series[s].dashed ? " stroke-dasharray=\"7 4\"" : "");
        const char *sep = "";
        for (size_t i = 0; i < r->count; i++) {
            const double *v = r->rows[i].v;
            if (!drawable(v[col])) continue;
            fprintf(f, "%s%.1f,%.1f", sep, map_x(&fr, ax, v[COL_EPOCH]), map_y(&fr, ay, v[col]));
            sep = " ";
        }
        fprintf(f, "\"><title>");
        put_xml(f, r->label, 400);
        fprintf(f, ": %s</title></polyline>\n", series[s].name);
    }
    if (points > MARKER_MAX_POINTS) return;
    for (size_t i = 0; i < r->count; i++) {
        const double *v = r->rows[i].v;
        if (!drawable(v[col])) continue;
        /* train: filled dot; validation: hollow ring (so a lone point still tells which) */
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%s\" fill=\"%s\" stroke=\"%s\" stroke-width=\"1.5\"/>\n",
                map_x(&fr, ax, v[COL_EPOCH]), map_y(&fr, ay, v[col]), points == 1 ? "4" : "2.5",
                series[s].dashed ? "#ffffff" : color, color);
    }
}

static int legend_columns(const run *runs, int n)
{
    size_t longest = 0;
    for (int i = 0; i < n; i++)
        if (text_chars(runs[i].label) > longest) longest = text_chars(runs[i].label);
    return n > 1 && longest <= 52 ? 2 : 1; /* 52 characters of 12 px text fit in half the width */
}

static int chart_height(const run *runs, int n)
{
    int cols = legend_columns(runs, n), rows = (n + cols - 1) / cols;
    return LEGEND_TOP + LEGEND_ROW + 8 + rows * LEGEND_ROW;
}

/* The whole chart. Every drawable value lies inside the axes (they are made from the data). */
static void write_svg(FILE *f, const run *runs, int n, const char *title)
{
    /* x: epochs of all runs; loss from 0 (or below, if a loss is negative); accuracy from 0 */
    double e_lo = INFINITY, e_hi = -INFINITY, l_lo = 0, l_hi = -INFINITY, a_hi = 0;
    for (int k = 0; k < n; k++)
        for (size_t i = 0; i < runs[k].count; i++) {
            const double *v = runs[k].rows[i].v;
            e_lo = fmin(e_lo, v[COL_EPOCH]), e_hi = fmax(e_hi, v[COL_EPOCH]);
            for (int s = 0; s < 4; s++) {
                double x = v[series[s].col];
                if (!drawable(x)) continue;
                if (series[s].panel == 0)
                    l_lo = fmin(l_lo, x), l_hi = fmax(l_hi, x);
                else
                    a_hi = fmax(a_hi, x);
            }
        }
    if (!(e_hi > e_lo)) e_lo -= 1, e_hi += 1; /* one epoch: centre it */
    if (!(l_hi > l_lo)) l_hi = l_lo + 1;      /* no loss values, or all the same */
    if (!(a_hi > 0)) a_hi = 1;
    axis ax = make_axis(e_lo, e_hi, 1), ay[2] = {make_axis(l_lo, l_hi, 0), make_axis(0, a_hi, 0)};
    if (ay[1].hi > 1 && a_hi <= 1) ay[1] = make_axis(0, 1, 0);

    int height = chart_height(runs, n);
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\">\n",
            CHART_W, height, CHART_W, height);
    fprintf(f, "<title>");
    put_xml(f, title, 1000);
    fprintf(f, "</title>\n<desc>Written by poolprop report: loss and accuracy per epoch of %d run%s.</desc>\n", n,
            n == 1 ? "" : "s");
    fprintf(f, "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n", CHART_W, height);
    fprintf(f, "<text x=\"%d\" y=\"32\" font-size=\"19\" font-weight=\"bold\" text-anchor=\"middle\">", CHART_W / 2);
    put_xml(f, title, 80);
    fprintf(f, "</text>\n");

    fprintf(f, "<defs>\n");
    for (int p = 0; p < 2; p++) {
        frame fr = panel_frame(p);
        fprintf(f, "<clipPath id=\"plot%d\"><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"/></clipPath>\n",
                p, fr.x0 - 6, fr.y0 - 6, fr.x1 - fr.x0 + 12, fr.y1 - fr.y0 + 12);
    }
    fprintf(f, "</defs>\n");
    for (int p = 0; p < 2; p++) {
        draw_panel(f, p, &ax, &ay[p]);
        fprintf(f, "<g clip-path=\"url(#plot%d)\">\n", p);
        for (int k = 0; k < n; k++)
            for (int s = 0; s < 4; s++)
                if (series[s].panel == p) draw_series(f, &runs[k], s, palette[k % PALETTE_SIZE], &ax, &ay[p]);
        fprintf(f, "</g>\n");
    }

    /* legend: the line styles, then one entry per run */
    int y = LEGEND_TOP, x = PLOT_LEFT;
    fprintf(f, "<g font-size=\"12\">\n");
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#444444\" stroke-width=\"2\"/>\n", x, y - 4,
            x + 30, y - 4);
    fprintf(f, "<text x=\"%d\" y=\"%d\" fill=\"#444444\">train</text>\n", x + 38, y);
    fprintf(f,
            "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#444444\" stroke-width=\"2\" "
            "stroke-dasharray=\"7 4\"/>\n",
            x + 100, y - 4, x + 130, y - 4);
    fprintf(f, "<text x=\"%d\" y=\"%d\" fill=\"#444444\">validation</text>\n", x + 138, y);
    int cols = legend_columns(runs, n), rows = (n + cols - 1) / cols;
    for (int k = 0; k < n; k++) {
        int ex = x + (k / rows) * (PANEL_W - PLOT_LEFT + 40), ey = y + LEGEND_ROW + 8 + (k % rows) * LEGEND_ROW;
        const char *color = palette[k % PALETTE_SIZE];
        fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"4\"/>\n", ex, ey - 4,
                ex + 30, ey - 4, color);
        fprintf(f, "<text x=\"%d\" y=\"%d\">", ex + 38, ey);
        put_xml(f, runs[k].label, cols == 2 ? 52 : LEGEND_MAX_CHARS);
        fprintf(f, "</text>\n");
    }
    fprintf(f, "</g>\n</svg>\n");
}

/* Writes the chart to a temporary file in out's folder, then renames it to out (outfile.h). */
static int write_chart(const char *out, const run *runs, int n, const char *title)
{
    outfile o;
    if (outfile_open(&o, out)) return 1;
    write_svg(o.f, runs, n, title);
    return outfile_commit(&o);
}

static void print_accuracy(double v)
{
    if (isfinite(v))
        printf("%.4f", v);
    else
        printf("n/a");
}

static const char report_usage[] =
    "usage: poolprop report RUN.csv [RUN.csv ...] -o CHART.svg [--title TEXT]\n"
    "  Draw the loss and accuracy curves of several runs (CSV logs of poolprop train) on\n"
    "  one SVG chart (train solid, validation dashed, one color per run).\n";

int report_main(int argc, char **argv)
{
    const char *out = NULL, *title = NULL;
    char **files = calloc((size_t)argc + 1, sizeof *files);
    if (!files) return cli_fail("out of memory");
    int n = 0, rc = 0, only_files = 0;
    for (int i = 0; !rc && i < argc; i++) {
        const char *a = argv[i];
        if (!only_files && (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)) {
            fputs(report_usage, stdout);
            free(files);
            return 0;
        }
        if (!only_files && strcmp(a, "--") == 0) {
            only_files = 1;
        } else if (!only_files && (strcmp(a, "-o") == 0 || strcmp(a, "--out") == 0 || strcmp(a, "--title") == 0)) {
            const char **slot = a[2] == 't' ? &title : &out;
            if (*slot)
                rc = cli_fail("option '%s' given twice", a);
            else if (i + 1 >= argc)
                rc = cli_fail("option '%s' needs a value", a);
            else if (!*argv[i + 1] && slot == &out)
                rc = cli_fail("option '%s': empty output path", a);
            else
                *slot = argv[++i];
        } else if (!only_files && a[0] == '-' && a[1]) {
            rc = cli_fail("unknown option '%s' (see poolprop report --help)", a);
        } else {
            files[n++] = argv[i];
        }
    }
    if (!rc && n == 0) rc = cli_fail("no input files (usage: poolprop report RUN.csv [RUN.csv ...] -o CHART.svg)");
    if (!rc && !out) rc = cli_fail("missing -o CHART.svg (where to write the chart)");
    run *runs = rc ? NULL : calloc((size_t)n, sizeof *runs);
    if (!rc && !runs) rc = cli_fail("out of memory");
    for (int k = 0; !rc && k < n; k++) {
        runs[k].path = files[k];
        rc = read_run(&runs[k]);
    }
    struct stat so, si;
    for (int k = 0; !rc && k < n; k++)
        if (stat(out, &so) == 0 && stat(files[k], &si) == 0 && so.st_dev == si.st_dev && so.st_ino == si.st_ino)
            rc = cli_fail("-o %s is one of the input logs; refusing to overwrite it", out);
    if (!rc) rc = label_runs(runs, n);
    if (!rc) rc = write_chart(out, runs, n, title ? title : "poolprop training runs");
    for (int k = 0; !rc && k < n; k++) {
        const run *r = &runs[k];
        size_t not_drawn = 0;
        for (size_t i = 0; i < r->count; i++)
            for (int s = 0; s < 4; s++) {
                double v = r->rows[i].v[series[s].col];
                not_drawn += !drawable(v) && !(series[s].dashed && isnan(v)); /* nan validation: none */
            }
        const double *first = r->rows[0].v, *last = r->rows[r->count - 1].v;
        printf("%s: %zu epoch%s", r->label, r->count, r->count == 1 ? "" : "s");
        if (first[COL_EPOCH] != 1 || last[COL_EPOCH] != (double)r->count)
            printf(" (%.0f..%.0f)", first[COL_EPOCH], last[COL_EPOCH]);
        printf(", final train accuracy ");
        print_accuracy(last[COL_TRAIN_ACC]);
        printf(", val accuracy ");
        print_accuracy(last[COL_VAL_ACC]);
        if (not_drawn) printf(", %zu nan/inf value%s not drawn", not_drawn, not_drawn == 1 ? "" : "s");
        printf("  [%s]\n", r->path);
    }
    if (!rc) printf("wrote %s (%d run%s)\n", out, n, n == 1 ? "" : "s");
    for (int k = 0; runs && k < n; k++)
        free(runs[k].model), free(runs[k].policy), free(runs[k].label), free(runs[k].rows);
    free(runs);
    free(files);
    return rc;
}
