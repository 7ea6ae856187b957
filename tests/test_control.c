/* Callbacks and control (issue 3, "Callbacks and control" and its acceptance bullet):
 *  - cancelling from the progress callback at step k returns LDM_ERR_CANCELLED after at most
 *    one more step, also when ldm_context_cancel() comes from another thread during step k;
 *  - the context stays usable: the next run with the same seed gives the same image, byte for
 *    byte, as a fresh context;
 *  - ldm_progress_ex_fn: step, total, batch index/count and a nondecreasing elapsed time;
 *  - ldm_preview_fn: latent-resolution RGB previews equal to the SD 1.x linear projection
 *    (ComfyUI SD15 latent_rgb_factors) of the denoised estimate the sampler reported;
 *  - img2img argument checks and the params' struct_size versioning.
 * Usage: test_control DATA_DIR */
#include "core/pipeline.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

#define SIDE 64
#define BYTES (SIDE * SIDE * 3)

static const char *const PROMPT = "a castle on a hill";

static void small(ldm_txt2img_params *tp) {
    ldm_txt2img_params_init(tp);
    tp->prompt = PROMPT;
    tp->width = tp->height = SIDE;
    tp->steps = 5;
    tp->seed = 1234;
}

/* ---- cancellation ----------------------------------------------------------------------- */

typedef struct {
    int cancel_at;  /* step at which to cancel */
    int last_step;  /* highest step reported */
    int calls;
    ldm_context *ctx;
    int use_thread; /* cancel through ldm_context_cancel from another thread */
    atomic_int go, done;
} cancel_probe;

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void *cancel_thread(void *arg) {
    cancel_probe *p = arg;
    for (int i = 0; i < 120000 && !atomic_load(&p->go); i++) sleep_ms(1);
    ldm_context_cancel(p->ctx);
    atomic_store(&p->done, 1);
    return NULL;
}

static int cancel_progress(int32_t step, int32_t total, void *user) {
    cancel_probe *p = user;
    (void)total;
    p->calls++;
    if (step > p->last_step) p->last_step = step;
    if (step == p->cancel_at) {
        if (!p->use_thread) return 1;
        atomic_store(&p->go, 1); /* the other thread cancels while this step is still "running" */
        for (int i = 0; i < 60000 && !atomic_load(&p->done); i++) sleep_ms(1);
    }
    return 0;
}

static ldm_image *run(ldm_context *ctx, ldm_model *m, const ldm_txt2img_params *tp, ldm_status *st) {
    ldm_image *img = NULL;
    *st = ldm_txt2img(ctx, m, tp, &img);
    return img;
}

