/* test_data.c - the data sets of `poolprop train` (cli/data.c).
 *   synthetic: batches are a pure function of (seed, split, epoch, batch index) (two opens,
 *     one making images on 1 thread and one on 5, batches made out of order, a fresh open starting at a late epoch); epochs differ in
 *     order and each is a permutation; val is file order with a zero-padded last batch;
 *     values are finite and about N(0, 1); all ten classes appear; the classes are
 *     learnable (a nearest-class-mean classifier on colour- and shift-invariant features
 *     does far better than chance) but not by mean colour (the same classifier on the
 *     per-image mean colour stays near chance).
 *   cifar10: a small fake directory written here: decoding (planes, labels, normalisation
 *     bit-exact), the crop with zero padding and the flip (each augmented image matches
 *     exactly one (dy, dx, flip) of an independent reference), determinism, and every bad
 *     file (missing, truncated, 3072-byte records, label 11, empty) named in the error. */
#define _POSIX_C_SOURCE 200809L
#include "data.h"
#include "test_util.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char err[1024];
/* A temporary directory, and the fake cifar10 set in base/good. */
static char base[] = "/tmp/pp_test_data_XXXXXX", good[64];

static dataset *open_ok(const char *spec, const data_options *o)
{
    dataset *ds = NULL;
    int rc = data_open(spec, o, &ds, err, sizeof err);
    CHECK(rc == 0 && ds, "data_open(%s): %s", spec, err);
    return ds;
}

static void batch_ok(dataset *ds, data_split split, int epoch, int index, int bs, float *x, int32_t *l, int expect)
{
    int got = data_batch(ds, split, epoch, index, bs, x, l, err, sizeof err);
    CHECK(got == expect, "data_batch(split %d, epoch %d, batch %d): %d images, expected %d (%s)", (int)split, epoch,
          index, got, expect, got < 0 ? err : "");
}

/* ---------------------------------------------------------------- synthetic ---- */

static void synthetic_determinism(void)
{
    data_options o;
    data_options_init(&o);
    o.height = 16, o.width = 16, o.seed = 3, o.train_size = 200, o.val_size = 50;
    for (int aug = 0; aug <= 1; aug++) {
        o.augment = aug;
        /* a makes its images on one thread, b on five (which divide no batch evenly). */
        o.threads = 1;
        dataset *a = open_ok("synthetic", &o);
        o.threads = 5;
        dataset *b = open_ok("synthetic", &o);
        enum {
            BS = 16
        };
        size_t img = 3 * 16 * 16;
        float *xa = malloc(BS * img * sizeof(float)), *xb = malloc(BS * img * sizeof(float));
        int32_t la[BS], lb[BS];
        CHECK(data_batches(a, DATA_TRAIN, BS) == 12, "200 / 16 -> 12 train batches (last partial dropped), got %d",
              data_batches(a, DATA_TRAIN, BS));
        /* a: epochs 0..4 in order, then epoch 5 batch 7; b: straight to epoch 5 batch 7. */
        for (int e = 0; e < 5; e++)
            for (int i = 0; i < 12; i += 5) batch_ok(a, DATA_TRAIN, e, i, BS, xa, la, BS);
        batch_ok(a, DATA_TRAIN, 5, 7, BS, xa, la, BS);
        batch_ok(b, DATA_TRAIN, 5, 7, BS, xb, lb, BS);
        CHECK(memcmp(xa, xb, BS * img * sizeof(float)) == 0 && memcmp(la, lb, sizeof la) == 0,
              "epoch 5 batch 7 differs between a dataset that ran epochs 0..4 and a fresh one (augment %d)", aug);
        /* Going back to an earlier epoch and batch gives the same batch again. */
        batch_ok(a, DATA_TRAIN, 1, 2, BS, xa, la, BS);
        batch_ok(b, DATA_TRAIN, 1, 2, BS, xb, lb, BS);
        batch_ok(b, DATA_TRAIN, 9, 0, BS, xb, lb, BS);
        batch_ok(b, DATA_TRAIN, 1, 2, BS, xb, lb, BS);
        CHECK(memcmp(xa, xb, BS * img * sizeof(float)) == 0 && memcmp(la, lb, sizeof la) == 0,
              "epoch 1 batch 2 differs after visiting epoch 9 (augment %d)", aug);
        /* The last val batch holds 2 images, fewer than b's threads. */
        batch_ok(a, DATA_VAL, 0, 3, BS, xa, la, 2);
        batch_ok(b, DATA_VAL, 0, 3, BS, xb, lb, 2);
        CHECK(memcmp(xa, xb, BS * img * sizeof(float)) == 0 && memcmp(la, lb, sizeof la) == 0,
              "the last val batch differs between 1 and 5 threads (augment %d)", aug);
        printf("synthetic (augment %s): epoch 5 batch 7, epoch 1 batch 2 and the last val batch bit-identical across "
               "two opens (1 and 5 threads), in-order vs. fresh start vs. revisit\n",
               aug ? "on" : "off");
        free(xa), free(xb);
        data_close(a), data_close(b);
    }
    /* Another seed gives other images. */
    dataset *a = open_ok("synthetic", &o);
    o.seed = 4;
    dataset *b = open_ok("synthetic", &o);
    float xa[3 * 16 * 16], xb[3 * 16 * 16];
    int32_t la, lb;
    CHECK(data_sample(a, DATA_VAL, 0, xa, &la, err, sizeof err) == 0, "%s", err);
    CHECK(data_sample(b, DATA_VAL, 0, xb, &lb, err, sizeof err) == 0, "%s", err);
    CHECK(memcmp(xa, xb, sizeof xa) != 0, "seeds 3 and 4 give the same val image 0");
    printf("synthetic: seeds 3 and 4 give different images\n");
    data_close(a), data_close(b);
}

