/* `sdxl-worker generate` (see sd/cli_generate.h): parses flags into
 * sd_txt2img_params, loads the engine, runs the job with a progress line on
 * stderr and writes each image as a PNG carrying A1111's infotext. */
#include "sd/cli_generate.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "image/encode.h"
#include "image/infotext.h"
#include "sd/engine.h"

static const char USAGE[] =
    "usage: sdxl-worker generate --model PATH --prompt TEXT [options]\n"
    "  -m, --model PATH          SDXL single-file checkpoint (.safetensors)\n"
    "  -p, --prompt TEXT         prompt (A1111 syntax: (word:1.2), [word], BREAK)\n"
    "  -N, --negative TEXT       negative prompt (default: none, i.e. zero conditioning)\n"
    "  -W, --width N             width in pixels (default 1024)\n"
    "  -H, --height N            height in pixels (default 1024)\n"
    "      --steps N             sampling steps (default 24)\n"
    "      --cfg X               guidance scale (default 4.5)\n"
    "      --guidance-rescale X  diffusers' guidance_rescale (default 0)\n"
    "      --seed N              seed, -1 for a random one (default -1)\n"
    "      --sampler NAME        A1111, ComfyUI or diffusers name (default 'DPM++ 2M Karras')\n"
    "      --schedule NAME       Automatic, Karras, Exponential, ... (default Automatic)\n"
    "      --rng cuda|cpu        noise source (default cuda: A1111 GPU seeds)\n"
    "  -n, --batch N             number of images (default 1)\n"
    "      --seeding per-image|one  seed+i per image (A1111, default) or one generator (diffusers)\n"
    "      --clip-skip N         text encoder layer from the end (default 2)\n"
    "      --threads N           CPU threads (default: all)\n"
    "      --device auto|cuda|cpu  the backend (default: SDXL_DEVICE, else auto)\n"
    "      --precision auto|fp16|bf16|fp32  GPU activations (default: SDXL_CUDA_PRECISION, else auto)\n"
    "      --vae-tile-above N    decode images of more than N pixels in tiles (-1: never)\n"
    "  -o, --output PATH         PNG path (default output.png); further images get _2, _3, ...\n";

typedef struct {
    const char *model, *output;
    bool random_seed;           /* --seed -1 or no --seed */
    sd_engine_options engine;
    sd_txt2img_params job;
} generate_args;

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int parse_float(const char *s, float *out)
{
    char *end;
    errno = 0;
    *out = strtof(s, &end);
    return errno || end == s || *end ? -1 : 0;
}

/* A seed as torch's manual_seed takes it: an int64 (a negative one maps to
 * its two's complement) or an unsigned value up to 2^64-1; -1 is random. */
static int parse_seed(const char *s, generate_args *a)
{
    char *end;
    errno = 0;
    if (s[0] == '-') {
        long long v = strtoll(s, &end, 10);
        if (errno || end == s || *end) return -1;
        a->random_seed = v == -1;
        a->job.seed = (uint64_t)v;
        return 0;
    }
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end) return -1;
    a->random_seed = false;
    a->job.seed = v;
    return 0;
}

static int bad(const char *flag, const char *value)
{
    fprintf(stderr, "sdxl-worker generate: bad value for %s: '%s'\n%s", flag, value, USAGE);
    return 2;
}

enum { OPT_STEPS = 256, OPT_CFG, OPT_RESCALE, OPT_SEED, OPT_SAMPLER, OPT_SCHEDULE, OPT_RNG, OPT_SEEDING,
       OPT_CLIP_SKIP, OPT_THREADS, OPT_TILE, OPT_DEVICE, OPT_PRECISION };

