/* emu_runtime.cpp: the CUDA runtime API subset of the emulator, with C
 * linkage and the real prototypes: device memory (host memory, one exact-size
 * allocation each, NaN-filled, under a configurable limit), the default
 * memory pool's bookkeeping, device queries, streams and events (everything
 * is synchronous), and the per-thread last error. Also the emulator's
 * settings from the environment and the registry queries its other files
 * use to tell device pointers from host pointers. */
#include "emu_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <map>
#include <mutex>

struct CUstream_st {
    unsigned flags;
};

struct CUevent_st {
    unsigned flags;
    bool recorded;
    double ms; /* host wall clock at the last record */
};

struct CUmemPoolHandle_st {
    int device;
};

namespace emu {

namespace {

/* ---- settings --------------------------------------------------------------------------- */

size_t env_size(const char *name, size_t fallback)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return fallback;
    char *end = nullptr;
    errno = 0;
    const unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || s[0] == '-')
        die("%s=%s is not a byte count", name, s);
    return (size_t)v;
}

Settings read_settings()
{
    Settings s;
    s.memory_limit = env_size("SDXL_CUDA_EMU_MEMORY", (size_t)8 << 30);
    s.device_count = (int)env_size("SDXL_CUDA_EMU_DEVICES", 1);
    s.stack_bytes = env_size("SDXL_CUDA_EMU_STACK", 256 * 1024);
    if (s.stack_bytes < 16 * 1024)
        die("SDXL_CUDA_EMU_STACK=%zu is below the 16 KiB minimum", s.stack_bytes);
    const char *shuffle = getenv("SDXL_CUDA_EMU_SHUFFLE");
    s.shuffle = shuffle && strcmp(shuffle, "1") == 0;
    return s;
}

std::once_flag g_settings_once;
Settings g_settings;

/* ---- device memory ------------------------------------------------------------------------ */

enum class Kind { DEVICE, POOL, PINNED };

struct Allocation {
    size_t bytes;
    Kind kind;
};

std::mutex g_mem_mutex; /* guards everything below */
std::map<uintptr_t, Allocation> &g_allocations = *new std::map<uintptr_t, Allocation>;
size_t g_device_bytes; /* live cudaMalloc bytes */
size_t g_peak_bytes;
thread_local int t_current_device; /* as in CUDA, per host thread */

/* The default pool: cudaMallocAsync memory. Freed blocks stay reserved
 * until a synchronisation trims the reserve down to the release threshold. */
CUmemPoolHandle_st g_pool{0};
struct PoolStats {
    size_t used, used_high, reserved, reserved_high, release_threshold;
} g_pool_stats;

size_t live_device_bytes() { return g_device_bytes + g_pool_stats.reserved; }

void note_peak()
{
    if (live_device_bytes() > g_peak_bytes)
        g_peak_bytes = live_device_bytes();
}

/* The allocation holding [p, p + bytes): INSIDE, OUTSIDE every allocation,
 * or OVERRUN (starts in one, runs past its end). Caller holds g_mem_mutex. */
enum class Range { INSIDE, OUTSIDE, OVERRUN };
Range locate(const void *p, size_t bytes)
{
    const uintptr_t a = (uintptr_t)p;
    auto it = g_allocations.upper_bound(a);
    if (it == g_allocations.begin())
        return Range::OUTSIDE;
    --it;
    const uintptr_t base = it->first, size = it->second.bytes;
    if (a >= base + size && !(a == base && size == 0))
        return Range::OUTSIDE;
    return bytes <= base + size - a ? Range::INSIDE : Range::OVERRUN;
}

void *host_allocation(size_t bytes)
{
    void *p = nullptr;
    /* cudaMalloc's pointers are 256-byte aligned; kernels may rely on it */
    if (posix_memalign(&p, 256, bytes) != 0)
        return nullptr;
    memset(p, 0xFF, bytes); /* NaN in fp32/fp16/bf16: uninitialised reads show up */
    return p;
}

void trim_pool(size_t keep)
{
    PoolStats &s = g_pool_stats;
    const size_t target = keep > s.used ? keep : s.used;
    if (s.reserved > target)
        s.reserved = target;
}

