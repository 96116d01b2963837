/* planner.c - places a plan's buffers in one arena. Buffers whose lifetimes (first..last
 * step, inclusive) overlap never share bytes. Greedy by size: the largest buffer first,
 * each at the lowest 256-byte-aligned offset where it fits between the buffers already
 * placed that are alive at the same time. The arena is the highest end; it is never below
 * the largest number of bytes alive at one step, and usually equal to it or close.
 *
 * The search never lists the placed buffers alive at once (on a deep ResNet thousands of
 * saved inputs are): a segment tree over the steps keeps, per node, the union of the byte
 * ranges of the buffers that span the node's whole step range ("own") and of every buffer
 * placed anywhere in its subtree ("below"). A lifetime query reads O(log steps) unions,
 * and adjacent buffers merge into one range, so a search costs a few binary searches. */
#include "plan.h"

#include <stdlib.h>
#include <string.h>

enum {
    alignment = 256,
    max_query_sets = 4 * 32 + 4 /* two sets per tree level on each side of a query */
};

static size_t align_up(size_t v) { return (v + alignment - 1) / alignment * alignment; }

static int by_size_desc(const void *a, const void *b)
{
    const plan_buffer *x = *(plan_buffer *const *)a, *y = *(plan_buffer *const *)b;
    if (x->bytes != y->bytes) return x->bytes < y->bytes ? 1 : -1;
    if (x->first != y->first) return x->first < y->first ? -1 : 1;
    return x < y ? -1 : x > y; /* same array: a total, deterministic order */
}

typedef struct byte_range {
    size_t start, end; /* [start, end), aligned */
} byte_range;

/* Disjoint byte ranges sorted by start; touching ranges are merged, so a gap between two
 * ranges is never empty. */
typedef struct range_set {
    byte_range *ranges;
    int count, capacity;
} range_set;

typedef struct step_tree {
    int leaves;       /* a power of two >= the number of steps; node 1 is the root */
    range_set *own;   /* [2 * leaves]: buffers whose lifetime covers the node's steps */
    range_set *below; /* [2 * leaves]: every buffer stored at the node or under it */
} step_tree;

