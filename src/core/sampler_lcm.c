/* LCM (k-diffusion / ComfyUI sample_lcm): x = D(x; s), then, when s' > 0, re-noised to s' with a
 * fresh draw (ComfyUI EPS.noise_scaling: x = D + s' noise). One model call per step; one
 * latent-shaped r->randn per step but the last, in step order (N steps take N - 1 draws). */
#include "sampler.h"

#include <stdlib.h>
#include <string.h>

static ldm_status lcm_run(ldm_sample_run *r) {
    size_t n = (size_t)r->n;
    float *den = malloc(n * 2 * sizeof *den);
    if (!den) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    float *noise = den + n;
    ldm_status st = LDM_OK;
    for (int i = 0; i < r->steps && !st; i++) {
        float s = r->sigmas[i], sn = r->sigmas[i + 1];
        if ((st = r->denoise(r, r->x, s, den))) break;
        if (sn > 0.0f) {
            if ((st = r->randn(r, noise))) break;
            for (size_t j = 0; j < n; j++) r->x[j] = noise[j] * sn + den[j];
        } else {
            memcpy(r->x, den, n * sizeof *den);
        }
        st = r->step_done(r, i + 1, r->x, den);
    }
    free(den);
    return st;
}

const ldm_sampler_def ldm_sampler_lcm = {"lcm", LDM_SAMPLER_SIGMA, lcm_run};
