/* The resumable model downloader (see download.h; spec
 * original-worker-and-civitai.md §2.2 for the redirect/auth pitfall and
 * §2.6 for the procedure). One libcurl easy handle per download, reset
 * between requests so connections are reused; FOLLOWLOCATION stays off and
 * every hop is a request of its own, which is what keeps the key on its
 * origin. Response headers are parsed as they arrive and the decision to
 * write the body into the .part (or to refuse it) is taken at the end of
 * the headers, before a single body byte is stored. */
#include "models/download.h"
#include "sd/clock.h"

#include "models/sha256.h"
#include "runpod/log.h"

#include <curl/curl.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define CAPTURE_MAX (64u << 10) /* error bodies we keep */
#define GET_MAX (4u << 20)      /* largest API answer dl_get accepts */
#define MAX_HOPS 10             /* redirects in one chain */
#define SNIFF_LEN 9             /* u64 header length + '{' (spec §2.6 step 5) */
#define SAFETENSORS_MAX_HEADER 100000000ull

void dl_opts_default(dl_opts *o)
{
    *o = (dl_opts){
        .connect_timeout_s = 30,
        .low_speed_bytes = 1024,
        .low_speed_time_s = 60,
        .backoff_base_ms = 1000,
        .backoff_cap_ms = 30000,
        .retry_after_cap_ms = 300000,
        .max_tries = 6,
        .max_url_refreshes = 3,
        .progress_interval_ms = 5000,
    };
}

/* ---- small helpers ------------------------------------------------------ */

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

static void fmt_bytes(uint64_t n, char *out, size_t outlen)
{
    if (n < 1000) snprintf(out, outlen, "%" PRIu64 " B", n);
    else if (n < 1000000) snprintf(out, outlen, "%.1f KB", n / 1e3);
    else if (n < 1000000000) snprintf(out, outlen, "%.1f MB", n / 1e6);
    else snprintf(out, outlen, "%.2f GB", n / 1e9);
}

static void fmt_duration(double s, char *out, size_t outlen)
{
    long t = s < 0 ? 0 : s > 359999 ? 359999 : (long)(s + 0.5);
    if (t >= 3600) snprintf(out, outlen, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(out, outlen, "%ld:%02ld", t / 60, t % 60);
}

long dl_backoff_ms(const dl_opts *o, int n, unsigned *seed)
{
    long d = o->backoff_base_ms;
    for (int i = 1; i < n && d < o->backoff_cap_ms; i++) d *= 2;
    if (d > o->backoff_cap_ms) d = o->backoff_cap_ms;
    long half = d / 2;
    return half + (half > 0 ? (long)(rand_r(seed) % (unsigned)(d - half + 1)) : 0);
}

int dl_url_origin(const char *url, char *out, size_t outlen)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;
    int rc = -1;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
        curl_url_get(u, CURLUPART_PORT, &port, 0);
        for (char *p = scheme; *p; p++) *p = (char)tolower((unsigned char)*p);
        for (char *p = host; *p; p++) *p = (char)tolower((unsigned char)*p);
        bool default_port = !port || (!strcmp(scheme, "https") && !strcmp(port, "443")) ||
                            (!strcmp(scheme, "http") && !strcmp(port, "80"));
        int n = default_port ? snprintf(out, outlen, "%s://%s", scheme, host)
                             : snprintf(out, outlen, "%s://%s:%s", scheme, host, port);
        rc = n > 0 && (size_t)n < outlen ? 0 : -1;
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return rc;
}

