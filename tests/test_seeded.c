/* Seeded runs (issue 3 acceptance, shared/golden/SEEDED_CONTRACT.md items 1, 2 and 4): for both
 * noise streams, the draws that a seeded Euler-ancestral run takes are the reference draws of
 * that seed (tests/data/rng: torch_cpu_avx2 for --rng cpu, philox_a1111 for --rng cuda), and the
 * run from the stream equals the stored-noise path (the same pipeline with those draws injected,
 * as ldm-conform runs the golden cases): identical latents, identical 8-bit images, also through
 * the public ldm_txt2img / ldm_img2img.
 *
 * Shapes: a 64x64 image has a [1, 4, 8, 8] latent, the shape of the goldens' seq3x1x4x8x8
 * sequences (three randn calls on one generator). txt2img euler_a with 3 steps takes draw 0
 * (x_T) and one draw after each step but the last: 3 draws. img2img euler_a, 4 steps at
 * strength 0.5 runs t_enc = 2 steps: draw 0 (the noise) and 1 ancestral draw.
 * Usage: test_seeded DATA_DIR */
#include "core/context.h"
#include "core/pipeline.h"
#include "core/rng.h"
#include "core/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_failures = 0, g_checks = 0;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        g_checks++;                                                                                \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            g_failures++;                                                                          \
        }                                                                                          \
    } while (0)

#define LAT 256 /* 4 x 8 x 8 */
#define SIDE 64
#define MAX_DRAWS 8

/* Collects the "draws" and "latent_final" traces of one run. */
typedef struct {
    float draws[MAX_DRAWS][LAT];
    int n_draws;
    int overflow;
} draw_log;

static void on_trace(void *user, const char *name, const float *data, size_t count) {
    draw_log *d = user;
    if (strcmp(name, "draws") != 0) return;
    if (count != LAT || d->n_draws == MAX_DRAWS) {
        d->overflow = 1;
        return;
    }
    memcpy(d->draws[d->n_draws++], data, sizeof d->draws[0]);
}

/* The image as the public API quantises it (api.c image_from_float). */
static void to_u8(const float *img, uint8_t *out) {
    size_t plane = (size_t)SIDE * SIDE;
    for (size_t i = 0; i < plane; i++)
        for (int c = 0; c < 3; c++) {
            float v = (img[c * plane + i] + 1.0f) * 0.5f;
            v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
            out[i * 3 + c] = (uint8_t)lrintf(v * 255.0f);
        }
}

static size_t count_diff_bits(const float *a, const float *b, size_t n) {
    size_t d = 0;
    for (size_t i = 0; i < n; i++) d += memcmp(&a[i], &b[i], sizeof *a) != 0;
    return d;
}

typedef struct {
    ldm_context *ctx;
    ldm_model *m;
    const ldm_sampler_def *euler_a;
    float init_f[3 * SIDE * SIDE]; /* img2img input, [-1, 1], made from init_u8 */
    uint8_t init_u8[SIDE * SIDE * 3];
} env;

static const char *const PROMPT = "a photograph of an astronaut riding a horse";

