/* The worker's logger (see log.h; spec runpod-protocol.md §8), matching
 * runpod-python's RunPodLogger.log (runpod/serverless/modules/rp_logger.py):
 * threshold check, cut of messages over 4096 characters, plain
 * "LEVEL  | job | msg" or json.dumps-style JSON lines. Differences on purpose:
 * output goes to stderr, WARNING is accepted, and registered secrets are
 * masked before anything else happens to the text (so a cut never splits a
 * secret into two unmasked halves). One mutex guards the state and every
 * line is one write(2). */
#include "runpod/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define MAX_MESSAGE_CHARS 4096 /* rp_logger.MAX_MESSAGE_LENGTH */
#define MIN_SECRET_LEN 4       /* shorter values would mask ordinary words */
#define MASK_EDGES_FROM 12     /* secrets this long keep first+last char */

static const char *const level_names[] = {"NOTSET", "TRACE", "DEBUG", "INFO", "WARN", "ERROR"};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int threshold = RP_LOG_DEBUG;
static atomic_bool level_from_flag; /* rp_log_set_level beats the env */
static bool json_lines;
static char **secrets; /* longest first, so a contained secret can't split one */
static size_t n_secrets;

/* ---- levels ------------------------------------------------------------ */

int rp_log_parse_level(const char *name, rp_log_level *out)
{
    if (!name) return -1;
    for (int i = 0; i <= RP_LOG_ERROR; i++)
        if (strcasecmp(name, level_names[i]) == 0) { *out = (rp_log_level)i; return 0; }
    if (strcasecmp(name, "WARNING") == 0) { *out = RP_LOG_WARN; return 0; }
    return -1;
}

const char *rp_log_level_name(rp_log_level level)
{
    return level >= RP_LOG_NOTSET && level <= RP_LOG_ERROR ? level_names[level] : "INFO";
}

void rp_log_set_level(rp_log_level level)
{
    atomic_store(&threshold, level);
    atomic_store(&level_from_flag, true);
}

rp_log_level rp_log_get_level(void) { return (rp_log_level)atomic_load(&threshold); }

void rp_log_set_json(bool on)
{
    pthread_mutex_lock(&lock);
    json_lines = on;
    pthread_mutex_unlock(&lock);
}

static bool level_enabled(rp_log_level level)
{
    int t = atomic_load(&threshold);
    return t != RP_LOG_NOTSET && level != RP_LOG_NOTSET && (int)level >= t;
}

/* ---- secrets ----------------------------------------------------------- */

/* The mask that replaces a secret: never longer than the secret, and it shows
 * at most its first and last character (only for long secrets). */
static size_t mask_of(const char *secret, size_t len, char out[7])
{
    if (len >= MASK_EDGES_FROM) {
        out[0] = secret[0];
        memcpy(out + 1, "****", 4);
        out[5] = secret[len - 1];
        return 6;
    }
    memcpy(out, "****", 4);
    return 4;
}

/* Replaces every occurrence of one secret in buf[0..len) in place (the mask
 * is never longer than the secret); returns the new length. */
static size_t redact_one(char *buf, size_t len, const char *secret)
{
    size_t slen = strlen(secret), r = 0, w = 0;
    char mask[7];
    size_t mlen = mask_of(secret, slen, mask);
    while (r < len) {
        if (len - r >= slen && memcmp(buf + r, secret, slen) == 0) {
            memcpy(buf + w, mask, mlen);
            w += mlen;
            r += slen;
        } else {
            buf[w++] = buf[r++];
        }
    }
    return w;
}

/* Caller holds the lock. */
static size_t redact_locked(char *buf, size_t len)
{
    for (size_t i = 0; i < n_secrets; i++) len = redact_one(buf, len, secrets[i]);
    return len;
}

void rp_log_add_secret(const char *value)
{
    if (!value || strlen(value) < MIN_SECRET_LEN) return;
    pthread_mutex_lock(&lock);
    bool known = false;
    for (size_t i = 0; i < n_secrets && !known; i++) known = strcmp(secrets[i], value) == 0;
    char *copy = known ? NULL : strdup(value);
    char **grown = copy ? realloc(secrets, (n_secrets + 1) * sizeof *secrets) : NULL;
    if (grown) {
        size_t at = n_secrets, vlen = strlen(copy);
        while (at > 0 && strlen(grown[at - 1]) < vlen) { grown[at] = grown[at - 1]; at--; }
        grown[at] = copy;
        secrets = grown;
        n_secrets++;
    } else {
        free(copy);
    }
    pthread_mutex_unlock(&lock);
}

void rp_log_redact(char *buf)
{
    if (!buf) return;
    pthread_mutex_lock(&lock);
    size_t len = redact_locked(buf, strlen(buf));
    buf[len] = '\0';
    pthread_mutex_unlock(&lock);
}

/* ---- environment ------------------------------------------------------- */

