/* scheduler.c - the host emulation backend's grid runner (contract in scheduler.h).
 *
 * A launch starts min(threads, blocks) workers: the calling thread plus pthreads created
 * for the launch. Workers take block indices from a shared atomic counter until the grid
 * is done or some block failed. A worker runs a block as one fiber per CUDA thread and
 * makes passes over the threads in schedule order (forward, reverse, or a permutation per
 * pass drawn from the seed, the block index and the pass number, so shuffled runs are
 * reproducible whatever the number of workers); each ready thread runs until it waits at
 * a barrier or a warp exchange, or exits.
 *
 * Invariants of a block (all fields of `worker`, touched only by its OS thread):
 * - nready == number of threads in state READY; a pass loop ends when it is 0.
 * - bar_waiting threads are in WAIT_BAR, all from line bar_line; the barrier releases
 *   when all nthreads threads wait (so an exited thread makes it deadlock).
 * - warps[w].arrived lanes of warp w are in WAIT_WARP, all from line warps[w].line; the
 *   exchange releases when all lanes that exist in the block have arrived, and every
 *   lane's result array is filled before any of them resumes.
 * - A mismatched line is reported when it arrives; a deadlock when nready reaches 0
 *   with threads still waiting. Either ends the block: suspended fibers are abandoned
 *   and their stacks go back to the worker's free list.
 * Per-OS-thread state is the _Thread_local `current` worker; nothing else is global. */
#define _GNU_SOURCE
#include "scheduler.h"

#include "fiber.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
    MAX_WORKERS = 256,
    WARP = 32
};
enum thread_status {
    ST_READY,
    ST_RUNNING,
    ST_WAIT_BAR,
    ST_WAIT_WARP,
    ST_DONE
};

struct emu_stack_pool {
    pthread_mutex_t lock;
    fiber_stack **items;
    int count, cap;
};

typedef struct emu_thread {
    pp_emu_thread_state state; /* what abi->self() hands to the module */
    fiber fib;
    fiber_stack *stack; /* NULL until first run and after exit */
    int status;
    int line;
    unsigned long long value; /* published to a warp exchange */
    unsigned long long *out;  /* where the exchange's results go */
} emu_thread;

typedef struct warp_state {
    int arrived, line, first, lanes;
} warp_state;

typedef struct launch_state {
    const emu_launch_desc *d;
    uint64_t nblocks;
    atomic_uint_fast64_t next_block;
    atomic_int stop;
    pthread_mutex_t lock; /* guards the fields below */
    int failed;
    pp_status status;
    char message[2048];
} launch_state;

typedef struct worker {
    launch_state *launch;
    pthread_t tid;
    int started;
    /* the block being run */
    int nthreads;
    emu_thread *threads;
    warp_state *warps;
    int nwarps;
    unsigned *order;
    fiber sched;
    int cur;
    int nready, done, bar_waiting, bar_line, bar_first;
    pp_emu_dim3 block_idx;
    int failed;
    pp_status status;
    char message[1536];
    /* stacks this worker holds, all free between blocks */
    fiber_stack **free_stacks;
    int nfree;
    /* plain mode: where a failing thread returns to (no fiber to abandon) */
    int plain;
    jmp_buf plain_exit;
} worker;

static _Thread_local worker *current;

/* ---- stacks ---- */

emu_stack_pool *emu_stack_pool_create(void)
{
    emu_stack_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    if (pthread_mutex_init(&p->lock, NULL) != 0) {
        free(p);
        return NULL;
    }
    return p;
}

void emu_stack_pool_destroy(emu_stack_pool *pool)
{
    if (!pool) return;
    for (int i = 0; i < pool->count; i++) {
        fiber_stack_free(pool->items[i]);
        free(pool->items[i]);
    }
    free(pool->items);
    pthread_mutex_destroy(&pool->lock);
    free(pool);
}

static void stack_destroy(fiber_stack *s)
{
    fiber_stack_free(s);
    free(s);
}

