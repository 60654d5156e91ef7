/* Integration-test harness for the runtime: a fake queue (fake_queue.h) and
 * the runtime in a child process (rp_child.h) pointed at it, with the child's
 * log captured in a temp file. Meant for cmocka setup/teardown so that a
 * failed assertion never leaves a child running. */
#ifndef SDXL_RP_HARNESS_H
#define SDXL_RP_HARNESS_H

#include <stdbool.h>
#include <sys/types.h>

#include "fake_queue.h"
#include "runpod/runpod.h"

#define RPH_POD_ID "pod-1"
#define RPH_API_KEY "rpa_SECRET_KEY_123"

typedef struct {
    fake_queue *q;
    pid_t pid;        /* 0 when no child runs */
    char *dir;        /* temp dir */
    char log_path[512];
    const char *const *env; /* extra "NAME=value" for the child */
    int exit_code;
    double t_exit;    /* fq_now() when the child was seen to exit */
} rph;

/* cmocka group-style setup/teardown: *state becomes an rph with a running
 * fake queue and no child yet. */
int rph_setup(void **state);
int rph_teardown(void **state);

/* Starts the worker in production mode against the fake queue. The child
 * gets RUNPOD_POD_ID, RUNPOD_AI_API_KEY, the webhook URLs, RUNPOD_LOG_LEVEL
 * DEBUG and h->env. */
void rph_spawn(rph *h, const rp_config *cfg);
/* Waits for the child's exit; returns its code (-1 after a kill on timeout). */
int rph_wait(rph *h, int timeout_ms);
void rph_signal(rph *h, int sig);
/* The child's log so far (malloc'd). */
char *rph_log(const rph *h);

#endif
