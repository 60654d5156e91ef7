/* The CPU backend: fp32 activations in host memory, OpenBLAS sgemm for every
 * GEMM (the linear and Winograd GEMMs in bf16 through oneDNN when asked, bf16.c), OpenMP
 * for everything else. This file owns the backend state, its
 * memory (64-byte aligned tensors, growable scratch), weight widening, and
 * the dispatch table; the ops live in gemm.c, conv.c, norm.c, attention.c,
 * elementwise.c and layout.c.
 *
 * Threads: OpenMP regions and OpenBLAS share one pool only with the OpenMP
 * build of OpenBLAS (libopenblas0-openmp); its sgemm runs single-threaded
 * when called inside a parallel region (the attention tiles) and threaded
 * outside. The pthreads build would oversubscribe; describe() names the
 * build that was loaded. */
#include "sd/cpu/cpu.h"
#include "sd/cpu/cpuid.h"

#include <cblas.h>
#include <limits.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CPU_ALIGN 64

static float *cpu_alloc_bytes(size_t bytes)
{
    size_t rounded = (bytes + CPU_ALIGN - 1) / CPU_ALIGN * CPU_ALIGN;
    return aligned_alloc(CPU_ALIGN, rounded ? rounded : CPU_ALIGN);
}

static float *cpu_alloc(sd_backend *be, sd_tensor *t)
{
    t->dtype = SD_F32;
    return cpu_alloc_bytes(sd_tensor_bytes(t));
}

static void cpu_release(sd_backend *be, float *p) { free(p); }

static size_t cpu_scratch_bytes(const sd_backend *be)
{
    const cpu_state *st = be->impl;
    size_t n = 0;
    for (int i = 0; i < CPU_SCRATCH_COUNT; i++) n += st->scratch_floats[i];
    return n * sizeof(float);
}

static void cpu_trim(sd_backend *be)
{
    cpu_state *st = cpu_of(be);
    for (int i = 0; i < CPU_SCRATCH_COUNT; i++) {
        free(st->scratch[i]);
        st->scratch[i] = NULL;
        st->scratch_floats[i] = 0;
    }
}

float *cpu_scratch(sd_backend *be, cpu_scratch_slot slot, size_t n)
{
    cpu_state *st = cpu_of(be);
    if (n <= st->scratch_floats[slot]) return st->scratch[slot];
    free(st->scratch[slot]);
    st->scratch_floats[slot] = 0;
    st->scratch[slot] = cpu_alloc_bytes(n * sizeof(float));
    if (!st->scratch[slot]) {
        sd_backend_fail(be, "cpu: out of memory for %.1f MB of scratch", n * sizeof(float) / 1048576.0);
        return NULL;
    }
    st->scratch_floats[slot] = n;
    sd_backend_note_peak(be);
    return st->scratch[slot];
}

/* Chunks of this many elements are widened per OpenMP work item. */
#define WIDEN_CHUNK ((size_t)1 << 16)

void cpu_widen(sd_backend *be, const sd_weight *w, size_t offset, size_t n, float *dst)
{
    int64_t chunks = (int64_t)((n + WIDEN_CHUNK - 1) / WIDEN_CHUNK);
#pragma omp parallel for num_threads(cpu_of(be)->threads) schedule(static) if (chunks > 1)
    for (int64_t c = 0; c < chunks; c++) {
        size_t at = (size_t)c * WIDEN_CHUNK, len = n - at < WIDEN_CHUNK ? n - at : WIDEN_CHUNK;
        sd_widen(w->dtype, w->data, offset + at, len, dst + at);
    }
}

const float *cpu_weight_f32(sd_backend *be, const sd_weight *w, cpu_scratch_slot slot)
{
    if (w->dtype == SD_F32 && (uintptr_t)w->data % sizeof(float) == 0) return w->data;
    size_t n = (size_t)sd_weight_numel(w);
    float *dst = cpu_scratch(be, slot, n);
    if (dst) cpu_widen(be, w, 0, n, dst);
    return dst;
}

int cpu_load_weight(sd_backend *be, sd_tensor *t, const sd_weight *w)
{
    cpu_widen(be, w, 0, (size_t)sd_weight_numel(w), t->data);
    return 0;
}

int cpu_blas_dims(sd_backend *be, const char *op, int n, const int64_t *dims)
{
    for (int i = 0; i < n; i++)
        if (dims[i] > INT_MAX) return sd_backend_fail(be, "%s: extent %lld is too large for BLAS", op, (long long)dims[i]);
    return 0;
}

static int cpu_upload(sd_backend *be, sd_tensor *dst, const float *src)
{
    memcpy(dst->data, src, sd_tensor_bytes(dst));
    return 0;
}

static int cpu_download(sd_backend *be, float *dst, const sd_tensor *src)
{
    memcpy(dst, src->data, sd_tensor_bytes(src));
    return 0;
}

