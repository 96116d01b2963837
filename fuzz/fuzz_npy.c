/* fuzz_npy.c - libFuzzer target: the .npy reader (npy_read_f32, npy_read_labels). The input
 * is a whole file. A read either fails with a message or yields an array whose shape,
 * count and data agree with each other and fit in the file. */
#include "fuzz_util.h"
#include "npy.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[1024];
    const char *path = fuzz_util_write("input.npy", data, size);
    npy_array a;
    memset(&a, 0, sizeof a);
    if ((err[0] = 0, npy_read_f32(path, -1, &a, err, sizeof err)) == PP_OK) {
        FUZZ_ASSERT(a.rank >= 0 && a.rank <= NPY_MAX_RANK);
        size_t count = 1;
        for (int i = 0; i < a.rank; i++) count *= a.shape[i];
        FUZZ_ASSERT(count == a.count);
        FUZZ_ASSERT(a.data != NULL);
        FUZZ_ASSERT(a.count <= size / 4);
        /* '<f4' only, nothing after the data: the array is the file's last count*4 bytes. */
        FUZZ_ASSERT(memcmp(a.data, data + size - a.count * 4, a.count * 4) == 0);
        npy_array_free(&a);
    } else {
        FUZZ_ASSERT(err[0] != '\0');
    }
    /* The same file with a rank it may not have: a mismatch is an error, never a crash. */
    memset(&a, 0, sizeof a);
    if (npy_read_f32(path, 4, &a, err, sizeof err) == PP_OK) {
        FUZZ_ASSERT(a.rank == 4);
        npy_array_free(&a);
    }
    npy_labels l;
    memset(&l, 0, sizeof l);
    if ((err[0] = 0, npy_read_labels(path, &l, err, sizeof err)) == PP_OK) {
        FUZZ_ASSERT(l.data != NULL);
        FUZZ_ASSERT(l.count <= size / 4);
        if (l.count > 0) { /* the last label is the file's last 4 ('<i4') or 8 ('<i8') bytes */
            int32_t i4;
            int64_t i8;
            memcpy(&i4, data + size - 4, 4);
            if (size >= 8) memcpy(&i8, data + size - 8, 8);
            FUZZ_ASSERT(l.data[l.count - 1] == i4 || (size >= 8 && l.data[l.count - 1] == i8));
        }
        npy_labels_free(&l);
    } else {
        FUZZ_ASSERT(err[0] != '\0');
    }
    return 0;
}
