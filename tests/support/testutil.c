/* Implementation of the shared test helpers (see testutil.h). */
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cjson/cJSON.h>

char *tu_mkdtemp(const char *prefix)
{
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/%s-XXXXXX", base && *base ? base : "/tmp", prefix);
    return mkdtemp(tmpl) ? strdup(tmpl) : NULL;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

void tu_rm_rf(const char *path)
{
    if (path) nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

char *tu_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) buf = realloc(buf, (cap *= 2) + 1);
    }
    fclose(f);
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

cJSON *tu_read_json(const char *path)
{
    size_t len;
    char *text = tu_read_file(path, &len);
    cJSON *doc = text ? cJSON_ParseWithLength(text, len) : NULL;
    free(text);
    if (!doc) fprintf(stderr, "cannot read or parse %s\n", path);
    return doc;
}

double tu_max_abs_diff(const float *got, const float *want, size_t n)
{
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (isnan(d)) return INFINITY;
        if (d > worst) worst = d;
    }
    return worst;
}

double tu_rel_error(const float *got, const float *want, size_t n)
{
    double scale = 0.0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs((double)want[i]));
    return tu_max_abs_diff(got, want, n) / (scale > 0 ? scale : 1.0);
}

int tu_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(data, 1, len, f) == len;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

const char *tu_worker_bin(void)
{
    const char *p = getenv("SDXL_WORKER_BIN");
    return p && *p ? p : "build/sdxl-worker";
}

int tu_free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof a;
    bind(s, (struct sockaddr *)&a, sizeof a);
    getsockname(s, (struct sockaddr *)&a, &n);
    close(s);
    return ntohs(a.sin_port);
}

size_t tu_curl_collect(char *data, size_t size, size_t n, void *buf)
{
    tu_buf *b = buf;
    b->data = realloc(b->data, b->len + size * n + 1);
    memcpy(b->data + b->len, data, size * n);
    b->len += size * n;
    b->data[b->len] = '\0';
    return size * n;
}

extern char **environ;

/* Whether environment entry e ("NAME=value") is named by spec entry n
 * ("NAME=..." or "NAME"). */
static int same_name(const char *e, const char *n)
{
    size_t k = strcspn(n, "=");
    return !strncmp(e, n, k) && e[k] == '=';
}

/* This process's environment with the spec's changes (malloc'd array). */
static char **child_environment(const tu_spawn_spec *spec)
{
    size_t n = 0, extra = 0;
    while (environ[n]) n++;
    for (const char *const *e = spec->env; e && *e; e++) extra++;
    char **out = calloc(n + extra + 1, sizeof *out);
    if (!out) return NULL;
    size_t k = 0;
    for (char **e = environ; *e; e++) {
        int drop = spec->clear_runpod && !strncmp(*e, "RUNPOD_", 7);
        for (const char *const *c = spec->env; !drop && c && *c; c++) drop = same_name(*e, *c);
        if (!drop) out[k++] = *e;
    }
    for (const char *const *c = spec->env; c && *c; c++)
        if (strchr(*c, '=')) out[k++] = (char *)*c;
    return out;
}

int tu_spawn(const tu_spawn_spec *spec)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    int flags = O_WRONLY | O_CREAT | O_TRUNC;
    if (spec->stdout_path) posix_spawn_file_actions_addopen(&fa, 1, spec->stdout_path, flags, 0644);
    if (spec->stderr_path && spec->stdout_path && !strcmp(spec->stderr_path, spec->stdout_path))
        posix_spawn_file_actions_adddup2(&fa, 1, 2);
    else if (spec->stderr_path)
        posix_spawn_file_actions_addopen(&fa, 2, spec->stderr_path, flags, 0644);
    if (spec->cwd) posix_spawn_file_actions_addchdir_np(&fa, spec->cwd);
    char **envp = child_environment(spec);
    pid_t pid = -1;
    int rc = envp ? posix_spawn(&pid, spec->path, &fa, NULL, spec->argv, envp) : ENOMEM;
    posix_spawn_file_actions_destroy(&fa);
    free(envp);
    if (rc) {
        fprintf(stderr, "cannot start %s: %s\n", spec->path, strerror(rc));
        return -1;
    }
    return pid;
}
