/* libFuzzer target for textual-inversion embedding files (sd/embedding.h):
 * arbitrary bytes are opened as safetensors and loaded as an embedding for
 * the small model's encoders (CLIP-L 16 wide, bigG 32), then a prompt that
 * names it is chunked. A refusal must name the embedding and leave it
 * registered as unavailable (the prompt then fails as such); an accepted one
 * must have 1..75 vectors and place them all. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sd/embedding.h"
#include "sd/prompt.h"

static sd_tokenizer *tok;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!tok && !(tok = sd_tokenizer_new())) abort();
    st_file *f;
    char err[1024] = "";
    if (st_open_memory(data, size, "fuzz.safetensors", &f, err, sizeof err) != 0) return 0;
    sd_embedding_db *db = sd_embeddings_new(tok, 16, 32);
    if (!db) abort();
    int rc = sd_embeddings_load_file(db, "fuzzemb", f, err, sizeof err);
    st_close(f);
    if (sd_embeddings_count(db) != 1) abort();
    if (rc && (!strstr(err, "embedding 'fuzzemb'") || !sd_embedding_unavailable(db, 0))) abort();
    int n = sd_embedding_vectors(db, 0);
    if (!rc && (n < 1 || n > SD_EMBEDDING_MAX_VECTORS || sd_embedding_unavailable(db, 0))) abort();
    static const char text[] = "a photo, (fuzzemb:1.2) and fuzzemb";
    sd_prompt_options opts = SD_PROMPT_OPTIONS_DEFAULT;
    opts.embeddings = db;
    sd_prompt p;
    int prc = sd_prompt_prepare(tok, text, strlen(text), &opts, &p, err, sizeof err);
    if (rc ? prc != SD_PROMPT_EUNAVAILABLE : prc != 0) abort();
    if (!prc) {
        int placed = 0;
        for (size_t c = 0; c < p.n_chunks; c++)
            for (int r = 0; r < SD_TOK_CONTEXT; r++) placed += p.chunks[c].emb[r] != 0;
        if (placed != 2 * n || p.n_used != 1) abort();
        sd_prompt_free(&p);
    }
    sd_embeddings_free(db);
    return 0;
}
