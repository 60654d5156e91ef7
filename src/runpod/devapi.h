/* The local development API (spec runpod-protocol.md §7.3) on
 * libmicrohttpd, one thread per connection:
 *   POST /run               store {input, webhook} as test-<uuid4>   -> {"id","status":"IN_PROGRESS"}
 *   POST /runsync           run now -> {"id","status":"COMPLETED","output"} | {"id","status":"FAILED","error"}
 *   POST|GET /status/{id}   run the stored job now, forget it (same shapes; "Job ID not found")
 *   POST|GET /stream/{id}   generator handlers: {"id","status":"COMPLETED","stream":[{"output":v},...]}
 *   POST /{RUNPOD_ENDPOINT_ID}/realtime   {"id","input"} -> the raw wrapped result
 *   GET /health             {"status":"ok","mode",...,"jobs":{inQueue,inProgress,completed,failed},"runpod_version"}
 * As the SDK: errors come back with HTTP 200 and status FAILED, null fields
 * are omitted, webhooks get the result POSTed after a success. Ours: bodies
 * above RP_DEVAPI_MAX_BODY get 413, invalid bodies 422 with a FastAPI-like
 * "detail" list, unknown routes 404 and wrong methods 405 ({"detail": ...});
 * a job stored by /run is handed to exactly one /status or /stream call; at
 * most `concurrency` handler calls run at once. Also the realtime mode
 * (RUNPOD_REALTIME_PORT): the same app on 0.0.0.0:<port>. */
#ifndef SDXL_RUNPOD_DEVAPI_H
#define SDXL_RUNPOD_DEVAPI_H

#include "runpod/event.h"
#include "runpod/runpod.h"
#include "runpod/settings.h"

#define RP_DEVAPI_MAX_BODY (20u << 20) /* the platform's /runsync payload limit */
#define RP_WEBHOOK_TIMEOUT_MS 10000

/* Serves until `shutdown` is set; 0, or 1 when the address cannot be bound. */
int rp_devapi_run(const rp_config *cfg, const rp_settings *s, const char *host, int port,
                  int concurrency, bool realtime, rp_event *shutdown);

#endif
