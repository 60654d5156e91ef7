/* Models config parser and environment lookup (see config.h). The JSON is
 * parsed with cJSON; every field is checked for type and range here so the
 * store can trust the struct. */
#include "models/config.h"

#include "models/civitai.h"
#include "sd/error.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* ---- field checks ------------------------------------------------------ */

int models_filename_check(const char *name, char *err, size_t errlen)
{
    size_t n = strlen(name);
    if (n == 0) return sd_error(err, errlen, "is empty");
    if (n > MODELS_FILENAME_MAX)
        return sd_error(err, errlen, "is longer than %d bytes", MODELS_FILENAME_MAX);
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        if (*p == '/' || *p == '\\')
            return sd_error(err, errlen, "\"%s\" contains a path separator; give a plain file name", name);
        if (*p < 0x20 || *p == 0x7f) return sd_error(err, errlen, "contains a control character");
    }
    if (strstr(name, "..")) return sd_error(err, errlen, "\"%s\" contains \"..\"", name);
    if (name[0] == '.') return sd_error(err, errlen, "\"%s\" starts with '.' (a hidden file)", name);
    return 0;
}

static bool is_http_url(const char *url)
{
    size_t skip = strncasecmp(url, "https://", 8) == 0 ? 8 : strncasecmp(url, "http://", 7) == 0 ? 7 : 0;
    if (!skip || !url[skip] || url[skip] == '/') return false;
    for (const unsigned char *p = (const unsigned char *)url; *p; p++)
        if (*p <= 0x20 || *p == 0x7f) return false;
    return true;
}

static int parse_sha256(const char *hex, char out[65], char *err, size_t errlen)
{
    if (strlen(hex) != 64) return sd_error(err, errlen, "must be 64 hex digits");
    for (int i = 0; i < 64; i++) {
        if (!isxdigit((unsigned char)hex[i])) return sd_error(err, errlen, "must be 64 hex digits");
        out[i] = (char)tolower((unsigned char)hex[i]);
    }
    out[64] = 0;
    return 0;
}

/* ---- one entry ---------------------------------------------------------- */

static const char *const entry_keys[] = {"name", "url", "path", "filename", "sha256", "size", "scale"};

static int check_known_keys(const cJSON *obj, const char *where, char *err, size_t errlen)
{
    for (const cJSON *it = obj->child; it; it = it->next) {
        bool known = false;
        for (size_t i = 0; i < sizeof entry_keys / sizeof *entry_keys && !known; i++)
            known = strcmp(it->string, entry_keys[i]) == 0;
        if (!known)
            return sd_error(err, errlen, "%s: unknown key \"%s\" (allowed: name, url or path, filename, "
                        "sha256, size, scale)", where, it->string);
    }
    return 0;
}

/* An optional string member: NULL when absent, error when not a string. */
static int opt_string(const cJSON *obj, const char *key, const char *where, const char **out,
                      char *err, size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = NULL;
    if (!v) return 0;
    if (!cJSON_IsString(v)) return sd_error(err, errlen, "%s: \"%s\" must be a string", where, key);
    *out = v->valuestring;
    return 0;
}

static char *resolve_path(const char *path, const char *base_dir)
{
    if (path[0] == '/' || !base_dir || !*base_dir) return strdup(path);
    size_t n = strlen(base_dir) + strlen(path) + 2;
    char *out = malloc(n);
    if (out) snprintf(out, n, "%s/%s", base_dir, path);
    return out;
}

static int parse_location(const cJSON *obj, const char *where, const char *base_dir,
                          models_entry *e, char *err, size_t errlen)
{
    const char *url, *path, *filename;
    char why[256];
    if (opt_string(obj, "url", where, &url, err, errlen) ||
        opt_string(obj, "path", where, &path, err, errlen) ||
        opt_string(obj, "filename", where, &filename, err, errlen))
        return -1;
    if (url && path) return sd_error(err, errlen, "%s: give either \"url\" or \"path\", not both", where);
    if (!url && !path) return sd_error(err, errlen, "%s: needs \"url\" (http or https) or a local \"path\"", where);
    if (url && !is_http_url(url))
        return sd_error(err, errlen, "%s: \"url\" must be an http:// or https:// URL with a host", where);
    if (path && !*path) return sd_error(err, errlen, "%s: \"path\" is empty", where);
    if (url && !filename) return sd_error(err, errlen, "%s: \"filename\" is required with \"url\"", where);
    if (filename && models_filename_check(filename, why, sizeof why))
        return sd_error(err, errlen, "%s: \"filename\" %s", where, why);
    if (url) e->url = strdup(url);
    if (path) e->path = resolve_path(path, base_dir);
    if (filename) {
        e->filename = strdup(filename);
    } else {
        const char *slash = strrchr(path, '/');
        e->filename = strdup(slash ? slash + 1 : path);
    }
    return (e->url || e->path) && e->filename ? 0 : sd_error(err, errlen, "out of memory");
}

