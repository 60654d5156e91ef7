/* Binding a network's weights by name. The CLIP, UNet and VAE builders look
 * every tensor up through an sd_binder: it prefixes the name, finds the
 * tensor in the checkpoint, checks it is a usable float weight, and records
 * the first failure with the tensor's full name, so a binding pass can run
 * straight through and be checked once at its end. Owner: model loading. */
#ifndef SDXL_SD_WEIGHTS_H
#define SDXL_SD_WEIGHTS_H

#include <stdarg.h>
#include <stddef.h>

#include "sd/dtype.h"
#include "sd/safetensors.h"

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
