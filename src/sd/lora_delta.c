/* The delta dW of one LoRA module in fp32, per format, and its addition to
 * a widened weight. Formulas (read, not copied):
 *   LoRA / LoCon   dW = up @ down, reshaped to the layer (kohya
 *                  networks/lora.py; PEFT lora/layer.py get_delta_weight)
 *   LoCon Tucker   dW[o,i,y,x] = sum_mn up[o,m] mid[m,n,y,x] down[n,i]
 *                  (LyCORIS functional/general.py tucker_weight_from_conv)
 *   LoHa           dW = (w1a @ w1b) * (w2a @ w2b), Tucker factors
 *                  einsum("ijyx,jr,ip->pryx", t, b, a) (LyCORIS
 *                  functional/loha.py HadaWeight, HadaWeightTucker)
 *   LoKr           dW = kron(w1, w2), w1 = lokr_w1 | w1_a @ w1_b, w2 =
 *                  lokr_w2 | w2_a @ w2_b | einsum("ijyx,ip,jr->pryx", t2,
 *                  w2_a, w2_b) (LyCORIS functional/lokr.py make_kron,
 *                  functional/general.py rebuild_tucker)
 *   full           dW = diff; diff_b adds to the bias (LyCORIS modules/full.py)
 *   DoRA           W' = m * (W + s dW) / ||W + s dW||, the norm per output
 *                  row (m [out, 1...]) or per input column (m [1, in, ...]),
 *                  ComfyUI's weight_decompose (with its eps); the module
 *                  adds mult * (W' - W), W the checkpoint's weight.
 * Every product is an OpenBLAS sgemm (threaded by OpenBLAS' OpenMP build);
 * elementwise loops use OpenMP. */
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sd/lora_impl.h"

#define HAS(m, p) ((m)->part[p].data != NULL)

void lora_widen(const sd_weight *w, size_t offset, size_t n, float *dst)
{
    const size_t chunk = 1 << 16;
    long chunks = (long)((n + chunk - 1) / chunk);
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (long c = 0; c < chunks; c++) {
        size_t begin = (size_t)c * chunk, len = n - begin < chunk ? n - begin : chunk;
        sd_widen(w->dtype, w->data, offset + begin, len, dst + begin);
    }
}

static float *widened(const sd_weight *w)
{
    size_t n = (size_t)sd_weight_numel(w);
    float *out = malloc((n ? n : 1) * sizeof *out);
    if (out) lora_widen(w, 0, n, out);
    return out;
}

/* c [m, n] = a [m, k] @ b [k, n] (row-major; a transposed when a_t, stored [k, m]). */
static void matmul(const float *a, int a_t, const float *b, float *c, int64_t m, int64_t n, int64_t k)
{
    cblas_sgemm(CblasRowMajor, a_t ? CblasTrans : CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1.0f, a,
                a_t ? (int)m : (int)k, b, (int)n, 0.0f, c, (int)n);
}

static int64_t dim(const lora_module *m, lora_part p, int d) { return m->part[p].shape[d]; }

bool lora_module_is_plain(const lora_module *m)
{
    return m->kind == K_LORA && !HAS(m, P_MID) && !HAS(m, P_DORA);
}

int lora_gemm_add(const lora_module *const *mods, const float *mult, size_t n, float *w, int64_t rows, int64_t cols)
{
    int64_t k = 0;
    for (size_t i = 0; i < n; i++) k += dim(mods[i], P_DOWN, 0);
    float *u = malloc((size_t)(rows * k) * sizeof *u), *d = malloc((size_t)(k * cols) * sizeof *d);
    int rc = u && d ? 0 : -1;
    /* u = [c_0 up_0 | c_1 up_1 | ...], d = [down_0; down_1; ...] */
    for (size_t i = 0, off = 0; i < n && !rc; i++) {
        const lora_module *m = mods[i];
        int64_t r = dim(m, P_DOWN, 0);
        float *up = widened(&m->part[P_UP]), c = mult[i] * m->scale;
        if (!up) {
            rc = -1;
            break;
        }
        for (int64_t o = 0; o < rows; o++)
            for (int64_t j = 0; j < r; j++) u[o * k + (int64_t)off + j] = c * up[o * r + j];
        free(up);
        lora_widen(&m->part[P_DOWN], 0, (size_t)(r * cols), d + off * (size_t)cols);
        off += (size_t)r;
    }
    if (!rc)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)cols, (int)k, 1.0f, u, (int)k, d,
                    (int)cols, 1.0f, w, (int)cols);
    free(u);
    free(d);
    return rc;
}

