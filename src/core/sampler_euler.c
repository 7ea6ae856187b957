/* Euler (k-diffusion sampling.sample_euler with s_churn = 0): x += (x - D(x; s)) / s * (s' - s). */
#include "sampler.h"

#include <stdlib.h>

static ldm_status euler_run(ldm_sample_run *r) {
    float *den = malloc((size_t)r->n * sizeof *den);
    if (!den) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    ldm_status st = LDM_OK;
    for (int i = 0; i < r->steps && !st; i++) {
        float sigma = r->sigmas[i], dt = r->sigmas[i + 1] - sigma;
        st = r->denoise(r, r->x, sigma, den);
        if (st) break;
        for (int j = 0; j < r->n; j++) {
            float d = (r->x[j] - den[j]) / sigma;
            r->x[j] = r->x[j] + d * dt;
        }
        st = r->step_done(r, i + 1, r->x, den);
    }
    free(den);
    return st;
}

const ldm_sampler_def ldm_sampler_euler = {"euler", LDM_SAMPLER_SIGMA, euler_run};
