/* DDIM (CompVis ldm/models/diffusion/ddim.py p_sample_ddim):
 *   pred_x0 = (x - sqrt(1 - a_t) e) / sqrt(a_t)
 *   x_prev  = sqrt(a_prev) pred_x0 + sqrt(1 - a_prev - sigma_t^2) e + sigma_t noise
 * with sigma_t = eta sqrt((1 - a_prev) / (1 - a_t) (1 - a_t / a_prev)) (make_ddim_sampling_parameters)
 * and a_prev of the first DDIM timestep = alphas_cumprod[0]. One noise draw per step when eta > 0. */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>

float sampler_alpha_at(const ldm_sample_run *r, int32_t t) {
    if (t > LDM_TRAIN_STEPS - 1) t = LDM_TRAIN_STEPS - 1; /* steps = 1000 makes t = 1000 upstream */
    return r->sched->alphas_cumprod[t];
}

void sampler_ddim_update(int32_t n, const float *x, const float *e, float a_t, float a_prev, float sigma_t,
                         const float *noise, float *x_prev, float *x0) {
    float sqrt_one_minus_at = sqrtf(1.0f - a_t), sqrt_at = sqrtf(a_t), sqrt_aprev = sqrtf(a_prev);
    float dir = sqrtf(1.0f - a_prev - sigma_t * sigma_t);
    for (int j = 0; j < n; j++) {
        float p = (x[j] - sqrt_one_minus_at * e[j]) / sqrt_at;
        float xp = sqrt_aprev * p + dir * e[j];
        if (noise) xp += sigma_t * noise[j];
        x0[j] = p;
        x_prev[j] = xp;
    }
}

static ldm_status ddim_run(ldm_sample_run *r) {
    float *e = malloc((size_t)r->n * 3 * sizeof *e);
    if (!e) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    float *noise = e + r->n, *x0 = e + 2 * r->n;
    ldm_status st = LDM_OK;
    for (int i = 0; i < r->steps && !st; i++) {
        int index = r->steps - 1 - i;
        int32_t t = r->timesteps[index];
        float a_t = sampler_alpha_at(r, t);
        float a_prev = index > 0 ? sampler_alpha_at(r, r->timesteps[index - 1]) : r->sched->alphas_cumprod[0];
        double sig = r->eta * sqrt((1.0 - (double)a_prev) / (1.0 - (double)a_t) * (1.0 - (double)a_t / (double)a_prev));
        float sigma_t = (float)sig;
        st = r->eps(r, r->x, t, e);
        if (st) break;
        if (sigma_t > 0.0f && (st = r->randn(r, noise))) break;
        sampler_ddim_update(r->n, r->x, e, a_t, a_prev, sigma_t, sigma_t > 0.0f ? noise : NULL, r->x, x0);
        st = r->step_done(r, i + 1, r->x, x0);
    }
    free(e);
    return st;
}

const ldm_sampler_def ldm_sampler_ddim = {"ddim", LDM_SAMPLER_DDPM_T, ddim_run};
