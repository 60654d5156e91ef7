/* EXIF UserComment writer in piexif's exact layout, and bounds-checked
 * readers for UserComment and Orientation (see exif.h). */
#include "image/exif.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/utf8.h"

#define TAG_EXIF_IFD 0x8769
#define TAG_USER_COMMENT 0x9286
#define TAG_ORIENTATION 0x0112
#define TYPE_SHORT 3
#define TYPE_LONG 4
#define TYPE_UNDEFINED 7

static const uint8_t UNICODE_PREFIX[8] = {'U', 'N', 'I', 'C', 'O', 'D', 'E', 0};
static const uint8_t ASCII_PREFIX[8] = {'A', 'S', 'C', 'I', 'I', 0, 0, 0};
static const uint8_t UNDEFINED_PREFIX[8] = {0};

static void be16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void be32(uint8_t *p, uint32_t v) { be16(p, v >> 16); be16(p + 2, v & 0xFFFF); }

/* UTF-8 -> UTF-16BE (what Python's str.encode("utf_16_be") gives).
 * Returns the byte count, or -1 for invalid UTF-8. */
static long utf16be_from_utf8(const char *s, size_t len, uint8_t *out)
{
    size_t i = 0, o = 0;
    while (i < len) {
        uint32_t cp;
        if (utf8_next(s, len, &i, &cp) != 0) return -1;
        if (cp >= 0x10000) {
            cp -= 0x10000;
            if (out) { be16(out + o, 0xD800 | (cp >> 10)); be16(out + o + 2, 0xDC00 | (cp & 0x3FF)); }
            o += 4;
        } else {
            if (out) be16(out + o, cp);
            o += 2;
        }
    }
    return (long)o;
}

/* piexif.dump layout for {"Exif": {UserComment: v}} (piexif/_dump.py):
 *   0  "MM\0\x2a" + IFD0 offset 8
 *   8  IFD0: count 1, {0x8769 LONG 1 -> 26}, next-IFD 0        (18 bytes)
 *   26 Exif IFD: count 1, {0x9286 UNDEFINED n -> 40}           (14 bytes;
 *      piexif writes no next-IFD field for the Exif IFD)
 *   40 the n value bytes */
int exif_user_comment_build(const char *utf8, uint8_t **out, size_t *outlen, char *err, size_t errlen)
{
    size_t len = strlen(utf8);
    long u16 = utf16be_from_utf8(utf8, len, NULL);
    if (u16 < 0) {
        snprintf(err, errlen, "EXIF UserComment: the text is not valid UTF-8");
        return -1;
    }
    size_t n = 8 + (size_t)u16, total = 40 + n;
    uint8_t *b = malloc(total);
    if (!b) {
        snprintf(err, errlen, "EXIF UserComment: out of memory");
        return -1;
    }
    memcpy(b, "MM\0\x2a", 4);
    be32(b + 4, 8);
    be16(b + 8, 1);
    be16(b + 10, TAG_EXIF_IFD); be16(b + 12, TYPE_LONG); be32(b + 14, 1); be32(b + 18, 26);
    be32(b + 22, 0);
    be16(b + 26, 1);
    be16(b + 28, TAG_USER_COMMENT); be16(b + 30, TYPE_UNDEFINED); be32(b + 32, (uint32_t)n); be32(b + 36, 40);
    memcpy(b + 40, UNICODE_PREFIX, 8);
    utf16be_from_utf8(utf8, len, b + 48);
    *out = b;
    *outlen = total;
    return 0;
}

/* ---- reading -------------------------------------------------------------- */

typedef struct {
    const uint8_t *p;
    size_t len;
    bool le;
} tiff;

static uint32_t rd16(const tiff *t, size_t off)
{
    const uint8_t *q = t->p + off;
    return t->le ? (uint32_t)(q[0] | q[1] << 8) : (uint32_t)(q[0] << 8 | q[1]);
}
static uint32_t rd32(const tiff *t, size_t off)
{
    return t->le ? rd16(t, off) | rd16(t, off + 2) << 16 : rd16(t, off) << 16 | rd16(t, off + 2);
}

static int tiff_open(const uint8_t *p, size_t len, tiff *t, size_t *ifd0)
{
    if (len < 8) return -1;
    if (memcmp(p, "MM\0\x2a", 4) == 0) t->le = false;
    else if (memcmp(p, "II\x2a\0", 4) == 0) t->le = true;
    else return -1;
    t->p = p;
    t->len = len;
    *ifd0 = rd32(t, 4);
    return 0;
}

