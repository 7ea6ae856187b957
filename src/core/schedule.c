#include "schedule.h"

#include <math.h>
#include <strings.h>

void schedule_init(ldm_discrete_schedule *s, const float *ac) {
    s->alphas_cumprod = ac;
    for (int i = 0; i < LDM_TRAIN_STEPS; i++) {
        /* k-diffusion: ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5 in float32 */
        float a = ac[i];
        s->sigmas[i] = sqrtf((1.0f - a) / a);
        s->log_sigmas[i] = logf(s->sigmas[i]);
    }
}

float schedule_sigma_to_t(const ldm_discrete_schedule *s, float sigma) {
    /* low = last index whose log-sigma is <= log(sigma), clamped to [0, 998]. */
    float ls = logf(sigma);
    int low = 0;
    for (int i = 0; i < LDM_TRAIN_STEPS; i++)
        if (ls - s->log_sigmas[i] >= 0.0f) low = i;
    if (low > LDM_TRAIN_STEPS - 2) low = LDM_TRAIN_STEPS - 2;
    int high = low + 1;
    float lo = s->log_sigmas[low], hi = s->log_sigmas[high];
    float w = (lo - ls) / (lo - hi);
    if (w < 0.0f) w = 0.0f;
    if (w > 1.0f) w = 1.0f;
    return (1.0f - w) * (float)low + w * (float)high;
}

float schedule_t_to_sigma(const ldm_discrete_schedule *s, float t) {
    int low = (int)floorf(t), high = (int)ceilf(t);
    if (low < 0) low = 0;
    if (high > LDM_TRAIN_STEPS - 1) high = LDM_TRAIN_STEPS - 1;
    float w = t - floorf(t);
    float ls = (1.0f - w) * s->log_sigmas[low] + w * s->log_sigmas[high];
    return expf(ls);
}

/* torch.linspace(start, end, n) in float32: the first half counts up from start, the second
 * half down from end (aten RangeFactories). */
static float linspace_at(float start, float end, int n, int i) {
    if (n == 1) return start;
    float step = (end - start) / (float)(n - 1);
    return i < n / 2 ? start + step * (float)i : end - step * (float)(n - 1 - i);
}

ldm_status schedule_sigmas(const ldm_discrete_schedule *s, ldm_scheduler_kind kind, int32_t steps, float *out) {
    if (steps < 1) return ldm_fail(LDM_ERR_INVALID_ARG, "steps must be at least 1");
    if (kind == LDM_SCHED_DISCRETE) {
        /* CompVisDenoiser.get_sigmas: t = linspace(999, 0, steps), sigma = t_to_sigma(t). */
        for (int i = 0; i < steps; i++)
            out[i] = schedule_t_to_sigma(s, linspace_at((float)(LDM_TRAIN_STEPS - 1), 0.0f, steps, i));
    } else if (kind == LDM_SCHED_KARRAS) {
        /* get_sigmas_karras(n, sigma_min, sigma_max, rho=7) with the ends of the model's table. */
        double smin = s->sigmas[0], smax = s->sigmas[LDM_TRAIN_STEPS - 1], rho = 7.0;
        float min_inv = (float)pow(smin, 1.0 / rho), max_inv = (float)pow(smax, 1.0 / rho);
        for (int i = 0; i < steps; i++) {
            float ramp = linspace_at(0.0f, 1.0f, steps, i);
            float b = max_inv + ramp * (min_inv - max_inv);
            out[i] = powf(b, 7.0f);
        }
    } else if (kind == LDM_SCHED_EXPONENTIAL) {
        /* get_sigmas_exponential: linspace(log(sigma_max), log(sigma_min), n).exp(), float32
         * (the logs are taken in double by Python's math.log). */
        float lmax = (float)log((double)s->sigmas[LDM_TRAIN_STEPS - 1]), lmin = (float)log((double)s->sigmas[0]);
        for (int i = 0; i < steps; i++) out[i] = expf(linspace_at(lmax, lmin, steps, i));
    } else if (kind == LDM_SCHED_SIMPLE) {
        /* ComfyUI simple_scheduler: sigmas[-(1 + int(x * len(sigmas) / steps))], x = 0..steps-1. */
        double ss = (double)LDM_TRAIN_STEPS / (double)steps;
        for (int i = 0; i < steps; i++) out[i] = s->sigmas[LDM_TRAIN_STEPS - 1 - (int)((double)i * ss)];
    } else if (kind == LDM_SCHED_SGM_UNIFORM) {
        /* ComfyUI normal_scheduler(sgm=True): t = linspace(999, 0, steps + 1)[:-1], sigma(t) by
         * log-linear interpolation of the table (as t_to_sigma). */
        for (int i = 0; i < steps; i++)
            out[i] = schedule_t_to_sigma(s, linspace_at((float)(LDM_TRAIN_STEPS - 1), 0.0f, steps + 1, i));
    } else {
        return ldm_fail(LDM_ERR_INVALID_ARG, "unknown scheduler %d", (int)kind);
    }
    out[steps] = 0.0f;
    return LDM_OK;
}

int32_t schedule_ddim_timesteps(int32_t steps, int32_t *out) {
    if (steps < 1) steps = 1;
    if (steps > LDM_TRAIN_STEPS) steps = LDM_TRAIN_STEPS;
    int c = LDM_TRAIN_STEPS / steps, n = 0;
    for (int t = 0; t < LDM_TRAIN_STEPS; t += c) out[n++] = t + 1;
    return n;
}

/* Canonical names first, then the peers' spellings (A1111 "Schedule type" labels, ComfyUI
 * scheduler names, stable-diffusion.cpp --schedule values). */
static const struct {
    const char *name;
    ldm_scheduler_kind kind;
} schedule_names[] = {
    {"discrete", LDM_SCHED_DISCRETE},       {"karras", LDM_SCHED_KARRAS},
    {"exponential", LDM_SCHED_EXPONENTIAL}, {"simple", LDM_SCHED_SIMPLE},
    {"sgm_uniform", LDM_SCHED_SGM_UNIFORM}, {"normal", LDM_SCHED_DISCRETE},
    {"uniform", LDM_SCHED_DISCRETE},        {"sgm-uniform", LDM_SCHED_SGM_UNIFORM},
    {"sgm uniform", LDM_SCHED_SGM_UNIFORM},
};

bool schedule_find(const char *name, ldm_scheduler_kind *kind) {
    if (!name) return false;
    for (size_t i = 0; i < sizeof schedule_names / sizeof schedule_names[0]; i++) {
        if (strcasecmp(schedule_names[i].name, name) == 0) {
            *kind = schedule_names[i].kind;
            return true;
        }
    }
    return false;
}

const char *schedule_name(ldm_scheduler_kind kind) {
    return (int)kind >= 0 && (int)kind < LDM_SCHED_COUNT ? schedule_names[kind].name : NULL;
}
