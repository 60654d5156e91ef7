/* The tensor ops layer: activation tensors and the ops that the CLIP, UNet and
 * VAE forward passes are written against, once, for every backend (CPU and
 * CUDA). Owner: the engine's numerics.
 *
 * Model
 *   - An sd_backend is a handle created by a backend constructor
 *     (sd_backend_cpu_new, or sd_backend_open of sd/device.h, which also
 *     loads the CUDA backend). One thread drives it at a time; the backend
 *     threads each op internally.
 *   - An sd_tensor is an activation of 1 to 4 dims, row-major: NCHW for
 *     images, [batch, tokens, channels] for sequences. Its memory belongs to
 *     the backend (host memory on CPU, device memory on CUDA): read and write
 *     it only through sd_tensor_upload/sd_tensor_download, which speak fp32
 *     whatever the tensor's storage dtype (fp32 on the CPU; fp16, bf16 or
 *     fp32 on CUDA, by stage).
 *   - Weights are sd_weight views (sd/dtype.h) in their stored dtype; the ops
 *     widen them per layer. A backend may later keep derived forms (packed
 *     panels, device copies) keyed by sd_weight.data, so weight bytes must not
 *     change while a backend that has seen them is alive.
 *
 * Memory (bounded peak)
 *   Explicit ownership: sd_tensor_new allocates, sd_tensor_free releases at
 *   once. Every op writes into an output tensor the caller allocated with the
 *   exact shape it wants (llm.c style), so a forward pass frees each
 *   intermediate as soon as its last reader has run, and the peak is the
 *   largest live set plus the backend's scratch. Scratch is per backend,
 *   reused across ops and bounded per op: a widened copy of the layer's weight
 *   (the largest SDXL layer, 1280x2560x3x3, is 118 MB in fp32; its Winograd
 *   transform 210 MB), one im2col row tile or Winograd band
 *   (SD_CPU_CONV_TILE_BYTES), and per-thread attention tiles. sd_backend_mem
 *   reports live, peak and scratch bytes; sd_backend_trim drops the scratch.
 *
 * Errors (sticky)
 *   Every op checks shapes, dtypes and aliasing and returns 0, or -1 after
 *   recording a one-line message. After a failure every later op returns -1
 *   without computing, and sd_tensor_new returns NULL (ops given NULL fail),
 *   so a forward pass can be written straight through and check
 *   sd_backend_error() once at its end. sd_backend_clear_error re-arms.
 *
 * Aliasing: elementwise ops (act, add, mul, scale, copy) may write in place
 * (y == x, or y == a); norms and softmax may too. All other ops need an output
 * distinct from their inputs. */
#ifndef SDXL_SD_BACKEND_H
#define SDXL_SD_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "sd/dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sd_backend sd_backend;

typedef struct sd_tensor {
    int ndim;                      /* 1..SD_MAX_DIMS */
    int64_t shape[SD_MAX_DIMS];    /* row-major; unused dims are 1 */
    float *data;                   /* backend memory: not host-readable in general */
    sd_dtype dtype;                /* how data is stored: SD_F32 on the CPU; the CUDA backend's
                                      activation dtype of the stage that created it (F16, BF16, F32) */
} sd_tensor;

typedef enum {
    SD_ACT_NONE = 0,
    SD_ACT_SILU,        /* x * sigmoid(x), as torch: x / (1 + exp(-x)) */
    SD_ACT_GELU,        /* exact: 0.5 x (1 + erf(x / sqrt 2)), torch's default GELU */
    SD_ACT_QUICK_GELU,  /* x * sigmoid(1.702 x), transformers' quick_gelu (CLIP-L) */
} sd_act;

typedef struct {
    size_t live_bytes;     /* tensors alive now */
    size_t peak_bytes;     /* max of live + scratch + weight bytes since creation / reset */
    size_t scratch_bytes;  /* backend scratch held now */
    size_t weight_bytes;   /* weight copies the backend holds (device copies on CUDA; 0 on the CPU,
                              whose weights stay in the checkpoint's mapping) */
    size_t device_used_peak; /* CUDA: the most device memory in use (cudaMemGetInfo, context and
                              library workspaces included) seen at a synchronisation since
                              creation / reset; 0 on the CPU */
} sd_mem_stats;

