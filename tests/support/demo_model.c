/* The demo model for the tests (see demo_model.h). */
#include "demo_model.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_assert.h"
#include "small_model.h"
#include "testutil.h"

sd_engine *demo_engine_open(void)
{
    char err[512];
    sd_engine_options opts = {.device.cpu.threads = 1};
    sd_engine *e = NULL;
    if (sd_engine_load(DEMO "sdxl_demo.safetensors", &opts, &e, err, sizeof err)) fprintf(stderr, "%s\n", err);
    return e;
}

int demo_picture(const char *name, img_rgb *out)
{
    char path[256];
    snprintf(path, sizeof path, DEMO "%s", name);
    return small_model_read_image(path, out);
}

/* demo_input.json's input object, read once (kept for the process: the
 * job's strings point into it). */
static const cJSON *demo_input(void)
{
    static cJSON *doc;
    if (!doc) doc = tu_read_json("demo_input.json");
    const cJSON *in = cJSON_GetObjectItem(doc, "input");
    if (!cJSON_IsObject(in)) fail_msg("demo_input.json has no input object");
    return in;
}

void demo_job(sd_txt2img_params *p, const char *prompt, int side, uint64_t seed)
{
    const cJSON *in = demo_input();
    sd_txt2img_params_default(p);
    p->prompt = prompt;
    p->width = p->height = side;
    p->seed = seed;
    p->steps = json_int(in, "steps");
    p->cfg = (float)json_num(in, "cfg_scale");
    p->sampler = json_str(in, "sampler");
    p->rng = strcmp(json_str(in, "rng"), "cpu") ? SD_RNG_CUDA : SD_RNG_CPU;
    p->seeding = SD_BATCH_ONE_GENERATOR;
}
