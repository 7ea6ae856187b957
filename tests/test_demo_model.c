/* The demo model (models/ldm-shapes-64, issue 7), two checks:
 *
 * 1. Against its training code: tools/train/make_reference.py ran the PyTorch sampler that
 *    trained it (k-diffusion discrete Euler + CFG, --rng cpu noise) on the shipped F16 weights;
 *    the C pipeline, seeded the same way, must give the same final latent (max|a-b| <= 1e-4 *
 *    max|ref|) and decoded image (|a-b| <= 2e-4): the golden tolerances of shared/golden/README.md
 *    section 7 for sampled latents and images.
 * 2. The pictures show their prompts: every line "seen|held_out<TAB>caption" of EVAL_LIST is
 *    generated through the public ldm_txt2img with SEEDS seeds and the library's defaults (the
 *    CLI's: Euler, 20 steps, CFG 7.5, the model's 64x64), and tools/shape_eval.c judges the
 *    colour, shape and background.
 *    Issue 7 asks for >= 90 % of the seen and >= 70 % of the held-out combinations (never shown in
 *    training), and these are the bars. The shipped model gets 59 of 60 seen and 58 of 60 held out
 *    here (models/README.md): two squares drawn with rounded corners and one orange background
 *    that reads as yellow.
 *
 * Usage: test_demo_model MODEL.safetensors REFERENCE.safetensors EVAL_LIST */
#include "core/context.h"
#include "core/pipeline.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "shape_eval.h"

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
            fprintf(stderr, "\n");                                                                 \
            g_failures++;                                                                          \
        }                                                                                          \
    } while (0)

enum { SEEDS = 2 };
static const double SEEN_BAR = 0.90, HELD_OUT_BAR = 0.70; /* issue 7's acceptance */

static void check_reference(ldm_context *ctx, ldm_model *m, const char *ref_path) {
    st_file *ref = NULL;
    if (st_open(ref_path, &ref) != LDM_OK) {
        CHECK(0, "%s: %s", ref_path, ldm_last_error());
        return;
    }
    const char *ncases = st_meta(ref, "cases");
    int n = ncases ? atoi(ncases) : 0;
    CHECK(n > 0, "%s: no cases", ref_path);
    const ldm_sampler_def *euler = sampler_find("euler");
    for (int i = 0; i < n; i++) {
        char key[64], lname[64], iname[64];
        const char *prompt, *seed_s, *steps_s, *cfg_s;
        snprintf(key, sizeof key, "case%d.prompt", i);
        prompt = st_meta(ref, key);
        snprintf(key, sizeof key, "case%d.seed", i);
        seed_s = st_meta(ref, key);
        snprintf(key, sizeof key, "case%d.steps", i);
        steps_s = st_meta(ref, key);
        snprintf(key, sizeof key, "case%d.cfg_scale", i);
        cfg_s = st_meta(ref, key);
        snprintf(lname, sizeof lname, "case%d/latent_final", i);
        snprintf(iname, sizeof iname, "case%d/image", i);
        const st_tensor *tl = st_find(ref, lname), *ti = st_find(ref, iname);
        if (!prompt || !seed_s || !steps_s || !cfg_s || !tl || !ti) {
            CHECK(0, "case %d: incomplete reference", i);
            continue;
        }
        float *want_lat = NULL, *want_img = NULL;
        if (st_read_f32(tl, &want_lat) || st_read_f32(ti, &want_img)) {
            CHECK(0, "case %d: %s", i, ldm_last_error());
            free(want_lat);
            continue;
        }
        size_t nl = st_numel(tl), ni = st_numel(ti);
        int side = (int)ti->shape[3];
        float *lat = malloc(nl * sizeof *lat), *img = malloc(ni * sizeof *img);
        ldm_rng rng;
        ldm_rng_init(&rng, LDM_RNG_KIND_TORCH_CPU, strtoull(seed_s, NULL, 10));
        ldm_gen g = {.prompt = prompt, .negative_prompt = "", .width = side, .height = side,
                     .steps = atoi(steps_s), .cfg_scale = strtof(cfg_s, NULL), .sampler = euler,
                     .scheduler = LDM_SCHED_DISCRETE, .rng = &rng, .latent_final = lat, .image = img};
        ldm_status st = pipeline_txt2img(ctx, m, &g);
        CHECK(st == LDM_OK, "case %d: %s", i, ldm_last_error());
        if (st == LDM_OK) {
            double lmax = 0, lref = 0, imax = 0;
            for (size_t k = 0; k < nl; k++) {
                lmax = fmax(lmax, fabs((double)lat[k] - want_lat[k]));
                lref = fmax(lref, fabs((double)want_lat[k]));
            }
            for (size_t k = 0; k < ni; k++) imax = fmax(imax, fabs((double)img[k] - want_img[k]));
            printf("reference case %d \"%s\" seed %s, %s steps, cfg %s: latent max|d| %.3g (limit %.3g), "
                   "image max|d| %.3g (limit 2e-4)\n",
                   i, prompt, seed_s, steps_s, cfg_s, lmax, 1e-4 * lref, imax);
            CHECK(lmax <= 1e-4 * lref, "case %d: final latent differs by %g (max|ref| %g)", i, lmax, lref);
            CHECK(imax <= 2e-4, "case %d: decoded image differs by %g", i, imax);
        }
        free(lat);
        free(img);
        free(want_lat);
        free(want_img);
    }
    st_close(ref);
}