void dl_url_for_log(const char *url, char *out, size_t outlen)
{
    size_t w = 0;
    const char *userinfo_end = NULL, *scheme_end = strstr(url, "://");
    if (scheme_end) {
        const char *at = strchr(scheme_end + 3, '@'), *slash = strchr(scheme_end + 3, '/');
        if (at && (!slash || at < slash)) userinfo_end = at;
    }
    bool in_query = false;
    for (const char *p = url; *p && w + 8 < outlen;) {
        if (userinfo_end && p == scheme_end + 3) {
            w += (size_t)snprintf(out + w, outlen - w, "****");
            p = userinfo_end;
            continue;
        }
        bool param_start = in_query && (p[-1] == '?' || p[-1] == '&');
        if (*p == '?') in_query = true;
        if (*p == '#') in_query = false;
        if (param_start && strncasecmp(p, "token=", 6) == 0) {
            w += (size_t)snprintf(out + w, outlen - w, "token=****");
            p += 6;
            while (*p && *p != '&' && *p != '#') p++;
            continue;
        }
        out[w++] = *p++;
    }
    out[w < outlen ? w : outlen - 1] = 0;
}

static bool same_origin(const char *url, const char *origin)
{
    char o[512];
    return dl_url_origin(url, o, sizeof o) == 0 && strcmp(o, origin) == 0;
}

/* What a body that should be a safetensors file looks like instead, from its
 * first bytes; NULL when it can be one (spec §2.6 step 5). */
static const char *sniff_not_safetensors(const unsigned char *p, size_t n)
{
    if (n >= 4 && memcmp(p, "PK\x03\x04", 4) == 0) return "a ZIP archive";
    if (n >= 1 && p[0] == '<') return "an HTML/XML page";
    if (n >= 1 && (p[0] == '{' || p[0] == '[')) return "a JSON document";
    if (n < SNIFF_LEN) return NULL;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | p[i];
    if (hlen < 2 || hlen > SAFETENSORS_MAX_HEADER || p[8] != '{')
        return "not a safetensors file (no JSON header after the 8-byte length)";
    return NULL;
}

static bool is_page_type(const char *content_type)
{
    return strncasecmp(content_type, "text/html", 9) == 0 ||
           strncasecmp(content_type, "application/xhtml", 17) == 0 ||
           strncasecmp(content_type, "application/json", 16) == 0;
}

/* ---- the .part file ------------------------------------------------------ */

typedef struct {
    const dl_request *rq;
    const dl_opts *o;
    int fd;
    uint64_t have;  /* bytes in the .part */
    int64_t total;  /* the full size as the server states it; -1 unknown */
    EVP_MD_CTX *sha;
    unsigned char prefix[SNIFF_LEN];
    size_t prefix_len;
    double t_start, t_progress;
    uint64_t fetched;
    char dir[4096];
} part_file;

static uint64_t free_bytes(const char *dir)
{
    struct statvfs v;
    return statvfs(dir, &v) == 0 ? (uint64_t)v.f_bavail * v.f_frsize : UINT64_MAX;
}

static int part_reset(part_file *pf)
{
    pf->have = 0;
    pf->prefix_len = 0;
    if (ftruncate(pf->fd, 0) != 0) return -1;
    return EVP_DigestInit_ex(pf->sha, EVP_sha256(), NULL) == 1 ? 0 : -1;
}

/* Opens (or creates) the .part and takes over what it holds: the SHA-256 of
 * its bytes and its first bytes, which must still look like a model. */
