/* Sampler parity against diffusers without a UNet: every case of
 * tests/data/sampler_goldens.{json,safetensors} (tools/reference/
 * make_sampler_goldens.py) runs our plan and loop on the same fake eps-model,
 * CFG/guidance_rescale wrapper and noise stream as diffusers' scheduler did;
 * DPM++ 2S a, which diffusers lacks, against k-diffusion's
 * sample_dpmpp_2s_ancestral the same way
 * (tests/data/sampler_goldens_dpmpp_2s_a.*, make_dpmpp_2s_a_goldens.py).
 * Asserts: betas and alphas_cumprod bit for bit, sigmas within 1 ulp;
 * timesteps, sigmas and
 * init_noise_sigma within 1e-6 relative; the final latents within 1e-5 of
 * their largest magnitude; every drawn noise value consumed, none more. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "sd/guidance.h"
#include "sd/sampler.h"
#include "sd/safetensors.h"
#include "sd/schedule.h"
#include "testutil.h"

/* The golden sets: tests/data/<stem>.{json,safetensors}. */
static const char *const golden_stems[] = {"sampler_goldens", "sampler_goldens_dpmpp_2s_a"};
#define N_SETS (sizeof golden_stems / sizeof golden_stems[0])
/* DPM2 a's midpoint sigmas are exp(mean(log sigma, log sigma_down)) with
 * sigma_down = sqrt(next^2 - up^2): a cancellation that multiplies the 1-ulp
 * differences of torch's fp32 sqrt (not correctly rounded on this CPU) by
 * (sigma_i/sigma_{i+1})^2, so their timesteps match to about 2e-4 absolute
 * only (diffusers has the same sensitivity; docs/samplers.md). DPM++ 2S a's
 * midpoint sigmas, exp(-(t + h/2)) with t = -log sigma, go through the same
 * fp32 log/exp round trip, where torch's scalar log differs from glibc's by
 * 1 ulp for some inputs: measured up to 1.2e-4 absolute (2 ulps of t near
 * 1000, 2e-6 relative). Both are odd model evaluations. */
#define MID_TIMESTEP_ABS 2e-4

static cJSON *index_json[N_SETS];
static st_file *golden_files[N_SETS];
static st_file *goldens; /* the set whose case runs */

/* A golden tensor as fp32 (malloc'd copy), its length in *n; NULL if absent. */
static float *tensor(const char *name, size_t *n)
{
    const st_tensor *t = st_find(goldens, name);
    if (!t) return NULL;
    float *v = malloc(t->nbytes ? t->nbytes : 1);
    assert_non_null(v);
    memcpy(v, t->data, t->nbytes);
    *n = (size_t)t->numel;
    return v;
}

static float *case_tensor(int id, const char *what, size_t *n)
{
    char name[64];
    snprintf(name, sizeof name, "c%d.%s", id, what);
    return tensor(name, n);
}

/* ---- the fake model (see make_sampler_goldens.py) ------------------------- */

static float offset(size_t i, int cond)
{
    return cond ? (float)((int)(i % 7) - 3) * 0.0625f : (float)((int)(i % 5) - 2) * 0.03125f;
}

typedef struct {
    size_t per_image;
    int calls;
} fake_model;

static int fake_eps(void *ctx, const float *x_in, int rows, int with_uncond, float t, float *eps)
{
    fake_model *m = ctx;
    float c = 0.75f + t * 0.0002f;
    for (int r = 0; r < rows; r++) {
        int cond = !(with_uncond && r < rows / 2);
        for (size_t i = 0; i < m->per_image; i++) {
            size_t k = (size_t)r * m->per_image + i;
            float v = x_in[k];
            float a = v * c + offset(i, cond);
            float q = (v / (v * v + 1.0f)) * 0.1f;
            eps[k] = a + q;
        }
    }
    m->calls++;
    return 0;
}

/* Replays the noise diffusers drew. */
typedef struct {
    const float *values;
    size_t len, used;
} noise_stream;

static int replay_noise(void *ctx, float *out, size_t n)
{
    noise_stream *s = ctx;
    assert_true(s->used + n <= s->len);
    memcpy(out, s->values + s->used, n * sizeof(float));
    s->used += n;
    return 0;
}

/* ---- comparisons ------------------------------------------------------------ */

/* |got - want| <= rel * |want|, or <= abs_odd at odd indices when abs_odd > 0 */
static void assert_close_each(const float *got, const float *want, size_t n, double rel,
                              double abs_odd, const char *what, const char *label)
{
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        double tol = abs_odd > 0 && i % 2 ? abs_odd : rel * fabs((double)want[i]);
        if (d > tol) fail_msg("%s: %s[%zu] = %.9g, diffusers %.9g", label, what, i, got[i], want[i]);
    }
}

