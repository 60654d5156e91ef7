/* The SDK's command-line flags and mode selection (spec runpod-protocol.md
 * §2, §7.2): --rp_log_level, --rp_debugger, --rp_serve_api, --rp_api_port,
 * --rp_api_concurrency, --rp_api_host, --test_input, each as "--flag value"
 * or "--flag=value"; unknown arguments are left alone (argparse's
 * parse_known_args), except that a positional argument ending in ".json"
 * names a local test job file (the original worker's
 * `python handler.py custom_input.json`). Prefix abbreviations of flags are
 * not accepted (argparse would). */
#ifndef SDXL_RUNPOD_ARGS_H
#define SDXL_RUNPOD_ARGS_H

#include <stdbool.h>
#include <stddef.h>

#define RP_DEFAULT_API_HOST "127.0.0.1" /* the SDK binds "localhost"; we bind loopback explicitly */
#define RP_DEFAULT_API_PORT 8000

typedef struct {
    const char *log_level;   /* NULL when not given */
    bool debugger;
    bool serve_api;
    const char *api_host;
    int api_port;
    int api_concurrency;     /* 0 when not given */
    const char *test_input;  /* JSON text, NULL when not given */
    const char *input_file;  /* positional *.json, NULL when none */
} rp_args;

/* 0 on success; on a malformed flag -1 with a message in err. argv is not
 * modified; the strings point into it. */
int rp_args_parse(int argc, char **argv, rp_args *out, char *err, size_t err_len);

typedef enum {
    RP_MODE_DEV_API,    /* --rp_serve_api */
    RP_MODE_REALTIME,   /* RUNPOD_REALTIME_PORT != 0: the dev API app on 0.0.0.0 */
    RP_MODE_LOCAL,      /* --test_input, a job file, or no RUNPOD_WEBHOOK_GET_JOB */
    RP_MODE_PRODUCTION, /* RUNPOD_WEBHOOK_GET_JOB set */
} rp_mode;

/* SDK precedence: serve_api > realtime port > local test > production. */
rp_mode rp_select_mode(const rp_args *a, bool have_get_job_url, int realtime_port);

#endif
