/* What the model store knows about Civitai (spec original-worker-and-civitai.md
 * §2): which hosts are Civitai (civitai.com, civitai.red, and CIVITAI_HOST),
 * rewriting configured URLs onto the chosen host, whether the API key may go
 * to a URL, the version id in /api/download/models/{id}, the model-versions
 * API answer (files[]: id, name, type, sizeKB, metadata, hashes.SHA256,
 * primary) and which of its files a download URL selects, and clear
 * messages for the download endpoint's 401/403/404/410/429 answers. */
#ifndef SDXL_MODELS_CIVITAI_H
#define SDXL_MODELS_CIVITAI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* CIVITAI_HOST as given ("civitai.red", "https://civitai.red",
 * "http://127.0.0.1:8080") -> "scheme://host[:port]" (https when no scheme).
 * 0, or -1 with a reason. */
int civitai_origin_normalize(const char *value, char *out, size_t outlen, char *err, size_t errlen);

/* True when the URL's host is civitai.com / civitai.red (or www.) or its
 * origin is `configured_origin` (may be "" or NULL). */
bool civitai_is_civitai_url(const char *url, const char *configured_origin);

/* A configured URL moved onto configured_origin when it names civitai.com or
 * civitai.red (path and query kept); otherwise (or with no origin) a copy.
 * malloc'd; NULL only when out of memory. */
char *civitai_rewrite_url(const char *url, const char *configured_origin);

/* Whether the API key may be sent to this URL: a Civitai URL (as above)
 * over https, or over http to a loopback address (local tests). */
bool civitai_key_allowed(const char *url, const char *configured_origin);

/* The version id of ".../api/download/models/{id}[?...]", or 0. */
uint64_t civitai_version_id(const char *url);

/* ".../api/v1/model-versions/{id}" on the URL's origin; malloc'd or NULL. */
char *civitai_version_api_url(const char *download_url);

typedef struct {
    uint64_t id;
    char *name;        /* the download file name Civitai gives it */
    char type[32];     /* "Model", "Pruned Model", ... */
    char format[32];   /* metadata.format, "" when absent */
    char size[16];     /* metadata.size */
    char fp[16];       /* metadata.fp */
    double size_kb;    /* sizeKB (KiB, a float), 0 when absent */
    char sha256[65];   /* hashes.SHA256 in lower case, "" when absent or malformed */
    bool primary;
} civitai_file;

typedef struct {
    uint64_t id;
    civitai_file *files;
    size_t n_files;
} civitai_version;

/* Parses a /api/v1/model-versions/{id} answer. 0, or -1 with a reason. */
int civitai_parse_version(const char *json, size_t len, civitai_version *out, char *err, size_t errlen);
void civitai_version_free(civitai_version *v);

/* The file a download URL selects (spec §2.1): fileId= if given; else the
 * files whose type (type=) and metadata (format=, size=, fp=; a file without
 * that key passes) match the query, preferring the primary one; with no
 * filters, the primary file. When server_filename (Content-Disposition) is
 * given and names one of the files, that file wins. NULL when none fits. */
const civitai_file *civitai_pick_file(const civitai_version *v, const char *url, const char *server_filename);

/* One clear line for a refusal of the download endpoint: 401 names
 * CIVITAI_API_KEY (unset, or set but not accepted), 403 gives the Early
 * Access deadline when the body has one, 404 names the URL's filters, 410
 * says archived, 429 says rate limited. `body` may be NULL. */
void civitai_explain(long status, const char *body, const char *label, const char *url,
                     bool key_set, bool key_sent, char *out, size_t outlen);

#endif
