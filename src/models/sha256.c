/* SHA-256 helpers over files (see sha256.h). Reads in 4 MiB blocks. */
#include "models/sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BLOCK (4u << 20)

int sha256_update_from_fd(EVP_MD_CTX *ctx, int fd, uint64_t off, uint64_t end)
{
    unsigned char *buf = malloc(BLOCK);
    if (!buf) { errno = ENOMEM; return -1; }
    posix_fadvise(fd, (off_t)off, 0, POSIX_FADV_SEQUENTIAL);
    while (off < end) {
        size_t want = end - off < BLOCK ? (size_t)(end - off) : BLOCK;
        ssize_t got = pread(fd, buf, want, (off_t)off);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            if (got == 0) errno = EIO;
            free(buf);
            return -1;
        }
        EVP_DigestUpdate(ctx, buf, (size_t)got);
        off += (uint64_t)got;
    }
    free(buf);
    return 0;
}

int sha256_file(const char *path, unsigned char out[32], uint64_t *size, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int rc = -1;
    if (ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1) {
        if (sha256_update_from_fd(ctx, fd, 0, (uint64_t)st.st_size) == 0 &&
            EVP_DigestFinal_ex(ctx, out, NULL) == 1)
            rc = 0;
        else
            snprintf(err, errlen, "%s: read error while hashing: %s", path, strerror(errno));
    } else {
        snprintf(err, errlen, "%s: cannot initialise SHA-256", path);
    }
    EVP_MD_CTX_free(ctx);
    close(fd);
    if (rc == 0) *size = (uint64_t)st.st_size;
    return rc;
}

void sha256_hex(const unsigned char digest[32], char hex[65])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 15];
    }
    hex[64] = 0;
}
