/* Runs the runtime with the scripted test handler (rp_test_handler.h) as a
 * real process: the program tests/rp_test_worker.c, started with
 * posix_spawn (testutil.h: the child never runs code of the test process,
 * whose server threads may hold locks at a fork), with its environment,
 * cwd and stdout/stderr set for it, and its exit code collected with a
 * deadline. Used by the runtime's integration tests (SIGTERM, exit codes,
 * stdout purity). */
#ifndef SDXL_RP_CHILD_H
#define SDXL_RP_CHILD_H

#include <sys/types.h>

#include "runpod/runpod.h"

typedef struct {
    const rp_config *cfg;         /* handler rpt_script_handler, ctx NULL; the flags travel */
    int argc;
    char **argv;                  /* argv[0] included; may be NULL when argc == 0 */
    const char *const *env;       /* "NAME=value" for the child, on top of this process's
                                   * environment without its RUNPOD_* variables */
    const char *cwd;              /* NULL: this process's */
    const char *stdout_path;      /* redirect when not NULL */
    const char *stderr_path;
} rpc_spec;

/* The child's pid; -1 when it cannot be started. */
pid_t rpc_spawn(const rpc_spec *spec);
/* Waits up to timeout_ms; returns the exit status, or -1 when the child had
 * to be killed (it is SIGKILLed then), or -2 when it died from a signal. */
int rpc_wait(pid_t pid, int timeout_ms);

#endif