/* One stream/seed: golden draws G[0..2] of seed<S>_seq3x1x4x8x8. */
static void check_seed(env *e, st_file *gold, const char *stream, int kind, int api_rng, uint64_t seed) {
    char name[96];
    float *G[3] = {NULL, NULL, NULL};
    for (int k = 0; k < 3; k++) {
        snprintf(name, sizeof name, "seed%llu_seq3x1x4x8x8/%d", (unsigned long long)seed, k);
        const st_tensor *t = st_find(gold, name);
        CHECK(t && st_numel(t) == LAT, "%s: golden %s missing", stream, name);
        if (!t || st_read_f32(t, &G[k]) != LDM_OK) goto out;
    }

    /* --- txt2img: seeded run vs golden draws vs stored-noise run ------------------------- */
    {
        ldm_rng rng;
        ldm_rng_init(&rng, kind, seed);
        draw_log dl = {0};
        float lat_rng[LAT], lat_inj[LAT], img_rng[3 * SIDE * SIDE], img_inj[3 * SIDE * SIDE];
        ldm_gen g = {.prompt = PROMPT, .negative_prompt = "", .width = SIDE, .height = SIDE, .steps = 3,
                     .cfg_scale = 7.5f, .sampler = e->euler_a, .scheduler = LDM_SCHED_DISCRETE, .eta = 1.0f,
                     .rng = &rng, .trace = on_trace, .trace_user = &dl, .latent_final = lat_rng, .image = img_rng};
        ldm_status st = pipeline_txt2img(e->ctx, e->m, &g);
        CHECK(st == LDM_OK, "%s seed %llu: seeded txt2img: %s", stream, (unsigned long long)seed, ldm_last_error());
        CHECK(dl.n_draws == 3 && !dl.overflow, "%s: euler_a 3 steps took %d draws, contract says 3", stream, dl.n_draws);
        for (int k = 0; k < dl.n_draws && k < 3; k++) {
            size_t d = count_diff_bits(dl.draws[k], G[k], LAT);
            CHECK(d == 0, "%s seed %llu: draw %d differs from the golden in %zu of %d values", stream,
                  (unsigned long long)seed, k, d, LAT);
        }
        /* The stored-noise path: x_T = G[0], noises = G[1], G[2]. */
        float noises[2 * LAT];
        memcpy(noises, G[1], sizeof(float) * LAT);
        memcpy(noises + LAT, G[2], sizeof(float) * LAT);
        draw_log dl2 = {0};
        ldm_gen gi = g;
        gi.rng = NULL;
        gi.x_T = G[0];
        gi.noises = noises;
        gi.n_noises = 2;
        gi.trace_user = &dl2;
        gi.latent_final = lat_inj;
        gi.image = img_inj;
        st = pipeline_txt2img(e->ctx, e->m, &gi);
        CHECK(st == LDM_OK, "%s: stored-noise txt2img: %s", stream, ldm_last_error());
        size_t dl_ = count_diff_bits(lat_rng, lat_inj, LAT);
        double maxabs = 0.0;
        for (int i = 0; i < LAT; i++) maxabs = fmax(maxabs, fabs((double)lat_rng[i] - lat_inj[i]));
        CHECK(dl_ == 0, "%s seed %llu: seeded latent differs from the stored-noise latent in %zu values (max %g)",
              stream, (unsigned long long)seed, dl_, maxabs);
        CHECK(count_diff_bits(img_rng, img_inj, 3 * SIDE * SIDE) == 0, "%s: decoded images differ", stream);
        double lat_max = 0.0;
        for (int i = 0; i < LAT; i++) lat_max = fmax(lat_max, fabs((double)lat_rng[i]));
        printf("  %-6s seed %-20llu txt2img euler_a 3 steps: draws 0-2 bit-exact %s, latent max|x| %.4f, "
               "seeded vs stored noise: %zu differing values\n",
               stream, (unsigned long long)seed, dl.n_draws == 3 ? "yes" : "no", lat_max, dl_);

        /* Public API: the same seed and stream give the stored-noise image, byte for byte. */
        ldm_txt2img_params tp;
        ldm_txt2img_params_init(&tp);
        tp.prompt = PROMPT;
        tp.negative_prompt = "";
        tp.width = tp.height = SIDE;
        tp.steps = 3;
        tp.sampler = "euler_a";
        tp.seed = seed;
        tp.rng = api_rng;
        ldm_image *img = NULL;
        st = ldm_txt2img(e->ctx, e->m, &tp, &img);
        CHECK(st == LDM_OK && img, "%s: ldm_txt2img: %s", stream, ldm_last_error());
        if (img) {
            uint8_t want[SIDE * SIDE * 3];
            to_u8(img_inj, want);
            int bad = 0;
            for (size_t i = 0; i < sizeof want; i++) bad += ldm_image_data(img)[i] != want[i];
            CHECK(bad == 0, "%s seed %llu: ldm_txt2img image differs from the stored-noise image in %d bytes", stream,
                  (unsigned long long)seed, bad);
            CHECK(ldm_image_seed(img) == seed, "%s: image seed", stream);
        }
        ldm_image_destroy(img);
    }

    /* --- img2img: draw 0 is the noise added to the init latent ---------------------------- */
    {
        ldm_rng rng;
        ldm_rng_init(&rng, kind, seed);
        draw_log dl = {0};
        float lat_rng[LAT], lat_inj[LAT], img_rng[3 * SIDE * SIDE], img_inj[3 * SIDE * SIDE];
        ldm_gen g = {.prompt = PROMPT, .negative_prompt = "", .width = SIDE, .height = SIDE, .steps = 4,
                     .cfg_scale = 7.5f, .sampler = e->euler_a, .scheduler = LDM_SCHED_DISCRETE, .eta = 1.0f,
                     .rng = &rng, .trace = on_trace, .trace_user = &dl, .latent_final = lat_rng, .image = img_rng,
                     .init_image = e->init_f, .strength = 0.5};
        ldm_status st = pipeline_img2img(e->ctx, e->m, &g);
        CHECK(st == LDM_OK, "%s: seeded img2img: %s", stream, ldm_last_error());
        CHECK(dl.n_draws == 2 && !dl.overflow, "%s: img2img euler_a t_enc 2 took %d draws, expected 2", stream,
              dl.n_draws);
        for (int k = 0; k < dl.n_draws && k < 2; k++)
            CHECK(count_diff_bits(dl.draws[k], G[k], LAT) == 0, "%s: img2img draw %d differs from the golden", stream, k);
        draw_log dl2 = {0};
        ldm_gen gi = g;
        gi.rng = NULL;
        gi.x_T = G[0];
        gi.noises = G[1];
        gi.n_noises = 1;
        gi.trace_user = &dl2;
        gi.latent_final = lat_inj;
        gi.image = img_inj;
        st = pipeline_img2img(e->ctx, e->m, &gi);
        CHECK(st == LDM_OK, "%s: stored-noise img2img: %s", stream, ldm_last_error());
        size_t d = count_diff_bits(lat_rng, lat_inj, LAT);
        CHECK(d == 0, "%s: img2img seeded latent differs from the stored-noise latent in %zu values", stream, d);

        ldm_img2img_params ip;
        ldm_img2img_params_init(&ip);
        ip.prompt = PROMPT;
        ip.negative_prompt = "";
        ip.init_image = e->init_u8;
        ip.init_width = ip.init_height = SIDE;
        ip.strength = 0.5;
        ip.steps = 4;
        ip.sampler = "euler_a";
        ip.seed = seed;
        ip.rng = api_rng;
        ldm_image *img = NULL;
        st = ldm_img2img(e->ctx, e->m, &ip, &img);
        CHECK(st == LDM_OK && img, "%s: ldm_img2img: %s", stream, ldm_last_error());
        if (img) {
            uint8_t want[SIDE * SIDE * 3];
            to_u8(img_inj, want);
            int bad = 0;
            for (size_t i = 0; i < sizeof want; i++) bad += ldm_image_data(img)[i] != want[i];
            CHECK(bad == 0, "%s: ldm_img2img image differs from the stored-noise image in %d bytes", stream, bad);
        }
        ldm_image_destroy(img);
        printf("  %-6s seed %-20llu img2img euler_a t_enc 2: draws 0-1 bit-exact, seeded vs stored noise: %zu "
               "differing values\n",
               stream, (unsigned long long)seed, d);
    }
out:
    for (int k = 0; k < 3; k++) free(G[k]);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_seeded DATA_DIR\n");
        return 2;
    }
    char model[4096], config[4096], path[4096];
    snprintf(model, sizeof model, "%s/models/sd1-tiny.safetensors", argv[1]);
    snprintf(config, sizeof config, "%s/models/sd1-tiny.json", argv[1]);
    env e = {0};
    ldm_context_params cp;
    ldm_context_params_init(&cp);
    cp.backend = LDM_BACKEND_CPU;
    cp.n_threads = 1; /* the tiny model gains nothing from threads on a shared machine */
    if (ldm_context_create(&cp, &e.ctx) != LDM_OK) {
        fprintf(stderr, "context: %s\n", ldm_last_error());
        return 1;
    }
    ldm_model_params mp;
    ldm_model_params_init(&mp);
    mp.config_path = config;
    if (ldm_model_load(e.ctx, model, &mp, &e.m) != LDM_OK) {
        fprintf(stderr, "model: %s\n", ldm_last_error());
        return 1;
    }
    e.euler_a = sampler_find("euler_a");
    CHECK(e.euler_a != NULL, "no euler_a sampler");
    /* A smooth init image on the 8-bit grid (the public API takes u8). */
    size_t plane = (size_t)SIDE * SIDE;
    for (int y = 0; y < SIDE; y++)
        for (int x = 0; x < SIDE; x++)
            for (int c = 0; c < 3; c++) {
                uint8_t v = (uint8_t)((x * 4 + y * (c + 1) * 3 + c * 60) & 255);
                e.init_u8[((size_t)y * SIDE + x) * 3 + c] = v;
                e.init_f[c * plane + (size_t)y * SIDE + x] = 2.0f * ((float)v / 255.0f) - 1.0f;
            }

    static const struct {
        const char *file, *stream;
        int kind, api_rng;
    } streams[] = {
        {"torch_cpu_avx2.safetensors", "cpu", LDM_RNG_KIND_TORCH_CPU, LDM_RNG_CPU},
        {"philox_a1111.safetensors", "cuda", LDM_RNG_KIND_PHILOX, LDM_RNG_CUDA},
    };
    /* 42 (the default seed) and 2^63 - 1 (a seed above 32 bits: Philox keys on all 64). */
    static const uint64_t seeds[] = {42, UINT64_C(9223372036854775807)};
    for (size_t s = 0; s < 2 && e.euler_a; s++) {
        snprintf(path, sizeof path, "%s/rng/%s", argv[1], streams[s].file);
        st_file *gold = NULL;
        ldm_status st = st_open(path, &gold);
        CHECK(st == LDM_OK, "open %s: %s", path, ldm_last_error());
        if (st) continue;
        for (size_t k = 0; k < 2; k++) check_seed(&e, gold, streams[s].stream, streams[s].kind, streams[s].api_rng, seeds[k]);
        st_close(gold);
    }
    ldm_model_destroy(e.m);
    ldm_context_destroy(e.ctx);
    if (g_failures) {
        fprintf(stderr, "%d of %d checks failed\n", g_failures, g_checks);
        return 1;
    }
    printf("seeded: all %d checks passed\n", g_checks);
    return 0;
}