/* A synchronisation point: the pool returns its reserve above the threshold. */
void synchronised()
{
    std::lock_guard<std::mutex> lock(g_mem_mutex);
    trim_pool(g_pool_stats.release_threshold);
}

cudaError_t allocate(void **out, size_t bytes, Kind kind)
{
    if (!out)
        return record(cudaErrorInvalidValue);
    if (no_device())
        return record(cudaErrorNoDevice);
    *out = nullptr;
    if (bytes == 0)
        return cudaSuccess;
    std::lock_guard<std::mutex> lock(g_mem_mutex);
    const size_t limit = settings().memory_limit;
    PoolStats &pool = g_pool_stats;
    const size_t growth = kind == Kind::DEVICE ? bytes
                          : kind == Kind::POOL && pool.used + bytes > pool.reserved ? pool.used + bytes - pool.reserved
                                                                                      : 0;
    if (growth > limit - live_device_bytes())
        return record(cudaErrorMemoryAllocation);
    void *p = host_allocation(bytes);
    if (!p)
        return record(cudaErrorMemoryAllocation);
    g_allocations[(uintptr_t)p] = Allocation{bytes, kind};
    if (kind == Kind::DEVICE)
        g_device_bytes += bytes;
    if (kind == Kind::POOL) {
        pool.reserved += growth;
        pool.used += bytes;
        pool.used_high = pool.used > pool.used_high ? pool.used : pool.used_high;
        pool.reserved_high = pool.reserved > pool.reserved_high ? pool.reserved : pool.reserved_high;
    }
    note_peak();
    *out = p;
    return cudaSuccess;
}

/* Frees `p` if it is a live allocation of one of the kinds `pinned` selects. */
cudaError_t release(void *p, bool pinned)
{
    if (!p)
        return cudaSuccess;
    std::lock_guard<std::mutex> lock(g_mem_mutex);
    const auto it = g_allocations.find((uintptr_t)p);
    if (it == g_allocations.end() || (it->second.kind == Kind::PINNED) != pinned)
        return record(cudaErrorInvalidValue);
    if (it->second.kind == Kind::DEVICE)
        g_device_bytes -= it->second.bytes;
    if (it->second.kind == Kind::POOL)
        g_pool_stats.used -= it->second.bytes;
    g_allocations.erase(it);
    free(p);
    return cudaSuccess;
}

void release_everything()
{
    std::lock_guard<std::mutex> lock(g_mem_mutex);
    for (auto &a : g_allocations)
        free((void *)a.first);
    g_allocations.clear();
    g_device_bytes = 0;
    g_pool_stats = PoolStats{};
    g_peak_bytes = 0;
}

/* Checks a copy's or memset's device side: INSIDE an allocation, or for
 * cudaMemcpyDefault anywhere but OVERRUN. */
bool device_side_ok(const void *p, size_t bytes, bool must_be_device)
{
    std::lock_guard<std::mutex> lock(g_mem_mutex);
    const Range r = locate(p, bytes);
    return r == Range::INSIDE || (!must_be_device && r == Range::OUTSIDE);
}

/* ---- streams and events -------------------------------------------------------------------- */

Registry<CUstream_st> &g_streams = *new Registry<CUstream_st>;
Registry<CUevent_st> &g_events = *new Registry<CUevent_st>;

double now_ms()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- errors ------------------------------------------------------------------------------- */

thread_local cudaError_t t_last_error = cudaSuccess;

