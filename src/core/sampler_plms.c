/* PLMS (CompVis ldm/models/diffusion/plms.py, eta 0): pseudo linear multi-step on eps over the
 * DDIM timesteps. The first step is a 2nd-order improved Euler (an extra model call at the next
 * timestep), then Adams-Bashforth of order 2, 3 and 4 on the stored eps history. */
#include "sampler.h"

#include <stdlib.h>
#include <string.h>

static ldm_status plms_run(ldm_sample_run *r) {
    size_t n = (size_t)r->n;
    float *buf = malloc(n * 8 * sizeof *buf);
    if (!buf) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    float *e = buf, *e2 = buf + n, *xp = buf + 2 * n, *x0 = buf + 3 * n, *old[4] = {buf + 4 * n, buf + 5 * n, buf + 6 * n, buf + 7 * n};
    int n_old = 0;
    ldm_status st = LDM_OK;
    for (int i = 0; i < r->steps && !st; i++) {
        int index = r->steps - 1 - i;
        int32_t t = r->timesteps[index];
        int32_t t_next = r->timesteps[index > 0 ? index - 1 : 0];
        float a_t = sampler_alpha_at(r, t);
        float a_prev = index > 0 ? sampler_alpha_at(r, r->timesteps[index - 1]) : r->sched->alphas_cumprod[0];
        if ((st = r->eps(r, r->x, t, e))) break;
        if (n_old == 0) {
            sampler_ddim_update(r->n, r->x, e, a_t, a_prev, 0.0f, NULL, xp, x0);
            if ((st = r->eps(r, xp, t_next, e2))) break;
            for (size_t j = 0; j < n; j++) e2[j] = (e[j] + e2[j]) / 2.0f;
        } else if (n_old == 1) {
            for (size_t j = 0; j < n; j++) e2[j] = (3.0f * e[j] - old[0][j]) / 2.0f;
        } else if (n_old == 2) {
            for (size_t j = 0; j < n; j++) e2[j] = (23.0f * e[j] - 16.0f * old[1][j] + 5.0f * old[0][j]) / 12.0f;
        } else {
            for (size_t j = 0; j < n; j++)
                e2[j] = (55.0f * e[j] - 59.0f * old[n_old - 1][j] + 37.0f * old[n_old - 2][j] - 9.0f * old[n_old - 3][j]) / 24.0f;
        }
        sampler_ddim_update(r->n, r->x, e2, a_t, a_prev, 0.0f, NULL, r->x, x0);
        /* old_eps keeps the last three raw eps (the list is trimmed at 4 then one is dropped). */
        if (n_old == 3) {
            float *f = old[0];
            old[0] = old[1];
            old[1] = old[2];
            old[2] = f;
            n_old = 2;
        }
        memcpy(old[n_old++], e, n * sizeof *e);
        st = r->step_done(r, i + 1, r->x, x0);
    }
    free(buf);
    return st;
}

const ldm_sampler_def ldm_sampler_plms = {"plms", LDM_SAMPLER_DDPM_T, plms_run};
