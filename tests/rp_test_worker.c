/* The runtime with the scripted test handler (tests/support/rp_test_handler.h)
 * as a program of its own, which the runtime's integration tests start
 * (tests/support/rp_child.h). RPT_CONFIG="generator,aggregate,refresh,
 * concurrency" sets the rp_config flags; the arguments go to the runtime. */
#include <stdio.h>
#include <stdlib.h>

#include "rp_test_handler.h"

int main(int argc, char **argv)
{
    int generator = 0, aggregate = 0, refresh = 0, concurrency = 0;
    const char *config = getenv("RPT_CONFIG");
    if (config && sscanf(config, "%d,%d,%d,%d", &generator, &aggregate, &refresh, &concurrency) != 4) {
        fprintf(stderr, "rp_test_worker: RPT_CONFIG=%s is not generator,aggregate,refresh,concurrency\n", config);
        return 99;
    }
    rp_config cfg = {.handler = rpt_script_handler, .generator = generator, .return_aggregate_stream = aggregate,
                     .refresh_worker = refresh, .concurrency = concurrency};
    return rp_serverless_start(&cfg, argc, argv);
}
