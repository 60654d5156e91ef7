/* A string -> pointer hash map (open addressing, linear probing, FNV-1a,
 * backward-shift deletion). Keys are copied; values are the caller's.
 * Owner: the weight overlay and the LoRA stack's name tables. */
#ifndef SDXL_SD_STRMAP_H
#define SDXL_SD_STRMAP_H

#include <stddef.h>

typedef struct sd_strmap sd_strmap;

sd_strmap *sd_strmap_new(void);          /* NULL when out of memory */
void sd_strmap_free(sd_strmap *m);       /* NULL is fine; values are not freed */
/* Sets key -> value (replacing an existing value). 0, or -1 when out of memory. */
int sd_strmap_put(sd_strmap *m, const char *key, void *value);
void *sd_strmap_get(const sd_strmap *m, const char *key); /* NULL if absent (m may be NULL) */
/* Removes key; returns its value, or NULL if absent. */
void *sd_strmap_remove(sd_strmap *m, const char *key);
size_t sd_strmap_count(const sd_strmap *m);
/* Iteration: *pos starts at 0; returns 0 past the end. Putting or removing
 * invalidates the iteration. */
int sd_strmap_next(const sd_strmap *m, size_t *pos, const char **key, void **value);

#endif
