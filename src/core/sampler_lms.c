/* LMS (k-diffusion sample_lms, order 4): linear multistep on the derivative history, with the
 * coefficient of the j-th most recent slope = integral over [s_i, s_{i+1}] of its Lagrange basis
 * polynomial (linear_multistep_coeff; upstream uses scipy quad, exact here by Gauss-Legendre since
 * the integrand is a polynomial of degree <= 3). */
#include "sampler.h"

#include <stdlib.h>
#include <string.h>

#define LMS_ORDER 4

static double lms_coeff(int order, const float *t, int i, int j) {
    /* 4-point Gauss-Legendre: exact for degree <= 7. */
    static const double x[4] = {-0.8611363115940526, -0.3399810435848563, 0.3399810435848563, 0.8611363115940526};
    static const double w[4] = {0.3478548451374538, 0.6521451548625461, 0.6521451548625461, 0.3478548451374538};
    double a = t[i], b = t[i + 1], sum = 0.0;
    for (int q = 0; q < 4; q++) {
        double tau = 0.5 * (b - a) * x[q] + 0.5 * (a + b), prod = 1.0;
        for (int k = 0; k < order; k++) {
            if (k == j) continue;
            prod *= (tau - (double)t[i - k]) / ((double)t[i - j] - (double)t[i - k]);
        }
        sum += w[q] * prod;
    }
    return 0.5 * (b - a) * sum;
}

static ldm_status lms_run(ldm_sample_run *r) {
    size_t n = (size_t)r->n;
    float *buf = malloc(n * (1 + LMS_ORDER) * sizeof *buf);
    if (!buf) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    float *den = buf, *ds[LMS_ORDER];
    for (int k = 0; k < LMS_ORDER; k++) ds[k] = buf + (size_t)(k + 1) * n;
    int nd = 0; /* ds[0] oldest .. ds[nd-1] newest */
    ldm_status st = LDM_OK;
    for (int i = 0; i < r->steps && !st; i++) {
        float s = r->sigmas[i];
        if ((st = r->denoise(r, r->x, s, den))) break;
        if (nd == LMS_ORDER) {
            float *f = ds[0];
            memmove(ds, ds + 1, (LMS_ORDER - 1) * sizeof ds[0]);
            ds[LMS_ORDER - 1] = f;
            nd--;
        }
        for (size_t j = 0; j < n; j++) ds[nd][j] = sampler_to_d(r->x[j], den[j], s);
        nd++;
        int order = i + 1 < LMS_ORDER ? i + 1 : LMS_ORDER;
        float c[LMS_ORDER] = {0};
        for (int j = 0; j < order; j++) c[j] = (float)lms_coeff(order, r->sigmas, i, j);
        for (size_t q = 0; q < n; q++) {
            float acc = 0.0f;
            for (int j = 0; j < order; j++) acc += c[j] * ds[nd - 1 - j][q];
            r->x[q] = r->x[q] + acc;
        }
        if (r->trace_coeffs) r->trace_coeffs(r, c, LMS_ORDER);
        st = r->step_done(r, i + 1, r->x, den);
    }
    free(buf);
    return st;
}

const ldm_sampler_def ldm_sampler_lms = {"lms", LDM_SAMPLER_SIGMA, lms_run};
