/* The CUDA backend: activations in device memory in each stage's dtype,
 * cuBLAS for GEMMs, cuDNN for convolutions, our kernels for the rest, all
 * on one stream. This file owns the backend state, the device probe and
 * its description, tensor memory (the stream-ordered pool: cudaMallocAsync),
 * scratch, uploads and downloads (fp32 on the host side), synchronisation
 * and the dispatch table, and exports the module's entry points
 * (sd/device.h). docs/gpu.md has the design. */
#include "sd/cuda/cuda_backend.h"

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- statuses ------------------------------------------------------------------------ */

int cuda_ok(sd_backend *be, cudaError_t e, const char *what)
{
    if (e == cudaSuccess) return 0;
    cudaGetLastError(); /* clear a non-sticky error so that later calls start clean */
    return sd_backend_fail(be, "%s: %s", what, e == cudaErrorMemoryAllocation ? "out of memory" : cudaGetErrorString(e));
}

int cublas_ok(sd_backend *be, cublasStatus_t s, const char *what)
{
    if (s == CUBLAS_STATUS_SUCCESS) return 0;
    return sd_backend_fail(be, "%s: cuBLAS: %s", what, s == CUBLAS_STATUS_ALLOC_FAILED ? "out of memory"
                                                                                      : cublasGetStatusString(s));
}

int cudnn_ok(sd_backend *be, cudnnStatus_t s, const char *what)
{
    if (s == CUDNN_STATUS_SUCCESS) return 0;
    return sd_backend_fail(be, "%s: cuDNN: %s", what, s == CUDNN_STATUS_ALLOC_FAILED ? "out of memory"
                                                                                    : cudnnGetErrorString(s));
}

