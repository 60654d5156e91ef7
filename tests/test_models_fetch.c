/* `sdxl-worker fetch-models` as a process ($SDXL_WORKER_BIN) against the fake
 * Civitai + storage host: two processes at once on one directory (one
 * download, both end with the verified file), a full disk (a small tmpfs in
 * a private mount namespace), the exit codes (0 all verified, 1 a model
 * missing or unverified, 2 a bad config) and the JSON summary on stdout.
 * Every run's stdout and stderr are captured and must not contain the key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fake_civitai.h"
#include "testutil.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    fake_civitai *fc;
    char *root;
    char key[48];
    char config[4200], models[4200];
    unsigned char *ckpt, *lora;
    size_t ckpt_len, lora_len;
    char ckpt_sha[65], lora_sha[65];
} fixture;

typedef struct {
    int rc;
    char *out, *err; /* stdout, stderr */
} run_result;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    unsigned char r[16];
    int fd = open("/dev/urandom", O_RDONLY);
    if (read(fd, r, sizeof r) != (ssize_t)sizeof r) return -1;
    close(fd);
    size_t w = (size_t)snprintf(fx->key, sizeof fx->key, "civkey_");
    for (int i = 0; i < 16; i++) w += (size_t)snprintf(fx->key + w, sizeof fx->key - w, "%02x", r[i]);
    fx->fc = fc_start(fx->key);
    fx->root = tu_mkdtemp("models-fetch");
    if (!fx->fc || !fx->root) return -1;
    snprintf(fx->config, sizeof fx->config, "%s/models.json", fx->root);
    snprintf(fx->models, sizeof fx->models, "%s/models", fx->root);
    fx->ckpt = fc_make_safetensors(3u << 20, 1, &fx->ckpt_len);
    fx->lora = fc_make_safetensors(1u << 20, 2, &fx->lora_len);
    fc_sha256_hex(fx->ckpt, fx->ckpt_len, fx->ckpt_sha);
    fc_sha256_hex(fx->lora, fx->lora_len, fx->lora_sha);
    fc_version c = {.version_id = 3001, .file_id = 30010, .file_name = "JibMix_v2.safetensors", .data = fx->ckpt,
                    .len = fx->ckpt_len, .require_auth = true, .format = "SafeTensor", .size = "pruned", .fp = "fp16"};
    fc_version l = {.version_id = 3002, .file_id = 30020, .file_name = "detail.safetensors", .data = fx->lora,
                    .len = fx->lora_len, .require_auth = true, .format = "SafeTensor"};
    fc_add_version(fx->fc, &c);
    fc_add_version(fx->fc, &l);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    int bad = !fc_storage_never_saw_key(fx->fc);
    if (bad) fprintf(stderr, "the storage host received the key\n");
    fc_stop(fx->fc);
    tu_rm_rf(fx->root);
    free(fx->root);
    free(fx->ckpt);
    free(fx->lora);
    free(fx);
    return bad ? -1 : 0;
}

/* The config: the checkpoint (civitai.com URL, moved to the fake by
 * CIVITAI_HOST) and one LoRA, with an optional extra LoRA entry (JSON). */
static void write_config(fixture *fx, const char *extra_lora)
{
    char json[4096];
    snprintf(json, sizeof json,
             "{\"checkpoint\": {\"name\": \"Jib Mix\", \"url\": \"https://civitai.com/api/download/models/3001?"
             "type=Model&format=SafeTensor&size=pruned&fp=fp16\", \"filename\": \"jib.safetensors\"},\n"
             " \"loras\": [{\"name\": \"Detail\", \"url\": \"https://civitai.com/api/download/models/3002?type=Model&"
             "format=SafeTensor\", \"filename\": \"detail.safetensors\", \"scale\": 1.5}%s%s]}\n",
             extra_lora ? ", " : "", extra_lora ? extra_lora : "");
    assert_int_equal(tu_write_file(fx->config, json, strlen(json)), 0);
}

