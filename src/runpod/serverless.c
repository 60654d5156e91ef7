/* rp_serverless_start(): the C counterpart of runpod.serverless.start()
 * (spec runpod-protocol.md §2): logging set-up, flags, mode choice, and the
 * run of that mode with SIGTERM/SIGINT routed to a shutdown event. */
#include <curl/curl.h>
#include <stdio.h>

#include "runpod/args.h"
#include "runpod/devapi.h"
#include "runpod/event.h"
#include "runpod/local.h"
#include "runpod/log.h"
#include "runpod/runpod.h"
#include "runpod/settings.h"
#include "runpod/signals.h"
#include "runpod/worker.h"

static int apply_log_level(const char *name)
{
    rp_log_level level;
    if (rp_log_parse_level(name, &level) != 0) {
        rp_error("Invalid log level: %s", name);
        return -1;
    }
    rp_log_set_level(level);
    rp_info("Log level set to %s", name);
    return 0;
}

/* The long-running modes: serve until SIGTERM/SIGINT (or refresh_worker). */
static int run_service(const rp_config *cfg, const rp_settings *s, const rp_args *a, rp_mode mode)
{
    rp_event shutdown;
    if (rp_event_init(&shutdown) != 0) {
        rp_error("Cannot create the shutdown event.");
        return 1;
    }
    rp_signals_install(&shutdown);
    int rc;
    if (mode == RP_MODE_PRODUCTION) {
        rc = rp_worker_run(cfg, s, &shutdown);
    } else if (mode == RP_MODE_DEV_API) {
        rp_info("Starting API server.");
        int conc = a->api_concurrency ? a->api_concurrency : cfg->concurrency;
        rc = rp_devapi_run(cfg, s, a->api_host, a->api_port, conc, false, &shutdown);
    } else {
        rp_info("Starting API server for realtime on port %d.", s->realtime_port);
        rc = rp_devapi_run(cfg, s, "0.0.0.0", s->realtime_port, s->realtime_concurrency, true, &shutdown);
    }
    if (rp_signals_received()) rp_info("Signal %d received. Shut down.", rp_signals_received());
    rp_signals_restore();
    rp_event_destroy(&shutdown);
    return rc;
}

int rp_serverless_start(const rp_config *config, int argc, char **argv)
{
    rp_log_init_from_env();
    fprintf(stderr, "--- Starting Serverless Worker |  Version %s ---\n", RP_SDK_VERSION);
    rp_args args;
    char err[256];
    if (rp_args_parse(argc, argv, &args, err, sizeof err) != 0) {
        rp_error("%s", err);
        return 2;
    }
    if (args.log_level && apply_log_level(args.log_level) != 0) return 1;
    if (args.debugger) rp_warn("--rp_debugger is not supported by this worker; ignored.");
    if (!config || !config->handler) {
        rp_error("No handler given to rp_serverless_start.");
        return 1;
    }
    rp_settings s;
    rp_settings_load(&s);
    rp_mode mode = rp_select_mode(&args, s.take_base != NULL, s.realtime_port);
    int rc;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (mode == RP_MODE_LOCAL) rc = rp_local_run(config, &args);
    else rc = run_service(config, &s, &args, mode);
    curl_global_cleanup();
    rp_settings_free(&s);
    return rc;
}
