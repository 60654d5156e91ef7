/* CPU linear layer: torch nn.Linear, y = x W^T + b (or y = x W + b for a
 * [K, N] weight), as one OpenBLAS sgemm on the layer's weight widened to fp32
 * (fp32 accumulation), or with SDXL_CPU_PRECISION=bf16 one bf16 GEMM
 * (bf16.c). The bias is written
 * into y first and accumulated with beta = 1, as torch's addmm does. */
#include "sd/cpu/cpu.h"

#include <cblas.h>

/* Every row of the [rows, n] matrix y := bias. */
static void fill_rows(sd_backend *be, float *y, int64_t rows, int64_t n, const float *bias)
{
#pragma omp parallel for num_threads(cpu_of(be)->threads) schedule(static)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < n; j++) y[r * n + j] = bias[j];
}

int cpu_linear(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_weight *w, const sd_weight *b,
               int w_is_kn)
{
    int64_t n = w->shape[w_is_kn ? 1 : 0], k = w->shape[w_is_kn ? 0 : 1], m = sd_numel(x) / k;
    if (cpu_blas_dims(be, "sd_linear", 3, (const int64_t[]){m, n, k})) return -1;
    const float *bias = b ? cpu_weight_f32(be, b, CPU_SCRATCH_BIAS) : NULL;
    if (b && !bias) return -1;
    if (bias) fill_rows(be, y->data, m, n, bias);
    if (cpu_of(be)->bf16) return cpu_linear_bf16(be, y, x, w, bias, m, n, k, w_is_kn);
    const float *wf = cpu_weight_f32(be, w, CPU_SCRATCH_WEIGHT);
    if (!wf) return -1;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, w_is_kn ? CblasNoTrans : CblasTrans, (int)m, (int)n, (int)k, 1.0f,
                x->data, (int)k, wf, w_is_kn ? (int)n : (int)k, bias ? 1.0f : 0.0f, y->data, (int)n);
    return 0;
}