/* The environment for the child: nothing inherited but PATH. */
static char **child_env(fixture *fx, const char *models_dir, bool with_key)
{
    static char e[6][4400];
    static char *envp[7];
    snprintf(e[0], sizeof e[0], "PATH=/usr/bin:/bin");
    snprintf(e[1], sizeof e[1], "MODELS_CONFIG=%s", fx->config);
    snprintf(e[2], sizeof e[2], "MODELS_DIR=%s", models_dir);
    snprintf(e[3], sizeof e[3], "CIVITAI_HOST=%s", fc_civitai_origin(fx->fc));
    snprintf(e[4], sizeof e[4], "CIVITAI_API_KEY=%s", with_key ? fx->key : "");
    snprintf(e[5], sizeof e[5], "RUNPOD_LOG_LEVEL=DEBUG");
    for (int i = 0; i < 6; i++) envp[i] = e[i];
    envp[6] = NULL;
    return envp;
}

/* fork + exec of `sdxl-worker fetch-models [arg]`, output into files; a
 * non-zero fsize_limit caps the size of files the child may write. */
static pid_t spawn_limited(fixture *fx, char **envp, const char *arg, int id, rlim_t fsize_limit)
{
    char out[4300], err[4300];
    snprintf(out, sizeof out, "%s/out.%d", fx->root, id);
    snprintf(err, sizeof err, "%s/err.%d", fx->root, id);
    pid_t pid = fork();
    if (pid == 0) {
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644), e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(o, 1);
        dup2(e, 2);
        if (fsize_limit) {
            signal(SIGXFSZ, SIG_IGN); /* so that write() fails with EFBIG */
            setrlimit(RLIMIT_FSIZE, &(struct rlimit){fsize_limit, fsize_limit});
        }
        char *argv[] = {"sdxl-worker", "fetch-models", (char *)arg, NULL};
        execve(tu_worker_bin(), argv, envp);
        _exit(127);
    }
    return pid;
}

/* The captured output of run `id`; the key must be in neither stream. */
static pid_t spawn(fixture *fx, char **envp, const char *arg, int id)
{
    return spawn_limited(fx, envp, arg, id, 0);
}

static run_result read_result(fixture *fx, int id, int rc)
{
    run_result r = {.rc = rc};
    char path[4300];
    snprintf(path, sizeof path, "%s/out.%d", fx->root, id);
    r.out = tu_read_file(path, NULL);
    snprintf(path, sizeof path, "%s/err.%d", fx->root, id);
    r.err = tu_read_file(path, NULL);
    assert_non_null(r.out);
    assert_non_null(r.err);
    assert_null(strstr(r.out, fx->key));
    assert_null(strstr(r.err, fx->key));
    if (getenv("TEST_VERBOSE")) fprintf(stderr, "--- run %d: rc %d\n%s%s", id, r.rc, r.err, r.out);
    return r;
}

static run_result collect(fixture *fx, pid_t pid, int id)
{
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return read_result(fx, id, WEXITSTATUS(status));
}

static run_result fetch_models(fixture *fx, bool with_key, const char *arg)
{
    return collect(fx, spawn(fx, child_env(fx, fx->models, with_key), arg, 0), 0);
}

static void result_free(run_result *r)
{
    free(r->out);
    free(r->err);
}

/* The summary's entry `i` (0 = checkpoint). */
static cJSON *summary_model(cJSON *summary, int i)
{
    return cJSON_GetArrayItem(cJSON_GetObjectItem(summary, "models"), i);
}

