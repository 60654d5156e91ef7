/* AutoV2/AutoV3 model hashes with an identity-keyed cache (see hashes.h). */
#include "image/hashes.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image/utf8.h"
#include "models/sha256.h"
#include "runpod/log.h"

#define HEADER_MAX (100u << 20) /* a safetensors JSON header larger than this is refused */

typedef enum { KIND_SHA256 = 0, KIND_ADDNET = 1 } hash_kind;
static const char *const KIND_NAME[2] = {"sha256", "addnet"};

typedef struct {
    uint64_t dev, ino, size;
    int64_t mtime_ns;
} file_id;

typedef struct {
    char *path;
    file_id id;
    char digest[2][65]; /* "" until known */
    bool busy[2];       /* being computed by some thread */
} entry;

struct hash_cache {
    pthread_mutex_t mu;
    pthread_cond_t done;
    entry **e;
    size_t n, cap;
    char *file;
    _Atomic uint64_t bytes_hashed;
};

uint64_t hash_cache_bytes_hashed(const hash_cache *c) { return atomic_load(&c->bytes_hashed); }

static file_id id_of(const struct stat *st)
{
    return (file_id){(uint64_t)st->st_dev, (uint64_t)st->st_ino, (uint64_t)st->st_size,
                     (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec};
}

/* The same file as it was: the full key, or (for entries loaded from the
 * cache file, whose st_dev may be another mount's) path, inode, size and
 * mtime. */
static bool same_file(const entry *e, const file_id *id, const char *path)
{
    if (e->id.ino != id->ino || e->id.size != id->size || e->id.mtime_ns != id->mtime_ns) return false;
    return e->id.dev == id->dev || (e->path && path && !strcmp(e->path, path));
}

static entry *find(hash_cache *c, const file_id *id, const char *path)
{
    for (size_t i = 0; i < c->n; i++)
        if (same_file(c->e[i], id, path)) return c->e[i];
    return NULL;
}

static entry *add(hash_cache *c, const file_id *id, const char *path)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 16;
        entry **p = realloc(c->e, cap * sizeof *p);
        if (!p) return NULL;
        c->e = p;
        c->cap = cap;
    }
    entry *e = calloc(1, sizeof *e);
    if (!e || !(e->path = strdup(path))) { free(e); return NULL; }
    e->id = *id;
    c->e[c->n++] = e;
    return e;
}

/* ---- the cache file ----------------------------------------------------- */

static bool is_hex64(const char *s)
{
    if (!s || strlen(s) != 64) return false;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

static bool json_u64(const cJSON *o, const char *key, uint64_t *v)
{
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
    char *end;
    if (!s || !*s) return false;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (*end || errno) return false;
    *v = x;
    return true;
}

static void load_entry(hash_cache *c, const cJSON *o)
{
    const char *path = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "path"));
    file_id id;
    uint64_t mt;
    if (!path || !json_u64(o, "dev", &id.dev) || !json_u64(o, "ino", &id.ino) || !json_u64(o, "size", &id.size) ||
        !json_u64(o, "mtime_ns", &mt) || mt > INT64_MAX)
        return;
    id.mtime_ns = (int64_t)mt;
    entry *e = add(c, &id, path);
    for (int k = 0; e && k < 2; k++) {
        const char *d = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, KIND_NAME[k]));
        if (is_hex64(d)) memcpy(e->digest[k], d, 65);
    }
}

static void cache_load(hash_cache *c)
{
    FILE *f = fopen(c->file, "rb");
    if (!f) return;
    char *buf = NULL;
    size_t len = 0, cap = 0, got;
    char chunk[65536];
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (len + got > cap) {
            cap = (len + got) * 2;
            char *p = realloc(buf, cap);
            if (!p) break;
            buf = p;
        }
        memcpy(buf + len, chunk, got);
        len += got;
    }
    fclose(f);
    cJSON *root = buf ? cJSON_ParseWithLength(buf, len) : NULL;
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(root, "files");
    if (!cJSON_IsArray(files)) {
        rp_warn("hash cache %s is not valid; starting an empty one", c->file);
    } else {
        const cJSON *o;
        cJSON_ArrayForEach(o, files) load_entry(c, o);
    }
    cJSON_Delete(root);
    free(buf);
}

static cJSON *entry_json(const entry *e)
{
    cJSON *o = cJSON_CreateObject();
    char num[32];
    cJSON_AddStringToObject(o, "path", e->path);
    snprintf(num, sizeof num, "%" PRIu64, e->id.dev); cJSON_AddStringToObject(o, "dev", num);
    snprintf(num, sizeof num, "%" PRIu64, e->id.ino); cJSON_AddStringToObject(o, "ino", num);
    snprintf(num, sizeof num, "%" PRIu64, e->id.size); cJSON_AddStringToObject(o, "size", num);
    snprintf(num, sizeof num, "%" PRId64, e->id.mtime_ns); cJSON_AddStringToObject(o, "mtime_ns", num);
    for (int k = 0; k < 2; k++)
        if (e->digest[k][0]) cJSON_AddStringToObject(o, KIND_NAME[k], e->digest[k]);
    return o;
}

