/* The CUDA backend's table entries that map onto one kernel launcher each
 * (norms, softmax, attention, activations, elementwise and layout ops,
 * embeddings): inputs of another dtype are converted to the output's
 * first (cuda_operand), weights come from the cache in the output's dtype,
 * and the launcher's status becomes the backend's error. Shapes were
 * checked by backend.c. */
#include "sd/cuda/cuda_backend.h"

static cudaStream_t stream_of(sd_backend *be) { return cuda_of(be)->stream; }

int cuda_group_norm(sd_backend *be, sd_tensor *y, const sd_tensor *x, int groups, float eps, const sd_weight *gamma,
                    const sd_weight *beta, sd_act act)
{
    sd_dtype t = y->dtype;
    int failed = 0;
    const void *xd = cuda_operand(be, x, t, CUDA_SCRATCH_IN0);
    const void *g = cuda_weight_opt(be, gamma, t, &failed), *b = cuda_weight_opt(be, beta, t, &failed);
    int64_t batch = x->shape[0], channels = x->shape[1], plane = sd_numel(x) / (batch * channels);
    float *stats = cuda_scratch(be, CUDA_SCRATCH_SMALL, (size_t)(2 * batch * groups) * sizeof(float));
    if (!xd || failed || !stats) return -1;
    return cuda_ok(be, sd_cuda_group_norm(t, y->data, xd, batch, channels, plane, groups, eps, g, b, act, stats,
                                          stream_of(be)), "sd_group_norm");
}

int cuda_layer_norm(sd_backend *be, sd_tensor *y, const sd_tensor *x, float eps, const sd_weight *gamma,
                    const sd_weight *beta)
{
    sd_dtype t = y->dtype;
    int failed = 0;
    const void *xd = cuda_operand(be, x, t, CUDA_SCRATCH_IN0);
    const void *g = cuda_weight_opt(be, gamma, t, &failed), *b = cuda_weight_opt(be, beta, t, &failed);
    if (!xd || failed) return -1;
    int64_t cols = x->shape[x->ndim - 1];
    return cuda_ok(be, sd_cuda_layer_norm(t, y->data, xd, sd_numel(x) / cols, cols, eps, g, b, stream_of(be)),
                   "sd_layer_norm");
}

int cuda_softmax(sd_backend *be, sd_tensor *y, const sd_tensor *x)
{
    const void *xd = cuda_operand(be, x, y->dtype, CUDA_SCRATCH_IN0);
    if (!xd) return -1;
    int64_t cols = x->shape[x->ndim - 1];
    return cuda_ok(be, sd_cuda_softmax(y->dtype, y->data, xd, sd_numel(x) / cols, cols, stream_of(be)), "sd_softmax");
}

int cuda_attention(sd_backend *be, sd_tensor *out, const sd_tensor *q, const sd_tensor *k, const sd_tensor *v,
                   int heads, int causal)
{
    sd_dtype t = out->dtype;
    int64_t dh = q->shape[2] / heads, dv = v->shape[2] / heads;
    if (dh > SD_CUDA_ATTN_MAX_HEAD || dv > SD_CUDA_ATTN_MAX_HEAD)
        return sd_backend_fail(be, "sd_attention: heads of %lld/%lld dims exceed the CUDA kernel's %d", (long long)dh,
                               (long long)dv, SD_CUDA_ATTN_MAX_HEAD);
    const void *qd = cuda_operand(be, q, t, CUDA_SCRATCH_IN0), *kd = cuda_operand(be, k, t, CUDA_SCRATCH_IN1);
    const void *vd = cuda_operand(be, v, t, CUDA_SCRATCH_IN2);
    if (!qd || !kd || !vd) return -1;
    if (!cuda_of(be)->generic_attention && sd_cuda_attention_tc_fits(t, (int)dh, (int)dv))
        return cuda_ok(be, sd_cuda_attention_tc(t, out->data, qd, kd, vd, q->shape[0], q->shape[1], k->shape[1],
                                                heads, causal, stream_of(be)), "sd_attention");
    return cuda_ok(be, sd_cuda_attention(t, out->data, qd, kd, vd, q->shape[0], q->shape[1], k->shape[1], heads,
                                         (int)dh, (int)dv, causal, stream_of(be)), "sd_attention");
}

int cuda_act(sd_backend *be, sd_tensor *y, const sd_tensor *x, sd_act act)
{
    const void *xd = cuda_operand(be, x, y->dtype, CUDA_SCRATCH_IN0);
    if (!xd) return -1;
    return cuda_ok(be, sd_cuda_act(y->dtype, y->data, xd, sd_numel(y), act, stream_of(be)), "sd_act_apply");
}