static void synthetic_order(void)
{
    data_options o;
    data_options_init(&o);
    o.height = 8, o.width = 8, o.train_size = 100, o.val_size = 23;
    dataset *ds = open_ok("synthetic", &o);
    /* Batch size 1: recover the order of each epoch as the index of the sample it shows. */
    enum {
        N = 100,
        IMG = 3 * 8 * 8
    };
    static float samples[N][IMG];
    int32_t lab;
    for (int i = 0; i < N; i++)
        CHECK(data_sample(ds, DATA_TRAIN, i, samples[i], &lab, err, sizeof err) == 0, "%s", err);
    int order[3][N];
    for (int e = 0; e < 3; e++) {
        int seen[N] = {0};
        for (int i = 0; i < N; i++) {
            float x[IMG];
            batch_ok(ds, DATA_TRAIN, e, i, 1, x, &lab, 1);
            int who = -1;
            for (int s = 0; s < N && who < 0; s++)
                if (memcmp(x, samples[s], sizeof x) == 0) who = s;
            CHECK(who >= 0, "epoch %d position %d is none of the train samples", e, i);
            CHECK(lab == who % 10, "epoch %d position %d: label %d, sample %d has label %d", e, i, lab, who, who % 10);
            order[e][i] = who;
            seen[who]++;
        }
        for (int s = 0; s < N; s++) CHECK(seen[s] == 1, "epoch %d shows sample %d %d times", e, s, seen[s]);
    }
    int same01 = 0, same02 = 0, ident = 0;
    for (int i = 0; i < N; i++)
        same01 += order[0][i] == order[1][i], same02 += order[0][i] == order[2][i], ident += order[0][i] == i;
    CHECK(same01 < 10 && same02 < 10 && ident < 10, "epochs not shuffled: %d/%d/%d fixed positions", same01, same02,
          ident);
    printf("synthetic: each of epochs 0, 1, 2 shows all 100 train samples once; positions equal between epochs "
           "0/1: %d, 0/2: %d, epoch 0/file order: %d (of 100)\n",
           same01, same02, ident);
    /* Val: file order, same in every epoch, last batch padded with zeros. */
    CHECK(data_batches(ds, DATA_VAL, 10) == 3, "23 val images in batches of 10 -> 3 batches");
    float x[10 * IMG];
    int32_t l[10];
    for (int e = 0; e < 2; e++)
        for (int b = 0; b < 3; b++) {
            int real = b < 2 ? 10 : 3;
            batch_ok(ds, DATA_VAL, e * 7, b, 10, x, l, real);
            for (int i = 0; i < 10; i++) {
                if (i < real) {
                    float s[IMG];
                    int32_t sl;
                    data_sample(ds, DATA_VAL, b * 10 + i, s, &sl, err, sizeof err);
                    CHECK(memcmp(s, x + i * IMG, sizeof s) == 0 && sl == l[i], "val batch %d slot %d is not sample %d",
                          b, i, b * 10 + i);
                } else {
                    for (int k = 0; k < IMG; k++) CHECK(x[i * IMG + k] == 0.0f, "padding slot %d not zero", i);
                    CHECK(l[i] == 0, "padding label %d", l[i]);
                }
            }
        }
    printf("synthetic: val batches of 10 over 23 images = file order in epochs 0 and 7, 10+10+3 real, "
           "7 zero slots with label 0\n");
    /* Out of range. */
    CHECK(data_batch(ds, DATA_TRAIN, 0, 10, 10, x, l, err, sizeof err) < 0 && strstr(err, "out of range"),
          "train batch 10 of 10 accepted");
    CHECK(data_batch(ds, DATA_TRAIN, -1, 0, 10, x, l, err, sizeof err) < 0, "negative epoch accepted");
    CHECK(data_batch(ds, DATA_TRAIN, 0, 0, 0, x, l, err, sizeof err) < 0, "batch size 0 accepted");
    data_close(ds);
}

