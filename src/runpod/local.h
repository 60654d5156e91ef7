/* Local test mode (spec runpod-protocol.md §7.1): one job from --test_input,
 * a job file named on the command line, or ./test_input.json; the handler
 * runs once (generators are iterated, all values collected); the wrapped
 * result is printed alone, as one compact JSON line, on stdout (logs go to
 * stderr). Exit 1 on a missing file, bad JSON, a missing input or a failed
 * job (the result line is printed for a failed job too); 0 otherwise. */
#ifndef SDXL_RUNPOD_LOCAL_H
#define SDXL_RUNPOD_LOCAL_H

#include "runpod/args.h"
#include "runpod/runpod.h"

int rp_local_run(const rp_config *cfg, const rp_args *args);

#endif
