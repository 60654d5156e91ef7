/* Logging as the runpod SDK does it (spec runpod-protocol.md §8): levels
 * NOTSET < TRACE < DEBUG < INFO < WARN < ERROR, plain "LEVEL  | job | msg"
 * lines or JSON lines when RUNPOD_ENDPOINT_ID is set, long messages cut to
 * 2048 + 2048 characters, and registered secrets masked wherever they occur.
 * Every module of the worker logs through this; output goes to stderr so that
 * stdout stays free for local-test results. Thread-safe. */
#ifndef SDXL_RUNPOD_LOG_H
#define SDXL_RUNPOD_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum {
    RP_LOG_NOTSET = 0,
    RP_LOG_TRACE,
    RP_LOG_DEBUG,
    RP_LOG_INFO,
    RP_LOG_WARN,
    RP_LOG_ERROR,
} rp_log_level;

/* Case-insensitive NOTSET/TRACE/DEBUG/INFO/WARN/WARNING/ERROR. 0 on success. */
int rp_log_parse_level(const char *name, rp_log_level *out);
/* "NOTSET" ... "ERROR" (WARN is printed as "WARN", like the SDK). */
const char *rp_log_level_name(rp_log_level level);
/* The --rp_log_level threshold: wins over the environment whether it is set
 * before or after rp_log_init_from_env. NOTSET prints nothing. */
void rp_log_set_level(rp_log_level level);
rp_log_level rp_log_get_level(void);
/* Reads RUNPOD_LOG_LEVEL, else RUNPOD_DEBUG_LEVEL (default DEBUG; an invalid
 * name logs a warning and keeps DEBUG), the JSON switch RUNPOD_ENDPOINT_ID
 * (non-empty), and registers RUNPOD_AI_API_KEY, CIVITAI_API_KEY and
 * BUCKET_SECRET_ACCESS_KEY/ACCESS_KEY_ID as secrets. */
void rp_log_init_from_env(void);
/* JSON lines on/off (normally decided by rp_log_init_from_env). */
void rp_log_set_json(bool on);
/* Back to the defaults (DEBUG, plain, no secrets, no flag level); for tests. */
void rp_log_reset(void);
/* Registers a value that must never be printed; it is masked in every line
 * (and in the job id). Values shorter than 4 bytes are ignored, since they
 * would mask ordinary words. The mask is "****", or first char + "****" +
 * last char for secrets of 12 bytes or more; it never lengthens the text. */
void rp_log_add_secret(const char *value);
/* Masks every registered secret inside buf in place (for error texts that
 * leave the process by another way than the log). */
void rp_log_redact(char *buf);

void rp_log(rp_log_level level, const char *job_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void rp_vlog(rp_log_level level, const char *job_id, const char *fmt, va_list ap);
/* The line rp_log would write for message (secrets masked, long messages
 * cut, plain or JSON as configured, '\n' included), whatever the threshold.
 * Caller frees; *len gets its length. NULL when out of memory. */
char *rp_log_format_line(rp_log_level level, const char *job_id, const char *message, size_t *len);
/* The SDK's log.secret(name, value): INFO "name: <mask>" (mask as above). */
void rp_log_secret(const char *name, const char *value);

#define rp_trace(...) rp_log(RP_LOG_TRACE, NULL, __VA_ARGS__)
#define rp_debug(...) rp_log(RP_LOG_DEBUG, NULL, __VA_ARGS__)
#define rp_info(...)  rp_log(RP_LOG_INFO, NULL, __VA_ARGS__)
#define rp_warn(...)  rp_log(RP_LOG_WARN, NULL, __VA_ARGS__)
#define rp_error(...) rp_log(RP_LOG_ERROR, NULL, __VA_ARGS__)

#endif
