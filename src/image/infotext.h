/* A1111's generation-parameters text ("infotext"), the PNG `parameters`
 * chunk and JPEG/WebP UserComment that A1111 writes and Civitai reads.
 *
 * The builder reproduces AUTOMATIC1111 1.10 modules/processing.py
 * create_infotext:
 *   text = "<prompt>" + ("\nNegative prompt: <negative>" if negative) +
 *          "\n" + ", ".join(pairs), then Python's str.strip();
 *   pairs come from one ordered dict: the fixed keys (Steps, Sampler,
 *   Schedule type, CFG scale, Image CFG scale, Seed, Face restoration, Size,
 *   Model hash, Model, FP8 weight, Cache FP16 weight for LoRA, VAE hash, VAE,
 *   Variation seed, Variation seed strength, Seed resize from, Denoising
 *   strength, Conditional mask weight, Clip skip (only when > 1), ENSD,
 *   Token merging ratio, Token merging ratio hr, Init image hash, RNG (only
 *   when not A1111's default "GPU"), Tiling), then `extra_generation_params`
 *   in insertion order (an extra whose key is already present, e.g.
 *   "Schedule type" or "Denoising strength", updates it in place), then
 *   Version and User; absent values are skipped;
 *   a pair is "Key: value", or just "Key" when the value equals the key;
 *   values go through modules/infotext_utils.py quote(): one containing
 *   ',', ':' or a newline becomes a JSON string (json.dumps, ensure_ascii
 *   off); others are written as they are (a '"' alone does not quote).
 * Numbers are written as the web UI's infotexts show them: integral values
 * without a fraction ("CFG scale: 7", the UI sends JSON numbers that
 * arrive as Python ints), others as Python's repr ("4.5", "0.35").
 *
 * The parser reads any A1111 infotext: the parameters line is the last line
 * that starts with "Steps: " and reads as at least three pairs (else the
 * last line, as A1111's parse_generation_parameters has it); quoted values
 * are JSON-decoded; unquoted `{...}`/`[...]` values such as the Civitai
 * extension's "Hashes: {json}" are kept verbatim; the prompt ends at the
 * first line starting with "Negative prompt: ". A fixed key
 * goes into its typed field only when the builder would write it back
 * identically; anything else (and every other key) is kept in `extra` in
 * order, so that build(parse(t)) == t for every text whose fixed keys are in
 * A1111's order, which is how A1111 writes them (pairs that follow Version
 * or User, appended by extensions, are kept in `appended`). */
#ifndef SDXL_IMAGE_INFOTEXT_H
#define SDXL_IMAGE_INFOTEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *key;
    const char *value;
    bool verbatim; /* written as is, without quote() */
} infotext_param;

#define INFOTEXT_NO_INT INT32_MIN /* steps, width/height absent */
#define INFOTEXT_NO_SEED INT64_MIN

typedef struct {
    const char *prompt;          /* as typed, <lora:...> tags included; NULL = "" */
    const char *negative_prompt; /* NULL or "": no "Negative prompt:" line */
    int steps;
    const char *sampler;         /* A1111 name: "DPM++ 2M", "Euler a" */
    const char *schedule_type;   /* A1111 label: "Karras", "Automatic"; NULL before 1.9 */
    double cfg_scale;            /* NAN: absent */
    int64_t seed;
    int width, height;           /* "Size: WxH" when both are set */
    const char *model_hash;      /* AutoV2, 10 hex */
    const char *model;           /* checkpoint file name without extension */
    const char *vae_hash, *vae;
    double denoising_strength;   /* img2img strength; NAN: absent */
    int clip_skip;               /* written only when > 1 */
    const char *rng;             /* "CPU" or "NV"; NULL: A1111's default GPU source */
    const infotext_param *extra; /* extra_generation_params, e.g. "Lora hashes" */
    size_t n_extra;
    const char *version;         /* "v1.10.1" */
    const char *user;
    const infotext_param *appended; /* pairs after Version/User: tools such as the */
    size_t n_appended;              /* Civitai extension append ", Hashes: {json}" */
    const char *trailing;        /* lines after the parameters line (Dynamic Prompts */
                                 /* appends "Template: ..."); NULL or "": none */
    void *owned;                 /* infotext_parse's storage; NULL otherwise */
} a1111_infotext;

/* Everything absent (numbers at their NO_ values or NAN, strings NULL). */
void infotext_init(a1111_infotext *t);

/* The infotext, malloc'd; NULL only when out of memory. */
char *infotext_build(const a1111_infotext *t);

/* Parses an infotext; 0, or -1 with a reason in err (no parameters line,
 * out of memory). Strings point into storage freed by infotext_free. */
int infotext_parse(const char *text, a1111_infotext *out, char *err, size_t errlen);
void infotext_free(a1111_infotext *t);

/* modules/infotext_utils.py quote(s), malloc'd. */
char *infotext_quote(const char *s);

/* A number as the infotext shows it (see above); returns buf. */
char *infotext_number(double v, char buf[32]);

/* The "Lora hashes" value, extensions-builtin/Lora/extra_networks_lora.py:
 * "alias: hash, ..." in order, ':' and ',' removed from each alias (the
 * name as written in <lora:NAME:...>), a repeated alias keeping its first
 * place and its last hash (a Python dict). malloc'd; NULL when n == 0 or
 * out of memory. */
char *infotext_lora_hashes(const char *const *aliases, const char *const *hashes, size_t n);

/* The embeddings one text-encoder pass over one text used (A1111's
 * used_embeddings), in order of first use: names and 12-hex hashes. */
typedef struct {
    const char *const *names;
    const char *const *hashes;
    size_t n;
} infotext_ti_pass;

/* "TI hashes" as A1111 writes it (modules/sd_hijack_clip.py,
 * TextConditionalModel.forward): each encoder pass, in the order they run,
 * puts "name: hash" of the embeddings it used (':' and ',' removed from the
 * names) in front of what the passes before it wrote. SDXL runs every text
 * through both encoders and encodes the negative prompt before the prompt,
 * so the passes are negative, negative, prompt, prompt, and each name
 * appears once per encoder. malloc'd; NULL when no pass used an embedding or
 * out of memory. */
char *infotext_ti_hashes(const infotext_ti_pass *passes, size_t n);

typedef struct {
    char *alias;
    char *hash;
} infotext_lora;

/* Splits a "Lora hashes" value into its pairs (malloc'd array and strings,
 * freed by infotext_loras_free). 0, or -1 when an item has no ": ". */
int infotext_lora_hashes_parse(const char *value, infotext_lora **out, size_t *n);
void infotext_loras_free(infotext_lora *l, size_t n);

/* A1111's "Model" value for a checkpoint path: Python's
 * os.path.splitext(os.path.basename(path))[0]. Returns out. */
char *infotext_model_name(const char *path, char *out, size_t outlen);

#endif
