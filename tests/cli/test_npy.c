/* test_npy.c - the .npy reader and writer: round trips of ranks 0..4 (with a dimension
 * of size 1 and an empty array), headers as NumPy writes them in formats 1.0/2.0/3.0 and
 * in unusual but valid spellings, integer label files, and every kind of bad file giving
 * PP_ERR_PARSE / PP_ERR_IO with a message that starts with the path and says why. */
#include "npy.h"
#include "test_util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64];
static char err[1024]; /* the last error message */

#define CHECK_NPY(expr)                                                                           \
    do {                                                                                          \
        pp_status check_status_ = (expr);                                                         \
        CHECK(check_status_ == PP_OK, "%s: %s: %s", #expr, pp_status_string(check_status_), err); \
    } while (0)

static void path_of(const char *name, char *out, size_t len) { snprintf(out, len, "%s/%s", dir, name); }

static void write_raw(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "open %s for writing", path);
    CHECK(fwrite(data, 1, len, f) == len, "write %s", path);
    fclose(f);
}

/* Writes magic, version, header length (u16 or u32), the header text as given, then
 * data_len bytes of data. */
static void write_npy(const char *path, int major, int minor, const char *header, const void *data, size_t data_len)
{
    size_t hlen = strlen(header);
    unsigned char *buf = malloc(12 + hlen + data_len);
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (unsigned char)major;
    buf[7] = (unsigned char)minor;
    size_t n = 8;
    int len_bytes = major == 1 ? 2 : 4;
    for (int i = 0; i < len_bytes; i++) buf[n++] = (unsigned char)(hlen >> (8 * i));
    memcpy(buf + n, header, hlen);
    n += hlen;
    if (data_len) memcpy(buf + n, data, data_len);
    write_raw(path, buf, n + data_len);
    free(buf);
}

static void round_trip(const char *name, int rank, const size_t *shape)
{
    char path[512];
    path_of(name, path, sizeof path);
    size_t count = 1;
    for (int i = 0; i < rank; i++) count *= shape[i];
    float *data = malloc((count ? count : 1) * sizeof *data);
    for (size_t i = 0; i < count; i++) data[i] = (float)i * 0.25f - 3.0f + (i % 7 == 3 ? 1e-30f : 0.0f);
    CHECK_NPY(npy_write_f32(path, rank, shape, data, err, sizeof err));

    /* The file as NumPy writes it: magic, 1.0, header padded to a multiple of 64 with '\n' last. */
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL, "open %s", path);
    unsigned char pre[10];
    CHECK(fread(pre, 1, 10, f) == 10, "read preamble");
    CHECK(memcmp(pre, "\x93NUMPY\x01\x00", 8) == 0, "%s: magic and version 1.0", name);
    size_t hlen = pre[8] | (size_t)pre[9] << 8;
    CHECK((10 + hlen) % 64 == 0, "%s: header end at %zu is a multiple of 64", name, 10 + hlen);
    char *header = calloc(1, hlen + 1);
    CHECK(fread(header, 1, hlen, f) == hlen, "read header");
    fclose(f);
    CHECK(header[hlen - 1] == '\n', "%s: header ends with a newline", name);
    CHECK(strncmp(header, "{'descr': '<f4', 'fortran_order': False, 'shape': (", 51) == 0, "%s: header %s", name,
          header);

    npy_array a;
    CHECK_NPY(npy_read_f32(path, rank, &a, err, sizeof err));
    CHECK(a.rank == rank, "%s: rank %d", name, a.rank);
    for (int i = 0; i < rank; i++) CHECK(a.shape[i] == shape[i], "%s: dim %d", name, i);
    CHECK(a.count == count, "%s: count %zu vs %zu", name, a.count, count);
    CHECK(a.data != NULL, "%s: data is never NULL", name);
    CHECK(count == 0 || memcmp(a.data, data, count * sizeof *data) == 0, "%s: data bit-exact", name);
    char *nl = strchr(header, '\n');
    int end = (int)(nl - header);
    while (end > 0 && header[end - 1] == ' ') end--;
    printf("round trip %-8s rank %d, %zu elements: header \"%.*s\", data bit-exact\n", name, rank, count, end, header);
    npy_array_free(&a);
    free(header);
    free(data);
}

/* Reads path expecting failure with status and a message that starts with the path and
 * contains every given fragment. */
