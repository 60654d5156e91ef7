/* Flag parsing and mode selection (see args.h). Matched: runpod-python
 * 1.12.0 serverless/__init__.py (argparse flags, start()). */
#include "runpod/args.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef enum { FLAG_BOOL, FLAG_STRING, FLAG_INT } flag_kind;

typedef struct {
    const char *name;
    flag_kind kind;
    size_t offset;
} flag_spec;

static const flag_spec FLAGS[] = {
    {"--rp_log_level", FLAG_STRING, offsetof(rp_args, log_level)},
    {"--rp_debugger", FLAG_BOOL, offsetof(rp_args, debugger)},
    {"--rp_serve_api", FLAG_BOOL, offsetof(rp_args, serve_api)},
    {"--rp_api_port", FLAG_INT, offsetof(rp_args, api_port)},
    {"--rp_api_concurrency", FLAG_INT, offsetof(rp_args, api_concurrency)},
    {"--rp_api_host", FLAG_STRING, offsetof(rp_args, api_host)},
    {"--test_input", FLAG_STRING, offsetof(rp_args, test_input)},
};

/* Finds the flag named by arg ("--name" or "--name=value"); sets *inline_value. */
static const flag_spec *match_flag(const char *arg, const char **inline_value)
{
    *inline_value = NULL;
    for (size_t i = 0; i < sizeof FLAGS / sizeof FLAGS[0]; i++) {
        size_t n = strlen(FLAGS[i].name);
        if (strncmp(arg, FLAGS[i].name, n)) continue;
        if (arg[n] == 0) return &FLAGS[i];
        if (arg[n] == '=') { *inline_value = arg + n + 1; return &FLAGS[i]; }
    }
    return NULL;
}

static int set_value(rp_args *out, const flag_spec *f, const char *value, char *err, size_t err_len)
{
    void *field = (char *)out + f->offset;
    if (f->kind == FLAG_STRING) { *(const char **)field = value; return 0; }
    char *end;
    long v = strtol(value, &end, 10);
    if (end == value || *end || v < 0 || v > 65535) {
        snprintf(err, err_len, "argument %s: invalid int value: '%s'", f->name, value);
        return -1;
    }
    *(int *)field = (int)v;
    return 0;
}

static bool is_json_file_name(const char *arg)
{
    size_t n = strlen(arg);
    return arg[0] != '-' && n > 5 && !strcasecmp(arg + n - 5, ".json");
}

int rp_args_parse(int argc, char **argv, rp_args *out, char *err, size_t err_len)
{
    memset(out, 0, sizeof *out);
    out->api_host = RP_DEFAULT_API_HOST;
    out->api_port = RP_DEFAULT_API_PORT;
    for (int i = 1; i < argc; i++) {
        const char *value;
        const flag_spec *f = match_flag(argv[i], &value);
        if (!f) {
            if (!out->input_file && is_json_file_name(argv[i])) out->input_file = argv[i];
            continue;
        }
        if (f->kind == FLAG_BOOL) {
            if (value) { snprintf(err, err_len, "argument %s: ignored explicit argument '%s'", f->name, value); return -1; }
            *(bool *)((char *)out + f->offset) = true;
            continue;
        }
        if (!value) {
            if (i + 1 >= argc) { snprintf(err, err_len, "argument %s: expected one argument", f->name); return -1; }
            value = argv[++i];
        }
        if (set_value(out, f, value, err, err_len) != 0) return -1;
    }
    return 0;
}

rp_mode rp_select_mode(const rp_args *a, bool have_get_job_url, int realtime_port)
{
    if (a->serve_api) return RP_MODE_DEV_API;
    if (realtime_port) return RP_MODE_REALTIME;
    if (a->test_input || a->input_file || !have_get_job_url) return RP_MODE_LOCAL;
    return RP_MODE_PRODUCTION;
}
