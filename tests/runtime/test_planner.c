/* test_planner.c - the arena planner (runtime/src/planner.c) against its definition: for
 * random lifetimes and sizes, every buffer sits, in the planner's order (largest first,
 * then earliest first, then array order), at the lowest 256-byte-aligned offset where it
 * shares no byte with a buffer already placed whose lifetime overlaps its own. The
 * reference here lists the overlapping buffers directly (quadratic); the planner must
 * give the same offsets without listing them. Also: nested lifetimes as a deep network's
 * saved inputs have them, zero-byte buffers, invalid lifetimes refused. */
#include "plan.h"
#include "test_util.h"

#include <stdlib.h>
#include <string.h>

static pp_context *ctx;
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t next_random(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}

static size_t aligned_size(size_t bytes) { return (bytes ? bytes + 255 : 256) / 256 * 256; }

static int overlap_in_time(const plan_buffer *a, const plan_buffer *b)
{
    return a->first <= b->last && b->first <= a->last;
}

static int placement_order(const void *pa, const void *pb)
{
    const plan_buffer *a = *(plan_buffer *const *)pa, *b = *(plan_buffer *const *)pb;
    if (a->bytes != b->bytes) return a->bytes < b->bytes ? 1 : -1;
    if (a->first != b->first) return a->first < b->first ? -1 : 1;
    return a < b ? -1 : a > b;
}

/* The definition: the lowest candidate (0 or the end of an overlapping placed buffer)
 * where the buffer meets none of them. Returns the arena. */
static size_t reference_place(plan_buffer *buffers, int n, size_t *offsets)
{
    plan_buffer **order = malloc(sizeof *order * (size_t)n);
    int *placed = malloc(sizeof *placed * (size_t)n);
    size_t arena = 0;
    for (int i = 0; i < n; i++) order[i] = &buffers[i];
    qsort(order, (size_t)n, sizeof *order, placement_order);
    for (int i = 0; i < n; i++) {
        const plan_buffer *b = order[i];
        size_t size = aligned_size(b->bytes), best = (size_t)-1;
        for (int c = -1; c < i; c++) {
            size_t at = c < 0 ? 0 : offsets[placed[c]] + aligned_size(buffers[placed[c]].bytes);
            if (c >= 0 && !overlap_in_time(b, &buffers[placed[c]])) continue;
            if (at >= best) continue;
            int fits = 1;
            for (int j = 0; j < i && fits; j++) {
                const plan_buffer *p = &buffers[placed[j]];
                size_t start = offsets[placed[j]], end = start + aligned_size(p->bytes);
                if (overlap_in_time(b, p) && start < at + size && at < end) fits = 0;
            }
            if (fits) best = at;
        }
        int index = (int)(b - buffers);
        offsets[index] = best;
        placed[i] = index;
        if (best + size > arena) arena = best + size;
    }
    free(order), free(placed);
    return arena;
}

/* Places buffers with the planner and with the reference; fails on the first difference. */
static void compare_with_reference(plan_buffer *buffers, int n, const char *what)
{
    size_t *expected = malloc(sizeof *expected * (size_t)n);
    size_t arena = reference_place(buffers, n, expected);
    plan_steps steps = {.buffers = buffers, .buffer_count = n};
    CHECK(planner_place(ctx, &steps) == PP_OK, "%s: %s", what, pp_last_error(ctx));
    for (int i = 0; i < n; i++)
        CHECK(buffers[i].offset == expected[i], "%s: buffer %d (%zu bytes, steps %d..%d) at %zu, reference %zu", what,
              i, buffers[i].bytes, buffers[i].first, buffers[i].last, buffers[i].offset, expected[i]);
    CHECK(steps.arena_bytes == arena, "%s: arena %zu, reference %zu", what, steps.arena_bytes, arena);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            const plan_buffer *a = &buffers[i], *b = &buffers[j];
            CHECK(!overlap_in_time(a, b) || a->offset + aligned_size(a->bytes) <= b->offset ||
                      b->offset + aligned_size(b->bytes) <= a->offset,
                  "%s: buffers %d and %d are alive together and share bytes", what, i, j);
        }
    free(expected);
}

