/* A fake Civitai and a fake storage host on loopback (two ports), behaving as
 * spec original-worker-and-civitai.md §2 says the real ones do, for the model
 * store's tests:
 *   civitai  GET /api/download/models/{id}[?type&format&size&fp&fileId&token]
 *              401 {"error":"Unauthorized","message":...} when the version
 *                  requires a login and no valid "Bearer <key>" (or ?token=)
 *                  came; a browser-like User-Agent gets a redirect to /login
 *              403 {"error":"Early Access","deadline":...,"message":...}
 *              404 {"error":"File not found"} unknown version, or a filter
 *                  that contradicts the file's metadata
 *              410 archived; scripted 429 (Retry-After) and 5xx answers
 *              307 to a signed storage URL with a fresh token otherwise
 *            GET /api/v1/model-versions/{id}: the version JSON with files[]
 *              (id, name, type, sizeKB, metadata, hashes.SHA256, primary)
 *   storage  GET /files/{token}/{fileId}: the bytes, with Range (206,
 *              Content-Range, 416 past the end); 403 when the token is unknown
 *              or used up; 400 for ANY request that carries an Authorization
 *              header (as R2/S3 refuse presigned URL + Authorization)
 *            GET /public/{fileId}: the same bytes without a token
 * Every request is recorded (path, Range, whether Authorization came,
 * whether the test's API key string appears anywhere in it). */
#ifndef SDXL_FAKE_CIVITAI_H
#define SDXL_FAKE_CIVITAI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FC_MAX_SCRIPTED 8

typedef struct {
    uint64_t version_id;
    uint64_t file_id;
    const char *file_name;  /* Civitai's name: files[].name and Content-Disposition */
    const unsigned char *data;
    size_t len;             /* bytes served (copied by fc_add_version) */
    bool require_auth;
    const char *type, *format, *size, *fp; /* file type and metadata (NULL: "Model", or absent) */
    const char *published_sha256;          /* NULL: the real one; "" publish none */
    const char *early_access_deadline;     /* 403 Early Access with this deadline */
    bool archived;                         /* 410 */
} fc_version;

/* Behaviour switches; set fields through fc_script() before the requests. */
typedef struct {
    int download_fail[FC_MAX_SCRIPTED]; /* statuses the download endpoint answers first, in order */
    int n_download_fail;
    int retry_after_s;         /* sent with a scripted 429; -1: none */
    bool login_page_200;       /* download endpoint: 200 text/html login page instead of 307 */
    double cut_first_at;       /* >0: the first storage transfer drops after this fraction */
    int token_uses;            /* requests one signed URL serves; 0: unlimited */
    bool ignore_range;         /* storage answers 200 with everything to a Range request */
    bool chunked;              /* storage sends no Content-Length */
    bool html_as_octet_stream; /* storage sends an HTML page labelled application/octet-stream */
    int throttle_ms_per_64k;   /* storage sleeps this long per 64 KiB block */
} fc_script_t;


typedef struct {
    char server[8];   /* "civitai" or "storage" */
    char path[512];
    char range[64];   /* Range header, "" when none */
    char user_agent[128];
    bool had_auth;    /* an Authorization header was present */
    bool key_seen;    /* the API key string appears in the URL or a header */
    bool bearer_ok;   /* civitai: the Authorization header held the right key */
    int status;       /* status answered */
    size_t bytes_sent; /* storage: body bytes handed to the connection */
} fc_request;

typedef struct fake_civitai fake_civitai;

/* Starts both servers. `api_key` is the valid key (may be NULL). */
fake_civitai *fc_start(const char *api_key);
void fc_stop(fake_civitai *fc);
void fc_add_version(fake_civitai *fc, const fc_version *v);
fc_script_t *fc_script(fake_civitai *fc);
/* While held, storage transfers are accepted but send no body bytes. */
void fc_hold_storage(fake_civitai *fc, bool hold);
/* "http://127.0.0.1:PORT" of each server. */
const char *fc_civitai_origin(const fake_civitai *fc);
const char *fc_storage_origin(const fake_civitai *fc);

/* Copies up to max recorded requests; returns how many were recorded. */
size_t fc_requests(fake_civitai *fc, fc_request *out, size_t max);
/* Requests to `server` whose path starts with `prefix`. */
int fc_count(fake_civitai *fc, const char *server, const char *prefix);
/* Body bytes the storage host sent in all. */
size_t fc_storage_bytes(fake_civitai *fc);
/* True when no storage request carried an Authorization header or the key. */
bool fc_storage_never_saw_key(fake_civitai *fc);

/* A valid safetensors file of about `approx` bytes (one F32 tensor,
 * pseudo-random data from seed). malloc'd. */
unsigned char *fc_make_safetensors(size_t approx, unsigned seed, size_t *len);
/* Lower-case hex SHA-256 of a buffer. */
void fc_sha256_hex(const void *data, size_t len, char hex[65]);

#endif
