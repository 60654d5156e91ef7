/* libFuzzer target for image input: img_decode (sniffing, PNG/JPEG/WebP
 * decoding under limits, EXIF orientation), img_read_parameters (the PNG
 * chunk, JPEG marker and RIFF chunk walkers, the EXIF UserComment reader),
 * the EXIF readers on the raw bytes, and b64_decode on them as text. Every
 * pixel of a decoded image is read, so a short buffer is a finding. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image/base64.h"
#include "image/decode.h"
#include "image/exif.h"

static volatile uint8_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    img_limits lim = {.max_pixels = 1u << 20, .max_side = 4096};
    img_rgb im;
    char err[256];
    if (img_decode(data, size, &lim, &im, err, sizeof err) == 0) {
        if (im.width <= 0 || im.height <= 0 || (uint64_t)im.width * im.height > lim.max_pixels) __builtin_trap();
        size_t n = (size_t)im.width * im.height * 3;
        uint8_t x = 0;
        for (size_t i = 0; i < n; i++) x ^= im.rgb[i];
        sink ^= x;
        img_rgb_free(&im);
    } else if (!err[0]) {
        __builtin_trap(); /* every failure explains itself */
    }

    char *text;
    if (img_read_parameters(data, size, &text) == 0) {
        sink ^= (uint8_t)strlen(text);
        free(text);
    }
    if (exif_user_comment_read(data, size, &text) == 0) {
        sink ^= (uint8_t)strlen(text);
        free(text);
    }
    sink ^= (uint8_t)exif_orientation(data, size);

    uint8_t *bytes;
    size_t n;
    if (b64_decode((const char *)data, size, 1 << 20, &bytes, &n, err, sizeof err) == 0) {
        sink ^= n ? bytes[n - 1] : 0;
        free(bytes);
    }
    return 0;
}
