/* fiber.h - minimal cooperative fibers for the host emulation backend: one fiber per
 * emulated CUDA thread, switched by the scheduler on the OS thread that owns them.
 *
 * Invariants:
 * - A fiber only ever runs on the OS thread that created it (fibers never migrate).
 * - fiber_switch(from, to) must be called while `from` is the running context; the
 *   scheduler's own context is a fiber with no stack of its own (fiber_init_current).
 * - A fiber's function must never return: it ends with fiber_exit(self, to), after which
 *   the fiber may be re-initialised on the same stack with fiber_init. A suspended fiber
 *   may also simply be abandoned and its stack re-initialised.
 * - Stacks are mmap'ed with a PROT_NONE guard page below them, so an overflow faults
 *   instead of corrupting a neighbour; they are meant to be reused across blocks.
 * - Every fiber starts with MXCSR 0x1F80 and x87 control word 0x037F (IEEE round to
 *   nearest, no flush to zero), whatever the OS thread's settings are.
 * Implementation: a hand-written x86-64 SysV switch (callee-saved registers, rsp, MXCSR
 * and the x87 control word) where available, ucontext elsewhere (or when built with
 * -DPP_FIBER_UCONTEXT); ASan fiber annotations when built with AddressSanitizer;
 * valgrind stack registration when valgrind's header exists. */
#ifndef PP_FIBER_H
#define PP_FIBER_H

#include <stddef.h>

#if defined(__x86_64__) && !defined(PP_FIBER_UCONTEXT)
#define PP_FIBER_X86_64 1
#else
#include <ucontext.h>
#endif

typedef struct fiber_stack {
    void *map; /* whole mapping, guard page included */
    size_t map_size;
    char *lo; /* usable stack [lo, lo + size) */
    size_t size;
    unsigned valgrind_id;
} fiber_stack;

typedef void (*fiber_fn)(void *arg);

typedef struct fiber fiber;
struct fiber {
#ifdef PP_FIBER_X86_64
    void *sp; /* saved stack pointer while suspended */
#else
    ucontext_t uc;
#endif
    fiber_fn fn;
    void *arg;
    /* Stack bounds, for AddressSanitizer; the scheduler's fiber learns its own on the
     * first switch away from it. */
    const void *stack_lo;
    size_t stack_size;
    void *asan_fake_stack;
    fiber *resumer; /* the fiber that last switched to this one */
};

/* Maps a stack of at least `size` usable bytes plus a guard page. 0 on success. */
int fiber_stack_alloc(fiber_stack *s, size_t size);
void fiber_stack_free(fiber_stack *s);

/* Makes f describe the context that is running now (the scheduler). */
void fiber_init_current(fiber *f);
/* Prepares f to run fn(arg) on stack s when first switched to. fn must not return. */
void fiber_init(fiber *f, fiber_stack *s, fiber_fn fn, void *arg);
/* Suspends `from` (the running context) and resumes `to`. Returns when some context
 * switches back to `from`. */
void fiber_switch(fiber *from, fiber *to);
/* Like fiber_switch, for a fiber that will never be resumed (finished or abandoned). */
void fiber_exit(fiber *from, fiber *to) __attribute__((noreturn));

#endif
