/* Tiled VAE decoding and memory planning on the tiny SD 1.x model of tests/data:
 *  - a tile covering the latent gives vae_decode's result bit for bit;
 *  - a 512x512 image (64^2 latent) decoded in 32^2 tiles (overlap 4) against the whole decode:
 *    the tiles see less context (their own GroupNorm statistics), so the images differ a little
 *    everywhere; the difference must stay small, and smooth across the tile boundaries (no seam:
 *    the step between neighbouring pixels of the difference image is no larger at a boundary
 *    than elsewhere);
 *  - the dry-run activation peak (core/memory.c) against the peak of live tensors of a real
 *    decode on the CPU backend (same allocations: equal, up to the attention scratch);
 *  - the plan: automatic tiling when max_memory asks for it, none when vae_tile is -1,
 *    ldm_memory_estimate grows with the image and ldm_txt2img refuses a max_memory below
 *    what it needs with LDM_ERR_NO_MEMORY before doing any work.
 * Usage: test_vae_tiling DATA_DIR */
#include "core/context.h"
#include "core/memory.h"
#include "core/model.h"
#include "core/nets.h"
#include "core/vae_tiling.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_failures = 0;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, " [%s]\n", ldm_last_error());                                          \
            g_failures++;                                                                          \
        }                                                                                          \
    } while (0)

/* A smooth random latent (sums of a few low-frequency waves, as real latents are smooth at the
 * scale of a few pixels) in first-stage space. */
static void smooth_latent(float *z, int c, int h, int w, unsigned seed) {
    srand(seed);
    for (int ch = 0; ch < c; ch++) {
        double a[4], fx[4], fy[4], ph[4];
        for (int k = 0; k < 4; k++) {
            a[k] = (rand() / (double)RAND_MAX - 0.5) * 2.0;
            fx[k] = rand() / (double)RAND_MAX * 0.3;
            fy[k] = rand() / (double)RAND_MAX * 0.3;
            ph[k] = rand() / (double)RAND_MAX * 6.28;
        }
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                double v = 0;
                for (int k = 0; k < 4; k++) v += a[k] * sin(fx[k] * x + fy[k] * y + ph[k]);
                z[(ch * h + y) * w + x] = (float)(v + 0.1 * (rand() / (double)RAND_MAX - 0.5));
            }
    }
}