static void assert_verified(const run_result *r, fixture *fx)
{
    cJSON *s = cJSON_Parse(r->out);
    assert_non_null(s);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(s, "ok")));
    assert_string_equal(cJSON_GetObjectItem(summary_model(s, 0), "sha256")->valuestring, fx->ckpt_sha);
    assert_string_equal(cJSON_GetObjectItem(summary_model(s, 0), "sha256_verified_by")->valuestring, "civitai");
    assert_string_equal(cJSON_GetObjectItem(summary_model(s, 1), "sha256")->valuestring, fx->lora_sha);
    assert_true(cJSON_GetObjectItem(summary_model(s, 1), "scale")->valuedouble == 1.5);
    cJSON_Delete(s);
    char path[4400];
    size_t n;
    snprintf(path, sizeof path, "%s/checkpoints/jib.safetensors", fx->models);
    char *got = tu_read_file(path, &n);
    assert_non_null(got);
    assert_int_equal(n, fx->ckpt_len);
    assert_memory_equal(got, fx->ckpt, n);
    free(got);
    snprintf(path, sizeof path, "%s/loras/detail.safetensors", fx->models);
    got = tu_read_file(path, &n);
    assert_non_null(got);
    assert_int_equal(n, fx->lora_len);
    assert_memory_equal(got, fx->lora, n);
    free(got);
}

/* ---- tests ---------------------------------------------------------------------------- */

static void test_two_processes_download_once(void **state)
{
    fixture *fx = *state;
    write_config(fx, NULL);
    /* the storage host holds the first transfer until the other process is seen waiting on the lock */
    fc_hold_storage(fx->fc, true);
    char **envp = child_env(fx, fx->models, true);
    pid_t a = spawn(fx, envp, NULL, 1), b = spawn(fx, envp, NULL, 2);
    bool waited = false;
    for (int i = 0; i < 2000 && !waited; i++) {
        for (int id = 1; id <= 2 && !waited; id++) {
            char path[4300];
            snprintf(path, sizeof path, "%s/err.%d", fx->root, id);
            char *text = tu_read_file(path, NULL);
            waited = text && strstr(text, "another worker holds");
            free(text);
        }
        usleep(10000);
    }
    fc_hold_storage(fx->fc, false);
    assert_true(waited);
    run_result ra = collect(fx, a, 1), rb = collect(fx, b, 2);
    assert_int_equal(ra.rc, 0);
    assert_int_equal(rb.rc, 0);
    assert_verified(&ra, fx);
    assert_verified(&rb, fx);
    assert_int_equal(fc_count(fx->fc, "civitai", "/api/download/models/3001"), 1);
    assert_int_equal(fc_count(fx->fc, "civitai", "/api/download/models/3002"), 1);
    assert_int_equal(fc_count(fx->fc, "storage", "/files/"), 2);
    assert_int_equal(fc_storage_bytes(fx->fc), fx->ckpt_len + fx->lora_len);
    /* the one that waited found the other's file */
    assert_true(strstr(ra.err, "(by another worker)") || strstr(rb.err, "(by another worker)"));
    result_free(&ra);
    result_free(&rb);

    /* a third run finds everything verified and asks nobody */
    fc_request none[1];
    size_t before = fc_requests(fx->fc, none, 0);
    run_result rc = fetch_models(fx, true, NULL);
    assert_int_equal(rc.rc, 0);
    assert_verified(&rc, fx);
    assert_int_equal(fc_requests(fx->fc, none, 0), before);
    assert_non_null(strstr(rc.err, "present and verified (cached)"));
    result_free(&rc);
}

