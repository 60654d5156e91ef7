/* Meaning: the demo model (tests/data/demo/) draws what its prompt asks,
 * measured on the engine's output pixels by tests/support/scene_read.h
 * against the world of tools/reference/demo_scenes.py (scenes.json):
 *   - colour, background and shape: 10 prompts x 2 seeds at 256x256 with
 *     the demo job's settings; every picture's background and shape colour
 *     must be the asked ones (its shape's pixels mostly of that colour), and
 *     most shapes must read as the asked shape (the reader tells shapes
 *     apart by how much of their bounding box they fill and where their
 *     centroid lies, and the model's squares and circles are not always
 *     crisp). The place words are not checked: the model ignores them
 *     (README, tools/reference/README.md);
 *   - a negative prompt pushes a colour away: a prompt that leaves the
 *     shape's colour free draws red shapes for some of 16 seeds, and with
 *     "red" as the negative prompt it draws none for any of them, the same
 *     shape each time;
 *   - img2img at low strength keeps the layout of the init picture against
 *     a prompt that asks for another one (and at strength 1 the prompt wins,
 *     so the layout was the init picture's doing);
 *   - the LoRA the training script made (circles drawn as squares) fills
 *     out every circle towards a square at scale 1 (its bounding box
 *     fuller) and turns half of them or more into shapes that read as
 *     squares, keeping their colours, and leaves triangles and stars alone;
 *     at scale 0 the picture is the base model's, byte for byte.
 * Every picture is read and printed before a check fails, with the measured
 * values next to their thresholds, so the margins are in the test log. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo_model.h"
#include "scene_read.h"

#define SIDE 256
#define MIN_PURITY 0.6          /* share of the shape's pixels of its colour */
#define MIN_SHAPES_RIGHT 16     /* of the 20 pictures of the first test */
#define MIN_LAYOUT_IOU 0.5      /* img2img at low strength: shape masks of init and output */
#define MAX_LAYOUT_SHIFT 0.05   /* ... and their centroids' distance, a fraction of the side */
#define MAX_MOVED_IOU 0.2       /* img2img at strength 1: the init's shape is gone */
#define NEGATIVE_PROMPT "a circle on a white background" /* the shape's colour left free */
#define NEGATIVE_SEEDS 16
#define MAX_RED_WITH_NEGATIVE 0.005 /* share of red pixels in any picture with "red" as the negative */
#define MIN_LORA_FILL_RISE 0.05 /* every circle picture's fill of its bounding box, scale 1 minus without */
#define MIN_LORA_SQUARES 4      /* of the 8 circle pictures at scale 1 read as squares */

static struct {
    sd_engine *engine;
    scene_world world;
} g;

/* The lowest purity seen, for the summary line. */
static double worst_purity = 1;

static int setup(void **state)
{
    (void)state;
    g.engine = demo_engine_open();
    return g.engine && !scene_world_load(&g.world, DEMO "scenes.json") ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    sd_engine_free(g.engine);
    return 0;
}

static void draw(const char *prompt, const char *negative, uint64_t seed, sd_image_out *out)
{
    sd_txt2img_params p;
    demo_job(&p, prompt, SIDE, seed);
    p.negative_prompt = negative;
    char err[512] = "";
    sd_status st = sd_txt2img(g.engine, &p, out, err, sizeof err);
    if (st) fail_msg("%s: %s: %s", prompt, sd_status_name(st), err);
}

typedef struct {
    const char *prompt, *colour, *shape, *background;
} asked;

typedef struct {
    bool colours; /* background and shape colour as asked, the shape's pixels mostly of its colour */
    bool shape;   /* the shape reads as the asked one */
} verdict;

/* Reads a picture, prints what it shows, and judges it against a; the
 * shape's fill of its bounding box into *fill unless NULL. */
