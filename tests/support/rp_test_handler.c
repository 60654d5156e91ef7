/* The scripted test handler (see rp_test_handler.h). */
#include "rp_test_handler.h"

#include <time.h>

/* Sleeps until a monotonic deadline (not a count of steps, which stretches
 * under load), polling the cancelled flag every 10 ms. */
static void sleep_cancellable(rp_job *job, int ms)
{
    struct timespec now, step = {0, 10 * 1000000L};
    clock_gettime(CLOCK_MONOTONIC, &now);
    double deadline = (double)now.tv_sec + now.tv_nsec / 1e9 + ms / 1000.0;
    while (!rp_job_cancelled(job)) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((double)now.tv_sec + now.tv_nsec / 1e9 >= deadline) break;
        nanosleep(&step, NULL);
    }
}

cJSON *rpt_script_handler(rp_job *job, void *ctx)
{
    const cJSON *in = rp_job_input(job);
    const cJSON *progress = cJSON_GetObjectItemCaseSensitive(in, "progress");
    for (int i = 1; cJSON_IsNumber(progress) && i <= progress->valueint; i++) {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddNumberToObject(p, "step", i);
        rp_job_progress(job, p);
    }
    const cJSON *sleep_ms = cJSON_GetObjectItemCaseSensitive(in, "sleep_ms");
    if (cJSON_IsNumber(sleep_ms)) sleep_cancellable(job, sleep_ms->valueint);
    if (rp_job_cancelled(job)) {
        cJSON *r = cJSON_CreateObject();
        cJSON_AddTrueToObject(r, "cancelled");
        return r;
    }
    const cJSON *v;
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(in, "yield"))
        if (!rp_job_yield(job, cJSON_Duplicate(v, 1))) break;
    const cJSON *raise = cJSON_GetObjectItemCaseSensitive(in, "raise");
    if (cJSON_IsString(raise)) {
        rp_job_raise(job, "ValueError", "%s", raise->valuestring);
        return NULL;
    }
    const cJSON *ret = cJSON_GetObjectItemCaseSensitive(in, "return");
    if (ret) return cJSON_IsNull(ret) ? NULL : cJSON_Duplicate(ret, 1);
    if (cJSON_GetObjectItemCaseSensitive(in, "yield")) return NULL;
    cJSON *r = cJSON_CreateObject();
    cJSON_AddItemToObject(r, "echo", cJSON_Duplicate(in, 1));
    return r;
}
