/* Models config and environment: the shipped config/models.json holds the
 * original worker's checkpoint and nine LoRAs exactly as spec
 * original-worker-and-civitai.md §1.2-1.3 lists them; the parser accepts the
 * contract's shape and rejects every malformed field with a message naming
 * the entry and the field; file names are plain; the environment gives the
 * documented defaults and overrides; the config is found next to the binary
 * when the working directory has none. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "testutil.h"

#include "models/config.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_shipped_config_is_the_original_workers(void **state)
{
    models_config c;
    char err[512];
    assert_int_equal(models_config_load(SDXL_SOURCE_DIR "/config/models.json", &c, err, sizeof err), 0);
    assert_string_equal(c.checkpoint.name, "Jib Mix Illustrious Realistic");
    assert_string_equal(c.checkpoint.url, "https://civitai.com/api/download/models/1590699?type=Model&format="
                                          "SafeTensor&size=pruned&fp=fp16");
    assert_string_equal(c.checkpoint.filename, "jib_mix_illustrious_realistic_v2.safetensors");
    static const struct { const char *name; int id; double scale; const char *file; } want[] = {
        {"Detail Tweaker XL", 135867, 1.5, "detail_tweaker_xl.safetensors"},
        {"Hand Detail FLUX & XL", 294259, 1.0, "hand_detail_flux_xl.safetensors"},
        {"Boring Reality primaryV3.0", 348625, 0.3, "boring_reality_v3.safetensors"},
        {"Boring Reality primaryV4.0", 348837, 0.4, "boring_reality_v4.safetensors"},
        {"epiCRealismXL-KiSS Enhancer", 1051156, 1.0, "epicrealism_xl_kiss.safetensors"},
        {"Dramatic Lighting Slider", 1242203, 1.0, "dramatic_lighting_slider.safetensors"},
        {"Pony Realism Slider", 1253021, 3.0, "pony_realism_slider.safetensors"},
        {"Amateur style - slider (Pony)", 1594293, 1.0, "amateur_style_slider.safetensors"},
        {"Real Skin Slider", 1681921, 1.0, "real_skin_slider.safetensors"},
    };
    assert_int_equal(c.n_loras, 9);
    for (size_t i = 0; i < 9; i++) {
        char url[128];
        snprintf(url, sizeof url, "https://civitai.com/api/download/models/%d?type=Model&format=SafeTensor", want[i].id);
        assert_string_equal(c.loras[i].name, want[i].name);
        assert_string_equal(c.loras[i].url, url);
        assert_true(c.loras[i].scale == want[i].scale);
        assert_string_equal(c.loras[i].filename, want[i].file);
        assert_string_equal(c.loras[i].sha256, ""); /* the spec gives no hashes: Civitai's API supplies them */
        assert_int_equal(c.loras[i].size, 0);
    }
    models_config_free(&c);
}

static void test_full_shape_and_path_entries(void **state)
{
    const char *json =
        "{\"checkpoint\": {\"name\": \"C\", \"path\": \"weights/c.safetensors\", \"size\": 1234,"
        "  \"sha256\": \"ABCDEF0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789\"},"
        " \"loras\": [{\"name\": \"L\", \"url\": \"HTTPS://example.com/l\", \"filename\": \"l.safetensors\", \"scale\": -0.5},"
        "            {\"name\": \"Abs\", \"path\": \"/abs/x.safetensors\", \"filename\": \"y.safetensors\", \"scale\": 2}],"
        " \"other_section\": {\"ignored\": true}}";
    models_config c;
    char err[512];
    assert_int_equal(models_config_parse(json, strlen(json), "/cfg", &c, err, sizeof err), 0);
    assert_string_equal(c.checkpoint.path, "/cfg/weights/c.safetensors");
    assert_null(c.checkpoint.url);
    assert_string_equal(c.checkpoint.filename, "c.safetensors");
    assert_int_equal(c.checkpoint.size, 1234);
    assert_string_equal(c.checkpoint.sha256, "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789");
    assert_true(c.checkpoint.scale == 1.0);
    assert_int_equal(c.n_loras, 2);
    assert_true(c.loras[0].scale == -0.5);
    assert_string_equal(c.loras[1].path, "/abs/x.safetensors");
    assert_string_equal(c.loras[1].filename, "y.safetensors");
    models_config_free(&c);

    const char *no_loras = "{\"checkpoint\": {\"name\": \"C\", \"url\": \"http://h/c\", \"filename\": \"c.st\"}}";
    assert_int_equal(models_config_parse(no_loras, strlen(no_loras), NULL, &c, err, sizeof err), 0);
    assert_int_equal(c.n_loras, 0);
    models_config_free(&c);
}

