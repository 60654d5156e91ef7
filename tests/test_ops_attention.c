/* sd_attention (tiled, online softmax) against the naive full-score-matrix
 * reference in double: self- and cross-attention (Nq != Nk), head widths 8
 * and 64, value width != key width, the CLIP causal mask, sequences of 77
 * and 1000 tokens (several tiles, lengths not multiples of the tile sizes),
 * logits large enough to overflow an unshifted exp, and tiny tiles. Also
 * checks that the scratch stays tile-sized, never Nq x Nk. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>

#include "opsref.h"
#include "sd/backend.h"

#define TOL 1e-5

typedef struct {
    int64_t batch, nq, nk, heads, dh, dv;
    int causal;
    float magnitude;   /* inputs uniform in +-magnitude */
    double tol;        /* 0: TOL */
} attn_case;

/* out[b, i, h*dv + d] = sum_j softmax_j(q_i . k_j / sqrt(dh), j <= i if causal) v[b, j, h*dv + d] */
static double *ref_attention(const attn_case *c, const float *q, const float *k, const float *v)
{
    int64_t hd = c->heads * c->dh, hv = c->heads * c->dv;
    double *out = calloc((size_t)(c->batch * c->nq * hv), sizeof *out), *p = malloc((size_t)c->nk * sizeof *p);
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t h = 0; h < c->heads; h++)
            for (int64_t i = 0; i < c->nq; i++) {
                double mx = -INFINITY, sum = 0.0;
                int64_t seen = c->causal && i + 1 < c->nk ? i + 1 : c->nk;
                for (int64_t j = 0; j < seen; j++) {
                    double s = 0.0;
                    for (int64_t d = 0; d < c->dh; d++)
                        s += (double)q[(b * c->nq + i) * hd + h * c->dh + d] * k[(b * c->nk + j) * hd + h * c->dh + d];
                    p[j] = s / sqrt((double)c->dh);
                    mx = fmax(mx, p[j]);
                }
                for (int64_t j = 0; j < seen; j++) sum += (p[j] = exp(p[j] - mx));
                double *o = out + (b * c->nq + i) * hv + h * c->dv;
                for (int64_t j = 0; j < seen; j++)
                    for (int64_t d = 0; d < c->dv; d++) o[d] += p[j] / sum * v[(b * c->nk + j) * hv + h * c->dv + d];
            }
    free(p);
    return out;
}

static void check_attention(sd_backend *be, const attn_case *c, uint32_t seed)
{
    int64_t hd = c->heads * c->dh, hv = c->heads * c->dv;
    float m = c->magnitude;
    float *q = or_random_new(&seed, (size_t)(c->batch * c->nq * hd), -m, m);
    float *k = or_random_new(&seed, (size_t)(c->batch * c->nk * hd), -m, m);
    float *v = or_random_new(&seed, (size_t)(c->batch * c->nk * hv), -1, 1);
    sd_tensor *tq = or_tensor(be, 3, (const int64_t[]){c->batch, c->nq, hd}, q);
    sd_tensor *tk = or_tensor(be, 3, (const int64_t[]){c->batch, c->nk, hd}, k);
    sd_tensor *tv = or_tensor(be, 3, (const int64_t[]){c->batch, c->nk, hv}, v);
    sd_tensor *to = sd_new3(be, c->batch, c->nq, hv);
    assert_int_equal(sd_attention(be, to, tq, tk, tv, (int)c->heads, c->causal), 0);
    float *got = or_download(be, to);
    double *ref = ref_attention(c, q, k, v);
    double err = or_rel_err(got, ref, (size_t)(c->batch * c->nq * hv), 1e-30);
    if (err > (c->tol ? c->tol : TOL))
        fail_msg("attention B%lld Nq%lld Nk%lld H%lld Dh%lld Dv%lld causal %d: rel err %g", (long long)c->batch,
                 (long long)c->nq, (long long)c->nk, (long long)c->heads, (long long)c->dh, (long long)c->dv,
                 c->causal, err);
    free(q), free(k), free(v), free(got), free(ref);
    sd_tensor_free(be, tq), sd_tensor_free(be, tk), sd_tensor_free(be, tv), sd_tensor_free(be, to);
}

