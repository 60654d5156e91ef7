/* Internals shared by the CUDA backend's C files (backend_cuda.c owns the
 * state): the device, its stream and library handles, each stage's
 * activation dtype, the device scratch buffers, the weight cache, and the
 * helpers that turn CUDA, cuBLAS and cuDNN statuses into the backend's
 * sticky error. The ops live in gemm_cuda.c, conv_cuda.c and ops_cuda.c;
 * the kernels behind them in *.cu (cuda_kernels.h). */
#ifndef SDXL_SD_CUDA_BACKEND_H
#define SDXL_SD_CUDA_BACKEND_H

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include "sd/backend_impl.h"
#include "sd/cuda/cuda_kernels.h"
#include "sd/device.h"
#include "sd/weight_cache.h"

/* Device scratch, one buffer per purpose so that an op can hold several. */
typedef enum {
    CUDA_SCRATCH_IN0,     /* inputs of another dtype, converted to the op's */
    CUDA_SCRATCH_IN1,
    CUDA_SCRATCH_IN2,
    CUDA_SCRATCH_STAGING, /* fp32 data on its way to or from the host; a weight's stored bytes */
    CUDA_SCRATCH_PAD,     /* a convolution's input, zero-padded */
    CUDA_SCRATCH_WORK,    /* cuDNN's workspace */
    CUDA_SCRATCH_SMALL,   /* group-norm statistics, embedding ids */
    CUDA_SCRATCH_COUNT
} cuda_scratch_slot;

typedef struct cuda_conv_plans cuda_conv_plans;
typedef struct cuda_gemm_plans cuda_gemm_plans;

typedef struct {
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    cublasLtHandle_t blas_lt;
    cudnnHandle_t dnn;
    cudaMemPool_t pool;
    sd_dtype stage_dtype[SD_STAGE_COUNT];
    sd_stage stage;
    int allow_tf32;
    size_t memory_limit; /* 0: none */
    int generic_attention; /* SDXL_CUDA_ATTENTION=generic: never the tensor-core kernel (for A/B checks) */
    int unfused_bias;      /* SDXL_CUDA_GEMM=plain: cublasGemmEx and a bias kernel, never cuBLASLt's epilogue */
    size_t total_mem;
    void *scratch[CUDA_SCRATCH_COUNT];
    size_t scratch_cap[CUDA_SCRATCH_COUNT];
    sd_weight_cache *weights;
    cuda_conv_plans *conv_plans; /* cuDNN descriptors and algorithm per convolution shape */
    cuda_gemm_plans *gemm_plans; /* cuBLASLt descriptors and algorithm per bias-GEMM shape */
    char description[1024];
} cuda_state;

static inline cuda_state *cuda_of(const sd_backend *be) { return (cuda_state *)be->impl; }

/* 0 for success, else records "<what>: <the library's message>" (out-of-memory
 * statuses say "out of memory") and returns -1. */
int cuda_ok(sd_backend *be, cudaError_t e, const char *what);
int cublas_ok(sd_backend *be, cublasStatus_t s, const char *what);
int cudnn_ok(sd_backend *be, cudnnStatus_t s, const char *what);

/* 0 when `bytes` more of tensors, scratch or weights stay within the
 * memory limit; else records "out of memory (...)" and returns -1. */
int cuda_fits(sd_backend *be, size_t bytes, const char *what);
/* A device scratch buffer of at least `bytes` (grown, never shrunk until
 * trim); NULL with the error set when out of memory. */
void *cuda_scratch(sd_backend *be, cuda_scratch_slot slot, size_t bytes);
/* t's data in dtype `want`: t's own when it is stored so, else a converted
 * copy in `slot`. NULL on failure. */
const void *cuda_operand(sd_backend *be, const sd_tensor *t, sd_dtype want, cuda_scratch_slot slot);
/* The device copy of weight w in dtype `want` (uploaded and converted on
 * first use, then cached by its host bytes); NULL on failure. */
const void *cuda_weight(sd_backend *be, const sd_weight *w, sd_dtype want);
/* The optional weight w, or NULL when w is; sets *failed when w's upload failed. */
const void *cuda_weight_opt(sd_backend *be, const sd_weight *w, sd_dtype want, int *failed);

sd_weight_cache *cuda_weights_new(void);
void cuda_weights_forget(sd_backend *be, const void *data, size_t bytes);

void cuda_conv_plans_free(cuda_conv_plans *p);
void cuda_gemm_plans_free(cuda_gemm_plans *p);

/* The cuBLAS / cuDNN type of an activation dtype. */
cudaDataType_t cuda_blas_type(sd_dtype t);
cudnnDataType_t cuda_dnn_type(sd_dtype t);

/* The table entries. */
int cuda_linear(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_weight *w, const sd_weight *b,
                int w_is_kn);
int cuda_conv2d(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_weight *w, const sd_weight *b,
                const sd_conv_geom *g);
int cuda_group_norm(sd_backend *be, sd_tensor *y, const sd_tensor *x, int groups, float eps, const sd_weight *gamma,
                    const sd_weight *beta, sd_act act);
int cuda_layer_norm(sd_backend *be, sd_tensor *y, const sd_tensor *x, float eps, const sd_weight *gamma,
                    const sd_weight *beta);
int cuda_softmax(sd_backend *be, sd_tensor *y, const sd_tensor *x);
int cuda_attention(sd_backend *be, sd_tensor *out, const sd_tensor *q, const sd_tensor *k, const sd_tensor *v,
                   int heads, int causal);
int cuda_act(sd_backend *be, sd_tensor *y, const sd_tensor *x, sd_act act);
int cuda_geglu(sd_backend *be, sd_tensor *y, const sd_tensor *x);
int cuda_binary(sd_backend *be, sd_tensor *y, const sd_tensor *a, const sd_tensor *b, const int64_t dim[4],
                const int64_t b_stride[4], int multiply);
int cuda_scale(sd_backend *be, sd_tensor *y, const sd_tensor *x, float alpha);
int cuda_copy(sd_backend *be, sd_tensor *y, const sd_tensor *x);
int cuda_fill(sd_backend *be, sd_tensor *y, float value);
int cuda_upsample_nearest(sd_backend *be, sd_tensor *y, const sd_tensor *x);
int cuda_copy_block(sd_backend *be, sd_tensor *y, const sd_tensor *x, int64_t outer, int64_t y_inner,
                    int64_t x_inner, int64_t offset, int gather);
int cuda_transpose(sd_backend *be, sd_tensor *y, const sd_tensor *x, int64_t batch, int64_t rows, int64_t cols);
int cuda_embedding(sd_backend *be, sd_tensor *y, const sd_weight *table, const int32_t *ids, int64_t n);
int cuda_load_weight(sd_backend *be, sd_tensor *t, const sd_weight *w);

#endif
