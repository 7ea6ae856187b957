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
    LDM_FAMILY_SD2, /* OpenCLIP ViT-H text encoder (open_clip names), linear proj_in/out, eps or v */
    LDM_FAMILY_LDM_SR,       /* LDM-paper 4x super-resolution (bsr_sr): VQ-f4, low-res image concatenated, no text */
    LDM_FAMILY_X4_UPSCALER,  /* SD x4 upscaler: KL-f4, noise-augmented low-res concat + label_emb, OpenCLIP, v */
    LDM_FAMILY_LDM_TXT2IMG,  /* LDM-KL-8-G text-to-image: BERTEmbedder (BERT WordPiece + x-transformers) */
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
    /* openaimodel AttentionBlock (qkv conv1d, QKVAttentionLegacy head layout, no context) instead of
     * SpatialTransformer: the LDM-paper UNets without cross-attention (LDM-SR) */
    bool legacy_attn;
    int32_t num_classes; /* > 0: label_emb = Embedding(num_classes, time_embed_dim) (x4 upscaler) */
    /* disable_self_attentions per level and disable_middle_self_attn: attn1 attends to the context
     * (x4 upscaler levels 0-2); from the attn1.to_k shapes, or the config where they cannot tell */
    bool attn1_on_context[LDM_MAX_LEVELS];
    bool attn1_on_context_mid;
} unet_config;

/* The first stage: AutoencoderKL (quant_conv gives the 2*embed_dim moments of a diagonal
 * Gaussian) or VQModelInterface (quant_conv gives embed_dim channels, decoded through the
 * nearest-codebook quantiser of quantize.embedding.weight [n_embed, embed_dim]). The encoder and
 * decoder networks are the same (ldm/modules/diffusionmodules/model.py). */
typedef enum { FIRST_STAGE_KL = 0, FIRST_STAGE_VQ = 1 } first_stage_kind;

typedef struct vae_config {
    int32_t ch, n_levels, num_res_blocks, z_channels, embed_dim, in_channels, out_ch;
    int32_t ch_mult[LDM_MAX_LEVELS];
    first_stage_kind kind;
    int32_t n_embed; /* VQ codebook size */
} vae_config;

typedef enum { CLIP_ACT_QUICK_GELU = 0, CLIP_ACT_GELU = 1 } clip_act;

/* How the text transformer is stored: HF CLIPTextModel names (SD 1.x) or open_clip names with
 * fused in_proj q/k/v (SD 2.x, cond_stage_model.model.). */
typedef enum { CLIP_KIND_HF = 0, CLIP_KIND_OPENCLIP = 1 } clip_kind;

typedef struct clip_config {
    int32_t vocab, n_pos, width, layers, heads, ff_dim;
    clip_act act;
    int32_t pad_id;
    clip_kind kind;
    int32_t default_skip; /* what clip_skip 0 means: 1 = last layer (SD 1.x), 2 = penultimate (SD 2.x) */
} clip_config;

/* The conditioning stage: a CLIP text transformer (HF or open_clip names, clip_config), the
 * BERTEmbedder of LDM-KL-8-G (bert_config), or none (LDM-SR concatenates the low-res image). For
 * every text kind clip.n_pos x clip.width is the context shape the UNet cross-attends to. */
typedef enum { COND_CLIP = 0, COND_BERT = 1, COND_NONE = 2 } cond_kind;

/* x-transformers Encoder of BERTEmbedder: vocab 30522, 77 positions, width n_embed, n_layer layers,
 * heads x dim_head attention (defaults 8 x 64, independent of the width), FF width 4 * n_embed. */
typedef struct bert_config {
    int32_t vocab, n_pos, width, layers, heads, dim_head, ff_dim;
} bert_config;

/* A tensor made at load time from checkpoint ones (e.g. a legacy qkv weight with its rows
 * regrouped), found by model_weight() under its own name like a file weight. */