static void synthetic_values(void)
{
    data_options o;
    data_options_init(&o); /* 32x32, default sizes 5000 / 1000 */
    dataset *ds = open_ok("synthetic", &o);
    CHECK(data_size(ds, DATA_TRAIN) == 5000 && data_size(ds, DATA_VAL) == 1000, "default sizes: %d / %d",
          data_size(ds, DATA_TRAIN), data_size(ds, DATA_VAL));
    enum {
        BS = 100,
        IMG = 3 * 32 * 32
    };
    float *x = malloc(BS * IMG * sizeof(float));
    int32_t l[BS];
    double sum[3] = {0}, sq[3] = {0};
    long count = 0, classes[DATA_CLASSES] = {0};
    float lo = INFINITY, hi = -INFINITY;
    for (int b = 0; b < data_batches(ds, DATA_VAL, BS); b++) {
        batch_ok(ds, DATA_VAL, 0, b, BS, x, l, BS);
        for (int i = 0; i < BS; i++) {
            CHECK(l[i] >= 0 && l[i] < DATA_CLASSES, "label %d", l[i]);
            classes[l[i]]++;
            for (int c = 0; c < 3; c++)
                for (int p = 0; p < 1024; p++) {
                    float v = x[(size_t)i * IMG + c * 1024 + p];
                    CHECK(isfinite(v), "non-finite value");
                    sum[c] += v, sq[c] += (double)v * v;
                    lo = v < lo ? v : lo, hi = v > hi ? v : hi;
                }
        }
        count += BS * 1024;
    }
    printf("synthetic 32x32 val, 1000 images: all finite, range [%.3f, %.3f]\n", lo, hi);
    for (int c = 0; c < 3; c++) {
        double m = sum[c] / count, sd = sqrt(sq[c] / count - m * m);
        printf("  channel %d: mean %+.4f std %.4f (want |mean| < 0.1, |std - 1| < 0.1)\n", c, m, sd);
        CHECK(fabs(m) < 0.1 && fabs(sd - 1) < 0.1, "channel %d not normalised", c);
    }
    printf("  images per class:");
    for (int k = 0; k < DATA_CLASSES; k++) {
        printf(" %ld", classes[k]);
        CHECK(classes[k] > 0, "class %d missing", k);
    }
    printf("\n");
    free(x);
    data_close(ds);

    /* Sizes: any >= 4, non-square. */
    o.height = 4, o.width = 4;
    data_close(open_ok("synthetic", &o));
    o.height = 12, o.width = 20;
    ds = open_ok("synthetic", &o);
    float y[3 * 12 * 20];
    int32_t lab;
    CHECK(data_batch(ds, DATA_TRAIN, 0, 0, 1, y, &lab, err, sizeof err) == 1, "12x20: %s", err);
    data_close(ds);
    o.height = 3, o.width = 32;
    ds = NULL;
    CHECK(data_open("synthetic", &o, &ds, err, sizeof err) != 0 && !ds && strstr(err, "3x32"), "3x32: %s", err);
    printf("synthetic: 4x4 and 12x20 open; 3x32 refused: %s\n", err);
}