static void expect_failure(const char *what, const char *path, int rank, pp_status status, const char *frag1,
                           const char *frag2)
{
    npy_array a;
    err[0] = '\0';
    pp_status st = npy_read_f32(path, rank, &a, err, sizeof err);
    const char *msg = err;
    CHECK(st == status, "%s: status %s, expected %s (%s)", what, pp_status_string(st), pp_status_string(status), msg);
    CHECK(strncmp(msg, path, strlen(path)) == 0, "%s: message starts with the path: %s", what, msg);
    CHECK(strstr(msg, frag1) != NULL, "%s: message mentions \"%s\": %s", what, frag1, msg);
    CHECK(!frag2 || strstr(msg, frag2) != NULL, "%s: message mentions \"%s\": %s", what, frag2, msg);
    CHECK(a.data == NULL, "%s: no data on failure", what);
    const char *shown = strncmp(msg, dir, strlen(dir)) == 0 && msg[strlen(dir)] == '/' ? msg + strlen(dir) + 1 : msg;
    printf("bad file (%s): %s: %s\n", what, pp_status_string(st), shown);
}

static void bad(const char *name, const char *what, int major, int minor, const char *header, size_t data_len, int rank,
                const char *frag1, const char *frag2)
{
    char path[512];
    path_of(name, path, sizeof path);
    float data[64] = {0};
    CHECK(data_len <= sizeof data, "test data size");
    write_npy(path, major, minor, header, data, data_len);
    expect_failure(what, path, rank, PP_ERR_PARSE, frag1, frag2);
}

static const char *H23 = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }          \n";

static void round_trips(void)
{
    size_t s1[] = {5}, s2[] = {3, 1}, s3[] = {2, 3, 4}, s4[] = {2, 1, 3, 5}, s_empty[] = {0, 3}, s_big[] = {7, 300};
    round_trip("rank0", 0, NULL);
    round_trip("rank1", 1, s1);
    round_trip("rank2", 2, s2);
    round_trip("rank3", 3, s3);
    round_trip("rank4", 4, s4);
    round_trip("empty", 2, s_empty);
    round_trip("big", 2, s_big);
}

