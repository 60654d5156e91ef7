/* emu_internal.h: what the emulator's own files share and kernels never
 * see: error recording, the abort path for bugs a GPU would fault on, the
 * device-memory registry queries, the emulator's settings, the element
 * conversions and dot product that the math-library emulations use, and the
 * GEMM that cuBLAS and cuBLASLt share. */
#ifndef SDXL_CUDA_EMU_INTERNAL_H
#define SDXL_CUDA_EMU_INTERNAL_H

#include "cuda_emu.h"

#include <cublas_api.h>
#include <stddef.h>
#include <stdint.h>

#include <mutex>
#include <set>

/* The emulator's containers (allocation registry, handle sets, stacks) are
 * heap objects that are never destroyed: exit-time destructors would race
 * with CUDA calls from threads still running, and would turn allocations
 * a program leaves to process exit (as real CUDA programs may) into
 * LeakSanitizer reports. */

namespace emu {

/* ---- errors (emu_runtime.cpp) ---- */

/* Records `err` as the calling host thread's last CUDA error unless it is
 * cudaSuccess, and returns it. */
cudaError_t record(cudaError_t err);

/* Prints "cuda_emu: <message>" to stderr and aborts: for misuse that a real
 * GPU would answer with a fault or a hang rather than an error code. */
[[noreturn]] void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- settings (emu_runtime.cpp), read from the environment at the first
 * CUDA call and again at cudaDeviceReset ---- */
struct Settings {
    size_t memory_limit; /* SDXL_CUDA_EMU_MEMORY, bytes of device memory */
    int device_count;    /* SDXL_CUDA_EMU_DEVICES */
    size_t stack_bytes;  /* SDXL_CUDA_EMU_STACK, per emulated thread */
    bool shuffle;        /* SDXL_CUDA_EMU_SHUFFLE=1: random thread order between barriers */
};
const Settings &settings();

/* True when the emulated machine has no device (SDXL_CUDA_EMU_DEVICES=0). */
bool no_device();

/* True when `stream` is 0, a special stream handle, or a live stream. */
bool valid_stream(cudaStream_t stream);

/* True when [p, p + bytes) lies inside one live cudaMalloc* or pinned host
 * allocation (both are device-accessible; bytes == 0 is always true). */
bool device_accessible(const void *p, size_t bytes);

/* Aborts, naming `api` and `what`, unless device_accessible(p, bytes). */
void require_device_accessible(const void *p, size_t bytes, const char *api, const char *what);

/* The live handles of one kind (streams, events, library handles): made
 * with new, checked on every use, deleted once; a stale or foreign handle is
 * reported, not dereferenced. */
template <typename T> class Registry {
public:
    T *add(T *handle)
    {
        std::lock_guard<std::mutex> lock(mutex_);
        live_.insert(handle);
        return handle;
    }
    bool live(const T *handle)
    {
        std::lock_guard<std::mutex> lock(mutex_);
        return handle && live_.count(handle) != 0;
    }
    /* Deletes `handle`; false when it was not live. */
    bool remove(T *handle)
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (live_.erase(handle) == 0)
            return false;
        delete handle;
        return true;
    }

private:
    std::mutex mutex_;
    std::set<const T *> live_;
};

/* ---- launches (emu_launch.cpp) ---- */

/* The largest dynamic shared memory `kernel` may launch with. */
size_t max_dynamic_smem(const void *kernel);
/* Forgets per-kernel attributes and the fiber stacks (cudaDeviceReset). */
void reset_launch_state();

/* ---- element types of the math libraries (emu_cublas.cpp, emu_cudnn.cpp) ---- */

enum class Elem { F32, F16, BF16 };

size_t elem_size(Elem e);
float load_elem(const void *base, size_t i, Elem e);
void store_elem(void *base, size_t i, Elem e, float v);

/* How fp32 inputs are rounded before a tensor-core style multiply. */
enum class InputRounding { NONE, TF32, F16, BF16 };
float round_input(float v, InputRounding r);

/* sum a[i] * b[i] over n elements, accumulated in double. */
double dot(const float *a, const float *b, size_t n);

/* ---- the column-major GEMM of the cuBLAS and cuBLASLt emulations (emu_gemm.cpp) ---- */

/* One validated GEMM: D = epilogue(alpha op(A) op(B) + beta C), column-major
 * with leading dimensions in elements (cuBLAS's D is its C). */
struct Gemm {
    bool a_transposed, b_transposed;
    int64_t m, n, k, lda, ldb, ldc, ldd;
    float alpha, beta;
    Elem ab, c, d;
    InputRounding rounding;
};

/* What cuBLASLt's epilogues do before the store: add bias[row] (unless
 * bias is null), then apply an activation. */
enum class Activation { NONE, RELU, GELU_TANH };
struct Epilogue {
    const void *bias;
    Elem bias_elem;
    Activation activation;
};

/* The emulated element type of a cudaDataType; false for the others. */
bool blas_elem(cudaDataType t, Elem *e);

/* cublasGemmEx's type table for the fp32 compute types (A and B alike, C
 * like them or fp32; the FAST types for fp32 data only); sets g->ab and
 * g->c (and g->d = g->c). */
cublasStatus_t gemm_types(cudaDataType a, cudaDataType b, cudaDataType c, cublasComputeType_t compute, Gemm *g);

/* How fp32 inputs are rounded: the FAST compute types always, COMPUTE_32F
 * under the TF32 (or deprecated tensor-op) math modes; PEDANTIC never. */
InputRounding gemm_rounding(cublasComputeType_t compute, cublasMath_t math);

/* Bytes a column-major rows x cols matrix with leading dimension ld spans. */
size_t matrix_bytes(int64_t rows, int64_t cols, int64_t ld, Elem e);

/* Runs g: every element is one dot product over fp32 inputs accumulated in
 * double, rounded once to D's type; C is read only when beta != 0. Aborts,
 * naming `api`, when a matrix is not device-accessible. */
void run_gemm(const Gemm &g, const void *A, const void *B, const void *C, void *D, const Epilogue &ep,
              const char *api);

} /* namespace emu */

#endif
