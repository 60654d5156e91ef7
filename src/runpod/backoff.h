/* Capped, jittered exponential backoff for failed job-take requests (our
 * addition: the SDK retries at once, spec §4.4 / §12). The n-th consecutive
 * failure waits d = min(30 s, 1 s * 2^(n-1)) scaled by a uniform factor in
 * [0.5, 1] ("equal jitter"), so a fleet of workers does not retry in step;
 * any answer that is not a failure resets it. */
#ifndef SDXL_RUNPOD_BACKOFF_H
#define SDXL_RUNPOD_BACKOFF_H

#define RP_BACKOFF_BASE_MS 1000
#define RP_BACKOFF_CAP_MS 30000

typedef struct {
    int failures;
    unsigned seed;
} rp_backoff;

void rp_backoff_init(rp_backoff *b, unsigned seed);
/* Records one more failure and returns the wait before the next attempt. */
long rp_backoff_next_ms(rp_backoff *b);
void rp_backoff_reset(rp_backoff *b);

#endif
