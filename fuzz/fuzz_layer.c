/* fuzz_layer.c - libFuzzer target: layer description files (Lua, one layer{...} call per
 * layer), through the public API: the input is written to layers.lua, read with
 * pp_layer_file_load and generated into a bundle with pp_bundle_write (backend none: the
 * generator runs, nothing compiles). Either call fails with a message, a failed bundle
 * writes nothing, and a bundle that is written comes from layers that load and are sane. */
#define _XOPEN_SOURCE 700
#include "fuzz_util.h"

#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>

static int remove_entry(const char *p, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st, (void)type, (void)ftw;
    remove(p);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 8192) return 0;
    pp_context *ctx = fuzz_util_context();
    char path[4200], out[4200], plan[4300];
    snprintf(path, sizeof path, "%s", fuzz_util_write("layers.lua", data, size));
    snprintf(out, sizeof out, "%s/bundle", fuzz_util_dir());
    snprintf(plan, sizeof plan, "%s/plan.lua", out);
    nftw(out, remove_entry, 16, FTW_DEPTH | FTW_PHYS);

    pp_layer_desc *descs = NULL;
    int count = -1;
    pp_status loaded = pp_layer_file_load(ctx, path, &descs, &count);
    if (loaded != PP_OK)
        FUZZ_ASSERT(pp_last_error(ctx)[0] != '\0');
    else
        FUZZ_ASSERT(count >= 0 && (count == 0 || descs != NULL));

    struct stat st;
    if (pp_bundle_write(ctx, path, out) == PP_OK) {
        FUZZ_ASSERT(stat(plan, &st) == 0 && S_ISREG(st.st_mode));
        FUZZ_ASSERT(loaded == PP_OK);
        for (int i = 0; i < count; i++) {
            const pp_layer_desc *d = &descs[i];
            FUZZ_ASSERT(d->n > 0 && d->c > 0 && d->h > 0 && d->w > 0 && d->k > 0 && d->r > 0 && d->s > 0);
            FUZZ_ASSERT(d->stride > 0 && d->pad >= 0);
            FUZZ_ASSERT(d->pool == 1 || d->pool == 2 || d->pool == 4 || d->pool == 8);
        }
    } else {
        FUZZ_ASSERT(pp_last_error(ctx)[0] != '\0');
        FUZZ_ASSERT(stat(out, &st) != 0); /* on any error nothing is written */
    }
    if (loaded == PP_OK) pp_layer_descs_free(descs, count);
    return 0;
}
