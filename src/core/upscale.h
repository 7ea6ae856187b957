/* The super-resolution pipelines of the LDM-paper SR model (family ldm-sr) and the SD x4
 * upscaler (x4-upscaler): a low-resolution image conditions the UNet by concatenation to the
 * latent, the latent has the low-res size and the first stage decodes it 4x larger.
 *
 *  ldm-sr (CompVis latent-diffusion notebook_helpers.py): UNet input cat(z_t, lr), no guidance,
 *    eps; decode_first_stage = VQ quantisation then the decoder.
 *  x4 (Stability scripts/gradio/superresolution.py paint()): x_aug = sqrt(ac_lr[l]) lr +
 *    sqrt(1 - ac_lr[l]) noise (ImageConcatWithNoiseAugmentation.q_sample at noise level l), UNet
 *    input cat(z_t, x_aug), label_emb(l), OpenCLIP context; CFG batch [uncond, cond] with the
 *    same x_aug and noise level in both rows (only the text differs); v-prediction.
 *
 * Large inputs run in tiles (README "Super-resolution"): every UNet evaluation is split into
 * overlapping latent tiles whose outputs are blended with linear ramps over the overlap (the
 * idea of latent-diffusion's split_input_params), and the first-stage decoder runs on
 * overlapping latent tiles blended the same way in pixel space, so memory is bounded by the
 * tile size, not the image size. */
#ifndef LDM_CORE_UPSCALE_H
#define LDM_CORE_UPSCALE_H

#include "pipeline.h"

typedef struct ldm_upscale_job {
    const float *lr; /* [1, 3, h, w] low-res image in [-1, 1] */
    int32_t h, w;    /* low-res = latent size; multiples of the UNet's downsampling factor */
    const char *prompt, *negative_prompt; /* x4 only (NULL = "") */
    float cfg_scale;                      /* x4 only; 1 skips the unconditional pass */
    int32_t noise_level;                  /* x4 only: 0..max_noise_level */
    int32_t steps;
    const ldm_sampler_def *sampler;
    ldm_scheduler_kind scheduler;
    float eta;
    ldm_rng *rng; /* draw 0: x_T; x4 draw 1: the augmentation noise; then the sampler's */
    const float *x_T;       /* injected draw 0 [1, c, h, w], or NULL */
    const float *aug_noise; /* injected augmentation noise [1, 3, h, w] (x4), or NULL */
    const float *noises;    /* injected sampler draws (one latent each), or NULL */
    int32_t n_noises;
    int32_t tile, tile_overlap;   /* UNet tiles in latent pixels (0: never tile) */
    int32_t decode_tile;          /* decoder tiles in latent pixels (0: never tile) */
    ldm_progress_fn progress;
    ldm_progress_ex_fn progress_ex;
    void *user_data;
    double t_start;
    ldm_trace_fn trace;
    void *trace_user;
    float *latent_final;    /* out, optional: [1, c, h, w] */
    float *image;           /* out, optional: [1, 3, f h, f w], decoder output before clamping */
    float *image_noquant;   /* out, optional (VQ): decoded without the quantisation step */
    int32_t *final_indices; /* out, optional (VQ): [1, h, w] codebook indices of the latent */
} ldm_upscale_job;

ldm_status pipeline_upscale(ldm_context *ctx, ldm_model *m, ldm_upscale_job *j);

/* The low-res image of a family from 8-bit planar RGB [3, h, w] (count = 3 h w values):
 * ldm-sr (notebook_helpers.py): 2 * ToTensor(u8) - 1 = 2 (u8 / 255) - 1;
 * x4 (superresolution.py make_batch_sd): u8 / 127.5 - 1. */
void upscale_lr_from_u8(const ldm_model *m, const uint8_t *u8, size_t count, float *lr);

/* The x4 noise augmentation alone: x_aug = sqrt_ac_lr[level] * lr + sqrt_1m_ac_lr[level] * noise
 * for n images of `count` values each (float32, as q_sample). */
ldm_status upscale_noise_augment(const ldm_model *m, int32_t n, size_t count, const float *lr, const int32_t *levels,
                                 const float *noise, float *x_aug);

/* Decodes a diffusion-space latent [1, c, h, w] to [1, 3, f h, f w] (divides by the scale
 * factor; VQ: quantises first unless noquant), in overlapping tiles of `tile` latent pixels when
 * the latent is larger (0: whole). indices (VQ, optional) receives [h, w]. */
ldm_status upscale_decode(ldm_exec *ex, const ldm_model *m, int32_t h, int32_t w, const float *latent, int32_t tile,
                          bool noquant, int32_t *indices, float *image);

#endif
