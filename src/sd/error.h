/* The one way the engine's modules (and models/config) write an error
 * message: printf into the caller's err[errlen] buffer and return -1. */
#ifndef SDXL_SD_ERROR_H
#define SDXL_SD_ERROR_H

#include <stddef.h>

/* Formats into err (nothing when err is NULL or errlen is 0); returns -1. */
int sd_error(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* sd_error, then `status`: for functions that return a status code. */
#define SD_FAIL(status, err, errlen, ...) (sd_error((err), (errlen), __VA_ARGS__), (status))

#endif
