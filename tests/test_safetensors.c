/* sd/safetensors: values of every dtype through mmap and memory, metadata
 * and lookup, what the reference reader (safetensors 0.8) accepts, and a
 * specific error for each kind of bad file (truncated, HTML/JSON/ZIP/pickle
 * saved as .safetensors, overlap, gap, bad dtype/shape/size, header length). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sd/safetensors.h"
#include "st_writer.h"
#include "testutil.h"

static char *dir;
static char err[512];

static int setup(void **state) { dir = tu_mkdtemp("test_st"); return dir ? 0 : -1; }
static int teardown(void **state) { tu_rm_rf(dir); free(dir); return 0; }

static const char *path_of(const char *name)
{
    static char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return p;
}

/* Opens bytes written to a file; returns the file or NULL with err set. */
static st_file *open_bytes(const char *name, const void *b, size_t n)
{
    assert_int_equal(tu_write_file(path_of(name), b, n), 0);
    st_file *f = (st_file *)0x1;
    err[0] = 0;
    int rc = st_open(path_of(name), &f, err, sizeof err);
    if (rc) assert_null(f);
    return rc ? NULL : f;
}

/* The file must be rejected with a message containing every fragment. */
static void expect_rejected(const char *name, const void *b, size_t n, const char *frag1, const char *frag2)
{
    st_file *f = open_bytes(name, b, n);
    if (f) fail_msg("%s was accepted", name);
    if (!strstr(err, frag1) || (frag2 && !strstr(err, frag2)))
        fail_msg("%s: message \"%s\" lacks \"%s\"/\"%s\"", name, err, frag1, frag2 ? frag2 : "");
    assert_non_null(strstr(err, path_of(name))); /* names the file */
    /* the in-memory path must agree */
    char err2[512];
    st_file *g;
    assert_int_equal(st_open_memory(b, n, "mem", &g, err2, sizeof err2), -1);
    assert_null(g);
    assert_non_null(strstr(err2, frag1));
}

static void expect_header_rejected(const char *header, size_t datalen, const char *frag1, const char *frag2)
{
    size_t n;
    uint8_t *zeros = calloc(1, datalen + 1);
    uint8_t *b = st_raw(header, zeros, datalen, &n);
    expect_rejected("bad.safetensors", b, n, frag1, frag2);
    free(b);
    free(zeros);
}

static void expect_header_accepted(const char *header, size_t datalen, size_t tensors)
{
    size_t n;
    uint8_t *zeros = calloc(1, datalen + 1);
    uint8_t *b = st_raw(header, zeros, datalen, &n);
    st_file *f = open_bytes("ok.safetensors", b, n);
    if (!f) fail_msg("rejected %s: %s", header, err);
    assert_int_equal(st_count(f), tensors);
    st_close(f);
    free(b);
    free(zeros);
}

static uint8_t *valid_file(size_t *n)
{
    stw *w = stw_new();
    float v[6] = {1, 2, 3, 4, 5, 6};
    stw_add_f32(w, "a", "F32", 2, (int64_t[]){2, 3}, v);
    stw_add_f32(w, "b", "F16", 1, (int64_t[]){4}, v);
    uint8_t *b = stw_bytes(w, n);
    stw_free(w);
    return b;
}

/* ---- values ---------------------------------------------------------------- */

static void widen_tensor(const st_file *f, const char *name, float *out, int64_t expect_numel)
{
    const st_tensor *t = st_find(f, name);
    assert_non_null(t);
    assert_int_equal(t->numel, expect_numel);
    sd_weight w;
    assert_int_equal(st_weight(t, &w, err, sizeof err), 0);
    assert_int_equal(sd_weight_numel(&w), expect_numel);
    assert_ptr_equal(w.data, t->data);
    sd_widen(w.dtype, w.data, 0, (size_t)expect_numel, out);
}

