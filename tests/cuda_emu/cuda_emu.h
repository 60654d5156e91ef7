/* cuda_emu.h: the kernel-language layer of the host-CPU CUDA emulator.
 *
 * A CUDA kernel file compiled by g++ as C++17 with -DSD_CUDA_EMU gets this
 * header through src/sd/cuda/cuda_common.cuh in place of nvcc's built-ins:
 * the execution-space keywords, threadIdx/blockIdx/blockDim/gridDim,
 * __syncthreads, the __shfl_*_sync family, atomics, the device math
 * intrinsics, emu_launch (what SD_LAUNCH expands to), emu_dynamic_smem, and
 * (through emu_wmma.h) the warp matrix functions of <mma.h>, nvcuda::wmma.
 * Types, enums and the runtime/cuBLAS/cuDNN prototypes come from the real
 * CUDA headers; their definitions live in emu_*.cpp (README.md says what is
 * emulated and what is not).
 *
 * Included from C it declares only the C part: the real runtime API and the
 * emulator's device-memory peak counters. */
#ifndef SDXL_CUDA_EMU_H
#define SDXL_CUDA_EMU_H

#include <stddef.h>

#ifdef __cplusplus
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#else
#include <cuda_runtime_api.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Highest number of device bytes (cudaMalloc'd plus memory-pool reserve)
 * live at once since the start or the last cuda_emu_reset_peak. */
size_t cuda_emu_peak_bytes(void);
void cuda_emu_reset_peak(void);

#ifdef __cplusplus
}
#endif

#ifdef __cplusplus

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <tuple>
#include <utility>

/* ---- execution-space keywords ------------------------------------------------------
 * The real headers define these as GNU attributes g++ does not know. */
#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __noinline__
#undef __shared__
#undef __constant__
#undef __launch_bounds__
#undef __align__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
/* `static`: one copy per kernel instantiation, shared by every thread that
 * runs it. Correct only because the emulator runs one block at a time on
 * one host thread (launches are serialised), so that copy is the running
 * block's shared memory. Unlike dynamic shared memory it is not refilled
 * with NaN at each block start. */
#define __shared__ static
#define __constant__
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
/* __restrict__ is a g++ keyword already. */

namespace emu {

/* The coordinates of the emulated thread now running; the scheduler
 * rewrites thread_idx whenever it resumes a thread. */
struct Coords {
    uint3 thread_idx;
    uint3 block_idx;
    dim3 block_dim;
    dim3 grid_dim;
};
extern Coords coords;

} /* namespace emu */

#define threadIdx (static_cast<const uint3 &>(emu::coords.thread_idx))
#define blockIdx (static_cast<const uint3 &>(emu::coords.block_idx))
#define blockDim (static_cast<const dim3 &>(emu::coords.block_dim))
#define gridDim (static_cast<const dim3 &>(emu::coords.grid_dim))
static constexpr int warpSize = 32;

/* ---- barriers and warp operations (emu_launch.cpp) ---------------------------------- */

namespace emu {

enum WarpOpKind { SHFL_IDX, SHFL_UP, SHFL_DOWN, SHFL_XOR, SYNCWARP, VOTE_BALLOT, VOTE_ANY, VOTE_ALL, COLLECTIVE };
enum BlockSyncKind { SYNC_PLAIN, SYNC_COUNT, SYNC_AND, SYNC_OR };

/* Suspends the running thread until every thread of its block arrives;
 * returns the reduction `kind` asks for over the threads' predicates. */
int block_sync(BlockSyncKind kind, int predicate);
/* Suspends the running thread until every lane of its warp arrives at a warp
 * op of the same kind; returns this lane's result bits. */
uint64_t warp_op(WarpOpKind kind, unsigned mask, uint64_t value, int arg, int width);

/* A warp-collective operation beyond shuffles and votes (the WMMA
 * functions): every lane passes its own description. Once every lane of the
 * warp has arrived, lanes[0]->resolve(lanes, n) runs once, before any lane
 * goes on, and returns null or the reason the kernel must abort; n is the
 * warp's lane count (below 32 in a partial last warp). */
struct WarpCollective {
    const char *(*resolve)(WarpCollective *const *lanes, unsigned n);
};
void warp_collective(WarpCollective &op);

/* Aborts with "cuda_emu: <message> ... in kernel launched at <file:line>",
 * as the emulator's own divergence checks do. */
[[noreturn]] void kernel_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

template <typename T> inline uint64_t to_bits(const T &v)
{
    static_assert(sizeof(T) <= sizeof(uint64_t), "warp ops move at most 8 bytes");
    uint64_t bits = 0;
    memcpy(&bits, static_cast<const void *>(&v), sizeof(T));
    return bits;
}

template <typename T> inline T from_bits(uint64_t bits)
{
    T v;
    memcpy(static_cast<void *>(&v), &bits, sizeof(T));
    return v;
}

} /* namespace emu */