cudaDataType_t cuda_blas_type(sd_dtype t)
{
    return t == SD_F16 ? CUDA_R_16F : t == SD_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

cudnnDataType_t cuda_dnn_type(sd_dtype t)
{
    return t == SD_F16 ? CUDNN_DATA_HALF : t == SD_BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
}

/* ---- memory ---------------------------------------------------------------------------- */

static size_t cuda_scratch_bytes(const sd_backend *be);
static size_t cuda_weight_bytes(const sd_backend *be);

int cuda_fits(sd_backend *be, size_t bytes, const char *what)
{
    const cuda_state *st = cuda_of(be);
    size_t held = be->live_bytes + cuda_scratch_bytes(be) + cuda_weight_bytes(be);
    if (!st->memory_limit || held + bytes <= st->memory_limit) return 0;
    return sd_backend_fail(be, "%s: out of memory (%.1f MB more over the %.1f MB limit, SDXL_CUDA_MEMORY_LIMIT_MB)",
                           what, bytes / 1048576.0, st->memory_limit / 1048576.0);
}

static float *cuda_alloc(sd_backend *be, sd_tensor *t)
{
    cuda_state *st = cuda_of(be);
    cudaSetDevice(st->device); /* the current device is per host thread; jobs may run on another than start-up's */
    t->dtype = st->stage_dtype[st->stage];
    void *p = NULL;
    if (st->memory_limit && cuda_fits(be, sd_tensor_bytes(t), "sd_tensor_new")) {
        sd_backend_clear_error(be); /* sd_tensor_new reports the failure itself */
        return NULL;
    }
    if (cudaMallocAsync(&p, sd_tensor_bytes(t), st->stream) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    return p;
}

static void cuda_release(sd_backend *be, float *p) { cudaFreeAsync(p, cuda_of(be)->stream); }

static size_t cuda_scratch_bytes(const sd_backend *be)
{
    const cuda_state *st = cuda_of(be);
    size_t n = 0;
    for (int i = 0; i < CUDA_SCRATCH_COUNT; i++) n += st->scratch_cap[i];
    return n;
}

static size_t cuda_weight_bytes(const sd_backend *be) { return sd_weight_cache_bytes(cuda_of(be)->weights); }

void *cuda_scratch(sd_backend *be, cuda_scratch_slot slot, size_t bytes)
{
    cuda_state *st = cuda_of(be);
    if (bytes <= st->scratch_cap[slot]) return st->scratch[slot];
    if (st->scratch[slot]) cudaFreeAsync(st->scratch[slot], st->stream);
    st->scratch[slot] = NULL;
    st->scratch_cap[slot] = 0;
    if (cuda_fits(be, bytes, "cuda scratch") ||
        cuda_ok(be, cudaMallocAsync(&st->scratch[slot], bytes, st->stream), "cuda scratch")) {
        st->scratch[slot] = NULL;
        return NULL;
    }
    st->scratch_cap[slot] = bytes;
    sd_backend_note_peak(be);
    return st->scratch[slot];
}

static void cuda_trim(sd_backend *be)
{
    cuda_state *st = cuda_of(be);
    for (int i = 0; i < CUDA_SCRATCH_COUNT; i++) {
        if (st->scratch[i]) cudaFreeAsync(st->scratch[i], st->stream);
        st->scratch[i] = NULL;
        st->scratch_cap[i] = 0;
    }
    cudaStreamSynchronize(st->stream);
    cudaMemPoolTrimTo(st->pool, 0);
    cudaGetLastError();
}

const void *cuda_operand(sd_backend *be, const sd_tensor *t, sd_dtype want, cuda_scratch_slot slot)
{
    if (t->dtype == want) return t->data;
    int64_t n = sd_numel(t);
    void *dst = cuda_scratch(be, slot, (size_t)n * sd_dtype_size(want));
    if (!dst || cuda_ok(be, sd_cuda_convert(dst, want, t->data, t->dtype, n, cuda_of(be)->stream), "convert"))
        return NULL;
    return dst;
}

/* ---- host transfers and synchronisation ------------------------------------------------------- */

/* Waits for the stream; a fault of any op since the last wait fails here.
 * Records the device memory in use (the pool keeps what it reserved, so
 * the use at a wait covers the op-by-op peak since the last one). */
static int cuda_sync(sd_backend *be)
{
    cuda_state *st = cuda_of(be);
    if (cuda_ok(be, cudaStreamSynchronize(st->stream), "cuda")) return -1;
    size_t free_b, total_b;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess && total_b - free_b > be->device_used_peak)
        be->device_used_peak = total_b - free_b;
    return 0;
}

static int cuda_upload(sd_backend *be, sd_tensor *dst, const float *src)
{
    cuda_state *st = cuda_of(be);
    int64_t n = sd_numel(dst);
    size_t bytes = (size_t)n * sizeof(float);
    if (dst->dtype == SD_F32)
        return cuda_ok(be, cudaMemcpyAsync(dst->data, src, bytes, cudaMemcpyHostToDevice, st->stream), "upload");
    void *stage = cuda_scratch(be, CUDA_SCRATCH_STAGING, bytes);
    if (!stage || cuda_ok(be, cudaMemcpyAsync(stage, src, bytes, cudaMemcpyHostToDevice, st->stream), "upload"))
        return -1;
    return cuda_ok(be, sd_cuda_convert(dst->data, dst->dtype, stage, SD_F32, n, st->stream), "upload");
}

static int cuda_download(sd_backend *be, float *dst, const sd_tensor *src)
{
    cuda_state *st = cuda_of(be);
    const void *f32 = cuda_operand(be, src, SD_F32, CUDA_SCRATCH_STAGING);
    if (!f32 || cuda_ok(be, cudaMemcpyAsync(dst, f32, (size_t)sd_numel(src) * sizeof(float), cudaMemcpyDeviceToHost,
                                            st->stream), "download"))
        return -1;
    return cuda_sync(be);
}

/* ---- stages, weights ----------------------------------------------------------------------- */

static void cuda_set_stage(sd_backend *be, sd_stage stage)
{
    cuda_of(be)->stage = stage;
    cudaSetDevice(cuda_of(be)->device);
}

static void cuda_forget_weights(sd_backend *be, const void *data, size_t bytes)
{
    cuda_weights_forget(be, data, bytes);
}

int cuda_load_weight(sd_backend *be, sd_tensor *t, const sd_weight *w)
{
    const void *dev = cuda_weight(be, w, t->dtype);
    if (!dev) return -1;
    return cuda_ok(be, cudaMemcpyAsync(t->data, dev, sd_tensor_bytes(t), cudaMemcpyDeviceToDevice,
                                       cuda_of(be)->stream), "sd_load_weight");
}

/* ---- the device and its description ------------------------------------------------------------ */

static const char *dtype_label(sd_dtype t) { return t == SD_F16 ? "fp16" : t == SD_BF16 ? "bf16" : "fp32"; }

static void describe_device(cuda_state *st, const struct cudaDeviceProp *prop)
{
    int driver = 0, runtime = 0, blas = 0;
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    cublasGetVersion(st->blas, &blas);
    size_t dnn = cudnnGetVersion();
    const sd_dtype *d = st->stage_dtype;
    snprintf(st->description, sizeof st->description,
             "%s (sm_%d%d, %.1f GiB), driver %d.%d, runtime %d.%d, cuBLAS %d.%d.%d, cuDNN %zu.%zu.%zu; "
             "activations: text encoders %s, UNet %s, VAE %s%s%s%s",
             prop->name, prop->major, prop->minor, (double)prop->totalGlobalMem / (1 << 30), driver / 1000,
             driver % 1000 / 10, runtime / 1000, runtime % 1000 / 10, blas / 10000, blas / 100 % 100, blas % 100,
             dnn / 10000, dnn / 100 % 100, dnn % 100, dtype_label(d[SD_STAGE_TEXT]), dtype_label(d[SD_STAGE_UNET]),
             dtype_label(d[SD_STAGE_VAE]), st->allow_tf32 && d[SD_STAGE_VAE] == SD_F32 ? " (TF32)" : "",
             st->generic_attention ? "; generic attention kernel (SDXL_CUDA_ATTENTION)" : "",
             st->unfused_bias ? "; bias after the GEMM (SDXL_CUDA_GEMM)" : "");
}

static const char *cuda_describe(sd_backend *be) { return cuda_of(be)->description; }

/* The oldest architecture the module is built for (CMake: 80 86 89 90). */
#define CUDA_MIN_MAJOR 8

/* Why cudaGetDeviceCount found nothing: the runtime says "driver version is
 * insufficient" also when there is no driver at all, which is the usual case. */
static void no_device(cudaError_t e, char *why, size_t whylen)
{
    void *driver = e == cudaErrorInsufficientDriver ? dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL) : NULL;
    if (e == cudaErrorInsufficientDriver && !driver)
        snprintf(why, whylen, "no NVIDIA driver (libcuda.so.1 not found)");
    else
        snprintf(why, whylen, "%s", e == cudaSuccess ? "no CUDA device" : cudaGetErrorString(e));
    if (driver) dlclose(driver);
}