static void check_dtype_values(const st_file *f)
{
    float got[8];
    widen_tensor(f, "f32", got, 6);
    const float f32[6] = {1.5f, -2.0f, 0.1f, 3.4e38f, -0.0f, 1e-40f};
    assert_memory_equal(got, f32, sizeof f32);

    widen_tensor(f, "f16", got, 4); /* exactly representable in fp16 */
    const float f16[4] = {1.0f, -0.5f, 65504.0f, 5.9604644775390625e-08f};
    assert_memory_equal(got, f16, sizeof f16);

    widen_tensor(f, "bf16", got, 3);
    const float bf16[3] = {1.0f, -3.0f, 3.3895313892515355e38f};
    assert_memory_equal(got, bf16, sizeof bf16);

    /* e4m3fn (bias 7): 0x38 = 1.0, 0x3c = 1.5, 0xb8 = -1.0, 0x01 = 2^-9,
     * 0x7e = 1.75 * 2^8 = 448 (max), 0x7f = NaN */
    widen_tensor(f, "e4m3", got, 6);
    const float e4m3[5] = {1.0f, 1.5f, -1.0f, 0.001953125f, 448.0f};
    assert_memory_equal(got, e4m3, sizeof e4m3);
    assert_true(isnan(got[5]));

    /* e5m2 (the top byte of fp16): 0x3c = 1.0, 0xc0 = -2.0, 0x01 = 2^-16,
     * 0x7b = 1.75 * 2^15 = 57344 (max), 0x7c = inf */
    widen_tensor(f, "e5m2", got, 5);
    const float e5m2[5] = {1.0f, -2.0f, 1.52587890625e-05f, 57344.0f, INFINITY};
    assert_memory_equal(got, e5m2, sizeof e5m2);

    const st_tensor *i = st_find(f, "position_ids");
    assert_non_null(i);
    assert_false(i->is_float);
    assert_string_equal(i->dtype_name, "I64");
    assert_int_equal(i->elem_size, 8);
    int64_t ids[3];
    memcpy(ids, i->data, sizeof ids);
    assert_int_equal(ids[2], 2);
    sd_weight w;
    assert_int_equal(st_weight(i, &w, err, sizeof err), -1);
    assert_non_null(strstr(err, "dtype I64, not a float weight"));
}

static uint8_t *dtype_file(size_t *n)
{
    stw *w = stw_new();
    const float f32[6] = {1.5f, -2.0f, 0.1f, 3.4e38f, -0.0f, 1e-40f};
    const float f16[4] = {1.0f, -0.5f, 65504.0f, 5.9604644775390625e-08f};
    const float bf16[3] = {1.0f, -3.0f, 3.3895313892515355e38f};
    const uint8_t e4m3[6] = {0x38, 0x3c, 0xb8, 0x01, 0x7e, 0x7f};
    const uint8_t e5m2[5] = {0x3c, 0xc0, 0x01, 0x7b, 0x7c};
    const int64_t ids[3] = {0, 1, 2};
    stw_add_f32(w, "f32", "F32", 2, (int64_t[]){2, 3}, f32);
    stw_add_f32(w, "f16", "F16", 1, (int64_t[]){4}, f16);
    stw_add_f32(w, "bf16", "BF16", 1, (int64_t[]){3}, bf16);
    stw_add(w, "e4m3", "F8_E4M3", 2, (int64_t[]){3, 2}, e4m3);
    stw_add(w, "e5m2", "F8_E5M2", 1, (int64_t[]){5}, e5m2);
    stw_add(w, "position_ids", "I64", 2, (int64_t[]){1, 3}, ids);
    uint8_t *b = stw_bytes(w, n);
    stw_free(w);
    return b;
}

