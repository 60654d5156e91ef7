/* Textual-inversion embeddings in the SDXL format: one safetensors file with
 * `clip_l` [n, CLIP-L width] and `clip_g` [n, bigG width], n vectors that
 * stand in for a word of the prompt in both encoders. Owner: loading and
 * checking the files, and the names prompts use for them; the prompt chunker
 * (sd/prompt.h) places the vectors and the text encoders (sd/text_encoder.h)
 * feed them in place of token embeddings. Semantics: docs/prompts.md.
 *
 * As A1111 (modules/textual_inversion/textual_inversion.py,
 * EmbeddingDatabase): each name is tokenized with the CLIP tokenizer (so
 * case does not matter) and a prompt's tokens match it where the same ids
 * follow each other inside one weighted fragment, the longest name first;
 * A1111 names an embedding after its file, so the file's stem is a second
 * name when it differs from the configured one. An embedding that is
 * configured but could not be loaded keeps its names with the reason, so
 * that a prompt naming it fails clearly instead of reading it as text. */
#ifndef SDXL_SD_EMBEDDING_H
#define SDXL_SD_EMBEDDING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sd/safetensors.h"
#include "sd/tokenizer.h"

#define SD_EMBEDDING_MAX_VECTORS 75 /* a 75-token chunk holds at most this many */

typedef struct sd_embedding_db sd_embedding_db;

/* An empty set for encoders of widths width_l (CLIP-L) and width_g (bigG).
 * tok must outlive it. NULL when out of memory. */
sd_embedding_db *sd_embeddings_new(const sd_tokenizer *tok, int width_l, int width_g);
void sd_embeddings_free(sd_embedding_db *db); /* NULL is fine */

/* Loads the file at `path` as the embedding `name` (the configured name;
 * the file's stem is a second name). A file that is not an SDXL embedding
 * for these encoders is refused with one line naming the embedding, and
 * registered as unavailable with that reason. 0, or -1 with err. */
int sd_embeddings_load(sd_embedding_db *db, const char *name, const char *path, char *err, size_t errlen);
/* The same for a file already opened (its label is the path). */
int sd_embeddings_load_file(sd_embedding_db *db, const char *name, const st_file *f, char *err, size_t errlen);
/* Registers `name` (and the stem of path, when path is not NULL) as an
 * embedding that cannot be used, for `why`. 0, or -1 when out of memory. */
int sd_embeddings_add_unavailable(sd_embedding_db *db, const char *name, const char *path, const char *why);

size_t sd_embeddings_count(const sd_embedding_db *db);          /* loaded and unavailable; db may be NULL */
const char *sd_embedding_name(const sd_embedding_db *db, size_t i);
const char *sd_embedding_unavailable(const sd_embedding_db *db, size_t i); /* the reason, NULL when loaded */
int sd_embedding_vectors(const sd_embedding_db *db, size_t i);   /* n (0 when unavailable) */
/* Vector v of embedding i for CLIP-L (width_l floats) or bigG (width_g). */
const float *sd_embedding_vector(const sd_embedding_db *db, size_t i, bool bigg, int v);

/* A1111's find_embedding_at_position: the embedding whose name's ids are
 * ids[pos..pos+len) (the longest such name; among equals the first
 * registered), its index, and len in *len; -1 when none starts at pos. */
long sd_embeddings_match(const sd_embedding_db *db, const int32_t *ids, size_t n, size_t pos, size_t *len);

#endif