static void test_exit_codes_and_reasons(void **state)
{
    fixture *fx = *state;
    write_config(fx, NULL);
    run_result r = fetch_models(fx, false, NULL); /* no key: 401 */
    assert_int_equal(r.rc, 1);
    cJSON *s = cJSON_Parse(r.out);
    assert_non_null(s);
    assert_false(cJSON_IsTrue(cJSON_GetObjectItem(s, "ok")));
    const char *why = cJSON_GetObjectItem(summary_model(s, 0), "error")->valuestring;
    assert_non_null(strstr(why, "CIVITAI_API_KEY is not set"));
    assert_non_null(strstr(r.err, "2 of 2 models unavailable"));
    cJSON_Delete(s);
    result_free(&r);

    /* a LoRA nobody publishes a hash for: refused unless --allow-unverified */
    fc_version u = {.version_id = 3003, .file_id = 30030, .file_name = "u.safetensors", .data = fx->lora,
                    .len = fx->lora_len, .published_sha256 = ""};
    fc_add_version(fx->fc, &u);
    write_config(fx, "{\"name\": \"Unpublished\", \"url\": \"https://civitai.com/api/download/models/3003\", "
                     "\"filename\": \"u.safetensors\", \"scale\": 0.3}");
    r = fetch_models(fx, true, NULL);
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, "could not be checked"));
    assert_non_null(strstr(r.err, "1 of 3 models unavailable"));
    result_free(&r);
    r = fetch_models(fx, true, "--allow-unverified");
    assert_int_equal(r.rc, 0);
    s = cJSON_Parse(r.out);
    assert_string_equal(cJSON_GetObjectItem(summary_model(s, 2), "sha256_verified_by")->valuestring, "none");
    cJSON_Delete(s);
    result_free(&r);

    /* a config error names the file and the field, exit 2 */
    const char *bad = "{\"checkpoint\": {\"name\": \"x\", \"url\": \"https://civitai.com/a\", "
                      "\"filename\": \"../x.safetensors\"}}";
    assert_int_equal(tu_write_file(fx->config, bad, strlen(bad)), 0);
    r = fetch_models(fx, true, NULL);
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, fx->config));
    assert_non_null(strstr(r.err, "checkpoint: \"filename\" \"../x.safetensors\" contains a path separator"));
    result_free(&r);
}

/* ---- full disk ---------------------------------------------------------------------------- */

static void list_tree(const char *dir, const char *rel, FILE *out)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char path[4400], r[4400];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        snprintf(r, sizeof r, "%s%s", rel, de->d_name);
        struct stat st;
        if (lstat(path, &st) != 0) continue;
        fprintf(out, "%s %lld\n", r, (long long)st.st_size);
        if (S_ISDIR(st.st_mode)) {
            strcat(r, "/");
            list_tree(path, r, out);
        }
    }
    if (d) closedir(d);
}

/* open/write/close only: this runs in a forked child of a process with
 * server threads, where malloc may wait forever on a lock held at the fork. */
static int write_text(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0) return -1;
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* A private mount namespace (as root, or as the owner of a new user
 * namespace, with the maps given) with a 1 MiB tmpfs on `dir`. 0 on success.
 * Runs in the forked child: system calls only. */
static int private_tmpfs(const char *dir, const char *uid_map, const char *gid_map)
{
    if (unshare(CLONE_NEWNS) != 0) {
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) return -1;
        if (write_text("/proc/self/setgroups", "deny") || write_text("/proc/self/uid_map", uid_map) ||
            write_text("/proc/self/gid_map", gid_map))
            return -1;
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) return -1;
    return mount("tmpfs", dir, "tmpfs", 0, "size=1024k");
}

/* Runs fetch-models with MODELS_DIR on a 1 MiB tmpfs, and lists the tree
 * (as list_tree does) before the mount goes away: a forked child makes the
 * mount, then a shell runs both. Returns the exit status, or -1 when no
 * mount namespace can be had here. */
static int fetch_on_small_disk(fixture *fx, const char *disk, run_result *r)
{
    char listing[4300], out[4300], err[4300], uid_map[64], gid_map[64];
    snprintf(listing, sizeof listing, "%s/listing", fx->root);
    snprintf(out, sizeof out, "%s/out.3", fx->root);
    snprintf(err, sizeof err, "%s/err.3", fx->root);
    snprintf(uid_map, sizeof uid_map, "0 %d 1", (int)getuid());
    snprintf(gid_map, sizeof gid_map, "0 %d 1", (int)getgid());
    assert_int_equal(mkdir(disk, 0755), 0);
    char **envp = child_env(fx, disk, true);
    char *argv[] = {"sh", "-c", "\"$0\" fetch-models > \"$1\" 2> \"$2\"; rc=$?; "
                    "find \"$3\" -mindepth 1 -printf '%P %s\\n' > \"$4\"; exit $rc",
                    (char *)tu_worker_bin(), out, err, (char *)disk, listing, NULL};
    pid_t pid = fork();
    if (pid == 0) {
        if (private_tmpfs(disk, uid_map, gid_map) != 0) _exit(100);
        execve("/bin/sh", argv, envp);
        _exit(127);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 100) return -1;
    *r = read_result(fx, 3, WEXITSTATUS(status));
    return r->rc;
}