static void test_every_dtype_round_trips_through_mmap_and_memory(void **state)
{
    size_t n;
    uint8_t *b = dtype_file(&n);
    st_file *f = open_bytes("dtypes.safetensors", b, n);
    assert_non_null(f);
    assert_int_equal(st_count(f), 6);
    check_dtype_values(f);
    assert_int_equal(st_file_size(f), n);
    st_close(f);

    assert_int_equal(st_open_memory(b, n, NULL, &f, err, sizeof err), 0);
    check_dtype_values(f);
    assert_ptr_equal(st_find(f, "f32")->data, b + st_data_offset(f)); /* no copy */
    st_close(f);
    free(b);
}

/* ---- releasing mapped pages -------------------------------------------------------- */

/* This process's resident kB, counted by walking its page tables
 * (smaps_rollup; statm's counters are per-CPU approximations). */
static long resident_kb(void)
{
    long kb = -1;
    char line[256];
    FILE *fp = fopen("/proc/self/smaps_rollup", "r");
    assert_non_null(fp);
    while (fgets(line, sizeof line, fp))
        if (sscanf(line, "Rss: %ld kB", &kb) == 1) break;
    fclose(fp);
    assert_true(kb >= 0);
    return kb;
}

/* st_release_pages drops the whole pages of the named tensors from the
 * resident set; their values read back unchanged afterwards; a prefix that
 * matches nothing and a file opened from memory drop nothing. */
static void test_release_pages_shrinks_rss_and_keeps_data(void **state)
{
    enum { N = 1 << 20 };   /* 4 MB of F32 per tensor */
    float *v = malloc(N * sizeof *v);
    for (int i = 0; i < N; i++) v[i] = (float)i;
    stw *w = stw_new();
    stw_add_f32(w, "keep.a", "F32", 1, (int64_t[]){N}, v);
    stw_add_f32(w, "drop.b", "F32", 1, (int64_t[]){N}, v);
    size_t n;
    uint8_t *b = stw_bytes(w, &n);
    stw_free(w);
    st_file *f = open_bytes("release.safetensors", b, n);
    assert_non_null(f);
    const st_tensor *keep = st_find(f, "keep.a"), *drop = st_find(f, "drop.b");
    assert_memory_equal(keep->data, v, N * sizeof *v);
    assert_memory_equal(drop->data, v, N * sizeof *v);
    long page = sysconf(_SC_PAGESIZE), before = resident_kb();
    size_t dropped = st_release_pages(f, "drop.");
    assert_true(dropped <= drop->nbytes && dropped + 2 * (size_t)page >= drop->nbytes);
    long after = resident_kb();
    if (before - after < (long)(dropped / 1024) * 9 / 10) fail_msg("rss %ld -> %ld kB, dropped %zu", before, after, dropped);
    assert_int_equal(st_release_pages(f, "absent."), 0);
    assert_memory_equal(drop->data, v, N * sizeof *v);   /* faulted back from the file */
    st_close(f);
    assert_int_equal(st_open_memory(b, n, NULL, &f, err, sizeof err), 0);
    assert_int_equal(st_release_pages(f, ""), 0);
    st_close(f);
    free(b);
    free(v);
}

/* ---- metadata, order, lookup, data area ------------------------------------------ */

