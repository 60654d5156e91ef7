/* The dev API's table of jobs submitted with /run (devapi.h). A job waits
 * (QUEUED) until a /status or /stream call runs it (RUNNING); its answer is
 * then kept (DONE) for later polls, as the platform keeps results, so that
 * a client polling again, or polling while another call runs the job, gets
 * IN_PROGRESS and then the result instead of "Job ID not found".
 *
 * Bounded: a queued job that is never polled, and a kept answer, are
 * dropped `ttl_s` after they were stored; the table holds at most max_jobs
 * entries and max_bytes of input and answer text (a job's input is kept as
 * compact JSON text, so its size is what it costs). A new job that does not
 * fit after the oldest kept answers are dropped is refused (the dev API
 * answers 429). Times are passed in (monotonic seconds), so tests can age
 * entries. Thread-safe. */
#ifndef SDXL_RUNPOD_JOBSTORE_H
#define SDXL_RUNPOD_JOBSTORE_H

#include <stdbool.h>
#include <stddef.h>

typedef enum { RP_JOB_UNKNOWN, RP_JOB_QUEUED, RP_JOB_RUNNING, RP_JOB_DONE } rp_job_state;

typedef struct rp_jobstore rp_jobstore;

/* Called, under no lock, for each queued job dropped unpolled. */
typedef void (*rp_jobstore_dropped_fn)(const char *id, void *ctx);

rp_jobstore *rp_jobstore_new(size_t max_jobs, size_t max_bytes, double ttl_s);
void rp_jobstore_free(rp_jobstore *s);

/* Stores a queued job (copies of the input text and the webhook, which may
 * be NULL). 0; -1 with one line in why when the table is full or out of
 * memory (*full tells which). */
int rp_jobstore_put(rp_jobstore *s, const char *id, const char *input, const char *webhook, double now, bool *full,
                    char *why, size_t n);

/* Looks a job up for a poll. A QUEUED job becomes RUNNING and its input and
 * webhook (malloc'd, webhook maybe NULL) pass to the caller, who must
 * rp_jobstore_finish it. For a DONE job, *status and *answer get copies of
 * its status and kept answer. Returns the state the job was in. */
rp_job_state rp_jobstore_claim(rp_jobstore *s, const char *id, char **input, char **webhook, char **status,
                               char **answer);

/* RUNNING -> DONE with its status ("COMPLETED", ...) and answer text, kept
 * when it fits (older kept answers are dropped to make room). */
void rp_jobstore_finish(rp_jobstore *s, const char *id, const char *status, const char *answer, double now);

/* Cancels a job: a QUEUED one becomes DONE with `cancelled_answer`, a
 * RUNNING one is marked (rp_jobstore_cancel_requested). Returns the state
 * it was in; for DONE, *status gets a copy of its status. */
rp_job_state rp_jobstore_cancel(rp_jobstore *s, const char *id, const char *cancelled_answer, double now,
                                char **status);
bool rp_jobstore_cancel_requested(rp_jobstore *s, const char *id);

/* Drops queued jobs and kept answers older than the TTL. */
void rp_jobstore_expire(rp_jobstore *s, double now, rp_jobstore_dropped_fn dropped, void *ctx);

/* Entries per state, and the bytes held. */
void rp_jobstore_counts(rp_jobstore *s, int *queued, int *running, int *done, size_t *bytes);

#endif
