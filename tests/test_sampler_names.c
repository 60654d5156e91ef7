/* Sampler and schedule names: A1111, ComfyUI and diffusers spellings, any
 * case, legacy combined names, A1111's Automatic defaults, and the errors for
 * unknown, refused and unsupported names (sd/sampler.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "sd/sampler.h"

static char err[1024];

static void expect(const char *sampler, const char *schedule, sd_sampler_id id, sd_schedule_type s)
{
    sd_sampler_choice c;
    if (sd_sampler_parse(sampler, schedule, &c, err, sizeof err))
        fail_msg("\"%s\" + \"%s\": %s", sampler, schedule ? schedule : "(null)", err);
    if (c.sampler != id || c.schedule != s)
        fail_msg("\"%s\" + \"%s\" -> %s / %s", sampler, schedule ? schedule : "(null)",
                 sd_sampler_label(c.sampler), sd_schedule_label(c.schedule));
}

static void expect_error(const char *sampler, const char *schedule, const char *needle)
{
    sd_sampler_choice c;
    err[0] = 0;
    assert_int_equal(sd_sampler_parse(sampler, schedule, &c, err, sizeof err), -1);
    if (!strstr(err, needle)) fail_msg("error for \"%s\": \"%s\" lacks \"%s\"", sampler, err, needle);
}

static void test_a1111_pairs_and_legacy_names(void **state)
{
    expect("DPM++ 2M", "Karras", SD_SAMPLER_DPMPP_2M, SD_SCHEDULE_KARRAS);
    expect("DPM++ 2M Karras", NULL, SD_SAMPLER_DPMPP_2M, SD_SCHEDULE_KARRAS);
    expect("dpm++ 2m karras", "", SD_SAMPLER_DPMPP_2M, SD_SCHEDULE_KARRAS);
    expect("DPM++ 2M Karras", "Karras", SD_SAMPLER_DPMPP_2M, SD_SCHEDULE_KARRAS);
    expect("DPM++ 2M Karras", "Automatic", SD_SAMPLER_DPMPP_2M, SD_SCHEDULE_KARRAS);
    expect("DPM++ 2M SDE Exponential", NULL, SD_SAMPLER_DPMPP_2M_SDE, SD_SCHEDULE_EXPONENTIAL);
    expect("DPM++ 2M SDE Karras", NULL, SD_SAMPLER_DPMPP_2M_SDE, SD_SCHEDULE_KARRAS);
    expect("DPM2 a Karras", NULL, SD_SAMPLER_DPM2_A, SD_SCHEDULE_KARRAS);
    expect("LMS Karras", NULL, SD_SAMPLER_LMS, SD_SCHEDULE_KARRAS);
    expect("  Euler a ", " Normal ", SD_SAMPLER_EULER_A, SD_SCHEDULE_LEADING);
    expect("Euler", "SGM Uniform", SD_SAMPLER_EULER, SD_SCHEDULE_SGM_UNIFORM);
    expect("Euler", "Simple", SD_SAMPLER_EULER, SD_SCHEDULE_SIMPLE);
    expect("Euler", "Uniform", SD_SAMPLER_EULER, SD_SCHEDULE_LINSPACE);
    expect("Heun", "Beta", SD_SAMPLER_HEUN, SD_SCHEDULE_BETA);
    expect("UniPC", "Exponential", SD_SAMPLER_UNIPC, SD_SCHEDULE_EXPONENTIAL);
    expect("DDIM", "trailing", SD_SAMPLER_DDIM, SD_SCHEDULE_TRAILING);
    expect("DPM++ 2S a Karras", NULL, SD_SAMPLER_DPMPP_2S_A, SD_SCHEDULE_KARRAS);
    expect("dpm++ 2s a karras", "Karras", SD_SAMPLER_DPMPP_2S_A, SD_SCHEDULE_KARRAS);
    expect("DPM++ 2S a Exponential", NULL, SD_SAMPLER_DPMPP_2S_A, SD_SCHEDULE_EXPONENTIAL);
    expect("DPM++ 2S a", "Normal", SD_SAMPLER_DPMPP_2S_A, SD_SCHEDULE_LEADING);
    expect("DPM++ 2S a", "SGM Uniform", SD_SAMPLER_DPMPP_2S_A, SD_SCHEDULE_SGM_UNIFORM);
    expect("DPM++ 2S a", "Beta", SD_SAMPLER_DPMPP_2S_A, SD_SCHEDULE_BETA);
}

/* A1111's per-sampler defaults for "Automatic" (and no schedule at all). */
static void test_automatic_is_the_a1111_default(void **state)
{
    expect("DPM++ 2M", NULL, SD_SAMPLER_DPMPP_2M, SD_SCHEDULE_KARRAS);
    expect("DPM++ 2M", "Automatic", SD_SAMPLER_DPMPP_2M, SD_SCHEDULE_KARRAS);
    expect("DPM++ 2M SDE", "", SD_SAMPLER_DPMPP_2M_SDE, SD_SCHEDULE_EXPONENTIAL);
    expect("DPM++ 3M SDE", "auto", SD_SAMPLER_DPMPP_3M_SDE, SD_SCHEDULE_EXPONENTIAL);
    expect("DPM2", NULL, SD_SAMPLER_DPM2, SD_SCHEDULE_KARRAS);
    expect("Euler", NULL, SD_SAMPLER_EULER, SD_SCHEDULE_LEADING);
    expect("Euler a", "default", SD_SAMPLER_EULER_A, SD_SCHEDULE_LEADING);
    expect("LCM", NULL, SD_SAMPLER_LCM, SD_SCHEDULE_LEADING);
    expect("DPM++ 2S a", NULL, SD_SAMPLER_DPMPP_2S_A, SD_SCHEDULE_KARRAS);
    expect("DPM++ 2S a", "Automatic", SD_SAMPLER_DPMPP_2S_A, SD_SCHEDULE_KARRAS);
}

