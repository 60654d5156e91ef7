/* Public API of the RunPod serverless runtime: the C counterpart of
 * runpod.serverless.start() (spec runpod-protocol.md). The embedding program
 * supplies a handler callback; the runtime picks the mode from argv and the
 * environment (production queue, local test, local dev API), fetches jobs,
 * calls the handler, posts results in the SDK's exact body shapes, sends
 * heartbeats, relays progress updates in order and delivers job-stop
 * cancellations. */
#ifndef SDXL_RUNPOD_H
#define SDXL_RUNPOD_H

#include <stdbool.h>
#include <cjson/cJSON.h>

#define RP_SDK_VERSION "1.12.0" /* runpod_version we report (spec §6) */

typedef struct rp_job rp_job;

/* The job as received: "id", "input" and any extra keys, untouched. */
const char  *rp_job_id(const rp_job *job);
const cJSON *rp_job_input(const rp_job *job);
const cJSON *rp_job_json(const rp_job *job);

/* True once the job was listed on the job-stop channel (or the worker is told
 * to cancel it another way). Handlers poll it and return early; no result is
 * posted for a cancelled job (spec §5.5). */
bool rp_job_cancelled(const rp_job *job);

/* Sends {"status":"IN_PROGRESS","output":progress} for this job. Updates are
 * queued per job, sent in order, and flushed before the final result. The
 * runtime takes ownership of `progress`. */
void rp_job_progress(rp_job *job, cJSON *progress);

/* For generator-style handlers (rp_config.generator): the C counterpart of
 * one `yield value`. Posts the stream chunk {"output": value} (spec §5.3) and,
 * with return_aggregate_stream, keeps it for the final output. Takes
 * ownership of `value`. A value that is an object with a truthy "error" ends
 * the stream: the job fails with that error. Returns false once the stream
 * has ended (error chunk, or the job was cancelled); the handler then stops
 * yielding and returns. */
bool rp_job_yield(rp_job *job, cJSON *value);

/* The C stand-in for a Python exception: the handler calls this and returns
 * (its return value is then ignored and freed). The runtime posts the six-key
 * exception report of spec §5.2 with error_type "<class 'TYPE'>",
 * error_message from fmt and a one-frame traceback naming the raising call
 * site. In a generator handler the job fails with
 * "handler: <message> \ntraceback: <traceback>" as the SDK does. */
void rp_job_raise_at(rp_job *job, const char *file, int line, const char *func,
                     const char *type, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
#define rp_job_raise(job, type, ...) \
    rp_job_raise_at((job), __FILE__, __LINE__, __func__, (type), __VA_ARGS__)

/* Handler: returns the result JSON (ownership passes to the runtime) or NULL.
 * After rp_job_raise() the return value is ignored (an exception); NULL
 * otherwise means the handler returned nothing ({"output": null}). A returned
 * object with "error" and/or "refresh_worker" keys is unpacked as the SDK
 * unpacks a dict (a non-string "error" is posted as its JSON text). A
 * generator handler yields with rp_job_yield() and returns NULL. Handlers may
 * run on several threads at once when concurrency > 1. */
typedef cJSON *(*rp_handler_fn)(rp_job *job, void *ctx);

typedef struct {
    rp_handler_fn handler;
    void *ctx;
    bool generator;               /* handler streams with rp_job_yield */
    bool return_aggregate_stream; /* final output lists the yielded values */
    bool refresh_worker;          /* stopPod after every job, then exit */
    int concurrency;              /* handler threads; 0 means 1 */
} rp_config;

/* Parses the SDK's flags from argv (unknown ones are left alone), picks the
 * mode and runs it until done or until SIGTERM/SIGINT. Returns the process
 * exit code: 0; 1 as the SDK exits in local test on failure (and on a fatal
 * start-up error such as a port that cannot be bound); 2 on a malformed flag
 * (as argparse). */
int rp_serverless_start(const rp_config *config, int argc, char **argv);

#endif
