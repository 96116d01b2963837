/* test_kernel_compile.c - the static check of DESIGN.md section 5, tier 2: every kernel
 * the generator emits compiles with NVRTC for sm_80 and sm_90 with zero spill bytes and
 * within the register file (255 per thread). Covers every layer of the embedded default
 * set (its layers with channel counts that are not multiples of 8 also with bf16 storage:
 * the BF16 defaults' narrow and synchronous 2-byte copies), every declared variant of each op on a representative 3x3 layer (fp32, TF32
 * and BF16 tensor cores, with and without cp.async pipelining; printed one per line), and every
 * kernel of a whole training step (CIFAR ResNet-8 under several policies, TF32, BF16 and
 * bf16 storage (act=bf16) included, with their BN partial statistics in the conv epilogues, and a
 * ResNet-18 with 64x64 images). Prints registers, spills and
 * shared memory per kernel.
 * The BF16 variants are compiled in their bf16-storage form (what they are for; shared
 * memory checked against pp_variant_info.shared_bytes_bf16), and in the fp32-storage form
 * only as a covering set (variants in index order until every value of every parameter
 * has compiled once).
 * The variant sweep compiles every variant for sm_80 (where ptxas has been the tighter:
 * the one spill this sweep has found was sm_80's) and, per op and storage form, a covering
 * set for sm_90 (the same rule); every kernel of the default layer set and of the
 * networks, which is what models build, compiles for both. The sweep is the bulk of this
 * test (one NVRTC compile is about a CPU-second), and both arches over all of it kept the
 * suite above its 20 minutes on 2 cores.
 * Two passes: the first only collects every (source, arch) and compiles them into the
 * kernel cache on every CPU at once; the second makes every check, reading NVRTC's output
 * (CUBIN and ptxas report) back from the cache. */
#include "gen_layer.h"
#include "gen_plan.h"
#include "nvrtc_compile.h"
#include "test_util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int kernels_checked, worst_registers;
/* The arches compile_kernels compiles for: bit 0 sm_80, bit 1 sm_90. */
static int arch_mask = 3;
static int spilling; /* compiles with spill bytes: each is named, and the test fails at the end */

/* Pass 1: the compiles to make, gathered instead of made. */
static int collecting;
typedef struct compile_job {
    char *source;
    char name[300];
    int arch;
} compile_job;
static compile_job *jobs;
static int job_count, job_capacity;
static atomic_int next_job;
static const pp_context *shared_ctx;

static void add_job(const gen_kernel *k, int arch)
{
    if (job_count == job_capacity) {
        job_capacity = job_capacity ? 2 * job_capacity : 256;
        jobs = realloc(jobs, sizeof *jobs * (size_t)job_capacity);
        CHECK(jobs != NULL, "out of memory");
    }
    compile_job *j = &jobs[job_count++];
    j->source = strdup(k->source);
    CHECK(j->source != NULL, "out of memory");
    snprintf(j->name, sizeof j->name, "%s.cu", k->name);
    j->arch = arch;
}

/* Each worker compiles with its own copy of the context (errors, counters); failures
 * are met again, and reported, by the checking pass. */
static void *compile_worker(void *arg)
{
    (void)arg;
    pp_context *own = malloc(sizeof *own);
    if (!own) return NULL;
    memcpy(own, shared_ctx, sizeof *own);
    for (int i; (i = atomic_fetch_add(&next_job, 1)) < job_count;) {
        pp_nvrtc_output out;
        if (nvrtc_compile(own, jobs[i].source, jobs[i].name, jobs[i].arch, &out) == PP_OK) nvrtc_output_free(&out);
    }
    free(own);
    return NULL;
}

