/* fork()-based runner for rp_serverless_start (see rp_child.h). */
#include "rp_child.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

void rpc_clear_runpod_env(void)
{
    for (;;) {
        char name[256] = "";
        for (char **e = environ; *e; e++) {
            if (strncmp(*e, "RUNPOD_", 7)) continue;
            const char *eq = strchr(*e, '=');
            size_t n = eq ? (size_t)(eq - *e) : strlen(*e);
            if (n < sizeof name) { memcpy(name, *e, n); name[n] = 0; }
            break;
        }
        if (!name[0]) return;
        unsetenv(name);
    }
}

static void redirect(const char *path, int fd)
{
    if (!path) return;
    int f = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (f < 0) _exit(99);
    dup2(f, fd);
    close(f);
}

pid_t rpc_spawn(const rpc_spec *spec)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0) return pid;
    redirect(spec->stdout_path, STDOUT_FILENO);
    redirect(spec->stderr_path, STDERR_FILENO);
    if (spec->setup) spec->setup(spec->arg);
    char *fallback[] = {"sdxl-worker", NULL};
    int rc = rp_serverless_start(spec->cfg, spec->argv ? spec->argc : 1, spec->argv ? spec->argv : fallback);
    exit(rc); /* not _exit: in sanitizer builds LeakSanitizer then checks the child too */
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