static void test_metadata_lookup_order_and_data_area(void **state)
{
    stw *w = stw_new();
    stw_meta(w, "format", "pt");
    stw_meta(w, "sdxl.unet.head_width", "4");
    stw_meta(w, "quote\"and\\slash", "line\nbreak");
    float one = 1;
    stw_add_f32(w, "z.last", "F32", 1, (int64_t[]){1}, &one);
    stw_add_f32(w, "caf\xc3\xa9 \xf0\x9f\x98\x80", "F32", 0, (int64_t[]){0}, &one); /* UTF-8 name, scalar */
    stw_add(w, "empty", "F16", 2, (int64_t[]){0, 7}, NULL);
    size_t n;
    uint8_t *b = stw_bytes(w, &n);
    stw_free(w);
    st_file *f = open_bytes("meta.safetensors", b, n);
    assert_non_null(f);

    assert_int_equal(st_metadata_count(f), 3);
    const char *k, *v;
    assert_int_equal(st_metadata_at(f, 0, &k, &v), 0);
    assert_string_equal(k, "format");
    assert_string_equal(v, "pt");
    assert_string_equal(st_metadata(f, "sdxl.unet.head_width"), "4");
    assert_string_equal(st_metadata(f, "quote\"and\\slash"), "line\nbreak");
    assert_null(st_metadata(f, "missing"));
    assert_int_equal(st_metadata_at(f, 3, &k, &v), -1);

    assert_string_equal(st_get(f, 0)->name, "z.last"); /* header order */
    assert_string_equal(st_get(f, 1)->name, "caf\xc3\xa9 \xf0\x9f\x98\x80");
    assert_null(st_get(f, 3));
    const st_tensor *s = st_find(f, "caf\xc3\xa9 \xf0\x9f\x98\x80");
    assert_non_null(s);
    assert_int_equal(s->ndim, 0);
    assert_int_equal(s->numel, 1);
    const st_tensor *e = st_find(f, "empty");
    assert_int_equal(e->numel, 0);
    assert_int_equal(e->nbytes, 0);
    char shape[64];
    assert_string_equal(st_shape_str(e, shape, sizeof shape), "[0, 7]");
    assert_null(st_find(f, "z.las"));

    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | b[i];
    assert_int_equal(st_data_offset(f), 8 + hl);
    assert_int_equal(hl % 8, 0); /* writer pads like the reference */
    size_t dl;
    const uint8_t *d = st_data(f, &dl);
    assert_int_equal(dl, 8);
    assert_int_equal(d - (const uint8_t *)st_find(f, "z.last")->data, 0);
    assert_string_equal(st_label(f), path_of("meta.safetensors"));
    st_close(f);
    free(b);
}

static void test_escaped_names_decode(void **state)
{
    /* \u00e9 and a surrogate pair for U+1F600, \/ and \t */
    st_file *f;
    size_t n;
    uint8_t *b = st_raw("{\"caf\\u00e9 \\ud83d\\ude00\\/\\t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
                        "\x07", 1, &n);
    assert_int_equal(st_open_memory(b, n, NULL, &f, err, sizeof err), 0);
    assert_non_null(st_find(f, "caf\xc3\xa9 \xf0\x9f\x98\x80/\t"));
    st_close(f);
    free(b);
}

static void test_thousands_of_tensors_are_found(void **state)
{
    stw *w = stw_new();
    char name[64];
    for (int i = 0; i < 5000; i++) {
        snprintf(name, sizeof name, "model.diffusion_model.block.%d.weight", i);
        float v = (float)i;
        stw_add_f32(w, name, "F32", 1, (int64_t[]){1}, &v);
    }
    size_t n;
    uint8_t *b = stw_bytes(w, &n);
    stw_free(w);
    st_file *f;
    assert_int_equal(st_open_memory(b, n, NULL, &f, err, sizeof err), 0);
    assert_int_equal(st_count(f), 5000);
    for (int i = 0; i < 5000; i++) {
        snprintf(name, sizeof name, "model.diffusion_model.block.%d.weight", i);
        const st_tensor *t = st_find(f, name);
        assert_non_null(t);
        float v;
        memcpy(&v, t->data, 4);
        assert_true(v == (float)i);
    }
    st_close(f);
    free(b);
}