/* ---- tests ---------------------------------------------------------------- */

static void test_training_table_matches_torch_bit_for_bit(void **state)
{
    const sd_train_schedule *s = sd_train_schedule_sdxl();
    goldens = golden_files[0];
    size_t n;
    float *betas = tensor("table.betas", &n), *acp = tensor("table.alphas_cumprod", &n);
    float *sigmas = tensor("table.sigmas", &n);
    assert_non_null(betas);
    assert_int_equal(n, SD_TRAIN_STEPS);
    assert_memory_equal(s->betas, betas, sizeof s->betas);
    assert_memory_equal(s->alphas_cumprod, acp, sizeof s->alphas_cumprod);
    /* torch's fp32 sqrt is within 1 ulp of the correctly rounded sqrtf */
    for (int i = 0; i < SD_TRAIN_STEPS; i++) {
        int32_t a, b;
        memcpy(&a, &s->sigmas[i], 4), memcpy(&b, &sigmas[i], 4);
        if (abs(a - b) > 1) fail_msg("sigma[%d] = %.9g, torch %.9g", i, s->sigmas[i], sigmas[i]);
    }
    /* spec values (docs: sdxl-numerics-diffusers.md 3.2) */
    assert_float_equal(s->sigmas[0], 0.0291675f, 1e-7);
    assert_float_equal(s->sigmas[999], 14.614647f, 1e-5);
    free(betas), free(acp), free(sigmas);
}

typedef struct {
    double worst;
    int cases;
} sampler_stats;

static void run_case(const cJSON *c, sampler_stats *stats)
{
    int id = cJSON_GetObjectItem(c, "id")->valueint;
    const char *sampler = cJSON_GetObjectItem(c, "sampler")->valuestring;
    const char *schedule = cJSON_GetObjectItem(c, "schedule")->valuestring;
    int steps = cJSON_GetObjectItem(c, "steps")->valueint;
    const cJSON *shape = cJSON_GetObjectItem(c, "shape");
    int batch = cJSON_GetArrayItem(shape, 0)->valueint;
    size_t per_image = 1;
    for (int d = 1; d < cJSON_GetArraySize(shape); d++)
        per_image *= (size_t)cJSON_GetArrayItem(shape, d)->valueint;
    float cfg = (float)cJSON_GetObjectItem(c, "cfg")->valuedouble;
    float rescale = (float)cJSON_GetObjectItem(c, "guidance_rescale")->valuedouble;
    float init = (float)cJSON_GetObjectItem(c, "init_noise_sigma")->valuedouble;
    char label[160], err[512];
    snprintf(label, sizeof label, "case %d: %s / %s, %d steps, cfg %g, rescale %g", id, sampler,
             schedule, steps, cfg, rescale);

    sd_sampler_choice choice;
    if (sd_sampler_parse(sampler, schedule, &choice, err, sizeof err)) fail_msg("%s: %s", label, err);
    sd_plan plan;
    if (sd_plan_make(&choice, steps, &plan, err, sizeof err)) fail_msg("%s: %s", label, err);

    size_t nt, ns, n0, nf, nz = 0;
    float *timesteps = case_tensor(id, "timesteps", &nt), *sigmas = case_tensor(id, "sigmas", &ns);
    float *x = case_tensor(id, "noise0", &n0), *final = case_tensor(id, "final", &nf);
    float *noise = case_tensor(id, "noise", &nz);
    if ((size_t)plan.n_evals != nt) fail_msg("%s: %d model calls, diffusers %zu", label, plan.n_evals, nt);
    assert_close_each(plan.timesteps, timesteps, nt, 1e-6,
                      choice.sampler == SD_SAMPLER_DPM2_A || choice.sampler == SD_SAMPLER_DPMPP_2S_A
                          ? MID_TIMESTEP_ABS
                          : 0.0,
                      "timestep", label);
    if (sigmas) { /* DDIM and LCM have none */
        if ((size_t)plan.n_sigmas != ns) fail_msg("%s: %d sigmas, diffusers %zu", label, plan.n_sigmas, ns);
        assert_close_each(plan.sigmas, sigmas, ns, 1e-6, 0.0, "sigma", label);
    }
    assert_close_each(&plan.init_noise_sigma, &init, 1, 1e-6, 0.0, "init_noise_sigma", label);

    fake_model model = {per_image, 0};
    sd_cfg_denoiser den;
    assert_int_equal(sd_cfg_denoiser_init(&den, fake_eps, &model, batch, per_image, cfg, rescale), 0);
    noise_stream stream = {noise, nz, 0};
    sd_sample_io io = {.n = n0, .eps = sd_cfg_eps, .eps_ctx = &den, .noise = replay_noise, .noise_ctx = &stream};
    assert_int_equal(nf, n0);
    assert_int_equal(sd_sampler_run(&plan, &io, x), 0);
    assert_int_equal(model.calls, plan.n_evals);
    if (stream.used != nz) fail_msg("%s: used %zu noise values of the %zu diffusers drew", label, stream.used, nz);
    double e = tu_rel_error(x, final, nf);
    if (!(e <= 1e-5)) fail_msg("%s: final latents differ by %.3g (relative to max)", label, e);
    if (e > stats->worst) stats->worst = e;
    stats->cases++;

    sd_cfg_denoiser_free(&den);
    sd_plan_free(&plan);
    free(timesteps), free(sigmas), free(x), free(final), free(noise);
}

