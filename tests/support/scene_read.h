/* Reading a picture of the demo model's world (tools/reference/demo_scenes.py:
 * one flat shape on a flat background) back into words, for the meaning
 * tests: which palette colour the background and the shape are, where the
 * shape is, and which shape it is. The vocabulary and the shapes' reference
 * measures come from tests/data/demo/scenes.json, which
 * the training script writes from demo_scenes.py.
 *
 * How a picture is read:
 *   - every pixel takes the nearest palette colour (RGB distance);
 *   - the background is the most common colour of the border (4 pixels wide);
 *   - the shape is the largest 4-connected region of pixels that are not the
 *     background colour; its colour is the most common one inside it, and
 *     `purity` the share of its pixels of that colour;
 *   - the shape is the nearest reference (scenes.json "shape_measures") in
 *     (fill, centroid height) space: fill = pixels / bounding-box area,
 *     centroid height = (mean row - top) / (bottom - top). `shape_margin` is
 *     the distance to the second nearest minus the distance to the nearest. */
#ifndef SDXL_TEST_SCENE_READ_H
#define SDXL_TEST_SCENE_READ_H

#include <stdint.h>

#define SCENE_MAX_COLOURS 16
#define SCENE_MAX_SHAPES 8

typedef struct {
    int n_colours, n_shapes;
    char colour[SCENE_MAX_COLOURS][16];
    uint8_t rgb[SCENE_MAX_COLOURS][3];
    char shape[SCENE_MAX_SHAPES][16];
    double fill[SCENE_MAX_SHAPES], centroid[SCENE_MAX_SHAPES]; /* reference measures */
} scene_world;

typedef struct {
    int background, colour, shape;   /* indices into the world's lists; -1 when no shape was found */
    double purity;                   /* share of the shape's pixels of its colour */
    double area;                     /* shape pixels / picture pixels */
    double cx, cy;                   /* centroid, fractions of the side */
    double fill, centroid;           /* the shape measures */
    double shape_margin;
    int x0, y0, x1, y1;              /* bounding box, pixels, inclusive */
    uint8_t *mask;                   /* width x height, 1 on the shape (free with scene_reading_free) */
} scene_reading;

/* Loads scenes.json; 0, or -1 after saying why on stderr. */
int scene_world_load(scene_world *w, const char *path);
int scene_colour(const scene_world *w, const char *name); /* -1 if unknown */
int scene_shape(const scene_world *w, const char *name);

/* Reads an RGB8 picture (rows packed). */
void scene_read(const scene_world *w, const uint8_t *rgb, int width, int height, scene_reading *r);
void scene_reading_free(scene_reading *r);

/* Share of all pixels whose nearest palette colour is c. */
double scene_colour_share(const scene_world *w, const uint8_t *rgb, int width, int height, int c);
/* Intersection over union of two readings' shape masks (same size). */
double scene_mask_iou(const scene_reading *a, const scene_reading *b, int width, int height);

#endif