/* Rewrites the cache file (temp file + rename); called with the lock held.
 * Best effort: a failure only costs a re-hash after a restart. */
static void cache_save(hash_cache *c)
{
    if (!c->file) return;
    cJSON *root = cJSON_CreateObject(), *files = cJSON_AddArrayToObject(root, "files");
    cJSON_AddNumberToObject(root, "version", 1);
    for (size_t i = 0; i < c->n; i++)
        if (c->e[i]->digest[0][0] || c->e[i]->digest[1][0]) cJSON_AddItemToArray(files, entry_json(c->e[i]));
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", c->file, (long)getpid());
    FILE *f = text ? fopen(tmp, "wb") : NULL;
    bool ok = f && fputs(text, f) >= 0;
    if (f && fclose(f) != 0) ok = false;
    if (ok && rename(tmp, c->file) != 0) ok = false;
    if (!ok) {
        rp_warn("could not write the hash cache %s: %s", c->file, strerror(errno));
        unlink(tmp);
    }
    free(text);
}

hash_cache *hash_cache_new(const char *cache_file)
{
    hash_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->done, NULL);
    if (cache_file) {
        c->file = strdup(cache_file);
        if (!c->file) { hash_cache_free(c); return NULL; }
        cache_load(c);
    }
    return c;
}

void hash_cache_free(hash_cache *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->e[i]->path);
        free(c->e[i]);
    }
    free(c->e);
    free(c->file);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->done);
    free(c);
}

/* ---- hashing ----------------------------------------------------------- */

/* SHA-256 of fd's bytes [off, end), as hex (counted in bytes_hashed).
 * 0, or -1 with errno (EIO when the file shrank). */
static int sha256_range(hash_cache *c, int fd, uint64_t off, uint64_t end, char hex[65])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char md[32];
    int rc = -1;
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) errno = ENOMEM;
    else if (sha256_update_from_fd(ctx, fd, off, end) == 0 && EVP_DigestFinal_ex(ctx, md, NULL) == 1) {
        atomic_fetch_add(&c->bytes_hashed, end - off);
        sha256_hex(md, hex);
        rc = 0;
    }
    EVP_MD_CTX_free(ctx);
    return rc;
}

/* The little-endian header length of a safetensors file, checked against
 * the file size. 0, or -1 with a reason. */
static int safetensors_header_len(int fd, uint64_t size, uint64_t *n, const char *path, char *err, size_t errlen)
{
    unsigned char b[8];
    if (size < 8 || pread(fd, b, 8, 0) != 8) {
        snprintf(err, errlen, "%s: too short for a safetensors file", path);
        return -1;
    }
    *n = 0;
    for (int i = 7; i >= 0; i--) *n = *n << 8 | b[i];
    if (*n > size - 8 || *n > HEADER_MAX) {
        snprintf(err, errlen, "%s: safetensors header length %" PRIu64 " does not fit the file (%" PRIu64 " bytes)",
                 path, *n, size);
        return -1;
    }
    return 0;
}

