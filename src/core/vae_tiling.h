/* Tiled VAE decoding, for every backend (vae_tiling.c): the part of the decoder at the latent's
 * resolution runs whole, the rest on tiles that each carry a halo as wide as that part's
 * receptive field, with GroupNorm statistics of the whole image. vae_decode (nets.h) uses it by
 * itself when a backend's memory limits require; the calls below choose the tile size. */
#ifndef LDM_CORE_VAE_TILING_H
#define LDM_CORE_VAE_TILING_H

#include "nets.h"

/* vae_decode (z [n, embed_dim, h, w] in first-stage space -> image [n, 3, f h, f w]) with the
 * decoder's upsampling part run on tiles of at most tile x tile latent pixels (core + halo on
 * each side). tile <= 0 or a tile covering the whole latent: one plain vae_decode, bit for bit.
 * Otherwise tile must be at least 2 * vae_tile_halo(m) + 4. */
ldm_status vae_decode_tiled(ldm_exec *ex, const ldm_model *m, int32_t n, int32_t h, int32_t w, const float *z,
                            float *image, int32_t tile);

/* Where the GroupNorm statistics of the tiled part come from. */
typedef enum vae_tile_stats {
    VAE_TILE_STATS_TILES = 0, /* recompute: a first pass over the tiles with tile-local statistics (memory of one tile) */
    VAE_TILE_STATS_WHOLE = 1, /* hold: segment by segment, the activations on the host: exact (host memory of the image) */
} vae_tile_stats;
ldm_status vae_decode_tiled_ex(ldm_exec *ex, const ldm_model *m, int32_t n, int32_t h, int32_t w, const float *z,
                               float *image, int32_t tile, vae_tile_stats stats);

/* The halo (latent pixels) every tile carries on each side. */
int32_t vae_tile_halo(const ldm_model *m);

#endif