static const struct option OPTIONS[] = {
    {"model", required_argument, NULL, 'm'},      {"prompt", required_argument, NULL, 'p'},
    {"negative", required_argument, NULL, 'N'},   {"width", required_argument, NULL, 'W'},
    {"height", required_argument, NULL, 'H'},     {"steps", required_argument, NULL, OPT_STEPS},
    {"cfg", required_argument, NULL, OPT_CFG},    {"guidance-rescale", required_argument, NULL, OPT_RESCALE},
    {"seed", required_argument, NULL, OPT_SEED},  {"sampler", required_argument, NULL, OPT_SAMPLER},
    {"schedule", required_argument, NULL, OPT_SCHEDULE}, {"rng", required_argument, NULL, OPT_RNG},
    {"batch", required_argument, NULL, 'n'},      {"seeding", required_argument, NULL, OPT_SEEDING},
    {"clip-skip", required_argument, NULL, OPT_CLIP_SKIP}, {"threads", required_argument, NULL, OPT_THREADS},
    {"vae-tile-above", required_argument, NULL, OPT_TILE}, {"output", required_argument, NULL, 'o'},
    {"device", required_argument, NULL, OPT_DEVICE}, {"precision", required_argument, NULL, OPT_PRECISION},
    {"help", no_argument, NULL, 'h'},             {NULL, 0, NULL, 0},
};

/* One flag into args; 0, or the exit code of a usage error. */
static int apply_flag(generate_args *a, int c, const char *v)
{
    sd_txt2img_params *j = &a->job;
    long n;
    switch (c) {
    case 'm': a->model = v; return 0;
    case 'p': j->prompt = v; return 0;
    case 'N': j->negative_prompt = v; return 0;
    case 'o': a->output = v; return 0;
    case 'W': return parse_long(v, 1, SD_MAX_SIDE, &n) ? bad("--width", v) : (j->width = (int)n, 0);
    case 'H': return parse_long(v, 1, SD_MAX_SIDE, &n) ? bad("--height", v) : (j->height = (int)n, 0);
    case 'n': return parse_long(v, 1, SD_MAX_BATCH, &n) ? bad("--batch", v) : (j->batch = (int)n, 0);
    case OPT_STEPS: return parse_long(v, 1, SD_MAX_STEPS, &n) ? bad("--steps", v) : (j->steps = (int)n, 0);
    case OPT_CLIP_SKIP: return parse_long(v, 0, 64, &n) ? bad("--clip-skip", v) : (j->clip_skip = (int)n, 0);
    case OPT_THREADS: return parse_long(v, 1, 4096, &n) ? bad("--threads", v) : (a->engine.device.cpu.threads = (int)n, 0);
    case OPT_DEVICE: return sd_device_kind_parse(v, &a->engine.device.kind) ? bad("--device", v) : 0;
    case OPT_PRECISION: return sd_precision_parse(v, &a->engine.device.precision) ? bad("--precision", v) : 0;
    case OPT_TILE: return parse_long(v, -1, 1L << 40, &n) ? bad("--vae-tile-above", v) : (j->vae_tile_above = n, 0);
    case OPT_CFG: return parse_float(v, &j->cfg) ? bad("--cfg", v) : 0;
    case OPT_RESCALE: return parse_float(v, &j->guidance_rescale) ? bad("--guidance-rescale", v) : 0;
    case OPT_SEED: return parse_seed(v, a) ? bad("--seed", v) : 0;
    case OPT_SAMPLER: j->sampler = v; return 0;
    case OPT_SCHEDULE: j->schedule = v; return 0;
    case OPT_RNG:
        if (!strcasecmp(v, "cuda") || !strcasecmp(v, "gpu")) j->rng = SD_RNG_CUDA;
        else if (!strcasecmp(v, "cpu")) j->rng = SD_RNG_CPU;
        else return bad("--rng", v);
        return 0;
    case OPT_SEEDING:
        if (!strcasecmp(v, "per-image")) j->seeding = SD_BATCH_SEED_PER_IMAGE;
        else if (!strcasecmp(v, "one")) j->seeding = SD_BATCH_ONE_GENERATOR;
        else return bad("--seeding", v);
        return 0;
    case 'h': fputs(USAGE, stdout); return -1;
    default: fputs(USAGE, stderr); return 2;
    }
}

static int parse_args(int argc, char **argv, generate_args *a)
{
    memset(a, 0, sizeof *a);
    sd_txt2img_params_default(&a->job);
    a->output = "output.png";
    a->random_seed = true;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "m:p:N:W:H:n:o:h", OPTIONS, NULL)) != -1) {
        int rc = apply_flag(a, c, optarg);
        if (rc) return rc;
    }
    if (optind < argc || !a->model || !a->job.prompt) {
        fprintf(stderr, "sdxl-worker generate: --model and --prompt are required\n%s", USAGE);
        return 2;
    }
    return 0;
}