/* out [p, r, kl] = sum_ij t[i, j, kl] a[i, p] b[j, r] (rebuild_tucker), with
 * a stored [r1, p] (a_rank_rows) or [p, r1]; t [r1, r2, kl], b [r2, r]. */
static int tucker(const sd_weight *t, const float *a, int a_rank_rows, const sd_weight *b, int64_t p, float *out)
{
    int64_t r1 = t->shape[0], r2 = t->shape[1], kl = t->shape[2] * t->shape[3], r = b->shape[1];
    float *tf = widened(t), *bf = widened(b), *x = malloc((size_t)(r1 * r * kl) * sizeof *x);
    int rc = tf && bf && x ? 0 : -1;
    /* x[i] [r, kl] = b^T [r, r2] @ t[i] [r2, kl], then out = a^T @ x */
    for (int64_t i = 0; i < r1 && !rc; i++) matmul(bf, 1, tf + i * r2 * kl, x + i * r * kl, r, kl, r2);
    if (!rc) matmul(a, a_rank_rows, x, out, p, r * kl, r1);
    free(tf);
    free(bf);
    free(x);
    return rc;
}

/* a [m, k] @ b [k, ...] of two stored factors into out. */
static int factor_product(const sd_weight *a, const sd_weight *b, float *out)
{
    int64_t m = a->shape[0], k = a->shape[1], n = sd_weight_numel(b) / b->shape[0];
    float *af = widened(a), *bf = widened(b);
    int rc = af && bf ? 0 : -1;
    if (!rc) matmul(af, 0, bf, out, m, n, k);
    free(af);
    free(bf);
    return rc;
}

static int delta_lora(const lora_module *m, const lora_target *t, float *d)
{
    if (!HAS(m, P_MID)) return factor_product(&m->part[P_UP], &m->part[P_DOWN], d);
    /* Tucker with lora_mid: a = up [out, r] (not transposed), b = down [r, in] */
    sd_weight down = m->part[P_DOWN];
    down.ndim = 2;
    float *up = widened(&m->part[P_UP]);
    int rc = up ? tucker(&m->part[P_MID], up, 0, &down, t->rows, d) : -1;
    free(up);
    return rc;
}

static int delta_loha(const lora_module *m, const lora_target *t, float *d)
{
    size_t n = (size_t)(t->rows * t->cols);
    float *second = malloc(n * sizeof *second);
    int rc = second ? 0 : -1;
    if (!rc && HAS(m, P_HADA_T1)) {
        float *a1 = widened(&m->part[P_HADA_W1A]), *a2 = widened(&m->part[P_HADA_W2A]);
        rc = !a1 || !a2 || tucker(&m->part[P_HADA_T1], a1, 1, &m->part[P_HADA_W1B], t->rows, d) ||
             tucker(&m->part[P_HADA_T2], a2, 1, &m->part[P_HADA_W2B], t->rows, second);
        free(a1);
        free(a2);
    } else if (!rc) {
        rc = factor_product(&m->part[P_HADA_W1A], &m->part[P_HADA_W1B], d) ||
             factor_product(&m->part[P_HADA_W2A], &m->part[P_HADA_W2B], second);
    }
#pragma omp parallel for schedule(static) if (!rc && n > 65536)
    for (size_t i = 0; i < (rc ? 0 : n); i++) d[i] *= second[i];
    free(second);
    return rc ? -1 : 0;
}

/* w1 [a, c] and w2 [b, dd, kl] of a LoKr module (allocated). */
static int lokr_factors(const lora_module *m, float **w1, float **w2, int64_t *a, int64_t *c, int64_t *b)
{
    const sd_weight *w1a = &m->part[P_LOKR_W1A], *w2a = &m->part[P_LOKR_W2A], *w2b = &m->part[P_LOKR_W2B];
    *a = HAS(m, P_LOKR_W1) ? dim(m, P_LOKR_W1, 0) : dim(m, P_LOKR_W1A, 0);
    *c = HAS(m, P_LOKR_W1) ? dim(m, P_LOKR_W1, 1) : dim(m, P_LOKR_W1B, 1);
    if (HAS(m, P_LOKR_W1)) *w1 = widened(&m->part[P_LOKR_W1]);
    else if ((*w1 = malloc((size_t)(*a * *c) * sizeof **w1)) && factor_product(w1a, &m->part[P_LOKR_W1B], *w1))
        return -1;
    if (HAS(m, P_LOKR_W2)) {
        *b = dim(m, P_LOKR_W2, 0);
        *w2 = widened(&m->part[P_LOKR_W2]);
    } else if (HAS(m, P_LOKR_T2)) {
        *b = w2a->shape[1];
        const sd_weight *t2 = &m->part[P_LOKR_T2];
        float *af = widened(w2a);
        *w2 = malloc((size_t)(*b * w2b->shape[1] * t2->shape[2] * t2->shape[3]) * sizeof **w2);
        int rc = af && *w2 ? tucker(t2, af, 1, w2b, *b, *w2) : -1;
        free(af);
        if (rc) return -1;
    } else {
        *b = w2a->shape[0];
        if ((*w2 = malloc((size_t)(*b * (sd_weight_numel(w2b) / w2b->shape[0])) * sizeof **w2)) &&
            factor_product(w2a, w2b, *w2))
            return -1;
    }
    return *w1 && *w2 ? 0 : -1;
}