static void random_lifetimes(void)
{
    enum {
        rounds = 40,
        n = 300
    };
    static plan_buffer buffers[n];
    for (int round = 0; round < rounds; round++) {
        int steps = 1 + (int)(next_random() % (round < 20 ? 40 : 400));
        for (int i = 0; i < n; i++) {
            plan_buffer *b = &buffers[i];
            memset(b, 0, sizeof *b);
            snprintf(b->name, sizeof b->name, "b%d", i);
            b->first = (int)(next_random() % (uint32_t)steps);
            b->last = b->first + (int)(next_random() % (uint32_t)(steps - b->first));
            /* few distinct sizes (ties in the order) and sizes that are not multiples of 256 */
            b->bytes = next_random() % 4 == 0 ? 256u * (1 + next_random() % 4) : next_random() % 100000;
        }
        char what[32];
        snprintf(what, sizeof what, "round %d", round);
        compare_with_reference(buffers, n, what);
    }
}

static void nested_lifetimes(void)
{
    /* A deep network: layer i's saved input lives from forward step i to backward step
     * 2L-1-i, and each step has a short-lived activation and workspace. */
    enum {
        layers = 150,
        n = 3 * 2 * layers
    };
    static plan_buffer buffers[n];
    int count = 0;
    for (int i = 0; i < layers; i++) {
        buffers[count++] = (plan_buffer){.bytes = 4096u * (1 + i % 3), .first = i, .last = 2 * layers - 1 - i};
    }
    for (int s = 0; s < 2 * layers; s++) {
        buffers[count++] = (plan_buffer){.bytes = 20000, .first = s, .last = s + 1 < 2 * layers ? s + 1 : s};
        buffers[count++] = (plan_buffer){.bytes = 1000u + 37u * (unsigned)(s % 5), .first = s, .last = s};
    }
    for (int i = 0; i < count; i++) snprintf(buffers[i].name, sizeof buffers[i].name, "b%d", i);
    compare_with_reference(buffers, count, "nested");
}

static void zero_bytes(void)
{
    /* A zero-byte buffer still gets a distinct, aligned place of its own. */
    plan_buffer buffers[3] = {{.name = "empty", .bytes = 0, .first = 0, .last = 2},
                              {.name = "a", .bytes = 300, .first = 1, .last = 1},
                              {.name = "empty2", .bytes = 0, .first = 1, .last = 3}};
    compare_with_reference(buffers, 3, "zero bytes");
    CHECK(buffers[0].offset != buffers[2].offset, "two zero-byte buffers alive together share an offset");
}

static void invalid_lifetime(void)
{
    plan_buffer buffers[2] = {{.name = "fine", .bytes = 8, .first = 0, .last = 1},
                              {.name = "backwards", .bytes = 8, .first = 3, .last = 2}};
    plan_steps steps = {.buffers = buffers, .buffer_count = 2};
    CHECK(planner_place(ctx, &steps) == PP_ERR_INTERNAL && strstr(pp_last_error(ctx), "backwards"),
          "a lifetime 3..2 was not refused by name: %s", pp_last_error(ctx));
    plan_steps none = {0};
    CHECK(planner_place(ctx, &none) == PP_OK && none.arena_bytes == 0, "no buffers: arena %zu", none.arena_bytes);
}

static const test_case tests[] = {
    TEST_CASE(random_lifetimes, "40 rounds of 300 random buffers: the reference's offsets and arena, no shared bytes"),
    TEST_CASE(nested_lifetimes, "nested saved-input lifetimes of a 150-layer network: the reference's offsets"),
    TEST_CASE(zero_bytes, "zero-byte buffers take 256 bytes of their own"),
    TEST_CASE(invalid_lifetime, "a backwards lifetime is refused by name; no buffers give an empty arena"),
};

int main(int argc, char **argv)
{
    const char *only = test_select(&argc, argv);
    pp_context_options options;
    pp_context_options_init(&options);
    options.backend = PP_BACKEND_NONE;
    options.disable_cache = 1;
    if (pp_context_create(&options, &ctx) != PP_OK) {
        fprintf(stderr, "test_planner: context: %s\n", pp_last_error(ctx));
        return 1;
    }
    int status = TEST_RUN(tests, only);
    pp_context_destroy(ctx);
    return status;
}
