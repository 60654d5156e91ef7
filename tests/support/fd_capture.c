/* fd capture for tests (see fd_capture.h): dup2 onto an unlinked temp file. */
#include "fd_capture.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int fd_capture_start(fd_capture *c, int fd)
{
    char path[] = "/tmp/fdcap-XXXXXX";
    fflush(NULL);
    c->fd = fd;
    c->file = mkstemp(path);
    if (c->file < 0) return -1;
    unlink(path);
    c->saved = dup(fd);
    return c->saved >= 0 && dup2(c->file, fd) >= 0 ? 0 : -1;
}

char *fd_capture_end(fd_capture *c, size_t *len)
{
    fflush(NULL);
    dup2(c->saved, c->fd);
    close(c->saved);
    off_t n = lseek(c->file, 0, SEEK_END);
    char *buf = malloc(n > 0 ? (size_t)n + 1 : 1);
    size_t got = n > 0 && pread(c->file, buf, (size_t)n, 0) == n ? (size_t)n : 0;
    buf[got] = 0;
    close(c->file);
    if (len) *len = got;
    return buf;
}