static void test_vaes_and_embeddings(void **state)
{
    const char *json =
        "{\"checkpoint\": {\"name\": \"C\", \"path\": \"/c.safetensors\"}, \"loras\": [],"
        " \"vae\": {\"name\": \"SDXL VAE\", \"url\": \"https://h/v\", \"filename\": \"sdxl_vae.safetensors\"},"
        " \"vaes\": [{\"name\": \"fp16 fix\", \"path\": \"vae/fix.safetensors\"}],"
        " \"embeddings\": [{\"name\": \"negativeXL_D\", \"url\": \"https://h/e\", \"filename\": \"negativeXL_D.safetensors\","
        "   \"sha256\": \"0000000000000000000000000000000000000000000000000000000000000001\"},"
        "  {\"name\": \"style\", \"path\": \"/e/style.safetensors\"}]}";
    models_config c;
    char err[512];
    assert_int_equal(models_config_parse(json, strlen(json), "/cfg", &c, err, sizeof err), 0);
    assert_int_equal(c.n_vaes, 2);
    assert_string_equal(c.vaes[0].name, "SDXL VAE"); /* "vae" comes first */
    assert_string_equal(c.vaes[0].filename, "sdxl_vae.safetensors");
    assert_string_equal(c.vaes[1].path, "/cfg/vae/fix.safetensors");
    assert_int_equal(c.n_embeddings, 2);
    assert_string_equal(c.embeddings[0].sha256, "0000000000000000000000000000000000000000000000000000000000000001");
    assert_string_equal(c.embeddings[1].filename, "style.safetensors");
    models_config_free(&c);
    const char *none = "{\"checkpoint\": {\"name\": \"C\", \"path\": \"/c\"}, \"vae\": null}";
    assert_int_equal(models_config_parse(none, strlen(none), NULL, &c, err, sizeof err), 0);
    assert_int_equal(c.n_vaes + c.n_embeddings, 0);
    models_config_free(&c);
}

