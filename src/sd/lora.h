/* The LoRA stack: Civitai LoRAs in every common format merged into an SDXL
 * checkpoint's weights, N at a time with per-job multipliers, rebuilt only
 * where a change touches, and accounted key by key. Owner: the engine's
 * LoRA support; the job handler resolves <lora:name:w> tags with
 * sd_lora_find and the engine applies the set (docs/loras.md).
 *
 * Formats (each key mapped onto the checkpoint's own tensor names):
 *   kohya LoRA / LoCon  lora_unet_* (SGM or diffusers block names),
 *                       lora_te1_* / lora_te_* (CLIP-L), lora_te2_* (bigG,
 *                       q/k/v onto row blocks of the fused in_proj);
 *                       .lora_down/.lora_up[/.lora_mid].weight, .alpha
 *   diffusers / PEFT    unet.* / text_encoder.* / text_encoder_2.* (with or
 *                       without text_model.), lora_A/lora_B, the training
 *                       scripts' .lora.down/.lora_linear_layer.down and the
 *                       older to_q_lora.down forms;
 *                       alphas from __metadata__ lora_adapter_metadata
 *   LyCORIS             LoHa (hada_*), LoKr (lokr_*), full (.diff, .diff_b),
 *                       DoRA (.dora_scale on any of them)
 * Scale of a module: its "scale" tensor, else alpha/rank (alpha absent:
 * 1), times the job's multiplier (te_multiplier for text-encoder layers,
 * unet_multiplier for the UNet). Several LoRAs add their deltas.
 *
 * Merging: W = narrow(widen(W_checkpoint) + sum_i coef_i * dW_i), computed
 * in fp32 from the mapped original (never by subtracting), stored in the
 * tensor's own dtype (fp8 tensors become fp16), in buffers that exist only
 * for touched tensors. The stack keeps them, and the signature of what went
 * into each: applying the same set again costs nothing, changing one LoRA's
 * multiplier rebuilds only its tensors, and a set applied again after
 * another gives bit-identical weights. The merged weights live in an
 * sd_overlay (sd/weights.h) attached to the checkpoint, so the networks see
 * them after being bound again. */
#ifndef SDXL_SD_LORA_H
#define SDXL_SD_LORA_H

#include <stddef.h>
#include <stdint.h>

#include "sd/checkpoint.h"
#include "sd/safetensors.h"
#include "sd/weights.h"

typedef enum {
    SD_LORA_OK = 0,
    SD_LORA_EFILE,     /* unreadable, not a LoRA (a checkpoint...), or malformed (missing or inconsistent tensors) */
    SD_LORA_EMISMATCH, /* made for another model: nothing lands, shapes differ, SD 1.x/2.x names (LORA_MISMATCH) */
    SD_LORA_ENOMEM,    /* out of memory while merging: every LoRA was removed (the checkpoint's own weights) */
} sd_lora_status;

const char *sd_lora_status_name(sd_lora_status s); /* "ok", "bad file", "mismatch", "out of memory" */

/* One LoRA of a set. */
typedef struct {
    const char *path;      /* the .safetensors file */
    const char *name;      /* for reports and messages; NULL: the file stem */
    float te_multiplier;   /* on the text encoders' layers */
    float unet_multiplier; /* on the UNet's layers */
} sd_lora_spec;

/* What one LoRA of the active set did. */
typedef struct {
    char *name;
    char *path;
    char format[96];        /* e.g. "kohya LoRA + LoCon", "diffusers/PEFT LoRA", "LyCORIS LoKr" */
    float te_multiplier, unet_multiplier;
    size_t modules;         /* modules in the file (a layer's tensors count once) */
    size_t modules_matched; /* modules that landed on a layer of the checkpoint */
    size_t tensors;         /* checkpoint tensors its matched modules land on */
    char **unmatched;       /* module names or keys that landed nowhere (listed, never applied) */
    size_t n_unmatched;
} sd_lora_info;

typedef struct {
    sd_lora_info *loras;     /* the active set, in the order given (same path twice: once, multipliers summed) */
    size_t n;
    size_t tensors_merged;   /* tensors holding merged weights now */
    size_t tensors_rebuilt;  /* rebuilt by this call */
    size_t tensors_restored; /* back to the checkpoint's own weights by this call */
    size_t merged_bytes;     /* memory of the merged buffers */
    double seconds;          /* time of the call (loading + merging) */
} sd_lora_report;

void sd_lora_report_free(sd_lora_report *r); /* zeroes it; a zeroed report is fine */

/* A stack is used by one thread at a time, never while networks bound over
 * its checkpoint are running (the engine applies a set between jobs). */
typedef struct sd_lora_stack sd_lora_stack;

/* A stack over an opened SDXL checkpoint (hparams from sdxl_read_hparams),
 * which must outlive it; attaches the stack's overlay to the file. NULL with
 * err when out of memory or the checkpoint already has an overlay. */
sd_lora_stack *sd_lora_stack_new(const st_file *ckpt, const sdxl_hparams *hp, char *err, size_t errlen);
/* Detaches and frees the overlay and every merged buffer: bind the networks
 * again afterwards if they outlive the stack. NULL is fine. */
void sd_lora_stack_free(sd_lora_stack *s);

/* Makes specs[0..n) the active set (n == 0: no LoRA). Every file is opened,
 * checked and mapped before anything changes: on SD_LORA_EFILE or
 * SD_LORA_EMISMATCH the previous set stays active, untouched. Then only
 * the tensors whose contributions changed are rebuilt. report (may be
 * NULL) describes the set after the call; err gets one line on failure,
 * naming the LoRA. Files already loaded are reused while their size and
 * modification time are unchanged. */
sd_lora_status sd_lora_stack_apply(sd_lora_stack *s, const sd_lora_spec *specs, size_t n, sd_lora_report *report,
                                   char *err, size_t errlen);

/* Called with the bytes of every merged buffer the stack is about to
 * rebuild in place or free, and of every checkpoint tensor a merged buffer
 * replaces (during sd_lora_stack_apply): a backend's copies of those weights
 * (sd_backend_forget_weights) are stale or unused from then on. */
typedef void (*sd_lora_change_fn)(void *ctx, const void *data, size_t bytes);
void sd_lora_stack_on_change(sd_lora_stack *s, sd_lora_change_fn fn, void *ctx);

/* Changes whenever the overlay changed (including the reset after
 * SD_LORA_ENOMEM): then the networks must be bound again. */
uint64_t sd_lora_stack_generation(const sd_lora_stack *s);
const sd_overlay *sd_lora_stack_overlay(const sd_lora_stack *s);

/* Resolving a <lora:NAME:...> tag: the index of the entry whose configured
 * name equals NAME, else of the one whose file stem (base name without
 * .safetensors) equals NAME; -1 when none. Exact, case-sensitive matches, as
 * A1111 looks names up. */
typedef struct {
    const char *name; /* configured display name (may be NULL) */
    const char *path; /* file */
} sd_lora_known;

long sd_lora_find(const sd_lora_known *known, size_t n, const char *name);

#endif
