/* URL building for the platform endpoints (spec runpod-protocol.md §1.4,
 * §4.1, §5.1, §5.5, §6): template substitution of $RUNPOD_POD_ID and $ID,
 * query parameters appended with '&' as the SDK does ('?' when the template
 * has no query yet), the job-take / batch / stop / result / ping URLs.
 * Every function returns a malloc'd string (NULL only where documented). */
#ifndef SDXL_RUNPOD_URL_H
#define SDXL_RUNPOD_URL_H

#include <stdbool.h>

/* Percent-encodes every byte outside A-Z a-z 0-9 - . _ ~ (so ',' -> %2C). */
char *rp_url_encode(const char *s);
/* Replaces every occurrence of `from` in s by `to`. */
char *rp_str_replace(const char *s, const char *from, const char *to);
/* Substitutes $RUNPOD_POD_ID by the (encoded) worker id and, when job_id is
 * NULL, $ID by the worker id too (job-take and ping templates). */
char *rp_url_for_worker(const char *tmpl, const char *worker_id);
/* Appends name=<encoded value> with '&', or '?' if url has no query. */
char *rp_url_add_param(const char *url, const char *name, const char *value);

/* §4.1: base + [/job-take-batch/ + &batch_size=N when N > 1] + &job_in_progress=0|1 */
char *rp_take_url(const char *take_base, int batch_size, bool job_in_progress);
/* §5.5: /job-take/ -> /job-stop/, query kept; NULL if base has no /job-take/. */
char *rp_stop_url(const char *take_base);
/* §5.1: template (worker already substituted) with $ID -> encoded job id,
 * then &isStream=true|false. */
char *rp_result_url(const char *tmpl, const char *job_id, bool is_stream);
/* §6: ping base + &job_id=<ids, comma list, omitted when NULL/empty>
 * + &runpod_version=<version>. */
char *rp_ping_url(const char *ping_base, const char *job_ids, const char *version);

#endif
