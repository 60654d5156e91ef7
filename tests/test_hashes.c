/* image/hashes: AutoV2/AutoV3 against hashlib goldens (tests/data/
 * hash_goldens.json from tools/reference/make_hash_goldens.py), and the
 * cache: hits read nothing (bytes-hashed counter, and a same-size same-mtime
 * rewrite still returns the old digest), a new mtime re-hashes, the cache
 * file survives a restart and a remount (other st_dev), threads share one
 * computation. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image/hashes.h"
#include "testutil.h"

static char *tmp;

static const char *golden(const char *file, const char *key)
{
    static cJSON *g;
    if (!g) g = tu_read_json("tests/data/hash_goldens.json");
    assert_non_null(g);
    const cJSON *e = cJSON_GetObjectItem(cJSON_GetObjectItem(g, "files"), file);
    assert_non_null(e);
    return cJSON_GetStringValue(cJSON_GetObjectItem(e, key));
}

static void hex_of(const unsigned char *md, char hex[65])
{
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

static char *tmp_path(const char *name)
{
    static char path[1024];
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    return path;
}

static void write_bytes(const char *path, const void *d, size_t n) { assert_int_equal(tu_write_file(path, d, n), 0); }

static void set_mtime(const char *path, const struct timespec *t)
{
    struct timespec ts[2] = {*t, *t};
    assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static void test_hashes_match_hashlib_goldens(void **state)
{
    static const char *const files[] = {"lora_plain.safetensors", "lora_other_meta.safetensors", "lora_sshs.safetensors",
                                        "LORA_UPPER.SafeTensors", "legacy_lora.pt"};
    hash_cache *c = hash_cache_new(NULL);
    for (size_t i = 0; i < 5; i++) {
        char path[256], hex[65], v2[11], v3[HASH_AUTOV3_MAX], err[256];
        snprintf(path, sizeof path, "tests/data/hashes/%s", files[i]);
        assert_int_equal(hash_sha256(c, path, hex, err, sizeof err), 0);
        assert_string_equal(hex, golden(files[i], "sha256"));
        assert_int_equal(hash_autov2(c, path, v2, err, sizeof err), 0);
        assert_string_equal(v2, golden(files[i], "autov2"));
        assert_int_equal(hash_autov3(c, path, v3, err, sizeof err), 0);
        assert_string_equal(v3, golden(files[i], "autov3"));
        if (golden(files[i], "addnet")) {
            assert_int_equal(hash_addnet(c, path, hex, err, sizeof err), 0);
            assert_string_equal(hex, golden(files[i], "addnet"));
        }
    }
    /* the tensor-data hash ignores metadata; sshs_model_hash wins when present */
    assert_string_equal(golden("lora_plain.safetensors", "autov3"), golden("lora_other_meta.safetensors", "autov3"));
    assert_string_equal(golden("lora_sshs.safetensors", "autov3"), "feedfacecafe");
    hash_cache_free(c);
}

static void test_blocks_across_read_size(void **state)
{
    size_t n = (9u << 20) + 123; /* more than two 4 MiB reads */
    unsigned char *d = malloc(n), md[32];
    for (size_t i = 0; i < n; i++) d[i] = (unsigned char)(i * 2654435761u >> 13);
    uint64_t header = 1000;
    memcpy(d, &header, 8); /* as a safetensors file: 8-byte length, 1000 header bytes, data */
    char *path = tmp_path("big.safetensors");
    write_bytes(path, d, n);
    hash_cache *c = hash_cache_new(NULL);
    char hex[65], want[65], err[256];
    assert_int_equal(hash_sha256(c, path, hex, err, sizeof err), 0);
    SHA256(d, n, md);
    hex_of(md, want);
    assert_string_equal(hex, want);
    assert_int_equal(hash_addnet(c, path, hex, err, sizeof err), 0);
    SHA256(d + 1008, n - 1008, md);
    hex_of(md, want);
    assert_string_equal(hex, want);
    assert_int_equal(hash_cache_bytes_hashed(c), n + (n - 1008));
    hash_cache_free(c);
    unlink(path);
    free(d);
}