/* What safetensors 0.8 (the reference) also accepts. */
static void test_reference_compatible_headers_are_accepted(void **state)
{
    expect_header_accepted("{}", 0, 0);
    expect_header_accepted("  {\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}  \n", 4, 1);
    expect_header_accepted("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],"
                           "\"extra\":{\"x\":[1,2.5e3,true,null,\"s\"]}}}", 4, 1);
    expect_header_accepted("{\"__metadata__\":null,\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4, 1);
    expect_header_accepted("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
                           "\"b\":{\"dtype\":\"BOOL\",\"shape\":[1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1, 2);
    /* a tensor that is not a float weight and has >4 dims: listed, no weight view */
    size_t n;
    uint8_t *b = st_raw("{\"b\":{\"dtype\":\"F16\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,2]}}", "\0\0", 2, &n);
    st_file *f;
    assert_int_equal(st_open_memory(b, n, NULL, &f, err, sizeof err), 0);
    sd_weight w;
    assert_int_equal(st_weight(st_find(f, "b"), &w, err, sizeof err), -1);
    assert_non_null(strstr(err, "5 dimensions"));
    st_close(f);
    free(b);
}

/* ---- error classes ---------------------------------------------------------------- */

static void test_empty_and_short_files(void **state)
{
    expect_rejected("empty.safetensors", "", 0, "empty file (0 bytes)", NULL);
    expect_rejected("short.safetensors", "\x01\x02\x00", 3, "too short (3 bytes)", NULL);
}

static void test_truncated_files(void **state)
{
    size_t n;
    uint8_t *b = valid_file(&n);
    st_file *f = open_bytes("full.safetensors", b, n);
    assert_non_null(f);
    st_close(f);
    /* data cut short: the download stopped in the middle of the tensors */
    expect_rejected("cut-data.safetensors", b, n - 3, "file is truncated", "incomplete download");
    expect_rejected("cut-data.safetensors", b, n - 3, "need 32 bytes of data", "only 29 are present");
    /* cut inside the header */
    expect_rejected("cut-header.safetensors", b, 40, "file is truncated: the header needs", NULL);
    /* only the length prefix */
    expect_rejected("cut-prefix.safetensors", b, 8, "file is truncated", NULL);
    /* bytes after the last tensor */
    uint8_t *longer = calloc(1, n + 5);
    memcpy(longer, b, n);
    expect_rejected("long.safetensors", longer, n + 5, "5 unexpected bytes after the last tensor", NULL);
    free(longer);
    free(b);
}

static void test_html_and_xml_pages(void **state)
{
    const char *login = "<!DOCTYPE html>\n<html lang=\"en\"><head><title>Sign in | Civitai</title></head>"
                        "<body>Please log in to download this model.</body></html>\n";
    expect_rejected("page.safetensors", login, strlen(login), "HTML page", "not safetensors");
    const char *lower = "\n  <html><body>502 Bad Gateway</body></html>";
    expect_rejected("page2.safetensors", lower, strlen(lower), "HTML page", NULL);
    const char *xml = "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code></Error>";
    expect_rejected("s3.safetensors", xml, strlen(xml), "XML/HTML document", "AccessDenied");
}

static void test_json_error_bodies(void **state)
{
    const char *body = "{\"error\":\"Unauthorized\",\"message\":\"The requested resource requires a login\"}";
    expect_rejected("json.safetensors", body, strlen(body), "JSON document", "{\"error\":\"Unauthorized\"");
    const char *arr = "[{\"detail\":\"not found\"}]";
    expect_rejected("arr.safetensors", arr, strlen(arr), "JSON document", NULL);
}

static void test_zip_pickle_gguf_and_text(void **state)
{
    const uint8_t zip[] = {'P', 'K', 3, 4, 0x14, 0, 0, 0, 8, 0, 'a', 'r', 'c', 'h', 'i', 'v', 'e'};
    expect_rejected("zip.safetensors", zip, sizeof zip, "ZIP archive", "PyTorch .ckpt/.pt");
    const uint8_t p2[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8};
    expect_rejected("p2.safetensors", p2, sizeof p2, "Python pickle", NULL);
    const uint8_t p4[] = {0x80, 0x04, 0x95, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x7d};
    expect_rejected("p4.safetensors", p4, sizeof p4, "Python pickle", NULL);
    const uint8_t gguf[] = {'G', 'G', 'U', 'F', 3, 0, 0, 0, 1, 2, 3, 4};
    expect_rejected("gguf.safetensors", gguf, sizeof gguf, "GGUF", NULL);
    const char *lfs = "version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 6938078334\n";
    expect_rejected("lfs.safetensors", lfs, strlen(lfs), "Git LFS pointer", NULL);
    const char *text = "Not Found\n";
    expect_rejected("text.safetensors", text, strlen(text), "text file", "Not Found");
    const uint8_t ff[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'};
    expect_rejected("ff.safetensors", ff, 10, "header length 18446744073709551615 exceeds", NULL);
}

static void test_header_length_out_of_range(void **state)
{
    uint8_t b[24] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    expect_rejected("huge.safetensors", b, sizeof b, "header length 18446744073709551615 exceeds", NULL);
    uint8_t c[16] = {0x00, 0xc2, 0xeb, 0x0b}; /* 200,000,000 */
    expect_rejected("200mb.safetensors", c, sizeof c, "exceeds the 100000000-byte limit", NULL);
}

static void test_layout_errors(void **state)
{
    expect_header_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                           "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
                           "\"a\" and \"b\" overlap", NULL);
    expect_header_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                           "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "overlap", NULL);
    expect_header_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
                           "no tensor covers data bytes 0..4", NULL);
    expect_header_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", 12,
                           "shape [2, 2] of F32 needs 16 bytes but its data_offsets span 12", NULL);
    expect_header_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8,
                           "end 4 is before begin 8", NULL);
    expect_header_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8,
                           "data_offsets has more than 2 elements", NULL);
}

