/* A fake RunPod queue on loopback for the runtime's integration tests
 * (spec runpod-protocol.md §12 test plan), on libmicrohttpd. Routes:
 *   /v2/<ep>/job-take/<w>, /job-take-batch/<w>, /job-stop/<w>,
 *   /job-done/<w>/<job>, /job-stream/<w>/<job>, /ping/<w>.
 * Every request is recorded (method, raw URL with query, headers, body,
 * arrival time). Answers are scripted per route (FIFO; a default answer when
 * the script is empty) and can be delayed, held until the queue stops, or be
 * a dropped connection. */
#ifndef SDXL_FAKE_QUEUE_H
#define SDXL_FAKE_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <cjson/cJSON.h>

typedef enum { FQ_TAKE, FQ_TAKE_BATCH, FQ_STOP, FQ_DONE, FQ_STREAM, FQ_PING, FQ_OTHER, FQ_NROUTES } fq_route;

#define FQ_HANG (-1) /* delay_ms: hold the request until fq_stop */
#define FQ_RESET 0   /* status: close the connection without an answer */

typedef struct {
    int status;               /* HTTP status, or FQ_RESET */
    const char *content_type; /* NULL: "application/json" when body is set */
    const char *body;         /* NULL: empty */
    int delay_ms;             /* wait before answering; FQ_HANG */
} fq_response;

typedef struct {
    fq_route route;
    char method[16];
    char *url;        /* raw request target: path?query */
    char *job_id;     /* done/stream: the last path segment (decoded) */
    cJSON *headers;   /* {lower-case name: value} */
    char *body;       /* NUL-terminated */
    size_t body_len;
    double t;         /* seconds since fq_start, at arrival */
} fq_request;

typedef struct fake_queue fake_queue;

fake_queue *fq_start(void);
/* Releases held requests, stops the server, frees everything. */
void fq_stop(fake_queue *q);
int fq_port(const fake_queue *q);
/* The environment of a worker pointed at this queue, as "NAME=value" lines
 * in env[FQ_ENV_LINES] (for tu_spawn): RUNPOD_WEBHOOK_{GET_JOB,POST_OUTPUT,
 * POST_STREAM,PING} (templates with "?gpu=test"), RUNPOD_POD_ID and
 * RUNPOD_AI_API_KEY. */
#define FQ_ENV_LINES 6
void fq_env(const fake_queue *q, const char *pod_id, const char *api_key, char env[FQ_ENV_LINES][256]);

void fq_push(fake_queue *q, fq_route route, fq_response r);
void fq_set_default(fake_queue *q, fq_route route, fq_response r);
/* A 200 application/json answer with this body. */
fq_response fq_json(const char *body);

int fq_count(fake_queue *q, fq_route route);
/* The i-th request on route (stable until fq_stop), NULL when absent. */
const fq_request *fq_get(fake_queue *q, fq_route route, int i);
/* Waits until route has >= n requests; false on timeout. */
bool fq_wait(fake_queue *q, fq_route route, int n, int timeout_ms);
/* Requests on route for this job id. */
int fq_count_job(fake_queue *q, fq_route route, const char *job_id);
double fq_now(const fake_queue *q);

const char *fq_header(const fq_request *r, const char *name);
/* Copies the decoded value of a query parameter into out; false when absent. */
bool fq_query_param(const fq_request *r, const char *name, char *out, size_t cap);
/* The body parsed as JSON (caller deletes), NULL if not JSON. */
cJSON *fq_body_json(const fq_request *r);

#endif