static int parse_checks(const cJSON *obj, const char *where, models_entry *e, char *err, size_t errlen)
{
    const cJSON *sha = cJSON_GetObjectItemCaseSensitive(obj, "sha256");
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(obj, "size");
    char why[128];
    if (sha && !cJSON_IsNull(sha)) {
        if (!cJSON_IsString(sha) || parse_sha256(sha->valuestring, e->sha256, why, sizeof why))
            return sd_error(err, errlen, "%s: \"sha256\" %s", where,
                        cJSON_IsString(sha) ? why : "must be a string of 64 hex digits");
    }
    if (size && !cJSON_IsNull(size)) {
        double d = cJSON_IsNumber(size) ? size->valuedouble : -1;
        if (!(d >= 1 && d <= 9007199254740992.0 && floor(d) == d))
            return sd_error(err, errlen, "%s: \"size\" must be a positive whole number of bytes", where);
        e->size = (uint64_t)d;
    }
    return 0;
}

static int parse_entry(const cJSON *obj, const char *where, bool is_lora, const char *base_dir,
                       models_entry *e, char *err, size_t errlen)
{
    memset(e, 0, sizeof *e);
    e->scale = 1.0;
    if (!cJSON_IsObject(obj)) return sd_error(err, errlen, "%s must be an object", where);
    if (check_known_keys(obj, where, err, errlen)) return -1;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(obj, "name");
    if (!cJSON_IsString(name) || !*name->valuestring)
        return sd_error(err, errlen, "%s: \"name\" must be a non-empty string", where);
    if (!(e->name = strdup(name->valuestring))) return sd_error(err, errlen, "out of memory");
    if (parse_location(obj, where, base_dir, e, err, errlen) || parse_checks(obj, where, e, err, errlen))
        return -1;
    const cJSON *scale = cJSON_GetObjectItemCaseSensitive(obj, "scale");
    if (is_lora) {
        if (!cJSON_IsNumber(scale) || !isfinite(scale->valuedouble))
            return sd_error(err, errlen, "%s (\"%s\"): \"scale\" must be a number", where, e->name);
        e->scale = scale->valuedouble;
    } else if (scale) {
        return sd_error(err, errlen, "%s: \"scale\" applies to LoRAs only", where);
    }
    return 0;
}

/* Names must be unique within a list: jobs and prompts name its entries. Two
 * entries of one directory with one file name would overwrite each other.
 * The first `single` entries came from the one-entry key of the same name
 * ("vae" before "vaes"). */
static int check_unique_list(const models_entry *e, size_t n, const char *list, size_t single, char *err,
                             size_t errlen)
{
    char a[64], b[64];
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++) {
            bool name = strcmp(e[i].name, e[j].name) == 0;
            if (!name && (strcmp(e[i].filename, e[j].filename) || !e[i].url || !e[j].url)) continue;
            snprintf(a, sizeof a, "%ss[%zu]", list, i - single);
            if (j < single) snprintf(b, sizeof b, "%s", list);
            else snprintf(b, sizeof b, "%ss[%zu]", list, j - single);
            return sd_error(err, errlen, "%s: %s \"%s\" is already used by %s", a, name ? "name" : "filename",
                            name ? e[i].name : e[i].filename, b);
        }
    return 0;
}

/* An optional list of entries ("vaes", "embeddings"), appended to *out. */
static int parse_list(const cJSON *list, const char *key, const char *base_dir, models_entry **out, size_t *n,
                      char *err, size_t errlen)
{
    if (!list || cJSON_IsNull(list)) return 0;
    if (!cJSON_IsArray(list)) return sd_error(err, errlen, "\"%s\" must be an array", key);
    models_entry *grown = realloc(*out, (*n + (size_t)cJSON_GetArraySize(list) + 1) * sizeof *grown);
    if (!grown) return sd_error(err, errlen, "out of memory");
    *out = grown;
    size_t i = 0;
    for (const cJSON *it = list->child; it; it = it->next, i++) {
        char where[48];
        snprintf(where, sizeof where, "%s[%zu]", key, i);
        if (parse_entry(it, where, false, base_dir, &(*out)[(*n)++], err, errlen)) return -1;
    }
    return 0;
}