static void good_headers(void)
{
    float six[6] = {1, 2, 3, 4, 5, -6.5f};
    struct {
        const char *name;
        int major;
        const char *header;
    } good[] = {
        {"v1_numpy", 1, H23},
        {"v2", 2, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n"},
        {"v3", 3, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n"},
        {"key_order", 1, "{'shape': (2,3), 'fortran_order': False, 'descr': '<f4'}\n"},
        {"spaces", 1, "{ \"descr\" :'<f4' ,'fortran_order':False,'shape':( 2 , 3 , ) }   \n"},
        {"py2_long", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L), }\n"},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char path[512];
        path_of(good[i].name, path, sizeof path);
        write_npy(path, good[i].major, 0, good[i].header, six, sizeof six);
        npy_array a;
        CHECK_NPY(npy_read_f32(path, 2, &a, err, sizeof err));
        CHECK(a.rank == 2 && a.shape[0] == 2 && a.shape[1] == 3, "%s: shape", good[i].name);
        CHECK(memcmp(a.data, six, sizeof six) == 0, "%s: data", good[i].name);
        printf("read %-9s (format %d.0): shape (2, 3), data exact\n", good[i].name, good[i].major);
        npy_array_free(&a);
    }
    char path[512];
    path_of("anyrank", path, sizeof path);
    write_npy(path, 1, 0, H23, six, sizeof six);
    npy_array a;
    CHECK_NPY(npy_read_f32(path, -1, &a, err, sizeof err));
    CHECK(a.rank == 2, "expected_rank -1 accepts any rank");
    npy_array_free(&a);
}

static void labels(void)
{
    char path[512];
    int64_t l8[4] = {0, 9, 3, 1000000000000LL};
    path_of("labels8", path, sizeof path);
    write_npy(path, 1, 0, "{'descr': '<i8', 'fortran_order': False, 'shape': (4,), }\n", l8, sizeof l8);
    npy_labels l;
    CHECK_NPY(npy_read_labels(path, &l, err, sizeof err));
    CHECK(l.count == 4 && memcmp(l.data, l8, sizeof l8) == 0, "int64 labels");
    npy_labels_free(&l);
    int32_t l4[5] = {7, 0, -1, 2, 2147483647};
    path_of("labels4", path, sizeof path);
    write_npy(path, 1, 0, "{'descr': '<i4', 'fortran_order': False, 'shape': (5,), }\n", l4, sizeof l4);
    CHECK_NPY(npy_read_labels(path, &l, err, sizeof err));
    CHECK(l.count == 5, "int32 labels count");
    for (int i = 0; i < 5; i++) CHECK(l.data[i] == l4[i], "int32 label %d", i);
    npy_labels_free(&l);
    printf("labels: '<i8' x4 and '<i4' x5 (with -1 and INT32_MAX) read exactly into int64\n");
    path_of("labels_f4", path, sizeof path);
    write_npy(path, 1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }\n", l8, 16);
    CHECK(npy_read_labels(path, &l, err, sizeof err) == PP_ERR_PARSE && strstr(err, "'<i8' or '<i4'"),
          "float labels rejected: %s", err);
    printf("bad labels (float32): %s\n", err + strlen(dir) + 1);
    path_of("labels_2d", path, sizeof path);
    write_npy(path, 1, 0, "{'descr': '<i8', 'fortran_order': False, 'shape': (2, 2), }\n", l8, sizeof l8);
    CHECK(npy_read_labels(path, &l, err, sizeof err) == PP_ERR_PARSE && strstr(err, "expected 1 dimension"),
          "2-d labels rejected: %s", err);
    printf("bad labels (rank 2): %s\n", err + strlen(dir) + 1);
}

static void bad_files(void)
{
    char path[512];
    path_of("magic.npy", path, sizeof path);
    write_raw(path, "PK\x03\x04 this is a zip file, e.g. an .npz", 38);
    expect_failure("wrong magic", path, 2, PP_ERR_PARSE, "not a NumPy .npy file", NULL);
    path_of("empty_file.npy", path, sizeof path);
    write_raw(path, "", 0);
    expect_failure("empty file", path, 2, PP_ERR_PARSE, "not a NumPy .npy file", NULL);
    path_of("short_len.npy", path, sizeof path);
    write_raw(path, "\x93NUMPY\x01\x00\x40", 9);
    expect_failure("ends in the length field", path, 2, PP_ERR_PARSE, "truncated", "header length");
    path_of("missing.npy", path, sizeof path);
    expect_failure("nonexistent file", path, 2, PP_ERR_IO, "cannot open", "No such file");
    expect_failure("a directory", dir, 2, PP_ERR_IO, "is a directory", NULL);
}

static void bad_headers(void)
{
    bad("version.npy", "unsupported version", 4, 0, H23, 24, 2, "unsupported .npy format version 4.0", NULL);
    bad("version_minor.npy", "unsupported minor version", 1, 1, H23, 24, 2, "version 1.1", NULL);
    bad("f8.npy", "dtype <f8", 1, 0, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }\n", 48, 2,
        "'<f8' (float64)", "expected '<f4'");
    bad("be.npy", "dtype >f4", 1, 0, "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }\n", 24, 2,
        "'>f4' (big-endian float32)", "expected '<f4'");
    bad("i4.npy", "dtype <i4", 1, 0, "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }\n", 24, 2,
        "'<i4' (int32)", "expected '<f4'");
    bad("u1.npy", "dtype |u1", 1, 0, "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3), }\n", 6, 2,
        "'|u1' (uint8)", NULL);
    bad("structured.npy", "structured dtype", 1, 0,
        "{'descr': [('a', '<f4'), ('b', '<f4')], 'fortran_order': False, 'shape': (3,), }\n", 24, 1, "structured",
        NULL);
    bad("fortran.npy", "fortran order", 1, 0, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }\n", 24, 2,
        "Fortran (column-major) order", NULL);
    bad("rank.npy", "wrong rank", 1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 1), }\n", 24, 4,
        "expected 4 dimensions, got 3", "(2, 3, 1)");
    bad("trunc.npy", "truncated data", 1, 0, H23, 20, 2, "truncated data", "needs 24 bytes of data, the file holds 20");
    bad("extra.npy", "extra trailing data", 1, 0, H23, 28, 2, "4 bytes of extra data", NULL);
    bad("huge.npy", "huge shape, small file", 1, 0,
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,), }\n", 24, 1, "truncated data", NULL);
    bad("overflow.npy", "element count overflow", 1, 0,
        "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }\n", 24, 3,
        "absurd shape", "overflows");
    bad("bigdim.npy", "dimension beyond 64 bits", 1, 0,
        "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }\n", 24, 1, "too large", NULL);
    /* A dtype with a long run of digits: its size is not multiplied into a bit count (that
     * overflowed, undefined behaviour found by fuzzing, and printed "float-8"). */
    bad("longdtype.npy", "dtype with a 40-digit size", 1, 0,
        "{'descr': '<f9999999999999999999999999999999999999999', 'fortran_order': False, 'shape': (2, 3), }\n", 24, 2,
        "(float); expected '<f4'", NULL);
    bad("longdtype2.npy", "dtype with a 19-digit size", 1, 0,
        "{'descr': '<i9223372036854775807', 'fortran_order': False, 'shape': (2, 3), }\n", 24, 2,
        "(int); expected '<f4'", NULL);
    bad("negdim.npy", "negative dimension", 1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (-2, 3), }\n", 24,
        2, "negative dimension", NULL);
    bad("list.npy", "header not a dict", 1, 0, "['descr', '<f4']\n", 24, 2, "not a Python dict", NULL);
    bad("noshape.npy", "missing 'shape'", 1, 0, "{'descr': '<f4', 'fortran_order': False}\n", 24, 2, "no 'shape' key",
        NULL);
    bad("nodescr.npy", "missing 'descr'", 1, 0, "{'fortran_order': False, 'shape': (2, 3)}\n", 24, 2, "no 'descr' key",
        NULL);
    bad("unclosed.npy", "unclosed dict", 1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), \n", 24, 2,
        "not closed", NULL);
    bad("dup.npy", "duplicate key", 1, 0, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (6,)}\n",
        24, 1, "duplicate key 'descr'", NULL);
    bad("unknown.npy", "unknown key", 1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), 'extra': 1}\n", 24,
        1, "unknown key", NULL);
    bad("shape_list.npy", "shape not a tuple", 1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': [2, 3]}\n", 24,
        2, "'shape' must be a tuple", NULL);
    bad("fortran_str.npy", "fortran_order not a bool", 1, 0,
        "{'descr': '<f4', 'fortran_order': 'no', 'shape': (2, 3)}\n", 24, 2, "True or False", NULL);
    bad("garbage.npy", "text after the dict", 1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (6,)} x\n", 24,
        1, "unexpected text after", NULL);
    bad("rank9.npy", "rank 9", 1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,6), }\n", 24,
        -1, "maximum of 8", NULL);
    /* Header declared longer than the file. */
    char path[512];
    path_of("trunc_header.npy", path, sizeof path);
    unsigned char buf[10 + 20];
    memcpy(buf, "\x93NUMPY\x01\x00\x46\x00", 10);
    memcpy(buf + 10, "{'descr': '<f4', 'fo", 20);
    write_raw(path, buf, sizeof buf);
    expect_failure("truncated header", path, 2, PP_ERR_PARSE, "truncated", "declared as 70 bytes");
}

