/* scheduler.h - runs a grid of an emulated kernel on the CPU: blocks spread over OS
 * threads, each CUDA thread of a block a fiber on its block's OS thread, barriers and
 * warp exchanges arbitrated here (the callbacks of emu_abi.h).
 *
 * Invariants: all fibers of a block run on one OS thread from start to end, so the
 * module's thread_local __shared__ variables are shared by exactly that block while it
 * runs; between two blocking points a fiber runs alone, so an emulated thread never
 * observes a half-done operation of another thread of its block. */
#ifndef PP_EMU_SCHEDULER_H
#define PP_EMU_SCHEDULER_H

#include "context.h"
#include "host/emu_abi.h"

#include <stdint.h>

/* Fiber stacks kept across launches (a context owns one). Thread-safe. */
typedef struct emu_stack_pool emu_stack_pool;
/* NULL if out of memory. */
emu_stack_pool *emu_stack_pool_create(void);
void emu_stack_pool_destroy(emu_stack_pool *pool);

/* Usable stack bytes of every emulated CUDA thread. */
#define EMU_STACK_SIZE (64 * 1024)

typedef void (*emu_entry_fn)(void **args);

typedef struct emu_launch_desc {
    const char *kernel_name; /* for error messages */
    emu_entry_fn entry;      /* pp_emu_entry_<kernel> of a module bound to emu_abi() */
    void **args;
    unsigned grid[3], block[3];
    pp_schedule schedule;
    uint32_t seed;        /* for PP_SCHEDULE_SHUFFLED */
    int threads;          /* OS threads; 0 = number of online CPUs */
    emu_stack_pool *pool; /* NULL: stacks are unmapped at the end of the launch */
    /* The kernel has no barrier or warp operation: run each block's threads one after
     * another as plain calls on the worker's stack, in the schedule's order, with no
     * fibers. A barrier or warp operation reached anyway fails the launch. */
    int plain;
} emu_launch_desc;

/* The callbacks every host kernel module is bound to (pp_emu_bind). */
const pp_emu_abi *emu_abi(void);

/* Runs the grid to completion. A kernel fault (divergent barrier, deadlock, trap) stops
 * the launch and returns PP_ERR_KERNEL with a message naming the kernel, block, thread
 * and line; bad dimensions return PP_ERR_INVALID_ARGUMENT. */
pp_status emu_launch(pp_context *ctx, const emu_launch_desc *d);

#endif