static void test_cache_hit_reads_nothing_until_the_file_changes(void **state)
{
    char *path = strdup(tmp_path("model.safetensors")), hex[65], first[65], err[256];
    unsigned char body[4096], md[32];
    for (size_t i = 0; i < sizeof body; i++) body[i] = (unsigned char)i;
    uint64_t header = 16;
    memcpy(body, &header, 8);
    write_bytes(path, body, sizeof body);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);

    hash_cache *c = hash_cache_new(NULL);
    assert_int_equal(hash_sha256(c, path, first, err, sizeof err), 0);
    assert_int_equal(hash_cache_bytes_hashed(c), sizeof body);
    assert_int_equal(hash_sha256(c, path, hex, err, sizeof err), 0);
    assert_string_equal(hex, first);
    assert_int_equal(hash_cache_bytes_hashed(c), sizeof body); /* a hit reads nothing */

    /* Same size, same mtime, other bytes: the identity is unchanged, so the
     * cached digest (now stale) comes back, which shows nothing was read. */
    body[100] ^= 0xFF;
    write_bytes(path, body, sizeof body);
    set_mtime(path, &st.st_mtim);
    assert_int_equal(hash_sha256(c, path, hex, err, sizeof err), 0);
    assert_string_equal(hex, first);
    assert_int_equal(hash_cache_bytes_hashed(c), sizeof body);

    /* One nanosecond later: a new identity, hashed again, new digest. */
    struct timespec later = st.st_mtim;
    later.tv_nsec = (later.tv_nsec + 1) % 1000000000;
    if (later.tv_nsec == 0) later.tv_sec++;
    set_mtime(path, &later);
    assert_int_equal(hash_sha256(c, path, hex, err, sizeof err), 0);
    SHA256(body, sizeof body, md);
    char want[65];
    hex_of(md, want);
    assert_string_equal(hex, want);
    assert_int_equal(hash_cache_bytes_hashed(c), 2 * sizeof body);

    /* The addnet digest is its own cache entry kind. */
    assert_int_equal(hash_addnet(c, path, hex, err, sizeof err), 0);
    assert_int_equal(hash_cache_bytes_hashed(c), 3 * sizeof body - 24);
    hash_cache_free(c);
    free(path);
}

static void test_cache_file_survives_restart_and_remount(void **state)
{
    char *path = strdup(tmp_path("ckpt.safetensors")), *cache = strdup(tmp_path("hashes.json"));
    char v2[11], v3[HASH_AUTOV3_MAX], err[256];
    unsigned char body[3000] = {8};
    write_bytes(path, body, sizeof body);

    hash_cache *c = hash_cache_new(cache);
    assert_int_equal(hash_autov2(c, path, v2, err, sizeof err), 0);
    assert_int_equal(hash_autov3(c, path, v3, err, sizeof err), 0);
    assert_int_equal(hash_cache_bytes_hashed(c), 3000 + (3000 - 8 - 8)); /* header length 8 */
    hash_cache_free(c);

    c = hash_cache_new(cache); /* a restart */
    char again[HASH_AUTOV3_MAX];
    assert_int_equal(hash_autov2(c, path, again, err, sizeof err), 0);
    assert_string_equal(again, v2);
    assert_int_equal(hash_autov3(c, path, again, err, sizeof err), 0);
    assert_string_equal(again, v3);
    assert_int_equal(hash_cache_bytes_hashed(c), 0);
    hash_cache_free(c);

    /* A remount gives the volume another st_dev: the path still vouches. */
    size_t n;
    char *json = tu_read_file(cache, &n);
    cJSON *root = cJSON_Parse(json);
    cJSON *entry = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "files"), 0);
    cJSON_ReplaceItemInObject(entry, "dev", cJSON_CreateString("987654321"));
    char *edited = cJSON_Print(root);
    write_bytes(cache, edited, strlen(edited));
    free(edited);
    c = hash_cache_new(cache);
    assert_int_equal(hash_autov2(c, path, again, err, sizeof err), 0);
    assert_int_equal(hash_cache_bytes_hashed(c), 0);
    hash_cache_free(c);

    /* Another st_dev and another path: not the same file, hashed again. */
    cJSON_ReplaceItemInObject(entry, "path", cJSON_CreateString("/elsewhere/ckpt.safetensors"));
    edited = cJSON_Print(root);
    write_bytes(cache, edited, strlen(edited));
    free(edited);
    c = hash_cache_new(cache);
    assert_int_equal(hash_autov2(c, path, again, err, sizeof err), 0);
    assert_string_equal(again, v2);
    assert_int_equal(hash_cache_bytes_hashed(c), 3000);
    hash_cache_free(c);
    cJSON_Delete(root);
    free(json);

    /* A broken cache file is an empty cache, not a failure. */
    write_bytes(cache, "{not json", 9);
    c = hash_cache_new(cache);
    assert_non_null(c);
    assert_int_equal(hash_autov2(c, path, again, err, sizeof err), 0);
    assert_string_equal(again, v2);
    hash_cache_free(c);
    free(path);
    free(cache);
}

