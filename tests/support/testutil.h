/* Small helpers shared by the cmocka test programs: temp dirs, files,
 * paths of the built binary and of test data. */
#ifndef SDXL_TESTUTIL_H
#define SDXL_TESTUTIL_H

#include <stddef.h>

/* A fresh directory under $TMPDIR (or /tmp); caller frees the path. */
char *tu_mkdtemp(const char *prefix);
/* Removes a directory tree (best effort). */
void tu_rm_rf(const char *path);
/* Reads a whole file; returns malloc'd bytes (NUL-terminated) or NULL. */
char *tu_read_file(const char *path, size_t *len);
/* Reads and parses a JSON file; NULL (after saying why on stderr) when it
 * cannot be read or parsed. Caller frees with cJSON_Delete. */
struct cJSON *tu_read_json(const char *path);
/* Writes bytes to a file; 0 on success. */
int tu_write_file(const char *path, const void *data, size_t len);
/* max_i |got_i - want_i|; INFINITY when a difference is NaN. */
double tu_max_abs_diff(const float *got, const float *want, size_t n);
/* tu_max_abs_diff over max_i |want_i| (over 1 when want is all zeros). */
double tu_rel_error(const float *got, const float *want, size_t n);
/* Path of the built sdxl-worker binary (from $SDXL_WORKER_BIN). */
const char *tu_worker_bin(void);

/* Starts a program with posix_spawn: the child runs no code of this process
 * (a fork of a test process whose server threads may hold a lock, ASan's
 * allocator's included, can hang in the child). */
typedef struct {
    const char *path;
    char *const *argv;            /* argv[0] included */
    const char *const *env;       /* "NAME=value" to set, "NAME" to unset; NULL-terminated, or NULL */
    int clear_runpod;             /* leave out every RUNPOD_* variable of this process */
    const char *cwd;              /* NULL: this process's */
    const char *stdout_path;      /* NULL: this process's; the same path for both: one file */
    const char *stderr_path;
} tu_spawn_spec;
/* The child's pid, or -1 (with the reason on stderr). */
int tu_spawn(const tu_spawn_spec *spec);

/* A TCP port on 127.0.0.1 that was free a moment ago (for servers a test starts). */
int tu_free_port(void);

/* A growing, NUL-terminated byte buffer and the libcurl write callback that
 * appends to it (CURLOPT_WRITEDATA = the tu_buf). */
typedef struct {
    char *data;
    size_t len;
} tu_buf;
size_t tu_curl_collect(char *data, size_t size, size_t n, void *buf);

#endif