/* Index of the first range in set whose end is at least at (count when none). */
static int first_ending_at_or_after(const range_set *set, size_t at)
{
    int lo = 0, hi = set->count;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (set->ranges[mid].end < at)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Adds [start, end) to set, merging every range it overlaps or touches. 0, or -1 when out
 * of memory (set unchanged). */
static int range_set_add(range_set *set, size_t start, size_t end)
{
    int first = first_ending_at_or_after(set, start), last = first; /* merge first..last-1 */
    while (last < set->count && set->ranges[last].start <= end) last++;
    if (first < last) {
        if (set->ranges[first].start < start) start = set->ranges[first].start;
        if (set->ranges[last - 1].end > end) end = set->ranges[last - 1].end;
        set->ranges[first] = (byte_range){start, end};
        memmove(set->ranges + first + 1, set->ranges + last, sizeof *set->ranges * (size_t)(set->count - last));
        set->count -= last - first - 1;
        return 0;
    }
    if (set->count == set->capacity) {
        int capacity = set->capacity ? 2 * set->capacity : 4;
        byte_range *grown = realloc(set->ranges, sizeof *grown * (size_t)capacity);
        if (!grown) return -1;
        set->ranges = grown, set->capacity = capacity;
    }
    memmove(set->ranges + first + 1, set->ranges + first, sizeof *set->ranges * (size_t)(set->count - first));
    set->ranges[first] = (byte_range){start, end};
    set->count++;
    return 0;
}

/* The end of the range of set that overlaps [at, at + size), or at when none does. */
static size_t range_set_blocked_until(const range_set *set, size_t at, size_t size)
{
    int i = first_ending_at_or_after(set, at + 1);
    return i < set->count && set->ranges[i].start < at + size ? set->ranges[i].end : at;
}

/* Records [start, end) as alive over steps first..last in the subtree of node (steps
 * lo..hi). 0, or -1 when out of memory. */
static int tree_insert(step_tree *t, int node, int lo, int hi, int first, int last, size_t start, size_t end)
{
    if (range_set_add(&t->below[node], start, end)) return -1;
    if (first <= lo && hi <= last) return range_set_add(&t->own[node], start, end);
    int mid = lo + (hi - lo) / 2;
    if (first <= mid && tree_insert(t, 2 * node, lo, mid, first, last, start, end)) return -1;
    if (last > mid && tree_insert(t, 2 * node + 1, mid + 1, hi, first, last, start, end)) return -1;
    return 0;
}

/* Collects in sets the unions whose buffers are exactly those alive at some step of
 * first..last: "below" of the nodes the range covers, "own" of the nodes it cuts. */
static void tree_query(const step_tree *t, int node, int lo, int hi, int first, int last, const range_set **sets,
                       int *count)
{
    if (first <= lo && hi <= last) {
        if (t->below[node].count) sets[(*count)++] = &t->below[node];
        return;
    }
    if (t->own[node].count) sets[(*count)++] = &t->own[node];
    int mid = lo + (hi - lo) / 2;
    if (first <= mid && t->below[2 * node].count) tree_query(t, 2 * node, lo, mid, first, last, sets, count);
    if (last > mid && t->below[2 * node + 1].count) tree_query(t, 2 * node + 1, mid + 1, hi, first, last, sets, count);
}

/* The lowest offset where size bytes fit beside every range of sets: each range met moves
 * the candidate past its end, until a full pass over the sets moves nothing. */
static size_t lowest_fit(const range_set *const *sets, int count, size_t size)
{
    size_t offset = 0;
    for (int moved = 1; moved;) {
        moved = 0;
        for (int i = 0; i < count; i++) {
            size_t end = range_set_blocked_until(sets[i], offset, size);
            if (end != offset) offset = end, moved = 1;
        }
    }
    return offset;
}

static void tree_free(step_tree *t)
{
    for (int i = 0; t->own && t->below && i < 2 * t->leaves; i++) free(t->own[i].ranges), free(t->below[i].ranges);
    free(t->own), free(t->below);
}

pp_status planner_place(pp_context *ctx, plan_steps *steps)
{
    int n = steps->buffer_count, step_count = 1;
    steps->arena_bytes = 0;
    if (n == 0) return PP_OK;
    for (int i = 0; i < n; i++) {
        const plan_buffer *b = &steps->buffers[i];
        if (b->first < 0 || b->last < b->first)
            return ctx_fail(ctx, PP_ERR_INTERNAL, "planner: buffer %s has no valid lifetime (%d..%d)", b->name,
                            b->first, b->last);
        if (b->last >= step_count) step_count = b->last + 1;
    }
    if (step_count > (1 << 30))
        return ctx_fail(ctx, PP_ERR_INTERNAL, "planner: %d steps are more than the planner indexes", step_count);
    step_tree tree = {1, NULL, NULL};
    while (tree.leaves < step_count) tree.leaves *= 2;
    tree.own = calloc(2 * (size_t)tree.leaves, sizeof *tree.own);
    tree.below = calloc(2 * (size_t)tree.leaves, sizeof *tree.below);
    plan_buffer **order = malloc(sizeof *order * (size_t)n);
    pp_status status = PP_OK;
    if (!order || !tree.own || !tree.below) goto out_of_memory;
    for (int i = 0; i < n; i++) order[i] = &steps->buffers[i];
    qsort(order, (size_t)n, sizeof *order, by_size_desc);
    for (int i = 0; i < n; i++) {
        plan_buffer *b = order[i];
        const range_set *sets[max_query_sets];
        int set_count = 0;
        tree_query(&tree, 1, 0, tree.leaves - 1, b->first, b->last, sets, &set_count);
        size_t size = align_up(b->bytes ? b->bytes : 1);
        b->offset = lowest_fit(sets, set_count, size);
        if (tree_insert(&tree, 1, 0, tree.leaves - 1, b->first, b->last, b->offset, b->offset + size))
            goto out_of_memory;
        if (b->offset + size > steps->arena_bytes) steps->arena_bytes = b->offset + size;
    }
    goto done;
out_of_memory:
    status = ctx_fail(ctx, PP_ERR_OUT_OF_MEMORY, "planner: out of memory");
done:
    free(order);
    tree_free(&tree);
    return status;
}
