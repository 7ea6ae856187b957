/* Memory planning and release: what a generation will hold at its peak (ldm_memory_estimate,
 * the automatic VAE tiling, max_memory), and dropping the resident pages of weights a finished
 * stage no longer needs. */
#ifndef LDM_CORE_MEMORY_H
#define LDM_CORE_MEMORY_H

#include "model.h"

#define MEM_PREFIX_UNET "model.diffusion_model."
#define MEM_PREFIX_COND "cond_stage_model."
#define MEM_PREFIX_VAE_ENCODER "first_stage_model.encoder."

/* Without max_memory, the decoder runs whole while its activations stay under this, else in tiles. */
#define MEM_VAE_AUTO_TILE_BYTES ((uint64_t)1 << 30)
/* The smallest latent tile the automatic choice tries (vae_tiling.c needs 2 halos + 4). */
#define MEM_VAE_MIN_TILE 24

/* Bytes of the weights whose names start with prefix (NULL: all); *mapped (optional) receives
 * the part that lies in file mappings (droppable), the rest stays resident. */
uint64_t mem_weight_bytes(const ldm_model *m, const char *prefix, uint64_t *mapped);
/* Drops the resident pages of the file-mapped weights under prefix (madvise MADV_DONTNEED on
 * their page-aligned interiors). Read-only private mappings: the pages fault back in from the
 * page cache when used again, so this only lowers RSS. Safe while other threads use the model. */
void mem_release_weights(const ldm_model *m, const char *prefix);

/* Peak bytes of live activations plus per-op scratch of one call, measured by running the
 * forward pass on a dry-run backend that allocates nothing (shapes only, no arithmetic). */
ldm_status mem_peak_text(const ldm_model *m, int32_t n_threads, uint64_t *bytes);
ldm_status mem_peak_unet(const ldm_model *m, int32_t n_threads, int32_t batch, int32_t h, int32_t w, uint64_t *bytes);
/* One decode of a latent h x w (batch 1) as a whole. */
ldm_status mem_peak_decode(const ldm_model *m, int32_t n_threads, int32_t h, int32_t w, uint64_t *bytes);
/* The same decode in tiles of `tile` latent pixels (vae_tiling.c): its activations and its host
 * buffers. */
ldm_status mem_peak_decode_tiled(const ldm_model *m, int32_t n_threads, int32_t h, int32_t w, int32_t tile,
                                 uint64_t *bytes);

typedef struct mem_plan {
    uint64_t total;     /* expected peak resident bytes of the whole call */
    uint64_t fixed;     /* process baseline, always-resident weights, host buffers, thread scratch */
    uint64_t text, unet, decode; /* each stage's mapped weights + activations */
    int32_t vae_tile;   /* 0 = decode whole, else the latent tile side */
    bool fits;          /* total <= max_memory (true without a limit) */
} mem_plan;

/* The plan of a txt2img / img2img call of width x height pixels on n_threads CPU threads,
 * with (batch = 2) or without (1) the unconditional pass. vae_tile: > 0 that tile, < 0 never
 * tile, 0 automatic (whole while the decoder's activations stay under MEM_VAE_AUTO_TILE_BYTES
 * and the total under max_memory, else the largest tile that fits). max_memory 0: no limit. */
ldm_status mem_plan_txt2img(const ldm_model *m, int32_t n_threads, int32_t width, int32_t height, int32_t batch,
                            int32_t vae_tile, uint64_t max_memory, mem_plan *out);

#endif