static void test_cancel(ldm_context *ctx, ldm_model *m, const char *model_path, const char *config) {
    ldm_txt2img_params tp;
    small(&tp);
    ldm_status st;
    ldm_image *before = run(ctx, m, &tp, &st);
    CHECK(st == LDM_OK && before, "reference run: %s", ldm_last_error());

    for (int use_thread = 0; use_thread < 2; use_thread++) {
        for (int k = 1; k <= 4; k += 3) {
            cancel_probe p = {.cancel_at = k, .ctx = ctx, .use_thread = use_thread};
            atomic_init(&p.go, 0);
            atomic_init(&p.done, 0);
            pthread_t th;
            if (use_thread && pthread_create(&th, NULL, cancel_thread, &p) != 0) {
                CHECK(0, "pthread_create");
                continue;
            }
            small(&tp);
            tp.progress = cancel_progress;
            tp.user_data = &p;
            ldm_image *img = (ldm_image *)&p;
            st = ldm_txt2img(ctx, m, &tp, &img);
            if (use_thread) {
                atomic_store(&p.go, 1);
                pthread_join(th, NULL);
            }
            CHECK(st == LDM_ERR_CANCELLED, "%s cancel at step %d: got %s (%s)", use_thread ? "thread" : "callback", k,
                  ldm_status_string(st), ldm_last_error());
            CHECK(img == NULL, "cancelled run returned an image");
            CHECK(p.last_step <= k + 1, "%s cancel at step %d: the run went on to step %d",
                  use_thread ? "thread" : "callback", k, p.last_step);
            printf("  cancel (%s) at step %d of 5: LDM_ERR_CANCELLED after step %d (%d progress calls)\n",
                   use_thread ? "ldm_context_cancel from a thread" : "progress returns 1", k, p.last_step, p.calls);
        }
    }

    /* Reusable: same seed, same bytes as before the cancels and as a fresh context. */
    small(&tp);
    ldm_image *after = run(ctx, m, &tp, &st);
    CHECK(st == LDM_OK && after, "run after cancels: %s", ldm_last_error());
    ldm_context_params cp;
    ldm_context_params_init(&cp);
    cp.backend = LDM_BACKEND_CPU;
    cp.n_threads = 1; /* the tiny model gains nothing from threads on a shared machine */
    ldm_context *fresh = NULL;
    ldm_model *m2 = NULL;
    ldm_model_params mp;
    ldm_model_params_init(&mp);
    mp.config_path = config;
    st = ldm_context_create(&cp, &fresh);
    if (st == LDM_OK) st = ldm_model_load(fresh, model_path, &mp, &m2);
    CHECK(st == LDM_OK, "fresh context: %s", ldm_last_error());
    ldm_image *clean = st == LDM_OK ? run(fresh, m2, &tp, &st) : NULL;
    CHECK(st == LDM_OK && clean, "fresh-context run: %s", ldm_last_error());
    if (before && after && clean) {
        CHECK(memcmp(ldm_image_data(after), ldm_image_data(clean), BYTES) == 0,
              "after a cancel, the image differs from a fresh context's");
        CHECK(memcmp(ldm_image_data(after), ldm_image_data(before), BYTES) == 0,
              "after a cancel, the image differs from the run before it");
        printf("  after the cancels: same seed gives the fresh context's image byte for byte\n");
    }
    ldm_image_destroy(before);
    ldm_image_destroy(after);
    ldm_image_destroy(clean);
    ldm_model_destroy(m2);
    ldm_context_destroy(fresh);
}

/* ---- progress_ex ------------------------------------------------------------------------- */

typedef struct {
    int n, bad_order, bad_fields;
    double last_elapsed;
    int32_t batch_seen[2];
    size_t info_size;
    int legacy_calls; /* calls of the plain progress callback */
} ex_probe;

static int legacy_progress(int32_t step, int32_t total, void *user) {
    (void)step;
    (void)total;
    ((ex_probe *)user)->legacy_calls++;
    return 0;
}

static int ex_progress(const ldm_progress_info *info, void *user) {
    ex_probe *p = user;
    p->info_size = info->struct_size;
    int expect_step = p->n % info->total + 1;
    if (info->step != expect_step) p->bad_order++;
    if (info->total != 4 || info->batch_count != 2 || info->batch_index != p->n / 4) p->bad_fields++;
    if (!(info->elapsed >= p->last_elapsed) || !(info->elapsed >= 0.0) || !isfinite(info->elapsed)) p->bad_order++;
    p->last_elapsed = info->elapsed;
    if (info->batch_index >= 0 && info->batch_index < 2) p->batch_seen[info->batch_index]++;
    p->n++;
    return 0;
}

static void count_preview(const ldm_preview_image *pv, void *user) {
    (void)pv;
    (*(int *)user)++;
}

static int ex_cancel(const ldm_progress_info *info, void *user) {
    (*(int *)user)++;
    return info->step == 2;
}

