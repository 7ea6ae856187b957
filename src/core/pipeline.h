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
    /* img2img (pipeline_img2img); x_T then holds the injected draw 0, the noise */
    const float *init_image;      /* [1, 3, height, width] in [-1, 1] */
    double strength;              /* t_enc = int(strength * steps) */
    const float *posterior_noise; /* optional: encode to mean + std * noise, not the mean */
    /* control */
    ldm_progress_ex_fn progress_ex;
    ldm_preview_fn preview;
    int32_t preview_interval;       /* <= 0 means 1 */
    int32_t batch_index, batch_count; /* for ldm_progress_info */
    double t_start;                 /* pipeline_now() when the public call began; 0 = now */
    /* inpainting (pipeline_inpaint, pipeline_inpaint.c); init_image is the image to paint into */
    const float *mask;      /* [1, 1, height, width] in [0, 1], 1 = repaint (runwayml / A1111 convention) */
    float mask_blur;        /* Gaussian sigma in pixels (A1111 "mask blur"), 0 = none */
    int32_t fill;           /* ldm_inpaint_fill: what the masked region starts from */
    bool composite;         /* paste the original pixels back outside the blurred mask (A1111 overlay) */
    /* filled in by pipeline_inpaint for the sampling core */
    const float *init_latent; /* img2img start from this latent instead of encoding init_image */
    const float *c_concat;    /* [1, concat_channels, h, w] appended to every UNet input row */
    const float *blend_mask;  /* [h * w], 1 = repaint: elsewhere x is reset after every step to */
    const float *blend_init;  /*   [1, c, h, w] noised to the current level (ordinary models) */
    /* memory (core/memory.h, vae_tiling.h): decode in tiles of this many latent pixels, 0 = whole */
    int32_t vae_tile;
} ldm_gen;

ldm_status pipeline_txt2img(ldm_context *ctx, ldm_model *m, ldm_gen *g);
/* img2img per SEEDED_CONTRACT item 4 / CompVis scripts/img2img.py (see ldm_img2img in ldm.h).
 * Traces posterior_mean, posterior_std, init_latent, t_enc and z_enc (DDPM-space samplers). */
ldm_status pipeline_img2img(ldm_context *ctx, ldm_model *m, ldm_gen *g);

/* Inpainting (README 5.6, runwayml scripts/inpaint_st.py for 9-channel models; CompVis/A1111
 * latent blending for ordinary ones); see ldm_inpaint in ldm.h. Needs init_image and mask.
 * Traces mask, masked_image, mask_latent, masked_image_latent and c_concat (9-channel models). */
ldm_status pipeline_inpaint(ldm_context *ctx, ldm_model *m, ldm_gen *g);
/* c_concat for an inpainting model used without a mask (txt2img / img2img): everything masked,
 * masked image 0, as A1111's txt2img_image_conditioning. out: [concat_channels, H/f, W/f]. */
ldm_status pipeline_full_mask_concat(ldm_exec *ex, const ldm_model *m, int32_t H, int32_t W, float *out);

/* Monotonic seconds, the clock of ldm_progress_info.elapsed. */
double pipeline_now(void);

/* The SD 1.x linear latent -> RGB preview (see ldm_preview_fn): x0 [4, h, w] in diffusion
 * space -> rgb, rows of w * 3 bytes. */
extern const float pipeline_preview_factors[4][3];
extern const float pipeline_preview_bias[3];
void pipeline_preview_rgb(const float *x0, int32_t h, int32_t w, uint8_t *rgb);

/* Tokenise and encode one prompt into [77, width] (and report the ids). */
ldm_status pipeline_encode_prompt(ldm_exec *ex, ldm_model *m, const char *text, int32_t clip_skip, float *out,
                                  int32_t ids[77]);

#endif
