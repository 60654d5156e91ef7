/* The local development API (spec runpod-protocol.md §7.3) on
 * libmicrohttpd:
 *   POST /run               store {input, webhook} as test-<uuid4>   -> {"id","status":"IN_PROGRESS"}
 *   POST /runsync           run now -> {"id","status":"COMPLETED","output"} | {"id","status":"FAILED","error"}
 *   POST|GET /status/{id}   run the stored job now (same shapes; "Job ID not found"); while another
 *                           call runs it: IN_PROGRESS; afterwards: its answer, kept RP_DEVAPI_JOB_TTL_S
 *   POST|GET /stream/{id}   generator handlers: {"id","status":"COMPLETED","stream":[{"output":v},...]}
 *                           (later polls: {"id","status",...,"stream":[]})
 *   POST /cancel/{id}       a stored job is dropped, a running one told to stop -> {"id","status":"CANCELLED"}
 *   GET /health             {"status":"ok","mode",...,"jobs":{inQueue,inProgress,completed,failed},"runpod_version"}
 *   POST /{RUNPOD_ENDPOINT_ID}/realtime   {"id","input"} -> the raw wrapped result
 * and every route but realtime also under RunPod's public paths,
 * {base}/{endpoint id}/{route} as the SDK client builds them
 * (runpod.endpoint_url_base = "http://127.0.0.1:8000/v2": /v2/<id>/run, ...;
 * the endpoint id is any one segment, or RUNPOD_ENDPOINT_ID when set).
 * As the SDK: errors come back with HTTP 200 and status FAILED, null fields
 * are omitted, webhooks get the result POSTed after a success. Ours: bodies
 * above RP_DEVAPI_MAX_BODY get 413, invalid bodies 422 with a FastAPI-like
 * "detail" list (a webhook must be an absolute http(s) URL), unknown routes
 * 404 and wrong methods 405 ({"detail": ...}), a full job table 429; a job
 * stored by /run is run by exactly one /status or /stream call; at most
 * `concurrency` handler calls run at once; webhooks only reach public
 * addresses unless RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS (image/fetch.h), and
 * the log names only their host. Bounded: at most RP_DEVAPI_MAX_CONNECTIONS
 * connections, closed after RP_DEVAPI_IDLE_TIMEOUT_S idle; idle ones cost no
 * thread. Also the realtime mode (RUNPOD_REALTIME_PORT): the same app on
 * 0.0.0.0:<port>. */
#ifndef SDXL_RUNPOD_DEVAPI_H
#define SDXL_RUNPOD_DEVAPI_H

#include "runpod/event.h"
#include "runpod/runpod.h"
#include "runpod/settings.h"

#define RP_DEVAPI_MAX_BODY (20u << 20) /* the platform's /runsync payload limit */
#define RP_WEBHOOK_TIMEOUT_MS 10000
#define RP_DEVAPI_MAX_CONNECTIONS 512  /* open at once; more are refused at accept */
#define RP_DEVAPI_IDLE_TIMEOUT_S 30    /* a connection idle this long is closed (not while its job runs) */
#define RP_DEVAPI_MAX_JOBS 256         /* /run jobs and kept answers at once; more: 429 */
#define RP_DEVAPI_MAX_STORED_BYTES (64u << 20) /* their input and answer text; more: 429 */
#define RP_DEVAPI_JOB_TTL_S 600        /* an unpolled /run job, or a kept answer, is dropped after this */
#define RP_DEVAPI_SWEEP_MS 5000        /* how often expired jobs are looked for */

/* Serves until `shutdown` is set; 0, or 1 when the address cannot be bound. */
int rp_devapi_run(const rp_config *cfg, const rp_settings *s, const char *host, int port,
                  int concurrency, bool realtime, rp_event *shutdown);

#endif
