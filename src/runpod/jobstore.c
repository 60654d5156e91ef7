/* The dev API's job table (see jobstore.h): a list in submission order,
 * at most max_jobs long, so every operation is a short scan. */
#include "runpod/jobstore.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    char *id;
    rp_job_state state;
    char *input, *webhook;  /* QUEUED */
    char *status, *answer;  /* DONE */
    bool cancel_requested;  /* RUNNING */
    double since;           /* when stored (QUEUED) or finished (DONE) */
    size_t bytes;
    struct entry *next;
} entry;

struct rp_jobstore {
    pthread_mutex_t lock;
    entry *head;
    size_t n, bytes, max_jobs, max_bytes;
    double ttl_s;
};

rp_jobstore *rp_jobstore_new(size_t max_jobs, size_t max_bytes, double ttl_s)
{
    rp_jobstore *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    pthread_mutex_init(&s->lock, NULL);
    s->max_jobs = max_jobs, s->max_bytes = max_bytes, s->ttl_s = ttl_s;
    return s;
}

static void free_entry(entry *e)
{
    free(e->id);
    free(e->input);
    free(e->webhook);
    free(e->status);
    free(e->answer);
    free(e);
}

void rp_jobstore_free(rp_jobstore *s)
{
    if (!s) return;
    for (entry *e = s->head, *next; e; e = next) {
        next = e->next;
        free_entry(e);
    }
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static size_t len_of(const char *s) { return s ? strlen(s) : 0; }

static char *dup_or_null(const char *s, bool *failed)
{
    char *d = s ? strdup(s) : NULL;
    if (s && !d) *failed = true;
    return d;
}

static entry *find(rp_jobstore *s, const char *id)
{
    for (entry *e = s->head; e; e = e->next)
        if (!strcmp(e->id, id)) return e;
    return NULL;
}

static void unlink_entry(rp_jobstore *s, entry *gone)
{
    for (entry **pp = &s->head; *pp; pp = &(*pp)->next)
        if (*pp == gone) {
            *pp = gone->next;
            s->n--;
            s->bytes -= gone->bytes;
            return;
        }
}

/* Drops the oldest kept answers until `bytes` more and one more entry fit. */
static void make_room(rp_jobstore *s, size_t bytes)
{
    while (s->n + 1 > s->max_jobs || s->bytes + bytes > s->max_bytes) {
        entry *oldest = NULL;
        for (entry *e = s->head; e; e = e->next)
            if (e->state == RP_JOB_DONE && (!oldest || e->since < oldest->since)) oldest = e;
        if (!oldest) return;
        unlink_entry(s, oldest);
        free_entry(oldest);
    }
}

int rp_jobstore_put(rp_jobstore *s, const char *id, const char *input, const char *webhook, double now, bool *full,
                    char *why, size_t n)
{
    size_t bytes = len_of(input) + len_of(webhook);
    *full = false;
    bool failed = false;
    entry *e = calloc(1, sizeof *e);
    if (e) {
        e->id = dup_or_null(id, &failed);
        e->input = dup_or_null(input, &failed);
        e->webhook = dup_or_null(webhook, &failed);
    }
    if (!e || failed) {
        if (e) free_entry(e);
        snprintf(why, n, "out of memory while storing the job");
        return -1;
    }
    e->state = RP_JOB_QUEUED, e->since = now, e->bytes = bytes;
    pthread_mutex_lock(&s->lock);
    make_room(s, bytes);
    *full = s->n + 1 > s->max_jobs || s->bytes + bytes > s->max_bytes;
    if (*full) {
        if (s->n + 1 > s->max_jobs)
            snprintf(why, n, "the dev API already holds %zu jobs, its limit; poll or cancel some first", s->n);
        else
            snprintf(why, n, "the dev API holds %zu bytes of stored jobs, and this one's %zu would pass its limit of "
                     "%zu; poll or cancel some first", s->bytes, bytes, s->max_bytes);
    } else {
        entry **tail = &s->head;
        while (*tail) tail = &(*tail)->next;
        *tail = e;
        s->n++;
        s->bytes += bytes;
    }
    pthread_mutex_unlock(&s->lock);
    if (*full) free_entry(e);
    return *full ? -1 : 0;
}

rp_job_state rp_jobstore_claim(rp_jobstore *s, const char *id, char **input, char **webhook, char **status,
                               char **answer)
{
    *input = *webhook = *status = *answer = NULL;
    pthread_mutex_lock(&s->lock);
    entry *e = find(s, id);
    rp_job_state st = e ? e->state : RP_JOB_UNKNOWN;
    if (st == RP_JOB_QUEUED) { /* the text moves to the caller */
        *input = e->input, *webhook = e->webhook;
        e->input = e->webhook = NULL;
        s->bytes -= e->bytes;
        e->bytes = 0;
        e->state = RP_JOB_RUNNING;
    } else if (st == RP_JOB_DONE) {
        bool failed = false;
        *status = dup_or_null(e->status, &failed);
        *answer = dup_or_null(e->answer, &failed);
        if (failed) {
            free(*status), free(*answer);
            *status = *answer = NULL;
            st = RP_JOB_UNKNOWN;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return st;
}

/* Makes e DONE with copies of status and answer when they fit; else drops it. */
static void keep_answer(rp_jobstore *s, entry *e, const char *status, const char *answer, double now)
{
    unlink_entry(s, e);
    size_t bytes = len_of(status) + len_of(answer);
    make_room(s, bytes);
    bool failed = false;
    free(e->input), free(e->webhook);
    e->input = e->webhook = NULL;
    e->status = dup_or_null(status, &failed);
    e->answer = dup_or_null(answer, &failed);
    if (failed || s->n + 1 > s->max_jobs || s->bytes + bytes > s->max_bytes) {
        free_entry(e);
        return;
    }
    e->state = RP_JOB_DONE, e->since = now, e->bytes = bytes;
    e->next = s->head; /* kept answers are found by scanning; order does not matter */
    s->head = e;
    s->n++;
    s->bytes += bytes;
}

void rp_jobstore_finish(rp_jobstore *s, const char *id, const char *status, const char *answer, double now)
{
    pthread_mutex_lock(&s->lock);
    entry *e = find(s, id);
    if (e && e->state == RP_JOB_RUNNING) keep_answer(s, e, status, answer, now);
    pthread_mutex_unlock(&s->lock);
}

rp_job_state rp_jobstore_cancel(rp_jobstore *s, const char *id, const char *cancelled_answer, double now,
                                char **status)
{
    *status = NULL;
    pthread_mutex_lock(&s->lock);
    entry *e = find(s, id);
    rp_job_state st = e ? e->state : RP_JOB_UNKNOWN;
    if (st == RP_JOB_QUEUED) keep_answer(s, e, "CANCELLED", cancelled_answer, now);
    else if (st == RP_JOB_RUNNING) e->cancel_requested = true;
    else if (st == RP_JOB_DONE && !(*status = strdup(e->status))) st = RP_JOB_UNKNOWN;
    pthread_mutex_unlock(&s->lock);
    return st;
}

bool rp_jobstore_cancel_requested(rp_jobstore *s, const char *id)
{
    pthread_mutex_lock(&s->lock);
    entry *e = find(s, id);
    bool yes = e && e->state == RP_JOB_RUNNING && e->cancel_requested;
    pthread_mutex_unlock(&s->lock);
    return yes;
}

void rp_jobstore_expire(rp_jobstore *s, double now, rp_jobstore_dropped_fn dropped, void *ctx)
{
    entry *gone = NULL;
    pthread_mutex_lock(&s->lock);
    for (entry **pp = &s->head; *pp;) {
        entry *e = *pp;
        if (e->state == RP_JOB_RUNNING || now - e->since < s->ttl_s) {
            pp = &e->next;
            continue;
        }
        *pp = e->next;
        s->n--;
        s->bytes -= e->bytes;
        e->next = gone;
        gone = e;
    }
    pthread_mutex_unlock(&s->lock);
    for (entry *e = gone, *next; e; e = next) {
        next = e->next;
        if (e->state == RP_JOB_QUEUED && dropped) dropped(e->id, ctx);
        free_entry(e);
    }
}

void rp_jobstore_counts(rp_jobstore *s, int *queued, int *running, int *done, size_t *bytes)
{
    *queued = *running = *done = 0;
    pthread_mutex_lock(&s->lock);
    for (entry *e = s->head; e; e = e->next) {
        *queued += e->state == RP_JOB_QUEUED;
        *running += e->state == RP_JOB_RUNNING;
        *done += e->state == RP_JOB_DONE;
    }
    *bytes = s->bytes;
    pthread_mutex_unlock(&s->lock);
}