static void assert_no_model_left(const char *listing_text)
{
    assert_non_null(listing_text);
    if (getenv("TEST_VERBOSE")) fprintf(stderr, "--- models dir after the run:\n%s", listing_text);
    assert_non_null(strstr(listing_text, "checkpoints/jib.safetensors.lock 0"));
    assert_null(strstr(listing_text, "checkpoints/jib.safetensors "));
    assert_null(strstr(listing_text, ".part"));
}

static char *listing_of(fixture *fx)
{
    char listing[4300];
    snprintf(listing, sizeof listing, "%s/listing", fx->root);
    return tu_read_file(listing, NULL);
}

/* Writes are cut off at 1 MiB by RLIMIT_FSIZE (EFBIG): the injected write
 * error, and also what a filesystem with a file size limit does. */
static void fetch_with_file_size_limit(fixture *fx, const char *dir, run_result *r)
{
    *r = collect(fx, spawn_limited(fx, child_env(fx, dir, true), NULL, 4, 1u << 20), 4);
    char listing[4300];
    snprintf(listing, sizeof listing, "%s/listing", fx->root);
    FILE *out = fopen(listing, "w");
    list_tree(dir, "", out);
    fclose(out);
}

static void test_full_disk(void **state)
{
    fixture *fx = *state;
    write_config(fx, NULL);
    char disk[4300];
    snprintf(disk, sizeof disk, "%s/disk", fx->root);
    run_result r = {0};
    char *text;
    int rc = fetch_on_small_disk(fx, disk, &r);
    if (rc < 0) {
        /* no mount namespace here (needs root or user namespaces): the injected write error instead */
        fprintf(stderr, "note: no tmpfs can be mounted here; full disk simulated with RLIMIT_FSIZE\n");
        fc_script(fx->fc)->chunked = true;
        fetch_with_file_size_limit(fx, disk, &r);
        assert_int_equal(r.rc, 1);
        assert_non_null(strstr(r.err, "/disk/checkpoints refuses files this large"));
        assert_no_model_left(text = listing_of(fx));
        free(text);
        result_free(&r);
        return;
    }
    /* the size is known (Content-Length): refused before writing */
    assert_int_equal(rc, 1);
    assert_non_null(strstr(r.err, "not enough space in "));
    assert_non_null(strstr(r.err, "/disk/checkpoints"));
    assert_non_null(strstr(r.err, "only 1.0 MB is free"));
    assert_no_model_left(text = listing_of(fx));
    free(text);
    result_free(&r);

    /* no Content-Length: the write itself hits ENOSPC */
    fc_script(fx->fc)->chunked = true;
    tu_rm_rf(disk);
    rc = fetch_on_small_disk(fx, disk, &r);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(r.err, "disk full in "));
    assert_non_null(strstr(r.err, "/disk/checkpoints (No space left on device)"));
    assert_non_null(strstr(r.err, "the server gave no total size"));
    assert_no_model_left(text = listing_of(fx));
    free(text);
    result_free(&r);
}

static void test_file_size_limit(void **state)
{
    fixture *fx = *state;
    write_config(fx, NULL);
    run_result r;
    fetch_with_file_size_limit(fx, fx->models, &r);
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, "/models/checkpoints refuses files this large (File too large) at 1048576 bytes"));
    assert_non_null(strstr(r.err, "which needs 2.1 MB"));
    char *text = listing_of(fx);
    assert_no_model_left(text);
    free(text);
    result_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_two_processes_download_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exit_codes_and_reasons, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_disk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_size_limit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