static verdict judge_fill(const asked *a, const uint8_t *rgb, uint64_t seed, double *fill)
{
    const scene_world *w = &g.world;
    int colour = scene_colour(w, a->colour), background = scene_colour(w, a->background), shape = scene_shape(w, a->shape);
    assert_true(colour >= 0 && background >= 0 && shape >= 0);
    scene_reading r;
    scene_read(w, rgb, SIDE, SIDE, &r);
    verdict v = {r.background == background && r.colour == colour && r.purity >= MIN_PURITY, r.shape == shape};
    printf("  %-44s seed %llu: %-6s %-8s on %-6s (purity %.3f, fill %.3f, centroid %.3f, margin %.3f)%s%s\n",
           a->prompt, (unsigned long long)seed, r.colour >= 0 ? w->colour[r.colour] : "-",
           r.shape >= 0 ? w->shape[r.shape] : "-", w->colour[r.background], r.purity, r.fill, r.centroid,
           r.shape_margin, v.colours ? "" : "  WRONG COLOURS", v.shape ? "" : "  wrong shape");
    if (r.colour >= 0 && r.purity < worst_purity) worst_purity = r.purity;
    if (fill) *fill = r.fill;
    scene_reading_free(&r);
    return v;
}

static verdict judge(const asked *a, const uint8_t *rgb, uint64_t seed)
{
    return judge_fill(a, rgb, seed, NULL);
}

/* Tallies of verdicts. */
typedef struct {
    int n, colours, shapes;
} tally;

static void count(tally *t, verdict v)
{
    t->n++;
    t->colours += v.colours;
    t->shapes += v.shape;
}

/* Draws each of n cases with seeds 1 and 2 and tallies the verdicts. */
static void draw_and_judge(const asked *cases, size_t n, tally *t)
{
    for (size_t i = 0; i < n; i++)
        for (uint64_t seed = 1; seed <= 2; seed++) {
            sd_image_out out;
            draw(cases[i].prompt, NULL, seed, &out);
            count(t, judge(&cases[i], out.rgb, seed));
            sd_image_out_free(&out);
        }
}

static void test_draws_colour_and_shape(void **state)
{
    (void)state;
    static const asked cases[] = {
        {"a red circle on a blue background", "red", "circle", "blue"},
        {"a yellow star on a black background", "yellow", "star", "black"},
        {"a green triangle on a white background", "green", "triangle", "white"},
        {"a blue square on a yellow background", "blue", "square", "yellow"},
        {"a white circle on a purple background", "white", "circle", "purple"},
        {"an orange square on a green background", "orange", "square", "green"},
        {"a purple triangle on an orange background", "purple", "triangle", "orange"},
        {"a black star on a red background", "black", "star", "red"},
        {"a red star on a white background", "red", "star", "white"},
        {"a yellow circle on a green background", "yellow", "circle", "green"},
    };
    tally t = {0};
    draw_and_judge(cases, sizeof cases / sizeof cases[0], &t);
    printf("  colours right in %d of %d (all needed; lowest purity %.3f, >= %.2f), shapes right in %d of %d "
           "(>= %d needed)\n", t.colours, t.n, worst_purity, MIN_PURITY, t.shapes, t.n, MIN_SHAPES_RIGHT);
    assert_int_equal(t.colours, t.n);
    assert_true(t.shapes >= MIN_SHAPES_RIGHT);
}

/* ---- a negative prompt ------------------------------------------------------------ */