static void test_every_case_matches_its_reference(void **state)
{
    assert_true(cJSON_GetArraySize(cJSON_GetObjectItem(index_json[0], "cases")) > 100);
    sampler_stats stats[SD_SAMPLER_COUNT] = {0};
    for (size_t k = 0; k < N_SETS; k++) {
        goldens = golden_files[k];
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItem(index_json[k], "cases")) {
            sd_sampler_choice choice;
            char err[512];
            assert_int_equal(sd_sampler_parse(cJSON_GetObjectItem(c, "sampler")->valuestring, NULL,
                                              &choice, err, sizeof err), 0);
            run_case(c, &stats[choice.sampler]);
        }
    }
    for (int s = 0; s < SD_SAMPLER_COUNT; s++) {
        assert_true(stats[s].cases >= 4); /* every sampler is covered */
        printf("  %-13s %3d cases, worst final-latent error %.2e\n", sd_sampler_label(s),
               stats[s].cases, stats[s].worst);
    }
}

/* SGM Uniform and Simple run diffusers' trailing spacing. */
static void test_sgm_uniform_and_simple_plan_as_trailing(void **state)
{
    for (int id = 0; id < SD_SAMPLER_COUNT; id++) {
        sd_sampler_choice trailing = {id, SD_SCHEDULE_TRAILING};
        if (!sd_sampler_supports(id, SD_SCHEDULE_TRAILING)) continue;
        for (int alias = SD_SCHEDULE_SGM_UNIFORM; alias <= SD_SCHEDULE_SIMPLE; alias++) {
            sd_sampler_choice other = {id, alias};
            sd_plan a, b;
            char err[256];
            assert_int_equal(sd_plan_make(&trailing, 7, &a, err, sizeof err), 0);
            assert_int_equal(sd_plan_make(&other, 7, &b, err, sizeof err), 0);
            assert_int_equal(a.n_evals, b.n_evals);
            assert_memory_equal(a.timesteps, b.timesteps, a.n_evals * sizeof(float));
            assert_memory_equal(a.sigmas, b.sigmas, a.n_sigmas * sizeof(float));
            assert_true(a.init_noise_sigma == b.init_noise_sigma);
            sd_plan_free(&a), sd_plan_free(&b);
        }
    }
}

/* Documented values of the SDXL default (spec 3.3): Euler leading. */
static void test_euler_leading_matches_documented_values(void **state)
{
    sd_sampler_choice c = {SD_SAMPLER_EULER, SD_SCHEDULE_LEADING};
    sd_plan p;
    char err[256];
    assert_int_equal(sd_plan_make(&c, 30, &p, err, sizeof err), 0);
    assert_float_equal(p.timesteps[0], 958.0f, 0.0);
    assert_float_equal(p.timesteps[1], 925.0f, 0.0);
    assert_float_equal(p.timesteps[29], 1.0f, 0.0);
    assert_float_equal(p.sigmas[0], 11.476851f, 1e-5);
    assert_float_equal(p.init_noise_sigma, 11.520334f, 1e-5);
    assert_float_equal(p.sigmas[29], 0.041314f, 1e-6);
    assert_float_equal(p.sigmas[30], 0.0f, 0.0);
    sd_plan_free(&p);
    /* DPM++ 2M leading: 1000 // (N+1) (spec 3.5, N=30 -> 961 ... 33) */
    c.sampler = SD_SAMPLER_DPMPP_2M;
    assert_int_equal(sd_plan_make(&c, 30, &p, err, sizeof err), 0);
    assert_float_equal(p.timesteps[0], 961.0f, 0.0);
    assert_float_equal(p.timesteps[29], 33.0f, 0.0);
    assert_float_equal(p.init_noise_sigma, 1.0f, 0.0);
    sd_plan_free(&p);
}

