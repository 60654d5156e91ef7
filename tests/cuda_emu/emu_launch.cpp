/* emu_launch.cpp: how the emulator runs a kernel. A grid runs synchronously
 * on the launching host thread, one block after another (blockIdx order,
 * x fastest); each CUDA thread of a block is a fiber with its own stack,
 * switched by a small x86-64 context switch. A block runs in rounds: every
 * ready thread runs, in order, until it exits or waits at a barrier or warp
 * op, and then hands over directly to the next one (an exiting thread lends
 * its stack to a next thread that has not started, without any switch).
 * Between rounds the scheduler resolves complete warp ops, and when nothing
 * else can move, releases the block barrier. Divergent barriers and warp ops
 * abort with the kernel's launch site; warp-collective operations (WMMA)
 * resolve there too. Also here: launch validation, dynamic shared memory,
 * cudaFuncSetAttribute, and the fiber stacks with their guard pages. */
#include "emu_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <map>
#include <mutex>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EMU_ASAN 1
#endif
#endif
#ifdef EMU_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

#if !defined(__x86_64__)
#error "cuda_emu: the fiber context switch is written for x86-64"
#endif

/* Saves the callee-saved registers of the System V ABI on the current stack,
 * stores the stack pointer in *save_sp, loads load_sp and pops the target's
 * registers; `ret` continues where the target fiber switched out (or enters
 * fiber_main on a fresh stack). The FPU control words are not switched:
 * kernels never change them. */
extern "C" void emu_fiber_switch(void **save_sp, void *load_sp);
__asm__(".text\n"
        ".globl emu_fiber_switch\n"
        ".hidden emu_fiber_switch\n"
        ".type emu_fiber_switch,@function\n"
        "emu_fiber_switch:\n"
        "    pushq %rbp\n"
        "    pushq %rbx\n"
        "    pushq %r12\n"
        "    pushq %r13\n"
        "    pushq %r14\n"
        "    pushq %r15\n"
        "    movq %rsp, (%rdi)\n"
        "    movq %rsi, %rsp\n"
        "    popq %r15\n"
        "    popq %r14\n"
        "    popq %r13\n"
        "    popq %r12\n"
        "    popq %rbx\n"
        "    popq %rbp\n"
        "    ret\n"
        ".size emu_fiber_switch, .-emu_fiber_switch\n");

