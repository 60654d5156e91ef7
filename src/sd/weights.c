/* Binding network weights by name, and the overlay of replacement weights
 * (see weights.h). */
#include "sd/weights.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sd/strmap.h"

/* ---- the overlay ------------------------------------------------------------- */

struct sd_overlay {
    sd_strmap *by_name; /* full name -> overlay_entry (owned) */
};

typedef struct {
    sd_weight w;
    char name[]; /* w.name points here */
} overlay_entry;

sd_overlay *sd_overlay_new(void)
{
    sd_overlay *o = calloc(1, sizeof *o);
    if (o && !(o->by_name = sd_strmap_new())) {
        free(o);
        return NULL;
    }
    return o;
}

void sd_overlay_free(sd_overlay *o)
{
    if (!o) return;
    const char *name;
    void *entry;
    for (size_t pos = 0; sd_strmap_next(o->by_name, &pos, &name, &entry);) free(entry);
    sd_strmap_free(o->by_name);
    free(o);
}

int sd_overlay_put(sd_overlay *o, const char *name, const sd_weight *w)
{
    overlay_entry *e = sd_strmap_get(o->by_name, name);
    if (!e) {
        size_t len = strlen(name) + 1;
        if (!(e = malloc(sizeof *e + len))) return -1;
        memcpy(e->name, name, len);
        if (sd_strmap_put(o->by_name, name, e)) {
            free(e);
            return -1;
        }
    }
    e->w = *w;
    e->w.name = e->name;
    return 0;
}

void sd_overlay_remove(sd_overlay *o, const char *name)
{
    free(sd_strmap_remove(o->by_name, name));
}

const sd_weight *sd_overlay_get(const sd_overlay *o, const char *name)
{
    const overlay_entry *e = o ? sd_strmap_get(o->by_name, name) : NULL;
    return e ? &e->w : NULL;
}

size_t sd_overlay_count(const sd_overlay *o) { return o ? sd_strmap_count(o->by_name) : 0; }

/* Which overlay belongs to which opened file: a short table, since a
 * process holds one or two checkpoints. */
#define MAX_ATTACHED 64
typedef struct {
    const st_file *f;
    const sd_overlay *o;
} attachment;
static attachment attached[MAX_ATTACHED];
static pthread_mutex_t attached_lock = PTHREAD_MUTEX_INITIALIZER;

int sd_overlay_attach(const st_file *f, const sd_overlay *o)
{
    pthread_mutex_lock(&attached_lock);
    int slot = -1;
    for (int i = 0; i < MAX_ATTACHED; i++) {
        if (attached[i].f == f) { slot = i; break; }
        if (!attached[i].f && slot < 0) slot = i;
    }
    if (slot >= 0) attached[slot] = o ? (attachment){f, o} : (attachment){NULL, NULL};
    pthread_mutex_unlock(&attached_lock);
    return slot >= 0 || !o ? 0 : -1;
}

const sd_overlay *sd_overlay_of(const st_file *f)
{
    const sd_overlay *o = NULL;
    pthread_mutex_lock(&attached_lock);
    for (int i = 0; i < MAX_ATTACHED && !o; i++)
        if (attached[i].f == f) o = attached[i].o;
    pthread_mutex_unlock(&attached_lock);
    return o;
}

/* ---- binding ------------------------------------------------------------------- */

void sd_vbind(sd_binder *b, sd_weight *w, const char *fmt, va_list ap)
{
    memset(w, 0, sizeof *w);
    if (b->failed) return;
    char name[384];
    int n = snprintf(name, sizeof name, "%s", b->prefix);
    vsnprintf(name + n, sizeof name - (size_t)n, fmt, ap);
    const sd_weight *replaced = sd_overlay_get(sd_overlay_of(b->f), name);
    if (replaced) {
        *w = *replaced;
        return;
    }
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
