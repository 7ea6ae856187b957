/* Heun (k-diffusion sample_heun, s_churn = 0): Euler predictor, then the average of the two slopes;
 * the last step (to sigma 0) is plain Euler. Two model calls per step otherwise. */
#include "sampler.h"

#include <stdlib.h>

static ldm_status heun_run(ldm_sample_run *r) {
    size_t n = (size_t)r->n;
    float *den = malloc(n * 4 * sizeof *den);
    if (!den) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    float *d = den + n, *x2 = den + 2 * n, *den2 = den + 3 * n;
    ldm_status st = LDM_OK;
    for (int i = 0; i < r->steps && !st; i++) {
        float s = r->sigmas[i], sn = r->sigmas[i + 1], dt = sn - s;
        if ((st = r->denoise(r, r->x, s, den))) break;
        for (size_t j = 0; j < n; j++) d[j] = sampler_to_d(r->x[j], den[j], s);
        if (sn == 0.0f) {
            for (size_t j = 0; j < n; j++) r->x[j] = r->x[j] + d[j] * dt;
        } else {
            for (size_t j = 0; j < n; j++) x2[j] = r->x[j] + d[j] * dt;
            if ((st = r->denoise(r, x2, sn, den2))) break;
            for (size_t j = 0; j < n; j++) {
                float d2 = sampler_to_d(x2[j], den2[j], sn);
                r->x[j] = r->x[j] + ((d[j] + d2) / 2.0f) * dt;
            }
        }
        st = r->step_done(r, i + 1, r->x, den);
    }
    free(den);
    return st;
}

const ldm_sampler_def ldm_sampler_heun = {"heun", LDM_SAMPLER_SIGMA, heun_run};