static void test_bad_configs_are_named(void **state)
{
    static const struct { const char *json, *why; } cases[] = {
        {"{", "not valid JSON"},
        {"[]", "the top level must be an object"},
        {"{\"loras\": []}", "\"checkpoint\" is missing"},
        {"{\"checkpoint\": 3}", "checkpoint must be an object"},
        {"{\"checkpoint\": {\"url\": \"https://h/x\", \"filename\": \"a\"}}", "checkpoint: \"name\" must be a non-empty string"},
        {"{\"checkpoint\": {\"name\": \"\", \"url\": \"https://h/x\", \"filename\": \"a\"}}", "\"name\" must be a non-empty"},
        {"{\"checkpoint\": {\"name\": \"c\", \"filename\": \"a\"}}", "checkpoint: needs \"url\""},
        {"{\"checkpoint\": {\"name\": \"c\", \"url\": \"https://h/x\", \"path\": \"/p\", \"filename\": \"a\"}}", "either \"url\" or \"path\""},
        {"{\"checkpoint\": {\"name\": \"c\", \"url\": \"ftp://h/x\", \"filename\": \"a\"}}", "must be an http:// or https:// URL"},
        {"{\"checkpoint\": {\"name\": \"c\", \"url\": \"https:///x\", \"filename\": \"a\"}}", "with a host"},
        {"{\"checkpoint\": {\"name\": \"c\", \"url\": 5, \"filename\": \"a\"}}", "checkpoint: \"url\" must be a string"},
        {"{\"checkpoint\": {\"name\": \"c\", \"url\": \"https://h/x\"}}", "\"filename\" is required with \"url\""},
        {"{\"checkpoint\": {\"name\": \"c\", \"url\": \"https://h/x\", \"filename\": \"a/b\"}}", "contains a path separator"},
        {"{\"checkpoint\": {\"name\": \"c\", \"url\": \"https://h/x\", \"filename\": \"a\\\\b\"}}", "contains a path separator"},
        {"{\"checkpoint\": {\"name\": \"c\", \"url\": \"https://h/x\", \"filename\": \"..\"}}", "contains \"..\""},
        {"{\"checkpoint\": {\"name\": \"c\", \"url\": \"https://h/x\", \"filename\": \".hidden\"}}", "starts with '.'"},
        {"{\"checkpoint\": {\"name\": \"c\", \"url\": \"https://h/x\", \"filename\": \"\"}}", "\"filename\" is empty"},
        {"{\"checkpoint\": {\"name\": \"c\", \"url\": \"https://h/x\", \"filename\": \"a\", \"sha256\": \"abc\"}}", "\"sha256\" must be 64 hex digits"},
        {"{\"checkpoint\": {\"name\": \"c\", \"url\": \"https://h/x\", \"filename\": \"a\", \"sha256\": 1}}", "\"sha256\" must be a string"},
        {"{\"checkpoint\": {\"name\": \"c\", \"url\": \"https://h/x\", \"filename\": \"a\", \"size\": -1}}", "\"size\" must be a positive whole number"},
        {"{\"checkpoint\": {\"name\": \"c\", \"url\": \"https://h/x\", \"filename\": \"a\", \"size\": 1.5}}", "\"size\" must be a positive whole number"},
        {"{\"checkpoint\": {\"name\": \"c\", \"url\": \"https://h/x\", \"filename\": \"a\", \"scale\": 1}}", "\"scale\" applies to LoRAs only"},
        {"{\"checkpoint\": {\"name\": \"c\", \"url\": \"https://h/x\", \"filename\": \"a\", \"sha265\": \"x\"}}", "unknown key \"sha265\""},
        {"{\"checkpoint\": {\"name\": \"c\", \"url\": \"https://h/x\", \"filename\": \"a\"}, \"loras\": {}}", "\"loras\" must be an array"},
        {"{\"checkpoint\": {\"name\": \"c\", \"url\": \"https://h/x\", \"filename\": \"a\"}, \"loras\": [{\"name\": \"l\", \"url\": \"https://h/l\", \"filename\": \"l\"}]}", "loras[0] (\"l\"): \"scale\" must be a number"},
        {"{\"checkpoint\": {\"name\": \"c\", \"url\": \"https://h/x\", \"filename\": \"a\"}, \"loras\": [{\"name\": \"l\", \"url\": \"https://h/l\", \"filename\": \"l\", \"scale\": \"1\"}]}", "\"scale\" must be a number"},
        {"{\"checkpoint\": {\"name\": \"c\", \"url\": \"https://h/x\", \"filename\": \"a\"}, \"loras\": [{\"name\": \"l\", \"url\": \"https://h/l\", \"filename\": \"l\", \"scale\": 1}, {\"name\": \"l\", \"url\": \"https://h/m\", \"filename\": \"m\", \"scale\": 1}]}", "loras[1]: name \"l\" is already used by loras[0]"},
        {"{\"checkpoint\": {\"name\": \"c\", \"url\": \"https://h/x\", \"filename\": \"a\"}, \"loras\": [{\"name\": \"l\", \"url\": \"https://h/l\", \"filename\": \"l\", \"scale\": 1}, {\"name\": \"m\", \"url\": \"https://h/m\", \"filename\": \"l\", \"scale\": 1}]}", "loras[1]: filename \"l\" is already used by loras[0]"},
        {"{\"checkpoint\": {\"name\": \"c\", \"url\": \"https://h/x\", \"filename\": \"a\"}, \"loras\": [3]}", "loras[0] must be an object"},
#define CK "{\"checkpoint\": {\"name\": \"c\", \"url\": \"https://h/x\", \"filename\": \"a\"}, "
        {CK "\"vae\": []}", "vae must be an object"},
        {CK "\"vae\": {\"name\": \"v\", \"path\": \"/v\", \"scale\": 1}}", "vae: \"scale\" applies to LoRAs only"},
        {CK "\"vae\": {\"name\": \"v\", \"url\": \"https://h/v\"}}", "vae: \"filename\" is required with \"url\""},
        {CK "\"vaes\": {}}", "\"vaes\" must be an array"},
        {CK "\"vaes\": [{\"path\": \"/v\"}]}", "vaes[0]: \"name\" must be a non-empty string"},
        {CK "\"vae\": {\"name\": \"v\", \"path\": \"/v\"}, \"vaes\": [{\"name\": \"v\", \"path\": \"/w\"}]}",
         "vaes[0]: name \"v\" is already used by vae"},
        {CK "\"vaes\": [{\"name\": \"v\", \"url\": \"https://h/1\", \"filename\": \"f\"}, {\"name\": \"w\", \"url\": \"https://h/2\", \"filename\": \"f\"}]}",
         "vaes[1]: filename \"f\" is already used by vaes[0]"},
        {CK "\"embeddings\": [{\"name\": \"e\", \"path\": \"/e\", \"sha265\": \"x\"}]}", "embeddings[0]: unknown key \"sha265\""},
        {CK "\"embeddings\": [{\"name\": \"e\", \"path\": \"/e\"}, {\"name\": \"e\", \"path\": \"/f\"}]}",
         "embeddings[1]: name \"e\" is already used by embeddings[0]"},
        {CK "\"embeddings\": \"e\"}", "\"embeddings\" must be an array"},
#undef CK
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        models_config c;
        char err[512] = "";
        int rc = models_config_parse(cases[i].json, strlen(cases[i].json), NULL, &c, err, sizeof err);
        if (rc == 0 || !strstr(err, cases[i].why))
            fail_msg("case %zu: %s\n  wanted \"%s\", got rc %d \"%s\"", i, cases[i].json, cases[i].why, rc, err);
    }
}