int cuda_geglu(sd_backend *be, sd_tensor *y, const sd_tensor *x)
{
    const void *xd = cuda_operand(be, x, y->dtype, CUDA_SCRATCH_IN0);
    if (!xd) return -1;
    int64_t f = y->shape[y->ndim - 1];
    return cuda_ok(be, sd_cuda_geglu(y->dtype, y->data, xd, sd_numel(y) / f, f, stream_of(be)), "sd_geglu");
}

int cuda_binary(sd_backend *be, sd_tensor *y, const sd_tensor *a, const sd_tensor *b, const int64_t dim[4],
                const int64_t b_stride[4], int multiply)
{
    const void *ad = cuda_operand(be, a, y->dtype, CUDA_SCRATCH_IN0), *bd = cuda_operand(be, b, y->dtype, CUDA_SCRATCH_IN1);
    if (!ad || !bd) return -1;
    return cuda_ok(be, sd_cuda_binary(y->dtype, y->data, ad, bd, dim, b_stride, multiply, stream_of(be)),
                   multiply ? "sd_mul" : "sd_add");
}

int cuda_scale(sd_backend *be, sd_tensor *y, const sd_tensor *x, float alpha)
{
    const void *xd = cuda_operand(be, x, y->dtype, CUDA_SCRATCH_IN0);
    if (!xd) return -1;
    return cuda_ok(be, sd_cuda_scale(y->dtype, y->data, xd, sd_numel(y), alpha, stream_of(be)), "sd_scale");
}

int cuda_copy(sd_backend *be, sd_tensor *y, const sd_tensor *x)
{
    if (y->dtype != x->dtype)
        return cuda_ok(be, sd_cuda_convert(y->data, y->dtype, x->data, x->dtype, sd_numel(y), stream_of(be)), "sd_copy");
    return cuda_ok(be, cudaMemcpyAsync(y->data, x->data, sd_tensor_bytes(y), cudaMemcpyDeviceToDevice, stream_of(be)),
                   "sd_copy");
}

int cuda_fill(sd_backend *be, sd_tensor *y, float value)
{
    return cuda_ok(be, sd_cuda_fill(y->dtype, y->data, sd_numel(y), value, stream_of(be)), "sd_fill");
}

int cuda_upsample_nearest(sd_backend *be, sd_tensor *y, const sd_tensor *x)
{
    const void *xd = cuda_operand(be, x, y->dtype, CUDA_SCRATCH_IN0);
    if (!xd) return -1;
    return cuda_ok(be, sd_cuda_upsample_nearest(y->dtype, y->data, xd, x->shape[0] * x->shape[1], x->shape[2],
                                                x->shape[3], y->shape[2], y->shape[3], stream_of(be)),
                   "sd_upsample_nearest");
}

int cuda_copy_block(sd_backend *be, sd_tensor *y, const sd_tensor *x, int64_t outer, int64_t y_inner,
                    int64_t x_inner, int64_t offset, int gather)
{
    const void *xd = cuda_operand(be, x, y->dtype, CUDA_SCRATCH_IN0);
    if (!xd) return -1;
    int64_t run = gather ? y_inner : x_inner;
    return cuda_ok(be, sd_cuda_copy_block(y->dtype, y->data, xd, outer, run, y_inner, gather ? 0 : offset, x_inner,
                                          gather ? offset : 0, stream_of(be)), gather ? "sd_slice" : "sd_concat");
}

int cuda_transpose(sd_backend *be, sd_tensor *y, const sd_tensor *x, int64_t batch, int64_t rows, int64_t cols)
{
    const void *xd = cuda_operand(be, x, y->dtype, CUDA_SCRATCH_IN0);
    if (!xd) return -1;
    return cuda_ok(be, sd_cuda_transpose(y->dtype, y->data, xd, batch, rows, cols, stream_of(be)), "sd_transpose");
}

int cuda_embedding(sd_backend *be, sd_tensor *y, const sd_weight *table, const int32_t *ids, int64_t n)
{
    const void *td = cuda_weight(be, table, y->dtype);
    int32_t *idd = cuda_scratch(be, CUDA_SCRATCH_SMALL, (size_t)n * sizeof *idd);
    if (!td || !idd ||
        cuda_ok(be, cudaMemcpyAsync(idd, ids, (size_t)n * sizeof *idd, cudaMemcpyHostToDevice, stream_of(be)),
                "sd_embedding"))
        return -1;
    return cuda_ok(be, sd_cuda_gather_rows(y->dtype, y->data, td, idd, n, table->shape[1], stream_of(be)),
                   "sd_embedding");
}