/* Learnability: nearest class mean on features that ignore the colors and the position:
 * the image projected on its principal color axis and standardised, then its
 * autocorrelation at shifts -7..7 in each direction (sign- and shift-invariant). */
#define LS 16
#define LAG 7
#define NAC ((2 * LAG + 1) * (2 * LAG + 1))

static void feat_autocorr(const float *x, double *f)
{
    enum {
        P = LS * LS
    };
    double m[3] = {0}, C[3][3] = {{0}}, g[P];
    for (int c = 0; c < 3; c++) {
        for (int p = 0; p < P; p++) m[c] += x[c * P + p];
        m[c] /= P;
    }
    for (int p = 0; p < P; p++)
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 3; b++) C[a][b] += (x[a * P + p] - m[a]) * (x[b * P + p] - m[b]);
    double v[3] = {1, 1, 1};
    for (int it = 0; it < 50; it++) { /* power iteration: the principal color axis */
        double w[3] = {0}, n = 0;
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 3; b++) w[a] += C[a][b] * v[b];
        for (int a = 0; a < 3; a++) n += w[a] * w[a];
        n = sqrt(n) + 1e-30;
        for (int a = 0; a < 3; a++) v[a] = w[a] / n;
    }
    double s = 0, s2 = 0;
    for (int p = 0; p < P; p++) {
        g[p] = v[0] * (x[p] - m[0]) + v[1] * (x[P + p] - m[1]) + v[2] * (x[2 * P + p] - m[2]);
        s += g[p], s2 += g[p] * g[p];
    }
    double sd = sqrt(s2 / P - (s / P) * (s / P)) + 1e-12;
    for (int p = 0; p < P; p++) g[p] = (g[p] - s / P) / sd;
    int k = 0;
    for (int dy = -LAG; dy <= LAG; dy++)
        for (int dx = -LAG; dx <= LAG; dx++) {
            double acc = 0;
            for (int y = 0; y < LS; y++)
                for (int xx = 0; xx < LS; xx++) {
                    int y2 = y + dy, x2 = xx + dx;
                    if (y2 >= 0 && y2 < LS && x2 >= 0 && x2 < LS) acc += g[y * LS + xx] * g[y2 * LS + x2];
                }
            f[k++] = acc / P;
        }
}

static void feat_mean_color(const float *x, double *f)
{
    for (int c = 0; c < 3; c++) {
        double s = 0;
        for (int p = 0; p < LS * LS; p++) s += x[c * LS * LS + p];
        f[c] = s / (LS * LS);
    }
}

static void feat_pixels(const float *x, double *f)
{
    for (int i = 0; i < 3 * LS * LS; i++) f[i] = x[i];
}

static double nearest_class_mean(dataset *ds, int ntrain, int nval, void (*feat)(const float *, double *), int nf)
{
    double *mu = calloc((size_t)DATA_CLASSES * nf, sizeof *mu), *f = malloc(nf * sizeof *f);
    float x[3 * LS * LS];
    int32_t l;
    int count[DATA_CLASSES] = {0}, right = 0;
    for (int i = 0; i < ntrain; i++) {
        CHECK(data_sample(ds, DATA_TRAIN, i, x, &l, err, sizeof err) == 0, "%s", err);
        feat(x, f);
        for (int j = 0; j < nf; j++) mu[l * nf + j] += f[j];
        count[l]++;
    }
    for (int c = 0; c < DATA_CLASSES; c++)
        for (int j = 0; j < nf; j++) mu[c * nf + j] /= count[c];
    for (int i = 0; i < nval; i++) {
        CHECK(data_sample(ds, DATA_VAL, i, x, &l, err, sizeof err) == 0, "%s", err);
        feat(x, f);
        int best = 0;
        double bd = INFINITY;
        for (int c = 0; c < DATA_CLASSES; c++) {
            double d = 0;
            for (int j = 0; j < nf; j++) d += (f[j] - mu[c * nf + j]) * (f[j] - mu[c * nf + j]);
            if (d < bd) bd = d, best = c;
        }
        right += best == l;
    }
    free(mu), free(f);
    return (double)right / nval;
}

