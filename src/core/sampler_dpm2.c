/* DPM2 (k-diffusion sample_dpm_2, s_churn = 0): a midpoint step, the midpoint taken half-way in
 * log sigma (sigma_mid = exp(lerp(log s, log s', 1/2))):
 *   x2 = x + d (sigma_mid - s),  x = x + d(x2; sigma_mid) (s' - s),
 * and a plain Euler step on the step to sigma 0. Two model calls per step, one on the last. */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>

/* torch.lerp(a, b, 0.5) takes its "end - diff * (1 - w)" branch. */
static float log_midpoint(float s, float sn) {
    float a = logf(s), b = logf(sn);
    return expf(b - (b - a) * 0.5f);
}

static ldm_status dpm2_run(ldm_sample_run *r) {
    size_t n = (size_t)r->n;
    float *den = malloc(n * 4 * sizeof *den);
    if (!den) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    float *d = den + n, *x2 = den + 2 * n, *den2 = den + 3 * n;
    ldm_status st = LDM_OK;
    for (int i = 0; i < r->steps && !st; i++) {
        float s = r->sigmas[i], sn = r->sigmas[i + 1];
        if ((st = r->denoise(r, r->x, s, den))) break;
        for (size_t j = 0; j < n; j++) d[j] = sampler_to_d(r->x[j], den[j], s);
        if (sn == 0.0f) {
            for (size_t j = 0; j < n; j++) r->x[j] = r->x[j] + d[j] * (sn - s);
        } else {
            float mid = log_midpoint(s, sn), dt1 = mid - s, dt2 = sn - s;
            for (size_t j = 0; j < n; j++) x2[j] = r->x[j] + d[j] * dt1;
            if ((st = r->denoise(r, x2, mid, den2))) break;
            for (size_t j = 0; j < n; j++) r->x[j] = r->x[j] + sampler_to_d(x2[j], den2[j], mid) * dt2;
        }
        st = r->step_done(r, i + 1, r->x, den);
    }
    free(den);
    return st;
}

const ldm_sampler_def ldm_sampler_dpm2 = {"dpm2", LDM_SAMPLER_SIGMA, dpm2_run};