static void compile_collected(pp_context *ctx)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = (int)(cpus < 1 ? 1 : cpus > 32 ? 32 : cpus);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    shared_ctx = ctx;
    pthread_t tids[32];
    int started = 0;
    for (int t = 0; t < threads; t++)
        if (pthread_create(&tids[started], NULL, compile_worker, NULL) == 0) started++;
    if (started == 0) compile_worker(NULL);
    for (int t = 0; t < started; t++) pthread_join(tids[t], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("pass 1: %d NVRTC compiles (or cache reads) on %d threads in %.1f s\n", job_count, started ? started : 1,
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    for (int i = 0; i < job_count; i++) free(jobs[i].source);
    free(jobs);
}

/* The ptxas report of the last kernel compiled for each arch (index 0: sm_80, 1: sm_90),
 * and the dynamic shared memory its launch gets. */
static pp_ptxas_info last_info[2];
static int last_dynamic_shared;

static void compile_kernels(pp_context *ctx, const gen_kernel *kernels, int count, int verbose);

static void compile_all(pp_context *ctx, const pp_layer_desc *d, int verbose)
{
    gen_layer g;
    CHECK_OK(ctx, gen_layer_from_desc(ctx, d, &g));
    compile_kernels(ctx, g.kernels, g.kernel_count, verbose);
    gen_layer_free(&g);
}

/* Compiles only the layer's kernel of op (the others do not change with its variant). */
static void compile_op(pp_context *ctx, const pp_layer_desc *d, const char *op)
{
    gen_layer g;
    CHECK_OK(ctx, gen_layer_from_desc(ctx, d, &g));
    for (int i = 0; i < g.kernel_count; i++)
        if (strcmp(g.kernels[i].op, op) == 0) compile_kernels(ctx, &g.kernels[i], 1, 0);
    gen_layer_free(&g);
}

/* sync_world > 1: synchronised BN over that many ranks (the sliced BN forms, global counts). */
static void compile_network(pp_context *ctx, const char *model, const char *policy, int batch, int image,
                            int sync_world)
{
    gen_plan p;
    gen_plan_request req = {.model = model,
                            .policy = policy,
                            .batch = batch,
                            .height = image,
                            .width = image,
                            .sources = 1,
                            .sync_world = sync_world};
    CHECK_OK(ctx, gen_plan_train(ctx, &req, &p));
    int before = kernels_checked;
    compile_kernels(ctx, p.kernels, p.kernel_count, 0);
    if (!collecting)
        printf("%s, batch %d, %dx%d, policy %s%s: %d distinct kernels compile for sm_80 and sm_90\n", model, batch,
               image, image, policy, sync_world > 1 ? ", synchronised BN over 2 ranks" : "",
               (kernels_checked - before) / 2);
    gen_plan_free(&p);
}

static void compile_kernels(pp_context *ctx, const gen_kernel *kernels, int count, int verbose)
{
    const int archs[2] = {80, 90};
    gen_layer g = {.kernels = (gen_kernel *)kernels, .kernel_count = count};
    for (int i = 0; i < g.kernel_count; i++) {
        for (int a = 0; a < 2; a++) {
            if (!(arch_mask & (1 << a))) continue;
            if (collecting) {
                add_job(&g.kernels[i], archs[a]);
                continue;
            }
            pp_nvrtc_output out;
            char source_name[300];
            snprintf(source_name, sizeof source_name, "%s.cu", g.kernels[i].name);
            CHECK_OK(ctx, nvrtc_compile(ctx, g.kernels[i].source, source_name, archs[a], &out));
            CHECK(out.arch == archs[a], "compiled for sm_%d, asked for sm_%d", out.arch, archs[a]);
            const pp_ptxas_info *info = NULL;
            for (int k = 0; k < out.kernel_count; k++)
                if (strcmp(out.kernels[k].name, g.kernels[i].name) == 0) info = &out.kernels[k].info;
            CHECK(info != NULL, "ptxas report has no entry for %s", g.kernels[i].name);
            if (verbose)
                printf("sm_%d %-58s regs %3d spill %d/%d smem %6d stack %d\n", archs[a], g.kernels[i].name,
                       info->registers, info->spill_store_bytes, info->spill_load_bytes, info->shared_bytes,
                       info->stack_bytes);
            CHECK(info->registers > 0 && info->registers <= 255, "%s: %d registers", g.kernels[i].name,
                  info->registers);
            if (info->spill_store_bytes != 0 || info->spill_load_bytes != 0) {
                fprintf(stderr, "%s for sm_%d spills %d/%d bytes\n", g.kernels[i].name, archs[a],
                        info->spill_store_bytes, info->spill_load_bytes);
                spilling++;
            }
            if (info->registers > worst_registers) worst_registers = info->registers;
            last_info[a] = *info;
            last_dynamic_shared = g.kernels[i].dynamic_shared;
            kernels_checked++;
            nvrtc_output_free(&out);
        }
    }
}

/* Whether a BF16 variant's fp32-storage form adds a parameter value ("BK=32") not yet
 * compiled in that form; if so, records its values. seen: "KEY=VALUE;" items. */
static int adds_coverage(const char *config, char *seen, size_t size)
{
    int fresh = 0;
    char item[48];
    for (const char *p = config; *p;) {
        size_t n = strcspn(p, " ");
        snprintf(item, sizeof item, "%.*s;", (int)(n < 40 ? n : 40), p);
        if (!strstr(seen, item)) {
            fresh = 1;
            CHECK(strlen(seen) + strlen(item) < size, "coverage list full");
            strcat(seen, item);
        }
        p += n;
        while (*p == ' ') p++;
    }
    return fresh;
}

static pp_context *ctx;     /* no backend: NVRTC only */
static int default_kernels; /* compiles of the default layer set */

static void default_layer_set(void)
{
    kernels_checked = worst_registers = 0;
    pp_layer_desc *descs;
    int count;
    CHECK_OK(ctx, pp_layer_file_load(ctx, NULL, &descs, &count));
    for (int i = 0; i < count; i++) compile_all(ctx, &descs[i], 1);
    /* bf16 storage, where its copies differ (the stems' and odd layers' 2-byte copies). */
    for (int i = 0; i < count; i++) {
        if (descs[i].c % 8 == 0 && descs[i].k % 8 == 0) continue;
        descs[i].storage = PP_STORAGE_BF16;
        compile_all(ctx, &descs[i], 1);
    }
    pp_layer_descs_free(descs, count);
    default_kernels = kernels_checked;
}

/* Every declared variant of each op, with its registers, spills and shared memory per
 * arch, and a summary per math mode. */
static void variant_sweep(void)
{
    const char *ops[3] = {"conv_fwd", "conv_bwd_data", "conv_bwd_weight"};
    for (int op = 0; op < 3; op++) {
        int variants;
        CHECK_OK(ctx, gen_layer_variant_count(ctx, ops[op], &variants));
        int lo[3] = {999, 999, 999}, hi[3] = {0, 0, 0}, smem[3] = {0, 0, 0}, n[3] = {0, 0, 0};
        int fp32_storage_bf16 = 0, on_sm90 = 0;
        char seen[2048] = "", seen_sm90[2][2048] = {"", ""}; /* sm_90 covering sets per storage form */
        for (int v = 1; v <= variants; v++) {
            pp_variant_info vi;
            CHECK_OK(ctx, gen_layer_variant_info(ctx, ops[op], v, &vi));
            const int bf16 = strcmp(vi.math, "bf16") == 0;
            pp_layer_desc d;
            pp_layer_desc_init(&d);
            d.n = 2, d.c = 24, d.h = 15, d.w = 15, d.k = 40, d.r = 3, d.s = 3, d.stride = 1, d.pad = 1, d.pool = 2;
            if (op == 0) d.variant_fwd = v;
            if (op == 1) d.variant_bwd_data = v;
            if (op == 2) d.variant_bwd_weight = v;
            /* BF16: the fp32-storage form of the covering set (first), then the bf16 form. */
            if (bf16 && adds_coverage(vi.config, seen, sizeof seen)) {
                arch_mask = 3;
                compile_op(ctx, &d, ops[op]);
                if (!collecting)
                    printf("%-15s v%-3d %-4s %-56s fp32 storage | sm_80 regs %3d spill %d | sm_90 regs %3d spill %d\n",
                           ops[op], v, vi.math, vi.config, last_info[0].registers,
                           last_info[0].spill_store_bytes + last_info[0].spill_load_bytes, last_info[1].registers,
                           last_info[1].spill_store_bytes + last_info[1].spill_load_bytes);
                fp32_storage_bf16++;
            }
            if (bf16) d.storage = PP_STORAGE_BF16;
            const int sm90 = adds_coverage(vi.config, seen_sm90[bf16], sizeof seen_sm90[bf16]);
            arch_mask = sm90 ? 3 : 1;
            compile_op(ctx, &d, ops[op]);
            arch_mask = 3;
            if (collecting) continue;
            on_sm90 += sm90;
            if (!sm90) last_info[1] = (pp_ptxas_info){0}; /* not compiled for sm_90: printed as 0 */
            const int declared = bf16 ? vi.shared_bytes_bf16 : vi.shared_bytes;
            printf("%-15s v%-3d %-4s %-56s threads %3d %s | sm_80 regs %3d spill %d smem %5d | sm_90 regs %3d spill %d "
                   "smem %5d\n",
                   ops[op], v, vi.math, vi.config, vi.threads, bf16 ? "bf16 storage" : "", last_info[0].registers,
                   last_info[0].spill_store_bytes + last_info[0].spill_load_bytes, last_info[0].shared_bytes,
                   last_info[1].registers, last_info[1].spill_store_bytes + last_info[1].spill_load_bytes,
                   last_info[1].shared_bytes);
            if (bf16)
                CHECK(vi.shared_bytes_bf16 * 2 == vi.shared_bytes, "v%d: bf16 tiles declare %d bytes, fp32 ones %d", v,
                      vi.shared_bytes_bf16, vi.shared_bytes);
            else
                CHECK(vi.shared_bytes_bf16 == 0, "v%d (%s) declares bf16 storage", v, vi.math);
            /* Static shared memory as ptxas reports it, or (above 48 KB) all of it dynamic. */
            if (last_dynamic_shared == 0)
                CHECK(last_info[0].shared_bytes >= declared && declared <= 48 * 1024,
                      "v%d: ptxas reports %d bytes of shared memory, the generator declared %d", v,
                      last_info[0].shared_bytes, declared);
            else
                CHECK(last_dynamic_shared == declared && declared > 48 * 1024 && last_info[0].shared_bytes < 1024,
                      "v%d: %d bytes of dynamic and %d of static shared memory, the generator declared %d", v,
                      last_dynamic_shared, last_info[0].shared_bytes, declared);
            int m = strcmp(vi.math, "tf32") == 0 ? 1 : bf16 ? 2 : 0;
            for (int a = 0; a < 1 + sm90; a++) {
                if (last_info[a].registers < lo[m]) lo[m] = last_info[a].registers;
                if (last_info[a].registers > hi[m]) hi[m] = last_info[a].registers;
                if (last_info[a].shared_bytes > smem[m]) smem[m] = last_info[a].shared_bytes;
            }
            n[m]++;
        }
        if (collecting) continue;
        printf("%s: all %d declared variants compile for sm_80, %d of them (covering every parameter value) also "
               "for sm_90 (BF16 with bf16 storage; %d of them also with fp32 storage, for both)\n",
               ops[op], variants, on_sm90, fp32_storage_bf16);
        const char *maths[3] = {"fp32", "tf32", "bf16"};
        for (int m = 0; m < 3; m++)
            if (n[m])
                printf("  %s%s: %d variants, registers %d..%d, shared memory up to %d bytes\n", maths[m],
                       m == 2 ? " (bf16 storage)" : "", n[m], lo[m], hi[m], smem[m]);
    }
}

static void networks(void)
{
    compile_network(ctx, "cifar_resnet8", "2", 2, 16, 1);
    compile_network(ctx, "cifar_resnet8", "4,mode=max,bn=bf16", 3, 12, 1);
    compile_network(ctx, "cifar_resnet8", "2,math=tf32", 2, 16, 1);
    compile_network(ctx, "cifar_resnet8", "2,math=bf16", 2, 16, 1);
    /* bf16 storage: every ACT_BF16 op kernel and the bf16 convolutions' step forms (BN
     * partials in conv_fwd, accumulating conv_bwd_data), which no variant sweep compiles. */
    compile_network(ctx, "cifar_resnet8", "2,act=bf16", 2, 16, 1);
    /* Synchronised BN: the sliced statistics and sums of every BN, with global counts. */
    compile_network(ctx, "cifar_resnet8", "2", 2, 16, 2);
    compile_network(ctx, "resnet18", "2", 2, 64, 1);
    if (!collecting)
        printf("%d compiles (%d from the default layer set), %d with spill bytes; most registers: %d\n",
               kernels_checked, default_kernels, spilling, worst_registers);
}

/* Pass 1: every (source, arch) the checks compile, into the kernel cache on every CPU. */
static void precompile_in_parallel(void)
{
    collecting = 1;
    default_layer_set();
    variant_sweep();
    networks();
    compile_collected(ctx);
    collecting = 0;
}

static void no_spills(void) { CHECK(spilling == 0, "%d compiles spill (named above)", spilling); }

static const test_case tests[] = {
    TEST_CASE(precompile_in_parallel,
              "pass 1: the compiles of the cases below, made in parallel into the kernel cache"),
    TEST_CASE(default_layer_set, "every kernel of the default layer set (bf16 storage too where C or K % 8 != 0): "
                                 "NVRTC for sm_80 and sm_90, <= 255 registers"),
    TEST_CASE(variant_sweep, "every declared conv variant for sm_80, a covering set for sm_90: registers, and shared "
                             "memory as the generator declared it"),
    TEST_CASE(networks, "every kernel of a training step (CIFAR ResNet-8 under 5 policies, TF32, BF16 and act=bf16 "
                        "among them, and under synchronised BN; ResNet-18 at 64x64) compiles for sm_80 and sm_90"),
    TEST_CASE(no_spills, "no compile above had spill bytes"),
};

int main(int argc, char **argv)
{
    const char *only = test_select(&argc, argv);
    pp_context_options o;
    pp_context_options_init(&o);
    o.backend = PP_BACKEND_NONE;
    CHECK_OK(ctx, pp_context_create(&o, &ctx));
    int status = TEST_RUN(tests, only);
    pp_context_destroy(ctx);
    return status;
}
