/* image/fetch.h against loopback HTTP servers (libmicrohttpd on 127.0.0.1 and
 * 127.0.0.2), behaving as real image hosts do, including their failures:
 *   - a PNG is fetched byte for byte (and decodes); relative redirects are
 *     followed; a redirect loop stops after max_redirects; 404 is an error;
 *   - the size cap holds with a Content-Length and for a chunked body;
 *   - the time limit holds for a server that stalls;
 *   - without allow_private, loopback URLs (by address and by the name
 *     localhost) are refused before any connection: the server sees nothing;
 *     a redirect to an address the policy refuses is refused, the first hop
 *     having been allowed (every hop is checked);
 *   - a redirect to another scheme and non-http(s) URLs are refused;
 *   - errors name the host, never the path or query;
 *   - the address classifier (RFC 1918, CGNAT, metadata, IPv6 ULA/link-local,
 *     IPv4-mapped) and RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS parsing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "image/decode.h"
#include "image/fetch.h"
#include "testutil.h"

#define PNG_PATH "tests/data/small/img2img_init.png"

static struct {
    struct MHD_Daemon *d1, *d2;
    char origin1[64], origin2[64]; /* http://127.0.0.1:port, http://127.0.0.2:port */
    char *png;
    size_t png_len;
    atomic_int requests;
} g;

static enum MHD_Result send_bytes(struct MHD_Connection *c, unsigned status, const void *data, size_t len,
                                  const char *header, const char *value)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_MUST_COPY);
    if (header) MHD_add_response_header(r, header, value);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* A body of `left` bytes in chunks, without Content-Length. */
static ssize_t chunked_body(void *cls, uint64_t pos, char *buf, size_t max)
{
    size_t *left = cls;
    if (!*left) return MHD_CONTENT_READER_END_OF_STREAM;
    size_t n = max < *left ? max : *left;
    memset(buf, 'x', n);
    *left -= n;
    return (ssize_t)n;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **state)
{
    atomic_fetch_add(&g.requests, 1);
    if (!strcmp(url, "/image.png")) return send_bytes(c, 200, g.png, g.png_len, "Content-Type", "image/png");
    if (!strcmp(url, "/redirect")) return send_bytes(c, 302, "", 0, "Location", "/image.png");
    if (!strcmp(url, "/loop")) return send_bytes(c, 302, "", 0, "Location", "/loop");
    if (!strcmp(url, "/to-ftp")) return send_bytes(c, 301, "", 0, "Location", "ftp://127.0.0.1/image.png");
    if (!strcmp(url, "/to-other-host")) {
        char target[96];
        snprintf(target, sizeof target, "%s/image.png", g.origin2);
        return send_bytes(c, 307, "", 0, "Location", target);
    }
    if (!strcmp(url, "/big")) {
        size_t n = 2 << 20;
        char *body = calloc(1, n);
        enum MHD_Result r = send_bytes(c, 200, body, n, NULL, NULL);
        free(body);
        return r;
    }
    if (!strcmp(url, "/big-chunked")) {
        size_t *left = malloc(sizeof *left);
        *left = 2 << 20;
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, chunked_body, left, free);
        enum MHD_Result ret = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        return ret;
    }
    if (!strcmp(url, "/slow")) {
        sleep(2);
        return send_bytes(c, 200, g.png, g.png_len, NULL, NULL);
    }
    return send_bytes(c, 404, "not found", 9, "Content-Type", "text/plain");
}

static struct MHD_Daemon *serve(const char *ip, char *origin, size_t len)
{
    struct sockaddr_in addr = {.sin_family = AF_INET};
    inet_pton(AF_INET, ip, &addr.sin_addr);
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL,
                                            NULL, handle, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
    if (!d) return NULL;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    snprintf(origin, len, "http://%s:%u", ip, info ? info->port : 0);
    return d;
}

static int setup(void **state)
{
    unsetenv("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS");
    g.png = tu_read_file(PNG_PATH, &g.png_len);
    g.d1 = serve("127.0.0.1", g.origin1, sizeof g.origin1);
    g.d2 = serve("127.0.0.2", g.origin2, sizeof g.origin2);
    return g.png && g.d1 && g.d2 ? 0 : -1;
}

static int teardown(void **state)
{
    MHD_stop_daemon(g.d1);
    MHD_stop_daemon(g.d2);
    free(g.png);
    return 0;
}

/* Loopback allowed, as a test must (the default refuses it). */
static img_fetch_opts loopback_opts(void)
{
    img_fetch_opts o;
    img_fetch_opts_default(&o);
    o.allow_private = true;
    return o;
}

static img_fetch_status fetch(const img_fetch_opts *o, const char *origin, const char *path, uint8_t **data,
                              size_t *len, char *err, size_t errlen)
{
    char url[256];
    snprintf(url, sizeof url, "%s%s", origin, path);
    return img_fetch(url, o, data, len, err, errlen);
}