typedef struct model_derived {
    char *name;
    ldm_tensor t; /* data owned by the model */
} model_derived;

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
    int32_t prediction; /* LDM_PREDICTION_EPS / _V (AUTO only until ldm_model_load resolves it) */
    const char *prediction_source; /* "parameter", "config", "probe" or "family default" */
    double probe_value;            /* the probe's mean(out - x) when prediction_source is "probe" */
    bool config_prediction;        /* the config file named the parameterization */
    int32_t latent_channels, downscale;
    int32_t concat_channels; /* extra UNet input channels (inpainting: 1 mask + latent), 0 otherwise */
    float alphas_cumprod[1000]; /* float32 buffer as upstream registers it */
    /* float32(sqrt(ac)) and float32(sqrt(1 - ac)) of the float64 product, as ddpm.py registers
     * sqrt_alphas_cumprod / sqrt_one_minus_alphas_cumprod (the v-prediction DDIM path uses them) */
    float sqrt_alphas_cumprod[1000], sqrt_one_minus_alphas_cumprod[1000];
    /* OpenCLIP: per layer, views of in_proj_weight / in_proj_bias split into q, k, v rows
     * (w_q, w_k, w_v, b_q, b_k, b_v), pointing into the mapped file */
    ldm_tensor *qkv_views;
    /* ldm_model_get_info: per component (UNet, VAE, text encoder, the rest) parameter count,
     * bytes and dtypes, counted at load time */
    struct model_component {
        int64_t params, bytes;
        char dtype[40];
    } comp[4];
    struct ldm_clip_tokenizer *tokenizer;
    cond_kind cond;
    bert_config bert;
    struct ldm_bert_tokenizer *bert_tokenizer; /* COND_BERT */
    /* x4 upscaler: ImageConcatWithNoiseAugmentation's own schedule (float32 of the float64
     * sqrt(ac), sqrt(1 - ac), as upscaling.py registers them) and max_noise_level */
    float lr_sqrt_alphas_cumprod[1000], lr_sqrt_one_minus_alphas_cumprod[1000];
    ldm_schedule_config lr_sched;
    int32_t max_noise_level;
    model_derived *derived;
    size_t n_derived;
};

/* The side (pixels) txt2img uses when the caller gives none: the checkpoint's own
 * "ldm.image_size" metadata when it is a valid size (the demo model says 64), else the size the
 * family was trained at: 768 for 4-channel SD 2.x v-models (Stability v2-inference-v.yaml,
 * 768-v-ema), 256 for LDM-KL-8-G (txt2img-1p4B-eval.yaml: 32 latent x f8), 512 for the rest of
 * the text-to-image families; 0 for the super-resolution models, which take an image instead. */
int32_t model_image_size(const ldm_model *m);

/* Weight by exact checkpoint key, or NULL. */
const ldm_tensor *model_weight(const ldm_model *m, const char *name);
/* printf-style lookup; on a missing key records LDM_ERR_FORMAT (naming it) in *status. */
const ldm_tensor *model_weightf(const ldm_model *m, ldm_status *status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
bool model_has(const ldm_model *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Registers a derived tensor (takes ownership of data, malloc'd). */
ldm_status model_add_derived(ldm_model *m, const char *name, ldm_dtype dtype, int32_t ndim, const int64_t *shape,
                             void *data);

/* The LDM-paper families and the x4 upscaler (model_ldm.c), called by the loader in this order:
 * recognise (from the key names), derive (after the UNet and VAE shapes: conditioning stage, VQ
 * codebook, label_emb, concat channels), defaults (family hyper-parameters, before the config
 * file), configure (config keys model.c does not read, derived tensors, tokenizers). */
ldm_family model_ldm_recognise(const ldm_model *m, const char **name);
ldm_status model_ldm_derive(ldm_model *m);
void model_ldm_defaults(ldm_model *m);
ldm_status model_ldm_configure(ldm_model *m, const char *config_path);
void model_ldm_free(ldm_model *m);

struct ldm_exec;
/* Resolves prediction AUTO by running the UNet once (see model.c); sets prediction and
 * prediction_source. */
ldm_status model_probe_prediction(struct ldm_exec *ex, ldm_model *m);

#endif
