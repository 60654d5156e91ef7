/* The demo model (tests/data/demo/, tools/reference/train_demo_model.py) for
 * the tests that run it: its engine, the pictures stored next to it, and a
 * job with the demo's settings. */
#ifndef SDXL_DEMO_MODEL_H
#define SDXL_DEMO_MODEL_H

#include "image/decode.h"
#include "sd/engine.h"

#define DEMO "tests/data/demo/"

/* The engine on the demo checkpoint, one CPU thread (as small_model.h);
 * NULL after saying why on stderr. */
sd_engine *demo_engine_open(void);

/* Decodes tests/data/demo/<name> (small_model_read_image); 0, or -1 after saying why. */
int demo_picture(const char *name, img_rgb *out);

/* A txt2img job with demo_input.json's steps, cfg, sampler and rng (one
 * generator for the batch) and the given prompt, size and seed; fails the
 * test when demo_input.json cannot be read. */
void demo_job(sd_txt2img_params *p, const char *prompt, int side, uint64_t seed);

#endif
