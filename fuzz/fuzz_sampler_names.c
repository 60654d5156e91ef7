/* Fuzzes sd_sampler_parse with job-supplied sampler and schedule names: the
 * input up to the first newline is the sampler, the rest the schedule. A
 * parsed choice must be a supported pair that plans; errors must be one
 * NUL-terminated line. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sd/sampler.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    char *schedule = strchr(text, '\n');
    if (schedule) *schedule++ = 0;
    sd_sampler_choice c;
    char err[256];
    if (sd_sampler_parse(text, schedule, &c, err, sizeof err) == 0) {
        if (!sd_sampler_supports(c.sampler, c.schedule)) abort();
        sd_plan p;
        if (sd_plan_make(&c, 3, &p, err, sizeof err)) abort();
        sd_plan_free(&p);
    } else if (strlen(err) >= sizeof err || strchr(err, '\n')) {
        abort();
    }
    free(text);
    return 0;
}