static int part_open(part_file *pf, const dl_request *rq, const dl_opts *o, char *err, size_t errlen)
{
    memset(pf, 0, sizeof *pf);
    pf->rq = rq;
    pf->o = o;
    pf->total = -1;
    snprintf(pf->dir, sizeof pf->dir, "%s", rq->part_path);
    char *slash = strrchr(pf->dir, '/');
    if (slash) *slash = 0;
    else snprintf(pf->dir, sizeof pf->dir, ".");
    pf->fd = open(rq->part_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    struct stat st;
    pf->sha = EVP_MD_CTX_new();
    if (pf->fd < 0 || fstat(pf->fd, &st) != 0 || !pf->sha ||
        EVP_DigestInit_ex(pf->sha, EVP_sha256(), NULL) != 1) {
        snprintf(err, errlen, "%s: cannot open %s: %s", rq->label, rq->part_path, strerror(errno));
        return -1;
    }
    pf->have = (uint64_t)st.st_size;
    pf->prefix_len = (size_t)(pf->have < SNIFF_LEN ? pf->have : SNIFF_LEN);
    if (pread(pf->fd, pf->prefix, pf->prefix_len, 0) != (ssize_t)pf->prefix_len) pf->prefix_len = 0;
    const char *bad = pf->have ? sniff_not_safetensors(pf->prefix, pf->prefix_len) : NULL;
    bool too_long = rq->expected_size && pf->have > rq->expected_size;
    if (bad || too_long) {
        rp_warn("%s: discarding %s (%s)", rq->label, rq->part_path,
                bad ? bad : "longer than the expected size");
        if (part_reset(pf) != 0) goto io_error;
    }
    if (sha256_update_from_fd(pf->sha, pf->fd, 0, pf->have) == 0) return 0;
io_error:
    snprintf(err, errlen, "%s: cannot read %s: %s", rq->label, rq->part_path, strerror(errno));
    return -1;
}

static void part_close(part_file *pf)
{
    if (pf->fd >= 0) close(pf->fd);
    EVP_MD_CTX_free(pf->sha);
}

static void progress_line(part_file *pf)
{
    double t = sd_now_seconds(), elapsed = t - pf->t_start;
    double rate = elapsed > 0 ? pf->fetched / elapsed : 0;
    char total[32], have[32], eta[32];
    fmt_bytes(pf->have, have, sizeof have);
    if (pf->total > 0) {
        fmt_bytes((uint64_t)pf->total, total, sizeof total);
        fmt_duration(rate > 0 ? ((double)pf->total - (double)pf->have) / rate : 0, eta, sizeof eta);
        rp_info("%s: %.1f%% of %s (%.1f MB/s, ETA %s)", pf->rq->label,
                100.0 * (double)pf->have / (double)pf->total, total, rate / 1e6, rate > 0 ? eta : "?");
    } else {
        rp_info("%s: %s so far (%.1f MB/s)", pf->rq->label, have, rate / 1e6);
    }
    pf->t_progress = t;
}

/* ---- one HTTP exchange ---------------------------------------------------- */

typedef struct {
    part_file *pf;  /* NULL: the body is only captured */
    size_t body_max;
    long status;
    char content_type[128];
    int64_t content_length, range_start, range_total;
    long retry_after_ms;
    char disposition[256];
    bool headers_done, to_file, restart;
    char *body;
    size_t body_len;
    dl_status abort; /* set when a callback stopped the transfer */
    bool abort_got_html;
    char abort_msg[1024];
} exchange;

static void exchange_start(exchange *ex, part_file *pf, size_t body_max)
{
    free(ex->body);
    memset(ex, 0, sizeof *ex);
    ex->pf = pf;
    ex->body_max = body_max;
    ex->content_length = ex->range_start = ex->range_total = ex->retry_after_ms = -1;
}

static int abort_with(exchange *ex, dl_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int abort_with(exchange *ex, dl_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ex->abort_msg, sizeof ex->abort_msg, fmt, ap);
    va_end(ap);
    ex->abort = st;
    return -1;
}

/* A full disk names the directory, what the file still needs and what is
 * free; other write errors name the file. */
static int disk_error(exchange *ex, int errnum, uint64_t need)
{
    part_file *pf = ex->pf;
    char free_s[32], need_s[32];
    fmt_bytes(free_bytes(pf->dir), free_s, sizeof free_s);
    fmt_bytes(need, need_s, sizeof need_s);
    if ((errnum == ENOSPC || errnum == EDQUOT) && pf->total >= 0)
        return abort_with(ex, DL_ERR_DISK, "%s: disk full in %s (%s) after %" PRIu64 " bytes of the file; it needs "
                          "%s more but only %s is free there", pf->rq->label, pf->dir, strerror(errnum), pf->have,
                          need_s, free_s);
    if (errnum == EFBIG)
        return abort_with(ex, DL_ERR_DISK, "%s: %s refuses files this large (%s) at %" PRIu64 " bytes: the "
                          "filesystem's or the process's file size limit is too small for this model%s%s",
                          pf->rq->label, pf->dir, strerror(errnum), pf->have, pf->total >= 0 ? ", which needs " : "",
                          pf->total >= 0 ? need_s : "");
    if (errnum == ENOSPC || errnum == EDQUOT)
        return abort_with(ex, DL_ERR_DISK, "%s: disk full in %s (%s) after %" PRIu64 " bytes of the file (the "
                          "server gave no total size, so it needs more than that); %s is free there",
                          pf->rq->label, pf->dir, strerror(errnum), pf->have, free_s);
    return abort_with(ex, DL_ERR_DISK, "%s: cannot write %s: %s", pf->rq->label, pf->rq->part_path, strerror(errnum));
}

static int check_room(exchange *ex, uint64_t need)
{
    part_file *pf = ex->pf;
    uint64_t avail = free_bytes(pf->dir);
    if (need <= avail) return 0;
    char free_s[32], need_s[32];
    fmt_bytes(avail, free_s, sizeof free_s);
    fmt_bytes(need, need_s, sizeof need_s);
    return abort_with(ex, DL_ERR_DISK, "%s: not enough space in %s: the download needs %s (%" PRIu64 " bytes) more "
                      "but only %s is free; nothing was written", pf->rq->label, pf->dir, need_s, need, free_s);
}

/* Decides, at the end of the headers, whether the body becomes file bytes. */
static int begin_body(exchange *ex)
{
    part_file *pf = ex->pf;
    ex->headers_done = true;
    if (!pf || (ex->status != 200 && ex->status != 206)) return 0;
    if (is_page_type(ex->content_type)) {
        ex->abort_got_html = true;
        return abort_with(ex, DL_ERR_CONTENT, "%s: the server answered HTTP %ld with a %s page instead of the "
                          "model file (often a login page); nothing was saved", pf->rq->label, ex->status,
                          ex->content_type);
    }
    if (ex->status == 200) {
        if (pf->have > 0) {
            rp_info("%s: the server ignored the Range request; restarting from byte 0", pf->rq->label);
            if (part_reset(pf) != 0) return disk_error(ex, errno, 0);
        }
        pf->total = ex->content_length;
    } else {
        if (ex->range_start != (int64_t)pf->have) { ex->restart = true; return -1; }
        pf->total = ex->range_total;
    }
    uint64_t want = pf->rq->expected_size;
    if (want && pf->total >= 0 && (uint64_t)pf->total != want)
        return abort_with(ex, DL_ERR_CONTENT, "%s: the server has %" PRId64 " bytes but %" PRIu64 " were expected; "
                          "refusing the download", pf->rq->label, pf->total, want);
    if (pf->total >= 0 && check_room(ex, (uint64_t)pf->total - pf->have) != 0) return -1;
    ex->to_file = true;
    if (!pf->t_start) pf->t_start = pf->t_progress = sd_now_seconds();
    return 0;
}

static void trim(char **s, char **e)
{
    while (*s < *e && isspace((unsigned char)**s)) (*s)++;
    while (*e > *s && isspace((unsigned char)(*e)[-1])) (*e)--;
}

static void parse_content_range(exchange *ex, const char *v)
{
    long long a, b, t;
    if (sscanf(v, "bytes %lld-%lld/%lld", &a, &b, &t) == 3) { ex->range_start = a; ex->range_total = t; }
    else if (sscanf(v, "bytes %lld-%lld/*", &a, &b) == 2) ex->range_start = a;
    else if (sscanf(v, "bytes */%lld", &t) == 1) ex->range_total = t;
}

static void parse_retry_after(exchange *ex, const char *v)
{
    char *end;
    long secs = strtol(v, &end, 10);
    if (end != v && *end == 0 && secs >= 0) { ex->retry_after_ms = secs > 86400 ? 86400000L : secs * 1000L; return; }
    time_t when = curl_getdate(v, NULL);
    if (when > 0) ex->retry_after_ms = when > time(NULL) ? (long)(when - time(NULL)) * 1000L : 0;
}

/* filename*=UTF-8''x or filename="x": kept printable, for messages only. */
static void parse_disposition(exchange *ex, const char *v)
{
    const char *p = strcasestr(v, "filename*=");
    if (p) {
        p += 10;
        const char *q = strstr(p, "''");
        if (q) p = q + 2;
    } else if ((p = strcasestr(v, "filename="))) {
        p += 9;
    } else {
        return;
    }
    if (*p == '"') p++;
    size_t w = 0;
    for (; *p && *p != '"' && *p != ';' && w + 1 < sizeof ex->disposition; p++)
        ex->disposition[w++] = isprint((unsigned char)*p) ? *p : '_';
    ex->disposition[w] = 0;
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *ud)
{
    exchange *ex = ud;
    size_t len = size * nmemb;
    if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) {
        part_file *pf = ex->pf;
        size_t max = ex->body_max;
        exchange_start(ex, pf, max);
        char status[16] = {0};
        memcpy(status, line, len < 15 ? len : 15);
        char *sp = strchr(status, ' ');
        ex->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        return len;
    }
    if (len <= 2 && (line[0] == '\r' || line[0] == '\n')) {
        if (ex->status >= 200 && !ex->headers_done && begin_body(ex) != 0) return 0;
        return len;
    }
    char buf[2048];
    size_t n = len < sizeof buf - 1 ? len : sizeof buf - 1;
    memcpy(buf, line, n);
    buf[n] = 0;
    char *colon = strchr(buf, ':');
    if (!colon) return len;
    char *ns = buf, *ne = colon, *vs = colon + 1, *ve = buf + n;
    trim(&ns, &ne);
    trim(&vs, &ve);
    *ne = 0;
    *ve = 0;
    if (!strcasecmp(ns, "content-type")) snprintf(ex->content_type, sizeof ex->content_type, "%s", vs);
    else if (!strcasecmp(ns, "content-length")) ex->content_length = strtoll(vs, NULL, 10);
    else if (!strcasecmp(ns, "content-range")) parse_content_range(ex, vs);
    else if (!strcasecmp(ns, "retry-after")) parse_retry_after(ex, vs);
    else if (!strcasecmp(ns, "content-disposition")) parse_disposition(ex, vs);
    return len;
}

