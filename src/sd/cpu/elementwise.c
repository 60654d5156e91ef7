/* CPU elementwise ops: activations (SiLU, exact GELU, quick_gelu), GEGLU,
 * broadcast add/mul, scale, copy and fill, threaded with OpenMP over chunks
 * or rows. Formulas as torch / transformers / diffusers write them (cpu.h). */
#include "sd/cpu/cpu.h"

#include <string.h>

CPU_VECTOR_CLONES void cpu_act_row(sd_act act, float *y, const float *x, int64_t n)
{
    switch (act) {
    case SD_ACT_NONE:
        if (y != x) memcpy(y, x, (size_t)n * sizeof(float));
        break;
    case SD_ACT_SILU:
#pragma omp simd
        for (int64_t i = 0; i < n; i++) y[i] = cpu_silu(x[i]);
        break;
    case SD_ACT_GELU:
#pragma omp simd
        for (int64_t i = 0; i < n; i++) y[i] = cpu_gelu(x[i]);
        break;
    case SD_ACT_QUICK_GELU:
#pragma omp simd
        for (int64_t i = 0; i < n; i++) y[i] = cpu_quick_gelu(x[i]);
        break;
    }
}

/* Flat elementwise work is split into chunks of this many floats. */
#define CHUNK ((int64_t)1 << 14)

static int64_t chunk_len(int64_t n, int64_t lo) { return n - lo < CHUNK ? n - lo : CHUNK; }

int cpu_act(sd_backend *be, sd_tensor *y, const sd_tensor *x, sd_act act)
{
    int64_t n = sd_numel(x);
#pragma omp parallel for num_threads(cpu_of(be)->threads) schedule(static)
    for (int64_t lo = 0; lo < n; lo += CHUNK) cpu_act_row(act, y->data + lo, x->data + lo, chunk_len(n, lo));
    return 0;
}

int cpu_copy(sd_backend *be, sd_tensor *y, const sd_tensor *x)
{
    int64_t n = sd_numel(x);
#pragma omp parallel for num_threads(cpu_of(be)->threads) schedule(static)
    for (int64_t lo = 0; lo < n; lo += CHUNK)
        memcpy(y->data + lo, x->data + lo, (size_t)chunk_len(n, lo) * sizeof(float));
    return 0;
}

int cpu_scale(sd_backend *be, sd_tensor *y, const sd_tensor *x, float alpha)
{
    int64_t n = sd_numel(x);
#pragma omp parallel for num_threads(cpu_of(be)->threads) schedule(static)
    for (int64_t i = 0; i < n; i++) y->data[i] = alpha * x->data[i];
    return 0;
}

int cpu_fill(sd_backend *be, sd_tensor *y, float value)
{
    int64_t n = sd_numel(y);
#pragma omp parallel for num_threads(cpu_of(be)->threads) schedule(static)
    for (int64_t i = 0; i < n; i++) y->data[i] = value;
    return 0;
}

CPU_VECTOR_CLONES static void geglu_row(float *y, const float *value, const float *gate, int64_t f)
{
#pragma omp simd
    for (int64_t i = 0; i < f; i++) y[i] = value[i] * cpu_gelu(gate[i]);
}

/* diffusers GEGLU (models/activations.py): hidden_states, gate = proj.chunk(2, -1);
 * hidden_states * gelu(gate). */
int cpu_geglu(sd_backend *be, sd_tensor *y, const sd_tensor *x)
{
    int64_t f = y->shape[y->ndim - 1], rows = sd_numel(y) / f;
#pragma omp parallel for num_threads(cpu_of(be)->threads) schedule(static)
    for (int64_t r = 0; r < rows; r++) geglu_row(y->data + r * f, x->data + r * 2 * f, x->data + r * 2 * f + f, f);
    return 0;
}

/* Broadcast add/mul over a's shape padded to 4 dims (backend.c pads it):
 * rows are the three outer dims, each a contiguous run of the last dim; b's
 * element for a row comes from its strides (0 along broadcast dims). */
int cpu_binary(sd_backend *be, sd_tensor *y, const sd_tensor *a, const sd_tensor *b, const int64_t dim[4],
               const int64_t bstride[4], int multiply)
{
    int64_t rows = dim[0] * dim[1] * dim[2], n = dim[3];
#pragma omp parallel for num_threads(cpu_of(be)->threads) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int64_t i2 = r % dim[2], i1 = r / dim[2] % dim[1], i0 = r / (dim[2] * dim[1]);
        const float *ar = a->data + r * n, *br = b->data + i0 * bstride[0] + i1 * bstride[1] + i2 * bstride[2];
        float *yr = y->data + r * n;
        int64_t bs = bstride[3];
        if (multiply)
            for (int64_t i = 0; i < n; i++) yr[i] = ar[i] * br[i * bs];
        else
            for (int64_t i = 0; i < n; i++) yr[i] = ar[i] + br[i * bs];
    }
    return 0;
}
