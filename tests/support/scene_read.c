/* Reading demo-world pictures back into words (see scene_read.h). */
#include "scene_read.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "testutil.h"

#define BORDER 4

static int copy_name(char *dst, size_t cap, const char *src)
{
    if (!src || strlen(src) >= cap) return -1;
    strcpy(dst, src);
    return 0;
}

static int load_palette(scene_world *w, const cJSON *palette)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, palette) {
        if (w->n_colours == SCENE_MAX_COLOURS || cJSON_GetArraySize(c) != 3 ||
            copy_name(w->colour[w->n_colours], sizeof w->colour[0], c->string))
            return -1;
        for (int k = 0; k < 3; k++) w->rgb[w->n_colours][k] = (uint8_t)cJSON_GetArrayItem(c, k)->valueint;
        w->n_colours++;
    }
    return w->n_colours > 1 ? 0 : -1;
}

static int load_shapes(scene_world *w, const cJSON *measures)
{
    const cJSON *s;
    cJSON_ArrayForEach(s, measures) {
        const cJSON *fill = cJSON_GetObjectItem(s, "fill"), *centroid = cJSON_GetObjectItem(s, "centroid");
        if (w->n_shapes == SCENE_MAX_SHAPES || !cJSON_IsNumber(fill) || !cJSON_IsNumber(centroid) ||
            copy_name(w->shape[w->n_shapes], sizeof w->shape[0], s->string))
            return -1;
        w->fill[w->n_shapes] = fill->valuedouble;
        w->centroid[w->n_shapes++] = centroid->valuedouble;
    }
    return w->n_shapes > 1 ? 0 : -1;
}

int scene_world_load(scene_world *w, const char *path)
{
    memset(w, 0, sizeof *w);
    cJSON *doc = tu_read_json(path);
    if (!doc) return -1;
    int rc = load_palette(w, cJSON_GetObjectItem(doc, "palette")) ||
             load_shapes(w, cJSON_GetObjectItem(doc, "shape_measures"));
    if (rc) fprintf(stderr, "%s: palette or shape_measures missing or malformed\n", path);
    cJSON_Delete(doc);
    return rc ? -1 : 0;
}

static int find_name(const char (*names)[16], int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], name)) return i;
    return -1;
}

int scene_colour(const scene_world *w, const char *name) { return find_name(w->colour, w->n_colours, name); }
int scene_shape(const scene_world *w, const char *name) { return find_name(w->shape, w->n_shapes, name); }

static int nearest_colour(const scene_world *w, const uint8_t *px)
{
    int best = 0, best_d = -1;
    for (int c = 0; c < w->n_colours; c++) {
        int d = 0;
        for (int k = 0; k < 3; k++) d += (px[k] - w->rgb[c][k]) * (px[k] - w->rgb[c][k]);
        if (best_d < 0 || d < best_d) best = c, best_d = d;
    }
    return best;
}

static int most_common(const int *count, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (count[i] > count[best]) best = i;
    return best;
}

/* The largest 4-connected region where cls != background, into r->mask;
 * returns its pixel count. */
static int largest_region(const int *cls, int width, int height, int background, uint8_t *mask)
{
    size_t n = (size_t)width * height;
    int *label = calloc(n, sizeof *label), *stack = malloc(n * sizeof *stack);
    int best_label = 0, best_size = 0, next = 0;
    for (size_t start = 0; start < n; start++) {
        if (cls[start] == background || label[start]) continue;
        int size = 0, top = 0;
        label[start] = ++next;
        stack[top++] = (int)start;
        while (top) {
            int i = stack[--top], x = i % width, y = i / width;
            size++;
            int nb[4] = {x > 0 ? i - 1 : -1, x < width - 1 ? i + 1 : -1, y > 0 ? i - width : -1,
                         y < height - 1 ? i + width : -1};
            for (int k = 0; k < 4; k++)
                if (nb[k] >= 0 && cls[nb[k]] != background && !label[nb[k]]) label[nb[k]] = next, stack[top++] = nb[k];
        }
        if (size > best_size) best_size = size, best_label = next;
    }
    for (size_t i = 0; i < n; i++) mask[i] = best_size && label[i] == best_label;
    free(label);
    free(stack);
    return best_size;
}

static void measure(const scene_world *w, const int *cls, int width, int height, scene_reading *r, int size)
{
    int count[SCENE_MAX_COLOURS] = {0};
    double sx = 0, sy = 0;
    r->x0 = width, r->y0 = height, r->x1 = r->y1 = -1;
    for (int y = 0; y < height; y++)
        for (int x = 0; x < width; x++) {
            if (!r->mask[(size_t)y * width + x]) continue;
            count[cls[(size_t)y * width + x]]++;
            sx += x, sy += y;
            if (x < r->x0) r->x0 = x;
            if (x > r->x1) r->x1 = x;
            if (y < r->y0) r->y0 = y;
            if (y > r->y1) r->y1 = y;
        }
    r->colour = most_common(count, w->n_colours);
    r->purity = (double)count[r->colour] / size;
    r->area = (double)size / ((double)width * height);
    r->cx = (sx / size + 0.5) / width;
    r->cy = (sy / size + 0.5) / height;
    r->fill = (double)size / ((double)(r->x1 - r->x0 + 1) * (r->y1 - r->y0 + 1));
    r->centroid = r->y1 > r->y0 ? (sy / size - r->y0) / (r->y1 - r->y0) : 0.5;
    double d1 = INFINITY, d2 = INFINITY;
    for (int s = 0; s < w->n_shapes; s++) {
        double d = hypot(r->fill - w->fill[s], r->centroid - w->centroid[s]);
        if (d < d1) d2 = d1, d1 = d, r->shape = s;
        else if (d < d2) d2 = d;
    }
    r->shape_margin = d2 - d1;
}

void scene_read(const scene_world *w, const uint8_t *rgb, int width, int height, scene_reading *r)
{
    size_t n = (size_t)width * height;
    int *cls = malloc(n * sizeof *cls), border[SCENE_MAX_COLOURS] = {0};
    memset(r, 0, sizeof *r);
    r->mask = calloc(n, 1);
    for (size_t i = 0; i < n; i++) cls[i] = nearest_colour(w, rgb + 3 * i);
    for (int y = 0; y < height; y++)
        for (int x = 0; x < width; x++)
            if (x < BORDER || y < BORDER || x >= width - BORDER || y >= height - BORDER) border[cls[(size_t)y * width + x]]++;
    r->background = most_common(border, w->n_colours);
    int size = largest_region(cls, width, height, r->background, r->mask);
    r->colour = r->shape = -1;
    if (size) measure(w, cls, width, height, r, size);
    free(cls);
}

void scene_reading_free(scene_reading *r)
{
    free(r->mask);
    r->mask = NULL;
}

double scene_colour_share(const scene_world *w, const uint8_t *rgb, int width, int height, int c)
{
    size_t n = (size_t)width * height, hits = 0;
    for (size_t i = 0; i < n; i++) hits += nearest_colour(w, rgb + 3 * i) == c;
    return (double)hits / n;
}

double scene_mask_iou(const scene_reading *a, const scene_reading *b, int width, int height)
{
    size_t n = (size_t)width * height, both = 0, either = 0;
    for (size_t i = 0; i < n; i++) both += a->mask[i] && b->mask[i], either += a->mask[i] || b->mask[i];
    return either ? (double)both / either : 0.0;
}
