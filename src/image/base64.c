/* Base64 encoding (OpenSSL EVP_EncodeBlock) and a strict decoder with data
 * URI support (see base64.h for the accepted forms). */
#include "image/base64.h"

#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

char *b64_encode(const void *data, size_t len, size_t *outlen)
{
    if (len > (SIZE_MAX / 4 - 4) * 3 || len > (size_t)INT32_MAX / 4 * 3) return NULL;
    size_t n = (len + 2) / 3 * 4;
    char *out = malloc(n + 1);
    if (!out) return NULL;
    int got = EVP_EncodeBlock((unsigned char *)out, data, (int)len); /* writes the NUL too */
    if (outlen) *outlen = (size_t)got;
    return out;
}

static bool is_b64_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* 0..63, or -1 for a byte outside the standard alphabet. */
static int sextet(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Skips a `data:...;base64,` prefix; *skip gets its length (0 when the text
 * is not a data URI). 0, or -1 for a data URI we do not accept. */
static int data_uri_prefix(const char *t, size_t len, size_t *skip, char *err, size_t errlen)
{
    *skip = 0;
    if (len < 5 || strncasecmp(t, "data:", 5) != 0) return 0;
    const char *comma = memchr(t, ',', len);
    if (!comma) {
        snprintf(err, errlen, "data URI without a ',' before its data");
        return -1;
    }
    size_t head = (size_t)(comma - t);
    const char *media = t + 5;
    size_t mlen = 0;
    while (5 + mlen < head && media[mlen] != ';') mlen++;
    if (mlen > 0 && (mlen < 6 || strncasecmp(media, "image/", 6) != 0)) {
        snprintf(err, errlen, "data URI media type '%.*s' is not an image type", (int)(mlen > 64 ? 64 : mlen), media);
        return -1;
    }
    if (head < 7 || strncasecmp(comma - 7, ";base64", 7) != 0) {
        snprintf(err, errlen, "data URI is not base64 (';base64' missing before ',')");
        return -1;
    }
    *skip = head + 1;
    return 0;
}

int b64_decode(const char *text, size_t len, size_t max_out, uint8_t **out, size_t *outlen,
               char *err, size_t errlen)
{
    *out = NULL;
    *outlen = 0;
    size_t skip;
    if (data_uri_prefix(text, len, &skip, err, errlen) != 0) return -1;

    /* Pass 1: validate and count. */
    size_t digits = 0, pads = 0;
    for (size_t i = skip; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (is_b64_space(c)) continue;
        if (c == '=') { pads++; continue; }
        if (sextet(c) < 0 || pads) {
            if (pads) snprintf(err, errlen, "base64: data after '=' padding at offset %zu", i);
            else if (c >= 0x20 && c < 0x7f) snprintf(err, errlen, "base64: invalid character '%c' at offset %zu", c, i);
            else snprintf(err, errlen, "base64: invalid byte 0x%02x at offset %zu", c, i);
            return -1;
        }
        digits++;
    }
    if (digits == 0) {
        snprintf(err, errlen, "base64: no data");
        return -1;
    }
    if (digits % 4 == 1 || (pads && (digits + pads) % 4 != 0) || pads > 2) {
        snprintf(err, errlen, "base64: truncated data (%zu digits, %zu '=')", digits, pads);
        return -1;
    }
    size_t n = digits / 4 * 3 + (digits % 4 ? digits % 4 - 1 : 0);
    if (max_out && n > max_out) {
        snprintf(err, errlen, "base64: decoded size %zu bytes is over the limit of %zu", n, max_out);
        return -1;
    }

    /* Pass 2: decode. */
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        snprintf(err, errlen, "base64: out of memory for %zu bytes", n);
        return -1;
    }
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = skip; i < len && o < n; i++) {
        int v = sextet((unsigned char)text[i]);
        if (v < 0) continue;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[o++] = (uint8_t)(acc >> bits);
        }
    }
    *out = buf;
    *outlen = n;
    return 0;
}