/* The codes the emulator returns, with real CUDA's descriptions. */
struct ErrorText {
    cudaError_t code;
    const char *name;
    const char *text;
};
#define EMU_ERROR(code, text) {code, #code, text}
const ErrorText ERROR_TEXTS[] = {
    EMU_ERROR(cudaSuccess, "no error"),
    EMU_ERROR(cudaErrorInvalidValue, "invalid argument"),
    EMU_ERROR(cudaErrorMemoryAllocation, "out of memory"),
    EMU_ERROR(cudaErrorInitializationError, "initialization error"),
    EMU_ERROR(cudaErrorInvalidConfiguration, "invalid configuration argument"),
    EMU_ERROR(cudaErrorInvalidMemcpyDirection, "invalid copy direction for memcpy"),
    EMU_ERROR(cudaErrorInvalidDeviceFunction, "invalid device function"),
    EMU_ERROR(cudaErrorNoDevice, "no CUDA-capable device is detected"),
    EMU_ERROR(cudaErrorInvalidDevice, "invalid device ordinal"),
    EMU_ERROR(cudaErrorInvalidResourceHandle, "invalid resource handle"),
    EMU_ERROR(cudaErrorNotReady, "device not ready"),
    EMU_ERROR(cudaErrorNotSupported, "operation not supported"),
};
#undef EMU_ERROR

const ErrorText *error_text(cudaError_t code)
{
    for (const ErrorText &e : ERROR_TEXTS)
        if (e.code == code)
            return &e;
    return nullptr;
}

/* ---- device properties --------------------------------------------------------------------- */

/* A Hopper-class part with 4 SMs and the emulator's memory limit. */
cudaDeviceProp emulated_properties()
{
    cudaDeviceProp p;
    memset(&p, 0, sizeof p);
    snprintf(p.name, sizeof p.name, "CUDA emulator (host CPU)");
    p.totalGlobalMem = settings().memory_limit;
    p.sharedMemPerBlock = 48 * 1024;
    p.sharedMemPerBlockOptin = 227 * 1024;
    p.sharedMemPerMultiprocessor = 228 * 1024;
    p.reservedSharedMemPerBlock = 1024;
    p.regsPerBlock = 65536;
    p.regsPerMultiprocessor = 65536;
    p.warpSize = 32;
    p.memPitch = 0x7fffffff;
    p.maxThreadsPerBlock = 1024;
    p.maxThreadsDim[0] = 1024;
    p.maxThreadsDim[1] = 1024;
    p.maxThreadsDim[2] = 64;
    p.maxGridSize[0] = 0x7fffffff;
    p.maxGridSize[1] = 65535;
    p.maxGridSize[2] = 65535;
    p.totalConstMem = 64 * 1024;
    p.major = 9;
    p.minor = 0;
    p.textureAlignment = 512;
    p.texturePitchAlignment = 32;
    p.multiProcessorCount = 4;
    p.maxThreadsPerMultiProcessor = 2048;
    p.maxBlocksPerMultiProcessor = 32;
    p.concurrentKernels = 1;
    p.asyncEngineCount = 2;
    p.unifiedAddressing = 1;
    p.canMapHostMemory = 1;
    p.memoryBusWidth = 5120;
    p.l2CacheSize = 50 * 1024 * 1024;
    p.globalL1CacheSupported = 1;
    p.localL1CacheSupported = 1;
    p.streamPrioritiesSupported = 1;
    p.managedMemory = 1;
    p.computePreemptionSupported = 1;
    p.cooperativeLaunch = 1;
    p.memoryPoolsSupported = 1;
    p.hostNumaId = -1;
    return p;
}

bool valid_device(int device) { return device >= 0 && device < settings().device_count; }

} /* namespace */

/* ---- shared with the emulator's other files --------------------------------------------------- */

const Settings &settings()
{
    std::call_once(g_settings_once, [] { g_settings = read_settings(); });
    return g_settings;
}

bool no_device() { return settings().device_count <= 0; }

cudaError_t record(cudaError_t err)
{
    if (err != cudaSuccess)
        t_last_error = err;
    return err;
}

void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("cuda_emu: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
    abort();
}

bool valid_stream(cudaStream_t stream)
{
    return stream == nullptr || stream == cudaStreamLegacy || stream == cudaStreamPerThread || g_streams.live(stream);
}

bool device_accessible(const void *p, size_t bytes)
{
    if (bytes == 0)
        return true;
    std::lock_guard<std::mutex> lock(g_mem_mutex);
    return locate(p, bytes) == Range::INSIDE;
}

