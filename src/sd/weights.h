/* Binding a network's weights by name. The CLIP, UNet and VAE builders look
 * every tensor up through an sd_binder: it prefixes the name, finds the
 * tensor (in the checkpoint's overlay, else in the checkpoint), checks it is
 * a usable float weight, and records the first failure with the tensor's
 * full name, so a binding pass can run straight through and be checked once
 * at its end. Owner: model loading.
 *
 * The overlay: a table of replacement weights (full tensor name -> a weight
 * view over someone else's buffer) attached to an opened checkpoint. The
 * LoRA stack (sd/lora.h) keeps its merged weights there; the networks see
 * them the next time they are bound (binding is name lookups only), and see
 * the checkpoint's own tensors again once the entries are removed. An
 * overlay weight must have the checkpoint tensor's shape; its dtype may
 * differ (any sd_dtype a backend widens). */
#ifndef SDXL_SD_WEIGHTS_H
#define SDXL_SD_WEIGHTS_H

#include <stdarg.h>
#include <stddef.h>

#include "sd/dtype.h"
#include "sd/safetensors.h"

typedef struct sd_overlay sd_overlay;

sd_overlay *sd_overlay_new(void); /* NULL when out of memory */
void sd_overlay_free(sd_overlay *o); /* NULL is fine; the weights' data are not freed */
/* Sets the weight bound for `name` (the full checkpoint name). The view is
 * copied (its data pointer is not) and its name set to the overlay's copy of
 * `name`. 0, or -1 when out of memory. */
int sd_overlay_put(sd_overlay *o, const char *name, const sd_weight *w);
void sd_overlay_remove(sd_overlay *o, const char *name);
const sd_weight *sd_overlay_get(const sd_overlay *o, const char *name); /* NULL if absent (o may be NULL) */
size_t sd_overlay_count(const sd_overlay *o);

/* Binds over `f` consult `o` first from now on; o == NULL detaches. One
 * overlay per file; up to 64 files at once. 0, or -1 when the table is full. */
int sd_overlay_attach(const st_file *f, const sd_overlay *o);
const sd_overlay *sd_overlay_of(const st_file *f); /* NULL when none */

typedef struct {
    const st_file *f;
    const char *prefix; /* e.g. "model.diffusion_model." */
    const char *what;   /* the network, for messages: "UNet", "VAE", "text encoder" */
    char *err;
    size_t errlen;
    int failed;         /* set by the first failure; later binds are skipped */
} sd_binder;

/* *w = the weight named prefix + fmt...; zeroed when missing or after a failure. */
void sd_bind(sd_binder *b, sd_weight *w, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void sd_vbind(sd_binder *b, sd_weight *w, const char *fmt, va_list ap);
/* The layer's "<name>.weight" and "<name>.bias". */
void sd_bind_wb(sd_binder *b, sd_weight *w, sd_weight *bias, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