static const char *env_nonempty(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

void rp_log_init_from_env(void)
{
    static const char *const secret_vars[] = {
        "RUNPOD_AI_API_KEY", "CIVITAI_API_KEY", "BUCKET_ACCESS_KEY_ID", "BUCKET_SECRET_ACCESS_KEY",
    };
    for (size_t i = 0; i < sizeof secret_vars / sizeof *secret_vars; i++)
        rp_log_add_secret(env_nonempty(secret_vars[i]));
    rp_log_set_json(env_nonempty("RUNPOD_ENDPOINT_ID") != NULL);

    if (atomic_load(&level_from_flag)) return;
    const char *var = env_nonempty("RUNPOD_LOG_LEVEL") ? "RUNPOD_LOG_LEVEL" : "RUNPOD_DEBUG_LEVEL";
    const char *name = env_nonempty(var);
    rp_log_level level = RP_LOG_DEBUG;
    bool valid = !name || rp_log_parse_level(name, &level) == 0;
    atomic_store(&threshold, valid ? level : RP_LOG_DEBUG);
    if (!valid) rp_log(RP_LOG_WARN, NULL, "Invalid %s '%s'; using DEBUG.", var, name);
}

void rp_log_reset(void)
{
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < n_secrets; i++) free(secrets[i]);
    free(secrets);
    secrets = NULL;
    n_secrets = 0;
    json_lines = false;
    pthread_mutex_unlock(&lock);
    atomic_store(&threshold, RP_LOG_DEBUG);
    atomic_store(&level_from_flag, false);
}

/* ---- line building ----------------------------------------------------- */

typedef struct { char *data; size_t len, cap; bool failed; } strbuf;

static void sb_put(strbuf *sb, const char *s, size_t n)
{
    if (sb->failed) return;
    if (sb->len + n + 1 > sb->cap) {
        size_t cap = (sb->len + n + 1) * 2;
        char *p = realloc(sb->data, cap);
        if (!p) { sb->failed = true; return; }
        sb->data = p;
        sb->cap = cap;
    }
    memcpy(sb->data + sb->len, s, n);
    sb->len += n;
    sb->data[sb->len] = '\0';
}

static void sb_puts(strbuf *sb, const char *s) { sb_put(sb, s, strlen(s)); }

/* Decodes one UTF-8 character at s (n bytes left). Returns the code point, or
 * -1 for an invalid byte; *adv gets the bytes consumed (1 when invalid).
 * A Python str counts characters, so the cut and the escapes use this. */