void require_device_accessible(const void *p, size_t bytes, const char *api, const char *what)
{
    if (!device_accessible(p, bytes))
        die("%s: %s (%p, %zu bytes) is not inside one device allocation (a GPU would fault)", api, what, p, bytes);
}

} /* namespace emu */

using emu::record;

extern "C" {

size_t cuda_emu_peak_bytes(void)
{
    std::lock_guard<std::mutex> lock(emu::g_mem_mutex);
    return emu::g_peak_bytes;
}

void cuda_emu_reset_peak(void)
{
    std::lock_guard<std::mutex> lock(emu::g_mem_mutex);
    emu::g_peak_bytes = emu::live_device_bytes();
}

/* ---- memory ------------------------------------------------------------------------------------ */

cudaError_t cudaMalloc(void **devPtr, size_t size) { return emu::allocate(devPtr, size, emu::Kind::DEVICE); }

cudaError_t cudaMallocAsync(void **devPtr, size_t size, cudaStream_t hStream)
{
    if (!emu::valid_stream(hStream))
        return record(cudaErrorInvalidResourceHandle);
    return emu::allocate(devPtr, size, emu::Kind::POOL);
}

cudaError_t cudaMallocHost(void **ptr, size_t size) { return emu::allocate(ptr, size, emu::Kind::PINNED); }

cudaError_t cudaHostAlloc(void **pHost, size_t size, unsigned int flags)
{
    const unsigned known = cudaHostAllocPortable | cudaHostAllocMapped | cudaHostAllocWriteCombined;
    if (flags & ~known)
        return record(cudaErrorInvalidValue);
    return emu::allocate(pHost, size, emu::Kind::PINNED);
}

cudaError_t cudaFree(void *devPtr) { return emu::release(devPtr, false); }

cudaError_t cudaFreeAsync(void *devPtr, cudaStream_t hStream)
{
    if (!emu::valid_stream(hStream))
        return record(cudaErrorInvalidResourceHandle);
    return emu::release(devPtr, false);
}

cudaError_t cudaFreeHost(void *ptr) { return emu::release(ptr, true); }

cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind)
{
    if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault)
        return record(cudaErrorInvalidMemcpyDirection);
    if (count == 0)
        return cudaSuccess;
    if (!dst || !src)
        return record(cudaErrorInvalidValue);
    const bool dst_device = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    const bool src_device = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    const bool checked = kind != cudaMemcpyHostToHost;
    if (checked && (!emu::device_side_ok(dst, count, dst_device) || !emu::device_side_ok(src, count, src_device)))
        return record(cudaErrorInvalidValue);
    memcpy(dst, src, count); /* overlapping ranges are undefined in CUDA too: ASan reports them */
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind, cudaStream_t stream)
{
    if (!emu::valid_stream(stream))
        return record(cudaErrorInvalidResourceHandle);
    return cudaMemcpy(dst, src, count, kind);
}

cudaError_t cudaMemset(void *devPtr, int value, size_t count)
{
    if (count == 0)
        return cudaSuccess;
    if (!emu::device_side_ok(devPtr, count, true))
        return record(cudaErrorInvalidValue);
    memset(devPtr, value, count);
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *devPtr, int value, size_t count, cudaStream_t stream)
{
    if (!emu::valid_stream(stream))
        return record(cudaErrorInvalidResourceHandle);
    return cudaMemset(devPtr, value, count);
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes)
{
    if (!free_bytes || !total_bytes)
        return record(cudaErrorInvalidValue);
    if (emu::no_device())
        return record(cudaErrorNoDevice);
    std::lock_guard<std::mutex> lock(emu::g_mem_mutex);
    *total_bytes = emu::settings().memory_limit;
    *free_bytes = *total_bytes - emu::live_device_bytes();
    return cudaSuccess;
}

/* ---- the default memory pool --------------------------------------------------------------------- */

cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t *memPool, int device)
{
    if (!memPool)
        return record(cudaErrorInvalidValue);
    if (emu::no_device())
        return record(cudaErrorNoDevice);
    if (!emu::valid_device(device))
        return record(cudaErrorInvalidDevice);
    *memPool = &emu::g_pool;
    return cudaSuccess;
}

