/* Pipe-backed one-shot event and the monotonic clock (see event.h). */
#include "runpod/event.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

int rp_event_init(rp_event *ev)
{
    atomic_init(&ev->set, false);
    if (pipe2(ev->fds, O_CLOEXEC | O_NONBLOCK) != 0) return -1;
    return 0;
}

void rp_event_destroy(rp_event *ev)
{
    close(ev->fds[0]);
    close(ev->fds[1]);
}

void rp_event_set(rp_event *ev)
{
    if (atomic_exchange(&ev->set, true)) return;
    int saved = errno; /* may run inside a signal handler */
    ssize_t w = write(ev->fds[1], "x", 1);
    (void)w;
    errno = saved;
}

bool rp_event_is_set(rp_event *ev)
{
    return atomic_load(&ev->set);
}

bool rp_event_wait(rp_event *ev, long ms)
{
    long long deadline = rp_now_ms() + (ms > 0 ? ms : 0);
    for (;;) {
        if (rp_event_is_set(ev)) return true;
        long long left = deadline - rp_now_ms();
        if (left <= 0) return false;
        struct pollfd p = {.fd = ev->fds[0], .events = POLLIN};
        int n = poll(&p, 1, (int)(left > 60000 ? 60000 : left));
        if (n < 0 && errno != EINTR) return rp_event_is_set(ev);
    }
}

int rp_event_fd(const rp_event *ev)
{
    return ev->fds[0];
}

long long rp_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
