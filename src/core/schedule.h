/* Noise schedules: the discrete DDPM table of a model, and the sigma / timestep sequences that
 * samplers walk (k-diffusion's CompVisDenoiser and get_sigmas_*, CompVis DDIM timesteps). */
#ifndef LDM_CORE_SCHEDULE_H
#define LDM_CORE_SCHEDULE_H

#include "common.h"

#define LDM_TRAIN_STEPS 1000

typedef struct ldm_discrete_schedule {
    const float *alphas_cumprod;        /* [1000], float32 as upstream */
    float sigmas[LDM_TRAIN_STEPS];      /* sqrt((1 - ac) / ac), float32 */
    float log_sigmas[LDM_TRAIN_STEPS];
} ldm_discrete_schedule;

typedef enum {
    LDM_SCHED_DISCRETE = 0,    /* CompVisDenoiser.get_sigmas (A1111 "Automatic"/"Uniform", ComfyUI "normal") */
    LDM_SCHED_KARRAS = 1,      /* get_sigmas_karras, rho 7 */
    LDM_SCHED_EXPONENTIAL = 2, /* get_sigmas_exponential */
    LDM_SCHED_SIMPLE = 3,      /* ComfyUI simple_scheduler */
    LDM_SCHED_SGM_UNIFORM = 4, /* ComfyUI normal_scheduler(sgm=True) */
} ldm_scheduler_kind;

#define LDM_SCHED_COUNT 5

/* The kind for a scheduler name or alias (case-insensitive: "discrete", "normal", "karras",
 * "exponential", "simple", "sgm_uniform", ...); false when unknown. */
bool schedule_find(const char *name, ldm_scheduler_kind *kind);
/* The canonical name of a kind ("discrete", "karras", ...), NULL when out of range. */
const char *schedule_name(ldm_scheduler_kind kind);

void schedule_init(ldm_discrete_schedule *s, const float *alphas_cumprod);
/* k-diffusion CompVisDenoiser.sigma_to_t (quantize=False): fractional timestep. */
float schedule_sigma_to_t(const ldm_discrete_schedule *s, float sigma);
/* CompVisDenoiser.t_to_sigma: log-linear interpolation of the table. */
float schedule_t_to_sigma(const ldm_discrete_schedule *s, float t);
/* steps + 1 sigmas, the last 0, from the ends (sigma_min, sigma_max) and entries of the model's
 * table. Returns LDM_ERR_INVALID_ARG for an unknown kind. */
ldm_status schedule_sigmas(const ldm_discrete_schedule *s, ldm_scheduler_kind kind, int32_t steps, float *out);
/* CompVis make_ddim_timesteps("uniform"): range(0, 1000, 1000 / steps) + 1. Returns the count
 * (which can exceed steps: steps = 6 gives 7) and fills out (capacity 1000), ascending. */
int32_t schedule_ddim_timesteps(int32_t steps, int32_t *out);

#endif
