/* DPM-Solver++(2M) SDE (k-diffusion sample_dpmpp_2m_sde, solver_type "midpoint", eta = 1,
 * s_noise = 1). In t = -log(sigma), h = t' - t:
 *   x = (s'/s) e^{-h} x + (1 - e^{-2h}) D
 *       [+ 0.5 (1 - e^{-2h}) (h / h_last) (D - D_old)   from the second step on]
 *       + s' sqrt(1 - e^{-2h}) noise,
 * and x = D on the step to sigma 0. Noise: not k-diffusion's Brownian tree (BrownianTreeNoiseSampler)
 * but the generation's own stream, one latent-shaped r->randn per step whose next sigma is > 0, in
 * step order (N steps take N - 1 draws), as the other ancestral samplers. */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static ldm_status dpmpp_2m_sde_run(ldm_sample_run *r) {
    size_t n = (size_t)r->n;
    float *den = malloc(n * 3 * sizeof *den);
    if (!den) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    float *old = den + n, *noise = den + 2 * n;
    float h_last = 0.0f;
    ldm_status st = LDM_OK;
    for (int i = 0; i < r->steps && !st; i++) {
        float s = r->sigmas[i], sn = r->sigmas[i + 1];
        if ((st = r->denoise(r, r->x, s, den))) break;
        if (sn == 0.0f) {
            memcpy(r->x, den, n * sizeof *den);
        } else {
            float t = -logf(s), tn = -logf(sn), h = tn - t, eta_h = h;
            float a = sn / s * expf(-eta_h), b = -expm1f(-h - eta_h);
            float c = i > 0 ? 0.5f * b * (1.0f / (h_last / h)) : 0.0f;
            float g = sqrtf(-expm1f(-2.0f * eta_h));
            if ((st = r->randn(r, noise))) break;
            for (size_t j = 0; j < n; j++) {
                float xn = a * r->x[j] + b * den[j];
                if (i > 0) xn = xn + c * (den[j] - old[j]);
                r->x[j] = xn + noise[j] * sn * g;
            }
            h_last = h;
        }
        memcpy(old, den, n * sizeof *den);
        st = r->step_done(r, i + 1, r->x, den);
    }
    free(den);
    return st;
}

const ldm_sampler_def ldm_sampler_dpmpp_2m_sde = {"dpmpp_2m_sde", LDM_SAMPLER_SIGMA, dpmpp_2m_sde_run};
