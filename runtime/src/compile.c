/* compile.c - compile_prefetch (compile.h): many kernels compiled into the on-disk cache
 * on several threads at once, before the sequential compile-and-load that follows finds
 * them there.
 *
 * Invariant: a worker runs the backend's prepare() on its own copy of the context (error
 * buffer, counters, no log callback), and prepare() only reads the shared backend state;
 * the cache's files are written under unique temporary names and renamed, so workers
 * writing the same entry cannot corrupt it. */
#include "compile.h"

#include "cache.h"
#include "context.h"
#include "nvrtc_compile.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct prefetch_job {
    const pp_context *ctx;
    const pp_compile_request *reqs;
    int n, static_check_arch;
    atomic_int next;
} prefetch_job;

static void *worker(void *arg)
{
    prefetch_job *job = arg;
    pp_context *own = malloc(sizeof *own);
    if (!own) return NULL;
    memcpy(own, job->ctx, sizeof *own);
    own->options.log = NULL;
    for (int i; (i = atomic_fetch_add(&job->next, 1)) < job->n;) {
        const pp_compile_request *r = &job->reqs[i];
        own->ops->prepare(own, r);
        if (job->static_check_arch > 0) {
            pp_nvrtc_output o;
            if (nvrtc_compile(own, r->source, r->source_name, job->static_check_arch, &o) == PP_OK)
                nvrtc_output_free(&o);
        }
    }
    free(own);
    return NULL;
}

void compile_prefetch(pp_context *ctx, const pp_compile_request *reqs, int n, int static_check_arch)
{
    if (!ctx || !ctx->ops || !ctx->ops->prepare || ctx->options.disable_cache || n < 2) return;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = (int)(cpus < 1 ? 1 : cpus > 32 ? 32 : cpus);
    if (threads > n) threads = n;
    if (threads < 2) return;
    prefetch_job job = {ctx, reqs, n, static_check_arch, 0};
    pthread_t *tids = calloc((size_t)threads, sizeof *tids);
    if (!tids) return;
    int started = 0;
    for (int t = 0; t < threads; t++)
        if (pthread_create(&tids[started], NULL, worker, &job) == 0) started++;
    /* With no thread started, the sequential compile does all the work. */
    for (int t = 0; t < started; t++) pthread_join(tids[t], NULL);
    free(tids);
}
