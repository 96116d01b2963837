/* data.c - the data sets of `poolprop train` (see data.h): `synthetic`, ten classes of noisy
 * shapes rendered on the fly at any size, and `cifar10:DIR`, the CIFAR-10 binary files held
 * in memory. Both go through one path: an image as pixels in [0, 1] (3,H,W), then the
 * optional crop-with-padding and flip, then per-channel normalisation.
 *
 * Invariant: no RNG state lives between calls. Every random choice is drawn from a
 * counter-based generator keyed by a hash of the values it may depend on:
 *   train order      (seed, epoch)
 *   augmentation     (seed, epoch, sample index)
 *   synthetic image  (seed, split, sample index)
 * so a batch is the same whichever batches were made before it (exact resume), and the same
 * whichever worker threads made its images (data_batch splits a batch among them). */
#define _POSIX_C_SOURCE 200809L
#include "data.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
    KIND_SYNTHETIC,
    KIND_CIFAR10
};

#define CIFAR_SIDE 32
#define CIFAR_PIXELS (3 * CIFAR_SIDE * CIFAR_SIDE) /* 3072 */
#define CIFAR_RECORD (1 + CIFAR_PIXELS)            /* 3073 */
#define CIFAR_STANDARD_RECORDS 10000
#define CIFAR_MAX_RECORDS 100000 /* per file: ten times the standard files (307 MB) */
#define SYNTH_MIN_SIDE 4
#define SYNTH_MAX_SIDE 4096

/* Domain-separation tags of the hashes. */
#define TAG_ORDER 0x6f72646572ULL
#define TAG_AUGMENT 0x61756720ULL
#define TAG_IMAGE 0x696d616765ULL

static const float cifar_mean[3] = {0.4914f, 0.4822f, 0.4465f};
static const float cifar_std[3] = {0.2470f, 0.2435f, 0.2616f};
/* The synthetic images' pixel mean and standard deviation, measured over 2000 images at each
 * of 8x8, 16x16, 32x32 and 64x64 (per channel mean 0.331..0.333, std 0.242..0.277; the test
 * prints the figures of the normalised output). */
static const float synth_mean[3] = {0.332f, 0.332f, 0.332f};
static const float synth_std[3] = {0.268f, 0.268f, 0.268f};

typedef struct split_data {
    int n;
    uint8_t *labels; /* cifar10: n labels */
    uint8_t *pixels; /* cifar10: n * 3072 bytes, R, G, B planes */
    int32_t *order;  /* train: the cached permutation of order_epoch */
    int order_epoch; /* -1: none cached */
} split_data;

struct dataset {
    int kind;
    int height, width;
    uint64_t seed;
    int augment;
    split_data split[2];
    int threads;    /* workers of data_batch, >= 1 */
    float *scratch; /* one image per worker, (threads,3,H,W) pixels in [0, 1] */
};