/* Live-tensor accounting around the real CPU backend. */
typedef struct counting {
    ldm_backend base;
    ldm_backend *inner;
    int64_t live, peak;
} counting;
static ldm_backend_ops g_count_ops;
static ldm_tensor *c_new(ldm_backend *be, int32_t nd, const int64_t *sh) {
    counting *c = (counting *)be;
    ldm_tensor *t = c->inner->ops->new_tensor(c->inner, nd, sh);
    if (t) {
        c->live += (ldm_numel(t) * 4 + 63) / 64 * 64;
        if (c->live > c->peak) c->peak = c->live;
    }
    return t;
}
static void c_free(ldm_backend *be, ldm_tensor *t) {
    counting *c = (counting *)be;
    if (t) c->live -= (ldm_numel(t) * 4 + 63) / 64 * 64;
    c->inner->ops->free_tensor(c->inner, t);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_vae_tiling DATA_DIR\n");
        return 2;
    }

    ldm_context_params cp;
    ldm_context_params_init(&cp);
    cp.backend = LDM_BACKEND_CPU;
    cp.n_threads = 2;
    ldm_context *ctx = NULL;
    if (ldm_context_create(&cp, &ctx)) {
        fprintf(stderr, "context: %s\n", ldm_last_error());
        return 1;
    }
    char path[4200], cfg[4200];
    snprintf(path, sizeof path, "%s/models/sd1-tiny.safetensors", argv[1]);
    snprintf(cfg, sizeof cfg, "%s/models/sd1-tiny.json", argv[1]);
    ldm_model_params mp;
    ldm_model_params_init(&mp);
    mp.config_path = cfg;
    ldm_model *m = NULL;
    if (ldm_model_load(ctx, path, &mp, &m)) {
        fprintf(stderr, "load: %s\n", ldm_last_error());
        return 1;
    }

    const int h = 64, w = 64, f = m->downscale, C = m->vae.embed_dim, H = h * f, W = w * f;
    float *z = malloc(sizeof(float) * C * h * w), *whole = malloc(sizeof(float) * 3 * H * W),
          *tiled = malloc(sizeof(float) * 3 * H * W);
    smooth_latent(z, C, h, w, 1234);

    /* the whole decode, on a backend that counts live tensors */
    counting cb = {.inner = ctx->be};
    g_count_ops = *ctx->be->ops;
    g_count_ops.new_tensor = c_new;
    g_count_ops.free_tensor = c_free;
    cb.base.ops = &g_count_ops;
    cb.base.n_threads = ctx->be->n_threads;
    ldm_exec ex;
    ctx_begin(ctx, &ex);
    ex.be = &cb.base;
    CHECK(vae_decode(&ex, m, 1, h, w, z, whole) == LDM_OK, "whole decode");
    uint64_t dry = 0;
    CHECK(mem_peak_decode(m, 2, h, w, &dry) == LDM_OK, "dry decode");
    printf("decoder activations at %dx%d: live-tensor peak %.2f MiB, dry run %.2f MiB\n", W, H, cb.peak / 1048576.0,
           dry / 1048576.0);
    CHECK((int64_t)dry >= cb.peak && (int64_t)dry <= cb.peak + (cb.peak / 4), "dry-run peak %llu vs real %lld",
          (unsigned long long)dry, (long long)cb.peak);

    /* a tile covering everything: vae_decode itself */
    ctx_begin(ctx, &ex);
    CHECK(vae_decode_tiled(&ex, m, 1, h, w, z, tiled, 64) == LDM_OK, "tile = latent");
    CHECK(memcmp(tiled, whole, sizeof(float) * 3 * H * W) == 0, "tile = latent differs from the whole decode");

    /* tiles of 32^2 latent pixels (cores of 32 - 2 halos) */
    const int tile = 32;
    ctx_begin(ctx, &ex);
    CHECK(vae_decode_tiled(&ex, m, 1, h, w, z, tiled, tile) == LDM_OK, "tiled decode");
    double maxd = 0, sumd = 0, range = 0;
    for (int i = 0; i < 3 * H * W; i++) {
        double d = fabs((double)tiled[i] - whole[i]);
        maxd = fmax(maxd, d);
        sumd += d;
        range = fmax(range, fabs(whole[i]));
    }
    const double meand = sumd / (3.0 * H * W);
    /* Seams: the horizontal step of the difference image (tiled - whole) between neighbouring
     * columns across the core boundaries (vae_tiling.c: n cores of at most tile - 2 halos,
     * evenly spread) against the mean step everywhere. */
    const int halo = vae_tile_halo(m), nx = (w + (tile - 2 * halo) - 1) / (tile - 2 * halo);
    double step_edge = 0, step_all = 0;
    long n_all = 0;
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < H; y++)
            for (int x = 1; x < W; x++) {
                const int i = (c * H + y) * W + x;
                double s = fabs((tiled[i] - whole[i]) - (tiled[i - 1] - whole[i - 1]));
                for (int t = 1; t < nx; t++)
                    if (x == t * w / nx * f) step_edge = fmax(step_edge, s);
                step_all += s;
                n_all++;
            }
    printf("tiled (%d^2 latent tiles, halo %d, %d cores a side) vs whole at %dx%d: max|d| %.4f, mean|d| %.5f (image "
           "range +-%.3f); largest step of the difference across a core boundary %.5f, mean step %.5f\n",
           tile, halo, nx, W, H, maxd, meand, range, step_edge, step_all / n_all);
    /* Tolerances, on outputs in [-1, 1] (8-bit steps of 2/255 = 0.0078): the mean difference well
     * under one 8-bit step, the worst pixel under 0.15, no jump at a boundary larger than 0.02. */
    CHECK(meand < 0.004, "tiled decode: mean |difference| %.5f", meand);
    CHECK(maxd < 0.15, "tiled decode: max |difference| %.4f", maxd);
    CHECK(step_edge < 0.02, "tiled decode: the difference jumps by %.4f at a tile boundary", step_edge);

    /* the plan */
    mem_plan pl, p2;
    CHECK(mem_plan_txt2img(m, 2, 512, 512, 2, 0, 0, &pl) == LDM_OK && pl.vae_tile == 0 && pl.fits,
          "plan 512: tile %d", pl.vae_tile);
    printf("plan 512x512: total %.1f MiB (fixed %.1f, text %.1f, unet %.1f, decode %.1f)\n", pl.total / 1048576.0,
           pl.fixed / 1048576.0, pl.text / 1048576.0, pl.unet / 1048576.0, pl.decode / 1048576.0);
    const uint64_t others = pl.fixed + LDM_MAX(pl.text, pl.unet);
    CHECK(pl.fixed + pl.decode > others, "the tiny model's 512^2 decode should be its peak");
    const uint64_t cap = (pl.total + others) / 2;
    CHECK(mem_plan_txt2img(m, 2, 512, 512, 2, 0, cap, &p2) == LDM_OK && p2.vae_tile > 0 && p2.fits && p2.total <= cap,
          "max_memory %llu below the whole decode: tile %d, total %llu", (unsigned long long)cap, p2.vae_tile,
          (unsigned long long)p2.total);
    printf("max_memory %.1f MiB: VAE tile %d, total %.1f MiB\n", cap / 1048576.0, p2.vae_tile, p2.total / 1048576.0);
    CHECK(mem_plan_txt2img(m, 2, 512, 512, 2, 0, others / 2, &p2) == LDM_OK && !p2.fits, "an impossible max_memory fits");
    CHECK(mem_plan_txt2img(m, 2, 512, 512, 2, -1, 0, &p2) == LDM_OK && p2.vae_tile == 0, "vae_tile -1 tiles");
    CHECK(mem_plan_txt2img(m, 2, 512, 512, 2, 24, 0, &p2) == LDM_OK && p2.vae_tile == 24, "vae_tile 24: %d",
          p2.vae_tile);

    ldm_txt2img_params tp;
    ldm_txt2img_params_init(&tp);
    tp.prompt = "a red cube";
    tp.width = tp.height = 256;
    tp.steps = 1;
    uint64_t e256 = 0, e512 = 0;
    int32_t t256 = -5;
    CHECK(ldm_memory_estimate(ctx, m, &tp, &e256, &t256) == LDM_OK && t256 == 0, "estimate 256");
    tp.width = tp.height = 512;
    CHECK(ldm_memory_estimate(ctx, m, &tp, &e512, NULL) == LDM_OK && e512 > e256, "estimate 512 %llu <= 256 %llu",
          (unsigned long long)e512, (unsigned long long)e256);
    tp.max_memory = 1 << 20; /* 1 MiB: below the process baseline */
    ldm_image *img = NULL;
    CHECK(ldm_txt2img(ctx, m, &tp, &img) == LDM_ERR_NO_MEMORY && !img, "max_memory 1 MiB accepted");
    CHECK(strstr(ldm_last_error(), "max_memory") != NULL, "message: %s", ldm_last_error());
    tp.max_memory = 0;
    tp.vae_tile = 5;
    CHECK(ldm_txt2img(ctx, m, &tp, &img) == LDM_ERR_INVALID_ARG, "vae_tile 5 accepted");

    free(z);
    free(whole);
    free(tiled);
    ldm_model_destroy(m);
    ldm_context_destroy(ctx);
    if (g_failures) {
        fprintf(stderr, "%d failure(s)\n", g_failures);
        return 1;
    }
    printf("all VAE tiling / memory tests passed\n");
    return 0;
}