/* A1111's random seed: randrange(4294967294). */
static uint64_t random_seed(void)
{
    uint32_t r = 0;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) r = (uint32_t)time(NULL);
    return r % 4294967294u;
}

static int print_progress(void *ctx, int step, int total)
{
    fprintf(stderr, "\rstep %d/%d", step, total);
    if (step == total) fputc('\n', stderr);
    return 0;
}

/* out.png, out_2.png, out_3.png, ... */
static void image_path(const char *output, int i, char *buf, size_t len)
{
    if (i == 0) {
        snprintf(buf, len, "%s", output);
        return;
    }
    const char *slash = strrchr(output, '/'), *dot = strrchr(output, '.');
    int stem = dot && (!slash || dot > slash) ? (int)(dot - output) : (int)strlen(output);
    snprintf(buf, len, "%.*s_%d%s", stem, output, i + 1, output + stem);
}

static char *infotext_of(const generate_args *a, const sd_image_out *out, int i)
{
    a1111_infotext t;
    infotext_init(&t);
    char model[256];
    t.prompt = a->job.prompt;
    t.negative_prompt = a->job.negative_prompt;
    t.steps = a->job.steps;
    t.sampler = sd_sampler_label(out->choice.sampler);
    t.schedule_type = sd_schedule_label(out->choice.schedule);
    t.cfg_scale = a->job.cfg;
    t.seed = (int64_t)out->seeds[i];
    t.width = out->width, t.height = out->height;
    t.model = infotext_model_name(a->model, model, sizeof model);
    t.clip_skip = a->job.clip_skip;
    t.rng = a->job.rng == SD_RNG_CPU ? "CPU" : NULL;
    return infotext_build(&t);
}

static int write_png(const generate_args *a, const sd_image_out *out, int i)
{
    char path[4096], err[256];
    image_path(a->output, i, path, sizeof path);
    char *params = infotext_of(a, out, i);
    img_encode_opts o;
    img_encode_opts_default(&o, IMG_PNG);
    o.parameters = params;
    img_buf png = {0};
    size_t stride = (size_t)out->width * 3;
    const uint8_t *rgb = out->rgb + (size_t)i * stride * out->height;
    int rc = params ? img_encode(rgb, out->width, out->height, stride, &o, &png, err, sizeof err) : -1;
    free(params);
    if (rc) {
        fprintf(stderr, "sdxl-worker generate: %s: %s\n", path, params ? err : "out of memory");
        return -1;
    }
    FILE *f = fopen(path, "wb");
    rc = !f || fwrite(png.data, 1, png.len, f) != png.len;
    if (f && fclose(f)) rc = 1;
    img_buf_free(&png);
    if (rc) {
        fprintf(stderr, "sdxl-worker generate: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    printf("%s (seed %" PRIu64 ")\n", path, out->seeds[i]);
    return 0;
}

int sd_generate_main(int argc, char **argv)
{
    generate_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc < 0 ? 0 : rc;
    if (a.random_seed) a.job.seed = random_seed();
    a.job.progress = print_progress;

    char err[1024];
    sd_engine *e;
    sd_status st = sd_engine_load(a.model, &a.engine, &e, err, sizeof err);
    if (st) {
        fprintf(stderr, "sdxl-worker generate: %s\n", err);
        return 1;
    }
    fprintf(stderr, "device: %s\n", sd_engine_device(e));
    sd_image_out out;
    st = sd_txt2img(e, &a.job, &out, err, sizeof err);
    if (st) {
        fprintf(stderr, "sdxl-worker generate: %s (%s)\n", err, sd_status_name(st));
        sd_engine_free(e);
        return 1;
    }
    fprintf(stderr, "%s %s, %d steps: encode %.2f s, denoise %.2f s (%.2f s/step), decode %.2f s, total %.2f s\n",
            sd_sampler_label(out.choice.sampler), sd_schedule_label(out.choice.schedule), a.job.steps,
            out.t_encode, out.t_denoise, out.t_denoise / a.job.steps, out.t_decode, out.t_total);
    for (int i = 0; i < out.batch && !rc; i++) rc = write_png(&a, &out, i) ? 1 : 0;
    sd_image_out_free(&out);
    sd_engine_free(e);
    return rc;
}
