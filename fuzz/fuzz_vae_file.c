/* libFuzzer target for standalone VAE files (sd/vae_file.h): arbitrary bytes
 * are opened as safetensors, recognised (LDM names, under
 * first_stage_model., or diffusers names renamed to LDM ones), their
 * hyper-parameters read and checked tensor by tensor, and the result checked
 * against the small model's (tests/data/small/sdxl_small.safetensors, read
 * from the repository root, where the replay test and scripts/fuzz.sh run);
 * an accepted file is bound. Every refusal must say why; an accepted file
 * must bind. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sd/vae.h"
#include "sd/vae_file.h"

static struct {
    st_file *ckpt;
    sdxl_hparams hp;
} g;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[1024] = "";
    if (!g.ckpt && sdxl_checkpoint_open("tests/data/small/sdxl_small.safetensors", &g.ckpt, &g.hp, err, sizeof err)) {
        fprintf(stderr, "fuzz_vae_file: %s (run from the repository root)\n", err);
        abort();
    }
    st_file *f;
    if (st_open_memory(data, size, "fuzz.safetensors", &f, err, sizeof err) != 0) return 0;
    sd_vae_file v;
    if (sd_vae_file_from(f, &v, err, sizeof err)) {
        if (!strstr(err, "fuzz.safetensors")) abort(); /* every refusal names the file */
        return 0;
    }
    if (!v.layout || !v.view) abort();
    if (sd_vae_file_fits(&v, &g.hp, err, sizeof err) == 0) {
        sd_vae *vae;
        if (sd_vae_bind_prefix(&vae, v.view, "", &v.hp, err, sizeof err)) abort(); /* checked shapes bind */
        sd_vae_free(vae);
    } else if (!err[0]) {
        abort();
    }
    sd_vae_file_close(&v);
    return 0;
}