static void test_progress_ex(ldm_context *ctx, ldm_model *m) {
    ldm_txt2img_params tp;
    small(&tp);
    tp.steps = 4;
    tp.batch_count = 2;
    ex_probe p = {0};
    tp.progress = legacy_progress;
    tp.progress_ex = ex_progress;
    tp.user_data = &p;
    ldm_image *imgs[2] = {NULL, NULL};
    ldm_status st = ldm_txt2img(ctx, m, &tp, imgs);
    CHECK(st == LDM_OK, "progress_ex run: %s", ldm_last_error());
    CHECK(p.n == 8 && p.legacy_calls == 8, "progress_ex calls %d, progress calls %d (want 8 and 8)", p.n, p.legacy_calls);
    CHECK(p.bad_order == 0 && p.bad_fields == 0, "progress_ex: %d ordering and %d field errors", p.bad_order, p.bad_fields);
    CHECK(p.batch_seen[0] == 4 && p.batch_seen[1] == 4, "batch indexes %d/%d", p.batch_seen[0], p.batch_seen[1]);
    CHECK(p.info_size == sizeof(ldm_progress_info), "info struct_size %zu", p.info_size);
    CHECK(p.last_elapsed > 0.0, "elapsed never grew: %g", p.last_elapsed);
    printf("  progress_ex: 8 calls over a batch of 2, elapsed at the end %.3f s\n", p.last_elapsed);
    ldm_image_destroy(imgs[0]);
    ldm_image_destroy(imgs[1]);

    /* progress_ex cancels like progress. */
    small(&tp);
    int calls = 0;
    tp.progress_ex = ex_cancel;
    tp.user_data = &calls;
    ldm_image *img = NULL;
    st = ldm_txt2img(ctx, m, &tp, &img);
    CHECK(st == LDM_ERR_CANCELLED && img == NULL && calls == 2, "progress_ex cancel: %s, %d calls",
          ldm_status_string(st), calls);

    /* A caller of the first layout (struct_size up to user_data) gets no extended callbacks. */
    small(&tp);
    tp.struct_size = offsetof(ldm_txt2img_params, progress_ex);
    tp.progress_ex = ex_cancel; /* would cancel at step 2 if it were read */
    tp.preview = count_preview;
    calls = 0;
    tp.user_data = &calls;
    st = ldm_txt2img(ctx, m, &tp, &img);
    CHECK(st == LDM_OK && img && calls == 0, "layout-1 struct_size: %s, %d extended calls", ldm_status_string(st), calls);
    ldm_image_destroy(img);
    img = NULL;
    tp.struct_size = offsetof(ldm_txt2img_params, progress_ex) + 4; /* cuts a field: refused */
    st = ldm_txt2img(ctx, m, &tp, &img);
    CHECK(st == LDM_ERR_INVALID_ARG && img == NULL, "struct_size between layouts: %s", ldm_status_string(st));
}

/* ---- preview ----------------------------------------------------------------------------- */

#define MAXSTEPS 8
typedef struct {
    int n;
    int32_t steps[MAXSTEPS];
    uint8_t rgb[MAXSTEPS][8 * 8 * 3];
    int bad_shape;
    int n_x0;
    float x0[MAXSTEPS][256];
} preview_probe;

static void on_preview(const ldm_preview_image *pv, void *user) {
    preview_probe *p = user;
    if (pv->width != 8 || pv->height != 8 || pv->stride != 24 || pv->struct_size != sizeof *pv || p->n == MAXSTEPS) {
        p->bad_shape++;
        return;
    }
    p->steps[p->n] = pv->step;
    for (int y = 0; y < 8; y++) memcpy(p->rgb[p->n] + y * 24, pv->rgb + y * pv->stride, 24);
    p->n++;
}

static void on_trace(void *user, const char *name, const float *data, size_t count) {
    preview_probe *p = user;
    if ((strcmp(name, "denoised_steps") == 0 || strcmp(name, "pred_x0_steps") == 0) && count == 256 && p->n_x0 < MAXSTEPS)
        memcpy(p->x0[p->n_x0++], data, sizeof p->x0[0]);
}

/* Independent projection in double: ComfyUI comfy/latent_formats.py SD15.latent_rgb_factors. */
static const double F[4][3] = {
    {0.3512, 0.2297, 0.3227}, {0.3250, 0.4974, 0.2350}, {-0.2829, 0.1762, 0.2721}, {-0.2120, -0.2616, -0.7177}};

static int max_preview_error(const float *x0, const uint8_t *rgb) {
    int worst = 0;
    for (int i = 0; i < 64; i++)
        for (int k = 0; k < 3; k++) {
            double v = 0.0;
            for (int c = 0; c < 4; c++) v += x0[c * 64 + i] * F[c][k];
            v = fmin(fmax((v + 1.0) / 2.0, 0.0), 1.0) * 255.0;
            int want = (int)lrint(v), d = abs(want - rgb[i * 3 + k]);
            if (d > worst) worst = d;
        }
    return worst;
}