static void expect_failure(const img_fetch_opts *o, const char *url, img_fetch_status want, const char *needle)
{
    uint8_t *data = (uint8_t *)"unset";
    size_t len = 7;
    char err[512] = "";
    img_fetch_status st = img_fetch(url, o, &data, &len, err, sizeof err);
    if (st != want) fail_msg("%s: status %d, expected %d (%s)", url, st, want, err);
    assert_null(data);
    assert_int_equal(len, 0);
    if (!strstr(err, needle)) fail_msg("%s: error \"%s\" lacks \"%s\"", url, err, needle);
    printf("  %s\n", err);
    assert_null(strstr(err, "secret")); /* query strings stay out of messages */
}

static void test_fetches_png_and_follows_relative_redirect(void **state)
{
    img_fetch_opts o = loopback_opts();
    const char *paths[] = {"/image.png", "/redirect"};
    for (int i = 0; i < 2; i++) {
        uint8_t *data;
        size_t len;
        char err[256];
        assert_int_equal(fetch(&o, g.origin1, paths[i], &data, &len, err, sizeof err), IMG_FETCH_OK);
        assert_int_equal(len, g.png_len);
        assert_memory_equal(data, g.png, len);
        img_rgb im;
        img_limits lim;
        img_limits_default(&lim);
        assert_int_equal(img_decode(data, len, &lim, &im, err, sizeof err), 0);
        assert_true(im.width == 100 && im.height == 75);
        img_rgb_free(&im);
        free(data);
    }
}

static void test_http_failures(void **state)
{
    img_fetch_opts o = loopback_opts();
    char url[256];
    snprintf(url, sizeof url, "%s/missing?token=secret", g.origin1);
    expect_failure(&o, url, IMG_FETCH_EHTTP, "answered HTTP 404");
    snprintf(url, sizeof url, "%s/loop?sig=secret", g.origin1);
    expect_failure(&o, url, IMG_FETCH_EHTTP, "redirects more than 5 times");
    snprintf(url, sizeof url, "%s/to-ftp", g.origin1);
    expect_failure(&o, url, IMG_FETCH_EURL, "to a scheme other than http or https");
}

static void test_size_cap(void **state)
{
    img_fetch_opts o = loopback_opts();
    o.max_bytes = 1 << 20;
    char url[256];
    snprintf(url, sizeof url, "%s/big", g.origin1);
    expect_failure(&o, url, IMG_FETCH_ETOOBIG, "larger than 1048576 bytes");
    snprintf(url, sizeof url, "%s/big-chunked", g.origin1);
    expect_failure(&o, url, IMG_FETCH_ETOOBIG, "larger than 1048576 bytes");
    o.max_bytes = g.png_len; /* exactly the size passes */
    uint8_t *data;
    size_t len;
    char err[256];
    assert_int_equal(fetch(&o, g.origin1, "/image.png", &data, &len, err, sizeof err), IMG_FETCH_OK);
    free(data);
    o.max_bytes = g.png_len - 1;
    snprintf(url, sizeof url, "%s/image.png", g.origin1);
    expect_failure(&o, url, IMG_FETCH_ETOOBIG, "larger than");
}

static void test_time_limit(void **state)
{
    img_fetch_opts o = loopback_opts();
    o.timeout_ms = 500;
    char url[256];
    snprintf(url, sizeof url, "%s/slow", g.origin1);
    expect_failure(&o, url, IMG_FETCH_ENETWORK, "timed out (500 ms)");
}

static void test_private_addresses_are_refused_before_connecting(void **state)
{
    img_fetch_opts o;
    img_fetch_opts_default(&o);
    assert_false(o.allow_private);
    int before = atomic_load(&g.requests);
    char url[256];
    snprintf(url, sizeof url, "%s/image.png?X-Amz-Signature=secret", g.origin1);
    expect_failure(&o, url, IMG_FETCH_EBLOCKED, "resolves to the non-public address 127.0.0.1");
    const char *port = strrchr(g.origin1, ':');
    snprintf(url, sizeof url, "http://localhost%s/image.png", port);
    expect_failure(&o, url, IMG_FETCH_EBLOCKED, "non-public address");
    snprintf(url, sizeof url, "http://[::ffff:127.0.0.1]%s/image.png", port);
    expect_failure(&o, url, IMG_FETCH_EBLOCKED, "non-public address");
    expect_failure(&o, "http://169.254.169.254/latest/meta-data/", IMG_FETCH_EBLOCKED, "169.254.169.254");
    assert_int_equal(atomic_load(&g.requests), before); /* nothing reached a server */
}

