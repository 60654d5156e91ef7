/* Model store against the fake Civitai + storage host (tests/support/
 * fake_civitai.h), in process: success with progress and the verified cache,
 * the 401 messages, the key never reaching the storage host, resume after a
 * cut, a fresh signed URL after a used-up one, 429/500 retries, HTML pages,
 * wrong hashes, the 403/404/410 messages, the civitai.com -> CIVITAI_HOST
 * rewrite, a .part left by an earlier run, a server that ignores Range, and
 * models_ensure over a whole config. Every test captures all log output and
 * the teardown asserts that the API key appears in no log line, no error,
 * no file written and no storage request. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fake_civitai.h"
#include "fd_capture.h"
#include "testutil.h"

#include "models/store.h"
#include "runpod/log.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PAYLOAD (2u << 20)

typedef struct {
    fake_civitai *fc;
    char *root;
    char key[48];
    models_env env;
    models_opts opts;
    unsigned char *data;
    size_t len;
    char sha[65];
    char *logs;        /* everything captured so far */
    size_t logs_len;
    char url[512], file[4200], part[4300], side[4300];
    models_entry e;
} fixture;

static void random_key(char *out, size_t outlen)
{
    unsigned char r[16];
    int fd = open("/dev/urandom", O_RDONLY);
    assert_int_equal(read(fd, r, sizeof r), (ssize_t)sizeof r);
    close(fd);
    size_t w = (size_t)snprintf(out, outlen, "civkey_");
    for (int i = 0; i < 16; i++) w += (size_t)snprintf(out + w, outlen - w, "%02x", r[i]);
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    random_key(fx->key, sizeof fx->key);
    fx->fc = fc_start(fx->key);
    fx->root = tu_mkdtemp("models-store");
    if (!fx->fc || !fx->root) return -1;
    snprintf(fx->env.checkpoint_dir, sizeof fx->env.checkpoint_dir, "%s/models/checkpoints", fx->root);
    snprintf(fx->env.lora_dir, sizeof fx->env.lora_dir, "%s/models/loras", fx->root);
    snprintf(fx->env.vae_dir, sizeof fx->env.vae_dir, "%s/models/vae", fx->root);
    snprintf(fx->env.embedding_dir, sizeof fx->env.embedding_dir, "%s/models/embeddings", fx->root);
    snprintf(fx->env.api_key, sizeof fx->env.api_key, "%s", fx->key);
    snprintf(fx->env.civitai_origin, sizeof fx->env.civitai_origin, "%s", fc_civitai_origin(fx->fc));
    models_opts_default(&fx->opts);
    fx->opts.net.backoff_base_ms = 20;
    fx->opts.net.backoff_cap_ms = 200;
    fx->opts.net.retry_after_cap_ms = 3000;
    fx->opts.net.progress_interval_ms = 40;
    fx->opts.lock_poll_ms = 20;
    fx->data = fc_make_safetensors(PAYLOAD, 7, &fx->len);
    fc_sha256_hex(fx->data, fx->len, fx->sha);
    fx->logs = calloc(1, 1);
    rp_log_reset();
    *state = fx;
    return 0;
}

/* Fails the test if the key shows up in any file under dir. */
static int key_in_files(const char *dir, const char *key)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *de;
    int found = 0;
    while ((de = readdir(d)) && !found) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char path[4600];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        struct stat st;
        if (lstat(path, &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) {
            found = key_in_files(path, key);
        } else {
            size_t n;
            char *text = tu_read_file(path, &n);
            found = text && memmem(text, n, key, strlen(key)) != NULL;
            if (found) fprintf(stderr, "the API key was written into %s\n", path);
            free(text);
        }
    }
    closedir(d);
    return found;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    int bad = 0;
    if (strstr(fx->logs, fx->key)) { fprintf(stderr, "the API key appeared in the log output\n"); bad = 1; }
    if (!fc_storage_never_saw_key(fx->fc)) { fprintf(stderr, "the storage host received the key\n"); bad = 1; }
    if (key_in_files(fx->root, fx->key)) bad = 1;
    if (getenv("TEST_VERBOSE")) fputs(fx->logs, stderr);
    fc_stop(fx->fc);
    tu_rm_rf(fx->root);
    free(fx->root);
    free(fx->data);
    free(fx->logs);
    free(fx);
    rp_log_reset();
    return bad ? -1 : 0;
}

