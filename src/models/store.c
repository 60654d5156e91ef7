/* The model store (see store.h): per entry, the verified-cache sidecar, the
 * lock, the expected hash (config, else Civitai's model-versions API), the
 * download, the checks, and the atomic move into place. */
#include "models/store.h"

#include "models/civitai.h"
#include "models/sha256.h"
#include "runpod/log.h"
#include "sd/safetensors.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ERR_MAX 1536

void models_opts_default(models_opts *o)
{
    dl_opts_default(&o->net);
    o->allow_unverified = false;
    o->lock_poll_ms = 250;
    o->lock_notice_ms = 10000;
}

void models_opts_from_env(models_opts *o)
{
    models_opts_default(o);
    const char *v = getenv("MODELS_ALLOW_UNVERIFIED");
    o->allow_unverified = v && (!strcmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes"));
}

const char *models_hash_source_name(models_hash_source s)
{
    return s == MODELS_HASH_CONFIG ? "config" : s == MODELS_HASH_CIVITAI ? "civitai" : "none";
}

static models_hash_source hash_source_from_name(const char *s)
{
    return !strcmp(s, "config") ? MODELS_HASH_CONFIG : !strcmp(s, "civitai") ? MODELS_HASH_CIVITAI : MODELS_HASH_NONE;
}

/* Records why an entry failed: logged, redacted, kept on the item. */
static int entry_fail(models_item *it, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int entry_fail(models_item *it, const char *fmt, ...)
{
    char msg[ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    rp_log_redact(msg);
    rp_error("%s", msg);
    free(it->error);
    it->error = strdup(msg);
    it->ok = false;
    return -1;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

static int mkdir_p(const char *dir)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    return mkdir(buf, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* ---- the verified-cache sidecar --------------------------------------------
 * <file>.verified = {"size", "mtime_s", "mtime_ns", "sha256", "sha256_source",
 * "url"}: written after a file was checked, trusted while the file's size and
 * mtime are unchanged. A file whose mtime now has no sub-second part (copied
 * by a tool or into a filesystem that keeps whole seconds, as image layers
 * may) is matched to the second. The URL is stored with any token= masked. */

typedef struct {
    uint64_t size;
    char sha256[65];
    models_hash_source source;
} verified_file;

static void sidecar_path(const char *file, char *out, size_t outlen) { snprintf(out, outlen, "%s.verified", file); }

static void url_key(const models_entry *e, char *out, size_t outlen)
{
    if (e->url) dl_url_for_log(e->url, out, outlen);
    else snprintf(out, outlen, "%s", e->path);
}

/* The sidecar's record when it still describes `file`, else -1. */
static int sidecar_read(const char *file, const models_entry *e, verified_file *vf)
{
    char side[4200], url[2048];
    struct stat st;
    sidecar_path(file, side, sizeof side);
    if (stat(file, &st) != 0) return -1;
    FILE *f = fopen(side, "rb");
    if (!f) return -1;
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *j = cJSON_Parse(buf);
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(j, "size"), *ms = cJSON_GetObjectItemCaseSensitive(j, "mtime_s"),
                *mns = cJSON_GetObjectItemCaseSensitive(j, "mtime_ns"), *sha = cJSON_GetObjectItemCaseSensitive(j, "sha256"),
                *src = cJSON_GetObjectItemCaseSensitive(j, "sha256_source"), *u = cJSON_GetObjectItemCaseSensitive(j, "url");
    url_key(e, url, sizeof url);
    int rc = -1;
    if (cJSON_IsNumber(size) && cJSON_IsNumber(ms) && cJSON_IsNumber(mns) && cJSON_IsString(sha) &&
        strlen(sha->valuestring) == 64 && cJSON_IsString(src) && cJSON_IsString(u) &&
        (uint64_t)size->valuedouble == (uint64_t)st.st_size && (int64_t)ms->valuedouble == (int64_t)st.st_mtim.tv_sec &&
        ((long)mns->valuedouble == st.st_mtim.tv_nsec || st.st_mtim.tv_nsec == 0) && strcmp(u->valuestring, url) == 0) {
        vf->size = (uint64_t)st.st_size;
        snprintf(vf->sha256, sizeof vf->sha256, "%s", sha->valuestring);
        vf->source = hash_source_from_name(src->valuestring);
        rc = 0;
    }
    cJSON_Delete(j);
    return rc;
}

/* Best effort: a missing sidecar only costs a re-hash at the next start. */
static void sidecar_write(const char *file, const models_entry *e, const verified_file *vf)
{
    char side[4200], tmp[4300], url[2048];
    struct stat st;
    sidecar_path(file, side, sizeof side);
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", side, (long)getpid());
    if (stat(file, &st) != 0) return;
    url_key(e, url, sizeof url);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "size", (double)st.st_size);
    cJSON_AddNumberToObject(j, "mtime_s", (double)st.st_mtim.tv_sec);
    cJSON_AddNumberToObject(j, "mtime_ns", (double)st.st_mtim.tv_nsec);
    cJSON_AddStringToObject(j, "sha256", vf->sha256);
    cJSON_AddStringToObject(j, "sha256_source", models_hash_source_name(vf->source));
    cJSON_AddStringToObject(j, "url", url);
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!text) return;
    rp_log_redact(text);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    size_t len = strlen(text);
    bool ok = fd >= 0 && write(fd, text, len) == (ssize_t)len && fsync(fd) == 0;
    if (fd >= 0) close(fd);
    if (!ok || rename(tmp, side) != 0) {
        rp_debug("cannot write %s: %s", side, strerror(errno));
        unlink(tmp);
    }
    free(text);
}

/* ---- expectations ------------------------------------------------------------ */

typedef struct {
    char sha256[65];
    uint64_t size;              /* exact, from the config */
    double civitai_size_kb;     /* coarse, from the API */
    models_hash_source source;  /* who published sha256 */
    civitai_version version;    /* the API answer, kept to re-pick by server file name */
    bool have_version;
} expectation;

static void expect_from_file(expectation *x, const civitai_file *f)
{
    snprintf(x->sha256, sizeof x->sha256, "%s", f->sha256);
    x->civitai_size_kb = f->size_kb;
    x->source = f->sha256[0] ? MODELS_HASH_CIVITAI : MODELS_HASH_NONE;
}

/* Asks Civitai for the version's files when the config has no hash and the
 * URL names a version. Failures only leave the hash unknown (logged). */
static void expect_from_civitai(expectation *x, const char *url, const char *key, const char *label,
                                const models_opts *o)
{
    char *api = civitai_version_api_url(url);
    if (!api) return;
    long status = 0;
    char *body = NULL, why[ERR_MAX];
    size_t len = 0;
    dl_status st = dl_get(api, key, label, &o->net, &status, &body, &len, why, sizeof why);
    if (st == DL_OK && status == 200 && civitai_parse_version(body, len, &x->version, why, sizeof why) == 0) {
        x->have_version = true;
        const civitai_file *f = civitai_pick_file(&x->version, url, NULL);
        if (f) expect_from_file(x, f);
        else rp_warn("%s: Civitai lists no file of version %" PRIu64 " matching the URL", label, civitai_version_id(url));
    } else {
        if (st == DL_OK) snprintf(why, sizeof why, "HTTP %ld", status);
        rp_log_redact(why);
        rp_warn("%s: no SHA-256 from Civitai's model-versions API (%s)", label, why);
    }
    free(body);
    free(api);
}

static void expectation_free(expectation *x)
{
    if (x->have_version) civitai_version_free(&x->version);
}

/* ---- checks ---------------------------------------------------------------------- */

/* Checks `file` against x and the safetensors format; its SHA-256 is
 * computed unless known_hex already holds it (from the download, or from a
 * sidecar that still describes the file). 0, or -1 with the reason. */
static int check_file(const char *file, const expectation *x, const char *known_hex, uint64_t known_size,
                      verified_file *vf, char *err, size_t errlen)
{
    uint64_t size = known_size;
    if (known_hex) {
        snprintf(vf->sha256, sizeof vf->sha256, "%s", known_hex);
    } else {
        unsigned char digest[32];
        if (sha256_file(file, digest, &size, err, errlen) != 0) return -1;
        sha256_hex(digest, vf->sha256);
    }
    vf->size = size;
    vf->source = x->source;
    if (x->size && size != x->size) {
        snprintf(err, errlen, "size is %" PRIu64 " bytes, the config says %" PRIu64, size, x->size);
        return -1;
    }
    if (x->sha256[0] && strcmp(vf->sha256, x->sha256) != 0) {
        snprintf(err, errlen, "SHA-256 mismatch: got %s, %s says %s", vf->sha256,
                 x->source == MODELS_HASH_CONFIG ? "the config" : "Civitai", x->sha256);
        return -1;
    }
    if (!x->sha256[0] && x->civitai_size_kb > 0 && (double)size > x->civitai_size_kb * 1024 + 1024) {
        snprintf(err, errlen, "size is %" PRIu64 " bytes, Civitai lists %.2f KB", size, x->civitai_size_kb);
        return -1;
    }
    char why[ERR_MAX];
    if (st_validate_file(file, why, sizeof why) != 0) {
        snprintf(err, errlen, "not a valid safetensors file: %s", why);
        return -1;
    }
    return 0;
}

static void item_set_verified(models_item *it, const verified_file *vf)
{
    it->ok = true;
    it->size = vf->size;
    snprintf(it->sha256, sizeof it->sha256, "%s", vf->sha256);
    it->hash_source = vf->source;
}

/* A file vouched for by its sidecar; the config's hash, when given, must be
 * the one recorded. Unvouched files pass only when allowed. */
static bool cached_ok(const char *file, const models_entry *e, const models_opts *o, verified_file *vf)
{
    if (sidecar_read(file, e, vf) != 0) return false;
    if (e->size && vf->size != e->size) return false;
    if (e->sha256[0]) {
        if (strcmp(vf->sha256, e->sha256) != 0) return false;
        vf->source = MODELS_HASH_CONFIG;
    }
    return vf->source != MODELS_HASH_NONE || o->allow_unverified || !e->url;
}

/* ---- the lock ---------------------------------------------------------------------- */

static int lock_take(const char *file, const char *label, const models_opts *o, int *fd_out, char *err, size_t errlen)
{
    char path[4300];   /* the file's path (4200) and ".lock", as `part` holds ".part" */
    snprintf(path, sizeof path, "%s.lock", file);
    *fd_out = -1;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create the lock file %s: %s", path, strerror(errno));
        return -1;
    }
    long waited = 0, next_notice = 0;
    while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == ENOLCK || errno == EOPNOTSUPP) {
            rp_warn("%s: %s does not support file locks; going on without one (workers sharing this "
                    "volume may download the file twice)", label, path);
            break;
        }
        if (errno != EWOULDBLOCK && errno != EINTR) {
            snprintf(err, errlen, "cannot lock %s: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
        if (waited >= next_notice) {
            rp_info("%s: another worker holds %s (downloading it); waiting%s", label, path,
                    waited ? " still" : "");
            next_notice = waited + o->lock_notice_ms;
        }
        sleep_ms(o->lock_poll_ms);
        waited += o->lock_poll_ms;
    }
    *fd_out = fd;
    return 0;
}

static void lock_release(int fd)
{
    if (fd >= 0) close(fd); /* closing drops the flock; the .lock file stays (removing it would race) */
}

/* ---- downloading one entry ------------------------------------------------------------ */

typedef struct {
    const models_entry *e;
    const models_env *env;
    const models_opts *o;
    models_item *it;
    char *url;         /* the configured URL on the chosen Civitai host */
    const char *key;   /* NULL unless the key may go to url's origin */
    uint64_t version;  /* Civitai version id, 0 when the URL names none */
    char file[4200], part[4300], dir[4096];
    expectation x;
} fetch;

/* Turns a failed download into the message the user needs. */
static void explain_failure(const fetch *f, const dl_result *r, const char *generic, char *out, size_t outlen)
{
    bool civitai = f->version && civitai_is_civitai_url(f->url, f->env->civitai_origin);
    bool refused = r->status == DL_ERR_HTTP || (r->status == DL_ERR_NETWORK && r->http_status == 429);
    if (civitai && refused && r->http_from_origin) {
        civitai_explain(r->http_status, r->error_body, f->e->name, f->url, f->env->api_key[0] != 0, f->key != NULL,
                        out, outlen);
    } else if (r->status == DL_ERR_HTTP && !r->http_from_origin) {
        snprintf(out, outlen, "%s; the storage host kept refusing fresh signed URLs", generic);
    } else if (civitai && r->got_html) {
        snprintf(out, outlen, "%s (a login page means Civitai wants CIVITAI_API_KEY%s)", generic,
                 f->env->api_key[0] ? ", and the one set was not accepted" : ", which is not set");
    } else {
        snprintf(out, outlen, "%s", generic);
    }
}

static void log_done(const fetch *f, const dl_result *r, const verified_file *vf)
{
    double rate = r->seconds > 0 ? r->bytes_fetched / r->seconds / 1e6 : 0;
    const char *how = vf->source == MODELS_HASH_CIVITAI ? "sha256 verified against Civitai's published hash"
                    : vf->source == MODELS_HASH_CONFIG  ? "sha256 verified against the config"
                                                        : "sha256 NOT verified (nobody published one)";
    rp_info("%s: %" PRIu64 " bytes (%.1f MB) in %.1f s (%.1f MB/s%s), %s: %s -> %s", f->e->name, vf->size,
            vf->size / 1e6, r->seconds, rate, r->resumed_from ? ", resumed" : "", how, vf->sha256, f->file);
}

/* Downloads into the .part, checks it and moves it into place. A .part left
 * by an earlier run that fails the checks is dropped and the download done
 * once more from scratch. */
static int download_entry(fetch *f)
{
    char why[ERR_MAX], msg[ERR_MAX], shown[ERR_MAX];
    dl_url_for_log(f->url, shown, sizeof shown);
    for (int attempt = 0;; attempt++) {
        dl_request rq = {.url = f->url, .auth_key = f->key, .part_path = f->part, .label = f->e->name,
                         .expected_size = f->e->size};
        dl_result r;
        rp_info("%s: downloading %s into %s", f->e->name, shown, f->dir);
        dl_status st = dl_download(&rq, &f->o->net, &r, why, sizeof why);
        if (st != DL_OK) {
            explain_failure(f, &r, why, msg, sizeof msg);
            /* bad content or a full disk: nothing worth resuming, and the space back; an empty .part: clutter */
            if (st == DL_ERR_DISK || st == DL_ERR_CONTENT || r.size == 0) unlink(f->part);
            dl_result_free(&r);
            return entry_fail(f->it, "%s", msg);
        }
        if (r.server_filename[0]) rp_debug("%s: the server calls it \"%s\" (not used as a path)", f->e->name, r.server_filename);
        if (f->x.have_version && !f->e->sha256[0]) {
            const civitai_file *cf = civitai_pick_file(&f->x.version, f->url, r.server_filename);
            if (cf) expect_from_file(&f->x, cf);
        }
        verified_file vf;
        char hex[65];
        sha256_hex(r.sha256, hex);
        if (check_file(f->part, &f->x, hex, r.size, &vf, why, sizeof why) != 0) {
            unlink(f->part);
            if (r.resumed_from && attempt == 0) {
                rp_warn("%s: the resumed file failed its check (%s); downloading it again from scratch", f->e->name, why);
                dl_result_free(&r);
                continue;
            }
            dl_result_free(&r);
            return entry_fail(f->it, "%s: the download from %s was rejected: %s; nothing was saved at %s", f->e->name,
                              shown, why, f->file);
        }
        char side[4300];
        sidecar_path(f->file, side, sizeof side);
        unlink(side); /* the old record must not describe the new file */
        if (rename(f->part, f->file) != 0 || fsync_dir(f->dir) != 0) {
            dl_result_free(&r);
            return entry_fail(f->it, "%s: cannot move %s into place: %s", f->e->name, f->part, strerror(errno));
        }
        sidecar_write(f->file, f->e, &vf);
        fsync_dir(f->dir);
        log_done(f, &r, &vf);
        item_set_verified(f->it, &vf);
        f->it->downloaded = true;
        dl_result_free(&r);
        return 0;
    }
}

/* Under the lock: a file that appeared meanwhile, one already on disk that
 * checks out, or a download. */
static int ensure_locked(fetch *f)
{
    verified_file vf;
    char why[ERR_MAX];
    if (cached_ok(f->file, f->e, f->o, &vf)) {
        rp_info("%s: present and verified (by another worker) at %s", f->e->name, f->file);
        item_set_verified(f->it, &vf);
        return 0;
    }
    if (f->e->sha256[0]) {
        snprintf(f->x.sha256, sizeof f->x.sha256, "%s", f->e->sha256);
        f->x.source = MODELS_HASH_CONFIG;
    } else if (f->version && civitai_is_civitai_url(f->url, f->env->civitai_origin)) {
        expect_from_civitai(&f->x, f->url, f->key, f->e->name, f->o);
    }
    f->x.size = f->e->size;
    if (access(f->file, F_OK) == 0) {
        verified_file known = {0};
        bool recorded = sidecar_read(f->file, f->e, &known) == 0; /* hashed before, only not vouched for */
        if (check_file(f->file, &f->x, recorded ? known.sha256 : NULL, known.size, &vf, why, sizeof why) == 0) {
            rp_info("%s: found %s and verified it", f->e->name, f->file);
            sidecar_write(f->file, f->e, &vf);
            item_set_verified(f->it, &vf);
            return 0;
        }
        rp_log_redact(why);
        rp_warn("%s: %s fails its check (%s); downloading it again", f->e->name, f->file, why);
    }
    return download_entry(f);
}

static int ensure_url_entry(const models_entry *e, const char *dir, const models_env *env, const models_opts *o,
                            models_item *it)
{
    fetch f = {.e = e, .env = env, .o = o, .it = it};
    snprintf(f.dir, sizeof f.dir, "%s", dir);
    snprintf(f.file, sizeof f.file, "%s/%s", dir, e->filename);
    snprintf(f.part, sizeof f.part, "%s.part", f.file);
    it->path = strdup(f.file);
    verified_file vf;
    if (cached_ok(f.file, e, o, &vf)) {
        rp_info("%s: present and verified (cached) at %s", e->name, f.file);
        item_set_verified(it, &vf);
        return 0;
    }
    if (mkdir_p(dir) != 0)
        return entry_fail(it, "%s: cannot create %s: %s (set MODELS_DIR, CHECKPOINT_DIR or LORA_DIR)", e->name, dir,
                          strerror(errno));
    f.url = civitai_rewrite_url(e->url, env->civitai_origin);
    if (!f.url) return entry_fail(it, "%s: out of memory", e->name);
    f.version = civitai_version_id(f.url);
    bool key_ok = env->api_key[0] && civitai_key_allowed(f.url, env->civitai_origin);
    f.key = key_ok ? env->api_key : NULL;
    if (env->api_key[0] && !key_ok && civitai_is_civitai_url(f.url, env->civitai_origin))
        rp_warn("%s: not sending CIVITAI_API_KEY over plain http", e->name);
    int lock_fd, rc;
    char why[ERR_MAX];
    if (lock_take(f.file, e->name, o, &lock_fd, why, sizeof why) != 0) {
        rc = entry_fail(it, "%s: %s", e->name, why);
    } else {
        rc = ensure_locked(&f);
        lock_release(lock_fd);
    }
    if (rc == 0 && it->hash_source == MODELS_HASH_NONE && !o->allow_unverified)
        rc = entry_fail(it, "%s: %s is present but its SHA-256 %s could not be checked: neither the config nor "
                        "Civitai gives one; add \"sha256\" to the entry, or accept it with --allow-unverified "
                        "(MODELS_ALLOW_UNVERIFIED=1)", e->name, f.file, it->sha256);
    expectation_free(&f.x);
    free(f.url);
    return rc;
}

/* A local file: present, a valid safetensors file, and the config's size and
 * hash when given (cached in a sidecar when the directory is writable). */
static int ensure_path_entry(const models_entry *e, const models_opts *o, models_item *it)
{
    it->path = strdup(e->path);
    struct stat st;
    if (stat(e->path, &st) != 0) return entry_fail(it, "%s: local file %s: %s", e->name, e->path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return entry_fail(it, "%s: local file %s is not a regular file", e->name, e->path);
    verified_file vf;
    if (cached_ok(e->path, e, o, &vf)) {
        item_set_verified(it, &vf);
        return 0;
    }
    expectation x = {.size = e->size, .source = e->sha256[0] ? MODELS_HASH_CONFIG : MODELS_HASH_NONE};
    snprintf(x.sha256, sizeof x.sha256, "%s", e->sha256);
    char why[ERR_MAX];
    if (check_file(e->path, &x, NULL, 0, &vf, why, sizeof why) != 0)
        return entry_fail(it, "%s: local file %s: %s", e->name, e->path, why);
    sidecar_write(e->path, e, &vf);
    item_set_verified(it, &vf);
    rp_info("%s: local file %s checked", e->name, e->path);
    return 0;
}

static void init_curl_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

int models_ensure_entry(const models_entry *e, const char *dir, const models_env *env, const models_opts *opts,
                        models_item *out)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, init_curl_once);
    memset(out, 0, sizeof *out);
    out->name = e->name;
    out->scale = e->scale;
    rp_log_add_secret(env->api_key);
    return e->url ? ensure_url_entry(e, dir, env, opts, out) : ensure_path_entry(e, opts, out);
}

/* One list of entries into one directory; returns how many failed. */
static int ensure_list(const models_entry *e, size_t n, const char *dir, const models_env *env,
                       const models_opts *opts, models_item **out)
{
    *out = calloc(n ? n : 1, sizeof **out);
    if (!*out) return -1;
    int failed = 0;
    for (size_t i = 0; i < n; i++) failed += models_ensure_entry(&e[i], dir, env, opts, &(*out)[i]) != 0;
    return failed;
}

int models_ensure(const models_config *cfg, const models_env *env, const models_opts *opts,
                  models_paths *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    int failed = models_ensure_entry(&cfg->checkpoint, env->checkpoint_dir, env, opts, &out->checkpoint) != 0;
    int f_loras = ensure_list(cfg->loras, cfg->n_loras, env->lora_dir, env, opts, &out->loras);
    out->n_loras = f_loras < 0 ? 0 : cfg->n_loras;
    int f_vaes = ensure_list(cfg->vaes, cfg->n_vaes, env->vae_dir, env, opts, &out->vaes);
    out->n_vaes = f_vaes < 0 ? 0 : cfg->n_vaes;
    int f_embs = ensure_list(cfg->embeddings, cfg->n_embeddings, env->embedding_dir, env, opts, &out->embeddings);
    out->n_embeddings = f_embs < 0 ? 0 : cfg->n_embeddings;
    if (f_loras < 0 || f_vaes < 0 || f_embs < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    failed += f_loras + f_vaes + f_embs;
    if (!failed) return 0;
    size_t total = 1 + cfg->n_loras + cfg->n_vaes + cfg->n_embeddings;
    size_t w = (size_t)snprintf(err, errlen, "%d of %zu models unavailable:", failed, total);
    for (size_t i = 0; i < total && w < errlen; i++) {
        const models_item *it = models_paths_item(out, i);
        if (!it->ok) w += (size_t)snprintf(err + w, errlen - w, " %s;", it->error ? it->error : it->name);
    }
    rp_log_redact(err);
    return -1;
}

const models_item *models_paths_item(const models_paths *p, size_t i)
{
    if (i == 0) return &p->checkpoint;
    if (--i < p->n_loras) return &p->loras[i];
    if ((i -= p->n_loras) < p->n_vaes) return &p->vaes[i];
    i -= p->n_vaes;
    return i < p->n_embeddings ? &p->embeddings[i] : NULL;
}

static void item_free(models_item *it)
{
    free(it->path);
    free(it->error);
    memset(it, 0, sizeof *it);
}

void models_paths_free(models_paths *p)
{
    item_free(&p->checkpoint);
    for (size_t i = 0; i < p->n_loras; i++) item_free(&p->loras[i]);
    for (size_t i = 0; i < p->n_vaes; i++) item_free(&p->vaes[i]);
    for (size_t i = 0; i < p->n_embeddings; i++) item_free(&p->embeddings[i]);
    free(p->loras);
    free(p->vaes);
    free(p->embeddings);
    memset(p, 0, sizeof *p);
}
