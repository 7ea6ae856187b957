/* The table of samplers and their aliases (the peers' spellings). */
#include "sampler.h"

#include <string.h>
#include <strings.h>

static const ldm_sampler_def *const all_samplers[] = {
    &ldm_sampler_euler,
    &ldm_sampler_ddim,
    &ldm_sampler_euler_ancestral,
    &ldm_sampler_heun,
    &ldm_sampler_dpmpp_2m,
    &ldm_sampler_lms,
    &ldm_sampler_plms,
};

static const char *const sampler_names[] = {"euler", "ddim", "euler_ancestral", "heun", "dpmpp_2m", "lms", "plms", NULL};

#define N_SAMPLERS (sizeof all_samplers / sizeof all_samplers[0])

const ldm_sampler_def *sampler_find(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < N_SAMPLERS; i++) {
        const ldm_sampler_def *d = all_samplers[i];
        if (strcasecmp(d->name, name) == 0) return d;
        for (const char *const *a = d->aliases; a && *a; a++)
            if (strcasecmp(*a, name) == 0) return d;
    }
    return NULL;
}

LDM_API const char *const *ldm_sampler_list(void) { return sampler_names; }
