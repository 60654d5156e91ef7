/* Resumable, authenticated HTTP download of one model file into a `.part`
 * file (spec original-worker-and-civitai.md §2.6 steps 2-4 and 7):
 *   - redirects are followed by hand, and the Bearer key is sent only to the
 *     origin (scheme, host, port) of the configured URL, never to the signed
 *     storage host it redirects to;
 *   - bytes are appended to the .part and an interrupted transfer resumes with
 *     "Range: bytes=N-" (206 continues, 200 means the server ignored Range and
 *     the file restarts cleanly, 416 is checked against the total);
 *   - a storage URL that stops working (400/401/403/404/410: expired or used
 *     signature) is replaced by a fresh redirect from the configured URL, and
 *     the bytes already there are kept;
 *   - 429 (honouring Retry-After), 5xx and network errors are retried with
 *     capped exponential backoff and jitter; other 4xx are final;
 *   - HTML/JSON pages and ZIPs are refused from the first bytes, sizes are
 *     checked against Content-Length/Content-Range and the expected size, and
 *     the disk is checked for room (ENOSPC names the directory and the need);
 *   - SHA-256 is computed while the bytes arrive; progress (percent, MB/s,
 *     ETA) is logged every few seconds.
 * The server's file name (Content-Disposition) is reported, never used. */
#ifndef SDXL_MODELS_DOWNLOAD_H
#define SDXL_MODELS_DOWNLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifndef SDXL_WORKER_VERSION
#define SDXL_WORKER_VERSION "0.1.0"
#endif
/* Not browser-like, so Civitai answers errors as JSON (spec §2.1). */
#define DL_USER_AGENT "sdxl-worker/" SDXL_WORKER_VERSION

typedef struct {
    int connect_timeout_s;    /* 30 */
    long low_speed_bytes;     /* a transfer slower than this ... (1024 B/s) */
    int low_speed_time_s;     /* ... for this long is a stall (60 s); no total timeout */
    int backoff_base_ms;      /* first retry wait (1000) */
    int backoff_cap_ms;       /* longest computed wait (30000) */
    int retry_after_cap_ms;   /* longest Retry-After honoured (300000) */
    int max_tries;            /* failed tries in a row without new bytes (6) */
    int max_url_refreshes;    /* fresh storage URLs in a row without new bytes (3) */
    int progress_interval_ms; /* between progress lines (5000) */
} dl_opts;

void dl_opts_default(dl_opts *o);

typedef enum {
    DL_OK = 0,
    DL_ERR_HTTP,    /* a final HTTP refusal: see http_status, http_from_origin, error_body */
    DL_ERR_NETWORK, /* network errors, 429 or 5xx beyond the retry budget */
    DL_ERR_CONTENT, /* not a model file (HTML, JSON, ZIP, ...) or a size mismatch */
    DL_ERR_DISK,    /* full disk or another local I/O error */
} dl_status;

typedef struct {
    const char *url;        /* the configured URL */
    const char *auth_key;   /* Bearer key for the configured URL's origin only; NULL: none */
    const char *part_path;  /* where the bytes go; resumed when it exists */
    const char *label;      /* names the download in log lines and errors */
    uint64_t expected_size; /* 0 when unknown */
} dl_request;

typedef struct {
    dl_status status;
    long http_status;          /* DL_ERR_HTTP (and last answer otherwise) */
    bool http_from_origin;     /* the answer came from the configured URL's origin */
    bool got_html;             /* DL_ERR_CONTENT because a page came instead of the file */
    char *error_body;          /* DL_ERR_HTTP: up to 64 KiB of the body, NUL-terminated */
    uint64_t size;             /* bytes in the .part at the end */
    unsigned char sha256[32];  /* DL_OK: SHA-256 of the whole .part */
    uint64_t resumed_from;     /* bytes already in the .part when we started */
    uint64_t bytes_fetched;    /* bytes received over the network */
    char server_filename[256]; /* from Content-Disposition: informational only */
    double seconds;
} dl_result;

/* Downloads rq->url into rq->part_path (fsync'd on success). The .part is
 * left in place on failure so a later call resumes it. err gets one line. */
dl_status dl_download(const dl_request *rq, const dl_opts *o, dl_result *res, char *err, size_t errlen);
void dl_result_free(dl_result *res);

/* GET of a small document (at most 4 MiB), e.g. a Civitai API answer, with
 * the Bearer key if given (`label` names it in log lines), and the same retries on 429/5xx/network errors.
 * Redirects are not followed. On DL_OK *status holds the final HTTP status
 * (any status) and *body a malloc'd NUL-terminated body. */
dl_status dl_get(const char *url, const char *auth_key, const char *label, const dl_opts *o, long *status,
                 char **body, size_t *len, char *err, size_t errlen);

/* "scheme://host[:port]" in lower case, default ports left out. 0 or -1. */
int dl_url_origin(const char *url, char *out, size_t outlen);
/* The URL with the value of any "token" query parameter masked, for logs. */
void dl_url_for_log(const char *url, char *out, size_t outlen);
/* Capped exponential backoff with equal jitter for the n-th failure (n >= 1):
 * a uniform wait in [d/2, d], d = min(cap, base * 2^(n-1)). */
long dl_backoff_ms(const dl_opts *o, int n, unsigned *seed);

#endif