/* An entry for version `id` with the given query, into the LoRA dir. */
static models_entry *entry(fixture *fx, uint64_t id, const char *query)
{
    snprintf(fx->url, sizeof fx->url, "%s/api/download/models/%llu%s%s", fc_civitai_origin(fx->fc),
             (unsigned long long)id, query ? "?" : "", query ? query : "");
    snprintf(fx->file, sizeof fx->file, "%s/lora_%llu.safetensors", fx->env.lora_dir, (unsigned long long)id);
    snprintf(fx->part, sizeof fx->part, "%s.part", fx->file);
    snprintf(fx->side, sizeof fx->side, "%s.verified", fx->file);
    static char filename[64];
    snprintf(filename, sizeof filename, "lora_%llu.safetensors", (unsigned long long)id);
    fx->e = (models_entry){.name = "Test LoRA", .url = fx->url, .filename = filename, .scale = 1.0};
    return &fx->e;
}

static void add_version(fixture *fx, uint64_t id, bool require_auth)
{
    fc_version v = {.version_id = id, .file_id = id * 10, .file_name = "../../evil name.safetensors",
                    .data = fx->data, .len = fx->len, .require_auth = require_auth, .format = "SafeTensor"};
    fc_add_version(fx->fc, &v);
}

/* Runs one entry with stderr captured; checks the key is in neither the
 * output nor the error. Returns the store's result. */
static int run(fixture *fx, const models_entry *e, models_item *it)
{
    fd_capture cap;
    assert_int_equal(fd_capture_start(&cap, 2), 0);
    int rc = models_ensure_entry(e, fx->env.lora_dir, &fx->env, &fx->opts, it);
    size_t n;
    char *out = fd_capture_end(&cap, &n);
    fx->logs = realloc(fx->logs, fx->logs_len + n + 1);
    memcpy(fx->logs + fx->logs_len, out, n + 1);
    fx->logs_len += n;
    assert_null(strstr(out, fx->key));
    if (it->error) assert_null(strstr(it->error, fx->key));
    free(out);
    return rc;
}

static bool exists(const char *path) { return access(path, F_OK) == 0; }

static void make_lora_dir(fixture *fx)
{
    char models[4200];
    snprintf(models, sizeof models, "%s/models", fx->root);
    assert_true(mkdir(models, 0755) == 0 || exists(models));
    assert_true(mkdir(fx->env.lora_dir, 0755) == 0 || exists(fx->env.lora_dir));
}

static void assert_file_is(const char *path, const unsigned char *data, size_t len)
{
    size_t n;
    char *got = tu_read_file(path, &n);
    assert_non_null(got);
    assert_int_equal(n, len);
    assert_memory_equal(got, data, len);
    free(got);
}