static long utf8_next(const unsigned char *s, size_t n, size_t *adv)
{
    *adv = 1;
    if (s[0] < 0x80) return s[0];
    int extra = s[0] >= 0xF0 && s[0] <= 0xF4 ? 3 : s[0] >= 0xE0 ? 2 : s[0] >= 0xC2 && s[0] < 0xE0 ? 1 : -1;
    if (extra < 0 || (size_t)extra >= n) return -1;
    long cp = s[0] & (0x3F >> extra);
    for (int i = 1; i <= extra; i++) {
        if ((s[i] & 0xC0) != 0x80) return -1;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    static const long min_cp[] = {0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return -1;
    *adv = (size_t)extra + 1;
    return cp;
}

static size_t utf8_chars(const char *s, size_t len)
{
    size_t chars = 0, adv;
    for (size_t i = 0; i < len; i += adv, chars++) utf8_next((const unsigned char *)s + i, len - i, &adv);
    return chars;
}

/* Byte offset of character number `index`. */
static size_t utf8_offset(const char *s, size_t len, size_t index)
{
    size_t i = 0, adv;
    while (index-- > 0 && i < len) { utf8_next((const unsigned char *)s + i, len - i, &adv); i += adv; }
    return i;
}

/* Appends msg, cut in the middle as rp_logger does when it is over 4096
 * characters: first 2048 + "\n...TRUNCATED <n> CHARACTERS...\n" + last 2048. */
static void put_message(strbuf *sb, const char *msg, size_t len)
{
    size_t chars = utf8_chars(msg, len);
    if (chars <= MAX_MESSAGE_CHARS) { sb_put(sb, msg, len); return; }
    size_t half = MAX_MESSAGE_CHARS / 2;
    size_t head = utf8_offset(msg, len, half), tail = utf8_offset(msg, len, chars - half);
    char note[64];
    snprintf(note, sizeof note, "\n...TRUNCATED %zu CHARACTERS...\n", chars - MAX_MESSAGE_CHARS);
    sb_put(sb, msg, head);
    sb_puts(sb, note);
    sb_put(sb, msg + tail, len - tail);
}

/* Appends s as a JSON string the way Python's json.dumps (ensure_ascii=True)
 * writes it: short escapes, \u00XX for other control bytes and DEL, \uXXXX
 * (surrogate pairs above the BMP) for non-ASCII; invalid UTF-8 → \ufffd. */
static void put_json_string(strbuf *sb, const char *s, size_t len)
{
    char esc[32];
    size_t adv;
    sb_puts(sb, "\"");
    for (size_t i = 0; i < len; i += adv) {
        long cp = utf8_next((const unsigned char *)s + i, len - i, &adv);
        if (cp < 0) cp = 0xFFFD;
        const char *shortform = cp == '"' ? "\\\"" : cp == '\\' ? "\\\\" : cp == '\n' ? "\\n"
                              : cp == '\r' ? "\\r" : cp == '\t' ? "\\t" : cp == '\b' ? "\\b"
                              : cp == '\f' ? "\\f" : NULL;
        if (shortform) { sb_puts(sb, shortform); continue; }
        if (cp >= 0x20 && cp < 0x7F) { char c = (char)cp; sb_put(sb, &c, 1); continue; }
        if (cp > 0xFFFF) {
            long v = cp - 0x10000;
            snprintf(esc, sizeof esc, "\\u%04lx\\u%04lx", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
        } else {
            snprintf(esc, sizeof esc, "\\u%04lx", cp);
        }
        sb_puts(sb, esc);
    }
    sb_puts(sb, "\"");
}

/* {"requestId": <id|null>, "message": "...", "level": "INFO"} */
static void build_json_line(strbuf *sb, rp_log_level level, const char *job_id, const char *msg, size_t len)
{
    strbuf text = {0};
    put_message(&text, msg, len);
    sb_puts(sb, "{\"requestId\": ");
    if (job_id) put_json_string(sb, job_id, strlen(job_id));
    else sb_puts(sb, "null");
    sb_puts(sb, ", \"message\": ");
    if (text.failed) sb->failed = true;
    else put_json_string(sb, text.data ? text.data : "", text.len);
    sb_puts(sb, ", \"level\": \"");
    sb_puts(sb, rp_log_level_name(level));
    sb_puts(sb, "\"}\n");
    free(text.data);
}

/* "INFO   | job | msg": level left-justified to 7 characters. */
static void build_plain_line(strbuf *sb, rp_log_level level, const char *job_id, const char *msg, size_t len)
{
    char head[16];
    snprintf(head, sizeof head, "%-7s| ", rp_log_level_name(level));
    sb_puts(sb, head);
    if (job_id && *job_id) { sb_puts(sb, job_id); sb_puts(sb, " | "); }
    put_message(sb, msg, len);
    sb_puts(sb, "\n");
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        p += w;
        n -= (size_t)w;
    }
}

/* Formats printf-style into a fresh buffer; NULL when out of memory. */
static char *format_message(const char *fmt, va_list ap, size_t *len)
{
    va_list copy;
    va_copy(copy, ap);
    int n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (n < 0) return NULL;
    char *buf = malloc((size_t)n + 1);
    if (buf) vsnprintf(buf, (size_t)n + 1, fmt, ap);
    *len = (size_t)n;
    return buf;
}

/* Masks secrets in msg (in place) and in the job id, then builds the line.
 * Caller holds the lock. Returns the line (caller frees) or NULL. */
static char *build_line_locked(rp_log_level level, const char *job_id, char *msg, size_t len, size_t *line_len)
{
    char *id = job_id ? strdup(job_id) : NULL;
    strbuf line = {0};
    len = redact_locked(msg, len);
    if (id) id[redact_locked(id, strlen(id))] = '\0';
    if (json_lines) build_json_line(&line, level, id, msg, len);
    else build_plain_line(&line, level, id, msg, len);
    free(id);
    if (line.failed) { free(line.data); return NULL; }
    *line_len = line.len;
    return line.data;
}

char *rp_log_format_line(rp_log_level level, const char *job_id, const char *message, size_t *len)
{
    size_t n = strlen(message), line_len = 0;
    char *msg = malloc(n + 1);
    if (!msg) return NULL;
    memcpy(msg, message, n + 1);
    pthread_mutex_lock(&lock);
    char *line = build_line_locked(level, job_id, msg, n, &line_len);
    pthread_mutex_unlock(&lock);
    free(msg);
    if (len) *len = line_len;
    return line;
}

void rp_vlog(rp_log_level level, const char *job_id, const char *fmt, va_list ap)
{
    if (!level_enabled(level) || !fmt) return;
    size_t len, line_len;
    char *msg = format_message(fmt, ap, &len);
    if (!msg) return;
    pthread_mutex_lock(&lock); /* held across the write: lines never interleave */
    char *line = build_line_locked(level, job_id, msg, len, &line_len);
    if (line) write_all(STDERR_FILENO, line, line_len);
    pthread_mutex_unlock(&lock);
    free(line);
    free(msg);
}

void rp_log(rp_log_level level, const char *job_id, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rp_vlog(level, job_id, fmt, ap);
    va_end(ap);
}

void rp_log_secret(const char *name, const char *value)
{
    char mask[7];
    mask[mask_of(value ? value : "", value ? strlen(value) : 0, mask)] = '\0';
    rp_log(RP_LOG_INFO, NULL, "%s: %s", name ? name : "secret", mask);
}