static int append_to_part(exchange *ex, const char *data, size_t len)
{
    part_file *pf = ex->pf;
    if (pf->prefix_len < SNIFF_LEN) {
        size_t take = SNIFF_LEN - pf->prefix_len < len ? SNIFF_LEN - pf->prefix_len : len;
        memcpy(pf->prefix + pf->prefix_len, data, take);
        pf->prefix_len += take;
        const char *bad = sniff_not_safetensors(pf->prefix, pf->prefix_len);
        if (bad) {
            ex->abort_got_html = strstr(bad, "HTML") != NULL;
            return abort_with(ex, DL_ERR_CONTENT, "%s: the server sent %s instead of a safetensors model; "
                              "nothing was saved", pf->rq->label, bad);
        }
    }
    for (size_t off = 0; off < len;) {
        ssize_t w = pwrite(pf->fd, data + off, len - off, (off_t)(pf->have + off));
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
            int e = errno;
            pf->have += off; /* what did land stays consistent with the hash */
            EVP_DigestUpdate(pf->sha, data, off);
            return disk_error(ex, e, pf->total >= 0 ? (uint64_t)pf->total - pf->have : 0);
        }
        off += (size_t)w;
    }
    EVP_DigestUpdate(pf->sha, data, len);
    pf->have += len;
    pf->fetched += len;
    if ((sd_now_seconds() - pf->t_progress) * 1000 >= pf->o->progress_interval_ms) progress_line(pf);
    return 0;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    exchange *ex = ud;
    size_t len = size * nmemb;
    if (!ex->headers_done && begin_body(ex) != 0) return 0;
    if (ex->to_file) return append_to_part(ex, data, len) == 0 ? len : 0;
    if (ex->body_len + len > ex->body_max) {
        if (ex->body_max == GET_MAX)
            return abort_with(ex, DL_ERR_CONTENT, "the answer is larger than %u bytes", GET_MAX), 0;
        len = ex->body_max - ex->body_len; /* an error body: keep its start */
        if (!len) return size * nmemb;
    }
    char *grown = realloc(ex->body, ex->body_len + len + 1);
    if (!grown) return abort_with(ex, DL_ERR_DISK, "out of memory"), 0;
    ex->body = grown;
    memcpy(ex->body + ex->body_len, data, len);
    ex->body_len += len;
    ex->body[ex->body_len] = 0;
    return size * nmemb;
}