static void test_filename_check(void **state)
{
    char err[256];
    assert_int_equal(models_filename_check("jib_mix v2.safetensors", err, sizeof err), 0);
    assert_int_equal(models_filename_check("a.b.safetensors", err, sizeof err), 0);
    const char *bad[] = {"", ".", "..", "../x", "x/..", "/etc/passwd", "a\\b", ".x", "a..b", "tab\there"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (models_filename_check(bad[i], err, sizeof err) == 0) fail_msg("accepted \"%s\"", bad[i]);
    char longname[300];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    assert_int_equal(models_filename_check(longname, err, sizeof err), -1);
    assert_non_null(strstr(err, "longer than"));
}

static void test_missing_config_names_the_variable(void **state)
{
    models_config c;
    char err[512];
    assert_int_equal(models_config_load("/nonexistent/models.json", &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent/models.json"));
    assert_non_null(strstr(err, "MODELS_CONFIG"));
}

static void clear_env(void)
{
    const char *vars[] = {"MODELS_CONFIG", "MODELS_DIR", "CHECKPOINT_DIR", "LORA_DIR", "VAE_DIR", "EMBEDDINGS_DIR",
                          "CIVITAI_API_KEY", "CIVITAI_HOST"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) unsetenv(vars[i]);
}

static void test_environment(void **state)
{
    models_env env;
    char err[256];
    clear_env();
    assert_int_equal(models_env_from_environ(&env, err, sizeof err), 0);
    assert_string_equal(env.checkpoint_dir, "/runpod-volume/models/checkpoints");
    assert_string_equal(env.lora_dir, "/runpod-volume/models/loras");
    assert_string_equal(env.vae_dir, "/runpod-volume/models/vae");
    assert_string_equal(env.embedding_dir, "/runpod-volume/models/embeddings");
    assert_string_equal(env.api_key, "");
    assert_string_equal(env.civitai_origin, "");

    setenv("MODELS_DIR", "/data/m", 1);
    setenv("CIVITAI_API_KEY", "k3y-value", 1);
    assert_int_equal(models_env_from_environ(&env, err, sizeof err), 0);
    assert_string_equal(env.checkpoint_dir, "/data/m/checkpoints");
    assert_string_equal(env.lora_dir, "/data/m/loras");
    assert_string_equal(env.api_key, "k3y-value");
    assert_string_equal(env.vae_dir, "/data/m/vae");
    assert_string_equal(env.embedding_dir, "/data/m/embeddings");
    setenv("CHECKPOINT_DIR", "/ck", 1);
    setenv("LORA_DIR", "/lo", 1);
    setenv("VAE_DIR", "/va", 1);
    setenv("EMBEDDINGS_DIR", "/em", 1);
    assert_int_equal(models_env_from_environ(&env, err, sizeof err), 0);
    assert_string_equal(env.checkpoint_dir, "/ck");
    assert_string_equal(env.lora_dir, "/lo");
    assert_string_equal(env.vae_dir, "/va");
    assert_string_equal(env.embedding_dir, "/em");

    static const struct { const char *in, *out; } hosts[] = {
        {"civitai.red", "https://civitai.red"},
        {"CivitAI.com", "https://civitai.com"},
        {"https://civitai.red/", "https://civitai.red"},
        {"http://127.0.0.1:8080", "http://127.0.0.1:8080"},
        {"https://civitai.com:443", "https://civitai.com"},
    };
    for (size_t i = 0; i < sizeof hosts / sizeof *hosts; i++) {
        setenv("CIVITAI_HOST", hosts[i].in, 1);
        assert_int_equal(models_env_from_environ(&env, err, sizeof err), 0);
        assert_string_equal(env.civitai_origin, hosts[i].out);
    }
    const char *bad_hosts[] = {"ftp://civitai.com", "https://civitai.com/api", "http://"};
    for (size_t i = 0; i < sizeof bad_hosts / sizeof *bad_hosts; i++) {
        setenv("CIVITAI_HOST", bad_hosts[i], 1);
        assert_int_equal(models_env_from_environ(&env, err, sizeof err), -1);
        assert_non_null(strstr(err, "CIVITAI_HOST"));
    }
    clear_env();
}

static void test_config_found_next_to_the_binary(void **state)
{
    char cwd[PATH_MAX], found[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    char *tmp = tu_mkdtemp("models-cfg");
    assert_int_equal(chdir(tmp), 0);
    /* the test binary lives in a build directory under the repo, so <exe dir>/../config/models.json is the shipped one */
    assert_int_equal(models_find_config("config/models.json", found, sizeof found), 0);
    char *a = realpath(found, NULL), *b = realpath(SDXL_SOURCE_DIR "/config/models.json", NULL);
    assert_non_null(a);
    assert_string_equal(a, b);
    free(a);
    free(b);
    /* the working directory wins when it has one */
    assert_int_equal(system("mkdir -p config && echo '{}' > config/models.json"), 0);
    assert_int_equal(models_find_config("config/models.json", found, sizeof found), 0);
    assert_string_equal(found, "config/models.json");
    assert_int_equal(models_find_config("config/none.json", found, sizeof found), -1);
    assert_int_equal(models_find_config("/abs/none.json", found, sizeof found), -1);
    assert_string_equal(found, "/abs/none.json");
    /* MODELS_CONFIG goes through the same lookup */
    models_env env;
    char err[256];
    clear_env();
    setenv("MODELS_CONFIG", "config/models.json", 1);
    assert_int_equal(models_env_from_environ(&env, err, sizeof err), 0);
    assert_string_equal(env.config_path, "config/models.json");
    clear_env();
    assert_int_equal(chdir(cwd), 0);
    tu_rm_rf(tmp);
    free(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shipped_config_is_the_original_workers),
        cmocka_unit_test(test_full_shape_and_path_entries),
        cmocka_unit_test(test_vaes_and_embeddings),
        cmocka_unit_test(test_bad_configs_are_named),
        cmocka_unit_test(test_filename_check),
        cmocka_unit_test(test_missing_config_names_the_variable),
        cmocka_unit_test(test_environment),
        cmocka_unit_test(test_config_found_next_to_the_binary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