cudaError_t cudaMemPoolTrimTo(cudaMemPool_t memPool, size_t minBytesToKeep)
{
    if (memPool != &emu::g_pool)
        return record(cudaErrorInvalidValue);
    std::lock_guard<std::mutex> lock(emu::g_mem_mutex);
    emu::trim_pool(minBytesToKeep);
    return cudaSuccess;
}

cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t memPool, enum cudaMemPoolAttr attr, void *value)
{
    if (memPool != &emu::g_pool || !value)
        return record(cudaErrorInvalidValue);
    std::lock_guard<std::mutex> lock(emu::g_mem_mutex);
    emu::PoolStats &s = emu::g_pool_stats;
    const unsigned long long v = *static_cast<const unsigned long long *>(value);
    switch (attr) {
    case cudaMemPoolReuseFollowEventDependencies:
    case cudaMemPoolReuseAllowOpportunistic:
    case cudaMemPoolReuseAllowInternalDependencies:
        return cudaSuccess; /* allocations are never reused across streams here */
    case cudaMemPoolAttrReleaseThreshold: s.release_threshold = (size_t)v; return cudaSuccess;
    case cudaMemPoolAttrReservedMemHigh:
        if (v != 0)
            return record(cudaErrorInvalidValue);
        s.reserved_high = s.reserved;
        return cudaSuccess;
    case cudaMemPoolAttrUsedMemHigh:
        if (v != 0)
            return record(cudaErrorInvalidValue);
        s.used_high = s.used;
        return cudaSuccess;
    default: return record(cudaErrorInvalidValue);
    }
}

cudaError_t cudaMemPoolGetAttribute(cudaMemPool_t memPool, enum cudaMemPoolAttr attr, void *value)
{
    if (memPool != &emu::g_pool || !value)
        return record(cudaErrorInvalidValue);
    std::lock_guard<std::mutex> lock(emu::g_mem_mutex);
    const emu::PoolStats &s = emu::g_pool_stats;
    unsigned long long *out = static_cast<unsigned long long *>(value);
    switch (attr) {
    case cudaMemPoolReuseFollowEventDependencies:
    case cudaMemPoolReuseAllowOpportunistic:
    case cudaMemPoolReuseAllowInternalDependencies: *static_cast<int *>(value) = 1; return cudaSuccess;
    case cudaMemPoolAttrReleaseThreshold: *out = s.release_threshold; return cudaSuccess;
    case cudaMemPoolAttrReservedMemCurrent: *out = s.reserved; return cudaSuccess;
    case cudaMemPoolAttrReservedMemHigh: *out = s.reserved_high; return cudaSuccess;
    case cudaMemPoolAttrUsedMemCurrent: *out = s.used; return cudaSuccess;
    case cudaMemPoolAttrUsedMemHigh: *out = s.used_high; return cudaSuccess;
    default: return record(cudaErrorInvalidValue);
    }
}

/* ---- device ------------------------------------------------------------------------------------ */

cudaError_t cudaGetDeviceCount(int *count)
{
    if (!count)
        return record(cudaErrorInvalidValue);
    *count = emu::no_device() ? 0 : emu::settings().device_count;
    return emu::no_device() ? record(cudaErrorNoDevice) : cudaSuccess;
}

