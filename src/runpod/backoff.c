/* Capped exponential backoff with equal jitter (see backoff.h). */
#include "runpod/backoff.h"

#include <stdlib.h>

void rp_backoff_init(rp_backoff *b, unsigned seed)
{
    b->failures = 0;
    b->seed = seed;
}

long rp_backoff_next_ms(rp_backoff *b)
{
    long d = RP_BACKOFF_BASE_MS;
    for (int i = 0; i < b->failures && d < RP_BACKOFF_CAP_MS; i++) d *= 2;
    if (d > RP_BACKOFF_CAP_MS) d = RP_BACKOFF_CAP_MS;
    b->failures++;
    double u = (double)rand_r(&b->seed) / RAND_MAX; /* in [0, 1] */
    return d / 2 + (long)(u * (double)(d / 2));
}

void rp_backoff_reset(rp_backoff *b)
{
    b->failures = 0;
}