static void test_store_digest_seeds_the_cache(void **state)
{
    char *path = strdup(tmp_path("seeded.bin")), v2[11], err[256];
    write_bytes(path, "hello", 5);
    hash_cache *c = hash_cache_new(NULL);
    const char *fake = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    assert_int_equal(hash_cache_put_sha256(c, path, fake), 0);
    assert_int_equal(hash_autov2(c, path, v2, err, sizeof err), 0);
    assert_string_equal(v2, "0011223344");
    assert_int_equal(hash_cache_bytes_hashed(c), 0);
    assert_int_equal(hash_cache_put_sha256(c, path, "not hex"), -1);
    hash_cache_free(c);
    free(path);
}

typedef struct {
    hash_cache *c;
    const char *path;
    char hex[65];
    int rc;
} job;

static void *hash_thread(void *arg)
{
    job *j = arg;
    char err[256];
    j->rc = hash_sha256(j->c, j->path, j->hex, err, sizeof err);
    return NULL;
}

static void test_threads_share_one_computation(void **state)
{
    size_t n = 6u << 20;
    unsigned char *d = malloc(n);
    for (size_t i = 0; i < n; i++) d[i] = (unsigned char)(i % 251);
    char *path = strdup(tmp_path("shared.bin"));
    write_bytes(path, d, n);
    hash_cache *c = hash_cache_new(NULL);
    job jobs[6];
    pthread_t th[6];
    for (int i = 0; i < 6; i++) {
        jobs[i] = (job){.c = c, .path = path};
        assert_int_equal(pthread_create(&th[i], NULL, hash_thread, &jobs[i]), 0);
    }
    for (int i = 0; i < 6; i++) pthread_join(th[i], NULL);
    unsigned char md[32];
    char want[65];
    SHA256(d, n, md);
    hex_of(md, want);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(jobs[i].rc, 0);
        assert_string_equal(jobs[i].hex, want);
    }
    assert_int_equal(hash_cache_bytes_hashed(c), n); /* hashed once, the others waited */
    hash_cache_free(c);
    free(path);
    free(d);
}

static void test_errors_are_clear(void **state)
{
    hash_cache *c = hash_cache_new(NULL);
    char hex[65], v3[HASH_AUTOV3_MAX], err[256];
    assert_int_equal(hash_sha256(c, tmp_path("missing.safetensors"), hex, err, sizeof err), -1);
    assert_non_null(strstr(err, "No such file"));
    assert_int_equal(hash_sha256(c, tmp, hex, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a regular file"));
    char *bad = strdup(tmp_path("bad.safetensors"));
    unsigned char b[16] = {0xFF, 0xFF, 0, 0, 0, 0, 0, 0}; /* header longer than the file */
    write_bytes(bad, b, sizeof b);
    assert_int_equal(hash_addnet(c, bad, hex, err, sizeof err), -1);
    assert_non_null(strstr(err, "does not fit the file"));
    assert_int_equal(hash_autov3(c, bad, v3, err, sizeof err), -1);
    write_bytes(bad, b, 5);
    assert_int_equal(hash_autov3(c, bad, v3, err, sizeof err), -1);
    assert_non_null(strstr(err, "too short"));
    /* a failed computation leaves no entry behind: a fixed file hashes fine */
    uint64_t zero = 0;
    write_bytes(bad, &zero, 8);
    assert_int_equal(hash_addnet(c, bad, hex, err, sizeof err), 0);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"); /* no data */
    hash_cache_free(c);
    free(bad);
}

static int setup(void **state)
{
    tmp = tu_mkdtemp("test_hashes");
    return tmp ? 0 : -1;
}

static int teardown(void **state)
{
    tu_rm_rf(tmp);
    free(tmp);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hashes_match_hashlib_goldens),
        cmocka_unit_test(test_blocks_across_read_size),
        cmocka_unit_test(test_cache_hit_reads_nothing_until_the_file_changes),
        cmocka_unit_test(test_cache_file_survives_restart_and_remount),
        cmocka_unit_test(test_store_digest_seeds_the_cache),
        cmocka_unit_test(test_threads_share_one_computation),
        cmocka_unit_test(test_errors_are_clear),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
