/* Runs rp_serverless_start() in a fork()ed child, as a real process: env
 * and cwd set in the child only, stdout/stderr optionally redirected to
 * files, exit code collected with a deadline. Used by the runtime's
 * integration tests (SIGTERM, exit codes, stdout purity). */
#ifndef SDXL_RP_CHILD_H
#define SDXL_RP_CHILD_H

#include <sys/types.h>

#include "runpod/runpod.h"

typedef struct {
    const rp_config *cfg;
    int argc;
    char **argv;                  /* argv[0] included; may be NULL when argc == 0 */
    void (*setup)(void *arg);     /* runs in the child first (setenv, chdir) */
    void *arg;
    const char *stdout_path;      /* redirect when not NULL */
    const char *stderr_path;
} rpc_spec;

pid_t rpc_spawn(const rpc_spec *spec);
/* Waits up to timeout_ms; returns the exit status, or -1 when the child had
 * to be killed (it is SIGKILLed then), or -2 when it died from a signal. */
int rpc_wait(pid_t pid, int timeout_ms);
/* Clears every RUNPOD_* variable of this process (call in the child). */
void rpc_clear_runpod_env(void);

#endif