/* The compiler barriers keep shared and global memory values from being held
 * in registers across the switch to other emulated threads. */
inline void __syncthreads()
{
    __asm__ __volatile__("" ::: "memory");
    emu::block_sync(emu::SYNC_PLAIN, 0);
    __asm__ __volatile__("" ::: "memory");
}

inline int __syncthreads_count(int predicate)
{
    __asm__ __volatile__("" ::: "memory");
    int r = emu::block_sync(emu::SYNC_COUNT, predicate);
    __asm__ __volatile__("" ::: "memory");
    return r;
}

inline int __syncthreads_and(int predicate)
{
    __asm__ __volatile__("" ::: "memory");
    int r = emu::block_sync(emu::SYNC_AND, predicate);
    __asm__ __volatile__("" ::: "memory");
    return r;
}

inline int __syncthreads_or(int predicate)
{
    __asm__ __volatile__("" ::: "memory");
    int r = emu::block_sync(emu::SYNC_OR, predicate);
    __asm__ __volatile__("" ::: "memory");
    return r;
}

inline void __syncwarp(unsigned mask = 0xffffffffu)
{
    __asm__ __volatile__("" ::: "memory");
    emu::warp_op(emu::SYNCWARP, mask, 0, 0, warpSize);
    __asm__ __volatile__("" ::: "memory");
}

inline unsigned __ballot_sync(unsigned mask, int predicate)
{
    return (unsigned)emu::warp_op(emu::VOTE_BALLOT, mask, predicate != 0, 0, warpSize);
}

inline int __any_sync(unsigned mask, int predicate)
{
    return (int)emu::warp_op(emu::VOTE_ANY, mask, predicate != 0, 0, warpSize);
}

inline int __all_sync(unsigned mask, int predicate)
{
    return (int)emu::warp_op(emu::VOTE_ALL, mask, predicate != 0, 0, warpSize);
}

/* The overloads CUDA declares for the shuffles (sm_30_intrinsics.h and the
 * fp16/bf16 headers), so that argument conversions behave as under nvcc. */
#define EMU_SHUFFLES(T)                                                                       \
    inline T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize)           \
    {                                                                                        \
        return emu::from_bits<T>(emu::warp_op(emu::SHFL_IDX, mask, emu::to_bits(var), src_lane, width)); \
    }                                                                                        \
    inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize)      \
    {                                                                                        \
        return emu::from_bits<T>(emu::warp_op(emu::SHFL_UP, mask, emu::to_bits(var), (int)delta, width)); \
    }                                                                                        \
    inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize)    \
    {                                                                                        \
        return emu::from_bits<T>(emu::warp_op(emu::SHFL_DOWN, mask, emu::to_bits(var), (int)delta, width)); \
    }                                                                                        \
    inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize)      \
    {                                                                                        \
        return emu::from_bits<T>(emu::warp_op(emu::SHFL_XOR, mask, emu::to_bits(var), lane_mask, width)); \
    }
EMU_SHUFFLES(int)
EMU_SHUFFLES(unsigned)
EMU_SHUFFLES(long)
EMU_SHUFFLES(unsigned long)
EMU_SHUFFLES(long long)
EMU_SHUFFLES(unsigned long long)
EMU_SHUFFLES(float)
EMU_SHUFFLES(double)
EMU_SHUFFLES(__half)
EMU_SHUFFLES(__half2)
EMU_SHUFFLES(__nv_bfloat16)
EMU_SHUFFLES(__nv_bfloat162)
#undef EMU_SHUFFLES

inline void __threadfence() { __asm__ __volatile__("" ::: "memory"); }
inline void __threadfence_block() { __asm__ __volatile__("" ::: "memory"); }

/* ---- atomics ------------------------------------------------------------------------
 * Plain read-modify-writes: emulated threads never run concurrently (one host
 * thread runs a grid, and grids run one at a time), so these are atomic. */
#define EMU_ATOMIC(name, T, expr) \
    inline T name(T *address, T val) { T old = *address; *address = (expr); return old; }