/* One request. The key goes in an Authorization header only when given;
 * callers pass it only for the configured URL's origin. */
static CURLcode perform(CURL *c, const char *url, const char *key, uint64_t range_from, const dl_opts *o,
                        exchange *ex, bool small)
{
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_USERAGENT, DL_USER_AGENT);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)o->connect_timeout_s);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, o->low_speed_bytes);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)o->low_speed_time_s);
    if (small) curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 512L * 1024);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, ex);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, ex);
    char range[32];
    if (range_from > 0) {
        snprintf(range, sizeof range, "%" PRIu64 "-", range_from);
        curl_easy_setopt(c, CURLOPT_RANGE, range);
    }
    struct curl_slist *headers = NULL;
    char auth[600];
    if (key && *key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
        headers = curl_slist_append(NULL, auth);
        explicit_bzero(auth, sizeof auth);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    }
    CURLcode rc = curl_easy_perform(c);
    for (struct curl_slist *h = headers; h; h = h->next) explicit_bzero(h->data, strlen(h->data));
    curl_slist_free_all(headers);
    if (!ex->status) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &ex->status);
    return rc;
}

/* ---- the download loop ------------------------------------------------------ */

typedef struct {
    const dl_request *rq;
    const dl_opts *o;
    part_file pf;
    CURL *curl;
    exchange ex;
    char origin[512];
    char *url;      /* the URL the next request goes to */
    int tries;      /* failed tries in a row without new bytes */
    int refreshes;  /* fresh storage URLs in a row without new bytes */
    int hops;
    unsigned seed;
    bool done;
} download;