static int delta_lokr(const lora_module *m, const lora_target *t, float *d)
{
    float *w1 = NULL, *w2 = NULL;
    int64_t a, c, b;
    int rc = lokr_factors(m, &w1, &w2, &a, &c, &b);
    /* kron(w1[:, :, None, None], w2): d[ia*b + ib, (ic*dd + id)*kl + k] = w1[ia, ic] w2[ib, id*kl + k] */
    int64_t w2_row = t->cols / c; /* dd * kl */
#pragma omp parallel for schedule(static) if (!rc && a * b > 64)
    for (int64_t row = 0; row < (rc ? 0 : a * b); row++) {
        int64_t ia = row / b, ib = row % b;
        for (int64_t ic = 0; ic < c; ic++) {
            float s = w1[ia * c + ic];
            const float *src = w2 + ib * w2_row;
            float *dst = d + row * t->cols + ic * w2_row;
            for (int64_t j = 0; j < w2_row; j++) dst[j] = s * src[j];
        }
    }
    free(w1);
    free(w2);
    return rc;
}

/* The module's dW without any scale, [rows, cols]. */
static int delta_of(const lora_module *m, float *d)
{
    const lora_target *t = m->target;
    switch (m->kind) {
    case K_LORA: return delta_lora(m, t, d);
    case K_LOHA: return delta_loha(m, t, d);
    case K_LOKR: return delta_lokr(m, t, d);
    default: lora_widen(&m->part[P_DIFF], 0, (size_t)(t->rows * t->cols), d); return 0;
    }
}

/* d := m * (w0 + s d) / ||w0 + s d|| - w0 (see the top of the file). */
static int dora(const lora_module *m, const float *w0, float *d)
{
    const lora_target *t = m->target;
    int64_t rows = t->rows, cols = t->cols, in = t->weight->shape[1], kl = cols / in;
    int64_t groups = m->dora_on_out ? rows : in;
    float *mag = widened(&m->part[P_DORA]);
    double *norm = calloc((size_t)groups, sizeof *norm);
    if (!mag || !norm) {
        free(mag);
        free(norm);
        return -1;
    }
    float s = m->scale;
    size_t n = (size_t)(rows * cols);
    for (size_t i = 0; i < n; i++) d[i] = w0[i] + s * d[i];
    for (int64_t o = 0; o < rows; o++)
        for (int64_t j = 0; j < cols; j++) {
            double v = d[o * cols + j];
            norm[m->dora_on_out ? o : j / kl] += v * v;
        }
    for (int64_t o = 0; o < rows; o++)
        for (int64_t j = 0; j < cols; j++) {
            int64_t g = m->dora_on_out ? o : j / kl;
            float f = (float)(mag[g] / (sqrt(norm[g]) + FLT_EPSILON));
            d[o * cols + j] = d[o * cols + j] * f - w0[o * cols + j];
        }
    free(mag);
    free(norm);
    return 0;
}

int lora_delta_add(const lora_module *m, float mult, bool bias, const float *w0, float *w)
{
    const lora_target *t = m->target;
    if (bias) {
        float *db = widened(&m->part[P_DIFF_B]);
        if (!db) return -1;
        for (int64_t i = 0; i < t->rows; i++) w[i] += mult * m->scale * db[i];
        free(db);
        return 0;
    }
    size_t n = (size_t)(t->rows * t->cols);
    float *d = malloc(n * sizeof *d);
    if (!d || delta_of(m, d) || (HAS(m, P_DORA) && dora(m, w0, d))) {
        free(d);
        return -1;
    }
    float c = HAS(m, P_DORA) ? mult : mult * m->scale; /* DoRA's own scale is inside W' */
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) w[i] += c * d[i];
    free(d);
    return 0;
}
