/* Civitai knowledge and URL helpers of the model store: version ids, the
 * civitai.com/civitai.red -> CIVITAI_HOST rewrite, where the key may go, the
 * model-versions answer and which file a download URL selects (spec §2.1,
 * §2.3), the messages for 401/403/404/410/429, token masking in logged URLs,
 * origins, and the backoff bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "models/civitai.h"
#include "models/download.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_version_ids(void **state)
{
    assert_int_equal(civitai_version_id("https://civitai.com/api/download/models/1590699?type=Model&fp=fp16"), 1590699);
    assert_int_equal(civitai_version_id("https://civitai.red/api/download/models/135867"), 135867);
    assert_int_equal(civitai_version_id("http://127.0.0.1:9/api/download/models/7/"), 7);
    assert_int_equal(civitai_version_id("https://civitai.com/api/download/models/"), 0);
    assert_int_equal(civitai_version_id("https://civitai.com/api/download/models/12x"), 0);
    assert_int_equal(civitai_version_id("https://civitai.com/models/1590699"), 0);
    assert_int_equal(civitai_version_id("not a url"), 0);
    char *api = civitai_version_api_url("https://civitai.com/api/download/models/42?type=Model");
    assert_string_equal(api, "https://civitai.com/api/v1/model-versions/42");
    free(api);
    assert_null(civitai_version_api_url("https://example.com/file.safetensors"));
}

static void test_host_rewrite_and_key_policy(void **state)
{
    char *u = civitai_rewrite_url("https://civitai.com/api/download/models/1?type=Model&format=SafeTensor",
                                  "https://civitai.red");
    assert_string_equal(u, "https://civitai.red/api/download/models/1?type=Model&format=SafeTensor");
    free(u);
    u = civitai_rewrite_url("https://www.civitai.red/api/download/models/1", "http://127.0.0.1:8080");
    assert_string_equal(u, "http://127.0.0.1:8080/api/download/models/1");
    free(u);
    u = civitai_rewrite_url("https://huggingface.co/x/resolve/main/y.safetensors", "https://civitai.red");
    assert_string_equal(u, "https://huggingface.co/x/resolve/main/y.safetensors");
    free(u);
    u = civitai_rewrite_url("https://civitai.com/api/download/models/1", "");
    assert_string_equal(u, "https://civitai.com/api/download/models/1");
    free(u);

    assert_true(civitai_key_allowed("https://civitai.com/api/download/models/1", ""));
    assert_true(civitai_key_allowed("https://CIVITAI.RED/api/download/models/1", NULL));
    assert_false(civitai_key_allowed("http://civitai.com/api/download/models/1", ""));        /* plain http */
    assert_false(civitai_key_allowed("https://civitai.com.evil.example/x", ""));               /* look-alike */
    assert_false(civitai_key_allowed("https://huggingface.co/x", "https://civitai.red"));     /* not Civitai */
    assert_true(civitai_key_allowed("http://127.0.0.1:8080/api/x", "http://127.0.0.1:8080")); /* loopback test host */
    assert_false(civitai_key_allowed("http://127.0.0.1:8081/api/x", "http://127.0.0.1:8080")); /* other port */
    assert_true(civitai_key_allowed("https://mirror.example/api/x", "https://mirror.example"));
    assert_false(civitai_key_allowed("http://mirror.example/api/x", "http://mirror.example"));  /* http, not loopback */
}

static const char version_json[] =
    "{\"id\":1590699,\"modelId\":1,\"name\":\"v2\",\"files\":["
    "{\"id\":11,\"name\":\"full.safetensors\",\"type\":\"Model\",\"sizeKB\":13550860.5,"
    " \"metadata\":{\"format\":\"SafeTensor\",\"size\":\"full\",\"fp\":\"fp32\"},"
    " \"hashes\":{\"AutoV2\":\"AAAAAAAAAA\",\"SHA256\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"},"
    " \"primary\":true},"
    "{\"id\":12,\"name\":\"pruned.safetensors\",\"type\":\"Model\",\"sizeKB\":6775430.35,"
    " \"metadata\":{\"format\":\"SafeTensor\",\"size\":\"pruned\",\"fp\":\"fp16\"},"
    " \"hashes\":{\"SHA256\":\"BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB\"},\"primary\":false},"
    "{\"id\":13,\"name\":\"config.yaml\",\"type\":\"Config\",\"metadata\":{},\"hashes\":{\"SHA256\":\"short\"}},"
    "\"not an object\"]}";