/* How the OpenBLAS kernel set was chosen, for the start-up line. */
static void describe_core(char *out, size_t len)
{
    const char *first, *core = openblas_get_corename();
    switch (cpu_blas_core_origin(&first)) {
    case CPU_BLAS_CORE_CHOSEN: snprintf(out, len, "core %s, chosen for this CPU (OpenBLAS picked %s)", core, first); break;
    case CPU_BLAS_CORE_ENV: snprintf(out, len, "core %s from OPENBLAS_CORETYPE", core); break;
    case CPU_BLAS_CORE_FIXED: snprintf(out, len, "core %s, fixed at build time", core); break;
    default: snprintf(out, len, "core %s", core); break;
    }
}

static const char *cpu_describe(sd_backend *be)
{
    cpu_state *st = cpu_of(be);
    static const char *const kinds[] = {"sequential", "pthreads: oversubscribes, link the openmp build", "openmp"};
    const cpu_info *cpu = cpu_info_get();
    char features[256], core[128];
    cpu_features_string(cpu->features, features, sizeof features);
    describe_core(core, sizeof core);
    int par = openblas_get_parallel();
    snprintf(st->description, sizeof st->description, "%s (%s family %d model %d: %s); %s (%s, %s), %d threads%s",
             cpu->brand, cpu->vendor, cpu->family, cpu->model, features, openblas_get_config(),
             par >= 0 && par <= 2 ? kinds[par] : "unknown threading", core, st->threads,
             st->bf16 ? "; linear layers and Winograd convolutions in bf16 (oneDNN, SDXL_CPU_PRECISION=bf16)" : "");
    return st->description;
}

static void cpu_destroy(sd_backend *be)
{
    cpu_trim(be);
    cpu_bf16_free(cpu_of(be)->bf16);
    free(be->impl);
    free(be);
}

static void cpu_forget_weights(sd_backend *be, const void *data, size_t bytes)
{
    cpu_bf16_forget(cpu_of(be)->bf16, data, bytes);
}

static size_t cpu_weight_bytes(const sd_backend *be) { return cpu_bf16_bytes(((const cpu_state *)be->impl)->bf16); }

static const sd_backend_ops cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .describe = cpu_describe,
    .scratch_bytes = cpu_scratch_bytes,
    .trim = cpu_trim,
    .forget_weights = cpu_forget_weights,
    .weight_bytes = cpu_weight_bytes,
    .alloc = cpu_alloc,
    .release = cpu_release,
    .upload = cpu_upload,
    .download = cpu_download,
    .load_weight = cpu_load_weight,
    .linear = cpu_linear,
    .conv2d = cpu_conv2d,
    .group_norm = cpu_group_norm,
    .layer_norm = cpu_layer_norm,
    .softmax = cpu_softmax,
    .attention = cpu_attention,
    .act = cpu_act,
    .geglu = cpu_geglu,
    .binary = cpu_binary,
    .scale = cpu_scale,
    .copy = cpu_copy,
    .fill = cpu_fill,
    .upsample_nearest = cpu_upsample_nearest,
    .copy_block = cpu_copy_block,
    .transpose = cpu_transpose,
    .embedding = cpu_embedding,
};

sd_backend *sd_backend_cpu_open(const sd_cpu_options *opts, char *err, size_t errlen)
{
    sd_cpu_options o = opts ? *opts : (sd_cpu_options){0};
    sd_backend *be = calloc(1, sizeof *be);
    cpu_state *st = calloc(1, sizeof *st);
    if (!be || !st) {
        free(be);
        free(st);
        snprintf(err, errlen, "out of memory creating the CPU backend");
        return NULL;
    }
    if (o.bf16 && !(st->bf16 = cpu_bf16_open(cpu_info_get(), err, errlen))) {
        free(be);
        free(st);
        return NULL;
    }
    st->threads = o.threads > 0 ? o.threads : omp_get_max_threads();
    st->conv_tile_bytes = o.conv_tile_bytes ? o.conv_tile_bytes : SD_CPU_CONV_TILE_BYTES;
    st->direct_conv = o.direct_conv;
    st->attn_q_block = o.attn_q_block > 0 ? o.attn_q_block : 128;
    st->attn_k_block = o.attn_k_block > 0 ? o.attn_k_block : 512;
    if (o.threads > 0) {   /* OpenMP OpenBLAS sizes its own regions by omp_get_max_threads() */
        omp_set_num_threads(o.threads);
        openblas_set_num_threads(o.threads);
    }
    be->ops = &cpu_ops;
    be->impl = st;
    return be;
}

sd_backend *sd_backend_cpu_new(const sd_cpu_options *opts)
{
    char err[512];
    return sd_backend_cpu_open(opts, err, sizeof err);
}