/* The network a stretch of ops belongs to. A backend may store each one's
 * activations differently (CUDA: fp16 or bf16 for the text encoders and the
 * UNet, fp32 or bf16 for the VAE, which overflows in fp16); the CPU ignores
 * it. The forward passes set it on entry (sd_backend_set_stage); tensors
 * keep the dtype of the stage that created them, and every op converts an
 * input of another dtype to its output's. */
typedef enum { SD_STAGE_TEXT = 0, SD_STAGE_UNET, SD_STAGE_VAE, SD_STAGE_COUNT } sd_stage;

/* ---- backends ------------------------------------------------------------ */

/* CPU tunables; zero fields take the defaults. Tests shrink the tiles to
 * exercise tiling on small shapes; bench/ tunes them. */
typedef struct {
    int threads;               /* > 0: also set as the process's OpenMP and OpenBLAS thread
                                  counts; <= 0: OpenMP's default (OMP_NUM_THREADS or cores) */
    size_t conv_tile_bytes;    /* im2col tile / Winograd band budget (default SD_CPU_CONV_TILE_BYTES) */
    int direct_conv;           /* 1: im2col + sgemm for 3x3 stride-1 convs too (no Winograd) */
    int attn_q_block;          /* attention query rows per tile (default 128) */
    int attn_k_block;          /* attention key rows per tile (default 512) */
    int bf16;                  /* 1: linear layers as bf16 GEMMs with fp32 accumulation (oneDNN;
                                  SDXL_CPU_PRECISION=bf16); needs AVX-512-BF16 */
} sd_cpu_options;

#define SD_CPU_CONV_TILE_BYTES ((size_t)64 << 20)

/* fp32 on host memory; OpenBLAS sgemm for every GEMM (with opts->bf16, the
 * linear and Winograd GEMMs in bf16 through oneDNN), OpenMP for the rest.
 * opts may be NULL. Returns NULL when out of memory or when bf16 is refused. */
sd_backend *sd_backend_cpu_new(const sd_cpu_options *opts);
/* The same, NULL with the reason in err: out of memory, or bf16 asked on a
 * CPU without AVX-512-BF16 or without oneDNN (libdnnl2). */
sd_backend *sd_backend_cpu_open(const sd_cpu_options *opts, char *err, size_t errlen);
void sd_backend_free(sd_backend *be);
const char *sd_backend_name(const sd_backend *be);   /* "cpu" or "cuda" */
/* One line describing the backend's engine, e.g. the BLAS build and its
 * threading ("OpenBLAS 0.3.21 ... (openmp), 2 threads"), or the GPU, its
 * memory, driver and runtime versions and the activation dtypes. */
const char *sd_backend_describe(const sd_backend *be);

const char *sd_backend_error(const sd_backend *be);  /* NULL while no op has failed */
void sd_backend_clear_error(sd_backend *be);
void sd_backend_mem(const sd_backend *be, sd_mem_stats *out);
void sd_backend_reset_peak(sd_backend *be);          /* peak := live + scratch */
void sd_backend_trim(sd_backend *be);                /* frees all scratch */
void sd_backend_set_stage(sd_backend *be, sd_stage stage);
/* Weight bytes at [data, data + bytes) changed or went away (a LoRA set was
 * rebuilt in place or freed): drop every derived copy made from them, so the
 * next op that uses a weight there reads it again. No-op on the CPU. */
void sd_backend_forget_weights(sd_backend *be, const void *data, size_t bytes);
/* Waits until every op issued so far has finished (a no-op on the CPU, whose
 * ops finish before they return); -1 with the error set when one failed. */
int sd_backend_sync(sd_backend *be);

/* Op profile, for benchmarks (bench_unet_step): while on, the wall time of
 * every compute op (linear, conv, norms, attention, activations, elementwise,
 * upsample) is summed per op kind; a backend whose ops run asynchronously
 * (CUDA) is synchronised after each op so the time is the op's own. on = 1 starts again from zero; 0 stops.
 * sd_backend_profile_print writes "op seconds share calls" lines, largest
 * first, to out (a FILE *). Returns -1 when out of memory. */
