/* planner.c - places a plan's buffers in one arena. Buffers whose lifetimes (first..last
 * step, inclusive) overlap never share bytes. Greedy by size: the largest buffer first,
 * each at the lowest 256-byte-aligned offset where it fits between the buffers already
 * placed that are alive at the same time. The arena is the highest end; it is never below
 * the largest number of bytes alive at one step, and usually equal to it or close. */
#include "plan.h"

#include <stdlib.h>

enum { alignment = 256 };

static size_t align_up(size_t v) { return (v + alignment - 1) / alignment * alignment; }

static int by_size_desc(const void *a, const void *b)
{
    const plan_buffer *x = *(plan_buffer *const *)a, *y = *(plan_buffer *const *)b;
    if (x->bytes != y->bytes) return x->bytes < y->bytes ? 1 : -1;
    if (x->first != y->first) return x->first < y->first ? -1 : 1;
    return x < y ? -1 : x > y; /* same array: a total, deterministic order */
}

static int by_offset(const void *a, const void *b)
{
    const plan_buffer *x = *(plan_buffer *const *)a, *y = *(plan_buffer *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

pp_status planner_place(pp_context *ctx, plan_steps *steps)
{
    int n = steps->buffer_count;
    steps->arena_bytes = 0;
    if (n == 0) return PP_OK;
    plan_buffer **order = malloc(sizeof *order * (size_t)n);
    plan_buffer **placed = malloc(sizeof *placed * (size_t)n);
    plan_buffer **overlapping = malloc(sizeof *overlapping * (size_t)n);
    if (!order || !placed || !overlapping) {
        free(order), free(placed), free(overlapping);
        return ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "planner: out of memory");
    }
    for (int i = 0; i < n; i++) order[i] = &steps->buffers[i];
    qsort(order, (size_t)n, sizeof *order, by_size_desc);
    int placed_count = 0;
    for (int i = 0; i < n; i++) {
        plan_buffer *b = order[i];
        if (b->first < 0 || b->last < b->first) {
            free(order), free(placed), free(overlapping);
            return ctx_fail(ctx, PP_ERR_INTERNAL, "planner: buffer %s has no valid lifetime (%d..%d)", b->name,
                            b->first, b->last);
        }
        int m = 0;
        for (int j = 0; j < placed_count; j++)
            if (placed[j]->first <= b->last && b->first <= placed[j]->last) overlapping[m++] = placed[j];
        qsort(overlapping, (size_t)m, sizeof *overlapping, by_offset);
        size_t offset = 0, size = align_up(b->bytes ? b->bytes : 1);
        for (int j = 0; j < m; j++) {
            if (overlapping[j]->offset >= offset + size) break; /* fits in the gap before it */
            size_t end = align_up(overlapping[j]->offset + overlapping[j]->bytes);
            if (end > offset) offset = end;
        }
        b->offset = offset;
        placed[placed_count++] = b;
        if (offset + size > steps->arena_bytes) steps->arena_bytes = offset + size;
    }
    free(order), free(placed), free(overlapping);
    return PP_OK;
}
