/* DPM-Solver++(2M) (k-diffusion sample_dpmpp_2m): in t = -log(sigma),
 *   x = (sigma'/sigma) x - expm1(-h) D_eff, with h = t' - t and, from the second step on (and not
 *   on the step to sigma 0), D_eff = (1 + 1/(2r)) D - 1/(2r) D_old, r = h_last / h. */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static ldm_status dpmpp_2m_run(ldm_sample_run *r) {
    size_t n = (size_t)r->n;
    float *den = malloc(n * 2 * sizeof *den);
    if (!den) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    float *old = den + n;
    ldm_status st = LDM_OK;
    for (int i = 0; i < r->steps && !st; i++) {
        float s = r->sigmas[i], sn = r->sigmas[i + 1];
        if ((st = r->denoise(r, r->x, s, den))) break;
        float t = -logf(s), tn = -logf(sn), h = tn - t;
        float ratio = expf(-tn) / expf(-t), em1 = expm1f(-h);
        if (i == 0 || sn == 0.0f) {
            for (size_t j = 0; j < n; j++) r->x[j] = ratio * r->x[j] - em1 * den[j];
        } else {
            float h_last = t - (-logf(r->sigmas[i - 1])), rr = h_last / h;
            float a = 1.0f + 1.0f / (2.0f * rr), b = 1.0f / (2.0f * rr);
            for (size_t j = 0; j < n; j++) {
                float dd = a * den[j] - b * old[j];
                r->x[j] = ratio * r->x[j] - em1 * dd;
            }
        }
        memcpy(old, den, n * sizeof *den);
        st = r->step_done(r, i + 1, r->x, den);
    }
    free(den);
    return st;
}

const ldm_sampler_def ldm_sampler_dpmpp_2m = {"dpmpp_2m", LDM_SAMPLER_SIGMA, dpmpp_2m_run};