EMU_ATOMIC(atomicAdd, int, old + val)
EMU_ATOMIC(atomicAdd, unsigned, old + val)
EMU_ATOMIC(atomicAdd, unsigned long long, old + val)
EMU_ATOMIC(atomicAdd, float, old + val)
EMU_ATOMIC(atomicAdd, double, old + val)
EMU_ATOMIC(atomicSub, int, old - val)
EMU_ATOMIC(atomicSub, unsigned, old - val)
EMU_ATOMIC(atomicMax, int, old > val ? old : val)
EMU_ATOMIC(atomicMax, unsigned, old > val ? old : val)
EMU_ATOMIC(atomicMax, long long, old > val ? old : val)
EMU_ATOMIC(atomicMax, unsigned long long, old > val ? old : val)
EMU_ATOMIC(atomicMin, int, old < val ? old : val)
EMU_ATOMIC(atomicMin, unsigned, old < val ? old : val)
EMU_ATOMIC(atomicMin, long long, old < val ? old : val)
EMU_ATOMIC(atomicMin, unsigned long long, old < val ? old : val)
EMU_ATOMIC(atomicExch, int, val)
EMU_ATOMIC(atomicExch, unsigned, val)
EMU_ATOMIC(atomicExch, unsigned long long, val)
EMU_ATOMIC(atomicExch, float, val)
EMU_ATOMIC(atomicAnd, int, old & val)
EMU_ATOMIC(atomicAnd, unsigned, old & val)
EMU_ATOMIC(atomicAnd, unsigned long long, old & val)
EMU_ATOMIC(atomicOr, int, old | val)
EMU_ATOMIC(atomicOr, unsigned, old | val)
EMU_ATOMIC(atomicOr, unsigned long long, old | val)
EMU_ATOMIC(atomicXor, int, old ^ val)
EMU_ATOMIC(atomicXor, unsigned, old ^ val)
EMU_ATOMIC(atomicXor, unsigned long long, old ^ val)
EMU_ATOMIC(atomicInc, unsigned, old >= val ? 0u : old + 1u)
EMU_ATOMIC(atomicDec, unsigned, (old == 0u || old > val) ? val : old - 1u)
#undef EMU_ATOMIC

#define EMU_ATOMIC_CAS(T) \
    inline T atomicCAS(T *address, T compare, T val) { T old = *address; if (old == compare) *address = val; return old; }
EMU_ATOMIC_CAS(int)
EMU_ATOMIC_CAS(unsigned)
EMU_ATOMIC_CAS(unsigned long long)
EMU_ATOMIC_CAS(unsigned short)
#undef EMU_ATOMIC_CAS

/* ---- math ---------------------------------------------------------------------------
 * The <math.h> fp32 functions are the host's. The fast intrinsics are computed
 * exactly here; on a GPU they are approximations (ex2.approx etc.), so
 * results can differ from a GPU's in the last bits. */