/* "vae" (one entry, listed first) and "vaes"; "embeddings". */
static int parse_choices(const cJSON *root, const char *base_dir, models_config *out, char *err, size_t errlen)
{
    const cJSON *vae = cJSON_GetObjectItemCaseSensitive(root, "vae");
    if (vae && !cJSON_IsNull(vae)) {
        if (!(out->vaes = calloc(1, sizeof *out->vaes))) return sd_error(err, errlen, "out of memory");
        if (parse_entry(vae, "vae", false, base_dir, &out->vaes[out->n_vaes++], err, errlen)) return -1;
    }
    if (parse_list(cJSON_GetObjectItemCaseSensitive(root, "vaes"), "vaes", base_dir, &out->vaes, &out->n_vaes, err,
                   errlen) ||
        parse_list(cJSON_GetObjectItemCaseSensitive(root, "embeddings"), "embeddings", base_dir, &out->embeddings,
                   &out->n_embeddings, err, errlen))
        return -1;
    return check_unique_list(out->vaes, out->n_vaes, "vae", vae && !cJSON_IsNull(vae), err, errlen) ||
           check_unique_list(out->embeddings, out->n_embeddings, "embedding", 0, err, errlen) ? -1 : 0;
}

/* Two LoRAs with one name can't be told apart in a job; two entries with one
 * file name would overwrite each other when the directories coincide. */
static int check_unique(const models_config *c, char *err, size_t errlen)
{
    for (size_t i = 0; i < c->n_loras; i++) {
        if (strcmp(c->loras[i].filename, c->checkpoint.filename) == 0 && c->loras[i].url && c->checkpoint.url)
            return sd_error(err, errlen, "loras[%zu]: filename \"%s\" is also the checkpoint's", i, c->loras[i].filename);
        for (size_t j = 0; j < i; j++) {
            if (strcmp(c->loras[i].name, c->loras[j].name) == 0)
                return sd_error(err, errlen, "loras[%zu]: name \"%s\" is already used by loras[%zu]", i, c->loras[i].name, j);
            if (strcmp(c->loras[i].filename, c->loras[j].filename) == 0 && c->loras[i].url && c->loras[j].url)
                return sd_error(err, errlen, "loras[%zu]: filename \"%s\" is already used by loras[%zu]", i,
                            c->loras[i].filename, j);
        }
    }
    return 0;
}

static int parse_loras(const cJSON *loras, const char *base_dir, models_config *out, char *err, size_t errlen)
{
    if (!loras || cJSON_IsNull(loras)) return 0;
    if (!cJSON_IsArray(loras)) return sd_error(err, errlen, "\"loras\" must be an array");
    size_t n = (size_t)cJSON_GetArraySize(loras);
    out->loras = calloc(n ? n : 1, sizeof *out->loras);
    if (!out->loras) return sd_error(err, errlen, "out of memory");
    for (const cJSON *it = loras->child; it; it = it->next) {
        char where[32];
        snprintf(where, sizeof where, "loras[%zu]", out->n_loras);
        if (parse_entry(it, where, true, base_dir, &out->loras[out->n_loras++], err, errlen)) return -1;
    }
    return 0;
}

int models_config_parse(const char *json, size_t len, const char *base_dir,
                        models_config *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    /* upstream cJSON 1.7.15 may read one byte past `len`: give it a terminated copy */
    char *text = malloc(len + 1);
    if (!text) return sd_error(err, errlen, "out of memory");
    memcpy(text, json, len);
    text[len] = 0;
    cJSON *root = cJSON_ParseWithLength(text, len);
    long near = !root && cJSON_GetErrorPtr() ? (long)(cJSON_GetErrorPtr() - text) : 0L;
    free(text);
    if (!root) return sd_error(err, errlen, "not valid JSON (near byte %ld)", near);
    int rc = -1;
    if (!cJSON_IsObject(root)) {
        sd_error(err, errlen, "the top level must be an object with \"checkpoint\" and \"loras\"");
    } else if (!cJSON_GetObjectItemCaseSensitive(root, "checkpoint")) {
        sd_error(err, errlen, "\"checkpoint\" is missing");
    } else if (parse_entry(cJSON_GetObjectItemCaseSensitive(root, "checkpoint"), "checkpoint", false,
                           base_dir, &out->checkpoint, err, errlen) == 0 &&
               parse_loras(cJSON_GetObjectItemCaseSensitive(root, "loras"), base_dir, out, err, errlen) == 0 &&
               check_unique(out, err, errlen) == 0 && parse_choices(root, base_dir, out, err, errlen) == 0) {
        rc = 0;
    }
    cJSON_Delete(root);
    if (rc) models_config_free(out);
    return rc;
}

