/* Captures everything written to a file descriptor (stderr, stdout) into a
 * temporary file, so a test can assert on log lines, or on what must never
 * be printed (secrets). */
#ifndef SDXL_FD_CAPTURE_H
#define SDXL_FD_CAPTURE_H

#include <stddef.h>

typedef struct {
    int fd;       /* the descriptor captured */
    int saved;    /* its original target */
    int file;     /* the temporary file */
} fd_capture;

/* Redirects fd into a fresh temporary file. 0 or -1. */
int fd_capture_start(fd_capture *c, int fd);
/* Restores fd and returns what was written (malloc'd, NUL-terminated). */
char *fd_capture_end(fd_capture *c, size_t *len);

#endif