static const attn_case cases[] = {
    {2, 77, 77, 12, 8, 8, 1, 2.0f, 0},      /* CLIP-like self-attention, causal, head width 8 */
    {2, 50, 77, 3, 64, 64, 0, 1.0f, 0},     /* cross-attention: 50 latent tokens on 77 text tokens */
    {1, 1000, 1000, 2, 8, 8, 0, 2.0f, 0},   /* long: several query and key tiles, ragged ends */
    {1, 1000, 1000, 1, 8, 8, 1, 2.0f, 0},   /* long and causal */
    {2, 33, 19, 2, 8, 16, 0, 1.0f, 0},      /* value width 16 != key width 8 */
    {1, 20, 9, 2, 8, 8, 1, 1.0f, 0},        /* causal with Nq > Nk: late rows see every key */
    {1, 9, 20, 2, 8, 8, 1, 1.0f, 0},        /* causal with Nq < Nk: top-left aligned */
    {1, 1, 5, 4, 8, 8, 0, 1.0f, 0},         /* a single query */
    /* logits up to ~150 (expf overflows past 88): exp must be max-shifted. An
     * fp32 logit of 150 is only good to ~1e-5 absolute, which exp turns into
     * relative error in any fp32 implementation (torch's too): hence 1e-4. */
    {1, 300, 300, 1, 64, 64, 0, 12.0f, 1e-4},
};

/* Runs the cases with at most max_n queries (tiny tiles make the long ones slow). */
static void run_cases(sd_backend *be, int64_t max_n)
{
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        if (cases[i].nq <= max_n) check_attention(be, &cases[i], 11u + (uint32_t)i);
    assert_null(sd_backend_error(be));
}

static void test_attention_matches_naive_reference(void **state)
{
    sd_backend *be = sd_backend_cpu_new(NULL);
    run_cases(be, 1000);
    sd_backend_free(be);
}

static void test_attention_with_tiny_tiles_matches_reference(void **state)
{
    sd_backend *be = sd_backend_cpu_new(&(sd_cpu_options){.attn_q_block = 5, .attn_k_block = 7});
    run_cases(be, 300);
    sd_backend_free(be);
}

static void test_attention_memory_is_tile_sized(void **state)
{
    /* 1000 x 1000 scores would be 4 MB per head; the tiles need
     * threads * (128*512 + 128*8 + 2*128) floats, about 265 KB per thread. */
    sd_backend *be = sd_backend_cpu_new(&(sd_cpu_options){.threads = 2});
    sd_backend_reset_peak(be);
    check_attention(be, &cases[3], 5);
    sd_mem_stats m;
    sd_backend_mem(be, &m);
    assert_true(m.scratch_bytes < (size_t)2 * 270 * 1024);
    assert_true(m.scratch_bytes < (size_t)1000 * 1000 * sizeof(float));
    assert_true(m.peak_bytes <= m.scratch_bytes + 4 * (size_t)1000 * 16 * sizeof(float));
    sd_backend_free(be);
}

static void test_attention_rejects_bad_layouts(void **state)
{
    sd_backend *be = sd_backend_cpu_new(NULL);
    sd_tensor *q = sd_new3(be, 2, 10, 24), *k = sd_new3(be, 2, 7, 24), *v = sd_new3(be, 2, 7, 24);
    sd_tensor *out = sd_new3(be, 2, 10, 24), *k1 = sd_new3(be, 1, 7, 24), *flat = sd_new2(be, 10, 24);
    assert_int_equal(sd_fill(be, q, 0.5f) | sd_fill(be, k, 0.25f) | sd_fill(be, v, 1.0f), 0);
    or_expect_error(be, sd_attention(be, out, q, k, v, 5, 0), "do not fit 5 heads");
    or_expect_error(be, sd_attention(be, out, q, k1, v, 3, 0), "do not fit 3 heads");
    or_expect_error(be, sd_attention(be, q, q, k, v, 3, 0), "alias");
    or_expect_error(be, sd_attention(be, out, flat, k, v, 3, 0), "must have 3 dims");
    assert_int_equal(sd_attention(be, out, q, k, v, 3, 0), 0);
    float *o = or_download(be, out);
    for (int i = 0; i < 2 * 10 * 24; i++) assert_float_equal(o[i], 1.0, 1e-6);   /* uniform weights on v = 1 */
    free(o);
    sd_tensor *all[] = {q, k, v, out, k1, flat};
    for (int i = 0; i < 6; i++) sd_tensor_free(be, all[i]);
    sd_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attention_matches_naive_reference),
        cmocka_unit_test(test_attention_with_tiny_tiles_matches_reference),
        cmocka_unit_test(test_attention_memory_is_tile_sized),
        cmocka_unit_test(test_attention_rejects_bad_layouts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