int models_config_load(const char *path, models_config *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) return sd_error(err, errlen, "models config %s: %s (set MODELS_CONFIG)", path, strerror(errno));
    enum { MAX_CONFIG = 16 << 20 };
    char *buf = malloc(MAX_CONFIG + 1);
    size_t n = buf ? fread(buf, 1, MAX_CONFIG + 1, f) : 0;
    int read_error = ferror(f);
    fclose(f);
    if (!buf) return sd_error(err, errlen, "models config %s: out of memory", path);
    if (read_error || n > MAX_CONFIG) {
        free(buf);
        return sd_error(err, errlen, "models config %s: %s", path, read_error ? "read error" : "larger than 16 MiB");
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    char why[768];
    int rc = models_config_parse(buf, n, slash ? (dir[0] ? dir : "/") : NULL, out, why, sizeof why);
    free(buf);
    return rc ? sd_error(err, errlen, "models config %s: %s", path, why) : 0;
}

static void entry_free(models_entry *e)
{
    free(e->name);
    free(e->url);
    free(e->path);
    free(e->filename);
    memset(e, 0, sizeof *e);
}

void models_config_free(models_config *cfg)
{
    if (!cfg) return;
    entry_free(&cfg->checkpoint);
    for (size_t i = 0; i < cfg->n_loras; i++) entry_free(&cfg->loras[i]);
    for (size_t i = 0; i < cfg->n_vaes; i++) entry_free(&cfg->vaes[i]);
    for (size_t i = 0; i < cfg->n_embeddings; i++) entry_free(&cfg->embeddings[i]);
    free(cfg->loras);
    free(cfg->vaes);
    free(cfg->embeddings);
    memset(cfg, 0, sizeof *cfg);
}

/* ---- environment ------------------------------------------------------- */

static bool readable(const char *path) { return access(path, R_OK) == 0; }

int models_find_config(const char *name, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s", name);
    if (name[0] == '/') return readable(out) ? 0 : -1;
    if (readable(name)) return 0;
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        char cand[8192];
        const char *fmts[] = {"%s/../%s", "%s/%s"};
        for (int i = 0; i < 2; i++) {
            snprintf(cand, sizeof cand, fmts[i], exe, name);
            if (readable(cand)) {
                char *real = realpath(cand, NULL);
                snprintf(out, outlen, "%s", real ? real : cand);
                free(real);
                return 0;
            }
        }
    }
    return -1;
}

static const char *env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return v && *v ? v : fallback;
}

/* The variable `var`, else root/sub. */
static void model_subdir(char *out, size_t n, const char *var, const char *root, const char *sub)
{
    const char *v = getenv(var);
    if (v && *v) snprintf(out, n, "%s", v);
    else snprintf(out, n, "%s/%s", root, sub);
}

int models_env_from_environ(models_env *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    models_find_config(env_or("MODELS_CONFIG", MODELS_DEFAULT_CONFIG), out->config_path, sizeof out->config_path);
    const char *root = env_or("MODELS_DIR", MODELS_DEFAULT_DIR);
    const char *ckpt = getenv("CHECKPOINT_DIR"), *lora = getenv("LORA_DIR");
    if (ckpt && *ckpt) snprintf(out->checkpoint_dir, sizeof out->checkpoint_dir, "%s", ckpt);
    else snprintf(out->checkpoint_dir, sizeof out->checkpoint_dir, "%s/checkpoints", root);
    if (lora && *lora) snprintf(out->lora_dir, sizeof out->lora_dir, "%s", lora);
    else snprintf(out->lora_dir, sizeof out->lora_dir, "%s/loras", root);
    model_subdir(out->vae_dir, sizeof out->vae_dir, "VAE_DIR", root, "vae");
    model_subdir(out->embedding_dir, sizeof out->embedding_dir, "EMBEDDINGS_DIR", root, "embeddings");
    const char *key = env_or("CIVITAI_API_KEY", "");
    if (strlen(key) >= sizeof out->api_key) return sd_error(err, errlen, "CIVITAI_API_KEY is implausibly long");
    snprintf(out->api_key, sizeof out->api_key, "%s", key);
    const char *host = env_or("CIVITAI_HOST", NULL);
    char why[256];
    if (host && civitai_origin_normalize(host, out->civitai_origin, sizeof out->civitai_origin, why, sizeof why))
        return sd_error(err, errlen, "CIVITAI_HOST: %s", why);
    return 0;
}