cudaError_t cudaSetDevice(int device)
{
    if (emu::no_device())
        return record(cudaErrorNoDevice);
    if (!emu::valid_device(device))
        return record(cudaErrorInvalidDevice);
    emu::t_current_device = device;
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int *device)
{
    if (!device)
        return record(cudaErrorInvalidValue);
    if (emu::no_device())
        return record(cudaErrorNoDevice);
    *device = emu::t_current_device;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *prop, int device)
{
    if (!prop)
        return record(cudaErrorInvalidValue);
    if (emu::no_device())
        return record(cudaErrorNoDevice);
    if (!emu::valid_device(device))
        return record(cudaErrorInvalidDevice);
    *prop = emu::emulated_properties();
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *value, enum cudaDeviceAttr attr, int device)
{
    if (!value)
        return record(cudaErrorInvalidValue);
    if (emu::no_device())
        return record(cudaErrorNoDevice);
    if (!emu::valid_device(device))
        return record(cudaErrorInvalidDevice);
    const cudaDeviceProp p = emu::emulated_properties();
    switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = p.maxThreadsPerBlock; break;
    case cudaDevAttrMaxBlockDimX: *value = p.maxThreadsDim[0]; break;
    case cudaDevAttrMaxBlockDimY: *value = p.maxThreadsDim[1]; break;
    case cudaDevAttrMaxBlockDimZ: *value = p.maxThreadsDim[2]; break;
    case cudaDevAttrMaxGridDimX: *value = p.maxGridSize[0]; break;
    case cudaDevAttrMaxGridDimY: *value = p.maxGridSize[1]; break;
    case cudaDevAttrMaxGridDimZ: *value = p.maxGridSize[2]; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = (int)p.sharedMemPerBlock; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = (int)p.sharedMemPerBlockOptin; break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor: *value = (int)p.sharedMemPerMultiprocessor; break;
    case cudaDevAttrReservedSharedMemoryPerBlock: *value = (int)p.reservedSharedMemPerBlock; break;
    case cudaDevAttrTotalConstantMemory: *value = (int)p.totalConstMem; break;
    case cudaDevAttrWarpSize: *value = p.warpSize; break;
    case cudaDevAttrMaxRegistersPerBlock: *value = p.regsPerBlock; break;
    case cudaDevAttrMaxRegistersPerMultiprocessor: *value = p.regsPerMultiprocessor; break;
    case cudaDevAttrMultiProcessorCount: *value = p.multiProcessorCount; break;
    case cudaDevAttrMaxThreadsPerMultiProcessor: *value = p.maxThreadsPerMultiProcessor; break;
    case cudaDevAttrMaxBlocksPerMultiprocessor: *value = p.maxBlocksPerMultiProcessor; break;
    case cudaDevAttrComputeCapabilityMajor: *value = p.major; break;
    case cudaDevAttrComputeCapabilityMinor: *value = p.minor; break;
    case cudaDevAttrClockRate: *value = 1980000; break;       /* kHz, an H100 SXM's boost clock */
    case cudaDevAttrMemoryClockRate: *value = 2619000; break; /* kHz */
    case cudaDevAttrGlobalMemoryBusWidth: *value = p.memoryBusWidth; break;
    case cudaDevAttrL2CacheSize: *value = p.l2CacheSize; break;
    case cudaDevAttrConcurrentKernels: *value = p.concurrentKernels; break;
    case cudaDevAttrAsyncEngineCount: *value = p.asyncEngineCount; break;
    case cudaDevAttrUnifiedAddressing: *value = p.unifiedAddressing; break;
    case cudaDevAttrCanMapHostMemory: *value = p.canMapHostMemory; break;
    case cudaDevAttrManagedMemory: *value = p.managedMemory; break;
    case cudaDevAttrCooperativeLaunch: *value = p.cooperativeLaunch; break;
    case cudaDevAttrMemoryPoolsSupported: *value = p.memoryPoolsSupported; break;
    case cudaDevAttrIntegrated: *value = p.integrated; break;
    default: return record(cudaErrorInvalidValue);
    }
    return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int *driverVersion)
{
    if (!driverVersion)
        return record(cudaErrorInvalidValue);
    *driverVersion = 13000;
    return cudaSuccess;
}

cudaError_t cudaRuntimeGetVersion(int *runtimeVersion)
{
    if (!runtimeVersion)
        return record(cudaErrorInvalidValue);
    *runtimeVersion = CUDART_VERSION;
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void)
{
    if (emu::no_device())
        return record(cudaErrorNoDevice);
    emu::synchronised();
    return cudaSuccess;
}

/* Frees every allocation, forgets kernel attributes, clears the last error
 * and re-reads the SDXL_CUDA_EMU_* settings. Streams and events stay valid. */