static int compute(hash_cache *c, int fd, const file_id *id, hash_kind kind, const char *path, char hex[65],
                   char *err, size_t errlen)
{
    uint64_t start = 0;
    if (kind == KIND_ADDNET && safetensors_header_len(fd, id->size, &start, path, err, errlen) != 0) return -1;
    if (kind == KIND_ADDNET) start += 8;
    if (sha256_range(c, fd, start, id->size, hex) != 0) {
        snprintf(err, errlen, "%s: read error while hashing: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int open_file(const char *path, file_id *id, char canon[PATH_MAX], char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        close(fd);
        return -1;
    }
    *id = id_of(&st);
    if (!realpath(path, canon)) snprintf(canon, PATH_MAX, "%s", path);
    return fd;
}

/* The cached digest, waiting for a thread already computing it; else
 * claims the computation (returns the entry with busy set) or fails. */
static int lookup_or_claim(hash_cache *c, const file_id *id, const char *canon, hash_kind kind, char hex[65],
                           entry **claimed)
{
    *claimed = NULL;
    pthread_mutex_lock(&c->mu);
    entry *e;
    while ((e = find(c, id, canon)) && !e->digest[kind][0] && e->busy[kind]) pthread_cond_wait(&c->done, &c->mu);
    int rc = 0;
    if (e && e->digest[kind][0]) {
        memcpy(hex, e->digest[kind], 65);
        rc = 1;
    } else if ((e = e ? e : add(c, id, canon)) != NULL) {
        e->id.dev = id->dev; /* a cache-file entry now belongs to this mount */
        e->busy[kind] = true;
        *claimed = e;
    } else {
        rc = -1;
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

static int digest(hash_cache *c, const char *path, hash_kind kind, char hex[65], char *err, size_t errlen)
{
    file_id id;
    char canon[PATH_MAX];
    int fd = open_file(path, &id, canon, err, errlen);
    if (fd < 0) return -1;
    entry *e;
    int rc = lookup_or_claim(c, &id, canon, kind, hex, &e);
    if (rc != 0) {
        close(fd);
        if (rc < 0) snprintf(err, errlen, "hash cache: out of memory");
        return rc < 0 ? -1 : 0;
    }
    rc = compute(c, fd, &id, kind, path, hex, err, errlen);
    close(fd);
    pthread_mutex_lock(&c->mu);
    e->busy[kind] = false;
    if (rc == 0) {
        memcpy(e->digest[kind], hex, 65);
        cache_save(c);
    }
    pthread_cond_broadcast(&c->done);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int hash_sha256(hash_cache *c, const char *path, char hex[65], char *err, size_t errlen)
{
    return digest(c, path, KIND_SHA256, hex, err, errlen);
}

int hash_addnet(hash_cache *c, const char *path, char hex[65], char *err, size_t errlen)
{
    return digest(c, path, KIND_ADDNET, hex, err, errlen);
}

int hash_autov2(hash_cache *c, const char *path, char out[11], char *err, size_t errlen)
{
    char hex[65];
    if (hash_sha256(c, path, hex, err, errlen) != 0) return -1;
    memcpy(out, hex, 10);
    out[10] = 0;
    return 0;
}

/* The header's __metadata__.sshs_model_hash when it is a non-empty string
 * (A1111 network.py prefers it): 1 and its first 12 characters in out, 0
 * when absent, -1 on a read error. */
static int sshs_model_hash(const char *path, char out[HASH_AUTOV3_MAX], char *err, size_t errlen)
{
    file_id id;
    char canon[PATH_MAX];
    int fd = open_file(path, &id, canon, err, errlen);
    if (fd < 0) return -1;
    uint64_t n;
    int rc = -1;
    char *json = NULL;
    if (safetensors_header_len(fd, id.size, &n, path, err, errlen) != 0) goto out;
    json = malloc(n + 1);
    if (!json || pread(fd, json, n, 8) != (ssize_t)n) {
        snprintf(err, errlen, "%s: cannot read the safetensors header", path);
        goto out;
    }
    cJSON *root = cJSON_ParseWithLength(json, n);
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
    const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(meta, "sshs_model_hash"));
    rc = 0;
    if (v && *v) {
        size_t i = 0, len = strlen(v);
        uint32_t cp;
        for (int k = 0; k < 12 && i < len && utf8_next(v, len, &i, &cp) == 0; k++) {}
        snprintf(out, HASH_AUTOV3_MAX, "%.*s", (int)i, v);
        rc = 1;
    }
    cJSON_Delete(root);
out:
    free(json);
    close(fd);
    return rc;
}

static bool is_safetensors_name(const char *path)
{
    size_t n = strlen(path);
    return n >= 12 && !strcasecmp(path + n - 12, ".safetensors");
}

int hash_autov3(hash_cache *c, const char *path, char out[HASH_AUTOV3_MAX], char *err, size_t errlen)
{
    char hex[65];
    if (is_safetensors_name(path)) {
        int rc = sshs_model_hash(path, out, err, errlen);
        if (rc != 0) return rc < 0 ? -1 : 0;
        if (hash_addnet(c, path, hex, err, errlen) != 0) return -1;
    } else if (hash_sha256(c, path, hex, err, errlen) != 0) {
        return -1;
    }
    memcpy(out, hex, 12);
    out[12] = 0;
    return 0;
}

int hash_cache_put_sha256(hash_cache *c, const char *path, const char *hex)
{
    if (!is_hex64(hex)) return -1;
    file_id id;
    char canon[PATH_MAX], err[64];
    int fd = open_file(path, &id, canon, err, sizeof err);
    if (fd < 0) return -1;
    close(fd);
    pthread_mutex_lock(&c->mu);
    entry *e = find(c, &id, canon);
    if (!e) e = add(c, &id, canon);
    if (e) {
        memcpy(e->digest[KIND_SHA256], hex, 65);
        cache_save(c);
    }
    pthread_mutex_unlock(&c->mu);
    return e ? 0 : -1;
}
