/* Tracked-jobs registry (see tracker.h). */
#include "runpod/tracker.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "runpod/job.h"

typedef struct entry {
    char *id;
    rp_job *job;
    struct entry *next;
} entry;

struct rp_tracker {
    pthread_mutex_t lock;
    entry *head, *tail;
    int count;
};

rp_tracker *rp_tracker_new(void)
{
    rp_tracker *t = calloc(1, sizeof *t);
    pthread_mutex_init(&t->lock, NULL);
    return t;
}

void rp_tracker_free(rp_tracker *t)
{
    if (!t) return;
    for (entry *e = t->head, *n; e; e = n) {
        n = e->next;
        free(e->id);
        free(e);
    }
    pthread_mutex_destroy(&t->lock);
    free(t);
}

void rp_tracker_add(rp_tracker *t, const char *id, rp_job *job)
{
    entry *e = calloc(1, sizeof *e);
    if (!e || !(e->id = strdup(id))) { /* out of memory: the job runs untracked */
        free(e);
        return;
    }
    e->job = job;
    pthread_mutex_lock(&t->lock);
    if (t->tail) t->tail->next = e;
    else t->head = e;
    t->tail = e;
    t->count++;
    pthread_mutex_unlock(&t->lock);
}

void rp_tracker_remove(rp_tracker *t, const char *id, rp_job *job)
{
    pthread_mutex_lock(&t->lock);
    entry *prev = NULL;
    for (entry *e = t->head; e; prev = e, e = e->next) {
        if (job ? e->job != job : strcmp(e->id, id) != 0) continue;
        if (prev) prev->next = e->next;
        else t->head = e->next;
        if (t->tail == e) t->tail = prev;
        t->count--;
        free(e->id);
        free(e);
        break;
    }
    pthread_mutex_unlock(&t->lock);
}

int rp_tracker_count(rp_tracker *t)
{
    pthread_mutex_lock(&t->lock);
    int n = t->count;
    pthread_mutex_unlock(&t->lock);
    return n;
}

char *rp_tracker_ids(rp_tracker *t, size_t cap)
{
    pthread_mutex_lock(&t->lock);
    size_t len = 0;
    char *out = malloc(cap + 1);
    out[0] = 0;
    for (entry *e = t->head; e; e = e->next) {
        size_t need = strlen(e->id) + (len ? 1 : 0);
        if (len + need > cap) break;
        if (len) out[len++] = ',';
        strcpy(out + len, e->id);
        len += strlen(e->id);
    }
    pthread_mutex_unlock(&t->lock);
    if (!len) { free(out); return NULL; }
    return out;
}

bool rp_tracker_cancel(rp_tracker *t, const char *id)
{
    bool found = false;
    pthread_mutex_lock(&t->lock);
    for (entry *e = t->head; e; e = e->next) {
        if (!e->job || strcmp(e->id, id)) continue;
        rp_job_cancel(e->job);
        found = true;
    }
    pthread_mutex_unlock(&t->lock);
    return found;
}