static void test_negative_prompt_pushes_red_away(void **state)
{
    (void)state;
    const scene_world *w = &g.world;
    int red = scene_colour(w, "red"), circle = scene_shape(w, "circle"), red_alone = 0;
    double worst_share = 0;
    for (uint64_t seed = 1; seed <= NEGATIVE_SEEDS; seed++) {
        sd_image_out plain, pushed;
        draw(NEGATIVE_PROMPT, NULL, seed, &plain);
        draw(NEGATIVE_PROMPT, "red", seed, &pushed);
        scene_reading a, b;
        scene_read(w, plain.rgb, SIDE, SIDE, &a);
        scene_read(w, pushed.rgb, SIDE, SIDE, &b);
        double share = scene_colour_share(w, pushed.rgb, SIDE, SIDE, red);
        printf("  \"%s\" seed %2llu: a %s %s alone, a %s %s with negative \"red\" (red share %.4f)\n", NEGATIVE_PROMPT,
               (unsigned long long)seed, a.colour >= 0 ? w->colour[a.colour] : "-", a.shape >= 0 ? w->shape[a.shape] : "-",
               b.colour >= 0 ? w->colour[b.colour] : "-", b.shape >= 0 ? w->shape[b.shape] : "-", share);
        red_alone += a.colour == red;
        if (share > worst_share) worst_share = share;
        assert_int_not_equal(b.colour, red);
        assert_int_equal(b.shape, circle); /* still the shape asked for */
        scene_reading_free(&a);
        scene_reading_free(&b);
        sd_image_out_free(&plain);
        sd_image_out_free(&pushed);
    }
    printf("  red shapes: %d of %d seeds alone, none with the negative prompt; largest red share with it %.4f "
           "(<= %.3f)\n", red_alone, NEGATIVE_SEEDS, worst_share, MAX_RED_WITH_NEGATIVE);
    assert_true(red_alone > 0); /* the prompt alone does draw red, so the negative prompt did the pushing */
    assert_true(worst_share <= MAX_RED_WITH_NEGATIVE);
}

/* ---- img2img -------------------------------------------------------------------- */

/* The init picture's job with another prompt at strength s. */
static void redraw(const img_rgb *init, const char *prompt, double s, sd_image_out *out)
{
    sd_img2img_params p;
    sd_img2img_params_default(&p);
    demo_job(&p.gen, prompt, SIDE, 7);
    p.init_rgb = init->rgb;
    p.init_width = init->width;
    p.init_height = init->height;
    p.strength = s;
    char err[512] = "";
    sd_status st = sd_img2img(g.engine, &p, out, err, sizeof err);
    if (st) fail_msg("img2img: %s: %s", sd_status_name(st), err);
}

static void test_img2img_low_strength_keeps_the_layout(void **state)
{
    (void)state;
    img_rgb init = {0};
    assert_int_equal(demo_picture("img2img_init.png", &init), 0); /* a yellow star, top left, on blue */
    assert_int_equal(init.width, SIDE);
    static const asked other = {"a red circle on a green background", "red", "circle", "green"};
    sd_image_out low, full;
    redraw(&init, other.prompt, 0.3, &low);
    redraw(&init, other.prompt, 1.0, &full);
    scene_reading r0, r1, r2;
    scene_read(&g.world, init.rgb, SIDE, SIDE, &r0);
    scene_read(&g.world, low.rgb, SIDE, SIDE, &r1);
    scene_read(&g.world, full.rgb, SIDE, SIDE, &r2);
    double kept = scene_mask_iou(&r0, &r1, SIDE, SIDE), moved = scene_mask_iou(&r0, &r2, SIDE, SIDE);
    double shift = hypot(r1.cx - r0.cx, r1.cy - r0.cy);
    printf("  strength 0.3: shape mask IoU with the init %.3f (>= %.2f), centroid moved %.3f of the side (<= %.2f), "
           "a %s %s; strength 1: IoU %.3f (<= %.2f)\n", kept, MIN_LAYOUT_IOU, shift, MAX_LAYOUT_SHIFT,
           r1.colour >= 0 ? g.world.colour[r1.colour] : "-", r1.shape >= 0 ? g.world.shape[r1.shape] : "-", moved,
           MAX_MOVED_IOU);
    assert_true(kept >= MIN_LAYOUT_IOU);
    assert_true(shift <= MAX_LAYOUT_SHIFT);
    assert_true(moved <= MAX_MOVED_IOU);
    verdict v = judge(&other, full.rgb, 7); /* at strength 1 the prompt's picture */
    assert_true(v.colours && v.shape);
    scene_reading_free(&r0);
    scene_reading_free(&r1);
    scene_reading_free(&r2);
    sd_image_out_free(&low);
    sd_image_out_free(&full);
    img_rgb_free(&init);
}

