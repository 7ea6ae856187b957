/* The super-resolution API (ldm_upscale) and the paper models through the public component
 * API, on the tiny models of tests/data:
 *  - the VQ first stage of ldm-sr-tiny through ldm_autoencoder_encode/decode against the golden
 *    vq_encode_decode case (encode = h, decode quantises first: = decoded);
 *  - ldm_upscale on ldm-sr-tiny and x4-upscaler-tiny: output 4x the input for sizes that are
 *    not multiples of 8 (edge padding + crop), determinism per seed, a different seed changes
 *    the result, progress calls, tiled runs (UNet and decoder tiles) finish with finite pixels
 *    and tile = image gives the untiled result exactly, argument errors;
 *  - the families' refusals: txt2img on an upscaler, upscale on a text-to-image model;
 *  - ldm_model_get_info for the three families.
 * Usage: test_upscale DATA_DIR */
#include "core/safetensors.h"

#include <ldm/ldm.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_failures = 0;
static char g_data[4096];

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, " [%s]\n", ldm_last_error());                                          \
            g_failures++;                                                                          \
        }                                                                                          \
    } while (0)

static ldm_model *load(ldm_context *ctx, const char *name) {
    char path[4200], cfg[4200];
    snprintf(path, sizeof path, "%s/models/%s.safetensors", g_data, name);
    snprintf(cfg, sizeof cfg, "%s/models/%s.json", g_data, name);
    ldm_model_params mp;
    ldm_model_params_init(&mp);
    mp.config_path = cfg;
    ldm_model *m = NULL;
    ldm_status st = ldm_model_load(ctx, path, &mp, &m);
    CHECK(st == LDM_OK, "load %s", name);
    return m;
}

static float *golden(st_file *f, const char *name, size_t n) {
    const st_tensor *t = st_find(f, name);
    float *v = NULL;
    if (!t || st_numel(t) != n || st_read_f32(t, &v) != LDM_OK) return NULL;
    return v;
}

/* |a - b| <= 1e-4 + 1e-4 |b| (CONFORM.md single op). */
static bool close_single(const float *a, const float *b, size_t n, double *worst) {
    *worst = 0;
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        *worst = fmax(*worst, d);
        if (!(d <= 1e-4 + 1e-4 * fabs((double)b[i]))) ok = false;
    }
    return ok;
}

static void check_vq_autoencoder(ldm_context *ctx, ldm_model *m) {
    char path[4200];
    snprintf(path, sizeof path, "%s/golden/ldm-sr-tiny/vq_encode_decode.safetensors", g_data);
    st_file *f = NULL;
    CHECK(st_open(path, &f) == LDM_OK, "open %s", path);
    if (!f) return;
    const size_t pix = 3 * 64 * 64, lat = 3 * 16 * 16;
    float *image = golden(f, "image", pix), *h = golden(f, "h", lat), *dec = golden(f, "decoded", pix);
    CHECK(image && h && dec, "golden tensors");
    ldm_autoencoder *ae = NULL;
    CHECK(ldm_autoencoder_create(m, &ae) == LDM_OK, "autoencoder");
    float *lat_out = malloc(lat * sizeof *lat_out), *img_out = malloc(pix * sizeof *img_out);
    double worst;
    if (image && h && dec && ae && lat_out && img_out) {
        CHECK(ldm_autoencoder_encode(ctx, ae, 1, 64, 64, image, lat_out) == LDM_OK, "encode");
        CHECK(close_single(lat_out, h, lat, &worst), "VQ encode differs from the golden h (max %g)", worst);
        printf("vq encode: max|d| %.3g\n", worst);
        CHECK(ldm_autoencoder_decode(ctx, ae, 1, 16, 16, h, img_out) == LDM_OK, "decode");
        CHECK(close_single(img_out, dec, pix, &worst), "VQ decode differs from the golden decoded (max %g)", worst);
        printf("vq decode (quantised): max|d| %.3g\n", worst);
    }
    ldm_autoencoder_destroy(ae);
    free(lat_out);
    free(img_out);
    free(image);
    free(h);
    free(dec);
    st_close(f);
}

static int g_progress_calls;
static int count_progress(int32_t step, int32_t total, void *user) {
    (void)user;
    g_progress_calls++;
    return step < 1 || step > total;
}

/* A smooth synthetic image, rows `stride` bytes apart. */
static uint8_t *make_image(int w, int h, size_t stride) {
    uint8_t *p = calloc((size_t)h * stride, 1);
    for (int y = 0; p && y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *q = p + (size_t)y * stride + (size_t)x * 3;
            q[0] = (uint8_t)(255 * x / (w > 1 ? w - 1 : 1));
            q[1] = (uint8_t)(255 * y / (h > 1 ? h - 1 : 1));
            q[2] = (uint8_t)((x * 7 + y * 13) % 256);
        }
    return p;
}

