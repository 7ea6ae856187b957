/* The txt2img pipeline: text -> conditioning, noise, sampling with classifier-free guidance, VAE
 * decode. Used by the public ldm_txt2img() and, with injected noise and a trace of every
 * intermediate tensor, by the conformance runner. */
#ifndef LDM_CORE_PIPELINE_H
#define LDM_CORE_PIPELINE_H

#include "context.h"
#include "model.h"
#include "rng.h"
#include "sampler.h"

/* Receives named intermediate tensors in the order they are produced (per-step tensors once
 * per step). */
typedef void (*ldm_trace_fn)(void *user, const char *name, const float *data, size_t count);

typedef struct ldm_gen {
    const char *prompt, *negative_prompt;
    int32_t width, height; /* pixels */
    int32_t steps;
    float cfg_scale;
    const ldm_sampler_def *sampler;
    ldm_scheduler_kind scheduler;
    float eta;
    int32_t clip_skip;
    ldm_rng *rng;         /* the generation's noise stream (when noise is not injected) */
    const float *x_T;     /* injected draw 0, or NULL */
    const float *noises;  /* injected draws 1.. (one latent each), or NULL */
    int32_t n_noises;
    ldm_progress_fn progress;
    void *user_data;
    ldm_trace_fn trace;
    void *trace_user;
    float *latent_final; /* out, optional: [1, c, h/f, w/f] */
    float *image;        /* out, optional: [1, 3, h, w], decoder output before clamping */
} ldm_gen;

ldm_status pipeline_txt2img(ldm_context *ctx, ldm_model *m, ldm_gen *g);

/* Tokenise and encode one prompt into [77, width] (and report the ids). */
ldm_status pipeline_encode_prompt(ldm_exec *ex, ldm_model *m, const char *text, int32_t clip_skip, float *out,
                                  int32_t ids[77]);

#endif