static void go_to(download *d, const char *url)
{
    char *copy = strdup(url);
    if (!copy) return;
    free(d->url);
    d->url = copy;
}

/* One more failed try; waits before the next and returns 0, or -1 when the
 * retry budget is spent. */
static int retry_wait(download *d, const char *why)
{
    if (++d->tries >= d->o->max_tries) return -1;
    long wait = dl_backoff_ms(d->o, d->tries, &d->seed);
    if (d->ex.retry_after_ms >= 0)
        wait = d->ex.retry_after_ms > d->o->retry_after_cap_ms ? d->o->retry_after_cap_ms
             : d->ex.retry_after_ms > wait ? d->ex.retry_after_ms : wait;
    rp_warn("%s: %s; retrying in %.1f s (try %d of %d)", d->rq->label, why, wait / 1000.0, d->tries + 1,
            d->o->max_tries);
    sleep_ms(wait);
    return 0;
}

/* retry_wait, or the final error once the budget is spent. */
static dl_status retry_or_give_up(download *d, const char *why, char *err, size_t errlen)
{
    if (retry_wait(d, why) == 0) return DL_OK;
    snprintf(err, errlen, "%s: %s; gave up after %d tries", d->rq->label, why, d->tries);
    return DL_ERR_NETWORK;
}

