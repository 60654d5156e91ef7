/* Ordered progress-update queue with one lazily started sender thread per
 * job (see progress.h). */
#include "runpod/progress.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct item {
    cJSON *body;
    struct item *next;
} item;

struct rp_progress {
    char *job_id;
    rp_progress_send_fn send;
    void *ctx;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    item *head, *tail;
    bool closing, started;
    pthread_t thread;
};

rp_progress *rp_progress_new(const char *job_id, rp_progress_send_fn send, void *ctx)
{
    rp_progress *p = calloc(1, sizeof *p);
    p->job_id = strdup(job_id);
    p->send = send;
    p->ctx = ctx;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    return p;
}

static void *sender(void *arg)
{
    rp_progress *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->head && !p->closing) pthread_cond_wait(&p->cond, &p->lock);
        item *it = p->head;
        if (!it) break; /* closing and drained */
        p->head = it->next;
        if (!p->head) p->tail = NULL;
        pthread_mutex_unlock(&p->lock);
        p->send(p->job_id, it->body, p->ctx);
        cJSON_Delete(it->body);
        free(it);
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

void rp_progress_push(rp_progress *p, cJSON *progress)
{
    item *it = calloc(1, sizeof *it);
    it->body = cJSON_CreateObject();
    cJSON_AddStringToObject(it->body, "status", "IN_PROGRESS");
    cJSON_AddItemToObject(it->body, "output", progress);
    pthread_mutex_lock(&p->lock);
    if (p->tail) p->tail->next = it;
    else p->head = it;
    p->tail = it;
    if (!p->started && pthread_create(&p->thread, NULL, sender, p) == 0) p->started = true;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

static void drop_queued(rp_progress *p)
{
    while (p->head) {
        item *it = p->head;
        p->head = it->next;
        cJSON_Delete(it->body);
        free(it);
    }
    p->tail = NULL;
}

void rp_progress_finish(rp_progress *p, bool discard)
{
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    if (discard || !p->started) drop_queued(p);
    p->closing = true;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
    if (p->started) pthread_join(p->thread, NULL);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    free(p->job_id);
    free(p);
}