static void synthetic_learnable(void)
{
    data_options o;
    data_options_init(&o);
    o.height = LS, o.width = LS, o.train_size = 2000, o.val_size = 1000;
    dataset *ds = open_ok("synthetic", &o);
    double shape = nearest_class_mean(ds, 2000, 1000, feat_autocorr, NAC);
    double pixels = nearest_class_mean(ds, 2000, 1000, feat_pixels, 3 * LS * LS);
    double color = nearest_class_mean(ds, 2000, 1000, feat_mean_color, 3);
    printf("synthetic 16x16 learnability, nearest class mean trained on 2000, accuracy on 1000 val (chance 0.10):\n"
           "  shape features (principal-color projection, autocorrelation, 225 values): %.3f (want > 0.60)\n"
           "  raw pixels (768 values):                                                 %.3f\n"
           "  per-image mean color (3 values):                                         %.3f (want < 0.30)\n",
           shape, pixels, color);
    CHECK(shape > 0.60, "the classes are not separable by their shapes: %.3f", shape);
    CHECK(color < 0.30, "the mean color gives the class away: %.3f", color);
    data_close(ds);
}

/* ---------------------------------------------------------------- cifar10 ---- */

static const char *const cifar_files[6] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                           "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"};
static const int cifar_records[6] = {3, 2, 1, 2, 2, 3}; /* 10 train, 3 val */
static const float mean_ref[3] = {0.4914f, 0.4822f, 0.4465f}, std_ref[3] = {0.2470f, 0.2435f, 0.2616f};

/* The known pixel byte of (file, record, channel, y, x): a hash, so that no shift or flip of
 * an image reproduces it. */
static uint8_t pixel_byte(int file, int rec, int c, int y, int x)
{
    uint32_t h = (uint32_t)(file * 1000003 + rec * 7919 + c * 104729 + y * 1231 + x * 37 + 17);
    h ^= h >> 16, h *= 0x7feb352dU, h ^= h >> 15, h *= 0x846ca68bU, h ^= h >> 16;
    return (uint8_t)h;
}
static int label_of(int file, int rec) { return (file * 3 + rec) % 10; }

static void write_file(const char *dir, const char *name, const uint8_t *bytes, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(bytes, 1, n, f) == n && fclose(f) == 0, "writing %s", path);
}

/* Writes the fake data set; record_bytes 3073 normally, 3072 to leave the label out. */
static void write_cifar_file(const char *dir, int file, int record_bytes, int bad_label_record)
{
    int n = cifar_records[file];
    uint8_t *b = malloc((size_t)n * 3073), *p = b;
    for (int r = 0; r < n; r++) {
        if (record_bytes == 3073) *p++ = (uint8_t)(r == bad_label_record ? 11 : label_of(file, r));
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 32; y++)
                for (int x = 0; x < 32; x++) *p++ = pixel_byte(file, r, c, y, x);
    }
    write_file(dir, cifar_files[file], b, (size_t)(p - b));
    free(b);
}

static void write_cifar_dir(const char *dir)
{
    mkdir(dir, 0700);
    for (int f = 0; f < 6; f++) write_cifar_file(dir, f, 3073, -1);
}

static void remove_cifar_dir(const char *dir)
{
    char path[512];
    for (int f = 0; f < 6; f++) {
        snprintf(path, sizeof path, "%s/%s", dir, cifar_files[f]);
        unlink(path);
    }
    rmdir(dir);
}

/* Train sample i of the fake set -> (file, record). */
static void train_where(int i, int *file, int *rec)
{
    int f = 0;
    while (i >= cifar_records[f]) i -= cifar_records[f++];
    *file = f, *rec = i;
}

static float norm_ref(uint8_t b, int c) { return ((float)b / 255.0f - mean_ref[c]) / std_ref[c]; }

