/* choose.h - the knapsack pp_policy_choose solves (choose.c), declared for its test. */
#ifndef PP_CHOOSE_H
#define PP_CHOOSE_H

#include <stddef.h>

typedef struct choose_item {
    double error;
    size_t bytes;
} choose_item;

/* The multiple-choice knapsack: items[l*choices + c] is layer l's choice c; one choice per
 * layer, the summed error least, the summed bytes <= capacity. Bytes count in units of
 * ceil(capacity/resolution), each rounded up, so a pick never exceeds the capacity; the
 * dynamic programme over those units is exact for them, and the answer is optimal among
 * picks whose rounded bytes fit (exactly optimal where the bytes are multiples of the unit).
 * pick[l]: the choice of layer l. Returns 0, -1 when no pick fits, -2 when out of memory. */
int choose_knapsack(const choose_item *items, int layers, int choices, size_t capacity, int resolution, int *pick,
                    double *total_error);

#endif
