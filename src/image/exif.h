/* EXIF (TIFF-structured) metadata as A1111 writes and as image loaders read:
 *   - the UserComment block A1111 attaches to JPEG and WebP output:
 *     piexif.dump({"Exif": {UserComment: UserComment.dump(text,
 *     encoding="unicode")}}) (A1111 modules/images.py
 *     save_image_with_geninfo), reproduced byte for byte: big-endian TIFF,
 *     IFD0 holding only the Exif IFD pointer, an Exif IFD holding only
 *     UserComment = "UNICODE\0" + UTF-16BE text (piexif/_dump.py, helper.py);
 *   - reading UserComment back, and the Orientation tag (0x0112) that
 *     PIL.ImageOps.exif_transpose (used by diffusers' load_image) obeys.
 * Readers take untrusted bytes and check every offset. The TIFF block is
 * what follows "Exif\0\0" in a JPEG APP1 segment and what a WebP EXIF chunk
 * or a PNG eXIf chunk holds. */
#ifndef SDXL_IMAGE_EXIF_H
#define SDXL_IMAGE_EXIF_H

#include <stddef.h>
#include <stdint.h>

/* The TIFF block (without "Exif\0\0") carrying `utf8` as UserComment.
 * malloc'd; 0, or -1 with a reason (invalid UTF-8, out of memory). */
int exif_user_comment_build(const char *utf8, uint8_t **out, size_t *outlen, char *err, size_t errlen);

/* The UserComment of a TIFF block as malloc'd UTF-8: "UNICODE\0" bodies
 * are UTF-16 in the block's byte order, "ASCII\0\0\0" and undefined
 * (all-zero) prefixes are taken as bytes. 0 found, 1 absent, -1 malformed. */
int exif_user_comment_read(const uint8_t *tiff, size_t len, char **utf8);

/* The Orientation tag of IFD0: 1..8, or 0 when absent, out of range or the
 * block is malformed. */
int exif_orientation(const uint8_t *tiff, size_t len);

#endif