int sd_backend_profile(sd_backend *be, int on);
void sd_backend_profile_print(const sd_backend *be, void *out);

/* ---- tensors ------------------------------------------------------------- */

/* Uninitialised tensor; NULL (and the sticky error set) on bad shape or OOM. */
sd_tensor *sd_tensor_new(sd_backend *be, int ndim, const int64_t *shape);
void sd_tensor_free(sd_backend *be, sd_tensor *t);   /* NULL is fine */
int64_t sd_numel(const sd_tensor *t);
/* Changes the shape in place, keeping the element count (a view of the same
 * row-major data, e.g. [B,C] -> [B,C,1,1] to broadcast over H, W). */
int sd_tensor_reshape(sd_backend *be, sd_tensor *t, int ndim, const int64_t *shape);
/* Host <-> tensor copies of all sd_numel(t) floats. */
int sd_tensor_upload(sd_backend *be, sd_tensor *t, const float *src);
int sd_tensor_download(sd_backend *be, const sd_tensor *t, float *dst);
/* t = the weight widened to fp32 (same element count; shapes may differ). */
int sd_load_weight(sd_backend *be, sd_tensor *t, const sd_weight *w);

#ifndef __cplusplus /* compound literals: the CUDA kernels (C++) include this header for its types only */
static inline sd_tensor *sd_new1(sd_backend *be, int64_t a)
{ return sd_tensor_new(be, 1, (const int64_t[]){a}); }
static inline sd_tensor *sd_new2(sd_backend *be, int64_t a, int64_t b)
{ return sd_tensor_new(be, 2, (const int64_t[]){a, b}); }
static inline sd_tensor *sd_new3(sd_backend *be, int64_t a, int64_t b, int64_t c)
{ return sd_tensor_new(be, 3, (const int64_t[]){a, b, c}); }
static inline sd_tensor *sd_new4(sd_backend *be, int64_t a, int64_t b, int64_t c, int64_t d)
{ return sd_tensor_new(be, 4, (const int64_t[]){a, b, c, d}); }
#endif

/* ---- ops ----------------------------------------------------------------- */
/* All return 0 on success, -1 with sd_backend_error() set. Shapes are checked. */

/* y[..., N] = x[..., K] W^T + b  (torch nn.Linear). W is [N, K] (or [N, K, 1, 1],
 * a 1x1 conv used as a linear, as in the VAE attention); b is [N] or NULL.
 * x and y have the same leading dims. */
int sd_linear(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_weight *w, const sd_weight *b);
/* y[..., N] = x[..., K] W + b with W stored [K, N]: a weight kept in the
 * x @ P orientation, e.g. OpenCLIP's text_projection (pooled = LN(x_eos) P). */
int sd_matmul(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_weight *w, const sd_weight *b);

/* torch F.conv2d (groups 1, dilation 1) after F.pad(x, (left, right, top, bottom)):
 * x [B, Cin, H, W], w [Cout, Cin, kh, kw], b [Cout] or NULL,
 * y [B, Cout, (H + top + bottom - kh) / stride + 1, (W + left + right - kw) / stride + 1]. */
int sd_conv2d_pad(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_weight *w, const sd_weight *b,
                  int stride, int pad_left, int pad_right, int pad_top, int pad_bottom);
static inline int sd_conv2d(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_weight *w,
                            const sd_weight *b, int stride, int pad)
{ return sd_conv2d_pad(be, y, x, w, b, stride, pad, pad, pad, pad); }

/* torch F.group_norm over x [B, C, ...] (C divisible by groups; biased variance,
 * eps inside the sqrt), then act (SD_ACT_NONE or any other activation, fused).
 * gamma/beta: [C] or NULL (no affine). */
int sd_group_norm(sd_backend *be, sd_tensor *y, const sd_tensor *x, int groups, float eps,
                  const sd_weight *gamma, const sd_weight *beta, sd_act act);
/* torch F.layer_norm over the last dim; gamma/beta [C] or NULL. */
int sd_layer_norm(sd_backend *be, sd_tensor *y, const sd_tensor *x, float eps,
                  const sd_weight *gamma, const sd_weight *beta);