static void writer_errors(void)
{
    size_t shape[] = {2};
    float d[2] = {1, 2};
    const char *nodir = "/nonexistent_dir_pp/x.npy";
    pp_status st = npy_write_f32(nodir, 1, shape, d, err, sizeof err);
    CHECK(st == PP_ERR_IO && strncmp(err, nodir, strlen(nodir)) == 0, "write to a missing dir: %s", err);
    printf("write error: %s\n", err);
    char path[512];
    path_of("rank9w.npy", path, sizeof path);
    size_t s9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    CHECK(npy_write_f32(path, 9, s9, d, err, sizeof err) == PP_ERR_INVALID_ARGUMENT, "rank 9 write rejected");
    CHECK(access(path, F_OK) != 0, "nothing written for a rejected write");
}

static const test_case tests[] = {
    TEST_CASE(round_trips,
              "write and read ranks 0..4, an empty and a larger array: NumPy's header layout, data bit-exact"),
    TEST_CASE(good_headers, "formats 1.0/2.0/3.0 and unusual valid spellings read exactly; rank -1 accepts any rank"),
    TEST_CASE(labels, "'<i8' and '<i4' label files read exactly into int64; float and 2-d labels refused"),
    TEST_CASE(bad_files, "wrong magic, an empty file, a cut length field, a missing file, a directory"),
    TEST_CASE(bad_headers, "28 bad versions, dtypes, shapes and header texts: PP_ERR_PARSE naming the path and why"),
    TEST_CASE(writer_errors, "writes to a missing directory and of rank 9 fail, writing nothing"),
};

int main(int argc, char **argv)
{
    const char *only = test_select(&argc, argv);
    test_temp_dir(dir, sizeof dir, "test_npy");
    int status = TEST_RUN(tests, only);
    CHECK(test_remove_dir(dir) == 0, "remove %s", dir);
    if (!only) printf("test_npy: all checks passed\n");
    return status;
}
