/* POSTing job results, stream chunks and progress updates to the platform
 * (spec runpod-protocol.md §5.1): the SDK's headers (raw Authorization,
 * Content-Type application/x-www-form-urlencoded, "charset: utf-8",
 * X-Request-ID <job id>), 3 attempts with waits of 2 s and 3 s, retried on a
 * status >= 500 and -- our improvement over the SDK -- on connection errors
 * and timeouts. 4xx is not retried. */
#ifndef SDXL_RUNPOD_POST_H
#define SDXL_RUNPOD_POST_H

#include <stdbool.h>
#include <cjson/cJSON.h>

#include "runpod/http.h"

#define RP_POST_ATTEMPTS 3
#define RP_POST_TIMEOUT_MS (600L * 1000) /* aiohttp session total (§5.1) */
#define RP_RESULT_WARN_BYTES (20L * 1000 * 1000)

/* Posts body to url for job_id; true once a 2xx arrived. Failures are
 * logged as the SDK logs them ("Failed to return job results. | ..."). */
bool rp_post_json(rp_http *http, const char *url, const char *job_id,
                  const char *api_key, const cJSON *body);

#endif
