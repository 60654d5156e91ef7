/* Local test mode (see local.h). Matched: runpod-python 1.12.0
 * rp_local.run_local; log lines kept word for word. */
#include "runpod/local.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runpod/job.h"
#include "runpod/log.h"
#include "runpod/take.h"
#include "runpod/wrap.h"

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0, got;
    char *buf = malloc(cap);
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    *len = n;
    return buf;
}

/* Where the job text comes from; NULL (logged) when there is none. */
static char *job_text(const rp_args *args, size_t *len)
{
    if (args->test_input) {
        rp_info("test_input set, using test_input as job input.");
        *len = strlen(args->test_input);
        return strdup(args->test_input);
    }
    const char *path = args->input_file ? args->input_file : "test_input.json";
    char *text = read_file(path, len);
    if (!text) rp_warn("%s not found, exiting.", path);
    else rp_info("Using %s as job input.", path);
    return text;
}

static void log_progress(rp_job *job, cJSON *progress, void *ctx)
{
    rp_log_json(RP_LOG_DEBUG, job->id, "Progress update: ", progress);
    cJSON_Delete(progress);
}

static void print_result(const cJSON *result)
{
    char *text = cJSON_PrintUnformatted(result);
    fputs(text ? text : "null", stdout);
    fputc('\n', stdout);
    fflush(stdout);
    free(text);
}

int rp_local_run(const rp_config *cfg, const rp_args *args)
{
    size_t len = 0;
    char *text = job_text(args, &len);
    if (!text) return 1;
    cJSON *json;
    rp_local_status st = rp_parse_local_job(text, len, &json);
    free(text);
    if (st == RP_LOCAL_BAD_JSON) { rp_error("The test job is not a JSON object. Unable to run."); return 1; }
    if (st == RP_LOCAL_NO_INPUT) { rp_error("Job has no input parameter. Unable to run."); return 1; }
    rp_log_json(RP_LOG_DEBUG, NULL, "Retrieved local job: ", json);
    rp_job_sink sink = {.progress = log_progress};
    rp_job *job = rp_job_new(json, &sink);
    cJSON *result = rp_job_execute(job, cfg, true);
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(result, "error");
    int rc = 0;
    if (rp_json_truthy(err)) {
        char *msg = rp_json_str(err);
        rp_error("Job %s failed with error: %s", job->id, msg);
        free(msg);
        rc = 1;
    } else {
        rp_info("Job %s completed successfully.", job->id);
        rp_log_json(RP_LOG_INFO, NULL, "Job result: ", result);
    }
    print_result(result);
    if (!rc) rp_info("Local testing complete, exiting.");
    cJSON_Delete(result);
    rp_job_free(job);
    return rc;
}