static void test_preview(ldm_context *ctx, ldm_model *m) {
    static const char *const samplers[] = {"euler", "ddim"};
    for (int si = 0; si < 2; si++) {
        for (int every = 1; every <= 2; every++) {
            preview_probe p;
            memset(&p, 0, sizeof p);
            ldm_rng rng;
            ldm_rng_init(&rng, LDM_RNG_KIND_PHILOX, 7);
            ldm_gen g = {.prompt = PROMPT, .width = SIDE, .height = SIDE, .steps = 5, .cfg_scale = 7.5f,
                         .sampler = sampler_find(samplers[si]), .rng = &rng, .trace = on_trace, .trace_user = &p,
                         .preview = on_preview, .user_data = &p, .preview_interval = every};
            ldm_status st = pipeline_txt2img(ctx, m, &g);
            CHECK(st == LDM_OK, "preview run %s: %s", samplers[si], ldm_last_error());
            /* every step (interval 1); steps 2, 4 and the last, 5 (interval 2) */
            int want = every == 1 ? 5 : 3;
            CHECK(p.n == want && p.bad_shape == 0 && p.n_x0 == 5, "%s interval %d: %d previews (want %d), %d bad, %d x0",
                  samplers[si], every, p.n, want, p.bad_shape, p.n_x0);
            int worst = 0, nonflat = 0;
            for (int i = 0; i < p.n; i++) {
                int step = p.steps[i];
                CHECK(step >= 1 && step <= 5 && (step % every == 0 || step == 5), "preview at step %d", step);
                if (step < 1 || step > 5 || step > p.n_x0) continue;
                int e = max_preview_error(p.x0[step - 1], p.rgb[i]);
                if (e > worst) worst = e;
                for (int j = 1; j < 192; j++) nonflat |= p.rgb[i][j] != p.rgb[i][0];
            }
            CHECK(worst <= 1, "%s: preview differs from the projection of the denoised estimate by %d levels",
                  samplers[si], worst);
            CHECK(nonflat, "%s: every preview is a flat colour", samplers[si]);
            if (every == 1)
                printf("  preview %s: %d previews of 8x8, max |preview - projection(x0)| = %d level(s)\n", samplers[si],
                       p.n, worst);
        }
    }

    /* Through the public API, img2img: previews and progress count t_enc = int(0.6 * 5) = 3. */
    uint8_t init[BYTES];
    for (int i = 0; i < BYTES; i++) init[i] = (uint8_t)(i * 7 % 251);
    ldm_img2img_params ip;
    ldm_img2img_params_init(&ip);
    ip.prompt = PROMPT;
    ip.init_image = init;
    ip.init_width = ip.init_height = SIDE;
    ip.steps = 5;
    ip.strength = 0.6;
    preview_probe p;
    memset(&p, 0, sizeof p);
    ip.preview = on_preview;
    ip.user_data = &p;
    ldm_image *img = NULL;
    ldm_status st = ldm_img2img(ctx, m, &ip, &img);
    CHECK(st == LDM_OK && img, "img2img with previews: %s", ldm_last_error());
    CHECK(p.n == 3 && p.steps[2] == 3, "img2img: %d previews (want 3 = int(0.6 * 5))", p.n);
    if (img) CHECK(ldm_image_width(img) == SIDE && ldm_image_height(img) == SIDE, "img2img output size");
    ldm_image_destroy(img);
}

/* ---- img2img arguments ------------------------------------------------------------------- */