static void assert_nothing_saved(fixture *fx)
{
    assert_false(exists(fx->file));
    assert_false(exists(fx->part));
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_success_progress_and_cache(void **state)
{
    fixture *fx = *state;
    add_version(fx, 1001, true);
    fc_script(fx->fc)->throttle_ms_per_64k = 8;
    models_item it;
    assert_int_equal(run(fx, entry(fx, 1001, "type=Model&format=SafeTensor"), &it), 0);
    assert_true(it.ok);
    assert_true(it.downloaded);
    assert_int_equal(it.hash_source, MODELS_HASH_CIVITAI);
    assert_string_equal(it.sha256, fx->sha);
    assert_string_equal(it.path, fx->file);
    assert_file_is(fx->file, fx->data, fx->len);
    assert_false(exists(fx->part));
    assert_true(exists(fx->side));
    /* progress lines and the final line */
    assert_non_null(strstr(fx->logs, "% of 2.1 MB ("));
    assert_non_null(strstr(fx->logs, "MB/s, ETA "));
    assert_non_null(strstr(fx->logs, "verified against Civitai's published hash"));
    /* the key went to Civitai as a Bearer header; the UA is ours */
    fc_request rq[64];
    size_t n = fc_requests(fx->fc, rq, 64);
    bool saw_download = false;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(rq[i].server, "civitai") == 0) assert_true(rq[i].bearer_ok);
        assert_int_equal(strncmp(rq[i].user_agent, "sdxl-worker/", 12), 0);
        saw_download |= strncmp(rq[i].path, "/api/download/", 14) == 0;
    }
    assert_true(saw_download);
    /* the server's file name ("../../evil name.safetensors") was not used */
    char evil[4300];
    snprintf(evil, sizeof evil, "%s/evil name.safetensors", fx->root);
    assert_false(exists(evil));
    snprintf(evil, sizeof evil, "%s/models/evil name.safetensors", fx->root);
    assert_false(exists(evil));
    models_paths_free(&(models_paths){.checkpoint = it});

    /* second start: the sidecar vouches, no request at all */
    size_t before = fc_requests(fx->fc, rq, 0);
    assert_int_equal(run(fx, &fx->e, &it), 0);
    assert_true(it.ok);
    assert_false(it.downloaded);
    assert_int_equal(it.hash_source, MODELS_HASH_CIVITAI);
    assert_int_equal(fc_requests(fx->fc, rq, 0), before);
    assert_non_null(strstr(fx->logs, "present and verified (cached)"));
    models_paths_free(&(models_paths){.checkpoint = it});

    /* the mtime lost its sub-second part (a copy into an image layer): still cached */
    struct stat st;
    assert_int_equal(stat(fx->file, &st), 0);
    struct timespec ts[2] = {{0, UTIME_OMIT}, {st.st_mtim.tv_sec, 0}};
    assert_int_equal(utimensat(AT_FDCWD, fx->file, ts, 0), 0);
    assert_int_equal(run(fx, &fx->e, &it), 0);
    assert_int_equal(fc_requests(fx->fc, rq, 0), before);
    assert_null(strstr(fx->logs, "and verified it"));
    models_paths_free(&(models_paths){.checkpoint = it});

    /* mtime changed: re-hashed and accepted without a download */
    ts[1] = (struct timespec){1000000000, 0};
    assert_int_equal(utimensat(AT_FDCWD, fx->file, ts, 0), 0);
    int downloads = fc_count(fx->fc, "civitai", "/api/download/");
    assert_int_equal(run(fx, &fx->e, &it), 0);
    assert_true(it.ok);
    assert_false(it.downloaded);
    assert_int_equal(fc_count(fx->fc, "civitai", "/api/download/"), downloads);
    assert_non_null(strstr(fx->logs, "and verified it"));
    models_paths_free(&(models_paths){.checkpoint = it});

    /* same size, one byte changed, new mtime: detected and downloaded again */
    int fd = open(fx->file, O_WRONLY);
    assert_int_equal(pwrite(fd, "X", 1, (off_t)fx->len - 5), 1);
    close(fd);
    ts[1].tv_sec = 1100000000;
    assert_int_equal(utimensat(AT_FDCWD, fx->file, ts, 0), 0);
    assert_int_equal(run(fx, &fx->e, &it), 0);
    assert_true(it.ok);
    assert_true(it.downloaded);
    assert_int_equal(fc_count(fx->fc, "civitai", "/api/download/"), downloads + 1);
    assert_file_is(fx->file, fx->data, fx->len);
    models_paths_free(&(models_paths){.checkpoint = it});
}