static void test_dtype_and_shape_errors(void **state)
{
    expect_header_rejected("{\"a\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
                           "unknown dtype \"Q4\"", NULL);
    expect_header_rejected("{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                           "unknown dtype \"f32\"", NULL);
    expect_header_rejected("{\"a\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[0,1]}}", 1,
                           "dtype F4 (sub-byte/microscaling) is not supported", NULL);
    expect_header_rejected("{\"a\":{\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                           "dtype is not a string", NULL);
    expect_header_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
                           "negative number", NULL);
    expect_header_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4,
                           "floating-point", NULL);
    expect_header_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[1e0],\"data_offsets\":[0,4]}}", 4,
                           "floating-point", NULL);
    expect_header_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}", 4,
                           "leading zero", NULL);
    expect_header_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[18446744073709551616],\"data_offsets\":[0,4]}}", 4,
                           "integer too large", NULL);
    expect_header_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4,
                           "overflows", NULL);
    expect_header_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
                           "shape has more than 8 elements", NULL);
    expect_header_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":null,\"data_offsets\":[0,4]}}", 4,
                           "shape is not an array", NULL);
    expect_header_rejected("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "missing field \"shape\"", NULL);
    expect_header_rejected("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                           "field \"dtype\" appears twice", NULL);
}

/* n arrays nested in an unknown field of a tensor entry. */
static void expect_nesting(int n, int accepted)
{
    char header[600];
    int k = snprintf(header, sizeof header, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":");
    for (int i = 0; i < n; i++) header[k++] = '[';
    for (int i = 0; i < n; i++) header[k++] = ']';
    snprintf(header + k, sizeof header - (size_t)k, "}}");
    if (accepted) expect_header_accepted(header, 4, 1);
    else expect_header_rejected(header, 4, "nesting deeper than 127", NULL);
}