/* Handles one answer that is not body bytes; returns DL_OK to go on. */
static dl_status handle_answer(download *d, CURLcode rc, bool at_origin, dl_result *res, char *err, size_t errlen)
{
    exchange *ex = &d->ex;
    part_file *pf = &d->pf;
    long s = ex->status;
    char origin[512] = "?", why[600];
    dl_url_origin(d->url, origin, sizeof origin);
    res->http_status = s;
    if (rc != CURLE_OK || ((s == 200 || s == 206) && pf->total >= 0 && pf->have != (uint64_t)pf->total)) {
        snprintf(why, sizeof why, "network error from %s (%s) at byte %" PRIu64, origin,
                 rc != CURLE_OK ? curl_easy_strerror(rc) : "transfer ended early", pf->have);
        return retry_or_give_up(d, why, err, errlen);
    }
    if (s >= 300 && s < 400) {
        char *loc = NULL;
        curl_easy_getinfo(d->curl, CURLINFO_REDIRECT_URL, &loc);
        if (!loc || (strncasecmp(loc, "https://", 8) && strncasecmp(loc, "http://", 7))) {
            snprintf(err, errlen, "%s: HTTP %ld from %s without a usable http(s) Location", d->rq->label, s, origin);
            return DL_ERR_CONTENT;
        }
        if (++d->hops > MAX_HOPS) {
            snprintf(err, errlen, "%s: more than %d redirects from %s", d->rq->label, MAX_HOPS, origin);
            return DL_ERR_CONTENT;
        }
        char to[512] = "?";
        dl_url_origin(loc, to, sizeof to);
        rp_debug("%s: HTTP %ld from %s to %s (signed URL; query not logged)", d->rq->label, s, origin, to);
        go_to(d, loc);
        return DL_OK;
    }
    d->hops = 0;
    if (s == 200 || s == 206) { d->done = true; return DL_OK; }
    if (s == 416) {
        if (ex->range_total >= 0 && (uint64_t)ex->range_total == pf->have) { d->done = true; return DL_OK; }
        rp_warn("%s: HTTP 416 for byte %" PRIu64 " from %s: discarding the partial file", d->rq->label, pf->have, origin);
        if (part_reset(pf) != 0) { snprintf(err, errlen, "%s: %s", d->rq->part_path, strerror(errno)); return DL_ERR_DISK; }
        go_to(d, d->rq->url);
        snprintf(why, sizeof why, "HTTP 416 from %s", origin);
        return retry_or_give_up(d, why, err, errlen);
    }
    if (s == 429 || s >= 500) {
        snprintf(why, sizeof why, "HTTP %ld from %s", s, origin);
        res->http_from_origin = at_origin;
        return retry_or_give_up(d, why, err, errlen);
    }
    bool expired = s == 400 || s == 401 || s == 403 || s == 404 || s == 410;
    if (!at_origin && expired && ++d->refreshes <= d->o->max_url_refreshes) {
        rp_info("%s: %s refused the signed URL (HTTP %ld, expired or used up); asking %s for a fresh one, "
                "keeping the %" PRIu64 " bytes already here", d->rq->label, origin, s, d->origin, pf->have);
        go_to(d, d->rq->url);
        return DL_OK;
    }
    res->http_from_origin = at_origin;
    res->error_body = ex->body;
    ex->body = NULL;
    snprintf(err, errlen, "%s: HTTP %ld from %s", d->rq->label, s, origin);
    return DL_ERR_HTTP;
}

static dl_status run_download(download *d, dl_result *res, char *err, size_t errlen)
{
    part_file *pf = &d->pf;
    d->done = d->rq->expected_size && pf->have == d->rq->expected_size;
    while (!d->done) {
        uint64_t before = pf->have;
        bool at_origin = same_origin(d->url, d->origin);
        exchange_start(&d->ex, pf, CAPTURE_MAX);
        CURLcode rc = perform(d->curl, d->url, at_origin ? d->rq->auth_key : NULL, pf->have, d->o, &d->ex, false);
        if (pf->have > before) d->tries = d->refreshes = 0;
        if (d->ex.disposition[0]) snprintf(res->server_filename, sizeof res->server_filename, "%s", d->ex.disposition);
        if (d->ex.abort != DL_OK) {
            res->got_html = d->ex.abort_got_html;
            snprintf(err, errlen, "%s", d->ex.abort_msg);
            return d->ex.abort;
        }
        if (d->ex.restart) {
            rp_warn("%s: the server resumed at the wrong offset; restarting from byte 0", d->rq->label);
            if (part_reset(pf) != 0 || retry_wait(d, "bad Content-Range") != 0) {
                snprintf(err, errlen, "%s: cannot resume (bad Content-Range answers)", d->rq->label);
                return DL_ERR_NETWORK;
            }
            continue;
        }
        dl_status st = handle_answer(d, rc, at_origin, res, err, errlen);
        if (st != DL_OK) return st;
    }
    uint64_t want = d->rq->expected_size;
    if (want && pf->have != want) {
        snprintf(err, errlen, "%s: got %" PRIu64 " bytes but %" PRIu64 " were expected", d->rq->label, pf->have, want);
        return DL_ERR_CONTENT;
    }
    if (fsync(pf->fd) != 0) {
        snprintf(err, errlen, "%s: fsync %s: %s", d->rq->label, d->rq->part_path, strerror(errno));
        return DL_ERR_DISK;
    }
    return EVP_DigestFinal_ex(pf->sha, res->sha256, NULL) == 1 ? DL_OK : DL_ERR_DISK;
}