static ldm_image *run(ldm_context *ctx, ldm_model *m, const uint8_t *img, int w, int h, size_t stride, uint64_t seed,
                      int tile, ldm_status *st) {
    ldm_upscale_params p;
    ldm_upscale_params_init(&p);
    p.image = img;
    p.width = w;
    p.height = h;
    p.stride = stride;
    p.prompt = "a photo";
    p.steps = 3;
    p.seed = seed;
    p.tile = tile;
    p.tile_overlap = 8;
    p.progress = count_progress;
    ldm_image *out = NULL;
    *st = ldm_upscale(ctx, m, &p, &out);
    return out;
}

static bool same_image(const ldm_image *a, const ldm_image *b) {
    if (!a || !b || ldm_image_width(a) != ldm_image_width(b) || ldm_image_height(a) != ldm_image_height(b)) return false;
    return memcmp(ldm_image_data(a), ldm_image_data(b), ldm_image_stride(a) * (size_t)ldm_image_height(a)) == 0;
}

static void check_upscale(ldm_context *ctx, ldm_model *m, const char *name) {
    const int w = 20, h = 12; /* not multiples of 8: padded, then cropped */
    size_t stride = (size_t)w * 3 + 5;
    uint8_t *img = make_image(w, h, stride);
    ldm_status st;
    g_progress_calls = 0;
    ldm_image *a = run(ctx, m, img, w, h, stride, 7, 0, &st);
    CHECK(st == LDM_OK && a, "%s: upscale", name);
    CHECK(a && ldm_image_width(a) == 4 * w && ldm_image_height(a) == 4 * h, "%s: output is not 4x", name);
    CHECK(g_progress_calls == 4, "%s: %d progress calls for 3 DDIM steps (4 timesteps)", name, g_progress_calls);
    ldm_image *b = run(ctx, m, img, w, h, stride, 7, 0, &st);
    CHECK(st == LDM_OK && same_image(a, b), "%s: the same seed gives another image", name);
    ldm_image *c = run(ctx, m, img, w, h, stride, 8, 0, &st);
    CHECK(st == LDM_OK && c && !same_image(a, c), "%s: another seed gives the same image", name);
    /* One tile as large as the padded image is the untiled run. */
    ldm_image *d = run(ctx, m, img, w, h, stride, 7, 24, &st);
    CHECK(st == LDM_OK && same_image(a, d), "%s: a single 24-pixel tile differs from the untiled run", name);
    ldm_image_destroy(b);
    ldm_image_destroy(c);
    ldm_image_destroy(d);
    /* 40x24 in 16-pixel tiles (4 x 2 UNet and decoder tiles). */
    uint8_t *big = make_image(40, 24, 120);
    ldm_image *t = run(ctx, m, big, 40, 24, 120, 7, 16, &st);
    CHECK(st == LDM_OK && t && ldm_image_width(t) == 160 && ldm_image_height(t) == 96, "%s: tiled upscale", name);
    ldm_image *u = run(ctx, m, big, 40, 24, 120, 7, -1, &st);
    CHECK(st == LDM_OK && u, "%s: untiled upscale of 40x24", name);
    if (t && u) {
        /* Tiles see less context (GroupNorm statistics, attention), so the two differ, but
         * both are images of the same input: report the mean difference. */
        double md = 0;
        size_t n = ldm_image_stride(t) * 96;
        for (size_t i = 0; i < n; i++) md += abs((int)ldm_image_data(t)[i] - (int)ldm_image_data(u)[i]);
        printf("%s: tiled vs untiled 40x24 -> 160x96: mean |d| %.2f of 255\n", name, md / (double)n);
    }
    ldm_image_destroy(t);
    ldm_image_destroy(u);
    free(big);
    /* Errors. */
    ldm_upscale_params p;
    ldm_upscale_params_init(&p);
    ldm_image *out = (ldm_image *)&p;
    CHECK(ldm_upscale(ctx, m, &p, &out) == LDM_ERR_INVALID_ARG && out == NULL, "%s: NULL image accepted", name);
    p.image = img;
    p.width = w;
    p.height = h;
    p.stride = 3;
    CHECK(ldm_upscale(ctx, m, &p, &out) == LDM_ERR_INVALID_ARG, "%s: short stride accepted", name);
    p.stride = 0;
    p.tile = 12;
    CHECK(ldm_upscale(ctx, m, &p, &out) == LDM_ERR_INVALID_ARG, "%s: tile 12 accepted", name);
    p.tile = 0;
    p.noise_level = 351;
    ldm_status e = ldm_upscale(ctx, m, &p, &out); /* ldm-sr ignores the noise level */
    if (strcmp(ldm_model_family(m), "x4-upscaler") == 0) CHECK(e == LDM_ERR_INVALID_ARG, "%s: noise level 351 accepted", name);
    else CHECK(e == LDM_OK && out, "%s: the noise level is not ignored", name);
    ldm_image_destroy(out);
    out = NULL;
    p.noise_level = 20;
    p.struct_size = 8;
    CHECK(ldm_upscale(ctx, m, &p, &out) == LDM_ERR_INVALID_ARG, "%s: struct_size 8 accepted", name);
    ldm_image_destroy(a);
    free(img);
}

