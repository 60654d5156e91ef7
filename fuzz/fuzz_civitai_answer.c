/* libFuzzer target: what Civitai sends back (untrusted): the model-versions
 * answer with the file choice for several download URLs, and error bodies
 * turned into messages (src/models/civitai.c), plus logged-URL masking. */
#include "models/civitai.h"
#include "models/download.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    civitai_version v;
    char err[256], out[2048];
    if (civitai_parse_version(text, size, &v, err, sizeof err) == 0) {
        static const char *const urls[] = {
            "https://civitai.com/api/download/models/1?type=Model&format=SafeTensor&size=pruned&fp=fp16",
            "https://civitai.com/api/download/models/1", "https://civitai.com/api/download/models/1?fileId=12",
        };
        for (size_t i = 0; i < sizeof urls / sizeof *urls; i++) civitai_pick_file(&v, urls[i], i ? NULL : text);
        civitai_version_free(&v);
    }
    static const long statuses[] = {401, 403, 404, 410, 429, 500};
    for (size_t i = 0; i < sizeof statuses / sizeof *statuses; i++)
        civitai_explain(statuses[i], text, "fuzz", "https://civitai.com/api/download/models/1?token=x", i & 1, i & 2,
                        out, sizeof out);
    dl_url_for_log(text, out, sizeof out);
    free(text);
    return 0;
}
