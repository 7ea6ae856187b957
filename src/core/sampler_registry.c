/* The table of samplers and their aliases (the peers' spellings). */
#include "sampler.h"

#include <string.h>
#include <strings.h>

static const ldm_sampler_def *const all_samplers[] = {
    &ldm_sampler_euler,
    &ldm_sampler_ddim,
};

static const char *const sampler_names[] = {"euler", "ddim", NULL};

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
