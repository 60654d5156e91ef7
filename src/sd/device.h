/* Which backend the engine runs on: SDXL_DEVICE (auto, cuda, cpu) and
 * SDXL_CUDA_PRECISION (fp16, bf16, fp32) (with SDXL_CUDA_MEMORY_LIMIT_MB),
 * and the CUDA backend loaded at run
 * time from its module (libsdxl_cuda.so, built when the CUDA toolkit is
 * found), so that one binary starts on machines with and without the NVIDIA
 * driver: without a usable GPU, `auto` runs on the CPU and says why, and
 * `cuda` is an error. Owner: backend selection (docs/gpu.md).
 *
 * Precision on the GPU (activations; weights stay in their stored dtype when
 * it is the activations', else they are converted once when uploaded):
 *   fp16  text encoders and UNet in fp16, the VAE in fp32 (it overflows in
 *         fp16: specs/cuda-backend.md §2.4) with TF32 tensor-core math;
 *   bf16  everything in bf16;
 *   fp32  everything in fp32, TF32 off: the tight comparison with the CPU;
 *   auto  bf16 for a checkpoint stored in bf16, else fp16.
 * Every GEMM, convolution and attention accumulates in fp32; softmax and
 * norm statistics are fp32. */
#ifndef SDXL_SD_DEVICE_H
#define SDXL_SD_DEVICE_H

#include <stddef.h>

#include "sd/backend.h"

typedef enum {
    SD_DEVICE_FROM_ENV = 0, /* SDXL_DEVICE, default auto */
    SD_DEVICE_AUTO,         /* the GPU when one is usable, else the CPU */
    SD_DEVICE_CPU,
    SD_DEVICE_CUDA,         /* the GPU, or an error */
} sd_device_kind;

typedef enum {
    SD_PRECISION_FROM_ENV = 0, /* SDXL_CUDA_PRECISION, default auto */
    SD_PRECISION_AUTO,
    SD_PRECISION_FP16,
    SD_PRECISION_BF16,
    SD_PRECISION_FP32,
} sd_precision;

typedef struct {
    sd_device_kind kind;
    sd_precision precision;
    int cuda_device;         /* CUDA device ordinal (default 0) */
    /* The most device memory the backend's tensors, scratch and weight
     * copies may hold (bytes; 0: $SDXL_CUDA_MEMORY_LIMIT_MB, else the card's):
     * beyond it an allocation fails as out of memory, as on a smaller card. */
    size_t cuda_memory_limit;
    /* The CUDA module's path; NULL: $SDXL_CUDA_MODULE, else libsdxl_cuda.so
     * beside the executable, else the dynamic loader's search path. */
    const char *cuda_module;
    sd_cpu_options cpu;      /* for the CPU backend */
} sd_device_options;

/* "auto", "cpu", "cuda" / "auto", "fp16", "bf16", "fp32" (case-insensitive); 0 or -1. */
int sd_device_kind_parse(const char *s, sd_device_kind *out);
int sd_precision_parse(const char *s, sd_precision *out);
const char *sd_device_kind_name(sd_device_kind k);
const char *sd_precision_name(sd_precision p);

/* Opens the backend `o` asks for (o may be NULL: everything from the
 * environment). weights: the stored dtype of the UNet's weights (AUTO
 * precision follows it). line gets one line for the start-up log: the
 * backend's description, and for a fall-back to the CPU, why the GPU is not
 * used. NULL with err when SDXL_DEVICE / SDXL_CUDA_PRECISION /
 * SDXL_CPU_PRECISION hold an unknown value, when `cuda` was asked for and no
 * GPU is usable, when the CPU backend runs with SDXL_CPU_PRECISION=bf16 on a
 * CPU without AVX-512-BF16 (or without oneDNN), or when out of memory. */
sd_backend *sd_backend_open(const sd_device_options *o, sd_dtype weights, char *line, size_t linelen, char *err,
                            size_t errlen);

/* ---- the CUDA module's interface (src/sd/cuda/) ------------------------------------ */

/* What the module's constructor takes: the device, each stage's activation
 * dtype (SD_F32, SD_F16 or SD_BF16) and whether fp32 GEMMs and convolutions
 * may use TF32 tensor cores. */
typedef struct {
    int device;
    sd_dtype stage_dtype[SD_STAGE_COUNT];
    int allow_tf32;
    size_t memory_limit; /* bytes of tensors + scratch + weights; 0: none */
} sd_cuda_options;

/* Bumped whenever sd_backend_ops, struct sd_backend, sd_tensor, sd_weight
 * or sd_cuda_options change: a module of another version is refused. */
#define SD_CUDA_MODULE_ABI 1

/* Exported by the module: its ABI number and the constructor, which returns
 * NULL with err (no driver, no device, a library missing, out of memory). */
#define SD_CUDA_EXPORT __attribute__((visibility("default")))
SD_CUDA_EXPORT int sd_cuda_module_abi(void);
SD_CUDA_EXPORT sd_backend *sd_backend_cuda_new(const sd_cuda_options *o, char *err, size_t errlen);

/* The stage dtypes and TF32 setting of a precision (AUTO resolved with
 * `weights`). */
void sd_cuda_options_for(sd_precision p, sd_dtype weights, sd_cuda_options *o);

#endif