dl_status dl_download(const dl_request *rq, const dl_opts *o, dl_result *res, char *err, size_t errlen)
{
    memset(res, 0, sizeof *res);
    download d = {.rq = rq, .o = o, .seed = (unsigned)time(NULL) ^ (unsigned)getpid() ^ (unsigned)(uintptr_t)rq};
    double t0 = sd_now_seconds();
    if (part_open(&d.pf, rq, o, err, errlen) != 0) {
        part_close(&d.pf);
        return res->status = DL_ERR_DISK;
    }
    res->resumed_from = d.pf.have;
    if (d.pf.have) rp_info("%s: resuming %s from byte %" PRIu64, rq->label, rq->part_path, d.pf.have);
    d.curl = curl_easy_init();
    d.url = strdup(rq->url);
    dl_status st;
    if (!d.curl || !d.url || dl_url_origin(rq->url, d.origin, sizeof d.origin) != 0) {
        snprintf(err, errlen, "%s: cannot use the URL", rq->label);
        st = DL_ERR_CONTENT;
    } else {
        st = run_download(&d, res, err, errlen);
    }
    res->size = d.pf.have;
    res->bytes_fetched = d.pf.fetched;
    res->seconds = sd_now_seconds() - t0;
    free(d.ex.body);
    free(d.url);
    curl_easy_cleanup(d.curl);
    part_close(&d.pf);
    return res->status = st;
}

void dl_result_free(dl_result *res)
{
    free(res->error_body);
    res->error_body = NULL;
}

dl_status dl_get(const char *url, const char *auth_key, const char *label, const dl_opts *o, long *status,
                 char **body, size_t *len, char *err, size_t errlen)
{
    dl_request rq = {.url = url, .label = label};
    download d = {.rq = &rq, .o = o, .seed = (unsigned)time(NULL) ^ (unsigned)getpid()};
    char origin[512] = "?", why[600];
    dl_url_origin(url, origin, sizeof origin);
    d.curl = curl_easy_init();
    if (!d.curl) { snprintf(err, errlen, "cannot start libcurl"); return DL_ERR_NETWORK; }
    dl_status st = DL_OK;
    for (;;) {
        exchange_start(&d.ex, NULL, GET_MAX);
        CURLcode rc = perform(d.curl, url, auth_key, 0, o, &d.ex, true);
        if (d.ex.abort != DL_OK) { snprintf(err, errlen, "%s: %s", origin, d.ex.abort_msg); st = d.ex.abort; break; }
        bool transient = rc != CURLE_OK || d.ex.status == 429 || d.ex.status >= 500;
        if (!transient) break;
        if (rc != CURLE_OK) snprintf(why, sizeof why, "network error from %s (%s)", origin, curl_easy_strerror(rc));
        else snprintf(why, sizeof why, "HTTP %ld from %s", d.ex.status, origin);
        if (retry_wait(&d, why) != 0) {
            snprintf(err, errlen, "%s; gave up after %d tries", why, d.tries);
            st = DL_ERR_NETWORK;
            break;
        }
    }
    *status = d.ex.status;
    if (st == DL_OK) {
        *len = d.ex.body_len;
        *body = d.ex.body ? d.ex.body : strdup("");
        d.ex.body = NULL;
    }
    free(d.ex.body);
    curl_easy_cleanup(d.curl);
    return st;
}