namespace emu {

Coords coords;

namespace {

const unsigned WARP = 32;
const size_t DEFAULT_DYNAMIC_SMEM = 48 * 1024;
const size_t OPTIN_DYNAMIC_SMEM = 227 * 1024;

/* ---- fiber stacks ------------------------------------------------------------------- */

/* Each stack is one mapping of g_stack_map_bytes: a PROT_NONE guard page,
 * then the stack, growing down towards it. */
size_t page_bytes()
{
    static const size_t bytes = (size_t)sysconf(_SC_PAGESIZE);
    return bytes;
}

size_t g_stack_map_bytes;          /* of every mapping in g_stacks */
std::vector<char *> &g_stacks = *new std::vector<char *>;      /* every stack mapped, for the overflow handler */
std::vector<char *> &g_free_stacks = *new std::vector<char *>; /* those no fiber holds */

char *take_stack()
{
    if (!g_free_stacks.empty()) {
        char *s = g_free_stacks.back();
        g_free_stacks.pop_back();
        return s;
    }
    const size_t page = page_bytes();
    if (g_stacks.empty())
        g_stack_map_bytes = (settings().stack_bytes + page - 1) / page * page + page;
    void *map = mmap(nullptr, g_stack_map_bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (map == MAP_FAILED || mprotect(map, page, PROT_NONE) != 0)
        die("cannot map a %zu-byte fiber stack: %s", g_stack_map_bytes, strerror(errno));
    g_stacks.push_back(static_cast<char *>(map));
    return static_cast<char *>(map);
}

void free_all_stacks()
{
    for (char *s : g_stacks)
        munmap(s, g_stack_map_bytes);
    g_stacks.clear();
    g_free_stacks.clear();
}

/* ---- the running grid ----------------------------------------------------------------- */

enum class Wait : uint8_t { RUNNABLE, BLOCK_SYNC, WARP_OP, EXITED };

/* One emulated CUDA thread of the running block. */
struct Thread {
    void *sp;    /* saved stack pointer while switched out */
    char *stack; /* its mapping; null until the thread first runs, and after it exits */
    uint3 idx;   /* its threadIdx */
    Wait wait;
    /* what the thread waits at: a block barrier or a warp op */
    BlockSyncKind sync;
    WarpOpKind op;
    unsigned mask;
    int arg;
    int width;
    uint64_t value;
    uint64_t result;
    void *asan_fake_stack;
};

struct Grid {
    const LaunchConfig *cfg;
    void (*run_thread)(const void *args);
    const void *args;
    unsigned block_threads;
    std::vector<Thread> threads;
    std::vector<unsigned> ready; /* to run in the next round */
    std::vector<unsigned> round; /* this round's threads, in order */
    size_t next;                 /* the first thread of `round` that has not run yet */
    unsigned exited;
    unsigned char *smem;
    uint64_t rng; /* for SDXL_CUDA_EMU_SHUFFLE */
};

Grid *g_grid;      /* the grid running now, or null */
Thread *g_running; /* the thread running now, or null on the scheduler */
void *g_scheduler_sp;
char *g_released_stack; /* of a thread that exited on it: free once off it */
thread_local bool t_in_launch;
std::mutex g_launch_mutex; /* grids run one at a time, whatever host thread launches them */
uint64_t g_launch_count;

std::mutex g_attr_mutex;
/* set by cudaFuncSetAttribute */
std::map<const void *, size_t> &g_max_dynamic_smem = *new std::map<const void *, size_t>;

/* ---- AddressSanitizer fiber annotations -------------------------------------------------- */

void *g_scheduler_fake_stack; /* the scheduler's ASan fake stack while a fiber runs */

#ifdef EMU_ASAN
const void *g_scheduler_stack_bottom;
size_t g_scheduler_stack_size;
bool g_leaving_scheduler; /* the next landing learns the scheduler's stack */

/* Before a switch to `to` (the scheduler when null); `fake` is where the
 * context that leaves keeps its fake stack, null when it ends for good. */
void asan_leave(void **fake, const Thread *to)
{
    const size_t page = page_bytes();
    g_leaving_scheduler = fake == &g_scheduler_fake_stack;
    if (to)
        __sanitizer_start_switch_fiber(fake, to->stack + page, g_stack_map_bytes - page);
    else
        __sanitizer_start_switch_fiber(fake, g_scheduler_stack_bottom, g_scheduler_stack_size);
}

void asan_land(void *fake)
{
    const void *from_bottom;
    size_t from_size;
    __sanitizer_finish_switch_fiber(fake, &from_bottom, &from_size);
    if (g_leaving_scheduler) {
        g_scheduler_stack_bottom = from_bottom;
        g_scheduler_stack_size = from_size;
        g_leaving_scheduler = false;
    }
}
#else
void asan_leave(void **, const Thread *) {}
void asan_land(void *) {}
#endif

/* ---- diagnostics ------------------------------------------------------------------------ */

[[noreturn]] void kernel_fail(const char *what)
{
    const LaunchConfig &c = *g_grid->cfg;
    die("%s (block (%u,%u,%u)) in kernel launched at %s:%d (kernel %p)", what, coords.block_idx.x,
         coords.block_idx.y, coords.block_idx.z, c.file, c.line, c.kernel);
}

Thread &running_thread(const char *api)
{
    if (!g_running)
        die("%s called outside a kernel", api);
    return *g_running;
}

/* ---- stack overflow: the guard page faults ------------------------------------------------- */

struct sigaction g_previous_segv;

bool in_guard_page(const char *addr)
{
    const size_t page = page_bytes();
    for (const char *s : g_stacks)
        if (addr >= s && addr < s + page)
            return true;
    return false;
}

void on_segv(int, siginfo_t *info, void *)
{
    if (in_guard_page(static_cast<const char *>(info->si_addr)) && g_grid) {
        char msg[512];
        int n = snprintf(msg, sizeof msg,
                         "cuda_emu: fiber stack overflow (%zu bytes per thread; raise SDXL_CUDA_EMU_STACK) in kernel "
                         "launched at %s:%d (kernel %p)\n",
                         settings().stack_bytes, g_grid->cfg->file, g_grid->cfg->line, g_grid->cfg->kernel);
        if (write(STDERR_FILENO, msg, (size_t)n) < 0) {
            /* nothing better to do: abort either way */
        }
        abort();
    }
    /* Not ours: give the fault to whoever handled SIGSEGV before; the
     * faulting instruction runs again under that handler. */
    sigaction(SIGSEGV, &g_previous_segv, nullptr);
}

/* The handler runs on an alternate signal stack (the fiber's is exhausted);
 * it is (re)installed at each launch because test frameworks (cmocka) and
 * sanitizers install their own SIGSEGV handlers, which it chains to. */
void watch_stack_overflow()
{
    static thread_local bool altstack_ready;
    if (!altstack_ready) {
        stack_t current;
        if (sigaltstack(nullptr, &current) == 0 && (current.ss_flags & SS_DISABLE)) {
            const size_t bytes = 64 * 1024;
            void *mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (mem != MAP_FAILED) {
                stack_t ss{};
                ss.ss_sp = mem;
                ss.ss_size = bytes;
                sigaltstack(&ss, nullptr);
            }
        }
        altstack_ready = true;
    }
    struct sigaction current;
    sigaction(SIGSEGV, nullptr, &current);
    if ((current.sa_flags & SA_SIGINFO) && current.sa_sigaction == on_segv)
        return;
    struct sigaction ours{};
    ours.sa_sigaction = on_segv;
    ours.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&ours.sa_mask);
    sigaction(SIGSEGV, &ours, &g_previous_segv);
}

/* ---- fibers ------------------------------------------------------------------------------- */

/* What every context does first after a switch lands in it. */
void landed(void *fake)
{
    asan_land(fake);
    if (g_released_stack) {
        g_free_stacks.push_back(g_released_stack);
        g_released_stack = nullptr;
    }
}

/* Saves the running context (its stack pointer in *save_sp, its ASan fake
 * stack in *fake; fake is null when the context ends for good) and continues
 * thread `to`, or the scheduler when `to` is null; returns when switched back. */
void switch_to(void **save_sp, void **fake, Thread *to)
{
    asan_leave(fake, to);
    g_running = to;
    if (to)
        coords.thread_idx = to->idx;
    emu_fiber_switch(save_sp, to ? to->sp : g_scheduler_sp);
    landed(fake ? *fake : nullptr);
}

[[noreturn]] void fiber_main();

/* A fresh stack whose saved context `ret`s into fiber_main. */
void prepare_fiber(Thread &t)
{
    t.stack = take_stack();
    void **sp = reinterpret_cast<void **>(t.stack + g_stack_map_bytes);
    *--sp = nullptr; /* fiber_main's return address: it never returns, but this keeps the ABI's alignment */
    *--sp = reinterpret_cast<void *>(&fiber_main);
    for (int i = 0; i < 6; i++)
        *--sp = nullptr; /* rbp rbx r12 r13 r14 r15 */
    t.sp = sp;
    t.asan_fake_stack = nullptr;
}

/* The next thread of this round, ready to switch to; null when the round is over. */
Thread *next_in_round(Grid &g)
{
    if (g.next == g.round.size())
        return nullptr;
    Thread &t = g.threads[g.round[g.next++]];
    if (!t.stack)
        prepare_fiber(t);
    return &t;
}

/* Runs threads until one waits: a thread that exits hands its stack to the
 * next thread of the round when that one has not started yet (no switch at
 * all, the common case of kernels without barriers); otherwise control goes
 * to the next thread of the round, or back to the scheduler. */
[[noreturn]] void fiber_main()
{
    landed(nullptr);
    Grid &g = *g_grid;
    Thread *t = g_running;
    for (;;) {
        g.run_thread(g.args);
        t->wait = Wait::EXITED;
        g.exited++;
        if (g.next == g.round.size() || g.threads[g.round[g.next]].stack)
            break;
        Thread &fresh = g.threads[g.round[g.next++]];
        fresh.stack = t->stack;
        t->stack = nullptr;
        t = &fresh;
        g_running = t;
        coords.thread_idx = t->idx;
    }
    g_released_stack = t->stack;
    t->stack = nullptr;
    switch_to(&t->sp, nullptr, next_in_round(g));
    __builtin_unreachable();
}

/* Called on a fiber: waits at `why` while the rest of the round runs, until
 * the scheduler releases it in a later round. */
void suspend(Thread &t, Wait why)
{
    t.wait = why;
    switch_to(&t.sp, &t.asan_fake_stack, next_in_round(*g_grid));
}

/* Runs the threads of `ready` once each, in order, until each exits or waits. */
void run_round(Grid &g)
{
    g.round.swap(g.ready);
    g.ready.clear();
    g.next = 0;
    switch_to(&g_scheduler_sp, &g_scheduler_fake_stack, next_in_round(g));
}

/* ---- warp ops ----------------------------------------------------------------------------- */

/* The lane a shuffle reads, as PTX's shfl.sync defines it for the
 * mask/clamp operand that __shfl_*_sync pass: ((32 - width) << 8) | 31, and
 * (32 - width) << 8 for __shfl_up_sync. */
unsigned shuffle_source(WarpOpKind op, unsigned lane, int arg, int width)
{
    const unsigned segment_mask = (WARP - (unsigned)width) & 31u;
    const unsigned b = (unsigned)arg & 31u;
    const unsigned first = lane & segment_mask;
    const unsigned last = first | (~segment_mask & 31u);
    int j = (int)lane;
    bool valid = true;
    switch (op) {
    case SHFL_UP: j = (int)lane - (int)b; valid = j >= (int)first; break;
    case SHFL_DOWN: j = (int)(lane + b); valid = j <= (int)last; break;
    case SHFL_XOR: j = (int)(lane ^ b); valid = j <= (int)last; break;
    case SHFL_IDX: j = (int)(first | (b & ~segment_mask)); valid = true; break;
    default: break;
    }
    return valid ? (unsigned)j : lane;
}

bool valid_width(int width) { return width >= 1 && width <= (int)WARP && (width & (width - 1)) == 0; }

/* Checks that lanes [first, first + n) all wait at one kind of warp op with
 * one mask and width that covers them; aborts with the reason otherwise. */
void check_warp_agrees(const Grid &g, unsigned first, unsigned n)
{
    const Thread &t0 = g.threads[first];
    const unsigned present = n == WARP ? 0xffffffffu : (1u << n) - 1u;
    for (unsigned l = 0; l < n; l++) {
        const Thread &t = g.threads[first + l];
        if (t.wait == Wait::EXITED)
            kernel_fail("warp op after some lanes of the warp exited");
        if (t.wait == Wait::BLOCK_SYNC)
            kernel_fail("warp op while other lanes of the warp wait at __syncthreads");
        if (t.op != t0.op || t.width != t0.width || t.mask != t0.mask)
            kernel_fail("lanes of a warp reached different warp ops (kind, width or mask)");
    }
    if ((t0.mask & present) != present)
        kernel_fail("warp op whose mask leaves out lanes of the warp (only full-warp masks are emulated)");
    if (!valid_width(t0.width))
        kernel_fail("shuffle width that is not a power of two in [1, 32]");
}

/* Runs a warp-collective operation once for warp `lanes` (n lanes). */
void resolve_collective(Thread *lanes, unsigned n)
{
    WarpCollective *ops[WARP];
    for (unsigned l = 0; l < n; l++)
        ops[l] = reinterpret_cast<WarpCollective *>(lanes[l].value);
    for (unsigned l = 1; l < n; l++)
        if (ops[l]->resolve != ops[0]->resolve)
            kernel_fail("lanes of a warp reached different warp-collective operations");
    if (const char *why = ops[0]->resolve(ops, n))
        kernel_fail(why);
}

/* Releases warp [first, first + n) from its warp op with each lane's result. */
void resolve_warp(Grid &g, unsigned first, unsigned n)
{
    check_warp_agrees(g, first, n);
    Thread *lanes = &g.threads[first];
    if (lanes[0].op == COLLECTIVE)
        resolve_collective(lanes, n);
    uint64_t votes = 0;
    for (unsigned l = 0; l < n; l++)
        votes |= (lanes[l].value != 0 ? 1ull : 0ull) << l;
    const uint64_t all = n == WARP ? 0xffffffffull : (1ull << n) - 1;
    for (unsigned l = 0; l < n; l++) {
        Thread &t = lanes[l];
        switch (t.op) {
        case SYNCWARP: t.result = 0; break;
        case VOTE_BALLOT: t.result = votes; break;
        case VOTE_ANY: t.result = votes != 0; break;
        case VOTE_ALL: t.result = votes == all; break;
        case COLLECTIVE: t.result = 0; break;
        default: {
            const unsigned src = shuffle_source(t.op, l, t.arg, t.width);
            /* a lane a partial warp lacks: undefined on a GPU, NaN bits here */
            t.result = src < n ? lanes[src].value : ~0ull;
        }
        }
        t.wait = Wait::RUNNABLE;
        g.ready.push_back(first + l);
    }
}

/* Resolves every warp whose live lanes all wait at a warp op. */
void resolve_warps(Grid &g)
{
    for (unsigned first = 0; first < g.block_threads; first += WARP) {
        const unsigned n = g.block_threads - first < WARP ? g.block_threads - first : WARP;
        for (unsigned l = 0; l < n; l++) {
            if (g.threads[first + l].wait == Wait::WARP_OP) {
                resolve_warp(g, first, n);
                break;
            }
        }
    }
}

/* ---- block barrier ------------------------------------------------------------------------- */

/* Called when every live thread waits at __syncthreads. */
void release_block_barrier(Grid &g)
{
    if (g.exited > 0)
        kernel_fail("__syncthreads that exited threads of the block can no longer reach");
    const BlockSyncKind kind = g.threads[0].sync;
    unsigned count = 0;
    for (unsigned i = 0; i < g.block_threads; i++) {
        if (g.threads[i].sync != kind)
            kernel_fail("threads of a block reached different __syncthreads variants");
        count += g.threads[i].value != 0;
    }
    uint64_t result = 0;
    switch (kind) {
    case SYNC_PLAIN: result = 0; break;
    case SYNC_COUNT: result = count; break;
    case SYNC_AND: result = count == g.block_threads; break;
    case SYNC_OR: result = count != 0; break;
    }
    for (unsigned i = 0; i < g.block_threads; i++) {
        g.threads[i].result = result;
        g.ready.push_back(i);
    }
}

uint64_t next_random(uint64_t &state)
{
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

void shuffle_ready(Grid &g)
{
    for (size_t i = g.ready.size(); i > 1; i--) {
        const size_t j = next_random(g.rng) % i;
        const unsigned tmp = g.ready[i - 1];
        g.ready[i - 1] = g.ready[j];
        g.ready[j] = tmp;
    }
}

void run_block(Grid &g)
{
    memset(g.smem, 0xFF, g.cfg->smem_bytes);
    g.exited = 0;
    g.ready.clear();
    for (unsigned i = 0; i < g.block_threads; i++) {
        g.threads[i].stack = nullptr;
        g.threads[i].wait = Wait::RUNNABLE;
        g.ready.push_back(i);
    }
    const bool shuffle = settings().shuffle;
    for (;;) {
        if (shuffle)
            shuffle_ready(g);
        run_round(g);
        if (g.exited == g.block_threads)
            return;
        resolve_warps(g);
        if (g.ready.empty())
            release_block_barrier(g);
    }
}

/* ---- launch validation ---------------------------------------------------------------------- */

cudaError_t check_launch(const LaunchConfig &c)
{
    if (no_device())
        return cudaErrorNoDevice;
    if (!c.kernel)
        return cudaErrorInvalidDeviceFunction;
    if (!valid_stream(c.stream))
        return cudaErrorInvalidResourceHandle;
    const uint64_t threads = (uint64_t)c.block.x * c.block.y * c.block.z;
    if (c.block.x == 0 || c.block.y == 0 || c.block.z == 0 || c.block.x > 1024 || c.block.y > 1024 ||
        c.block.z > 64 || threads > 1024)
        return cudaErrorInvalidConfiguration;
    if (c.grid.x == 0 || c.grid.y == 0 || c.grid.z == 0 || c.grid.x > 0x7fffffffu || c.grid.y > 65535 ||
        c.grid.z > 65535)
        return cudaErrorInvalidConfiguration;
    if (c.smem_bytes > max_dynamic_smem(c.kernel))
        return cudaErrorInvalidValue;
    return cudaSuccess;
}

void prepare_grid(Grid &g)
{
    const dim3 b = g.cfg->block;
    g.block_threads = b.x * b.y * b.z;
    g.threads.assign(g.block_threads, Thread{});
    for (unsigned i = 0; i < g.block_threads; i++)
        g.threads[i].idx = make_uint3(i % b.x, i / b.x % b.y, i / (b.x * b.y));
    g.ready.reserve(g.block_threads);
    g.round.reserve(g.block_threads);
    void *smem = nullptr;
    if (posix_memalign(&smem, 128, g.cfg->smem_bytes ? g.cfg->smem_bytes : 1) != 0)
        die("cannot allocate %zu bytes of dynamic shared memory", g.cfg->smem_bytes);
    g.smem = static_cast<unsigned char *>(smem);
    g.rng = 0x9E3779B97F4A7C15ull ^ (++g_launch_count * 0xBF58476D1CE4E5B9ull);
}

} /* namespace */

/* ---- entry points ----------------------------------------------------------------------------- */

void run_grid(const LaunchConfig &cfg, void (*run_thread)(const void *args), const void *args)
{
    if (t_in_launch)
        die("kernel launched from inside a kernel at %s:%d (dynamic parallelism is not emulated)", cfg.file,
             cfg.line);
    const cudaError_t err = check_launch(cfg);
    if (err != cudaSuccess) {
        record(err);
        return;
    }
    std::lock_guard<std::mutex> lock(g_launch_mutex);
    t_in_launch = true;
    watch_stack_overflow();
    Grid g{};
    g.cfg = &cfg;
    g.run_thread = run_thread;
    g.args = args;
    prepare_grid(g);
    g_grid = &g;
    coords.block_dim = cfg.block;
    coords.grid_dim = cfg.grid;
    for (unsigned z = 0; z < cfg.grid.z; z++)
        for (unsigned y = 0; y < cfg.grid.y; y++)
            for (unsigned x = 0; x < cfg.grid.x; x++) {
                coords.block_idx = make_uint3(x, y, z);
                run_block(g);
            }
    g_grid = nullptr;
    free(g.smem);
    t_in_launch = false;
}

int block_sync(BlockSyncKind kind, int predicate)
{
    Thread &t = running_thread("__syncthreads");
    t.sync = kind;
    t.value = predicate != 0;
    suspend(t, Wait::BLOCK_SYNC);
    return (int)t.result;
}

uint64_t warp_op(WarpOpKind kind, unsigned mask, uint64_t value, int arg, int width)
{
    Thread &t = running_thread("a warp op (__shfl_*_sync, __syncwarp, a vote)");
    t.op = kind;
    t.mask = mask;
    t.value = value;
    t.arg = arg;
    t.width = width;
    suspend(t, Wait::WARP_OP);
    return t.result;
}

void warp_collective(WarpCollective &op)
{
    warp_op(COLLECTIVE, 0xffffffffu, reinterpret_cast<uint64_t>(&op), 0, (int)WARP);
}

void kernel_error(const char *fmt, ...)
{
    running_thread("a kernel-side check");
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    kernel_fail(what);
}

size_t max_dynamic_smem(const void *kernel)
{
    std::lock_guard<std::mutex> lock(g_attr_mutex);
    const auto it = g_max_dynamic_smem.find(kernel);
    return it == g_max_dynamic_smem.end() ? DEFAULT_DYNAMIC_SMEM : it->second;
}

void reset_launch_state()
{
    if (t_in_launch)
        die("cudaDeviceReset called inside a kernel");
    std::lock_guard<std::mutex> launch_lock(g_launch_mutex);
    free_all_stacks();
    std::lock_guard<std::mutex> lock(g_attr_mutex);
    g_max_dynamic_smem.clear();
}

} /* namespace emu */

void *emu_dynamic_smem()
{
    emu::running_thread("emu_dynamic_smem");
    return emu::g_grid->smem;
}

extern "C" cudaError_t cudaFuncSetAttribute(const void *func, enum cudaFuncAttribute attr, int value)
{
    if (emu::no_device())
        return emu::record(cudaErrorNoDevice);
    if (!func)
        return emu::record(cudaErrorInvalidDeviceFunction);
    switch (attr) {
    case cudaFuncAttributeMaxDynamicSharedMemorySize:
        if (value < 0 || (size_t)value > emu::OPTIN_DYNAMIC_SMEM)
            return emu::record(cudaErrorInvalidValue);
        {
            std::lock_guard<std::mutex> lock(emu::g_attr_mutex);
            emu::g_max_dynamic_smem[func] = (size_t)value;
        }
        return cudaSuccess;
    case cudaFuncAttributePreferredSharedMemoryCarveout:
        return value >= -1 && value <= 100 ? cudaSuccess : emu::record(cudaErrorInvalidValue);
    default:
        return emu::record(cudaErrorInvalidValue);
    }
}
