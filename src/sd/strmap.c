/* String -> pointer hash map (see strmap.h). Deletion shifts the following
 * entries of the probe run back (Knuth 6.4 Algorithm R), so there are no
 * tombstones and lookups stay short after many removals. */
#include "sd/strmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *key; /* NULL: empty slot */
    void *value;
} slot;

struct sd_strmap {
    slot *slots;
    size_t mask, count;
};

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

sd_strmap *sd_strmap_new(void)
{
    sd_strmap *m = calloc(1, sizeof *m);
    if (m && !(m->slots = calloc(16, sizeof *m->slots))) {
        free(m);
        return NULL;
    }
    if (m) m->mask = 15;
    return m;
}

void sd_strmap_free(sd_strmap *m)
{
    if (!m) return;
    for (size_t i = 0; i <= m->mask; i++) free(m->slots[i].key);
    free(m->slots);
    free(m);
}

static size_t find_slot(const sd_strmap *m, const char *key)
{
    size_t s = hash(key) & m->mask;
    while (m->slots[s].key && strcmp(m->slots[s].key, key) != 0) s = (s + 1) & m->mask;
    return s;
}

/* Doubles the table when it would pass half full. */
static int grow(sd_strmap *m)
{
    if (2 * (m->count + 1) <= m->mask + 1) return 0;
    size_t cap = 2 * (m->mask + 1);
    slot *old = m->slots, *fresh = calloc(cap, sizeof *fresh);
    if (!fresh) return -1;
    size_t old_cap = m->mask + 1;
    m->slots = fresh;
    m->mask = cap - 1;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].key) m->slots[find_slot(m, old[i].key)] = old[i];
    free(old);
    return 0;
}

int sd_strmap_put(sd_strmap *m, const char *key, void *value)
{
    size_t s = find_slot(m, key);
    if (m->slots[s].key) {
        m->slots[s].value = value;
        return 0;
    }
    char *copy = strdup(key);
    if (!copy || grow(m)) {
        free(copy);
        return -1;
    }
    s = find_slot(m, key);
    m->slots[s] = (slot){copy, value};
    m->count++;
    return 0;
}

void *sd_strmap_get(const sd_strmap *m, const char *key)
{
    if (!m) return NULL;
    size_t s = find_slot(m, key);
    return m->slots[s].key ? m->slots[s].value : NULL;
}

void *sd_strmap_remove(sd_strmap *m, const char *key)
{
    size_t i = find_slot(m, key);
    if (!m->slots[i].key) return NULL;
    void *value = m->slots[i].value;
    free(m->slots[i].key);
    m->slots[i].key = NULL;
    m->count--;
    /* Algorithm R: move back every later entry of the run whose home slot
     * does not lie cyclically in (i, j]. */
    for (size_t j = (i + 1) & m->mask; m->slots[j].key; j = (j + 1) & m->mask) {
        size_t home = hash(m->slots[j].key) & m->mask;
        int stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (stays) continue;
        m->slots[i] = m->slots[j];
        m->slots[j].key = NULL;
        i = j;
    }
    return value;
}

size_t sd_strmap_count(const sd_strmap *m) { return m ? m->count : 0; }

int sd_strmap_next(const sd_strmap *m, size_t *pos, const char **key, void **value)
{
    for (; m && *pos <= m->mask; (*pos)++)
        if (m->slots[*pos].key) {
            *key = m->slots[*pos].key;
            *value = m->slots[*pos].value;
            (*pos)++;
            return 1;
        }
    return 0;
}
