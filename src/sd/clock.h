/* The monotonic clock in seconds, for stage timings and progress rates. One
 * definition shared by the engine, the LoRA stack, the model store and the
 * handler. */
#ifndef SDXL_SD_CLOCK_H
#define SDXL_SD_CLOCK_H

#include <time.h>

static inline double sd_now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

#endif
