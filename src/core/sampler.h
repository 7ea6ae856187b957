/* The sampler interface. A sampler is one file that defines an ldm_sampler_def and walks the
 * schedule it is given, calling back into the pipeline for model evaluations, noise and
 * progress. The pipeline owns guidance, prediction type (eps / v) and the recording of
 * intermediate tensors; a sampler only does its update formulas. */
#ifndef LDM_CORE_SAMPLER_H
#define LDM_CORE_SAMPLER_H

#include "common.h"
#include "schedule.h"

#include <math.h>

typedef enum {
    LDM_SAMPLER_SIGMA = 0,   /* k-diffusion family: walks `sigmas`, model gives denoised x0 */
    LDM_SAMPLER_DDPM_T = 1,  /* CompVis family (DDIM, PLMS): walks integer timesteps, model gives eps */
} ldm_sampler_space;

typedef struct ldm_sample_run ldm_sample_run;

struct ldm_sample_run {
    int32_t n;          /* elements of one latent */
    float *x;           /* the latent, updated in place: starts as the sampler's x_init */
    int32_t steps;      /* number of entries to walk: sigmas has steps + 1, timesteps has steps */
    const float *sigmas;          /* SIGMA samplers */
    const int32_t *timesteps;     /* DDPM_T samplers, ascending; walked from the end */
    const ldm_discrete_schedule *sched;
    float eta;

    /* CFG'd denoised estimate D(x; sigma) (SIGMA samplers). */
    ldm_status (*denoise)(ldm_sample_run *r, const float *x, float sigma, float *denoised);
    /* CFG'd noise prediction at integer timestep t (DDPM_T samplers); eps even for v models. */
    ldm_status (*eps)(ldm_sample_run *r, const float *x, int32_t t, float *eps);
    /* One latent-shaped N(0, 1) draw from the generation's stream. */
    ldm_status (*randn)(ldm_sample_run *r, float *out);
    /* Reports a finished step (1-based); nonzero status (cancel) stops the sampler. Pass r->x
     * as x and read it back afterwards: inpainting rewrites the known region of r->x here. */
    ldm_status (*step_done)(ldm_sample_run *r, int32_t step, const float *x, const float *x0_estimate);
    /* Optional: per-step multistep coefficients (LMS), for the conformance trace. */
    void (*trace_coeffs)(ldm_sample_run *r, const float *c, int32_t count);
    void *user;
};

typedef struct ldm_sampler_def {
    const char *name; /* canonical name; the aliases are in sampler_registry.c's table */
    ldm_sampler_space space;
    ldm_status (*run)(ldm_sample_run *r);
} ldm_sampler_def;

/* By canonical name or alias, case-insensitive; NULL when unknown. */
const ldm_sampler_def *sampler_find(const char *name);

/* k-diffusion to_d: the ODE derivative (x - D) / sigma. */
static inline float sampler_to_d(float x, float denoised, float sigma) { return (x - denoised) / sigma; }

/* k-diffusion get_ancestral_step(s, s', eta = 1) in float32:
 *   up = min(s', sqrt(s'^2 (s^2 - s'^2) / s^2)), down = sqrt(s'^2 - up^2). */
static inline void sampler_ancestral_step(float s, float sn, float *down, float *up) {
    float u = sqrtf(sn * sn * (s * s - sn * sn) / (s * s));
    if (u > sn) u = sn;
    *up = u;
    *down = sqrtf(sn * sn - u * u);
}

/* One CompVis DDIM update for a whole latent (ddim.py p_sample_ddim, plms.py get_x_prev_and_pred_x0):
 * x0 = (x - sqrt(1 - a_t) e) / sqrt(a_t); x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - s^2) e (+ s noise). */
void sampler_ddim_update(int32_t n, const float *x, const float *e, float a_t, float a_prev, float sigma_t,
                         const float *noise, float *x_prev, float *x0);
float sampler_alpha_at(const ldm_sample_run *r, int32_t t);

/* The samplers, one file each. */
extern const ldm_sampler_def ldm_sampler_euler;
extern const ldm_sampler_def ldm_sampler_ddim;
extern const ldm_sampler_def ldm_sampler_euler_ancestral;
extern const ldm_sampler_def ldm_sampler_heun;
extern const ldm_sampler_def ldm_sampler_dpmpp_2m;
extern const ldm_sampler_def ldm_sampler_lms;
extern const ldm_sampler_def ldm_sampler_plms;
extern const ldm_sampler_def ldm_sampler_dpm2;
extern const ldm_sampler_def ldm_sampler_dpm2_ancestral;
extern const ldm_sampler_def ldm_sampler_dpmpp_2s_ancestral;
extern const ldm_sampler_def ldm_sampler_dpmpp_2m_sde;
extern const ldm_sampler_def ldm_sampler_lcm;

#endif