static fiber_stack *stack_get(worker *w)
{
    if (w->nfree > 0) return w->free_stacks[--w->nfree];
    emu_stack_pool *pool = w->launch->d->pool;
    fiber_stack *s = NULL;
    if (pool) {
        pthread_mutex_lock(&pool->lock);
        if (pool->count > 0) s = pool->items[--pool->count];
        pthread_mutex_unlock(&pool->lock);
        if (s) return s;
    }
    s = malloc(sizeof *s);
    if (!s) return NULL;
    if (fiber_stack_alloc(s, EMU_STACK_SIZE) != 0) {
        free(s);
        return NULL;
    }
    return s;
}

/* Room for every stack the worker can hold is reserved up front (one per thread of a
 * block), so giving a stack back never fails. */
static void stack_put(worker *w, fiber_stack *s) { w->free_stacks[w->nfree++] = s; }

static void stacks_return_to_pool(worker *w)
{
    emu_stack_pool *pool = w->launch->d->pool;
    int kept = 0;
    if (pool) {
        pthread_mutex_lock(&pool->lock);
        if (pool->cap - pool->count < w->nfree) {
            int cap = pool->count + w->nfree + 64;
            fiber_stack **items = realloc(pool->items, (size_t)cap * sizeof *items);
            if (items) {
                pool->items = items;
                pool->cap = cap;
            }
        }
        while (kept < w->nfree && pool->count < pool->cap) pool->items[pool->count++] = w->free_stacks[kept++];
        pthread_mutex_unlock(&pool->lock);
    }
    for (int i = kept; i < w->nfree; i++) stack_destroy(w->free_stacks[i]);
    w->nfree = 0;
}

/* ---- errors ---- */

static int fmt_dim(char *buf, size_t len, pp_emu_dim3 d) { return snprintf(buf, len, "(%u,%u,%u)", d.x, d.y, d.z); }

/* Records the block's failure (the first one wins); `thread` names the thread it is
 * about, or -1. */