static void test_no_key_gives_401_message(void **state)
{
    fixture *fx = *state;
    add_version(fx, 1002, true);
    fx->env.api_key[0] = 0;
    models_item it;
    assert_int_equal(run(fx, entry(fx, 1002, "type=Model&format=SafeTensor"), &it), -1);
    assert_false(it.ok);
    assert_non_null(strstr(it.error, "HTTP 401"));
    assert_non_null(strstr(it.error, "CIVITAI_API_KEY is not set"));
    assert_non_null(strstr(it.error, "requires you to be logged in"));
    assert_nothing_saved(fx);
    assert_int_equal(fc_count(fx->fc, "storage", "/"), 0);
    models_paths_free(&(models_paths){.checkpoint = it});

    /* a wrong key: named as not accepted, and never printed either */
    char wrong[64];
    random_key(wrong, sizeof wrong);
    snprintf(fx->env.api_key, sizeof fx->env.api_key, "%s", wrong);
    assert_int_equal(run(fx, &fx->e, &it), -1);
    assert_non_null(strstr(it.error, "did not accept CIVITAI_API_KEY"));
    assert_null(strstr(it.error, wrong));
    assert_null(strstr(fx->logs, wrong));
    assert_nothing_saved(fx);
    models_paths_free(&(models_paths){.checkpoint = it});
}

static void test_storage_never_gets_authorization(void **state)
{
    fixture *fx = *state;
    add_version(fx, 1003, true);
    models_item it;
    assert_int_equal(run(fx, entry(fx, 1003, NULL), &it), 0);
    assert_true(it.ok);
    fc_request rq[64];
    size_t n = fc_requests(fx->fc, rq, 64);
    int storage = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(rq[i].server, "storage") != 0) continue;
        storage++;
        assert_false(rq[i].had_auth);
        assert_false(rq[i].key_seen);
        assert_int_not_equal(rq[i].status, 400); /* what it answers to an Authorization header */
    }
    assert_int_equal(storage, 1);
    models_paths_free(&(models_paths){.checkpoint = it});

    /* a URL that is not Civitai's gets no key at all, even with one set */
    snprintf(fx->url, sizeof fx->url, "%s/public/%u", fc_storage_origin(fx->fc), 10030);
    unlink(fx->file);
    unlink(fx->side);
    fx->opts.allow_unverified = true; /* nobody publishes a hash for a plain URL */
    assert_int_equal(run(fx, &fx->e, &it), 0);
    assert_true(it.ok);
    assert_int_equal(it.hash_source, MODELS_HASH_NONE);
    assert_int_equal(fc_count(fx->fc, "storage", "/public/"), 1);
    assert_true(fc_storage_never_saw_key(fx->fc));
    models_paths_free(&(models_paths){.checkpoint = it});
}

static void test_cut_at_40_percent_resumes_with_range(void **state)
{
    fixture *fx = *state;
    add_version(fx, 1004, true);
    fc_script(fx->fc)->cut_first_at = 0.4;
    models_item it;
    assert_int_equal(run(fx, entry(fx, 1004, NULL), &it), 0);
    assert_true(it.ok);
    assert_file_is(fx->file, fx->data, fx->len);
    fc_request rq[64];
    size_t n = fc_requests(fx->fc, rq, 64);
    const fc_request *first = NULL, *second = NULL;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(rq[i].server, "storage") != 0) continue;
        if (!first) first = &rq[i];
        else if (!second) second = &rq[i];
        else fail_msg("more than two storage requests");
    }
    assert_non_null(second);
    size_t cut = (size_t)(fx->len * 0.4);
    char want[64];
    snprintf(want, sizeof want, "bytes=%zu-", cut);
    assert_string_equal(first->range, "");
    assert_int_equal(first->bytes_sent, cut);
    assert_string_equal(second->range, want);
    assert_int_equal(second->status, 206);
    assert_int_equal(second->bytes_sent, fx->len - cut);
    assert_int_equal(fc_storage_bytes(fx->fc), fx->len); /* resumed, not restarted */
    assert_int_equal(fc_count(fx->fc, "civitai", "/api/download/"), 1);
    models_paths_free(&(models_paths){.checkpoint = it});
}

