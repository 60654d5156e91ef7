/* Fake queue + forked worker harness (see rp_harness.h). */
#include "rp_harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "rp_child.h"
#include "testutil.h"

int rph_setup(void **state)
{
    rph *h = calloc(1, sizeof *h);
    h->q = fq_start();
    h->dir = tu_mkdtemp("rp-harness");
    if (!h->q || !h->dir) return -1;
    snprintf(h->log_path, sizeof h->log_path, "%s/worker.log", h->dir);
    *state = h;
    return 0;
}

static void print_log_tail(const rph *h)
{
    char *log = rph_log(h);
    if (!log) return;
    size_t n = strlen(log);
    const char *start = n > 6000 ? log + n - 6000 : log;
    fprintf(stderr, "---- worker log (tail) ----\n%s---- end ----\n", start);
    free(log);
}

int rph_teardown(void **state)
{
    rph *h = *state;
    if (h->pid > 0) {
        kill(h->pid, SIGKILL);
        waitpid(h->pid, NULL, 0);
        print_log_tail(h); /* it did not finish as the test expected */
    }
    fq_stop(h->q);
    tu_rm_rf(h->dir);
    free(h->dir);
    free(h);
    return 0;
}

void rph_spawn(rph *h, const rp_config *cfg)
{
    char queue[FQ_ENV_LINES][256];
    fq_env(h->q, RPH_POD_ID, RPH_API_KEY, queue);
    const char *env[FQ_ENV_LINES + 34];
    size_t n = 0;
    for (; n < FQ_ENV_LINES; n++) env[n] = queue[n];
    env[n++] = "RUNPOD_LOG_LEVEL=DEBUG";
    for (const char *const *e = h->env; e && *e && n < FQ_ENV_LINES + 33; e++) env[n++] = *e;
    env[n] = NULL;
    rpc_spec spec = {.cfg = cfg, .env = env, .stderr_path = h->log_path};
    h->pid = rpc_spawn(&spec);
}

int rph_wait(rph *h, int timeout_ms)
{
    h->exit_code = rpc_wait(h->pid, timeout_ms);
    h->t_exit = fq_now(h->q);
    if (h->exit_code != 0) print_log_tail(h);
    h->pid = 0;
    return h->exit_code;
}

void rph_signal(rph *h, int sig)
{
    if (h->pid > 0) kill(h->pid, sig);
}

char *rph_log(const rph *h)
{
    return tu_read_file(h->log_path, NULL);
}