static void cifar_decode(void)
{
    const char *dir = good;
    char spec[600];
    snprintf(spec, sizeof spec, "cifar10:%s", dir);
    data_options o;
    data_options_init(&o);
    dataset *ds = open_ok(spec, &o);
    CHECK(data_size(ds, DATA_TRAIN) == 10 && data_size(ds, DATA_VAL) == 3, "sizes %d / %d", data_size(ds, DATA_TRAIN),
          data_size(ds, DATA_VAL));
    float x[3072];
    int32_t l;
    long compared = 0;
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < data_size(ds, (data_split)s); i++) {
            int file = 5, rec = i;
            if (s == DATA_TRAIN) train_where(i, &file, &rec);
            CHECK(data_sample(ds, (data_split)s, i, x, &l, err, sizeof err) == 0, "%s", err);
            CHECK(l == label_of(file, rec), "%s record %d: label %d, file says %d", cifar_files[file], rec, l,
                  label_of(file, rec));
            for (int c = 0; c < 3; c++)
                for (int y = 0; y < 32; y++)
                    for (int xx = 0; xx < 32; xx++) {
                        float want = norm_ref(pixel_byte(file, rec, c, y, xx), c);
                        CHECK(x[c * 1024 + y * 32 + xx] == want, "%s record %d (c %d, y %d, x %d): %.9g, want %.9g",
                              cifar_files[file], rec, c, y, xx, x[c * 1024 + y * 32 + xx], want);
                        compared++;
                    }
        }
    printf("cifar10 decode: 13 images (10 train from 5 files in order, 3 val): labels and %ld values equal, bit for "
           "bit, to (byte/255 - mean[c]) / std[c] with byte = plane c (R, G, B), row-major 32x32\n",
           compared);
    /* Named numbers: byte 0 and byte 255 of each channel. */
    for (int c = 0; c < 3; c++)
        printf("  channel %d: mean %.4f std %.4f: byte 0 -> %.6f, byte 255 -> %.6f\n", c, mean_ref[c], std_ref[c],
               norm_ref(0, c), norm_ref(255, c));
    /* Val batches: file order, 2 + 1 real with padding. */
    float xb[2 * 3072];
    int32_t lb[2];
    batch_ok(ds, DATA_VAL, 3, 1, 2, xb, lb, 1);
    CHECK(lb[0] == label_of(5, 2) && xb[0] == norm_ref(pixel_byte(5, 2, 0, 0, 0), 0) && lb[1] == 0 && xb[3072] == 0,
          "val batch 1 of 2 is not test_batch record 2 + padding");
    printf("cifar10 val: batch 1 (size 2) = test_batch.bin record 2 + one zero slot\n");
    data_close(ds);

    /* The first N records. */
    o.train_size = 4, o.val_size = 2;
    ds = open_ok(spec, &o);
    CHECK(data_size(ds, DATA_TRAIN) == 4 && data_size(ds, DATA_VAL) == 2, "limited sizes");
    data_close(ds);
    o.train_size = 11;
    ds = NULL;
    CHECK(data_open(spec, &o, &ds, err, sizeof err) != 0 && strstr(err, "11"), "train size 11 of 10 accepted");
    printf("cifar10: train_size 4 / val_size 2 keep the first records; 11 refused: %s\n", err);
}

/* Which (dy, dx, flip) makes out from train sample i, by the reference rule
 * out(c,y,x) = in(c, y+dy, x'+dx), x' = 31-x if flip, 0 (before normalisation) outside. */
static int find_augmentation(const float *out, int i, int *dy_out, int *dx_out, int *flip_out)
{
    int file, rec, matches = 0;
    train_where(i, &file, &rec);
    for (int dy = -4; dy <= 4; dy++)
        for (int dx = -4; dx <= 4; dx++)
            for (int flip = 0; flip <= 1; flip++) {
                int same = 1;
                for (int c = 0; c < 3 && same; c++)
                    for (int y = 0; y < 32 && same; y++)
                        for (int x = 0; x < 32 && same; x++) {
                            int sy = y + dy, sx = (flip ? 31 - x : x) + dx;
                            uint8_t b =
                                (sy >= 0 && sy < 32 && sx >= 0 && sx < 32) ? pixel_byte(file, rec, c, sy, sx) : 0;
                            same = out[c * 1024 + y * 32 + x] == norm_ref(b, c);
                        }
                if (same) matches++, *dy_out = dy, *dx_out = dx, *flip_out = flip;
            }
    return matches;
}