static int fail(char *err, size_t err_len, const char *fmt, ...)
{
    if (err && err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ---- counter-based randomness ---- */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t hash3(uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t h = mix64(a + 0x9e3779b97f4a7c15ULL);
    h = mix64(h ^ (b + 0x632be59bd9b4e019ULL));
    return mix64(h ^ (c + 0x85157af5ULL));
}

typedef struct rng {
    uint64_t state;
} rng;

static uint64_t rng_next(rng *r) { return mix64(r->state += 0x9e3779b97f4a7c15ULL); }
/* Uniform in [0, 1). */
static double rng_uniform(rng *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }
/* Uniform integer in [0, n), n >= 1 (the bias of the modulo is below 2^-32 for n < 2^32). */
static uint32_t rng_below(rng *r, uint32_t n) { return (uint32_t)(rng_next(r) % n); }
static double rng_gauss(rng *r)
{
    double u1 = 1.0 - rng_uniform(r), u2 = rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* ---- synthetic shapes ---- */

/* The shape of one synthetic image: class, foreground and background colors, center and
 * half-size in pixels, an angle (two dots) or orientation (diagonal line), noise level. */
typedef struct shape {
    int cls;
    float fg[3], bg[3];
    double cx, cy, r;
    double angle;
    int flip;
    float noise;
} shape;

/* Is local point (u, v) (shape frame: the shape spans about [-1, 1]^2, v downwards) inside
 * the shape of class cls? */
static int inside(const shape *s, double u, double v)
{
    double au = fabs(u), av = fabs(v), rr = u * u + v * v;
    switch (s->cls) {
    case 0: /* filled circle */ return rr <= 1.0;
    case 1: /* ring */ return rr <= 1.0 && rr >= 0.55 * 0.55;
    case 2: /* filled square, about the circle's area */ return au <= 0.86 && av <= 0.86;
    case 3: /* cross (plus sign) */ return (au <= 1.0 && av <= 0.3) || (au <= 0.3 && av <= 1.0);
    case 4: /* three horizontal bars (five bands, alternate ones filled) */
        return au <= 1.0 && av <= 1.0 && ((int)floor((v + 1.0) * 2.5) % 2) == 0;
    case 5: /* three vertical bars */ return au <= 1.0 && av <= 1.0 && ((int)floor((u + 1.0) * 2.5) % 2) == 0;
    case 6: /* diagonal line, either direction */
        return au <= 0.95 && av <= 0.95 && fabs(u - (s->flip ? -v : v)) <= 0.32;
    case 7: /* triangle, apex up */ return v <= 0.8 && v >= -1.0 && au <= (v + 1.0) / 1.8;
    case 8: /* 3x3 checkerboard */
        return au <= 1.0 && av <= 1.0 && (((int)floor((u + 1.0) * 1.5) + (int)floor((v + 1.0) * 1.5)) % 2) == 0;
    default: { /* two dots on an axis at a random angle */
        double du = 0.6 * cos(s->angle), dv = 0.6 * sin(s->angle);
        double a = (u - du) * (u - du) + (v - dv) * (v - dv), b = (u + du) * (u + du) + (v + dv) * (v + dv);
        return a <= 0.38 * 0.38 || b <= 0.38 * 0.38;
    }
    }
}

/* Renders synthetic sample `index` of split into px (3,H,W), pixels in [0, 1]. */
static int synth_render(const dataset *ds, int split, int index, float *px)
{
    int H = ds->height, W = ds->width, m = H < W ? H : W;
    rng r = {hash3(ds->seed ^ TAG_IMAGE, (uint64_t)split, (uint64_t)index)};
    shape s;
    s.cls = index % DATA_CLASSES;
    /* A bright shape on a darker background, each of random hue: every channel of the
     * background in [0, 0.4], of the foreground in [0.6, 1]. (With a random polarity or
     * colors merely apart, a ResNet-8 learns far more slowly: test_train's 48 steps.) */
    for (int c = 0; c < 3; c++) s.bg[c] = (float)(0.4 * rng_uniform(&r));
    for (int c = 0; c < 3; c++) s.fg[c] = (float)(0.6 + 0.4 * rng_uniform(&r));
    s.r = m * (0.22 + 0.2 * rng_uniform(&r));
    s.cx = s.r + rng_uniform(&r) * (W - 2 * s.r);
    s.cy = s.r + rng_uniform(&r) * (H - 2 * s.r);
    s.angle = 3.141592653589793 * rng_uniform(&r);
    s.flip = (int)(rng_next(&r) & 1);
    s.noise = (float)(0.03 + 0.09 * rng_uniform(&r));

    /* Coverage by ss x ss subsamples per pixel (anti-aliased edges at small sizes). */
    int ss = m <= 32 ? 4 : m <= 96 ? 2 : 1;
    double inv_r = 1.0 / s.r, step = 1.0 / ss;
    size_t plane = (size_t)H * W;
    for (int y = 0; y < H; y++) {
        for (int x = 0; x < W; x++) {
            int hits = 0;
            for (int sy = 0; sy < ss; sy++) {
                double v = (y + (sy + 0.5) * step - s.cy) * inv_r;
                for (int sx = 0; sx < ss; sx++) hits += inside(&s, (x + (sx + 0.5) * step - s.cx) * inv_r, v);
            }
            float cover = (float)hits / (float)(ss * ss);
            for (int c = 0; c < 3; c++) {
                float p = s.bg[c] + (s.fg[c] - s.bg[c]) * cover + s.noise * (float)rng_gauss(&r);
                px[c * plane + (size_t)y * W + x] = p < 0.0f ? 0.0f : p > 1.0f ? 1.0f : p;
            }
        }
    }
    return s.cls;
}

/* ---- one image through augmentation and normalisation ---- */

/* Pixels of sample `index` (file order) into scratch (3,H,W); returns its label. */
static int load_pixels(const dataset *ds, int split, int index, float *scratch)
{
    if (ds->kind == KIND_SYNTHETIC) return synth_render(ds, split, index, scratch);
    const split_data *d = &ds->split[split];
    const uint8_t *b = d->pixels + (size_t)index * CIFAR_PIXELS;
    for (int i = 0; i < CIFAR_PIXELS; i++) scratch[i] = (float)b[i] / 255.0f;
    return d->labels[index];
}

/* out(c,y,x) = (in(c, y+dy, x'+dx) - mean[c]) / std[c] with x' = W-1-x if flip else x, and
 * 0 for pixels outside the image (zero padding before normalisation, as torchvision's
 * RandomCrop(padding) then RandomHorizontalFlip then Normalize). */
static void place(const dataset *ds, const float *scratch, int dy, int dx, int flip, float *out)
{
    int H = ds->height, W = ds->width;
    const float *mean = ds->kind == KIND_CIFAR10 ? cifar_mean : synth_mean;
    const float *sd = ds->kind == KIND_CIFAR10 ? cifar_std : synth_std;
    size_t plane = (size_t)H * W;
    for (int c = 0; c < 3; c++) {
        const float *in = scratch + c * plane;
        float *o = out + c * plane;
        for (int y = 0; y < H; y++) {
            int sy = y + dy;
            for (int x = 0; x < W; x++) {
                int sx = (flip ? W - 1 - x : x) + dx;
                float p = (sy >= 0 && sy < H && sx >= 0 && sx < W) ? in[(size_t)sy * W + sx] : 0.0f;
                o[(size_t)y * W + x] = (p - mean[c]) / sd[c];
            }
        }
    }
}

/* Fills out with sample `index` (file order), augmented for training if enabled; scratch
 * holds one image. */
static int make_image(const dataset *ds, int split, int epoch, int index, float *scratch, float *out)
{
    int label = load_pixels(ds, split, index, scratch);
    int dy = 0, dx = 0, flip = 0;
    if (split == DATA_TRAIN && ds->augment) {
        /* A crop of the image padded by H/8, W/8 (4 at 32x32), then a flip with p = 1/2. */
        int py = ds->height / 8, px = ds->width / 8;
        rng r = {hash3(ds->seed ^ TAG_AUGMENT, (uint64_t)epoch, (uint64_t)index)};
        dy = (int)rng_below(&r, (uint32_t)(2 * py + 1)) - py;
        dx = (int)rng_below(&r, (uint32_t)(2 * px + 1)) - px;
        flip = (int)(rng_next(&r) & 1);
    }
    place(ds, scratch, dy, dx, flip, out);
    return label;
}

/* ---- CIFAR-10 files ---- */

/* Checks that path is a regular file of a whole number (>= 1) of records; *records. */
static int cifar_check(const char *path, long long *records, char *err, size_t err_len)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return fail(err, err_len,
                    "cifar10: cannot open %s: %s (expected the CIFAR-10 binary version: data_batch_1.bin .. "
                    "data_batch_5.bin and test_batch.bin)",
                    path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return fail(err, err_len, "cifar10: %s is not a regular file", path);
    long long size = (long long)st.st_size;
    if (size == 0) return fail(err, err_len, "cifar10: %s is empty (expected 3073-byte records)", path);
    if (size % CIFAR_RECORD != 0)
        return fail(err, err_len,
                    "cifar10: %s: wrong record size or truncated file: %lld bytes is not a whole number of 3073-byte "
                    "records (1 label byte + 3072 pixel bytes; the standard files hold %d records, %d bytes)%s",
                    path, size, CIFAR_STANDARD_RECORDS, CIFAR_STANDARD_RECORDS * CIFAR_RECORD,
                    size % CIFAR_PIXELS == 0 ? "; it looks like 3072-byte records without label bytes" : "");
    if (size / CIFAR_RECORD > CIFAR_MAX_RECORDS)
        return fail(err, err_len, "cifar10: %s: %lld records, more than the limit of %d per file (%d bytes)", path,
                    size / CIFAR_RECORD, CIFAR_MAX_RECORDS, CIFAR_MAX_RECORDS * CIFAR_RECORD);
    *records = size / CIFAR_RECORD;
    return 0;
}

/* Appends the records of path (sized by cifar_check) to d, checking every label. */
static int cifar_read(const char *path, long long records, split_data *d, char *err, size_t err_len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return fail(err, err_len, "cifar10: cannot open %s: %s", path, strerror(errno));
    uint8_t rec[CIFAR_RECORD];
    for (long long i = 0; i < records; i++) {
        if (fread(rec, 1, CIFAR_RECORD, f) != CIFAR_RECORD) {
            fclose(f);
            return fail(err, err_len, "cifar10: %s: truncated file: record %lld of %lld could not be read", path, i,
                        records);
        }
        if (rec[0] > 9) {
            fclose(f);
            return fail(err, err_len, "cifar10: %s: record %lld has label %d (expected 0..9)", path, i, rec[0]);
        }
        d->labels[d->n] = rec[0];
        memcpy(d->pixels + (size_t)d->n * CIFAR_PIXELS, rec + 1, CIFAR_PIXELS);
        d->n++;
    }
    fclose(f);
    return 0;
}

static int cifar_open(dataset *ds, const char *dir, const data_options *o, char *err, size_t err_len)
{
    if (!*dir) return fail(err, err_len, "cifar10: no directory given (expected cifar10:DIR)");
    if (ds->height != CIFAR_SIDE || ds->width != CIFAR_SIDE)
        return fail(err, err_len, "cifar10: images are 32x32; %dx%d is not supported (no resizing)", ds->height,
                    ds->width);
    struct stat st;
    if (stat(dir, &st) != 0) return fail(err, err_len, "cifar10: cannot open directory %s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return fail(err, err_len, "cifar10: %s is not a directory", dir);

    static const char *const names[6] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                         "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"};
    char paths[6][4096];
    long long records[6], total[2] = {0, 0};
    for (int i = 0; i < 6; i++) { /* every file is checked before anything is read */
        if ((size_t)snprintf(paths[i], sizeof paths[i], "%s/%s", dir, names[i]) >= sizeof paths[i])
            return fail(err, err_len, "cifar10: directory name too long: %s", dir);
        if (cifar_check(paths[i], &records[i], err, err_len)) return -1;
        total[i == 5] += records[i];
    }
    int want[2] = {o->train_size, o->val_size};
    for (int s = 0; s < 2; s++) {
        if (total[s] > 0x7fffffff) return fail(err, err_len, "cifar10: %s: too many records", dir);
        if (want[s] < 0) return fail(err, err_len, "cifar10: negative %s size %d", s ? "val" : "train", want[s]);
        if (want[s] > total[s])
            return fail(err, err_len, "cifar10: %s size %d is more than the %lld images of %s in %s",
                        s ? "val" : "train", want[s], total[s], s ? "test_batch.bin" : "data_batch_1..5.bin", dir);
        split_data *d = &ds->split[s];
        d->labels = malloc((size_t)total[s]);
        d->pixels = malloc((size_t)total[s] * CIFAR_PIXELS);
        if (!d->labels || !d->pixels) return fail(err, err_len, "cifar10: out of memory for %lld images", total[s]);
    }
    for (int i = 0; i < 6; i++)
        if (cifar_read(paths[i], records[i], &ds->split[i == 5], err, err_len)) return -1;
    for (int s = 0; s < 2; s++)
        if (want[s] > 0) ds->split[s].n = want[s]; /* the first N records */
    return 0;
}

/* ---- public API ---- */

void data_options_init(data_options *o)
{
    memset(o, 0, sizeof *o);
    o->height = o->width = 32;
    o->seed = 1;
    o->augment = DATA_AUGMENT_DEFAULT;
}

void data_close(dataset *ds)
{
    if (!ds) return;
    for (int s = 0; s < 2; s++) {
        free(ds->split[s].labels);
        free(ds->split[s].pixels);
        free(ds->split[s].order);
    }
    free(ds->scratch);
    free(ds);
}

int data_open(const char *spec, const data_options *o, dataset **out, char *err, size_t err_len)
{
    *out = NULL;
    if (!spec) return fail(err, err_len, "no data set given (expected synthetic or cifar10:DIR)");
    data_options defaults;
    if (!o) data_options_init(&defaults), o = &defaults;
    dataset *ds = calloc(1, sizeof *ds);
    if (!ds) return fail(err, err_len, "out of memory");
    ds->height = o->height, ds->width = o->width, ds->seed = o->seed;
    ds->threads = o->threads;
    if (ds->threads <= 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        ds->threads = cpus < 1 ? 1 : cpus > DATA_MAX_THREADS ? DATA_MAX_THREADS : (int)cpus;
    }
    if (ds->threads > DATA_MAX_THREADS) ds->threads = DATA_MAX_THREADS;
    ds->split[0].order_epoch = ds->split[1].order_epoch = -1;
    int rc;
    if (strcmp(spec, "synthetic") == 0) {
        ds->kind = KIND_SYNTHETIC;
        ds->augment = o->augment == DATA_AUGMENT_DEFAULT ? 0 : o->augment != 0;
        if (o->height < SYNTH_MIN_SIDE || o->width < SYNTH_MIN_SIDE || o->height > SYNTH_MAX_SIDE ||
            o->width > SYNTH_MAX_SIDE)
            rc = fail(err, err_len, "synthetic: image size %dx%d is out of range (each side %d..%d)", o->height,
                      o->width, SYNTH_MIN_SIDE, SYNTH_MAX_SIDE);
        else if (o->train_size < 0 || o->val_size < 0)
            rc = fail(err, err_len, "synthetic: negative split size (train %d, val %d)", o->train_size, o->val_size);
        else {
            ds->split[DATA_TRAIN].n = o->train_size ? o->train_size : 5000;
            ds->split[DATA_VAL].n = o->val_size ? o->val_size : 1000;
            rc = 0;
        }
    } else if (strncmp(spec, "cifar10:", 8) == 0) {
        ds->kind = KIND_CIFAR10;
        ds->augment = o->augment == DATA_AUGMENT_DEFAULT ? 1 : o->augment != 0;
        rc = cifar_open(ds, spec + 8, o, err, err_len);
    } else if (strcmp(spec, "cifar10") == 0) {
        rc = fail(err, err_len,
                  "cifar10 needs a directory: cifar10:DIR (DIR holding data_batch_1.bin .. "
                  "data_batch_5.bin and test_batch.bin)");
    } else {
        rc = fail(err, err_len, "unknown data set '%s' (expected synthetic or cifar10:DIR)", spec);
    }
    if (!rc) {
        ds->scratch = malloc((size_t)ds->threads * 3 * ds->height * ds->width * sizeof *ds->scratch);
        ds->split[DATA_TRAIN].order = malloc((size_t)ds->split[DATA_TRAIN].n * sizeof(int32_t));
        if (!ds->scratch || !ds->split[DATA_TRAIN].order) rc = fail(err, err_len, "out of memory");
    }
    if (rc) {
        data_close(ds);
        return rc;
    }
    *out = ds;
    return 0;
}

int data_size(const dataset *ds, data_split split)
{
    if (split != DATA_TRAIN && split != DATA_VAL) return -1;
    return ds->split[split].n;
}

int data_batches(const dataset *ds, data_split split, int batch_size)
{
    if (batch_size < 1 || (split != DATA_TRAIN && split != DATA_VAL)) return 0;
    int n = ds->split[split].n;
    return split == DATA_TRAIN ? n / batch_size : (n + batch_size - 1) / batch_size;
}

void data_image_size(const dataset *ds, int *height, int *width)
{
    *height = ds->height;
    *width = ds->width;
}

int data_epoch_begin(dataset *ds, data_split split, int epoch, char *err, size_t err_len)
{
    if (split != DATA_TRAIN && split != DATA_VAL) return fail(err, err_len, "data: bad split %d", (int)split);
    if (epoch < 0) return fail(err, err_len, "data: negative epoch %d", epoch);
    if (split == DATA_VAL) return 0; /* file order */
    split_data *d = &ds->split[DATA_TRAIN];
    if (d->order_epoch == epoch) return 0;
    /* Fisher-Yates from a generator keyed by (seed, epoch) only. */
    rng r = {hash3(ds->seed ^ TAG_ORDER, (uint64_t)epoch, 0)};
    for (int i = 0; i < d->n; i++) d->order[i] = i;
    for (int i = d->n - 1; i > 0; i--) {
        int j = (int)rng_below(&r, (uint32_t)i + 1);
        int32_t t = d->order[i];
        d->order[i] = d->order[j], d->order[j] = t;
    }
    d->order_epoch = epoch;
    return 0;
}

/* One worker's share of a batch: images [from, to) of the batch starting at `first`. */
typedef struct batch_work {
    const dataset *ds;
    int split, epoch;
    long first;
    int from, to;
    float *scratch;
    float *x;
    int32_t *labels;
} batch_work;

static void *batch_worker(void *arg)
{
    const batch_work *w = arg;
    const dataset *ds = w->ds;
    const split_data *d = &ds->split[w->split];
    size_t image = (size_t)3 * ds->height * ds->width;
    for (int i = w->from; i < w->to; i++) {
        int sample = w->split == DATA_TRAIN ? d->order[w->first + i] : (int)(w->first + i);
        w->labels[i] = make_image(ds, w->split, w->epoch, sample, w->scratch, w->x + (size_t)i * image);
    }
    return NULL;
}

int data_batch(dataset *ds, data_split split, int epoch, int index, int batch_size, float *x, int32_t *labels,
               char *err, size_t err_len)
{
    if (data_epoch_begin(ds, split, epoch, err, err_len)) return -1;
    if (batch_size < 1) return fail(err, err_len, "data: batch size %d", batch_size);
    int batches = data_batches(ds, split, batch_size);
    if (index < 0 || index >= batches)
        return fail(err, err_len, "data: batch %d out of range: the %s split has %d batches of %d", index,
                    split == DATA_TRAIN ? "train" : "val", batches, batch_size);
    const split_data *d = &ds->split[split];
    size_t image = (size_t)3 * ds->height * ds->width;
    long first = (long)index * batch_size;
    int real = d->n - first < batch_size ? (int)(d->n - first) : batch_size;
    /* Worker t makes images [t*real/n, (t+1)*real/n); the calling thread is worker 0. */
    int n = ds->threads < real ? ds->threads : real;
    batch_work work[DATA_MAX_THREADS];
    pthread_t tid[DATA_MAX_THREADS];
    int started[DATA_MAX_THREADS] = {0};
    for (int t = 0; t < n; t++) {
        work[t] = (batch_work){ds,
                               split,
                               epoch,
                               first,
                               (int)((long)t * real / n),
                               (int)((long)(t + 1) * real / n),
                               ds->scratch + (size_t)t * image,
                               x,
                               labels};
        if (t > 0) started[t] = pthread_create(&tid[t], NULL, batch_worker, &work[t]) == 0;
    }
    /* A worker that could not start is done here, in order: the images are the same. */
    for (int t = 0; t < n; t++)
        if (t == 0 || !started[t]) batch_worker(&work[t]);
    for (int t = 1; t < n; t++)
        if (started[t]) pthread_join(tid[t], NULL);
    if (real < batch_size) {
        memset(x + real * image, 0, (size_t)(batch_size - real) * image * sizeof *x);
        memset(labels + real, 0, (size_t)(batch_size - real) * sizeof *labels);
    }
    return real;
}

int data_sample(dataset *ds, data_split split, int index, float *x, int32_t *label, char *err, size_t err_len)
{
    if (split != DATA_TRAIN && split != DATA_VAL) return fail(err, err_len, "data: bad split %d", (int)split);
    if (index < 0 || index >= ds->split[split].n)
        return fail(err, err_len, "data: sample %d out of range (0..%d)", index, ds->split[split].n - 1);
    *label = load_pixels(ds, split, index, ds->scratch);
    place(ds, ds->scratch, 0, 0, 0, x);
    return 0;
}
