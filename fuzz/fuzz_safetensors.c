/* libFuzzer target for the safetensors reader and checkpoint recognition:
 * parse arbitrary bytes with st_open_memory, then touch everything the API
 * hands out (each tensor's first and last data byte, its weight view and a
 * widened element, lookups by name, metadata) and run the SDXL recogniser
 * over the accepted files. Any out-of-bounds access is a finding. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "sd/checkpoint.h"
#include "sd/safetensors.h"

static volatile uint8_t sink;

static void touch_tensor(const st_file *f, const st_tensor *t)
{
    if (st_find(f, t->name) != t) __builtin_trap(); /* names are unique */
    if (t->nbytes) {
        const uint8_t *d = t->data;
        sink ^= d[0] ^ d[t->nbytes - 1];
    }
    sd_weight w;
    char err[256];
    if (st_weight(t, &w, err, sizeof err) == 0 && t->numel > 0) {
        float x;
        sd_widen(w.dtype, w.data, (size_t)t->numel - 1, 1, &x);
        sink ^= (uint8_t)(x != x);
    }
    char shape[128];
    sink ^= (uint8_t)st_shape_str(t, shape, sizeof shape)[0];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    st_file *f;
    char err[512];
    if (st_open_memory(data, size, "fuzz", &f, err, sizeof err) != 0) {
        if (!memchr(err, 0, sizeof err) || !err[0]) __builtin_trap(); /* always a message */
        return 0;
    }
    for (size_t i = 0; i < st_count(f); i++) touch_tensor(f, st_get(f, i));
    for (size_t i = 0; i < st_metadata_count(f); i++) {
        const char *k, *v;
        st_metadata_at(f, i, &k, &v);
        if (st_metadata(f, k) != v) __builtin_trap();
    }
    size_t len;
    const uint8_t *d = st_data(f, &len);
    if (d + len != data + size || st_data_offset(f) + len != size) __builtin_trap();
    char what[400];
    ckpt_identify(f, what, sizeof what);
    sdxl_hparams hp;
    sdxl_read_hparams(f, &hp, err, sizeof err);
    st_close(f);
    return 0;
}