static void test_used_up_signed_url_gets_fresh_one(void **state)
{
    fixture *fx = *state;
    add_version(fx, 1005, true);
    fc_script(fx->fc)->cut_first_at = 0.5;
    fc_script(fx->fc)->token_uses = 1;
    models_item it;
    assert_int_equal(run(fx, entry(fx, 1005, NULL), &it), 0);
    assert_true(it.ok);
    assert_file_is(fx->file, fx->data, fx->len);
    assert_int_equal(fc_count(fx->fc, "civitai", "/api/download/"), 2);
    fc_request rq[64], *st[8];
    size_t n = fc_requests(fx->fc, rq, 64), k = 0;
    for (size_t i = 0; i < n && k < 8; i++)
        if (strcmp(rq[i].server, "storage") == 0) st[k++] = &rq[i];
    assert_int_equal(k, 3);
    size_t cut = fx->len / 2;
    char want[64];
    snprintf(want, sizeof want, "bytes=%zu-", cut);
    assert_int_equal(st[0]->status, 200);
    assert_int_equal(st[1]->status, 403); /* the used-up URL */
    assert_string_equal(st[1]->range, want);
    assert_int_equal(st[2]->status, 206); /* the fresh one, resuming */
    assert_string_equal(st[2]->range, want);
    assert_string_not_equal(st[1]->path, st[2]->path);
    assert_int_equal(fc_storage_bytes(fx->fc), fx->len);
    assert_non_null(strstr(fx->logs, "asking"));
    models_paths_free(&(models_paths){.checkpoint = it});
}

