/* CPU scaled-dot-product attention in bounded memory: the FlashAttention
 * recurrence (Dao et al. 2022, "online softmax"; the same scheme as torch's
 * CPU kernel aten/src/ATen/native/cpu/FlashAttentionKernel.cpp). Each work
 * item is one (batch, head, block of query rows); it walks the key blocks,
 * keeping per row the running max m, the running sum l and the unnormalised
 * output O:
 *   S = scale * Q_blk K_blk^T            (sgemm)
 *   m' = max(m, rowmax S); P = exp(S - m'); c = exp(m - m')
 *   l = l c + rowsum P;  O = O c + P V_blk (sgemm);  m = m'
 * and finally out = O / l. Memory is threads * (qb*kb + qb*Dv + 2 qb) floats
 * however long the sequences are. Work items run in parallel; their small
 * sgemms run single-threaded inside the OpenMP region. */
#include "sd/cpu/cpu.h"

#include <cblas.h>
#include <omp.h>
#include <string.h>

typedef struct {
    int64_t batch, nq, nk, heads, dh, dv, qb, kb;
    int causal;
    float scale;
    const float *q, *k, *v;
    float *out;
} attn_job;

typedef struct { float *s, *o, *m, *l; } attn_tiles;

/* Turns row i of the score tile into probabilities against the running max,
 * rescaling the row's running sum and output. `valid` leading keys count;
 * the rest are masked (causal) and get probability 0. */
CPU_VECTOR_CLONES static void online_softmax_row(const attn_job *j, float *s, int64_t nkb, int64_t valid, float *m, float *l, float *o)
{
    if (valid <= 0) {
        memset(s, 0, (size_t)nkb * sizeof(float));
        return;
    }
    float mx = *m, sum = 0.0f;
#pragma omp simd reduction(max : mx)
    for (int64_t c = 0; c < valid; c++) mx = s[c] > mx ? s[c] : mx;
    float corr = cpu_exp(*m - mx);
#pragma omp simd reduction(+ : sum)
    for (int64_t c = 0; c < valid; c++) {
        s[c] = cpu_exp(s[c] - mx);
        sum += s[c];
    }
    for (int64_t c = valid; c < nkb; c++) s[c] = 0.0f;
    *l = *l * corr + sum;
    *m = mx;
    if (corr == 1.0f) return;   /* the row's maximum did not move */
#pragma omp simd
    for (int64_t d = 0; d < j->dv; d++) o[d] *= corr;
}

static void attend_block(const attn_job *j, int64_t b, int64_t h, int64_t q0, const attn_tiles *t)
{
    int64_t nqb = j->nq - q0 < j->qb ? j->nq - q0 : j->qb;
    int64_t ldq = j->heads * j->dh, ldv = j->heads * j->dv;
    const float *q = j->q + (b * j->nq + q0) * ldq + h * j->dh;
    int64_t kend = j->causal && q0 + nqb < j->nk ? q0 + nqb : j->nk;   /* keys any row of the block sees */
    for (int64_t r = 0; r < nqb; r++) {
        t->m[r] = -INFINITY;
        t->l[r] = 0.0f;
    }
    memset(t->o, 0, (size_t)(nqb * j->dv) * sizeof(float));
    for (int64_t k0 = 0; k0 < kend; k0 += j->kb) {
        int64_t nkb = kend - k0 < j->kb ? kend - k0 : j->kb;
        const float *k = j->k + (b * j->nk + k0) * ldq + h * j->dh;
        const float *v = j->v + (b * j->nk + k0) * ldv + h * j->dv;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nqb, (int)nkb, (int)j->dh, j->scale, q, (int)ldq,
                    k, (int)ldq, 0.0f, t->s, (int)nkb);
        for (int64_t r = 0; r < nqb; r++) {
            int64_t valid = j->causal ? q0 + r - k0 + 1 : nkb;
            online_softmax_row(j, t->s + r * nkb, nkb, valid < nkb ? valid : nkb, &t->m[r], &t->l[r],
                               t->o + r * j->dv);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nqb, (int)j->dv, (int)nkb, 1.0f, t->s, (int)nkb,
                    v, (int)ldv, 1.0f, t->o, (int)j->dv);
    }
    float *out = j->out + (b * j->nq + q0) * ldv + h * j->dv;
    for (int64_t r = 0; r < nqb; r++)
        for (int64_t d = 0; d < j->dv; d++) out[r * ldv + d] = t->o[r * j->dv + d] / t->l[r];
}

int cpu_attention(sd_backend *be, sd_tensor *out, const sd_tensor *q, const sd_tensor *k, const sd_tensor *v,
                  int heads, int causal)
{
    cpu_state *st = cpu_of(be);
    attn_job j = {.batch = q->shape[0], .nq = q->shape[1], .nk = k->shape[1], .heads = heads,
                  .dh = q->shape[2] / heads, .dv = v->shape[2] / heads, .causal = causal,
                  .q = q->data, .k = k->data, .v = v->data, .out = out->data};
    j.qb = j.nq < st->attn_q_block ? j.nq : st->attn_q_block;
    j.kb = j.nk < st->attn_k_block ? j.nk : st->attn_k_block;
    j.scale = 1.0f / sqrtf((float)j.dh);
    if (cpu_blas_dims(be, "sd_attention", 2, (const int64_t[]){q->shape[2], v->shape[2]})) return -1;
    size_t per_thread = (size_t)(j.qb * j.kb + j.qb * j.dv + 2 * j.qb);
    float *scratch = cpu_scratch(be, CPU_SCRATCH_THREADS, per_thread * (size_t)st->threads);
    if (!scratch) return -1;
    int64_t qblocks = (j.nq + j.qb - 1) / j.qb, items = j.batch * heads * qblocks;
    /* The pthreads build of OpenBLAS (if that is what got loaded) would wake
     * its own pool from every tile's sgemm, ~10x slower: keep it serial here. */
    int blas_threads = openblas_get_num_threads(), pthread_blas = openblas_get_parallel() == 1;
    if (pthread_blas) openblas_set_num_threads(1);
#pragma omp parallel num_threads(st->threads)
    {
        float *mine = scratch + per_thread * (size_t)omp_get_thread_num();
        attn_tiles t = {mine, mine + j.qb * j.kb, mine + j.qb * (j.kb + j.dv), mine + j.qb * (j.kb + j.dv + 1)};
#pragma omp for schedule(dynamic, 1)
        for (int64_t item = 0; item < items; item++)
            attend_block(&j, item / (heads * qblocks), item / qblocks % heads, item % qblocks * j.qb, &t);
    }
    if (pthread_blas) openblas_set_num_threads(blas_threads);
    return 0;
}