/* Checks the device and makes the stream, the pool and the library
 * handles; 0, or -1 with why. */
static int open_device(cuda_state *st, char *why, size_t whylen)
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        cudaGetLastError();
        no_device(e, why, whylen);
        return -1;
    }
    if (st->device < 0 || st->device >= count)
        return snprintf(why, whylen, "CUDA device %d does not exist (%d found)", st->device, count), -1;
    struct cudaDeviceProp prop;
    if ((e = cudaSetDevice(st->device)) != cudaSuccess || (e = cudaGetDeviceProperties(&prop, st->device)) != cudaSuccess)
        return snprintf(why, whylen, "CUDA device %d: %s", st->device, cudaGetErrorString(e)), -1;
    if (prop.major < CUDA_MIN_MAJOR)
        return snprintf(why, whylen, "%s has compute capability %d.%d; this build needs %d.0 or newer", prop.name,
                        prop.major, prop.minor, CUDA_MIN_MAJOR), -1;
    st->total_mem = prop.totalGlobalMem;
    uint64_t keep = UINT64_MAX; /* the pool keeps freed memory for the next op instead of returning it */
    if ((e = cudaStreamCreateWithFlags(&st->stream, cudaStreamNonBlocking)) != cudaSuccess ||
        (e = cudaDeviceGetDefaultMemPool(&st->pool, st->device)) != cudaSuccess ||
        (e = cudaMemPoolSetAttribute(st->pool, cudaMemPoolAttrReleaseThreshold, &keep)) != cudaSuccess)
        return snprintf(why, whylen, "CUDA set-up: %s", cudaGetErrorString(e)), -1;
    cublasStatus_t bs = cublasCreate(&st->blas);
    if (bs == CUBLAS_STATUS_SUCCESS) bs = cublasSetStream(st->blas, st->stream);
    if (bs == CUBLAS_STATUS_SUCCESS) bs = cublasLtCreate(&st->blas_lt);
    if (bs != CUBLAS_STATUS_SUCCESS) return snprintf(why, whylen, "cuBLAS: %s", cublasGetStatusString(bs)), -1;
    cudnnStatus_t ds = cudnnCreate(&st->dnn);
    if (ds == CUDNN_STATUS_SUCCESS) ds = cudnnSetStream(st->dnn, st->stream);
    if (ds != CUDNN_STATUS_SUCCESS) return snprintf(why, whylen, "cuDNN: %s", cudnnGetErrorString(ds)), -1;
    describe_device(st, &prop);
    return 0;
}