static void block_fail(worker *w, pp_status status, int thread, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void block_fail(worker *w, pp_status status, int thread, const char *fmt, ...)
{
    if (w->failed) return;
    w->failed = 1;
    w->status = status;
    char block[64], what[1024];
    fmt_dim(block, sizeof block, w->block_idx);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (thread >= 0) {
        char th[64];
        fmt_dim(th, sizeof th, w->threads[thread].state.thread_idx);
        snprintf(w->message, sizeof w->message, "kernel %s: block %s, thread %s: %s", w->launch->d->kernel_name, block,
                 th, what);
    } else {
        snprintf(w->message, sizeof w->message, "kernel %s: block %s: %s", w->launch->d->kernel_name, block, what);
    }
}

static const char *tid_str(worker *w, int i, char *buf, size_t len)
{
    fmt_dim(buf, len, w->threads[i].state.thread_idx);
    return buf;
}

/* ---- the ABI callbacks (run on a fiber) ---- */

static pp_emu_thread_state *abi_self(void) { return &current->threads[current->cur].state; }

/* Ends the running fiber (or, in plain mode, the running call) after a failure was
 * recorded; never returns. */
static void abandon(worker *w) __attribute__((noreturn));
static void abandon(worker *w)
{
    if (w->plain) longjmp(w->plain_exit, 1);
    fiber_exit(&w->threads[w->cur].fib, &w->sched);
}

static void refuse_in_plain_mode(worker *w, const char *what, int line)
{
    if (!w->plain) return;
    block_fail(w, PP_ERR_KERNEL, w->cur,
               "line %d: %s in a kernel run as a plain loop (its source names no barrier or warp operation)", line,
               what);
    abandon(w);
}

static void abi_syncthreads(int line)
{
    worker *w = current;
    refuse_in_plain_mode(w, "__syncthreads", line);
    int i = w->cur;
    emu_thread *t = &w->threads[i];
    if (w->bar_waiting == 0) {
        w->bar_line = line;
        w->bar_first = i;
    } else if (line != w->bar_line) {
        char a[64], b[64];
        block_fail(w, PP_ERR_KERNEL, i, "divergent __syncthreads: thread %s at line %d, thread %s at line %d",
                   tid_str(w, w->bar_first, a, sizeof a), w->bar_line, tid_str(w, i, b, sizeof b), line);
        abandon(w);
    }
    t->status = ST_WAIT_BAR;
    t->line = line;
    if (++w->bar_waiting == w->nthreads) {
        for (int k = 0; k < w->nthreads; k++) w->threads[k].status = ST_READY;
        w->nready += w->nthreads;
        w->bar_waiting = 0;
    }
    fiber_switch(&t->fib, &w->sched);
}

static void abi_warp_exchange(unsigned long long value, unsigned long long all_values[32], int line)
{
    refuse_in_plain_mode(current, "a warp operation", line);
    worker *w = current;
    int i = w->cur;
    emu_thread *t = &w->threads[i];
    warp_state *ws = &w->warps[i / WARP];
    if (ws->arrived == 0) {
        ws->line = line;
        ws->first = i;
    } else if (line != ws->line) {
        char a[64], b[64];
        block_fail(w, PP_ERR_KERNEL, i,
                   "divergent warp operation in warp %d: thread %s at line %d, thread %s at line %d", i / WARP,
                   tid_str(w, ws->first, a, sizeof a), ws->line, tid_str(w, i, b, sizeof b), line);
        abandon(w);
    }
    t->status = ST_WAIT_WARP;
    t->line = line;
    t->value = value;
    t->out = all_values;
    if (++ws->arrived == ws->lanes) {
        emu_thread *lane = &w->threads[(i / WARP) * WARP];
        unsigned long long values[WARP] = {0};
        for (int l = 0; l < ws->lanes; l++) values[l] = lane[l].value;
        for (int l = 0; l < ws->lanes; l++) {
            memcpy(lane[l].out, values, sizeof values);
            lane[l].status = ST_READY;
        }
        w->nready += ws->lanes;
        ws->arrived = 0;
    }
    fiber_switch(&t->fib, &w->sched);
}

static void abi_trap(const char *message, int line)
{
    worker *w = current;
    block_fail(w, PP_ERR_KERNEL, w->cur, "line %d: %s", line, message ? message : "trap");
    abandon(w);
}

static const pp_emu_abi the_abi = {
    PP_EMU_ABI_VERSION, abi_self, abi_syncthreads, abi_warp_exchange, abi_trap,
};

const pp_emu_abi *emu_abi(void) { return &the_abi; }

/* ---- running a block ---- */

static void thread_main(void *arg)
{
    worker *w = arg;
    emu_thread *t = &w->threads[w->cur];
    w->launch->d->entry(w->launch->d->args);
    t->status = ST_DONE;
    w->done++;
    fiber_exit(&t->fib, &w->sched);
}

static void run_thread(worker *w, int i)
{
    emu_thread *t = &w->threads[i];
    if (!t->stack) {
        t->stack = stack_get(w);
        if (!t->stack) {
            block_fail(w, PP_ERR_OUT_OF_MEMORY, i, "cannot map a %d KiB fiber stack", EMU_STACK_SIZE / 1024);
            return;
        }
        fiber_init(&t->fib, t->stack, thread_main, w);
    }
    w->cur = i;
    t->status = ST_RUNNING;
    w->nready--;
    fiber_switch(&w->sched, &t->fib);
    if (t->status == ST_DONE) {
        stack_put(w, t->stack);
        t->stack = NULL;
    }
}

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void shuffle_order(worker *w, uint64_t block, uint64_t pass)
{
    uint64_t s = w->launch->d->seed;
    s = splitmix64(&s) ^ block;
    s = splitmix64(&s) ^ pass;
    int n = w->nthreads;
    for (int k = 0; k < n; k++) w->order[k] = (unsigned)k;
    for (int k = n - 1; k > 0; k--) {
        int j = (int)(splitmix64(&s) % (uint64_t)(k + 1));
        unsigned tmp = w->order[k];
        w->order[k] = w->order[j];
        w->order[j] = tmp;
    }
}

static void report_deadlock(worker *w)
{
    int n = w->nthreads, at_warp = 0;
    for (int k = 0; k < n; k++) at_warp += w->threads[k].status == ST_WAIT_WARP;
    if (at_warp == 0) {
        block_fail(w, PP_ERR_KERNEL, w->bar_first,
                   "deadlock: %d threads wait at __syncthreads (line %d) but %d threads of the block have exited",
                   w->bar_waiting, w->bar_line, w->done);
        return;
    }
    for (int wi = 0; wi < w->nwarps; wi++) {
        warp_state *ws = &w->warps[wi];
        if (ws->arrived == 0) continue;
        int exited = 0, at_bar = 0;
        for (int l = 0; l < ws->lanes; l++) {
            int st = w->threads[wi * WARP + l].status;
            exited += st == ST_DONE;
            at_bar += st == ST_WAIT_BAR;
        }
        char bar[96] = "";
        if (at_bar > 0) snprintf(bar, sizeof bar, ", %d wait at __syncthreads (line %d)", at_bar, w->bar_line);
        block_fail(w, PP_ERR_KERNEL, ws->first,
                   "deadlock: %d lanes of warp %d wait at a warp operation (line %d) but %d of its lanes have "
                   "exited%s (block: %d threads at __syncthreads, %d at warp operations, %d exited)",
                   ws->arrived, wi, ws->line, exited, bar, w->bar_waiting, at_warp, w->done);
        return;
    }
    block_fail(w, PP_ERR_INTERNAL, -1, "scheduler: no thread can run but none waits");
}

/* Runs block b; 0 on failure (message in w). */
static int run_block(worker *w, uint64_t b)
{
    const emu_launch_desc *d = w->launch->d;
    const unsigned bx = d->block[0], by = d->block[1];
    const pp_emu_dim3 grid = {d->grid[0], d->grid[1], d->grid[2]};
    const pp_emu_dim3 block = {d->block[0], d->block[1], d->block[2]};
    w->block_idx.x = (unsigned)(b % grid.x);
    w->block_idx.y = (unsigned)(b / grid.x % grid.y);
    w->block_idx.z = (unsigned)(b / ((uint64_t)grid.x * grid.y));
    const int n = w->nthreads;
    for (int k = 0; k < n; k++) {
        emu_thread *t = &w->threads[k];
        t->state.thread_idx.x = (unsigned)k % bx;
        t->state.thread_idx.y = (unsigned)k / bx % by;
        t->state.thread_idx.z = (unsigned)k / (bx * by);
        t->state.block_idx = w->block_idx;
        t->state.block_dim = block;
        t->state.grid_dim = grid;
        t->status = ST_READY;
        t->stack = NULL;
    }
    for (int k = 0; k < w->nwarps; k++) w->warps[k].arrived = 0;
    w->nready = n;
    w->done = 0;
    w->bar_waiting = 0;
    w->failed = 0;

    const pp_schedule sched = d->schedule;
    if (w->plain) {
        if (sched == PP_SCHEDULE_SHUFFLED) shuffle_order(w, b, 0);
        for (int k = 0; k < n && !w->failed; k++) {
            int i = sched == PP_SCHEDULE_FORWARD ? k : sched == PP_SCHEDULE_REVERSE ? n - 1 - k : (int)w->order[k];
            w->cur = i;
            if (setjmp(w->plain_exit) == 0) d->entry(d->args);
        }
        return !w->failed;
    }
    for (uint64_t pass = 0; w->nready > 0 && !w->failed; pass++) {
        if (sched == PP_SCHEDULE_SHUFFLED) shuffle_order(w, b, pass);
        for (int k = 0; k < n && !w->failed; k++) {
            int i = sched == PP_SCHEDULE_FORWARD ? k : sched == PP_SCHEDULE_REVERSE ? n - 1 - k : (int)w->order[k];
            if (w->threads[i].status == ST_READY) run_thread(w, i);
        }
    }
    if (!w->failed && w->done < n) report_deadlock(w);
    for (int k = 0; k < n; k++) { /* stacks of abandoned fibers */
        if (w->threads[k].stack) {
            stack_put(w, w->threads[k].stack);
            w->threads[k].stack = NULL;
        }
    }
    return !w->failed;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    launch_state *L = w->launch;
    worker *prev = current;
    current = w;
    fiber_init_current(&w->sched);
    while (!atomic_load_explicit(&L->stop, memory_order_relaxed)) {
        uint64_t b = atomic_fetch_add_explicit(&L->next_block, 1, memory_order_relaxed);
        if (b >= L->nblocks) break;
        if (!run_block(w, b)) {
            pthread_mutex_lock(&L->lock);
            if (!L->failed) {
                L->failed = 1;
                L->status = w->status;
                snprintf(L->message, sizeof L->message, "%s", w->message);
            }
            pthread_mutex_unlock(&L->lock);
            atomic_store(&L->stop, 1);
            break;
        }
    }
    current = prev;
    return NULL;
}

static void worker_release(worker *w)
{
    if (w->free_stacks) stacks_return_to_pool(w);
    free(w->free_stacks);
    free(w->threads);
    free(w->warps);
    free(w->order);
}

static int worker_setup(worker *w, launch_state *L, int nthreads)
{
    w->launch = L;
    w->plain = L->d->plain;
    w->nthreads = nthreads;
    w->nwarps = (nthreads + WARP - 1) / WARP;
    w->threads = calloc((size_t)nthreads, sizeof *w->threads);
    w->warps = calloc((size_t)w->nwarps, sizeof *w->warps);
    w->order = calloc((size_t)nthreads, sizeof *w->order);
    w->free_stacks = calloc((size_t)nthreads, sizeof *w->free_stacks);
    if (!w->threads || !w->warps || !w->order || !w->free_stacks) return 0;
    for (int k = 0; k < w->nwarps; k++) {
        int lanes = nthreads - k * WARP;
        w->warps[k].lanes = lanes < WARP ? lanes : WARP;
    }
    return 1;
}

pp_status emu_launch(pp_context *ctx, const emu_launch_desc *d)
{
    if (!d || !d->entry) return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "emu_launch: no kernel entry");
    const unsigned *g = d->grid, *bl = d->block;
    const char *name = d->kernel_name ? d->kernel_name : "?";
    if (g[0] < 1 || g[1] < 1 || g[2] < 1 || g[0] > 0x7fffffffu || g[1] > 65535 || g[2] > 65535)
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "kernel %s: invalid grid (%u,%u,%u)", name, g[0], g[1], g[2]);
    if (bl[0] < 1 || bl[1] < 1 || bl[2] < 1 || bl[0] > 1024 || bl[1] > 1024 || bl[2] > 64 ||
        (uint64_t)bl[0] * bl[1] * bl[2] > 1024)
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT,
                        "kernel %s: invalid block (%u,%u,%u): at most (1024,1024,64) and 1024 threads", name, bl[0],
                        bl[1], bl[2]);
    if (d->schedule < PP_SCHEDULE_FORWARD || d->schedule > PP_SCHEDULE_SHUFFLED)
        return ctx_fail(ctx, PP_ERR_INVALID_ARGUMENT, "unknown schedule %d", (int)d->schedule);

    launch_state L;
    memset(&L, 0, sizeof L);
    L.d = d;
    L.nblocks = (uint64_t)g[0] * g[1] * g[2];
    atomic_init(&L.next_block, 0);
    atomic_init(&L.stop, 0);
    if (pthread_mutex_init(&L.lock, NULL) != 0) return ctx_fail(ctx, PP_ERR_INTERNAL, "pthread_mutex_init failed");

    long nw = d->threads > 0 ? d->threads : sysconf(_SC_NPROCESSORS_ONLN);
    if (nw < 1) nw = 1;
    if (nw > MAX_WORKERS) nw = MAX_WORKERS;
    if ((uint64_t)nw > L.nblocks) nw = (long)L.nblocks;
    const int nthreads = (int)(bl[0] * bl[1] * bl[2]);

    worker *workers = calloc((size_t)nw, sizeof *workers);
    pp_status st = PP_OK;
    if (!workers) {
        pthread_mutex_destroy(&L.lock);
        return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "kernel %s: out of memory for %ld workers", name, nw);
    }
    for (long k = 0; k < nw; k++) {
        if (!worker_setup(&workers[k], &L, nthreads)) {
            st = ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "kernel %s: out of memory for the block state", name);
            break;
        }
    }
    if (st == PP_OK) {
        for (long k = 1; k < nw; k++) /* a worker that cannot start leaves its share to the others */
            workers[k].started = pthread_create(&workers[k].tid, NULL, worker_main, &workers[k]) == 0;
        worker_main(&workers[0]);
        for (long k = 1; k < nw; k++)
            if (workers[k].started) pthread_join(workers[k].tid, NULL);
        if (L.failed) st = ctx_fail(ctx, L.status, "%s", L.message);
    }
    for (long k = 0; k < nw; k++) worker_release(&workers[k]);
    free(workers);
    pthread_mutex_destroy(&L.lock);
    return st;
}