static void test_comfyui_and_diffusers_names(void **state)
{
    expect("euler_ancestral", "normal", SD_SAMPLER_EULER_A, SD_SCHEDULE_LEADING);
    expect("dpmpp_2m", "karras", SD_SAMPLER_DPMPP_2M, SD_SCHEDULE_KARRAS);
    expect("dpmpp_2m_sde", "exponential", SD_SAMPLER_DPMPP_2M_SDE, SD_SCHEDULE_EXPONENTIAL);
    expect("dpmpp_3m_sde", "sgm_uniform", SD_SAMPLER_DPMPP_3M_SDE, SD_SCHEDULE_SGM_UNIFORM);
    expect("dpm_2_ancestral", "beta", SD_SAMPLER_DPM2_A, SD_SCHEDULE_BETA);
    expect("dpm_2", "simple", SD_SAMPLER_DPM2, SD_SCHEDULE_SIMPLE);
    expect("uni_pc", "normal", SD_SAMPLER_UNIPC, SD_SCHEDULE_LEADING);
    expect("k_euler_a", NULL, SD_SAMPLER_EULER_A, SD_SCHEDULE_LEADING);
    expect("k_lms", NULL, SD_SAMPLER_LMS, SD_SCHEDULE_LEADING);
    expect("EulerDiscreteScheduler", NULL, SD_SAMPLER_EULER, SD_SCHEDULE_LEADING);
    expect("eulerdiscretescheduler", "karras", SD_SAMPLER_EULER, SD_SCHEDULE_KARRAS);
    expect("DPMSolverMultistepScheduler", "Karras", SD_SAMPLER_DPMPP_2M, SD_SCHEDULE_KARRAS);
    expect("KDPM2AncestralDiscreteScheduler", NULL, SD_SAMPLER_DPM2_A, SD_SCHEDULE_KARRAS);
    expect("HeunDiscreteScheduler", "discrete", SD_SAMPLER_HEUN, SD_SCHEDULE_LEADING);
    expect("DDIMScheduler", "leading", SD_SAMPLER_DDIM, SD_SCHEDULE_LEADING);
    expect("LCMScheduler", NULL, SD_SAMPLER_LCM, SD_SCHEDULE_LEADING);
    expect("UniPCMultistepScheduler", "linspace", SD_SAMPLER_UNIPC, SD_SCHEDULE_LINSPACE);
    expect("LMSDiscreteScheduler", NULL, SD_SAMPLER_LMS, SD_SCHEDULE_LEADING);
    /* DPM++ 2S a: ComfyUI, A1111's k_ alias, sd.cpp; it has no diffusers class */
    expect("dpmpp_2s_ancestral", "karras", SD_SAMPLER_DPMPP_2S_A, SD_SCHEDULE_KARRAS);
    expect("dpmpp_2s_ancestral", "simple", SD_SAMPLER_DPMPP_2S_A, SD_SCHEDULE_SIMPLE);
    expect("k_dpmpp_2s_a", NULL, SD_SAMPLER_DPMPP_2S_A, SD_SCHEDULE_KARRAS);
    expect("DPM++2S_A", "uniform", SD_SAMPLER_DPMPP_2S_A, SD_SCHEDULE_LINSPACE);
}