static void test_429_once_then_success(void **state)
{
    fixture *fx = *state;
    add_version(fx, 1006, true);
    fc_script(fx->fc)->download_fail[0] = 429;
    fc_script(fx->fc)->n_download_fail = 1;
    fc_script(fx->fc)->retry_after_s = 1;
    models_item it;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(run(fx, entry(fx, 1006, NULL), &it), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_true(it.ok);
    assert_int_equal(fc_count(fx->fc, "civitai", "/api/download/"), 2);
    double waited = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(waited >= 0.95); /* Retry-After: 1 honoured over the 20 ms backoff */
    assert_non_null(strstr(fx->logs, "HTTP 429"));
    models_paths_free(&(models_paths){.checkpoint = it});
}

static void test_500_twice_then_success(void **state)
{
    fixture *fx = *state;
    add_version(fx, 1007, true);
    fc_script(fx->fc)->download_fail[0] = 500;
    fc_script(fx->fc)->download_fail[1] = 503;
    fc_script(fx->fc)->n_download_fail = 2;
    models_item it;
    assert_int_equal(run(fx, entry(fx, 1007, NULL), &it), 0);
    assert_true(it.ok);
    assert_int_equal(fc_count(fx->fc, "civitai", "/api/download/"), 3);
    assert_file_is(fx->file, fx->data, fx->len);
    models_paths_free(&(models_paths){.checkpoint = it});

    /* 4xx are never retried */
    add_version(fx, 1017, true);
    fc_script(fx->fc)->download_fail[2] = 404;
    fc_script(fx->fc)->n_download_fail = 3;
    int before = fc_count(fx->fc, "civitai", "/api/download/");
    assert_int_equal(run(fx, entry(fx, 1017, NULL), &it), -1);
    assert_int_equal(fc_count(fx->fc, "civitai", "/api/download/"), before + 1);
    models_paths_free(&(models_paths){.checkpoint = it});
}

static void test_html_login_page_rejected(void **state)
{
    fixture *fx = *state;
    add_version(fx, 1008, true);
    fc_script(fx->fc)->login_page_200 = true;
    models_item it;
    assert_int_equal(run(fx, entry(fx, 1008, NULL), &it), -1);
    assert_non_null(strstr(it.error, "text/html"));
    assert_non_null(strstr(it.error, "login page"));
    assert_nothing_saved(fx);
    models_paths_free(&(models_paths){.checkpoint = it});

    /* an HTML page labelled as binary, with no hash to compare: caught by its first bytes */
    fc_version v = {.version_id = 1018, .file_id = 10180, .file_name = "x.safetensors", .data = fx->data,
                    .len = fx->len, .published_sha256 = ""};
    fc_add_version(fx->fc, &v);
    fc_script(fx->fc)->login_page_200 = false;
    fc_script(fx->fc)->html_as_octet_stream = true;
    fx->opts.allow_unverified = true;
    assert_int_equal(run(fx, entry(fx, 1018, NULL), &it), -1);
    assert_non_null(strstr(it.error, "HTML/XML page instead of a safetensors model"));
    assert_nothing_saved(fx);
    models_paths_free(&(models_paths){.checkpoint = it});
}

static void test_wrong_sha256_rejected(void **state)
{
    fixture *fx = *state;
    add_version(fx, 1009, true);
    models_entry *e = entry(fx, 1009, NULL);
    snprintf(e->sha256, sizeof e->sha256, "%064d", 0);
    models_item it;
    assert_int_equal(run(fx, e, &it), -1);
    assert_non_null(strstr(it.error, "SHA-256 mismatch"));
    assert_non_null(strstr(it.error, "the config says"));
    assert_nothing_saved(fx);
    models_paths_free(&(models_paths){.checkpoint = it});

    /* a wrong hash published by Civitai is caught the same way */
    fc_version v = {.version_id = 1019, .file_id = 10190, .file_name = "x.safetensors", .data = fx->data,
                    .len = fx->len, .published_sha256 = "ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB"};
    fc_add_version(fx->fc, &v);
    assert_int_equal(run(fx, entry(fx, 1019, NULL), &it), -1);
    assert_non_null(strstr(it.error, "Civitai says abab"));
    assert_nothing_saved(fx);
    models_paths_free(&(models_paths){.checkpoint = it});

    /* the right hash in the config is accepted and named as the source */
    e = entry(fx, 1009, NULL);
    snprintf(e->sha256, sizeof e->sha256, "%s", fx->sha);
    assert_int_equal(run(fx, e, &it), 0);
    assert_int_equal(it.hash_source, MODELS_HASH_CONFIG);
    assert_non_null(strstr(fx->logs, "verified against the config"));
    models_paths_free(&(models_paths){.checkpoint = it});
}

static void test_403_404_410_messages(void **state)
{
    fixture *fx = *state;
    fc_version v = {.version_id = 1010, .file_id = 10100, .file_name = "x.safetensors", .data = fx->data,
                    .len = fx->len, .early_access_deadline = "2026-09-01T00:00:00.000Z", .format = "SafeTensor"};
    fc_add_version(fx->fc, &v);
    models_item it;
    assert_int_equal(run(fx, entry(fx, 1010, NULL), &it), -1);
    assert_non_null(strstr(it.error, "Early Access until 2026-09-01T00:00:00.000Z"));
    models_paths_free(&(models_paths){.checkpoint = it});

    add_version(fx, 1011, true);
    assert_int_equal(run(fx, entry(fx, 1011, "type=Model&format=PickleTensor"), &it), -1);
    assert_non_null(strstr(it.error, "HTTP 404"));
    assert_non_null(strstr(it.error, "filters (type=Model&format=PickleTensor)"));
    models_paths_free(&(models_paths){.checkpoint = it});

    fc_version a = {.version_id = 1012, .file_id = 10120, .file_name = "x.safetensors", .data = fx->data,
                    .len = fx->len, .archived = true};
    fc_add_version(fx->fc, &a);
    assert_int_equal(run(fx, entry(fx, 1012, NULL), &it), -1);
    assert_non_null(strstr(it.error, "HTTP 410"));
    assert_non_null(strstr(it.error, "archived"));
    assert_nothing_saved(fx);
    models_paths_free(&(models_paths){.checkpoint = it});
}

static void test_civitai_com_url_goes_to_civitai_host(void **state)
{
    fixture *fx = *state;
    add_version(fx, 1013, true);
    models_entry *e = entry(fx, 1013, NULL);
    snprintf(fx->url, sizeof fx->url, "https://civitai.com/api/download/models/1013?type=Model&format=SafeTensor");
    models_item it;
    assert_int_equal(run(fx, e, &it), 0); /* reached the fake only through CIVITAI_HOST */
    assert_true(it.ok);
    assert_int_equal(it.hash_source, MODELS_HASH_CIVITAI);
    assert_int_equal(fc_count(fx->fc, "civitai", "/api/download/models/1013"), 1);
    models_paths_free(&(models_paths){.checkpoint = it});
}

static void test_leftover_part_is_resumed_or_discarded(void **state)
{
    fixture *fx = *state;
    add_version(fx, 1014, true);
    models_entry *e = entry(fx, 1014, NULL);
    make_lora_dir(fx);
    size_t have = fx->len * 3 / 10;
    assert_int_equal(tu_write_file(fx->part, fx->data, have), 0);
    models_item it;
    assert_int_equal(run(fx, e, &it), 0);
    assert_file_is(fx->file, fx->data, fx->len);
    fc_request rq[16];
    size_t n = fc_requests(fx->fc, rq, 16);
    char want[64];
    snprintf(want, sizeof want, "bytes=%zu-", have);
    bool ranged = false;
    for (size_t i = 0; i < n; i++) ranged |= !strcmp(rq[i].server, "storage") && !strcmp(rq[i].range, want);
    assert_true(ranged);
    assert_int_equal(fc_storage_bytes(fx->fc), fx->len - have);
    models_paths_free(&(models_paths){.checkpoint = it});

    /* a .part holding an error page is thrown away, not resumed */
    add_version(fx, 1015, true);
    e = entry(fx, 1015, NULL);
    assert_int_equal(tu_write_file(fx->part, "<html>Not Found</html>", 22), 0);
    size_t before = fc_storage_bytes(fx->fc);
    assert_int_equal(run(fx, e, &it), 0);
    assert_file_is(fx->file, fx->data, fx->len);
    assert_int_equal(fc_storage_bytes(fx->fc) - before, fx->len);
    assert_non_null(strstr(fx->logs, "discarding"));
    models_paths_free(&(models_paths){.checkpoint = it});

    /* a complete .part (stopped before the rename): the 416 for "bytes=<size>-" completes it */
    add_version(fx, 1022, true);
    e = entry(fx, 1022, NULL);
    assert_int_equal(tu_write_file(fx->part, fx->data, fx->len), 0);
    before = fc_storage_bytes(fx->fc);
    assert_int_equal(run(fx, e, &it), 0);
    assert_true(it.ok);
    assert_file_is(fx->file, fx->data, fx->len);
    assert_int_equal(fc_storage_bytes(fx->fc), before);
    fc_request rq2[64];
    n = fc_requests(fx->fc, rq2, 64);
    assert_int_equal(rq2[n - 1].status, 416);
    snprintf(want, sizeof want, "bytes=%zu-", fx->len);
    assert_string_equal(rq2[n - 1].range, want);
    models_paths_free(&(models_paths){.checkpoint = it});
}

static void test_server_ignoring_range_restarts_cleanly(void **state)
{
    fixture *fx = *state;
    add_version(fx, 1016, true);
    fc_script(fx->fc)->ignore_range = true;
    models_entry *e = entry(fx, 1016, NULL);
    make_lora_dir(fx);
    assert_int_equal(tu_write_file(fx->part, fx->data, fx->len / 3), 0);
    models_item it;
    assert_int_equal(run(fx, e, &it), 0);
    assert_file_is(fx->file, fx->data, fx->len);
    assert_non_null(strstr(fx->logs, "ignored the Range request"));
    models_paths_free(&(models_paths){.checkpoint = it});
}

static void test_models_ensure_whole_config(void **state)
{
    fixture *fx = *state;
    add_version(fx, 1020, true);
    add_version(fx, 1021, true);
    char u1[256], u2[256], u3[256], local[4200];
    snprintf(u1, sizeof u1, "%s/api/download/models/1020", fc_civitai_origin(fx->fc));
    snprintf(u2, sizeof u2, "%s/api/download/models/1021", fc_civitai_origin(fx->fc));
    snprintf(u3, sizeof u3, "%s/api/download/models/9999", fc_civitai_origin(fx->fc));
    snprintf(local, sizeof local, "%s/local.safetensors", fx->root);
    assert_int_equal(tu_write_file(local, fx->data, fx->len), 0);
    models_entry loras[3] = {
        {.name = "A", .url = u2, .filename = "a.safetensors", .scale = 0.5},
        {.name = "B", .path = local, .filename = "local.safetensors", .scale = 1.5},
        {.name = "Missing", .url = u3, .filename = "m.safetensors", .scale = 1},
    };
    models_entry vaes[1] = {{.name = "V", .url = u2, .filename = "v.safetensors", .scale = 1}};
    models_entry embeddings[2] = {{.name = "E", .path = local, .filename = "local.safetensors", .scale = 1},
                                  {.name = "Gone E", .url = u3, .filename = "e.safetensors", .scale = 1}};
    models_config cfg = {.checkpoint = {.name = "Ckpt", .url = u1, .filename = "c.safetensors", .scale = 1},
                         .loras = loras, .n_loras = 3, .vaes = vaes, .n_vaes = 1, .embeddings = embeddings,
                         .n_embeddings = 2};
    models_paths p;
    char err[4096];
    fd_capture cap;
    assert_int_equal(fd_capture_start(&cap, 2), 0);
    int rc = models_ensure(&cfg, &fx->env, &fx->opts, &p, err, sizeof err);
    size_t n;
    char *out = fd_capture_end(&cap, &n);
    fx->logs = realloc(fx->logs, fx->logs_len + n + 1);
    memcpy(fx->logs + fx->logs_len, out, n + 1);
    fx->logs_len += n;
    free(out);
    assert_int_equal(rc, -1);
    assert_null(strstr(err, fx->key));
    assert_non_null(strstr(err, "2 of 7 models unavailable"));
    assert_non_null(strstr(err, "Missing: HTTP 404"));
    assert_non_null(strstr(err, "Gone E: HTTP 404"));
    assert_true(p.checkpoint.ok);
    char want[4300];
    snprintf(want, sizeof want, "%s/c.safetensors", fx->env.checkpoint_dir);
    assert_string_equal(p.checkpoint.path, want);
    assert_int_equal(p.n_loras, 3);
    assert_true(p.loras[0].ok);
    assert_true(p.loras[0].scale == 0.5);
    assert_true(p.loras[1].ok);
    assert_string_equal(p.loras[1].path, local);
    assert_false(p.loras[2].ok);
    /* VAEs and embeddings go to their own folders */
    assert_int_equal(p.n_vaes, 1);
    assert_true(p.vaes[0].ok);
    snprintf(want, sizeof want, "%s/v.safetensors", fx->env.vae_dir);
    assert_string_equal(p.vaes[0].path, want);
    assert_int_equal(p.n_embeddings, 2);
    assert_true(p.embeddings[0].ok);
    assert_false(p.embeddings[1].ok);
    assert_ptr_equal(models_paths_item(&p, 6), &p.embeddings[1]);
    assert_null(models_paths_item(&p, 7));
    models_paths_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_success_progress_and_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_key_gives_401_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_storage_never_gets_authorization, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cut_at_40_percent_resumes_with_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_used_up_signed_url_gets_fresh_one, setup, teardown),
        cmocka_unit_test_setup_teardown(test_429_once_then_success, setup, teardown),
        cmocka_unit_test_setup_teardown(test_500_twice_then_success, setup, teardown),
        cmocka_unit_test_setup_teardown(test_html_login_page_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_sha256_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_403_404_410_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_civitai_com_url_goes_to_civitai_host, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leftover_part_is_resumed_or_discarded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_ignoring_range_restarts_cleanly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_models_ensure_whole_config, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
