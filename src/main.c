/* sdxl-worker entry point: dispatches subcommands; with none, runs the
 * RunPod serverless runtime with the SDXL handler. */
#include "handler.h"
#include "models/store.h"
#include "sd/cli_generate.h"

#include <stdio.h>
#include <string.h>

static int usage(FILE *out)
{
    fprintf(out,
        "usage: sdxl-worker [job.json] [--test_input JSON] [--rp_serve_api]\n"
        "                   [--rp_api_host H] [--rp_api_port P] [--rp_log_level L]\n"
        "       sdxl-worker fetch-models [--config FILE] [--allow-unverified]\n"
        "       sdxl-worker generate --model PATH --prompt TEXT [...] (generate --help)\n"
        "       sdxl-worker help\n");
    return out == stdout ? 0 : 2;
}

int main(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))
        return usage(stdout);
    if (argc > 1 && !strcmp(argv[1], "fetch-models"))
        return models_fetch_main(argc - 1, argv + 1);
    if (argc > 1 && !strcmp(argv[1], "generate"))
        return sd_generate_main(argc - 1, argv + 1);
    return sdxl_worker_main(argc, argv);
}