static void cifar_augment(void)
{
    const char *dir = good;
    char spec[600];
    snprintf(spec, sizeof spec, "cifar10:%s", dir);
    data_options o;
    data_options_init(&o); /* augmentation on by default for cifar10 */
    o.seed = 11;
    dataset *a = open_ok(spec, &o), *b = open_ok(spec, &o);
    enum {
        BS = 5,
        EPOCHS = 30
    };
    float xa[BS * 3072], xb[BS * 3072];
    int32_t la[BS], lb[BS];
    int dy_hist[9] = {0}, dx_hist[9] = {0}, flips = 0, draws = 0, shown = 0;
    for (int e = 0; e < EPOCHS; e++)
        for (int bi = 0; bi < 2; bi++) {
            batch_ok(a, DATA_TRAIN, e, bi, BS, xa, la, BS);
            for (int k = 0; k < BS; k++) {
                /* which sample: the label and the unshifted centre identify it; search them all */
                int found = 0, dy = 0, dx = 0, flip = 0;
                for (int i = 0; i < 10 && !found; i++) {
                    int file, rec;
                    train_where(i, &file, &rec);
                    if (label_of(file, rec) != la[k]) continue;
                    int m = find_augmentation(xa + k * 3072, i, &dy, &dx, &flip);
                    CHECK(m <= 1, "epoch %d image %d matches %d augmentations of sample %d", e, k, m, i);
                    if (m == 1) {
                        found = 1;
                        if (!shown && flip && dy > 0 && dx < 0) {
                            shown = 1;
                            printf("cifar10 augment example: epoch %d, sample %d (%s record %d): dy %d dx %d flipped;"
                                   " out(R,0,0) = %.6f = in(R,%d,%d) = %.6f; out(R,31,0) = %.6f = padding (0-0.4914)/"
                                   "0.2470 = %.6f\n",
                                   e, i, cifar_files[file], rec, dy, dx, xa[k * 3072], dy, 31 + dx,
                                   norm_ref(pixel_byte(file, rec, 0, dy, 31 + dx), 0), xa[k * 3072 + 31 * 32],
                                   norm_ref(0, 0));
                        }
                    }
                }
                CHECK(found, "epoch %d batch %d image %d is no crop/flip of any train sample", e, bi, k);
                dy_hist[dy + 4]++, dx_hist[dx + 4]++, flips += flip, draws++;
            }
        }
    CHECK(shown, "no flipped image with dy > 0 and dx < 0 in %d draws", draws);
    printf("cifar10 augment: %d training images, each equal to exactly one of the 162 (dy, dx, flip) of the "
           "reference (pad 4 with black, crop 32x32, flip x)\n  dy -4..4:",
           draws);
    for (int i = 0; i < 9; i++) printf(" %d", dy_hist[i]);
    printf("\n  dx -4..4:");
    for (int i = 0; i < 9; i++) printf(" %d", dx_hist[i]);
    printf("\n  flipped: %d of %d\n", flips, draws);
    CHECK(dy_hist[0] && dy_hist[8] && dx_hist[0] && dx_hist[8], "the shifts do not reach +-4");
    CHECK(flips > draws / 4 && flips < 3 * draws / 4, "flip rate %d / %d", flips, draws);

    /* Determinism: a second open, batches in another order. */
    batch_ok(b, DATA_TRAIN, 17, 1, BS, xb, lb, BS);
    batch_ok(a, DATA_TRAIN, 17, 1, BS, xa, la, BS);
    CHECK(memcmp(xa, xb, sizeof xa) == 0 && memcmp(la, lb, sizeof la) == 0, "epoch 17 batch 1 differs across opens");
    batch_ok(b, DATA_TRAIN, 18, 1, BS, xb, lb, BS);
    CHECK(memcmp(xa, xb, sizeof xa) != 0, "epochs 17 and 18 give the same batch 1");
    printf("cifar10 augment: epoch 17 batch 1 bit-identical across two opens (after 60 other batches vs. first); "
           "epoch 18 differs\n");
    data_close(a), data_close(b);

    /* Augmentation off: train images are the plain samples. */
    o.augment = 0;
    a = open_ok(spec, &o);
    batch_ok(a, DATA_TRAIN, 0, 0, BS, xa, la, BS);
    for (int k = 0; k < BS; k++) {
        int m = 0, dy = 9, dx = 9, flip = 9;
        for (int i = 0; i < 10; i++)
            if (find_augmentation(xa + k * 3072, i, &dy, &dx, &flip) == 1 && dy == 0 && dx == 0 && flip == 0) m++;
        CHECK(m == 1, "augment off: image %d is not a plain sample", k);
    }
    printf("cifar10 augment off: train batch images are unshifted, unflipped samples\n");
    data_close(a);
}