static void close_device(cuda_state *st)
{
    for (int i = 0; i < CUDA_SCRATCH_COUNT; i++)
        if (st->scratch[i]) cudaFreeAsync(st->scratch[i], st->stream);
    if (st->stream) cudaStreamSynchronize(st->stream);
    sd_weight_cache_free(st->weights);
    cuda_conv_plans_free(st->conv_plans);
    cuda_gemm_plans_free(st->gemm_plans);
    if (st->blas_lt) cublasLtDestroy(st->blas_lt);
    if (st->dnn) cudnnDestroy(st->dnn);
    if (st->blas) cublasDestroy(st->blas);
    if (st->stream) cudaStreamDestroy(st->stream);
    if (st->pool) cudaMemPoolTrimTo(st->pool, 0);
    cudaGetLastError();
}

static void cuda_destroy(sd_backend *be)
{
    close_device(cuda_of(be));
    free(be->impl);
    free(be);
}

static const sd_backend_ops cuda_ops = {
    .name = "cuda",
    .destroy = cuda_destroy,
    .describe = cuda_describe,
    .scratch_bytes = cuda_scratch_bytes,
    .trim = cuda_trim,
    .set_stage = cuda_set_stage,
    .forget_weights = cuda_forget_weights,
    .sync = cuda_sync,
    .weight_bytes = cuda_weight_bytes,
    .alloc = cuda_alloc,
    .release = cuda_release,
    .upload = cuda_upload,
    .download = cuda_download,
    .load_weight = cuda_load_weight,
    .linear = cuda_linear,
    .conv2d = cuda_conv2d,
    .group_norm = cuda_group_norm,
    .layer_norm = cuda_layer_norm,
    .softmax = cuda_softmax,
    .attention = cuda_attention,
    .act = cuda_act,
    .geglu = cuda_geglu,
    .binary = cuda_binary,
    .scale = cuda_scale,
    .copy = cuda_copy,
    .fill = cuda_fill,
    .upsample_nearest = cuda_upsample_nearest,
    .copy_block = cuda_copy_block,
    .transpose = cuda_transpose,
    .embedding = cuda_embedding,
};

int sd_cuda_module_abi(void) { return SD_CUDA_MODULE_ABI; }

sd_backend *sd_backend_cuda_new(const sd_cuda_options *o, char *err, size_t errlen)
{
    sd_backend *be = calloc(1, sizeof *be);
    cuda_state *st = calloc(1, sizeof *st);
    if (st) st->weights = cuda_weights_new();
    if (!be || !st || !st->weights) {
        if (st) sd_weight_cache_free(st->weights);
        free(be);
        free(st);
        snprintf(err, errlen, "out of memory creating the CUDA backend");
        return NULL;
    }
    st->device = o->device;
    memcpy(st->stage_dtype, o->stage_dtype, sizeof st->stage_dtype);
    st->allow_tf32 = o->allow_tf32;
    st->memory_limit = o->memory_limit;
    const char *attn = getenv("SDXL_CUDA_ATTENTION");
    st->generic_attention = attn && !strcmp(attn, "generic");
    const char *gemm = getenv("SDXL_CUDA_GEMM");
    st->unfused_bias = gemm && !strcmp(gemm, "plain");
    if (open_device(st, err, errlen)) {
        close_device(st);
        free(st);
        free(be);
        return NULL;
    }
    be->ops = &cuda_ops;
    be->impl = st;
    return be;
}