static void check_prompts(ldm_context *ctx, ldm_model *m, const char *list_path) {
    FILE *f = fopen(list_path, "r");
    if (!f) {
        CHECK(0, "cannot open %s", list_path);
        return;
    }
    int ok[2] = {0, 0}, total[2] = {0, 0};
    char line[512];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        char *tab = strchr(line, '\t');
        if (!line[0] || line[0] == '#' || !tab) continue;
        *tab = '\0';
        int held = strcmp(line, "held_out") == 0;
        const char *caption = tab + 1, *colour, *shape, *bg;
        if (!shape_eval_parse_caption(caption, &colour, &shape, &bg)) {
            CHECK(0, "%s: cannot read the caption \"%s\"", list_path, caption);
            continue;
        }
        for (int s = 0; s < SEEDS; s++) {
            ldm_txt2img_params p;
            ldm_txt2img_params_init(&p); /* width/height 0: the model's own 64 x 64 */
            p.prompt = caption;
            p.seed = 1000 + (uint64_t)s;
            ldm_image *img = NULL;
            ldm_status st = ldm_txt2img(ctx, m, &p, &img);
            CHECK(st == LDM_OK, "\"%s\": %s", caption, ldm_last_error());
            if (st != LDM_OK) continue;
            shape_desc d;
            CHECK(ldm_image_width(img) == 64 && ldm_image_height(img) == 64, "default size is %dx%d, not 64x64",
                  ldm_image_width(img), ldm_image_height(img));
            bool good = shape_eval_describe(ldm_image_data(img), ldm_image_width(img), ldm_image_height(img),
                                            ldm_image_stride(img), &d) &&
                        shape_eval_matches(&d, colour, shape, bg);
            ok[held] += good;
            total[held]++;
            if (!good)
                printf("  miss (%s) seed %d \"%s\": saw a %s %s on a %s background\n", held ? "held-out" : "seen",
                       1000 + s, caption, d.colour ? d.colour : "-", d.shape ? d.shape : "-", d.background);
            ldm_image_destroy(img);
        }
    }
    fclose(f);
    for (int h = 0; h < 2; h++) {
        double rate = total[h] ? (double)ok[h] / total[h] : 0.0;
        double bar = h ? HELD_OUT_BAR : SEEN_BAR;
        printf("%s combinations: %d of %d pictures match their caption (%.1f %%; this test needs %.0f %%, "
               "issue 7 asks %d %%)\n",
               h ? "held-out" : "seen", ok[h], total[h], 100.0 * rate, 100.0 * bar, h ? 70 : 90);
        CHECK(total[h] > 0 && rate >= bar, "%s match rate %.3f is below the bar %.2f", h ? "held-out" : "seen", rate,
              bar);
    }
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: test_demo_model MODEL REFERENCE EVAL_LIST\n");
        return 2;
    }
    ldm_context_params cp;
    ldm_context_params_init(&cp);
    cp.backend = LDM_BACKEND_CPU;
    cp.n_threads = 1;
    ldm_context *ctx = NULL;
    ldm_model *m = NULL;
    if (ldm_context_create(&cp, &ctx) != LDM_OK || ldm_model_load(ctx, argv[1], NULL, &m) != LDM_OK) {
        fprintf(stderr, "FAIL: %s\n", ldm_last_error());
        ldm_context_destroy(ctx);
        return 1;
    }
    ldm_model_info info = {.struct_size = sizeof info};
    CHECK(ldm_model_get_info(m, &info) == LDM_OK && info.image_size == 64 && strcmp(info.family, "sd1") == 0,
          "the demo model should load as sd1 with image_size 64 (got %s, %d)", info.family, info.image_size);
    check_reference(ctx, m, argv[2]);
    check_prompts(ctx, m, argv[3]);
    ldm_model_destroy(m);
    ldm_context_destroy(ctx);
    if (g_failures) fprintf(stderr, "%d failure(s)\n", g_failures);
    return g_failures ? 1 : 0;
}