static void expect_open_error(const char *spec, const data_options *o, const char *what, const char *must1,
                              const char *must2)
{
    dataset *ds = NULL;
    int rc = data_open(spec, o, &ds, err, sizeof err);
    CHECK(rc != 0 && ds == NULL, "%s: data_open succeeded", what);
    CHECK(strstr(err, must1) && (!must2 || strstr(err, must2)), "%s: message lacks '%s'%s%s: %s", what, must1,
          must2 ? " / " : "", must2 ? must2 : "", err);
    printf("%s: refused: %s\n", what, err);
}

static void cifar_errors(void)
{
    char dir[128], spec[600], path[600];
    data_options o;
    data_options_init(&o);
    snprintf(dir, sizeof dir, "%s/bad", base);
    snprintf(spec, sizeof spec, "cifar10:%s", dir);

    write_cifar_dir(dir);
    snprintf(path, sizeof path, "%s/data_batch_3.bin", dir);
    unlink(path);
    expect_open_error(spec, &o, "missing data_batch_3.bin", path, NULL);
    remove_cifar_dir(dir);

    write_cifar_dir(dir);
    snprintf(path, sizeof path, "%s/data_batch_2.bin", dir);
    CHECK(truncate(path, 2 * 3073 - 1) == 0, "truncate");
    expect_open_error(spec, &o, "truncated data_batch_2.bin", path, "truncated");
    remove_cifar_dir(dir);

    write_cifar_dir(dir);
    write_cifar_file(dir, 5, 3072, -1);
    snprintf(path, sizeof path, "%s/test_batch.bin", dir);
    expect_open_error(spec, &o, "3072-byte records in test_batch.bin", path, "wrong record size");
    remove_cifar_dir(dir);

    write_cifar_dir(dir);
    write_cifar_file(dir, 3, 3073, 1);
    snprintf(path, sizeof path, "%s/data_batch_4.bin", dir);
    expect_open_error(spec, &o, "label 11 in data_batch_4.bin", path, "record 1 has label 11");
    remove_cifar_dir(dir);

    write_cifar_dir(dir);
    write_file(dir, "data_batch_5.bin", (const uint8_t *)"", 0);
    snprintf(path, sizeof path, "%s/data_batch_5.bin", dir);
    expect_open_error(spec, &o, "empty data_batch_5.bin", path, "empty");
    remove_cifar_dir(dir);

    snprintf(spec, sizeof spec, "cifar10:%s/nonexistent", base);
    expect_open_error(spec, &o, "missing directory", spec + 8, NULL);
    snprintf(spec, sizeof spec, "cifar10:%s/good", base);
    o.height = 16, o.width = 16;
    expect_open_error(spec, &o, "cifar10 at 16x16", "16x16", NULL);
    data_options_init(&o);
    expect_open_error("imagenet", &o, "unknown data set", "imagenet", NULL);
    expect_open_error("cifar10", &o, "cifar10 without DIR", "cifar10:DIR", NULL);
}

static const test_case tests[] = {
    TEST_CASE(synthetic_determinism, "synthetic batches are a pure function of (seed, split, epoch, batch index)"),
    TEST_CASE(synthetic_order,
              "each synthetic epoch is a permutation in its own order; val in file order, zero-padded"),
    TEST_CASE(synthetic_values, "synthetic values are finite and about N(0, 1), all ten classes appear, any size >= 4"),
    TEST_CASE(synthetic_learnable, "the classes are learnable from shift-invariant features, not from the mean colour"),
    TEST_CASE(cifar_decode,
              "cifar10: planes, labels and normalisation decoded bit-exactly, val padded, first N records"),
    TEST_CASE(cifar_augment,
              "cifar10: each augmented image is exactly one (dy, dx, flip) of the reference; deterministic"),
    TEST_CASE(cifar_errors, "cifar10: missing, truncated, 3072-byte records, label 11, empty files named in the error"),
};

int main(int argc, char **argv)
{
    const char *only = test_select(&argc, argv);
    CHECK(mkdtemp(base) != NULL, "mkdtemp");
    snprintf(good, sizeof good, "%s/good", base);
    write_cifar_dir(good);
    int status = TEST_RUN(tests, only);
    remove_cifar_dir(good);
    CHECK(rmdir(base) == 0, "removing %s", base);
    if (!only) printf("data tests passed\n");
    return status;
}
