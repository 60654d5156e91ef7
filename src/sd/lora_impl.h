/* Internal interfaces of the LoRA stack (sd/lora.h), split by concern:
 *   lora_names.c  the checkpoint's layers under every name a LoRA file may
 *                 give them (kohya SGM/diffusers, PEFT, bigG's fused q/k/v)
 *   lora_file.c   reading a LoRA file: keys -> modules, format, scale,
 *                 shapes checked against the target layer, accounting
 *   lora_delta.c  dW of one module in fp32 (LoRA/LoCon, LoHa, LoKr, full,
 *                 DoRA) and the batched GEMM of plain LoRAs
 *   lora_stack.c  the active set, the merge plan, merged buffers, the
 *                 overlay and the report */
#ifndef SDXL_SD_LORA_IMPL_H
#define SDXL_SD_LORA_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sd/lora.h"

/* ---- names ----------------------------------------------------------------------- */

typedef enum { LORA_TE1 = 0, LORA_TE2, LORA_UNET } lora_net;

/* A layer of the checkpoint as a LoRA module sees it: rows [row0, row0 +
 * rows) of `weight` (all rows, except bigG's q/k/v inside in_proj) and the
 * same rows of `bias` (NULL when the layer has none). cols = the weight's
 * elements per row; kh, kw its kernel (1 for linear layers). */
typedef struct {
    const st_tensor *weight, *bias;
    int64_t row0, rows, cols, kh, kw;
    lora_net net;
} lora_target;

typedef struct lora_names lora_names;

lora_names *lora_names_build(const st_file *ckpt, const sdxl_hparams *hp);     /* NULL when out of memory */
void lora_names_free(lora_names *ix);
/* The layer a module name (the key without its part suffix) lands on, or
 * NULL. Accepts every spelling listed in sd/lora.h. */
const lora_target *lora_names_find(const lora_names *ix, const char *module);

/* ---- files --------------------------------------------------------------------------- */

typedef enum {
    P_DOWN, P_UP, P_MID, P_ALPHA, P_SCALE, P_DORA,
    P_HADA_W1A, P_HADA_W1B, P_HADA_W2A, P_HADA_W2B, P_HADA_T1, P_HADA_T2,
    P_LOKR_W1, P_LOKR_W1A, P_LOKR_W1B, P_LOKR_W2, P_LOKR_W2A, P_LOKR_W2B, P_LOKR_T2,
    P_DIFF, P_DIFF_B,
    P_COUNT
} lora_part;

typedef enum { K_LORA = 0, K_LOHA, K_LOKR, K_FULL, K_COUNT } lora_kind;

/* One module: the tensors of one layer's adaptation. */
typedef struct {
    char *name;                 /* as in the file, without the part suffix */
    sd_weight part[P_COUNT];    /* data NULL: absent */
    lora_kind kind;
    const lora_target *target;  /* NULL: unmatched */
    float scale;                /* the file's own factor: scale tensor, alpha/rank or 1 */
    bool dora_on_out;           /* dora_scale holds one magnitude per output row (else per input column) */
} lora_module;

typedef struct {
    char *path, *name;
    st_file *f;
    uint32_t uid;               /* distinguishes loads, for merge signatures */
    int64_t size, mtime_ns;     /* the file's identity when loaded (0 for memory) */
    bool mapped;                /* opened by lora_file_load: a read-only file mapping */
    lora_module *mods;
    size_t n_mods, matched;
    char **unmatched;           /* module names, or keys without a known part suffix */
    size_t n_unmatched;
    unsigned kinds;             /* bit per lora_kind present */
    bool peft, kohya, locon, dora, tucker;
    char format[96];
} lora_file;

/* Reads an opened LoRA file (takes ownership of f, even on failure) and
 * maps it onto the checkpoint. SD_LORA_EFILE for files that are not LoRAs
 * or are malformed, SD_LORA_EMISMATCH for LoRAs of another model; err names
 * `name`. The result is complete: every module either matched with
 * consistent shapes or listed in unmatched. */
sd_lora_status lora_file_parse(st_file *f, const char *path, const char *name, const lora_names *ix,
                               lora_file **out, char *err, size_t errlen);
/* st_open + lora_file_parse, with the file's identity recorded. */
sd_lora_status lora_file_load(const char *path, const char *name, const lora_names *ix, lora_file **out,
                              char *err, size_t errlen);
void lora_file_free(lora_file *lf);
/* Drops the whole pages inside [data, data + len) from this process's
 * memory; they are read back from the page cache when touched again. Only
 * for read-only file mappings (lora_is_file_mapping): anonymous memory
 * would read back as zeros. */
void lora_release_pages(const void *data, size_t len);
bool lora_is_file_mapping(const void *p);

/* ---- the stack over parsed files (for the fuzz target) --------------------------------- */

/* sd_lora_stack_apply with files already parsed against lora_stack_names(s);
 * the stack takes them over (distinct files, none of the current set). */
sd_lora_status lora_stack_apply_files(sd_lora_stack *s, lora_file **files, const float *te, const float *unet,
                                      size_t n, sd_lora_report *report, char *err, size_t errlen);
const lora_names *lora_stack_names(const sd_lora_stack *s);

/* ---- deltas ---------------------------------------------------------------------------- */

/* Plain low-rank modules (no lora_mid, no DoRA) go through one GEMM per
 * row block. */
bool lora_module_is_plain(const lora_module *m);

/* w[rows x cols] += sum_i coef[i] * up_i @ down_i over n plain modules of the
 * same rows (one sgemm over their concatenated ranks). 0, or -1 when out of
 * memory. */
int lora_gemm_add(const lora_module *const *mods, const float *coef, size_t n, float *w, int64_t rows, int64_t cols);

/* w += coef * dW of one module (weight rows of its target; with bias, the
 * diff_b on the bias rows). w0 holds the checkpoint's values of the same
 * rows (DoRA needs the pristine weight). 0, or -1 when out of memory. */
int lora_delta_add(const lora_module *m, float coef, bool bias, const float *w0, float *w);

/* Widens n elements of a weight to fp32 with OpenMP threads. */
void lora_widen(const sd_weight *w, size_t offset, size_t n, float *dst);

#endif
