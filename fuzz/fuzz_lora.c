/* libFuzzer target for LoRA files: arbitrary bytes are opened as safetensors
 * and read as a LoRA against the small SDXL checkpoint
 * (tests/data/small/sdxl_small.safetensors, read from the repository root,
 * where the replay test and scripts/fuzz.sh run): key parsing, module
 * assembly, name mapping, shape checks and scales; an accepted file is then
 * merged (every delta format, DoRA, the GEMM of plain LoRAs) and the stack
 * emptied again. Every refusal must come with a message naming the LoRA; an
 * accepted file must have landed somewhere; any out-of-bounds access is a
 * finding. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sd/lora_impl.h"

static struct {
    st_file *ckpt;
    sdxl_hparams hp;
    sd_lora_stack *stack;
} g;

static void init(void)
{
    char err[512];
    if (sdxl_checkpoint_open("tests/data/small/sdxl_small.safetensors", &g.ckpt, &g.hp, err, sizeof err) ||
        !(g.stack = sd_lora_stack_new(g.ckpt, &g.hp, err, sizeof err))) {
        fprintf(stderr, "fuzz_lora: %s (run from the repository root)\n", err);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g.stack) init();
    st_file *f;
    char err[1024] = "";
    if (st_open_memory(data, size, "fuzz", &f, err, sizeof err) != 0) return 0;
    lora_file *lf;
    sd_lora_status st = lora_file_parse(f, "fuzz.safetensors", "fuzz", lora_stack_names(g.stack), &lf, err, sizeof err);
    if (st) {
        if (!strstr(err, "LoRA 'fuzz'")) __builtin_trap(); /* every refusal says which LoRA */
        return 0;
    }
    if (!lf->matched || !lf->format[0]) __builtin_trap();
    sd_lora_report r;
    float te = 0.75f, unet = -1.5f;
    st = lora_stack_apply_files(g.stack, &lf, &te, &unet, 1, &r, err, sizeof err);
    if (st == SD_LORA_OK && (r.n != 1 || r.loras[0].modules_matched != lf->matched)) __builtin_trap();
    sd_lora_report_free(&r);
    /* merged values are never read here; the empty set frees them and the file */
    if (sd_lora_stack_apply(g.stack, NULL, 0, NULL, err, sizeof err) != SD_LORA_OK) __builtin_trap();
    if (sd_overlay_count(sd_lora_stack_overlay(g.stack)) != 0) __builtin_trap();
    return 0;
}
