/* planner.c - places a plan's buffers in one arena. Buffers whose lifetimes (first..last
 * step, inclusive) overlap never share bytes. Greedy by size: the largest buffer first,
 * each at the lowest 256-byte-aligned offset where it fits between the buffers already
 * placed that are alive at the same time. The arena is the highest end; it is never below
 * the largest number of bytes alive at one step, and usually equal to it or close. */
#include "plan.h"

#include <stdlib.h>
#include <string.h>

enum {
    alignment = 256
};

static size_t align_up(size_t v) { return (v + alignment - 1) / alignment * alignment; }

static int by_size_desc(const void *a, const void *b)
{
    const plan_buffer *x = *(plan_buffer *const *)a, *y = *(plan_buffer *const *)b;
    if (x->bytes != y->bytes) return x->bytes < y->bytes ? 1 : -1;
    if (x->first != y->first) return x->first < y->first ? -1 : 1;
    return x < y ? -1 : x > y; /* same array: a total, deterministic order */
}

/* A placed buffer as the gap search reads it: kept in one array sorted by offset, so the
 * search walks contiguous memory instead of chasing pointers into the buffer list. */
typedef struct span {
    size_t offset, end; /* end: aligned, the lowest offset a buffer above may start at */
    int first, last;    /* lifetime in steps, inclusive */
} span;

/* Index in spans[0..count) (sorted by offset) before which a span at offset goes. */
static int insertion_point(const span *spans, int count, size_t offset)
{
    int lo = 0, hi = count;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (spans[mid].offset <= offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

pp_status planner_place(pp_context *ctx, plan_steps *steps)
{
    int n = steps->buffer_count;
    steps->arena_bytes = 0;
    if (n == 0) return PP_OK;
    plan_buffer **order = malloc(sizeof *order * (size_t)n);
    span *spans = malloc(sizeof *spans * (size_t)n); /* the placed buffers, by offset */
    if (!order || !spans) {
        free(order), free(spans);
        return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "planner: out of memory");
    }
    for (int i = 0; i < n; i++) order[i] = &steps->buffers[i];
    qsort(order, (size_t)n, sizeof *order, by_size_desc);
    int placed_count = 0;
    for (int i = 0; i < n; i++) {
        plan_buffer *b = order[i];
        if (b->first < 0 || b->last < b->first) {
            free(order), free(spans);
            return ctx_fail(ctx, PP_ERR_INTERNAL, "planner: buffer %s has no valid lifetime (%d..%d)", b->name,
                            b->first, b->last);
        }
        /* The lowest gap between the placed buffers alive at the same time, visited in offset
         * order without sorting them again: buffers at equal offsets give the same result in
         * any order, so one sorted list serves every buffer. */
        size_t offset = 0, size = align_up(b->bytes ? b->bytes : 1);
        for (int j = 0; j < placed_count; j++) {
            const span *p = &spans[j];
            if (p->first > b->last || b->first > p->last) continue;
            if (p->offset >= offset + size) break; /* fits in the gap before it */
            if (p->end > offset) offset = p->end;
        }
        b->offset = offset;
        int at = insertion_point(spans, placed_count, offset);
        memmove(spans + at + 1, spans + at, sizeof *spans * (size_t)(placed_count - at));
        spans[at] = (span){offset, align_up(offset + b->bytes), b->first, b->last};
        placed_count++;
        if (offset + size > steps->arena_bytes) steps->arena_bytes = offset + size;
    }
    free(order), free(spans);
    return PP_OK;
}
