/* Forward passes of the networks of a checkpoint. Each reads its weights from the model by their
 * checkpoint keys and runs on whatever backend `ex` holds. Host buffers in, host buffers out. */
#ifndef LDM_CORE_NETS_H
#define LDM_CORE_NETS_H

#include "model.h"
#include "ops.h"

/* CLIP text transformer (HF names). ids [n, 77] -> out [n, 77, width]: the final layer norm
 * applied to the output of layer (layers - skip), skip = max(clip_skip, 1) - 1 (A1111's
 * "clip skip": 1 = last layer). hidden (optional) receives [layers + 1, n, 77, width]: the
 * embeddings, then each layer's output, before the final norm (HF hidden_states).
 * Models whose text encoder is OpenCLIP (SD 2.x) are passed on to openclip_text_forward. */
ldm_status clip_text_forward(ldm_exec *ex, const ldm_model *m, const int32_t *ids, int32_t n, int32_t clip_skip,
                             float *out, float *hidden);

/* OpenCLIP text transformer (SD 2.x, open_clip names; text_encoder_openclip.c), same contract
 * as clip_text_forward; clip_skip 0 means the family default (m->clip.default_skip: SD 2.x
 * uses the penultimate layer). hidden receives all layers + 1 entries whatever the skip. */
ldm_status openclip_text_forward(ldm_exec *ex, const ldm_model *m, const int32_t *ids, int32_t n, int32_t clip_skip,
                                 float *out, float *hidden);
/* Builds m->qkv_views (the fused in_proj split into q, k, v row views) at load time. */
ldm_status openclip_prepare(ldm_model *m);

/* UNet: x [n, c, h, w], t [n] (fractional allowed), context [n, tokens, context_dim] ->
 * out [n, out_channels, h, w] (the raw model output, eps or v). */
ldm_status unet_forward(ldm_exec *ex, const ldm_model *m, int32_t n, int32_t h, int32_t w, const float *x,
                        const float *t, int32_t tokens, const float *context, float *out);

/* KL autoencoder. encode: image [n, 3, H, W] -> moments [n, 2*embed_dim, H/f, W/f]
 * (quant_conv(encoder(x))). decode: z [n, embed_dim, h, w] (first-stage space, i.e. already
 * divided by the scale factor) -> image [n, 3, h*f, w*f]. */
ldm_status vae_encode_moments(ldm_exec *ex, const ldm_model *m, int32_t n, int32_t H, int32_t W, const float *image,
                              float *moments);
ldm_status vae_decode(ldm_exec *ex, const ldm_model *m, int32_t n, int32_t h, int32_t w, const float *z,
                      float *image);
/* vae_decode runs the decoder over the whole latent when the backend's memory limits allow
 * (always on the CPU), else in tiles with halos and whole-image GroupNorm statistics, equal to
 * the untiled decode up to rounding (vae_tiling.c); vae_decode_untiled (vae.c) is the plain
 * forward pass. */
ldm_status vae_decode_untiled(ldm_exec *ex, const ldm_model *m, int32_t n, int32_t h, int32_t w, const float *z,
                              float *image);
/* The decoder's part at the latent's resolution (through the blocks of the last level), on the
 * device: [n, channels, h, w]. */
ldm_tensor *vae_decoder_head(ldm_exec *ex, const ldm_model *m, int32_t n, int32_t h, int32_t w, const float *z);

/* unet_forward with class labels (label_emb, the x4 upscaler's noise level: int [n], required
 * when the UNet has label_emb, ignored otherwise). context may be NULL (tokens 0) for a UNet
 * without cross-attention (LDM-SR). */
ldm_status unet_forward_ex(ldm_exec *ex, const ldm_model *m, int32_t n, int32_t h, int32_t w, const float *x,
                           const float *t, const int32_t *labels, int32_t tokens, const float *context, float *out);

/* BERTEmbedder text transformer (LDM-KL-8-G; text_encoder_bert.c): ids [n, 77] -> the context
 * [n, 77, width] (final LayerNorm). hidden (optional) receives [2 * layers + 1, n, 77, width]:
 * the embeddings, then the residual stream after each attention and each feed-forward. */
ldm_status bert_text_forward(ldm_exec *ex, const ldm_model *m, const int32_t *ids, int32_t n, float *out,
                             float *hidden);

/* VQ first stage (vq.c): nearest codebook entry of every latent pixel of z [n, embed_dim, h, w]
 * (first-stage space), VectorQuantizer2 legacy. quant (optional) receives z + (e_k - z) in
 * float32, indices (optional) [n, h, w]. Decode with vae_decode(quant). */
ldm_status vq_quantize(const ldm_model *m, int32_t n, int32_t h, int32_t w, const float *z, float *quant,
                       int32_t *indices);

/* Sinusoidal timestep embedding as openaimodel.timestep_embedding (cos half first, float32). */
void timestep_embedding(const float *t, int32_t n, int32_t dim, float *out);

#endif