/* softmax over the last dim (max-subtracted). */
int sd_softmax(sd_backend *be, sd_tensor *y, const sd_tensor *x);

/* torch F.scaled_dot_product_attention with `heads` heads laid out as the
 * linear projections produce them (no transposes):
 *   q [B, Nq, heads*Dh], k [B, Nk, heads*Dh], v [B, Nk, heads*Dv] -> out [B, Nq, heads*Dv],
 *   out_h = softmax(q_h k_h^T / sqrt(Dh)) v_h.
 * causal: query i sees keys j <= i (torch is_causal, top-left aligned).
 * Runs in tiles with an online softmax: memory O(threads * tile), never Nq x Nk. */
int sd_attention(sd_backend *be, sd_tensor *out, const sd_tensor *q, const sd_tensor *k, const sd_tensor *v,
                 int heads, int causal);

/* y = act(x), elementwise; same element count. */
int sd_act_apply(sd_backend *be, sd_tensor *y, const sd_tensor *x, sd_act act);
static inline int sd_silu(sd_backend *be, sd_tensor *y, const sd_tensor *x) { return sd_act_apply(be, y, x, SD_ACT_SILU); }
static inline int sd_gelu(sd_backend *be, sd_tensor *y, const sd_tensor *x) { return sd_act_apply(be, y, x, SD_ACT_GELU); }
static inline int sd_quick_gelu(sd_backend *be, sd_tensor *y, const sd_tensor *x) { return sd_act_apply(be, y, x, SD_ACT_QUICK_GELU); }

/* diffusers GEGLU after its proj: x [..., 2F] -> y [..., F],
 * y = x[..., :F] * gelu(x[..., F:])  (hidden_states, gate = chunk(2); hidden_states * gelu(gate)). */
int sd_geglu(sd_backend *be, sd_tensor *y, const sd_tensor *x);

/* y = a + b and y = a * b with numpy broadcasting of b to a's shape (dims
 * right-aligned; each of b's dims equals a's or is 1). y has a's shape.
 * Per-channel time embedding onto NCHW: reshape it to [B, C, 1, 1] first. */
int sd_add(sd_backend *be, sd_tensor *y, const sd_tensor *a, const sd_tensor *b);
int sd_mul(sd_backend *be, sd_tensor *y, const sd_tensor *a, const sd_tensor *b);
int sd_scale(sd_backend *be, sd_tensor *y, const sd_tensor *x, float alpha);   /* y = alpha x */
int sd_copy(sd_backend *be, sd_tensor *y, const sd_tensor *x);   /* same element count */
int sd_fill(sd_backend *be, sd_tensor *y, float value);

/* Nearest-neighbour resize as torch F.interpolate(mode="nearest") to y's
 * size: x [B, C, H, W] -> y [B, C, Ho, Wo], src = min(floor(dst * (H/Ho)), H-1).
 * Ho = 2H, Wo = 2W is diffusers' Upsample2D; other sizes its output_size path. */
int sd_upsample_nearest(sd_backend *be, sd_tensor *y, const sd_tensor *x);
/* torch.cat((a, b), dim): shapes equal except along dim, where y = a + b. */
int sd_concat(sd_backend *be, sd_tensor *y, const sd_tensor *a, const sd_tensor *b, int dim);
/* y = x.narrow(dim, start, y->shape[dim]): shapes equal except along dim. */
int sd_slice(sd_backend *be, sd_tensor *y, const sd_tensor *x, int dim, int64_t start);
/* [B, C, H, W] -> [B, H*W, C] (diffusers' permute(0,2,3,1).reshape) and back;
 * sd_to_image takes H, W from y. */
int sd_to_tokens(sd_backend *be, sd_tensor *y, const sd_tensor *x);
int sd_to_image(sd_backend *be, sd_tensor *y, const sd_tensor *x);
/* Rows of an embedding table: table [V, C], ids[n] host ints in [0, V),
 * y has n * C elements (e.g. [B, N, C] with n = B*N). */
int sd_embedding(sd_backend *be, sd_tensor *y, const sd_weight *table, const int32_t *ids, int64_t n);

#ifdef __cplusplus
}
#endif

#endif