typedef struct {
    uint32_t type, count;
    size_t value_off; /* where the value bytes are (inline or pointed to) */
} ifd_entry;

static size_t type_size(uint32_t type)
{
    switch (type) {
    case 1: case 2: case 6: case 7: return 1;   /* BYTE ASCII SBYTE UNDEFINED */
    case 3: case 8: return 2;                   /* SHORT SSHORT */
    case 4: case 9: case 11: return 4;          /* LONG SLONG FLOAT */
    case 5: case 10: case 12: return 8;         /* RATIONAL SRATIONAL DOUBLE */
    default: return 0;
    }
}

/* Finds `tag` in the IFD at `ifd`: 0 found, 1 absent, -1 malformed. The
 * entry count field is read even when piexif omitted the next-IFD field. */
static int ifd_find(const tiff *t, size_t ifd, uint32_t tag, ifd_entry *e)
{
    if (ifd > t->len || t->len - ifd < 2) return -1;
    uint32_t count = rd16(t, ifd);
    if ((t->len - ifd - 2) / 12 < count) return -1;
    for (uint32_t k = 0; k < count; k++) {
        size_t at = ifd + 2 + (size_t)k * 12;
        if (rd16(t, at) != tag) continue;
        e->type = rd16(t, at + 2);
        e->count = rd32(t, at + 4);
        size_t sz = type_size(e->type);
        if (sz == 0 || e->count > t->len / sz) return -1;
        size_t bytes = sz * e->count;
        e->value_off = bytes <= 4 ? at + 8 : rd32(t, at + 8);
        if (e->value_off > t->len || t->len - e->value_off < bytes) return -1;
        return 0;
    }
    return 1;
}

/* UTF-16 (in the block's byte order) -> UTF-8; unpaired surrogates become
 * U+FFFD. malloc'd, NULL when out of memory. */
static char *utf8_from_utf16(const tiff *t, size_t off, size_t units)
{
    char *s = malloc(units * 3 + 1);
    if (!s) return NULL;
    size_t o = 0;
    for (size_t k = 0; k < units; k++) {
        uint32_t c = rd16(t, off + 2 * k);
        if (c >= 0xD800 && c <= 0xDBFF && k + 1 < units) {
            uint32_t d = rd16(t, off + 2 * (k + 1));
            if (d >= 0xDC00 && d <= 0xDFFF) {
                c = 0x10000 + ((c - 0xD800) << 10) + (d - 0xDC00);
                k++;
            }
        }
        if (c >= 0xD800 && c <= 0xDFFF) c = 0xFFFD;
        o += utf8_put(c, s + o);
    }
    s[o] = 0;
    return s;
}

int exif_user_comment_read(const uint8_t *p, size_t len, char **utf8)
{
    *utf8 = NULL;
    tiff t;
    size_t ifd0;
    ifd_entry e;
    if (tiff_open(p, len, &t, &ifd0) != 0) return -1;
    int rc = ifd_find(&t, ifd0, TAG_EXIF_IFD, &e);
    if (rc != 0) return rc;
    if ((e.type != TYPE_LONG && e.type != 13 /* IFD */) || e.count != 1) return -1;
    rc = ifd_find(&t, rd32(&t, e.value_off), TAG_USER_COMMENT, &e);
    if (rc != 0) return rc;
    if (e.type != TYPE_UNDEFINED || e.count < 8) return -1;
    const uint8_t *v = p + e.value_off;
    size_t body = e.count - 8;
    if (memcmp(v, UNICODE_PREFIX, 8) == 0) {
        *utf8 = utf8_from_utf16(&t, e.value_off + 8, body / 2);
    } else if (memcmp(v, ASCII_PREFIX, 8) == 0 || memcmp(v, UNDEFINED_PREFIX, 8) == 0) {
        *utf8 = malloc(body + 1);
        if (*utf8) { memcpy(*utf8, v + 8, body); (*utf8)[body] = 0; }
    } else {
        return -1;
    }
    return *utf8 ? 0 : -1;
}

int exif_orientation(const uint8_t *p, size_t len)
{
    tiff t;
    size_t ifd0;
    ifd_entry e;
    if (tiff_open(p, len, &t, &ifd0) != 0 || ifd_find(&t, ifd0, TAG_ORIENTATION, &e) != 0) return 0;
    if (e.type != TYPE_SHORT || e.count < 1) return 0;
    uint32_t v = rd16(&t, e.value_off);
    return v >= 1 && v <= 8 ? (int)v : 0;
}