static int stop_at_third(void *ctx, const float *x_in, float t, float *eps)
{
    int *calls = ctx;
    memset(eps, 0, 16 * sizeof(float));
    return ++*calls == 3 ? 7 : 0;
}

/* A callback's stop code ends the run at once and is returned. */
static void test_callback_stop_is_returned(void **state)
{
    for (int id = 0; id < SD_SAMPLER_COUNT; id++) {
        sd_sampler_choice c = {id, SD_SCHEDULE_LEADING};
        sd_plan p;
        char err[256];
        assert_int_equal(sd_plan_make(&c, 6, &p, err, sizeof err), 0);
        float x[16] = {0.5f}, z[16] = {0};
        int calls = 0;
        noise_stream s = {z, 16, 0};
        sd_sample_io io = {.n = 16, .eps = stop_at_third, .eps_ctx = &calls};
        if (sd_sampler_is_stochastic(id)) {
            assert_int_equal(sd_sampler_run(&p, &io, x), SD_SAMPLE_ENONOISE);
            io.noise = replay_noise, io.noise_ctx = &s;
            s.len = 16 * 64;
            float *many = calloc(s.len, sizeof(float));
            s.values = many;
            assert_int_equal(sd_sampler_run(&p, &io, x), 7);
            free(many);
        } else {
            assert_int_equal(sd_sampler_run(&p, &io, x), 7);
        }
        assert_int_equal(calls, 3);
        sd_plan_free(&p);
    }
}

static void test_plan_rejects_bad_steps(void **state)
{
    sd_sampler_choice c = {SD_SAMPLER_EULER, SD_SCHEDULE_LEADING};
    sd_plan p;
    char err[256];
    assert_int_equal(sd_plan_make(&c, 0, &p, err, sizeof err), -1);
    assert_non_null(strstr(err, "steps must be between 1 and 1000"));
    assert_int_equal(sd_plan_make(&c, SD_MAX_STEPS + 1, &p, err, sizeof err), -1);
    c.sampler = SD_SAMPLER_LCM;
    assert_int_equal(sd_plan_make(&c, 51, &p, err, sizeof err), -1);
    assert_non_null(strstr(err, "between 1 and 50 for LCM"));
    c.schedule = SD_SCHEDULE_KARRAS;
    assert_int_equal(sd_plan_make(&c, 4, &p, err, sizeof err), -1);
}

static void test_guidance_without_cfg_runs_cond_batch_only(void **state)
{
    fake_model m = {4, 0};
    sd_cfg_denoiser d;
    assert_int_equal(sd_cfg_denoiser_init(&d, fake_eps, &m, 2, 4, 1.0f, 0.7f), 0);
    float x[8] = {0.1f, -0.2f, 0.3f, 0.4f, 1, 2, 3, 4}, eps[8], want[8];
    assert_int_equal(sd_cfg_eps(&d, x, 500.0f, eps), 0);
    fake_eps(&m, x, 2, 0, 500.0f, want);
    assert_memory_equal(eps, want, sizeof eps);
    sd_cfg_denoiser_free(&d);
    assert_int_equal(sd_cfg_denoiser_init(&d, fake_eps, &m, 0, 4, 5.0f, 0.0f), -1);
}

static int setup(void **state)
{
    for (size_t k = 0; k < N_SETS; k++) {
        char path[128], err[256];
        size_t len;
        snprintf(path, sizeof path, "tests/data/%s.json", golden_stems[k]);
        char *text = tu_read_file(path, &len);
        if (!text) return -1;
        index_json[k] = cJSON_Parse(text);
        free(text);
        snprintf(path, sizeof path, "tests/data/%s.safetensors", golden_stems[k]);
        if (!index_json[k] || st_open(path, &golden_files[k], err, sizeof err)) return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    for (size_t k = 0; k < N_SETS; k++) {
        cJSON_Delete(index_json[k]);
        st_close(golden_files[k]);
    }
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_training_table_matches_torch_bit_for_bit),
        cmocka_unit_test(test_every_case_matches_its_reference),
        cmocka_unit_test(test_sgm_uniform_and_simple_plan_as_trailing),
        cmocka_unit_test(test_euler_leading_matches_documented_values),
        cmocka_unit_test(test_callback_stop_is_returned),
        cmocka_unit_test(test_plan_rejects_bad_steps),
        cmocka_unit_test(test_guidance_without_cfg_runs_cond_batch_only),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
