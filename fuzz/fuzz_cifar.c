/* fuzz_cifar.c - libFuzzer target: the CIFAR-10 binary reader of `poolprop train --data
 * cifar10:DIR` (cli/data.c). The input is written as each of the six files (data_batch_1..5.bin,
 * test_batch.bin), then opened (32x32, augmentation on) and read: one train batch, one
 * validation batch, the last validation sample. Either the open fails with a message, or
 * the splits hold 5 and 1 times the input's records, and every image read is finite and
 * labelled 0..9, as the input says. */
#include "data.h"
#include "fuzz_util.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

enum {
    RECORD = 3073,
    PIXELS = 3 * 32 * 32
};

static void check_images(const float *x, const int32_t *labels, int n)
{
    for (int i = 0; i < n; i++) {
        FUZZ_ASSERT(labels[i] >= 0 && labels[i] < DATA_CLASSES);
        for (int p = 0; p < PIXELS; p++) FUZZ_ASSERT(isfinite(x[(size_t)i * PIXELS + p]));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[6] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                         "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"};
    if (size > 8 * RECORD) return 0; /* a few records show everything; more only slow the search */
    char dir[4200], spec[4300], name[64];
    snprintf(dir, sizeof dir, "%s/cifar", fuzz_util_dir());
    mkdir(dir, 0777);
    for (int i = 0; i < 6; i++) {
        snprintf(name, sizeof name, "cifar/%s", names[i]);
        fuzz_util_write(name, data, size);
    }
    snprintf(spec, sizeof spec, "cifar10:%s", dir);
    data_options o;
    data_options_init(&o);
    o.augment = 1;
    dataset *ds = NULL;
    char err[1024] = "";
    if (data_open(spec, &o, &ds, err, sizeof err) != 0) {
        FUZZ_ASSERT(ds == NULL && err[0] != '\0');
        return 0;
    }
    size_t records = size / RECORD;
    FUZZ_ASSERT(size % RECORD == 0 && records >= 1);
    FUZZ_ASSERT(data_size(ds, DATA_TRAIN) == (int)(5 * records) && data_size(ds, DATA_VAL) == (int)records);
    static float x[2 * PIXELS];
    int32_t labels[2];
    FUZZ_ASSERT(data_batch(ds, DATA_TRAIN, 0, 0, 2, x, labels, err, sizeof err) == 2);
    check_images(x, labels, 2);
    int last = data_batches(ds, DATA_VAL, 2) - 1;
    int n = data_batch(ds, DATA_VAL, 0, last, 2, x, labels, err, sizeof err);
    FUZZ_ASSERT(n >= 1 && n <= 2);
    check_images(x, labels, n);
    FUZZ_ASSERT(data_sample(ds, DATA_VAL, (int)records - 1, x, labels, err, sizeof err) == 0);
    check_images(x, labels, 1);
    FUZZ_ASSERT(labels[0] == data[(records - 1) * RECORD]); /* file order: the last record's label */
    data_close(ds);
    return 0;
}