static void test_errors_list_valid_names_or_say_why(void **state)
{
    expect_error("Euler b", NULL, "unknown sampler \"Euler b\"; valid samplers: \"Euler\", \"Euler a\"");
    expect_error("Euler b", NULL, "\"DPM++ 2M SDE\"");
    expect_error("Euler b", NULL, "\"LCM\", \"DPM++ 2S a\" (A1111");
    expect_error("", NULL, "unknown sampler \"\"");
    expect_error(NULL, NULL, "valid samplers");
    expect_error("Euler", "Karras2", "unknown schedule type \"Karras2\"; valid schedule types:");
    expect_error("Euler", "Align Your Steps", "\"SGM Uniform\"");
    expect_error("DPM++ SDE", NULL, "Brownian tree");
    expect_error("dpmpp_sde_gpu", "karras", "not supported");
    expect_error("DPMSolverSinglestepScheduler", NULL, "deterministic single-step DPM-Solver");
    expect_error("DPM++ 2S a Karras", "Normal", "names the Karras schedule but the schedule type is \"Normal\"");
    expect_error("DPM fast", NULL, "no equivalent");
    expect_error("Euler a", "Karras", "EulerAncestralDiscreteScheduler supports only timestep spacings");
    expect_error("DDIM", "Exponential", "cannot run the Exponential schedule");
    expect_error("LCM", "Karras", "has only its own schedule");
    expect_error("DPM++ 2M Karras", "Exponential", "names the Karras schedule");
}

/* Names from a job are echoed on one line: control bytes as '?', 64 bytes at most. */
static void test_error_messages_stay_one_line(void **state)
{
    expect_error("Eu\nler\x01", NULL, "unknown sampler \"Eu?ler?\"");
    expect_error("Euler", "Kar\rras", "unknown schedule type \"Kar?ras\"");
    char longname[200];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    expect_error(longname, NULL, "xxx...\"; valid samplers");
    assert_null(strchr(err, '\n'));
}

static void test_labels(void **state)
{
    assert_string_equal(sd_sampler_label(SD_SAMPLER_DPMPP_2M), "DPM++ 2M");
    assert_string_equal(sd_sampler_label(SD_SAMPLER_EULER_A), "Euler a");
    assert_string_equal(sd_sampler_diffusers_class(SD_SAMPLER_DPM2_A), "KDPM2AncestralDiscreteScheduler");
    assert_string_equal(sd_schedule_label(SD_SCHEDULE_SGM_UNIFORM), "SGM Uniform");
    assert_string_equal(sd_schedule_label(SD_SCHEDULE_KARRAS), "Karras");
    assert_true(sd_sampler_is_stochastic(SD_SAMPLER_DPMPP_2M_SDE));
    assert_false(sd_sampler_is_stochastic(SD_SAMPLER_DPMPP_2M));
    assert_true(sd_sampler_supports(SD_SAMPLER_EULER, SD_SCHEDULE_BETA));
    assert_false(sd_sampler_supports(SD_SAMPLER_EULER_A, SD_SCHEDULE_KARRAS));
    assert_false(sd_sampler_supports(SD_SAMPLER_EULER, SD_SCHEDULE_AUTOMATIC));
    assert_string_equal(sd_sampler_label(SD_SAMPLER_COUNT), "?");
    assert_string_equal(sd_sampler_label(SD_SAMPLER_DPMPP_2S_A), "DPM++ 2S a");
    assert_null(sd_sampler_diffusers_class(SD_SAMPLER_DPMPP_2S_A));
    assert_true(sd_sampler_is_stochastic(SD_SAMPLER_DPMPP_2S_A));
    for (int s = SD_SCHEDULE_LEADING; s < SD_SCHEDULE_COUNT; s++) assert_true(sd_sampler_supports(SD_SAMPLER_DPMPP_2S_A, s));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a1111_pairs_and_legacy_names),
        cmocka_unit_test(test_automatic_is_the_a1111_default),
        cmocka_unit_test(test_comfyui_and_diffusers_names),
        cmocka_unit_test(test_errors_list_valid_names_or_say_why),
        cmocka_unit_test(test_error_messages_stay_one_line),
        cmocka_unit_test(test_labels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
