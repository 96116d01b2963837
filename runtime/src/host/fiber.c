/* fiber.c - fibers for the host emulation backend (contract in fiber.h).
 *
 * On x86-64 the switch is hand-written: it pushes the SysV callee-saved registers (rbp,
 * rbx, r12-r15) and the MXCSR / x87 control words on the suspended stack, stores rsp in
 * the fiber and loads the other fiber's rsp; everything else is caller-saved, so the
 * compiler already treats the call as clobbering it. A new fiber's stack is laid out as
 * if it had been suspended by a switch, with the start trampoline as return address and
 * the fiber pointer in r13. This is a plain call, no system call, unlike swapcontext
 * (which saves and restores the signal mask). Other architectures use ucontext. */
#define _GNU_SOURCE
#include "fiber.h"

#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define PP_FIBER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PP_FIBER_ASAN 1
#endif
#endif
#ifdef PP_FIBER_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define PP_FIBER_VALGRIND 1
#endif
#endif

int fiber_stack_alloc(fiber_stack *s, size_t size)
{
    memset(s, 0, sizeof *s);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size = (size + page - 1) / page * page;
    size_t map_size = size + page;
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
#ifdef MAP_STACK
    flags |= MAP_STACK;
#endif
    void *map = mmap(NULL, map_size, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (map == MAP_FAILED) return -1;
    if (mprotect(map, page, PROT_NONE) != 0) { /* the guard page */
        munmap(map, map_size);
        return -1;
    }
    s->map = map;
    s->map_size = map_size;
    s->lo = (char *)map + page;
    s->size = size;
#ifdef PP_FIBER_VALGRIND
    s->valgrind_id = VALGRIND_STACK_REGISTER(s->lo, s->lo + s->size);
#endif
    return 0;
}

void fiber_stack_free(fiber_stack *s)
{
    if (!s->map) return;
#ifdef PP_FIBER_VALGRIND
    VALGRIND_STACK_DEREGISTER(s->valgrind_id);
#endif
    munmap(s->map, s->map_size);
    memset(s, 0, sizeof *s);
}

/* First code run on a new fiber's stack. */
static void fiber_entry(fiber *f)
{
#ifdef PP_FIBER_ASAN
    __sanitizer_finish_switch_fiber(NULL, &f->resumer->stack_lo, &f->resumer->stack_size);
#endif
    f->fn(f->arg);
    __builtin_trap(); /* fn must end with fiber_exit */
}

void fiber_init_current(fiber *f) { memset(f, 0, sizeof *f); }

#ifdef PP_FIBER_X86_64

/* pp_fiber_switch_x86_64(void **save_sp, void *new_sp); pp_fiber_start_x86_64 is the
 * return address of a new fiber: r12 = fiber_entry, r13 = the fiber. */
__asm__(".pushsection .text\n"
        ".p2align 4\n"
        ".globl pp_fiber_switch_x86_64\n"
        ".hidden pp_fiber_switch_x86_64\n"
        ".type pp_fiber_switch_x86_64,@function\n"
        "pp_fiber_switch_x86_64:\n"
        "    pushq %rbp\n"
        "    pushq %rbx\n"
        "    pushq %r12\n"
        "    pushq %r13\n"
        "    pushq %r14\n"
        "    pushq %r15\n"
        "    subq $8, %rsp\n"
        "    stmxcsr (%rsp)\n"
        "    fnstcw 4(%rsp)\n"
        "    movq %rsp, (%rdi)\n"
        "    movq %rsi, %rsp\n"
        "    ldmxcsr (%rsp)\n"
        "    fldcw 4(%rsp)\n"
        "    addq $8, %rsp\n"
        "    popq %r15\n"
        "    popq %r14\n"
        "    popq %r13\n"
        "    popq %r12\n"
        "    popq %rbx\n"
        "    popq %rbp\n"
        "    ret\n"
        ".size pp_fiber_switch_x86_64, .-pp_fiber_switch_x86_64\n"
        ".p2align 4\n"
        ".globl pp_fiber_start_x86_64\n"
        ".hidden pp_fiber_start_x86_64\n"
        ".type pp_fiber_start_x86_64,@function\n"
        "pp_fiber_start_x86_64:\n"
        "    movq %r13, %rdi\n"
        "    callq *%r12\n"
        "    ud2\n"
        ".size pp_fiber_start_x86_64, .-pp_fiber_start_x86_64\n"
        ".popsection\n");

__attribute__((visibility("hidden"))) void pp_fiber_switch_x86_64(void **save_sp, void *new_sp);
__attribute__((visibility("hidden"))) void pp_fiber_start_x86_64(void);

void fiber_init(fiber *f, fiber_stack *s, fiber_fn fn, void *arg)
{
    memset(f, 0, sizeof *f);
    f->fn = fn;
    f->arg = arg;
    f->stack_lo = s->lo;
    f->stack_size = s->size;
#ifdef PP_FIBER_ASAN
    /* An abandoned fiber leaves poisoned frames behind on a reused stack. */
    ASAN_UNPOISON_MEMORY_REGION(s->lo, s->size);
#endif
    /* Layout below the 16-aligned top X, as pp_fiber_switch_x86_64 leaves it: after its
     * final ret, rsp == X, so the trampoline's call enters fiber_entry with the ABI's
     * alignment (rsp % 16 == 8). */
    uintptr_t top = ((uintptr_t)(s->lo + s->size) & ~(uintptr_t)15) - 16;
    uint64_t *sp = (uint64_t *)(top - 64);
    uint32_t control[2] = {0x1F80u, 0x037Fu}; /* MXCSR; x87 control word in the low half */
    memcpy(&sp[0], control, sizeof control);
    sp[1] = 0;                                /* r15 */
    sp[2] = 0;                                /* r14 */
    sp[3] = (uint64_t)(uintptr_t)f;           /* r13 */
    sp[4] = (uint64_t)(uintptr_t)fiber_entry; /* r12 */
    sp[5] = 0;                                /* rbx */
    sp[6] = 0;                                /* rbp: ends frame-pointer backtraces */
    sp[7] = (uint64_t)(uintptr_t)pp_fiber_start_x86_64;
    f->sp = sp;
}

static inline void raw_switch(fiber *from, fiber *to) { pp_fiber_switch_x86_64(&from->sp, to->sp); }

static inline void raw_exit(fiber *from, fiber *to) { pp_fiber_switch_x86_64(&from->sp, to->sp); }

#else /* ucontext */

static void uc_entry(unsigned lo, unsigned hi) { fiber_entry((fiber *)(uintptr_t)(((uint64_t)hi << 32) | lo)); }

void fiber_init(fiber *f, fiber_stack *s, fiber_fn fn, void *arg)
{
    memset(f, 0, sizeof *f);
    f->fn = fn;
    f->arg = arg;
    f->stack_lo = s->lo;
    f->stack_size = s->size;
#ifdef PP_FIBER_ASAN
    ASAN_UNPOISON_MEMORY_REGION(s->lo, s->size);
#endif
    getcontext(&f->uc);
    f->uc.uc_stack.ss_sp = s->lo;
    f->uc.uc_stack.ss_size = s->size;
    f->uc.uc_link = NULL;
    uint64_t p = (uint64_t)(uintptr_t)f;
    makecontext(&f->uc, (void (*)(void))uc_entry, 2, (unsigned)(p & 0xffffffffu), (unsigned)(p >> 32));
}

static inline void raw_switch(fiber *from, fiber *to) { swapcontext(&from->uc, &to->uc); }

static inline void raw_exit(fiber *from, fiber *to)
{
    (void)from;
    setcontext(&to->uc);
}

#endif

void fiber_switch(fiber *from, fiber *to)
{
    to->resumer = from;
#ifdef PP_FIBER_ASAN
    __sanitizer_start_switch_fiber(&from->asan_fake_stack, to->stack_lo, to->stack_size);
#endif
    raw_switch(from, to);
#ifdef PP_FIBER_ASAN
    __sanitizer_finish_switch_fiber(from->asan_fake_stack, &from->resumer->stack_lo, &from->resumer->stack_size);
#endif
}

void fiber_exit(fiber *from, fiber *to)
{
    to->resumer = from;
#ifdef PP_FIBER_ASAN
    __sanitizer_start_switch_fiber(NULL, to->stack_lo, to->stack_size);
#endif
    raw_exit(from, to);
    __builtin_trap();
}
