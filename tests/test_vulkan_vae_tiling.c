/* The VAE decode under a small device budget (issue 4): with a 24 MiB budget, a 256x256 decode
 * of sd1-tiny (32x32 latent, ~60 MiB of activations untiled) does not fit whole — the untiled
 * decoder fails with LDM_ERR_NO_MEMORY — so vae_decode must tile it (core/vae_tiling.c: halos and
 * whole-image GroupNorm statistics, no blending) and still equal the untiled decode: every pixel
 * within the single-op rule |d| <= 1e-4 + 1e-4 |ref| of the untiled CPU decode, the pools within
 * the budget. Also: on the CPU backend (no limits) vae_decode is exactly the untiled decoder.
 * usage: test_vulkan_vae_tiling DATA_DIR */
#include "core/context.h"
#include "core/nets.h"
#include "vulkan/vk_api.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;

#define FAILF(...)                                                                                           \
    do {                                                                                                     \
        failures++;                                                                                          \
        fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                                 \
        fprintf(stderr, __VA_ARGS__);                                                                        \
        fprintf(stderr, "\n");                                                                               \
    } while (0)

static uint64_t rs = 0x853c49e6748fea9bull;
static double urand(void) {
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (double)(rs >> 11) * (1.0 / 9007199254740992.0);
}

/* Smooth random latent in first-stage space (a real latent divided by the scale factor has a
 * standard deviation of about 5; smooth so the decoder sees structure, not only noise). */
static void make_latent(float *z, int c, int h, int w) {
    for (int ch = 0; ch < c; ch++) {
        double a = urand() * 6.28, b = urand() * 6.28, fx = 0.1 + 0.3 * urand(), fy = 0.1 + 0.3 * urand();
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                z[(ch * h + y) * w + x] =
                    (float)(3.0 * sin(fx * x + a) * cos(fy * y + b) + 1.5 * (urand() - 0.5));
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_vulkan_vae_tiling DATA_DIR\n");
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/models/sd1-tiny.safetensors", argv[1]);
    ldm_context_params cp;
    ldm_context_params_init(&cp);
    cp.backend = LDM_BACKEND_CPU;
    ldm_context *cpu = NULL;
    ldm_model *m = NULL;
    ldm_model_params mp;
    ldm_model_params_init(&mp);
    if (ldm_context_create(&cp, &cpu) || ldm_model_load(cpu, path, &mp, &m)) {
        fprintf(stderr, "loading %s: %s\n", path, ldm_last_error());
        return 1;
    }
    const int c = m->vae.embed_dim, h = 32, w = 32, f = m->downscale, H = h * f, W = w * f;
    const size_t npx = (size_t)3 * H * W;
    float *z = malloc((size_t)c * h * w * sizeof *z);
    float *ref = malloc(npx * sizeof *ref), *tiled = malloc(npx * sizeof *tiled), *tmp = malloc(npx * sizeof *tmp);
    make_latent(z, c, h, w);

    ldm_vk_options o;
    ldm_vk_options_init(&o);
    o.budget_bytes = (uint64_t)24 << 20;
    ldm_backend *small = NULL;
    if (ldm_vk_backend_create(&o, 1, &small)) {
        fprintf(stderr, "FAIL: no Vulkan backend: %s\n", ldm_last_error());
        return 1;
    }
    ldm_exec ex;

    /* the reference: the untiled decoder on the CPU */
    ldm_exec_init(&ex, cpu->be, NULL);
    if (vae_decode_untiled(&ex, m, 1, h, w, z, ref)) FAILF("cpu untiled decode: %s", ldm_last_error());

    /* 24 MiB: the whole decode does not fit */
    ldm_exec_init(&ex, small, NULL);
    ldm_status st = vae_decode_untiled(&ex, m, 1, h, w, z, tmp);
    if (st != LDM_ERR_NO_MEMORY) FAILF("the untiled decode within 24 MiB returned %d, expected LDM_ERR_NO_MEMORY", (int)st);
    ldm_exec_init(&ex, small, NULL);
    if (vae_decode(&ex, m, 1, h, w, z, tiled)) {
        FAILF("tiled decode within 24 MiB: %s", ldm_last_error());
    } else {
        double maxd = 0, worst = 0;
        size_t bad = 0;
        for (size_t i = 0; i < npx; i++) {
            double d = fabs((double)tiled[i] - (double)ref[i]), lim = 1e-4 + 1e-4 * fabs((double)ref[i]);
            if (!(d <= lim)) bad++;
            if (d > maxd || !isfinite(d)) maxd = isfinite(d) ? d : INFINITY;
            worst = fmax(worst, d / lim);
        }
        printf("256x256 decode tiled within a 24 MiB budget vs untiled on the CPU: max|d| %.3g (%.1f%% of the allowed), "
               "pools %.1f MiB\n",
               maxd, 100.0 * worst, (double)ldm_vk_pool_bytes(small) / (1 << 20));
        if (bad) FAILF("tiled decode: %zu of %zu values outside 1e-4 + 1e-4|ref| (max|d| %.3g)", bad, npx, maxd);
        if (ldm_vk_pool_bytes(small) > ldm_vk_budget(small)) FAILF("pools exceed the 24 MiB budget");
    }
    if (ldm_vk_validation_errors(small)) FAILF("validation errors");

    /* CPU: no limits, no tiling */
    ldm_exec_init(&ex, cpu->be, NULL);
    float *c1 = malloc(npx * sizeof *c1), *c2 = malloc(npx * sizeof *c2);
    if (vae_decode_untiled(&ex, m, 1, h, w, z, c1)) FAILF("cpu untiled: %s", ldm_last_error());
    ldm_exec_init(&ex, cpu->be, NULL);
    if (vae_decode(&ex, m, 1, h, w, z, c2)) FAILF("cpu vae_decode: %s", ldm_last_error());
    if (memcmp(c1, c2, npx * sizeof *c1) != 0) FAILF("vae_decode on the CPU differs from the untiled decoder");

    free(c1);
    free(c2);
    free(z);
    free(ref);
    free(tiled);
    free(tmp);
    small->ops->destroy(small);
    ldm_model_destroy(m);
    ldm_context_destroy(cpu);
    printf("%s\n", failures ? "FAILED" : "all passed");
    return failures ? 1 : 0;
}
