/* rp_job accessors, rp_job_raise/yield/progress, and the execution of one
 * job through the handler (see job.h). Behaviour matched: runpod-python
 * 1.12.0 rp_job.run_job, rp_job.handle_job and rp_job.run_job_generator. */
#include "runpod/job.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runpod/log.h"

rp_job *rp_job_new(cJSON *json, const rp_job_sink *sink)
{
    rp_job *job = calloc(1, sizeof *job);
    if (!job) return NULL;
    job->json = json;
    job->id = cJSON_GetObjectItemCaseSensitive(json, "id")->valuestring;
    job->input = cJSON_GetObjectItemCaseSensitive(json, "input");
    atomic_init(&job->cancelled, false);
    if (sink) job->sink = *sink;
    return job;
}

void rp_job_free(rp_job *job)
{
    if (!job) return;
    cJSON_Delete(job->json);
    free(job->exc.type);
    free(job->exc.message);
    free(job->exc.traceback);
    cJSON_Delete(job->outputs);
    free(job->stream_error);
    free(job);
}

const char *rp_job_id(const rp_job *job) { return job->id; }
const cJSON *rp_job_input(const rp_job *job) { return job->input; }
const cJSON *rp_job_json(const rp_job *job) { return job->json; }
bool rp_job_cancelled(const rp_job *job) { return atomic_load(&job->cancelled); }
void rp_job_cancel(rp_job *job) { atomic_store(&job->cancelled, true); }

void rp_log_json(rp_log_level level, const char *job_id, const char *prefix, const cJSON *v)
{
    rp_log_level threshold = rp_log_get_level();
    if (threshold == RP_LOG_NOTSET || threshold > level) return;
    char *text = v ? cJSON_PrintUnformatted(v) : strdup("null");
    rp_log(level, job_id, "%s%s", prefix, text ? text : "?");
    free(text);
}

void rp_job_progress(rp_job *job, cJSON *progress)
{
    if (!progress) progress = cJSON_CreateNull();
    if (job->sink.progress) job->sink.progress(job, progress, job->sink.ctx);
    else cJSON_Delete(progress);
}

void rp_job_raise_at(rp_job *job, const char *file, int line, const char *func,
                     const char *type, const char *fmt, ...)
{
    if (job->raised) return; /* the first exception wins */
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&job->exc.message, fmt, ap) < 0) job->exc.message = NULL;
    va_end(ap);
    job->exc.type = strdup(type && *type ? type : "Exception");
    if (asprintf(&job->exc.traceback,
                 "Traceback (most recent call last):\n  File \"%s\", line %d, in %s\n%s: %s\n",
                 file, line, func, job->exc.type, job->exc.message ? job->exc.message : "") < 0)
        job->exc.traceback = NULL;
    job->raised = true;
}

/* §5.3: an error chunk ends the stream; other values are posted as
 * {"output": v} and, when aggregating, kept for the final output. */
bool rp_job_yield(rp_job *job, cJSON *value)
{
    if (!value) value = cJSON_CreateNull();
    if (!job->generator) {
        rp_log(RP_LOG_WARN, job->id, "rp_job_yield called by a handler not configured as a generator; value dropped.");
        cJSON_Delete(value);
        return false;
    }
    if (job->stream_error || job->raised || rp_job_cancelled(job)) {
        cJSON_Delete(value);
        return false;
    }
    rp_log_json(RP_LOG_DEBUG, job->id, "Stream output: ", value);
    cJSON *err = cJSON_IsObject(value) ? cJSON_GetObjectItemCaseSensitive(value, "error") : NULL;
    if (rp_json_truthy(err)) {
        job->stream_error = rp_json_str(err);
        cJSON_Delete(value);
        return false;
    }
    cJSON *chunk = cJSON_CreateObject();
    cJSON_AddItemToObject(chunk, "output", value);
    if (job->outputs) cJSON_AddItemToArray(job->outputs, cJSON_Duplicate(value, 1));
    if (job->sink.chunk) job->sink.chunk(job, chunk, job->sink.ctx);
    cJSON_Delete(chunk);
    return true;
}

static void log_exception(rp_job *job)
{
    rp_log(RP_LOG_ERROR, job->id, "Captured Handler Exception");
    char *report = rp_exception_report(&job->exc);
    cJSON *parsed = cJSON_Parse(report);
    char *pretty = parsed ? cJSON_Print(parsed) : NULL;
    rp_log(RP_LOG_ERROR, NULL, "%s", pretty ? pretty : report);
    free(pretty);
    cJSON_Delete(parsed);
    free(report);
}

static cJSON *execute_plain(rp_job *job, const rp_config *cfg)
{
    cJSON *ret = cfg->handler(job, cfg->ctx);
    if (job->raised) {
        log_exception(job);
        return rp_wrap_result(ret, &job->exc);
    }
    rp_log_json(RP_LOG_DEBUG, job->id, "Handler output: ", ret);
    return rp_wrap_result(ret, NULL);
}

static cJSON *execute_generator(rp_job *job, const rp_config *cfg, bool aggregate)
{
    job->generator = true;
    job->outputs = aggregate ? cJSON_CreateArray() : NULL;
    rp_log(RP_LOG_DEBUG, job->id, "Handler is a generator, streaming results.");
    cJSON_Delete(cfg->handler(job, cfg->ctx));
    cJSON *outputs = job->outputs;
    job->outputs = NULL;
    cJSON *result;
    if (job->raised) {
        char *text = rp_stream_exception_text(&job->exc);
        rp_log(RP_LOG_ERROR, job->id, "%s: %s", job->exc.type, job->exc.message ? job->exc.message : "");
        result = rp_wrap_stream_final(outputs, text);
        free(text);
    } else {
        result = rp_wrap_stream_final(outputs, job->stream_error);
    }
    rp_log(RP_LOG_INFO, job->id, "Finished running generator.");
    return result;
}

cJSON *rp_job_execute(rp_job *job, const rp_config *cfg, bool aggregate)
{
    rp_log(RP_LOG_INFO, job->id, "Started.");
    cJSON *result = cfg->generator ? execute_generator(job, cfg, aggregate) : execute_plain(job, cfg);
    rp_log_json(RP_LOG_DEBUG, job->id, "run_job return: ", result);
    return result;
}
