/* The one table of samplers: canonical name (the sampler's def) and the peers' spellings.
 * Sources of the aliases: k-diffusion / ComfyUI function names (sample_<name>, KSampler names),
 * AUTOMATIC1111 labels and their k_ aliases (modules/sd_samplers_kdiffusion.py), stable-diffusion.cpp
 * --sampling-method values (euler_a, dpm++2m, dpm++2s_a, ...). Lookup is case-insensitive.
 * docs/samplers.md lists the same table. */
#include "sampler.h"

#include <string.h>
#include <strings.h>

#define MAX_ALIASES 8

typedef struct {
    const ldm_sampler_def *def;
    const char *aliases[MAX_ALIASES + 1]; /* NULL-terminated */
} sampler_entry;

static const sampler_entry sampler_table[] = {
    {&ldm_sampler_euler, {"k_euler", "Euler"}},
    {&ldm_sampler_euler_ancestral, {"euler_a", "k_euler_a", "k_euler_ancestral", "Euler a"}},
    {&ldm_sampler_heun, {"k_heun", "Heun"}},
    {&ldm_sampler_dpm2, {"dpm_2", "k_dpm_2", "DPM2"}},
    {&ldm_sampler_dpm2_ancestral, {"dpm2_a", "dpm_2_ancestral", "k_dpm_2_a", "k_dpm_2_ancestral", "DPM2 a"}},
    {&ldm_sampler_dpmpp_2m, {"dpm++2m", "dpm++_2m", "k_dpmpp_2m", "DPM++ 2M"}},
    {&ldm_sampler_dpmpp_2s_ancestral, {"dpm++2s_a", "dpm++_2s_a", "dpmpp_2s_a", "k_dpmpp_2s_a", "DPM++ 2S a"}},
    {&ldm_sampler_dpmpp_2m_sde, {"dpm++2m_sde", "dpm++_2m_sde", "k_dpmpp_2m_sde", "DPM++ 2M SDE"}},
    {&ldm_sampler_lms, {"k_lms", "LMS"}},
    {&ldm_sampler_lcm, {"k_lcm", "LCM"}},
    {&ldm_sampler_ddim, {"DDIM"}},
    {&ldm_sampler_plms, {"PLMS"}},
};

#define N_SAMPLERS (sizeof sampler_table / sizeof sampler_table[0])

/* Canonical names in table order (ldm_sampler_list); tests check it against the table. */
static const char *const sampler_names[N_SAMPLERS + 1] = {
    "euler", "euler_ancestral", "heun", "dpm2", "dpm2_ancestral", "dpmpp_2m", "dpmpp_2s_ancestral",
    "dpmpp_2m_sde", "lms", "lcm", "ddim", "plms", NULL,
};

const ldm_sampler_def *sampler_find(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < N_SAMPLERS; i++) {
        const sampler_entry *e = &sampler_table[i];
        if (strcasecmp(e->def->name, name) == 0) return e->def;
        for (const char *const *a = e->aliases; *a; a++)
            if (strcasecmp(*a, name) == 0) return e->def;
    }
    return NULL;
}

LDM_API const char *const *ldm_sampler_list(void) { return sampler_names; }
