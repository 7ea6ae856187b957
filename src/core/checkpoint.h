/* Opens a checkpoint in any supported container and returns the same st_file index the
 * safetensors reader gives, so the model code is format-blind:
 *   - .safetensors (st_open);
 *   - PyTorch zip checkpoints (.ckpt/.pt/.pth/.bin written by torch.save >= 1.6): the pickle is
 *     evaluated by the restricted reader of pickle.h; the tensors of its top-level dict, or of
 *     its nested "state_dict" (CompVis/Lightning), point into the mapped entries when they are
 *     contiguous and are copied when they are strided views;
 *   - a diffusers folder (unet/, vae/, text_encoder/ with diffusion_pytorch_model / model
 *     .safetensors or .bin, .fp16 variants too), renamed to the original single-file keys.
 * The format is chosen by content (directory, "PK\3\4", legacy pickle magic), not by extension.
 * Metadata added to the index: "ldm.container" = "torch-zip" or "diffusers" (safetensors files keep
 * their own __metadata__); "ldm.torch.state_dict" = "nested" when the weights sat under
 * "state_dict"; for a diffusers folder, the hyper-parameters its configs state (st_meta gives the
 * first one found): "diffusers.unet.num_heads" or (SD 2.x, a per-block list)
 * "diffusers.unet.num_head_channels", "diffusers.text.num_heads",
 * "diffusers.vae.scaling_factor", "diffusers.prediction_type" ("epsilon"/"v_prediction"),
 * "diffusers.beta_schedule", "diffusers.beta_start", "diffusers.beta_end",
 * "diffusers.num_train_timesteps"; "diffusers.text.identity_last_layer" = "1" when an SD 2.x
 * tower (stored without its last layer) was completed with an identity layer. */
#ifndef LDM_CORE_CHECKPOINT_H
#define LDM_CORE_CHECKPOINT_H

#include "safetensors.h"

ldm_status ckpt_open(const char *path, st_file **out);
/* A torch zip checkpoint held in memory that the caller keeps alive (fuzzing, tests). */
ldm_status ckpt_open_torch_memory(const void *data, size_t size, st_file **out);
/* diffusers -> single-file key mapping (CompVis names, as diffusers'
 * scripts/convert_diffusers_to_original_stable_diffusion.py inverts them), exposed for tests and
 * fuzzing. The layout is gathered from every name of the component first (ckpt_layout_scan),
 * because block numbers in the single-file layout depend on the resnets per block and on which
 * up blocks have attention. */
typedef struct ckpt_layout {
    int32_t layers_per_block; /* UNet resnets per down block (up blocks have one more) */
    int32_t n_up;             /* UNet up blocks */
    uint32_t up_has_attn;     /* bit i: up_blocks.i has attentions */
    int32_t n_vae_up;         /* VAE decoder up blocks */
    int32_t n_text_layers;    /* text encoder layers */
} ckpt_layout;
/* CKPT_TEXT: SD 1.x CLIP ViT-L kept under HF names; CKPT_TEXT_OPENCLIP: SD 2.x, an OpenCLIP tower
 * stored as an HF CLIPTextModel (exact GELU) that goes back to open_clip names. */
typedef enum { CKPT_UNET = 0, CKPT_VAE = 1, CKPT_TEXT = 2, CKPT_TEXT_OPENCLIP = 3 } ckpt_component;
typedef struct ckpt_name_info {
    bool conv1x1; /* a 2-D weight viewed as [C, C, 1, 1] (VAE attention: Linear in diffusers) */
    int qkv;      /* -1, or 0/1/2: the q/k/v rows of the fused open_clip in_proj named in `out` */
    bool drop;    /* no single-file counterpart (HF position_ids of an OpenCLIP tower) */
} ckpt_name_info;
void ckpt_layout_scan(ckpt_layout *l, ckpt_component c, const char *name);
/* Writes the single-file name of `name` into out (cap bytes) and how its data maps. */
ldm_status ckpt_diffusers_name(ckpt_component c, const ckpt_layout *l, const char *name, char *out, size_t cap,
                               ckpt_name_info *info);

#endif