inline float __expf(float x) { return expf(x); }
inline float __exp10f(float x) { return exp10f(x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __log10f(float x) { return log10f(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline void __sincosf(float x, float *s, float *c) { *s = sinf(x); *c = cosf(x); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __fadd_rn(float x, float y) { return x + y; }
inline float __fsub_rn(float x, float y) { return x - y; }
inline float __fmul_rn(float x, float y) { return x * y; }
inline float __fdiv_rn(float x, float y) { return x / y; }
inline float __fmaf_rn(float x, float y, float z) { return fmaf(x, y, z); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
/* CUDA: clamps to [0, 1] and maps NaN to 0. */
inline float __saturatef(float x) { return x >= 1.0f ? 1.0f : x > 0.0f ? x : 0.0f; }

inline int __float_as_int(float x) { return emu::from_bits<int>(emu::to_bits(x)); }
inline float __int_as_float(int x) { return emu::from_bits<float>(emu::to_bits(x)); }
inline unsigned __float_as_uint(float x) { return emu::from_bits<unsigned>(emu::to_bits(x)); }
inline float __uint_as_float(unsigned x) { return emu::from_bits<float>(emu::to_bits(x)); }
inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
inline int __float2int_rz(float x) { return (int)x; }
inline int __float2int_rd(float x) { return (int)floorf(x); }
inline int __float2int_ru(float x) { return (int)ceilf(x); }

inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }

template <typename T> inline T __ldg(const T *p) { return *p; }

/* CUDA's global min/max overloads (crt/math_functions.h), mixed signedness included. */
#define EMU_MIN_MAX(R, A, B)                                                      \
    inline R min(A a, B b) { return (R)a < (R)b ? (R)a : (R)b; }                  \
    inline R max(A a, B b) { return (R)a > (R)b ? (R)a : (R)b; }
EMU_MIN_MAX(int, int, int)
EMU_MIN_MAX(unsigned, unsigned, unsigned)
EMU_MIN_MAX(unsigned, int, unsigned)
EMU_MIN_MAX(unsigned, unsigned, int)
EMU_MIN_MAX(long, long, long)
EMU_MIN_MAX(unsigned long, unsigned long, unsigned long)
EMU_MIN_MAX(unsigned long, long, unsigned long)
EMU_MIN_MAX(unsigned long, unsigned long, long)
EMU_MIN_MAX(long long, long long, long long)
EMU_MIN_MAX(unsigned long long, unsigned long long, unsigned long long)
EMU_MIN_MAX(unsigned long long, long long, unsigned long long)
EMU_MIN_MAX(unsigned long long, unsigned long long, long long)
#undef EMU_MIN_MAX
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
inline double min(float a, double b) { return fmin(a, b); }
inline double max(float a, double b) { return fmax(a, b); }
inline double min(double a, float b) { return fmin(a, b); }
inline double max(double a, float b) { return fmax(a, b); }
inline unsigned umin(unsigned a, unsigned b) { return min(a, b); }
inline unsigned umax(unsigned a, unsigned b) { return max(a, b); }
inline long long llmin(long long a, long long b) { return min(a, b); }
inline long long llmax(long long a, long long b) { return max(a, b); }
inline unsigned long long ullmin(unsigned long long a, unsigned long long b) { return min(a, b); }
inline unsigned long long ullmax(unsigned long long a, unsigned long long b) { return max(a, b); }

/* ---- launches (emu_launch.cpp) ------------------------------------------------------ */

namespace emu {

struct LaunchConfig {
    dim3 grid;
    dim3 block;
    size_t smem_bytes;
    cudaStream_t stream;
    const void *kernel;
    const char *file; /* the launch site, for error messages */
    int line;
};

/* Validates `cfg` as CUDA does and runs the whole grid, calling
 * run_thread(args) on each emulated thread; a bad configuration runs nothing
 * and becomes the thread's last CUDA error. */
void run_grid(const LaunchConfig &cfg, void (*run_thread)(const void *args), const void *args);

/* The callable emu_launch returns: calling it with the kernel's arguments
 * converts them to the parameter types (as a kernel call does) and runs the
 * grid; every emulated thread gets its own copy of the parameters. */
template <typename... Params> class Launch {
public:
    Launch(const LaunchConfig &cfg, void (*kernel)(Params...)) : cfg_(cfg), kernel_(kernel) {}

    void operator()(Params... args) const
    {
        const Bound bound{kernel_, std::tuple<Params...>(args...)};
        run_grid(cfg_, &Launch::run_thread, &bound);
    }

private:
    struct Bound {
        void (*kernel)(Params...);
        std::tuple<Params...> args;
    };

    static void run_thread(const void *p)
    {
        const Bound *b = static_cast<const Bound *>(p);
        std::apply(b->kernel, b->args);
    }

    LaunchConfig cfg_;
    void (*kernel_)(Params...);
};

} /* namespace emu */

/* kernel<<<grid, block, smem_bytes, stream>>>(args...) is
 * emu_launch(grid, block, smem_bytes, stream, kernel)(args...). The default
 * arguments record the launch site for error messages. */
template <typename... Params>
emu::Launch<Params...> emu_launch(dim3 grid, dim3 block, size_t smem_bytes, cudaStream_t stream,
                                  void (*kernel)(Params...), const char *file = __builtin_FILE(),
                                  int line = __builtin_LINE())
{
    const emu::LaunchConfig cfg{grid, block, smem_bytes, stream, reinterpret_cast<const void *>(kernel), file, line};
    return emu::Launch<Params...>(cfg, kernel);
}

/* The running block's dynamic shared memory: 128-byte aligned (as
 * cuda_common.cuh declares it for the GPU), refilled with 0xFF bytes (NaN as
 * fp32/fp16/bf16) at every block start. */
void *emu_dynamic_smem();

/* The C++ overload of cuda_runtime.h that takes the kernel itself. */
template <typename T> inline cudaError_t cudaFuncSetAttribute(T *kernel, cudaFuncAttribute attr, int value)
{
    return ::cudaFuncSetAttribute(reinterpret_cast<const void *>(kernel), attr, value);
}

#include "emu_wmma.h"

#endif /* __cplusplus */

#endif