static void test_img2img_args(ldm_context *ctx, ldm_model *m) {
    static uint8_t init[72 * 64 * 3 + 64];
    ldm_img2img_params ip;
    ldm_image *img = NULL;
    ldm_status st;
#define BAD(field_assign, want, label)                                                              \
    do {                                                                                            \
        ldm_img2img_params_init(&ip);                                                               \
        ip.prompt = PROMPT;                                                                         \
        ip.init_image = init;                                                                       \
        ip.init_width = ip.init_height = 64;                                                        \
        ip.steps = 2;                                                                               \
        field_assign;                                                                               \
        img = (ldm_image *)&ip;                                                                     \
        st = ldm_img2img(ctx, m, &ip, &img);                                                        \
        /* a bad struct_size leaves the array alone: its length is in the unreadable struct */   \
        CHECK(st == (want) && (img == NULL || ip.struct_size == 8), "img2img %s: %s (%s)", label,    \
              ldm_status_string(st), ldm_last_error());                                             \
    } while (0)
    BAD(ip.init_image = NULL, LDM_ERR_INVALID_ARG, "NULL init");
    BAD(ip.init_width = 60, LDM_ERR_INVALID_ARG, "width 60");
    BAD(ip.init_height = 0, LDM_ERR_INVALID_ARG, "height 0");
    BAD(ip.strength = 1.5, LDM_ERR_INVALID_ARG, "strength 1.5");
    BAD(ip.strength = -0.1, LDM_ERR_INVALID_ARG, "strength -0.1");
    BAD(ip.strength = NAN, LDM_ERR_INVALID_ARG, "strength NaN");
    BAD(ip.init_stride = 100, LDM_ERR_INVALID_ARG, "stride < row");
    BAD(ip.sampler = "nope", LDM_ERR_UNSUPPORTED, "unknown sampler");
    BAD(ip.prompt = NULL, LDM_ERR_INVALID_ARG, "NULL prompt");
    BAD(ip.struct_size = 8, LDM_ERR_INVALID_ARG, "struct_size 8");
#undef BAD
    /* A padded stride reads the same pixels as a packed copy. */
    uint8_t packed[64 * 64 * 3];
    for (int y = 0; y < 64; y++)
        for (int x = 0; x < 64 * 3; x++) {
            uint8_t v = (uint8_t)((x * 3 + y * 5) & 255);
            packed[y * 192 + x] = v;
            init[y * 216 + x] = v;
        }
    ldm_image *a = NULL, *b = NULL;
    ldm_img2img_params_init(&ip);
    ip.prompt = PROMPT;
    ip.init_width = ip.init_height = 64;
    ip.steps = 2;
    ip.strength = 1.0;
    ip.init_image = packed;
    st = ldm_img2img(ctx, m, &ip, &a);
    ip.init_image = init;
    ip.init_stride = 216;
    if (st == LDM_OK) st = ldm_img2img(ctx, m, &ip, &b);
    CHECK(st == LDM_OK && a && b && memcmp(ldm_image_data(a), ldm_image_data(b), BYTES) == 0,
          "img2img with a padded stride: %s", ldm_last_error());
    ldm_image_destroy(a);
    ldm_image_destroy(b);
    /* strength 0: no step, the VAE's reconstruction of the init image; progress never called. */
    ip.strength = 0.0;
    ip.progress = legacy_progress;
    ex_probe probe = {0};
    ip.user_data = &probe;
    st = ldm_img2img(ctx, m, &ip, &a);
    CHECK(st == LDM_OK && a && probe.legacy_calls == 0, "img2img strength 0: %s, %d progress calls",
          ldm_last_error(), probe.legacy_calls);
    ldm_image_destroy(a);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_control DATA_DIR\n");
        return 2;
    }
    char model[4096], config[4096];
    snprintf(model, sizeof model, "%s/models/sd1-tiny.safetensors", argv[1]);
    snprintf(config, sizeof config, "%s/models/sd1-tiny.json", argv[1]);
    ldm_context_params cp;
    ldm_context_params_init(&cp);
    cp.backend = LDM_BACKEND_CPU;
    cp.n_threads = 1; /* the tiny model gains nothing from threads on a shared machine */
    ldm_context *ctx = NULL;
    ldm_model *m = NULL;
    ldm_model_params mp;
    ldm_model_params_init(&mp);
    mp.config_path = config;
    if (ldm_context_create(&cp, &ctx) != LDM_OK || ldm_model_load(ctx, model, &mp, &m) != LDM_OK) {
        fprintf(stderr, "setup: %s\n", ldm_last_error());
        return 1;
    }
    test_cancel(ctx, m, model, config);
    test_progress_ex(ctx, m);
    test_preview(ctx, m);
    test_img2img_args(ctx, m);
    ldm_model_destroy(m);
    ldm_context_destroy(ctx);
    if (g_failures) {
        fprintf(stderr, "%d of %d checks failed\n", g_failures, g_checks);
        return 1;
    }
    printf("control: all %d checks passed\n", g_checks);
    return 0;
}
