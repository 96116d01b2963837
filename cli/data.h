/* data.h - the image data sets of `poolprop train`: a procedurally generated, learnable set
 * of noisy shapes (`synthetic`, any image size) and the CIFAR-10 binary files
 * (`cifar10:DIR`). Batches come out as the runtime wants them: x (batch,3,H,W) float32,
 * normalised, and int32 labels 0..9.
 *
 * Invariant: a batch is a pure function of (spec, options, split, epoch, batch index,
 * batch size). The train order of an epoch depends on (seed, epoch) alone; augmentation on
 * (seed, epoch, sample index) alone; a synthetic image on (seed, split, sample index)
 * alone. No RNG state is carried from call to call, so a checkpoint only needs the
 * position (epoch, batch index), and any batch can be recomputed in any order.
 *
 * Errors: functions that can fail return 0 (or a count) on success and -1 (data_open:
 * non-zero) on failure, with a one-line message in err (file names included). A dataset
 * is used by one thread at a time (data_batch caches the order of the last epoch). */
#ifndef PP_CLI_DATA_H
#define PP_CLI_DATA_H

#include <stddef.h>
#include <stdint.h>

#define DATA_CLASSES 10
#define DATA_AUGMENT_DEFAULT (-1)
#define DATA_MAX_THREADS 16 /* workers of data_batch at most */

typedef enum data_split {
    DATA_TRAIN = 0,
    DATA_VAL = 1
} data_split;

typedef struct data_options {
    int height, width; /* image size; synthetic: any >= 4 (at most 4096); cifar10: 32x32 only */
    uint64_t seed;     /* train order, augmentation and the synthetic images */
    int train_size;    /* images in the split; 0: the default (synthetic 5000 / 1000; cifar10 */
    int val_size;      /*   the whole split, 50000 / 10000); cifar10: the first N records */
    int augment;       /* training augmentation (crop with padding, horizontal flip): 1 on,
                           0 off, DATA_AUGMENT_DEFAULT: on for cifar10, off for synthetic */
    int threads;       /* threads that make a batch's images: 0 one per online CPU, at most
                           DATA_MAX_THREADS; the images do not depend on it */
} data_options;

typedef struct dataset dataset;

/* Defaults: 32x32, seed 1, default sizes, default augmentation. */
void data_options_init(data_options *o);

/* spec: "synthetic" or "cifar10:DIR". cifar10 reads DIR/data_batch_1.bin .. data_batch_5.bin
 * (train) and DIR/test_batch.bin (val) into memory: each a whole number (>= 1) of 3073-byte
 * records (1 label byte 0..9, then 1024 R, 1024 G, 1024 B bytes, row-major 32x32); the
 * standard files have 10000 records (30730000 bytes) each. Returns 0 and *out, or non-zero
 * with a message in err (the file and what is wrong with it) and *out = NULL. */
int data_open(const char *spec, const data_options *o, dataset **out, char *err, size_t err_len);
void data_close(dataset *ds);

/* Images in a split after any size limit; -1 for a bad split. */
int data_size(const dataset *ds, data_split split);
/* Batches per epoch: train drops the last partial batch (floor(n / batch_size)); val
 * keeps it (ceil(n / batch_size)). 0 for batch_size < 1 or a bad split. */
int data_batches(const dataset *ds, data_split split, int batch_size);

/* Fixes the order of an epoch: train is a permutation of 0..n-1 shuffled from (seed, epoch)
 * alone; val is file order for every epoch. data_batch calls it itself when the epoch
 * changes; calling it ahead only moves the O(n) shuffle out of the first batch. Returns 0,
 * or -1 with err for a bad split or a negative epoch. */
int data_epoch_begin(dataset *ds, data_split split, int epoch, char *err, size_t err_len);

/* Fills batch `index` (0 .. data_batches-1) of the epoch: x (batch_size,3,H,W), labels
 * (batch_size). Returns the number of real images: batch_size for train, and for val the
 * last batch may hold fewer; the slots past the returned count are zero images with label 0
 * and must be ignored by the caller. -1 with err on a bad split, epoch, index or size. */
int data_batch(dataset *ds, data_split split, int epoch, int index, int batch_size, float *x, int32_t *labels,
               char *err, size_t err_len);

/* Image size, for callers that did not choose it. */
void data_image_size(const dataset *ds, int *height, int *width);

/* The normalised pixels of one image before augmentation (3,H,W) and its label: sample
 * `index` of the split in file order, for tests and inspection. -1 with err if out of range. */
int data_sample(dataset *ds, data_split split, int index, float *x, int32_t *label, char *err, size_t err_len);

#endif
