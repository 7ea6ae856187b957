/* DPM-Solver++(2S) ancestral (k-diffusion sample_dpmpp_2s_ancestral, eta = 1, s_noise = 1). In
 * t = -log(sigma), with h = t(sigma_down) - t(s) and the midpoint u = t + h/2:
 *   x2 = (sigma(u)/s) x - expm1(-h/2) D(x; s),  x = (sigma_down/s) x - expm1(-h) D(x2; sigma(u)),
 * then, when s' > 0, x += noise * sigma_up (one latent-shaped r->randn per such step, in step
 * order: N steps take N - 1 draws). When sigma_down is 0 the step is plain Euler. */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>

static ldm_status dpmpp_2s_a_run(ldm_sample_run *r) {
    size_t n = (size_t)r->n;
    float *den = malloc(n * 4 * sizeof *den);
    if (!den) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    float *x2 = den + n, *den2 = den + 2 * n, *noise = den + 3 * n;
    ldm_status st = LDM_OK;
    for (int i = 0; i < r->steps && !st; i++) {
        float s = r->sigmas[i], sn = r->sigmas[i + 1], down, up;
        if ((st = r->denoise(r, r->x, s, den))) break;
        sampler_ancestral_step(s, sn, &down, &up);
        if (down == 0.0f) {
            for (size_t j = 0; j < n; j++) r->x[j] = r->x[j] + sampler_to_d(r->x[j], den[j], s) * (down - s);
        } else {
            float t = -logf(s), tn = -logf(down), h = tn - t, u = t + 0.5f * h;
            float su = expf(-u), c1 = su / expf(-t), e1 = expm1f(-h * 0.5f);
            float c2 = expf(-tn) / expf(-t), e2 = expm1f(-h);
            for (size_t j = 0; j < n; j++) x2[j] = c1 * r->x[j] - e1 * den[j];
            if ((st = r->denoise(r, x2, su, den2))) break;
            for (size_t j = 0; j < n; j++) r->x[j] = c2 * r->x[j] - e2 * den2[j];
        }
        if (sn > 0.0f) {
            if ((st = r->randn(r, noise))) break;
            for (size_t j = 0; j < n; j++) r->x[j] = r->x[j] + noise[j] * up;
        }
        st = r->step_done(r, i + 1, r->x, den);
    }
    free(den);
    return st;
}

const ldm_sampler_def ldm_sampler_dpmpp_2s_ancestral = {"dpmpp_2s_ancestral", LDM_SAMPLER_SIGMA, dpmpp_2s_a_run};
