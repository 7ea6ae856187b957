/* DPM2 ancestral (k-diffusion sample_dpm_2_ancestral, eta = 1, s_noise = 1): the DPM2 midpoint
 * step down to sigma_down (get_ancestral_step), then fresh noise * sigma_up:
 *   mid = exp(lerp(log s, log sigma_down, 1/2)), x2 = x + d (mid - s),
 *   x = x + d(x2; mid) (sigma_down - s) + noise * sigma_up.
 * When sigma_down is 0 (the step to sigma 0) it is a plain Euler step and takes no noise, so N
 * steps take N - 1 draws, one latent-shaped r->randn each, in step order. */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>

static ldm_status dpm2_a_run(ldm_sample_run *r) {
    size_t n = (size_t)r->n;
    float *den = malloc(n * 5 * sizeof *den);
    if (!den) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    float *d = den + n, *x2 = den + 2 * n, *den2 = den + 3 * n, *noise = den + 4 * n;
    ldm_status st = LDM_OK;
    for (int i = 0; i < r->steps && !st; i++) {
        float s = r->sigmas[i], sn = r->sigmas[i + 1], down, up;
        if ((st = r->denoise(r, r->x, s, den))) break;
        sampler_ancestral_step(s, sn, &down, &up);
        for (size_t j = 0; j < n; j++) d[j] = sampler_to_d(r->x[j], den[j], s);
        if (down == 0.0f) {
            for (size_t j = 0; j < n; j++) r->x[j] = r->x[j] + d[j] * (down - s);
        } else {
            /* torch.lerp(a, b, 0.5) = b - (b - a) * 0.5 */
            float la = logf(s), lb = logf(down);
            float mid = expf(lb - (lb - la) * 0.5f), dt1 = mid - s, dt2 = down - s;
            for (size_t j = 0; j < n; j++) x2[j] = r->x[j] + d[j] * dt1;
            if ((st = r->denoise(r, x2, mid, den2))) break;
            if ((st = r->randn(r, noise))) break;
            for (size_t j = 0; j < n; j++) {
                float xn = r->x[j] + sampler_to_d(x2[j], den2[j], mid) * dt2;
                r->x[j] = xn + noise[j] * up;
            }
        }
        st = r->step_done(r, i + 1, r->x, den);
    }
    free(den);
    return st;
}

const ldm_sampler_def ldm_sampler_dpm2_ancestral = {"dpm2_ancestral", LDM_SAMPLER_SIGMA, dpm2_a_run};