static void test_json_errors(void **state)
{
    expect_header_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                           "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
                           "duplicate tensor name \"a\"", NULL);
    expect_header_rejected("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, "duplicate \"__metadata__\" key \"k\"", NULL);
    expect_header_rejected("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "\"__metadata__\" appears twice", NULL);
    expect_header_rejected("{\"__metadata__\":{\"k\":1}}", 0, "value of \"k\" is not a string", NULL);
    expect_header_rejected("[]", 0, "not a JSON object", NULL);
    expect_header_rejected("", 0, "not a JSON object", NULL);
    expect_header_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} x", 4,
                           "unexpected bytes after the header object", NULL);
    expect_header_rejected("{\"a\xff\":{}}", 0, "not valid UTF-8 (byte 3)", NULL);
    expect_header_rejected("{\"\xef\xbb\xbf\":{}}", 0, "missing field \"dtype\"", NULL); /* a BOM inside a string is fine */
    expect_header_rejected("\xef\xbb\xbf{}", 0, "not a JSON object", NULL);
    expect_header_rejected("{\"a\\u0000\":{}}", 0, "NUL character", NULL);
    expect_header_rejected("{\"a\\ud800\":{}}", 0, "lone high surrogate", NULL);
    expect_header_rejected("{\"a\\q\":{}}", 0, "invalid escape", NULL);
    expect_header_rejected("{\"a\tb\":{}}", 0, "control character in string", NULL);
    expect_header_rejected("{\"a\":{\"dtype\":\"F32\"", 0, "unexpected end of header", NULL);
    expect_nesting(125, 1); /* safetensors 0.8 (serde_json) accepts 125 and refuses 126 */
    expect_nesting(126, 0);
}

static void test_paths_that_are_not_files(void **state)
{
    st_file *f;
    assert_int_equal(st_open(dir, &f, err, sizeof err), -1);
    assert_null(f);
    assert_non_null(strstr(err, "is a directory"));
    assert_int_equal(st_open(path_of("does-not-exist"), &f, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot open: No such file"));
}

static void test_validate_file(void **state)
{
    size_t n;
    uint8_t *b = valid_file(&n);
    assert_int_equal(tu_write_file(path_of("v.safetensors"), b, n), 0);
    assert_int_equal(st_validate_file(path_of("v.safetensors"), err, sizeof err), 0);
    assert_int_equal(tu_write_file(path_of("v.safetensors"), b, n - 1), 0);
    assert_int_equal(st_validate_file(path_of("v.safetensors"), err, sizeof err), -1);
    assert_non_null(strstr(err, "truncated"));
    free(b);
}

static void test_unaligned_data_has_no_weight_view(void **state)
{
    /* a 54-byte header puts the data at file offset 62: F32 data misaligned */
    size_t n;
    const char *header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    assert_int_equal((8 + strlen(header)) % 4, 2);
    uint8_t *b = st_raw(header, "\0\0\0\0", 4, &n);
    st_file *f = open_bytes("unaligned.safetensors", b, n);
    assert_non_null(f);
    sd_weight w;
    assert_int_equal(st_weight(st_find(f, "a"), &w, err, sizeof err), -1);
    assert_non_null(strstr(err, "not aligned"));
    st_close(f);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_dtype_round_trips_through_mmap_and_memory),
        cmocka_unit_test(test_metadata_lookup_order_and_data_area),
        cmocka_unit_test(test_escaped_names_decode),
        cmocka_unit_test(test_thousands_of_tensors_are_found),
        cmocka_unit_test(test_reference_compatible_headers_are_accepted),
        cmocka_unit_test(test_empty_and_short_files),
        cmocka_unit_test(test_truncated_files),
        cmocka_unit_test(test_html_and_xml_pages),
        cmocka_unit_test(test_json_error_bodies),
        cmocka_unit_test(test_zip_pickle_gguf_and_text),
        cmocka_unit_test(test_header_length_out_of_range),
        cmocka_unit_test(test_layout_errors),
        cmocka_unit_test(test_dtype_and_shape_errors),
        cmocka_unit_test(test_json_errors),
        cmocka_unit_test(test_paths_that_are_not_files),
        cmocka_unit_test(test_validate_file),
        cmocka_unit_test(test_unaligned_data_has_no_weight_view),
        cmocka_unit_test(test_release_pages_shrinks_rss_and_keeps_data),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