/* ---- the LoRA ------------------------------------------------------------------------ */

static void use_lora(float scale)
{
    sd_lora_spec spec = {DEMO "loras/circles_to_squares.safetensors", "circles to squares", scale, scale};
    char err[512] = "";
    sd_lora_status st = sd_engine_set_loras(g.engine, &spec, 1, NULL, err, sizeof err);
    if (st) fail_msg("set_loras: %s", err);
}

/* Prompts the LoRA must change (circles) and must leave alone. */
static const asked lora_circles[] = {
    {"a red circle on a blue background", "red", "circle", "blue"},
    {"a white circle on a purple background", "white", "circle", "purple"},
    {"a yellow circle on a green background", "yellow", "circle", "green"},
    {"a black circle on an orange background", "black", "circle", "orange"},
};
static const asked lora_others[] = {
    {"a green triangle on a white background", "green", "triangle", "white"},
    {"a yellow star on a black background", "yellow", "star", "black"},
};

static void test_lora_turns_circles_into_squares(void **state)
{
    (void)state;
    char err[256];
    tally base = {0}, squared = {0}, others = {0};
    double least_rise = INFINITY;
    for (size_t i = 0; i < sizeof lora_circles / sizeof lora_circles[0]; i++)
        for (uint64_t seed = 1; seed <= 2; seed++) {
            const asked *c = &lora_circles[i];
            asked as_square = *c;
            as_square.shape = "square";
            sd_image_out plain, zero, one;
            assert_int_equal(sd_engine_set_loras(g.engine, NULL, 0, NULL, err, sizeof err), 0);
            draw(c->prompt, NULL, seed, &plain);
            use_lora(0.0f);
            draw(c->prompt, NULL, seed, &zero);
            assert_memory_equal(zero.rgb, plain.rgb, (size_t)SIDE * SIDE * 3); /* scale 0: nothing changes */
            use_lora(1.0f);
            draw(c->prompt, NULL, seed, &one);
            double before, after;
            printf("  without the LoRA (and at scale 0, byte for byte):\n");
            count(&base, judge_fill(c, plain.rgb, seed, &before));
            printf("  at scale 1, a square wanted:\n");
            count(&squared, judge_fill(&as_square, one.rgb, seed, &after));
            least_rise = fmin(least_rise, after - before);
            sd_image_out_free(&plain);
            sd_image_out_free(&zero);
            sd_image_out_free(&one);
        }
    printf("  at scale 1, the shape asked for wanted:\n");
    draw_and_judge(lora_others, sizeof lora_others / sizeof lora_others[0], &others);
    assert_int_equal(sd_engine_set_loras(g.engine, NULL, 0, NULL, err, sizeof err), 0);
    printf("  circles: %d of %d read as circles without the LoRA, %d of %d as squares with it (>= %d needed), "
           "fill risen by %.3f at least (>= %.2f), colours kept in %d; triangles and stars kept in %d of %d\n",
           base.shapes, base.n, squared.shapes, squared.n, MIN_LORA_SQUARES, least_rise, MIN_LORA_FILL_RISE,
           squared.colours, others.shapes, others.n);
    assert_int_equal(squared.colours, squared.n);
    assert_true(least_rise >= MIN_LORA_FILL_RISE);
    assert_true(squared.shapes >= MIN_LORA_SQUARES);
    assert_true(base.n - base.shapes < squared.shapes); /* the squares are the LoRA's doing */
    assert_int_equal(others.colours, others.n);
    assert_int_equal(others.shapes, others.n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_draws_colour_and_shape),
        cmocka_unit_test(test_negative_prompt_pushes_red_away),
        cmocka_unit_test(test_img2img_low_strength_keeps_the_layout),
        cmocka_unit_test(test_lora_turns_circles_into_squares),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
