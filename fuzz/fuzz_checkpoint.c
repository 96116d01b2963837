/* fuzz_checkpoint.c - libFuzzer target: the training checkpoint reader (checkpoint_load,
 * checkpoint_get; format in cli/checkpoint.h). The input is a whole checkpoint.ppc. It is
 * read as given, then once more with its last 8 bytes replaced by the right checksum, so
 * that mutations get past the checksum to the parser behind it. A read either fails with
 * a message or yields a text and two float arrays that add up to the file's size. */
#define _POSIX_C_SOURCE 200809L /* strnlen */
#include "checkpoint.h"
#include "fuzz_util.h"

#include <stdlib.h>
#include <string.h>

static const char *const keys[] = {"epoch", "next_batch", "step",  "loss_sum", "correct",
                                   "seen",  "seconds",    "model", "policy",   ""};

static void load(const uint8_t *data, size_t size)
{
    pp_context *ctx = fuzz_util_context();
    fuzz_util_write("checkpoint.ppc", data, size);
    checkpoint c;
    char err[512] = "";
    if (checkpoint_load(ctx, fuzz_util_dir(), &c, err, sizeof err) != 0) {
        FUZZ_ASSERT(err[0] != '\0');
        return;
    }
    size_t text_len = strnlen(c.text, CHECKPOINT_TEXT_MAX);
    FUZZ_ASSERT(text_len < CHECKPOINT_TEXT_MAX);
    FUZZ_ASSERT(c.params != NULL && c.momentum != NULL);
    /* magic, text length, text, count, params, count, momentum, checksum: nothing else (a
     * NUL inside the stored text only shortens c.text). */
    uint64_t stored_len = 0;
    for (int i = 7; i >= 0; i--) stored_len = stored_len << 8 | data[8 + i];
    FUZZ_ASSERT(text_len <= stored_len && stored_len < CHECKPOINT_TEXT_MAX);
    FUZZ_ASSERT(8 + 8 + stored_len + 8 + c.param_count * 4 + 8 + c.momentum_count * 4 + 8 == size);
    FUZZ_ASSERT(c.param_count <= size / 4 && c.momentum_count <= size / 4);
    FUZZ_ASSERT(memcmp(c.momentum, data + size - 8 - c.momentum_count * 4, c.momentum_count * 4) == 0);
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char small[4], big[256];
        const char *v = checkpoint_get(&c, keys[i], small, sizeof small);
        FUZZ_ASSERT(!v || strlen(v) < sizeof small);
        v = checkpoint_get(&c, keys[i], big, sizeof big);
        FUZZ_ASSERT(!v || strlen(v) < sizeof big);
    }
    checkpoint_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    load(data, size);
    if (size < 8) return 0;
    uint8_t *fixed = malloc(size);
    if (!fixed) return 0;
    memcpy(fixed, data, size);
    uint64_t sum = checkpoint_fnv1a(CHECKPOINT_FNV_BASIS, fixed, size - 8);
    for (int i = 0; i < 8; i++) fixed[size - 8 + i] = (uint8_t)(sum >> (8 * i)); /* little-endian u64 */
    if (memcmp(fixed, data, size) != 0) load(fixed, size);
    free(fixed);
    return 0;
}