/* The policy admits 127.0.0.1 only: the first hop passes, the redirect to
 * 127.0.0.2 is refused. */
static int only_first_server(const struct sockaddr *a, void *ctx)
{
    return a->sa_family == AF_INET && ((const struct sockaddr_in *)a)->sin_addr.s_addr == htonl(0x7F000001);
}

static void test_every_redirect_hop_is_checked(void **state)
{
    img_fetch_opts o;
    img_fetch_opts_default(&o);
    o.address_ok = only_first_server;
    char url[256];
    snprintf(url, sizeof url, "%s/to-other-host", g.origin1);
    expect_failure(&o, url, IMG_FETCH_EBLOCKED, "127.0.0.2");
    /* with both allowed the same redirect works */
    o = loopback_opts();
    uint8_t *data;
    size_t len;
    char err[256];
    assert_int_equal(img_fetch(url, &o, &data, &len, err, sizeof err), IMG_FETCH_OK);
    assert_int_equal(len, g.png_len);
    free(data);
}

static void test_bad_urls(void **state)
{
    img_fetch_opts o = loopback_opts();
    expect_failure(&o, "ftp://127.0.0.1/image.png", IMG_FETCH_EURL, "only http and https");
    expect_failure(&o, "file:///etc/passwd", IMG_FETCH_EURL, "only http and https");
    expect_failure(&o, "data:image/png;base64,AAAA", IMG_FETCH_EURL, "");
    expect_failure(&o, "not a url", IMG_FETCH_EURL, "not an absolute URL");
    expect_failure(&o, "http://", IMG_FETCH_EURL, "");
    expect_failure(&o, "", IMG_FETCH_EURL, "");
}

static void test_address_classifier(void **state)
{
    const char *public_ips[] = {"8.8.8.8", "1.1.1.1", "93.184.216.34", "100.63.255.255", "100.128.0.0",
                                "172.32.0.1", "192.169.0.1", "2606:4700:4700::1111", "2a00:1450:4001:81b::200e",
                                "::ffff:8.8.8.8", "2001:4860::1"};
    const char *private_ips[] = {"127.0.0.1", "127.255.255.254", "10.1.2.3", "172.16.0.1", "172.31.255.255",
                                 "192.168.1.1", "100.64.0.1", "100.127.255.255", "169.254.169.254", "0.0.0.0",
                                 "192.0.2.1", "198.51.100.7", "203.0.113.9", "198.18.0.1", "224.0.0.1",
                                 "240.0.0.1", "255.255.255.255", "::1", "::", "fc00::1", "fd12:3456::1",
                                 "fe80::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
                                 "::ffff:169.254.169.254", "2001:db8::1", "2001::1", "2002:7f00:1::1",
                                 "64:ff9b::7f00:1", "3fff::1", "not-an-ip", ""};
    for (size_t i = 0; i < sizeof public_ips / sizeof *public_ips; i++)
        if (!img_fetch_ip_is_public(public_ips[i])) fail_msg("%s should be public", public_ips[i]);
    for (size_t i = 0; i < sizeof private_ips / sizeof *private_ips; i++)
        if (img_fetch_ip_is_public(private_ips[i])) fail_msg("%s should not be public", private_ips[i]);
}

static void test_allow_private_env(void **state)
{
    static const struct {
        const char *value;
        bool on;
    } cases[] = {{"1", true}, {"true", true}, {" YES ", true}, {"True\n", true}, {"0", false},
                 {"false", false}, {"", false}, {"on", false}, {"yes please", false}};
    img_fetch_opts o;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        setenv("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS", cases[i].value, 1);
        img_fetch_opts_default(&o);
        if (o.allow_private != cases[i].on) fail_msg("\"%s\" read as %d", cases[i].value, o.allow_private);
    }
    setenv("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS", "yes", 1);
    img_fetch_opts_default(&o);
    uint8_t *data;
    size_t len;
    char err[256];
    assert_int_equal(fetch(&o, g.origin1, "/image.png", &data, &len, err, sizeof err), IMG_FETCH_OK);
    free(data);
    unsetenv("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS");
    img_fetch_opts_default(&o);
    assert_false(o.allow_private);
    assert_true(o.max_bytes == (size_t)32 << 20 && o.timeout_ms == 30000 && o.max_redirects == 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fetches_png_and_follows_relative_redirect),
        cmocka_unit_test(test_http_failures),
        cmocka_unit_test(test_size_cap),
        cmocka_unit_test(test_time_limit),
        cmocka_unit_test(test_private_addresses_are_refused_before_connecting),
        cmocka_unit_test(test_every_redirect_hop_is_checked),
        cmocka_unit_test(test_bad_urls),
        cmocka_unit_test(test_address_classifier),
        cmocka_unit_test(test_allow_private_env),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
