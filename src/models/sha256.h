/* SHA-256 of model files (OpenSSL EVP), shared by the downloader (which
 * hashes bytes as they arrive, after the prefix already on disk when it
 * resumes), the store (which checks files found on disk) and image/hashes
 * (A1111's file hashes, some over a range of the file). */
#ifndef SDXL_MODELS_SHA256_H
#define SDXL_MODELS_SHA256_H

#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>

/* Feeds bytes [off, end) of the open file `fd` (read with pread, advised
 * sequential) into ctx. Returns 0, or -1 with errno set (a short file gives EIO). */
int sha256_update_from_fd(EVP_MD_CTX *ctx, int fd, uint64_t off, uint64_t end);
/* Hashes a whole file; *size gets its length. 0, or -1 with a reason in err. */
int sha256_file(const char *path, unsigned char out[32], uint64_t *size, char *err, size_t errlen);
/* Lower-case hex, NUL-terminated. */
void sha256_hex(const unsigned char digest[32], char hex[65]);

#endif