static void check_info(ldm_model *m, const char *family, const char *text, const char *first_stage, int upscaler) {
    ldm_model_info info;
    info.struct_size = sizeof info;
    CHECK(ldm_model_get_info(m, &info) == LDM_OK, "info");
    CHECK(strcmp(info.family, family) == 0, "family %s, want %s", info.family, family);
    CHECK(strcmp(info.text_encoder, text) == 0, "%s: text encoder %s, want %s", family, info.text_encoder, text);
    CHECK(strcmp(info.first_stage, first_stage) == 0, "%s: first stage %s", family, info.first_stage);
    CHECK(info.upscaler == upscaler && !info.inpainting, "%s: upscaler %d inpainting %d", family, info.upscaler,
          info.inpainting);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_upscale DATA_DIR\n");
        return 2;
    }
    snprintf(g_data, sizeof g_data, "%s", argv[1]);
    ldm_context_params cp;
    ldm_context_params_init(&cp);
    cp.backend = LDM_BACKEND_CPU;
    cp.n_threads = 2;
    ldm_context *ctx = NULL;
    if (ldm_context_create(&cp, &ctx) != LDM_OK) return 1;
    ldm_model *sr = load(ctx, "ldm-sr-tiny"), *x4 = load(ctx, "x4-upscaler-tiny"), *t2i = load(ctx, "ldm-txt2img-tiny");
    if (sr) {
        check_info(sr, "ldm-sr", "none", "vq", 1);
        check_vq_autoencoder(ctx, sr);
        check_upscale(ctx, sr, "ldm-sr-tiny");
    }
    if (x4) {
        check_info(x4, "x4-upscaler", "openclip", "kl", 1);
        check_upscale(ctx, x4, "x4-upscaler-tiny");
        ldm_txt2img_params tp;
        ldm_txt2img_params_init(&tp);
        tp.prompt = "a cat";
        tp.width = tp.height = 64;
        tp.steps = 1;
        ldm_image *img = NULL;
        CHECK(ldm_txt2img(ctx, x4, &tp, &img) == LDM_ERR_UNSUPPORTED && img == NULL, "txt2img on the x4 upscaler");
    }
    if (t2i) {
        check_info(t2i, "ldm-txt2img", "bert", "kl", 0);
        ldm_upscale_params p;
        ldm_upscale_params_init(&p);
        uint8_t px[3 * 64] = {0};
        p.image = px;
        p.width = p.height = 8;
        ldm_image *out = NULL;
        CHECK(ldm_upscale(ctx, t2i, &p, &out) == LDM_ERR_UNSUPPORTED && out == NULL, "upscale on a txt2img model");
        /* The BERT conditioner through the public API: 77 x 8, finite, prompt-dependent. */
        ldm_conditioner *cond = NULL;
        int32_t tokens = 0, width = 0;
        CHECK(ldm_conditioner_create(t2i, &cond) == LDM_OK && ldm_conditioner_shape(cond, &tokens, &width) == LDM_OK &&
                  tokens == 77 && width == 8,
              "BERT conditioner shape %dx%d", tokens, width);
        float a[77 * 8], b[77 * 8];
        CHECK(ldm_conditioner_encode(ctx, cond, "a painting of a virus monster playing guitar", 0, a, 77 * 8) == LDM_OK &&
                  ldm_conditioner_encode(ctx, cond, "", 0, b, 77 * 8) == LDM_OK && memcmp(a, b, sizeof a) != 0,
              "BERT conditioner encode");
        ldm_conditioner_destroy(cond);
    }
    ldm_model_destroy(sr);
    ldm_model_destroy(x4);
    ldm_model_destroy(t2i);
    ldm_context_destroy(ctx);
    if (g_failures) {
        fprintf(stderr, "%d failure(s)\n", g_failures);
        return 1;
    }
    printf("all upscale checks passed\n");
    return 0;
}
