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
