/* npy.c - the poolprop command's NumPy .npy reader and writer (format and limits in npy.h).
 *
 * A file is: "\x93NUMPY" | major | minor | header length (u16 LE for 1.0, u32 LE for 2.0
 * and 3.0) | header text (a Python dict literal: 'descr', 'fortran_order', 'shape') |
 * data, little-endian here, exactly product(shape) * itemsize bytes, nothing after.
 * The header is parsed as a small subset of Python literals (strings, True/False, tuples
 * of non-negative integers), never evaluated. Every error message starts with the path. */
#include "npy.h"

#include "options.h"
#include "outfile.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Returns a failed status from the enclosing function. */
#define TRY(expr)                                     \
    do {                                              \
        pp_status try_status_ = (expr);               \
        if (try_status_ != PP_OK) return try_status_; \
    } while (0)

/* Formats the message into err and returns status (the reader's errors). */
static pp_status fail(char *err, size_t err_len, pp_status status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static pp_status fail(char *err, size_t err_len, pp_status status, const char *fmt, ...)
{
    if (err && err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return status;
}

static const char npy_magic[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};
enum {
    max_header_len = 1 << 20
}; /* a header longer than this is not a .npy we wrote or expect */

typedef struct header {
    char descr[64];
    int fortran_order;
    int rank;
    size_t shape[NPY_MAX_RANK];
    size_t count;       /* product of shape */
    uint64_t file_size; /* 0 when the file is not a regular file */
    int have_size;
} header;

/* ---- dtype descriptions for messages ---- */

static void describe_descr(const char *descr, char *buf, size_t len)
{
    const char *order = "";
    if (descr[0] == '>') order = "big-endian ";
    const char *kind = NULL;
    int bits_scale = 8;
    if (descr[0] && descr[1]) {
        switch (descr[1]) {
        case 'f': kind = "float"; break;
        case 'i': kind = "int"; break;
        case 'u': kind = "uint"; break;
        case 'c': kind = "complex"; break;
        case 'b':
            kind = "bool";
            bits_scale = 0;
            break;
        case 'U':
            kind = "unicode string";
            bits_scale = 0;
            break;
        case 'S':
            kind = "byte string";
            bits_scale = 0;
            break;
        case 'O':
            kind = "Python object";
            bits_scale = 0;
            break;
        case 'V':
            kind = "void/structured";
            bits_scale = 0;
            break;
        case 'M':
            kind = "datetime64";
            bits_scale = 0;
            break;
        case 'm':
            kind = "timedelta64";
            bits_scale = 0;
            break;
        }
    }
    if (!kind) {
        snprintf(buf, len, "an unknown dtype");
        return;
    }
    /* The item size in bytes, only when it is a plausible one: a long run of digits would
     * overflow strtol (clamped to LONG_MAX) and then the multiplication. */
    char *end = NULL;
    errno = 0;
    long size = strtol(descr + 2, &end, 10);
    if (bits_scale && errno == 0 && end && end != descr + 2 && *end == '\0' && size > 0 && size <= 1024)
        snprintf(buf, len, "%s%s%ld", order, kind, size * bits_scale);
    else
        snprintf(buf, len, "%s%s", order, kind);
}

static void format_shape(const size_t *shape, int rank, char *buf, size_t len)
{
    size_t n = 0;
    n += (size_t)snprintf(buf + n, len - n, "(");
    for (int i = 0; i < rank && n < len; i++) n += (size_t)snprintf(buf + n, len - n, i ? ", %zu" : "%zu", shape[i]);
    if (n < len) n += (size_t)snprintf(buf + n, len - n, rank == 1 ? ",)" : ")");
}

/* ---- header dict parser ---- */

typedef struct parser {
    const char *s;
    size_t pos, len;
    const char *err; /* static text of the first error */
} parser;

static void skip_ws(parser *p)
{
    while (p->pos < p->len &&
           (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' || p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
        p->pos++;
}

static int peek(parser *p)
{
    skip_ws(p);
    return p->pos < p->len ? (unsigned char)p->s[p->pos] : -1;
}

static int expect(parser *p, char c, const char *err)
{
    if (peek(p) != c) {
        p->err = err;
        return 0;
    }
    p->pos++;
    return 1;
}

/* A quoted Python string without escapes (NumPy writes none). */
static int parse_string(parser *p, char *out, size_t out_len)
{
    int q = peek(p);
    if (q != '\'' && q != '"') {
        p->err = "expected a quoted string";
        return 0;
    }
    p->pos++;
    size_t n = 0;
    while (p->pos < p->len && p->s[p->pos] != q) {
        if (p->s[p->pos] == '\\') {
            p->err = "escape sequences in strings are not supported";
            return 0;
        }
        if (n + 1 >= out_len) {
            p->err = "string is too long";
            return 0;
        }
        out[n++] = p->s[p->pos++];
    }
    if (p->pos >= p->len) {
        p->err = "unterminated string";
        return 0;
    }
    p->pos++;
    out[n] = '\0';
    return 1;
}

static int parse_word(parser *p, const char *word)
{
    size_t n = strlen(word);
    skip_ws(p);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0) return 0;
    char next = p->pos + n < p->len ? p->s[p->pos + n] : ' ';
    if ((next >= 'a' && next <= 'z') || (next >= 'A' && next <= 'Z') || (next >= '0' && next <= '9') || next == '_')
        return 0;
    p->pos += n;
    return 1;
}

static int parse_bool(parser *p, int *out)
{
    if (parse_word(p, "True"))
        *out = 1;
    else if (parse_word(p, "False"))
        *out = 0;
    else {
        p->err = "'fortran_order' must be True or False";
        return 0;
    }
    return 1;
}

static int parse_dim(parser *p, size_t *out)
{
    int c = peek(p);
    if (c == '-') {
        p->err = "negative dimension in 'shape'";
        return 0;
    }
    if (c < '0' || c > '9') {
        p->err = "'shape' must be a tuple of non-negative integers";
        return 0;
    }
    uint64_t v = 0;
    while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
        unsigned d = (unsigned)(p->s[p->pos] - '0');
        if (v > (UINT64_MAX - d) / 10 || v * 10 + d > SIZE_MAX) {
            p->err = "a dimension in 'shape' is too large";
            return 0;
        }
        v = v * 10 + d;
        p->pos++;
    }
    if (p->pos < p->len && p->s[p->pos] == 'L') p->pos++; /* Python 2 long literal */
    *out = (size_t)v;
    return 1;
}

/* "()", "(3,)", "(2, 3, 4)", "(2, 3, 4,)"; "(3)" is read as (3,) too. */
static int parse_shape(parser *p, header *h)
{
    if (peek(p) != '(') {
        p->err = "'shape' must be a tuple such as (2, 3)";
        return 0;
    }
    p->pos++;
    h->rank = 0;
    if (peek(p) == ')') {
        p->pos++;
        return 1;
    }
    for (;;) {
        if (h->rank == NPY_MAX_RANK) {
            p->err = "more dimensions than the supported maximum of 8";
            return 0;
        }
        if (!parse_dim(p, &h->shape[h->rank])) return 0;
        h->rank++;
        int c = peek(p);
        if (c == ')') {
            p->pos++;
            return 1;
        }
        if (c != ',') {
            p->err = "expected ',' or ')' in 'shape'";
            return 0;
        }
        p->pos++;
        if (peek(p) == ')') {
            p->pos++;
            return 1;
        }
    }
}

/* Parses the dict; on failure returns 0 with p->err set. */
static int parse_dict(parser *p, header *h)
{
    int have_descr = 0, have_fortran = 0, have_shape = 0;
    if (!expect(p, '{', "the header is not a Python dict literal (it does not start with '{')")) return 0;
    for (;;) {
        int c = peek(p);
        if (c == '}') {
            p->pos++;
            break;
        }
        char key[64];
        if (!parse_string(p, key, sizeof key)) {
            if (c == -1) p->err = "the header dict is not closed with '}'";
            return 0;
        }
        if (!expect(p, ':', "expected ':' after a key")) return 0;
        if (strcmp(key, "descr") == 0) {
            if (have_descr++) {
                p->err = "duplicate key 'descr'";
                return 0;
            }
            if (peek(p) == '[') {
                p->err = "structured dtypes (a list in 'descr') are not supported; expected '<f4'";
                return 0;
            }
            if (!parse_string(p, h->descr, sizeof h->descr)) return 0;
        } else if (strcmp(key, "fortran_order") == 0) {
            if (have_fortran++) {
                p->err = "duplicate key 'fortran_order'";
                return 0;
            }
            if (!parse_bool(p, &h->fortran_order)) return 0;
        } else if (strcmp(key, "shape") == 0) {
            if (have_shape++) {
                p->err = "duplicate key 'shape'";
                return 0;
            }
            if (!parse_shape(p, h)) return 0;
        } else {
            p->err = "unknown key in the header dict (expected only 'descr', 'fortran_order', 'shape')";
            return 0;
        }
        c = peek(p);
        if (c == ',') {
            p->pos++;
        } else if (c != '}') {
            p->err = c == -1 ? "the header dict is not closed with '}'" : "expected ',' or '}' after a value";
            return 0;
        }
    }
    skip_ws(p);
    while (p->pos < p->len && p->s[p->pos] == '\0') p->pos++; /* tolerate NUL padding */
    if (p->pos != p->len) {
        p->err = "unexpected text after the header dict";
        return 0;
    }
    if (!have_descr)
        p->err = "the header has no 'descr' key";
    else if (!have_fortran)
        p->err = "the header has no 'fortran_order' key";
    else if (!have_shape)
        p->err = "the header has no 'shape' key";
    return p->err == NULL;
}

/* ---- reading ---- */

static uint32_t get_le(const unsigned char *b, int n)
{
    uint32_t v = 0;
    for (int i = 0; i < n; i++) v |= (uint32_t)b[i] << (8 * i);
    return v;
}

/* Opens path and reads its preamble and header; on success *f is positioned at the data. */
static pp_status read_header(const char *path, FILE **fp, header *h, char *err, size_t err_len)
{
    memset(h, 0, sizeof *h);
    *fp = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return fail(err, err_len, PP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && S_ISDIR(sb.st_mode)) {
        fclose(f);
        return fail(err, err_len, PP_ERR_IO, "%s: cannot read: is a directory", path);
    }
    if (fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode)) {
        h->file_size = (uint64_t)sb.st_size;
        h->have_size = 1;
    }
    pp_status st = PP_OK;
    char *text = NULL;
    unsigned char pre[12];
    size_t got = fread(pre, 1, 10, f);
    if (got < 8 || memcmp(pre, npy_magic, 6) != 0) {
        st = fail(err, err_len, PP_ERR_PARSE, "%s: not a NumPy .npy file (the file does not start with \"\\x93NUMPY\")",
                  path);
        goto done;
    }
    int major = pre[6], minor = pre[7];
    if (!((major == 1 || major == 2 || major == 3) && minor == 0)) {
        st = fail(err, err_len, PP_ERR_PARSE, "%s: unsupported .npy format version %d.%d (supported: 1.0, 2.0, 3.0)",
                  path, major, minor);
        goto done;
    }
    int len_bytes = major == 1 ? 2 : 4;
    if (len_bytes == 4) got += fread(pre + 10, 1, 2, f);
    if (got < (size_t)(8 + len_bytes)) {
        st = fail(err, err_len, PP_ERR_PARSE, "%s: truncated .npy file: it ends inside the header length field", path);
        goto done;
    }
    uint32_t hlen = get_le(pre + 8, len_bytes);
    if (hlen > max_header_len) {
        st = fail(err, err_len, PP_ERR_PARSE, "%s: malformed .npy header: header length %u is implausibly large", path,
                  hlen);
        goto done;
    }
    text = malloc((size_t)hlen + 1);
    if (!text) {
        st = fail(err, err_len, PP_ERR_OUT_OF_MEMORY, "%s: out of memory reading the header", path);
        goto done;
    }
    got = fread(text, 1, hlen, f);
    if (got != hlen) {
        st = fail(err, err_len, PP_ERR_PARSE,
                  "%s: truncated .npy file: the header is declared as %u bytes but the file ends after %zu", path, hlen,
                  got);
        goto done;
    }
    text[hlen] = '\0';
    parser p = {text, 0, hlen, NULL};
    if (!parse_dict(&p, h)) {
        size_t show = hlen;
        while (show && (text[show - 1] == ' ' || text[show - 1] == '\n')) show--;
        if (show > 300) show = 300;
        st = fail(err, err_len, PP_ERR_PARSE, "%s: malformed .npy header: %s (at header offset %zu): %.*s", path, p.err,
                  p.pos, (int)show, text);
        goto done;
    }
    h->count = 1;
    for (int i = 0; i < h->rank; i++) {
        if (h->shape[i] == 0) {
            h->count = 0;
            break;
        }
    }
    for (int i = 0; i < h->rank && h->count; i++) {
        if (h->count > SIZE_MAX / 16 / h->shape[i]) {
            char shape[512];
            format_shape(h->shape, h->rank, shape, sizeof shape);
            st = fail(err, err_len, PP_ERR_PARSE, "%s: absurd shape %s: the element count overflows", path, shape);
            goto done;
        }
        h->count *= h->shape[i];
    }
done:
    free(text);
    if (st != PP_OK) {
        fclose(f);
        return st;
    }
    *fp = f;
    return PP_OK;
}

static int host_is_little_endian(void)
{
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

static void swap_bytes(void *data, size_t count, size_t size)
{
    unsigned char *p = data;
    for (size_t i = 0; i < count; i++, p += size)
        for (size_t a = 0, b = size - 1; a < b; a++, b--) {
            unsigned char t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
}

/* Reads exactly h->count * itemsize bytes of data into a new buffer, checking that the
 * file holds neither less nor more. */
static pp_status read_data(const char *path, FILE *f, const header *h, size_t itemsize, void **out, char *err,
                           size_t err_len)
{
    *out = NULL;
    char shape[512];
    format_shape(h->shape, h->rank, shape, sizeof shape);
    size_t need = h->count * itemsize; /* no overflow: count <= SIZE_MAX / 16 */
    long here = ftell(f);
    if (h->have_size && here >= 0) {
        uint64_t have = h->file_size - (uint64_t)here;
        if (have < need)
            return fail(err, err_len, PP_ERR_PARSE,
                        "%s: truncated data: shape %s needs %zu bytes of data, the file holds %llu", path, shape, need,
                        (unsigned long long)have);
        if (have > need)
            return fail(err, err_len, PP_ERR_PARSE,
                        "%s: %llu bytes of extra data after the array (shape %s needs %zu bytes, the file holds "
                        "%llu)",
                        path, (unsigned long long)(have - need), shape, need, (unsigned long long)have);
    }
    if ((uint64_t)need > NPY_MAX_DATA_BYTES) /* refused before anything is allocated or read */
        return fail(err, err_len, PP_ERR_PARSE,
                    "%s: shape %s declares %zu bytes of data, more than the limit of %llu bytes", path, shape, need,
                    (unsigned long long)NPY_MAX_DATA_BYTES);
    void *buf = malloc(need ? need : 1);
    if (!buf)
        return fail(err, err_len, PP_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes for shape %s", path, need,
                    shape);
    size_t got = need ? fread(buf, 1, need, f) : 0;
    if (got != need) {
        free(buf);
        if (ferror(f)) return fail(err, err_len, PP_ERR_IO, "%s: read error: %s", path, strerror(errno));
        return fail(err, err_len, PP_ERR_PARSE,
                    "%s: truncated data: shape %s needs %zu bytes of data, the file holds %zu", path, shape, need, got);
    }
    if (fgetc(f) != EOF) {
        free(buf);
        return fail(err, err_len, PP_ERR_PARSE, "%s: extra data after the array (shape %s needs %zu bytes)", path,
                    shape, need);
    }
    if (!host_is_little_endian()) swap_bytes(buf, h->count, itemsize);
    *out = buf;
    return PP_OK;
}

static pp_status check_descr(const char *path, const header *h, const char *const *accepted, int n_accepted,
                             const char *expected_text, char *err, size_t err_len)
{
    int ok = 0;
    for (int i = 0; i < n_accepted; i++) ok |= strcmp(h->descr, accepted[i]) == 0;
    if (!ok) {
        char found[64];
        describe_descr(h->descr, found, sizeof found);
        return fail(err, err_len, PP_ERR_PARSE, "%s: unsupported dtype '%s' (%s); expected %s", path, h->descr, found,
                    expected_text);
    }
    if (h->fortran_order)
        return fail(err, err_len, PP_ERR_PARSE,
                    "%s: the array is stored in Fortran (column-major) order; expected C order "
                    "(fortran_order: False; save np.ascontiguousarray(a))",
                    path);
    return PP_OK;
}

pp_status npy_read_f32(const char *path, int expected_rank, npy_array *out, char *err, size_t err_len)
{
    if (!out || !path) return fail(err, err_len, PP_ERR_INVALID_ARGUMENT, "npy_read_f32: NULL argument");
    memset(out, 0, sizeof *out);
    FILE *f;
    header h;
    TRY(read_header(path, &f, &h, err, err_len));
    static const char *const f32[] = {"<f4"};
    pp_status st = check_descr(path, &h, f32, 1, "'<f4' (little-endian float32)", err, err_len);
    if (st == PP_OK && expected_rank >= 0 && h.rank != expected_rank) {
        char shape[512];
        format_shape(h.shape, h.rank, shape, sizeof shape);
        st = fail(err, err_len, PP_ERR_PARSE, "%s: expected %d dimension%s, got %d (shape %s)", path, expected_rank,
                  expected_rank == 1 ? "" : "s", h.rank, shape);
    }
    void *data = NULL;
    if (st == PP_OK) st = read_data(path, f, &h, 4, &data, err, err_len);
    fclose(f);
    if (st != PP_OK) return st;
    out->rank = h.rank;
    memcpy(out->shape, h.shape, sizeof h.shape);
    out->count = h.count;
    out->data = data;
    return PP_OK;
}

void npy_array_free(npy_array *a)
{
    if (!a) return;
    free(a->data);
    memset(a, 0, sizeof *a);
}

pp_status npy_read_labels(const char *path, npy_labels *out, char *err, size_t err_len)
{
    if (!out || !path) return fail(err, err_len, PP_ERR_INVALID_ARGUMENT, "npy_read_labels: NULL argument");
    memset(out, 0, sizeof *out);
    FILE *f;
    header h;
    TRY(read_header(path, &f, &h, err, err_len));
    static const char *const ints[] = {"<i8", "<i4"};
    pp_status st = check_descr(path, &h, ints, 2, "'<i8' or '<i4' (little-endian int64 or int32 labels)", err, err_len);
    if (st == PP_OK && h.rank != 1) {
        char shape[512];
        format_shape(h.shape, h.rank, shape, sizeof shape);
        st = fail(err, err_len, PP_ERR_PARSE, "%s: expected 1 dimension (a vector of labels), got %d (shape %s)", path,
                  h.rank, shape);
    }
    size_t itemsize = strcmp(h.descr, "<i4") == 0 ? 4 : 8;
    void *raw = NULL;
    if (st == PP_OK) st = read_data(path, f, &h, itemsize, &raw, err, err_len);
    fclose(f);
    if (st != PP_OK) return st;
    int64_t *labels;
    if (itemsize == 8) {
        labels = raw;
    } else {
        labels = malloc(h.count ? h.count * sizeof *labels : 1);
        if (!labels) {
            free(raw);
            return fail(err, err_len, PP_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu labels", path, h.count);
        }
        const int32_t *src = raw;
        for (size_t i = 0; i < h.count; i++) labels[i] = src[i];
        free(raw);
    }
    out->count = h.count;
    out->data = labels;
    return PP_OK;
}

void npy_labels_free(npy_labels *l)
{
    if (!l) return;
    free(l->data);
    memset(l, 0, sizeof *l);
}

/* ---- writing ---- */

pp_status npy_encode_f32(const char *path, int rank, const size_t *shape, const float *data, unsigned char **out,
                         size_t *out_len, char *err, size_t err_len)
{
    *out = NULL;
    *out_len = 0;
    if (!path) return fail(err, err_len, PP_ERR_INVALID_ARGUMENT, "npy_encode_f32: NULL path");
    if (rank < 0 || rank > NPY_MAX_RANK || (rank > 0 && !shape))
        return fail(err, err_len, PP_ERR_INVALID_ARGUMENT, "%s: cannot write a rank-%d array (supported: 0..%d)", path,
                    rank, NPY_MAX_RANK);
    size_t count = 1;
    for (int i = 0; i < rank; i++)
        if (shape[i] == 0) count = 0;
    for (int i = 0; i < rank && count; i++) {
        if (count > SIZE_MAX / 16 / shape[i])
            return fail(err, err_len, PP_ERR_INVALID_ARGUMENT, "%s: the element count of the shape overflows", path);
        count *= shape[i];
    }
    if (count && !data)
        return fail(err, err_len, PP_ERR_INVALID_ARGUMENT, "%s: NULL data for %zu elements", path, count);

    char shape_text[512], dict[700];
    format_shape(shape, rank, shape_text, sizeof shape_text);
    int dict_len = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }", shape_text);
    /* Pad with spaces so that magic + version + length + header is a multiple of 64, the
     * last byte of the header being '\n' (what NumPy writes). */
    size_t hlen = (size_t)dict_len + 1;
    size_t total = 10 + hlen;
    hlen += (64 - total % 64) % 64;
    size_t bytes = count * 4;
    unsigned char *buf = malloc(10 + hlen + bytes);
    if (!buf) return fail(err, err_len, PP_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes to write", path, bytes);
    memcpy(buf, npy_magic, 6);
    buf[6] = 1;
    buf[7] = 0;
    buf[8] = (unsigned char)(hlen & 0xff);
    buf[9] = (unsigned char)(hlen >> 8);
    memcpy(buf + 10, dict, (size_t)dict_len);
    memset(buf + 10 + dict_len, ' ', hlen - (size_t)dict_len - 1);
    buf[10 + hlen - 1] = '\n';
    if (bytes) memcpy(buf + 10 + hlen, data, bytes);
    if (!host_is_little_endian()) swap_bytes(buf + 10 + hlen, count, 4);
    *out = buf;
    *out_len = 10 + hlen + bytes;
    return PP_OK;
}

pp_status npy_write_f32(const char *path, int rank, const size_t *shape, const float *data, char *err, size_t err_len)
{
    unsigned char *buf;
    size_t len;
    pp_status st = npy_encode_f32(path, rank, shape, data, &buf, &len, err, err_len);
    if (st != PP_OK) return st;
    int rc = outfile_write(path, buf, len);
    free(buf);
    return rc ? fail(err, err_len, PP_ERR_IO, "%s: not written (the reason is printed above)", path) : PP_OK;
}

/* ---- the command's helpers: errors printed ("poolprop: ...") ---- */

int npy_read_option(const char *role, const char *path, int rank, npy_array *out)
{
    char err[1024];
    if (!path) return cli_fail("missing --%s", role);
    if (npy_read_f32(path, rank, out, err, sizeof err) != PP_OK) return cli_fail("--%s: %s", role, err);
    return 0;
}

int npy_stage(outfile_set *set, const char *path, int rank, const size_t *shape, const float *data)
{
    char err[1024];
    unsigned char *buf;
    size_t len;
    if (npy_encode_f32(path, rank, shape, data, &buf, &len, err, sizeof err) != PP_OK) return cli_fail("%s", err);
    int rc = outfile_set_add(set, path, buf, len);
    free(buf);
    return rc;
}

int npy_stage_param(outfile_set *set, const char *dir, const pp_param_info *info, const float *data)
{
    char path[4300];
    if ((size_t)snprintf(path, sizeof path, "%s/%s.npy", dir, info->key) >= sizeof path)
        return cli_fail("%s: folder name too long", dir);
    return npy_stage(set, path, info->rank, info->shape, data);
}
