/* A one-shot, level-triggered event that threads can wait on with a timeout
 * and that a signal handler may set (async-signal-safe). It is a pipe that
 * is written once and never drained, so its read end stays readable and can
 * also be handed to poll()/curl_multi_poll() to interrupt a long-poll. Also
 * the monotonic clock every timing in the runtime uses. */
#ifndef SDXL_RUNPOD_EVENT_H
#define SDXL_RUNPOD_EVENT_H

#include <stdatomic.h>
#include <stdbool.h>

typedef struct {
    atomic_bool set;
    int fds[2];
} rp_event;

int rp_event_init(rp_event *ev);      /* 0 on success */
void rp_event_destroy(rp_event *ev);
void rp_event_set(rp_event *ev);      /* async-signal-safe, idempotent */
bool rp_event_is_set(rp_event *ev);
/* Sleeps up to ms milliseconds; returns true (early) if the event is set. */
bool rp_event_wait(rp_event *ev, long ms);
/* The fd that becomes readable once the event is set. */
int rp_event_fd(const rp_event *ev);

/* Milliseconds of CLOCK_MONOTONIC. */
long long rp_now_ms(void);

#endif
