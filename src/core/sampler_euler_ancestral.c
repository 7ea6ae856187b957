/* Euler ancestral (k-diffusion sample_euler_ancestral, eta = 1, s_noise = 1): an Euler step down to
 * sigma_down, then fresh noise * sigma_up, with (get_ancestral_step)
 *   sigma_up = min(s', sqrt(s'^2 (s^2 - s'^2) / s^2)), sigma_down = sqrt(s'^2 - sigma_up^2).
 * One noise draw per step whose next sigma is > 0 (SEEDED_CONTRACT: N steps take N - 1 draws). */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>

static ldm_status euler_a_run(ldm_sample_run *r) {
    float *den = malloc((size_t)r->n * 2 * sizeof *den);
    if (!den) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    float *noise = den + r->n;
    ldm_status st = LDM_OK;
    for (int i = 0; i < r->steps && !st; i++) {
        float s = r->sigmas[i], sn = r->sigmas[i + 1];
        if ((st = r->denoise(r, r->x, s, den))) break;
        float up = sqrtf(sn * sn * (s * s - sn * sn) / (s * s));
        if (up > sn) up = sn;
        float down = sqrtf(sn * sn - up * up), dt = down - s;
        for (int j = 0; j < r->n; j++) r->x[j] = r->x[j] + sampler_to_d(r->x[j], den[j], s) * dt;
        if (sn > 0.0f) {
            if ((st = r->randn(r, noise))) break;
            for (int j = 0; j < r->n; j++) r->x[j] = r->x[j] + noise[j] * up;
        }
        st = r->step_done(r, i + 1, r->x, den);
    }
    free(den);
    return st;
}

const ldm_sampler_def ldm_sampler_euler_ancestral = {"euler_ancestral", LDM_SAMPLER_SIGMA, euler_a_run};