cudaError_t cudaDeviceReset(void)
{
    emu::reset_launch_state();
    emu::release_everything();
    emu::settings(); /* so that the first read cannot overwrite this one */
    emu::g_settings = emu::read_settings();
    emu::t_last_error = cudaSuccess;
    return cudaSuccess;
}

/* ---- streams --------------------------------------------------------------------------------- */

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *pStream, unsigned int flags)
{
    if (!pStream || (flags & ~(unsigned)cudaStreamNonBlocking))
        return record(cudaErrorInvalidValue);
    if (emu::no_device())
        return record(cudaErrorNoDevice);
    *pStream = emu::g_streams.add(new CUstream_st{flags});
    return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t *pStream) { return cudaStreamCreateWithFlags(pStream, cudaStreamDefault); }

cudaError_t cudaStreamDestroy(cudaStream_t stream)
{
    return emu::g_streams.remove(stream) ? cudaSuccess : record(cudaErrorInvalidResourceHandle);
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream)
{
    if (!emu::valid_stream(stream))
        return record(cudaErrorInvalidResourceHandle);
    emu::synchronised();
    return cudaSuccess;
}

cudaError_t cudaStreamQuery(cudaStream_t stream)
{
    return emu::valid_stream(stream) ? cudaSuccess : record(cudaErrorInvalidResourceHandle);
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags)
{
    if (!emu::valid_stream(stream) || !emu::g_events.live(event))
        return record(cudaErrorInvalidResourceHandle);
    return flags == 0 ? cudaSuccess : record(cudaErrorInvalidValue);
}

/* ---- events ---------------------------------------------------------------------------------- */

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int flags)
{
    const unsigned known = cudaEventBlockingSync | cudaEventDisableTiming | cudaEventInterprocess;
    if (!event || (flags & ~known) || ((flags & cudaEventInterprocess) && !(flags & cudaEventDisableTiming)))
        return record(cudaErrorInvalidValue);
    if (emu::no_device())
        return record(cudaErrorNoDevice);
    *event = emu::g_events.add(new CUevent_st{flags, false, 0.0});
    return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t *event) { return cudaEventCreateWithFlags(event, cudaEventDefault); }

cudaError_t cudaEventDestroy(cudaEvent_t event)
{
    return emu::g_events.remove(event) ? cudaSuccess : record(cudaErrorInvalidResourceHandle);
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream)
{
    if (!emu::g_events.live(event) || !emu::valid_stream(stream))
        return record(cudaErrorInvalidResourceHandle);
    event->recorded = true;
    event->ms = emu::now_ms();
    return cudaSuccess;
}

cudaError_t cudaEventQuery(cudaEvent_t event)
{
    return emu::g_events.live(event) ? cudaSuccess : record(cudaErrorInvalidResourceHandle);
}

cudaError_t cudaEventSynchronize(cudaEvent_t event)
{
    if (!emu::g_events.live(event))
        return record(cudaErrorInvalidResourceHandle);
    emu::synchronised();
    return cudaSuccess;
}

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end)
{
    if (!ms)
        return record(cudaErrorInvalidValue);
    if (!emu::g_events.live(start) || !emu::g_events.live(end))
        return record(cudaErrorInvalidResourceHandle);
    const bool timed = !((start->flags | end->flags) & cudaEventDisableTiming);
    if (!timed || !start->recorded || !end->recorded)
        return record(cudaErrorInvalidResourceHandle);
    *ms = (float)(end->ms - start->ms);
    return cudaSuccess;
}

/* ---- errors ---------------------------------------------------------------------------------- */

cudaError_t cudaGetLastError(void)
{
    const cudaError_t e = emu::t_last_error;
    emu::t_last_error = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError(void) { return emu::t_last_error; }

const char *cudaGetErrorString(cudaError_t error)
{
    const emu::ErrorText *e = emu::error_text(error);
    return e ? e->text : "unrecognized error code";
}

const char *cudaGetErrorName(cudaError_t error)
{
    const emu::ErrorText *e = emu::error_text(error);
    return e ? e->name : "unrecognized error code";
}

} /* extern "C" */