static void test_version_answer_and_file_choice(void **state)
{
    civitai_version v;
    char err[256];
    assert_int_equal(civitai_parse_version(version_json, strlen(version_json), &v, err, sizeof err), 0);
    assert_int_equal(v.id, 1590699);
    assert_int_equal(v.n_files, 3);
    assert_string_equal(v.files[1].sha256, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
    assert_true(v.files[1].size_kb == 6775430.35);
    assert_string_equal(v.files[2].sha256, ""); /* malformed hash: none */
    const char *base = "https://civitai.com/api/download/models/1590699";
    char url[256];
    snprintf(url, sizeof url, "%s?type=Model&format=SafeTensor&size=pruned&fp=fp16", base);
    assert_int_equal(civitai_pick_file(&v, url, NULL)->id, 12);
    assert_int_equal(civitai_pick_file(&v, base, NULL)->id, 11); /* no filters: the primary file */
    snprintf(url, sizeof url, "%s?type=Model&format=SafeTensor", base);
    assert_int_equal(civitai_pick_file(&v, url, NULL)->id, 11);
    snprintf(url, sizeof url, "%s?fileId=12", base);
    assert_int_equal(civitai_pick_file(&v, url, NULL)->id, 12);
    snprintf(url, sizeof url, "%s?fileId=99", base);
    assert_null(civitai_pick_file(&v, url, NULL));
    snprintf(url, sizeof url, "%s?type=Config", base);
    assert_int_equal(civitai_pick_file(&v, url, NULL)->id, 13);
    snprintf(url, sizeof url, "%s?format=PickleTensor", base);
    assert_int_equal(civitai_pick_file(&v, url, NULL)->id, 13); /* only the file without a format passes */
    snprintf(url, sizeof url, "%s?type=Model&format=PickleTensor", base);
    assert_null(civitai_pick_file(&v, url, NULL));
    /* the name the storage host gave settles it (account preferences may pick another file) */
    assert_int_equal(civitai_pick_file(&v, base, "pruned.safetensors")->id, 12);
    assert_int_equal(civitai_pick_file(&v, base, "unknown.safetensors")->id, 11);
    civitai_version_free(&v);

    assert_int_equal(civitai_parse_version("[1]", 3, &v, err, sizeof err), -1);
    assert_int_equal(civitai_parse_version("{\"id\":5}", 8, &v, err, sizeof err), 0); /* archived: no files */
    assert_int_equal(v.n_files, 0);
    civitai_version_free(&v);
}

static void test_error_messages(void **state)
{
    const char *url = "https://civitai.com/api/download/models/1590699?type=Model&size=pruned&token=SECRETTOKEN";
    char out[1024];
    const char *unauth = "{\"error\":\"Unauthorized\",\"message\":\"The creator of this asset requires you to be "
                         "logged in to download it\"}";
    civitai_explain(401, unauth, "Jib", url, false, false, out, sizeof out);
    assert_non_null(strstr(out, "Jib: HTTP 401 for version 1590699"));
    assert_non_null(strstr(out, "CIVITAI_API_KEY is not set"));
    assert_non_null(strstr(out, "requires you to be logged in"));
    civitai_explain(401, unauth, "Jib", url, true, true, out, sizeof out);
    assert_non_null(strstr(out, "did not accept CIVITAI_API_KEY"));
    civitai_explain(401, unauth, "Jib", url, true, false, out, sizeof out);
    assert_non_null(strstr(out, "is set but was not sent"));
    civitai_explain(401, "{\"error\":\"Unauthorized\",\"message\":\"The creator of this asset has disabled downloads "
                         "on this file\"}", "Jib", url, true, true, out, sizeof out);
    assert_non_null(strstr(out, "the creator has disabled downloads"));

    civitai_explain(403, "{\"error\":\"Early Access\",\"deadline\":\"2026-05-01T12:00:00.000Z\",\"message\":\"This "
                         "asset is in Early Access. You can use Buzz access it now!\"}", "Jib", url, true, true, out,
                    sizeof out);
    assert_non_null(strstr(out, "Early Access until 2026-05-01T12:00:00.000Z"));
    civitai_explain(403, "{\"error\":\"Early Access\",\"deadline\":1777636800000}", "Jib", url, true, true, out, sizeof out);
    assert_non_null(strstr(out, "until 1777636800000"));
    civitai_explain(403, "{\"error\":\"You do not have access to download this file\"}", "Jib", url, true, true, out,
                    sizeof out);
    assert_non_null(strstr(out, "has no access to this file"));

    civitai_explain(404, "{\"error\":\"File not found\"}", "Jib", url, true, true, out, sizeof out);
    assert_non_null(strstr(out, "filters (type=Model&size=pruned&token=****)"));
    assert_null(strstr(out, "SECRETTOKEN"));
    assert_non_null(strstr(out, "fileId="));
    civitai_explain(410, NULL, "Jib", url, true, true, out, sizeof out);
    assert_non_null(strstr(out, "archived"));
    civitai_explain(429, "<html>rate</html>", "Jib", url, true, true, out, sizeof out);
    assert_non_null(strstr(out, "rate limit"));
    assert_null(strstr(out, "<html>")); /* non-JSON bodies are not pasted */
    civitai_explain(418, "{\"error\":\"line\\nbreak\"}", "Jib", url, true, true, out, sizeof out);
    assert_non_null(strstr(out, "HTTP 418"));
    assert_null(strchr(out, '\n'));
}

static void test_url_helpers(void **state)
{
    char out[512];
    dl_url_for_log("https://civitai.com/api/download/models/1?type=Model&token=abc123&fp=fp16", out, sizeof out);
    assert_string_equal(out, "https://civitai.com/api/download/models/1?type=Model&token=****&fp=fp16");
    dl_url_for_log("https://civitai.com/api/download/models/1?TOKEN=abc123", out, sizeof out);
    assert_string_equal(out, "https://civitai.com/api/download/models/1?token=****");
    dl_url_for_log("https://user:pass@host.example/x?mytoken=keep", out, sizeof out);
    assert_string_equal(out, "https://****@host.example/x?mytoken=keep");

    assert_int_equal(dl_url_origin("HTTPS://CivitAI.com:443/api?x=1", out, sizeof out), 0);
    assert_string_equal(out, "https://civitai.com");
    assert_int_equal(dl_url_origin("http://127.0.0.1:8080/x", out, sizeof out), 0);
    assert_string_equal(out, "http://127.0.0.1:8080");
    assert_int_equal(dl_url_origin("http://[::1]:80/x", out, sizeof out), 0);
    assert_string_equal(out, "http://[::1]");
    assert_int_equal(dl_url_origin("no scheme", out, sizeof out), -1);
}

static void test_backoff_bounds(void **state)
{
    dl_opts o;
    dl_opts_default(&o);
    unsigned seed = 1;
    for (int i = 0; i < 200; i++) {
        long first = dl_backoff_ms(&o, 1, &seed), third = dl_backoff_ms(&o, 3, &seed), far = dl_backoff_ms(&o, 40, &seed);
        assert_true(first >= 500 && first <= 1000);
        assert_true(third >= 2000 && third <= 4000);
        assert_true(far >= 15000 && far <= 30000); /* capped at 30 s (spec §2.4) */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version_ids),
        cmocka_unit_test(test_host_rewrite_and_key_policy),
        cmocka_unit_test(test_version_answer_and_file_choice),
        cmocka_unit_test(test_error_messages),
        cmocka_unit_test(test_url_helpers),
        cmocka_unit_test(test_backoff_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
