/* Binding network weights by name (see weights.h). */
#include "sd/weights.h"

#include <stdio.h>
#include <string.h>

void sd_vbind(sd_binder *b, sd_weight *w, const char *fmt, va_list ap)
{
    memset(w, 0, sizeof *w);
    if (b->failed) return;
    char name[384];
    int n = snprintf(name, sizeof name, "%s", b->prefix);
    vsnprintf(name + n, sizeof name - (size_t)n, fmt, ap);
    const st_tensor *t = st_find(b->f, name);
    if (!t) {
        snprintf(b->err, b->errlen, "%s weight %s is missing", b->what, name);
        b->failed = 1;
    } else if (st_weight(t, w, b->err, b->errlen) != 0) {
        b->failed = 1;
    }
}

void sd_bind(sd_binder *b, sd_weight *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sd_vbind(b, w, fmt, ap);
    va_end(ap);
}

void sd_bind_wb(sd_binder *b, sd_weight *w, sd_weight *bias, const char *fmt, ...)
{
    char name[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    sd_bind(b, w, "%s.weight", name);
    sd_bind(b, bias, "%s.bias", name);
}
