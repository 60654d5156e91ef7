/* posix_spawn-based runner of tests/rp_test_worker.c (see rp_child.h). */
#include "rp_child.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "rp_test_handler.h"
#include "testutil.h"

#define MAX_ENV 64

pid_t rpc_spawn(const rpc_spec *spec)
{
    if (spec->cfg->handler != rpt_script_handler || spec->cfg->ctx) {
        fprintf(stderr, "rpc_spawn: only the scripted test handler runs in a child\n");
        return -1;
    }
    char config[64], path[4096];
    snprintf(config, sizeof config, "RPT_CONFIG=%d,%d,%d,%d", spec->cfg->generator,
             spec->cfg->return_aggregate_stream, spec->cfg->refresh_worker, spec->cfg->concurrency);
    const char *env[MAX_ENV + 2];
    size_t n = 0;
    for (const char *const *e = spec->env; e && *e && n < MAX_ENV; e++) env[n++] = *e;
    env[n++] = config;
    env[n] = NULL;
    const char *build = getenv("SDXL_BUILD_DIR");
    snprintf(path, sizeof path, "%s/rp_test_worker", build && *build ? build : "build");
    char *fallback[] = {"sdxl-worker", NULL};
    tu_spawn_spec s = {.path = path, .argv = spec->argv && spec->argc ? spec->argv : fallback, .env = env,
                       .clear_runpod = 1, .cwd = spec->cwd, .stdout_path = spec->stdout_path,
                       .stderr_path = spec->stderr_path};
    fflush(NULL);
    return tu_spawn(&s);
}

int rpc_wait(pid_t pid, int timeout_ms)
{
    struct timespec step = {0, 10 * 1000000L};
    for (int waited = 0;; waited += 10) {
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -2;
        if (r < 0) return -2;
        if (waited >= timeout_ms) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        nanosleep(&step, NULL);
    }
}
