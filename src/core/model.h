/* A loaded checkpoint: the mapped file, the weights as tensors named by their checkpoint keys,
 * and the hyper-parameters of each component, derived from the tensor shapes (and, for what the
 * weights cannot tell, from the family defaults or an explicit config file). */
#ifndef LDM_CORE_MODEL_H
#define LDM_CORE_MODEL_H

#include "common.h"
#include "safetensors.h"
#include "tensor.h"

#define LDM_MAX_LEVELS 8

typedef enum ldm_family {
    LDM_FAMILY_UNKNOWN = 0,
    LDM_FAMILY_SD1, /* CLIP ViT-L text encoder (HF names), KL-f8 VAE, eps */
} ldm_family;

typedef struct unet_config {
    int32_t in_channels, out_channels, model_channels;
    int32_t num_res_blocks, n_levels;
    int32_t channel_mult[LDM_MAX_LEVELS];
    bool attn_at_level[LDM_MAX_LEVELS];
    int32_t num_heads;         /* > 0: fixed head count */
    int32_t num_head_channels; /* > 0: heads = channels / this (SD 2.x) */
    int32_t context_dim;
    int32_t transformer_depth;
    bool linear_proj; /* proj_in/proj_out are Linear (SD 2.x) rather than 1x1 conv */
} unet_config;

typedef struct vae_config {
    int32_t ch, n_levels, num_res_blocks, z_channels, embed_dim, in_channels, out_ch;
    int32_t ch_mult[LDM_MAX_LEVELS];
} vae_config;

typedef enum { CLIP_ACT_QUICK_GELU = 0, CLIP_ACT_GELU = 1 } clip_act;

typedef struct clip_config {
    int32_t vocab, n_pos, width, layers, heads, ff_dim;
    clip_act act;
    int32_t pad_id;
} clip_config;

typedef struct ldm_schedule_config {
    int32_t timesteps;
    double linear_start, linear_end;
} ldm_schedule_config;

struct ldm_model {
    st_file *file;
    ldm_tensor *weights; /* one per file tensor, same order */
    size_t n_weights;
    ldm_family family;
    const char *family_name;
    unet_config unet;
    vae_config vae;
    clip_config clip;
    ldm_schedule_config sched;
    float scale_factor;
    int32_t prediction; /* LDM_PREDICTION_EPS / _V */
    int32_t latent_channels, downscale;
    float alphas_cumprod[1000]; /* float32 buffer as upstream registers it */
    struct ldm_clip_tokenizer *tokenizer;
};

/* Weight by exact checkpoint key, or NULL. */
const ldm_tensor *model_weight(const ldm_model *m, const char *name);
/* printf-style lookup; on a missing key records LDM_ERR_FORMAT (naming it) in *status. */
const ldm_tensor *model_weightf(const ldm_model *m, ldm_status *status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
bool model_has(const ldm_model *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
