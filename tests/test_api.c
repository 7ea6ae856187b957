/* The public C ABI, exercised through the shared library exactly as a user links it (only
 * <ldm/ldm.h>, no internals): version, status names, NULL handling, struct_size versioning,
 * backends, model loading, samplers, txt2img (determinism, cancellation, bad arguments), image
 * copies and the component handles.
 * Usage: test_api DATA_DIR   (DATA_DIR/models/sd1-tiny.safetensors and sd1-tiny.json) */
#include <ldm/ldm.h>

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

/* An error with the given status and a message containing `needle` (if not NULL). */
static void check_err(const char *expr, int line, ldm_status got, ldm_status want, const char *needle) {
    const char *e = ldm_last_error();
    g_checks++;
    if (got != want || e == NULL || e[0] == '\0' || (needle && !strstr(e, needle))) {
        fprintf(stderr, "FAIL %s:%d: %s gave %s (%s), expected %s with a message containing '%s'\n", __FILE__, line,
                expr, ldm_status_string(got), e ? e : "NULL", ldm_status_string(want), needle ? needle : "");
        g_failures++;
    }
}
#define CHECK_ERR(call, want, needle) check_err(#call, __LINE__, (call), (want), (needle))

static char g_model_path[4096], g_config_path[4096];

static void test_version(void) {
    CHECK(ldm_version() != NULL && strcmp(ldm_version(), LDM_VERSION_STRING) == 0, "ldm_version %s vs %s",
          ldm_version(), LDM_VERSION_STRING);
    CHECK(ldm_version_number() == LDM_VERSION_NUMBER, "ldm_version_number %d vs %d", ldm_version_number(),
          LDM_VERSION_NUMBER);
    char expect[32];
    snprintf(expect, sizeof expect, "%d.%d.%d", LDM_VERSION_MAJOR, LDM_VERSION_MINOR, LDM_VERSION_PATCH);
    CHECK(strcmp(expect, LDM_VERSION_STRING) == 0, "LDM_VERSION_STRING %s vs %s", LDM_VERSION_STRING, expect);
    CHECK(LDM_VERSION_NUMBER == LDM_VERSION_MAJOR * 10000 + LDM_VERSION_MINOR * 100 + LDM_VERSION_PATCH,
          "LDM_VERSION_NUMBER");
}

static void test_status_strings(void) {
    static const struct {
        ldm_status s;
        const char *name;
        int value;
    } names[] = {
        {LDM_OK, "LDM_OK", 0},
        {LDM_ERR_INVALID_ARG, "LDM_ERR_INVALID_ARG", 1},
        {LDM_ERR_NO_MEMORY, "LDM_ERR_NO_MEMORY", 2},
        {LDM_ERR_IO, "LDM_ERR_IO", 3},
        {LDM_ERR_FORMAT, "LDM_ERR_FORMAT", 4},
        {LDM_ERR_UNSUPPORTED, "LDM_ERR_UNSUPPORTED", 5},
        {LDM_ERR_BACKEND, "LDM_ERR_BACKEND", 6},
        {LDM_ERR_CANCELLED, "LDM_ERR_CANCELLED", 7},
        {LDM_ERR_INTERNAL, "LDM_ERR_INTERNAL", 8},
    };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        CHECK(names[i].s == names[i].value, "%s is pinned to %d", names[i].name, names[i].value);
        const char *got = ldm_status_string(names[i].s);
        CHECK(got && strcmp(got, names[i].name) == 0, "ldm_status_string(%d) = %s", names[i].s, got ? got : "NULL");
    }
    const ldm_status unknown[] = {-1, 9, 100, 1000, INT32_MAX, INT32_MIN};
    for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++) {
        const char *got = ldm_status_string(unknown[i]);
        CHECK(got && strcmp(got, "LDM_ERR_UNKNOWN") == 0, "ldm_status_string(%d) = %s", unknown[i],
              got ? got : "NULL");
    }
    CHECK(ldm_last_error() != NULL, "ldm_last_error never NULL");
}

static void test_null_handling(void) {
    /* Every destroy accepts NULL; every init accepts NULL. */
    ldm_context_destroy(NULL);
    ldm_model_destroy(NULL);
    ldm_conditioner_destroy(NULL);
    ldm_denoiser_destroy(NULL);
    ldm_autoencoder_destroy(NULL);
    ldm_sampler_destroy(NULL);
    ldm_image_destroy(NULL);
    ldm_context_params_init(NULL);
    ldm_model_params_init(NULL);
    ldm_txt2img_params_init(NULL);
    ldm_context_cancel(NULL);

    /* Getters on NULL. */
    CHECK(ldm_context_backend_name(NULL) == NULL, "backend_name(NULL)");
    CHECK(ldm_model_family(NULL) == NULL, "model_family(NULL)");
    CHECK(ldm_model_latent_channels(NULL) == 0 && ldm_model_downscale(NULL) == 0, "model getters(NULL)");
    CHECK(ldm_sampler_name(NULL) == NULL, "sampler_name(NULL)");
    CHECK(ldm_image_width(NULL) == 0 && ldm_image_height(NULL) == 0 && ldm_image_channels(NULL) == 0 &&
              ldm_image_stride(NULL) == 0 && ldm_image_data(NULL) == NULL && ldm_image_seed(NULL) == 0,
          "image getters(NULL)");

    /* NULL out-pointers and NULL required arguments. */
    CHECK_ERR(ldm_context_create(NULL, NULL), LDM_ERR_INVALID_ARG, "out");
    ldm_context_params cp;
    ldm_context_params_init(&cp);
    CHECK_ERR(ldm_context_create(&cp, NULL), LDM_ERR_INVALID_ARG, "out");
    ldm_model *m = (ldm_model *)&cp;
    CHECK_ERR(ldm_model_load(NULL, g_model_path, NULL, &m), LDM_ERR_INVALID_ARG, "ldm_model_load");
    CHECK(m == NULL, "ldm_model_load(NULL ctx) leaves out set");
    CHECK_ERR(ldm_model_load(NULL, g_model_path, NULL, NULL), LDM_ERR_INVALID_ARG, "ldm_model_load");
    ldm_conditioner *c = (ldm_conditioner *)&cp;
    CHECK_ERR(ldm_conditioner_create(NULL, &c), LDM_ERR_INVALID_ARG, "model");
    CHECK(c == NULL, "conditioner out not cleared");
    ldm_denoiser *d = (ldm_denoiser *)&cp;
    CHECK_ERR(ldm_denoiser_create(NULL, &d), LDM_ERR_INVALID_ARG, "model");
    CHECK(d == NULL, "denoiser out not cleared");
    ldm_autoencoder *a = (ldm_autoencoder *)&cp;
    CHECK_ERR(ldm_autoencoder_create(NULL, &a), LDM_ERR_INVALID_ARG, "model");
    CHECK(a == NULL, "autoencoder out not cleared");
    ldm_sampler *s = (ldm_sampler *)&cp;
    CHECK_ERR(ldm_sampler_create(NULL, &s), LDM_ERR_INVALID_ARG, "name");
    CHECK(s == NULL, "sampler out not cleared");
    CHECK_ERR(ldm_sampler_create("euler", NULL), LDM_ERR_INVALID_ARG, "out");
    int32_t tok = 0, width = 0;
    CHECK_ERR(ldm_conditioner_shape(NULL, &tok, &width), LDM_ERR_INVALID_ARG, "NULL");
    float f = 0;
    CHECK_ERR(ldm_conditioner_encode(NULL, NULL, "x", 0, &f, 1), LDM_ERR_INVALID_ARG, "NULL");
    CHECK_ERR(ldm_denoiser_eval(NULL, NULL, 1, 4, 8, 8, &f, &f, 77, &f, &f), LDM_ERR_INVALID_ARG, "NULL");
    CHECK_ERR(ldm_autoencoder_encode(NULL, NULL, 1, 8, 8, &f, &f), LDM_ERR_INVALID_ARG, "NULL");
    CHECK_ERR(ldm_autoencoder_decode(NULL, NULL, 1, 8, 8, &f, &f), LDM_ERR_INVALID_ARG, "NULL");
    ldm_txt2img_params tp;
    ldm_txt2img_params_init(&tp);
    tp.prompt = "x";
    ldm_image *img = NULL;
    CHECK_ERR(ldm_txt2img(NULL, NULL, &tp, &img), LDM_ERR_INVALID_ARG, "required");
    uint8_t px[3];
    CHECK_ERR(ldm_image_copy(NULL, px, 3), LDM_ERR_INVALID_ARG, "NULL");

    const char *const *list = ldm_sampler_list();
    CHECK(list != NULL, "ldm_sampler_list NULL");
    int has_euler = 0, has_ddim = 0, n = 0;
    for (; list && list[n] && n < 100; n++) {
        has_euler |= strcmp(list[n], "euler") == 0;
        has_ddim |= strcmp(list[n], "ddim") == 0;
    }
    CHECK(has_euler && has_ddim && n < 100, "ldm_sampler_list lacks euler/ddim or is not NULL-terminated");
}

static ldm_context *make_ctx(int32_t backend, ldm_status *st) {
    ldm_context_params cp;
    ldm_context_params_init(&cp);
    cp.backend = backend;
    cp.n_threads = 1;
    ldm_context *ctx = NULL;
    *st = ldm_context_create(&cp, &ctx);
    return ctx;
}

static void test_contexts(void) {
    ldm_context_params cp;
    ldm_context_params_init(&cp);
    CHECK(cp.struct_size == sizeof cp, "context params struct_size");
    CHECK(cp.backend == LDM_BACKEND_AUTO && cp.n_threads == 0 && cp.device_index == -1 &&
              cp.log_level == LDM_LOG_WARN && cp.log_fn == NULL && cp.vulkan_fp16_weights == 0,
          "context params defaults");
    /* A caller built before vulkan_fp16_weights existed (struct_size up to log_user_data). */
    {
        ldm_context_params old = cp;
        old.backend = LDM_BACKEND_CPU;
        old.struct_size = offsetof(ldm_context_params, vulkan_fp16_weights);
        ldm_context *octx = NULL;
        CHECK(ldm_context_create(&old, &octx) == LDM_OK && octx != NULL, "context params without vulkan_fp16_weights");
        ldm_context_destroy(octx);
    }

    /* NULL params = defaults. */
    ldm_context *ctx = (ldm_context *)&cp;
    ldm_status st = ldm_context_create(NULL, &ctx);
    CHECK(st == LDM_OK && ctx != NULL, "ldm_context_create(NULL params): %s", ldm_last_error());
    if (ctx) CHECK(strcmp(ldm_context_backend_name(ctx), "cpu") == 0 ||
                       strcmp(ldm_context_backend_name(ctx), "vulkan") == 0,
                   "backend name %s", ldm_context_backend_name(ctx));
    ldm_context_destroy(ctx);

    ctx = make_ctx(LDM_BACKEND_CPU, &st);
    CHECK(st == LDM_OK && ctx && strcmp(ldm_context_backend_name(ctx), "cpu") == 0, "CPU context: %s",
          ldm_last_error());
    ldm_context_cancel(ctx); /* harmless with no call running */
    ldm_context_destroy(ctx);

    /* Vulkan: this build has no Vulkan backend, so LDM_ERR_BACKEND (a later build with one may
     * succeed, then the context must say so). */
    ctx = make_ctx(LDM_BACKEND_VULKAN, &st);
    if (st == LDM_OK) {
        CHECK(ctx && strcmp(ldm_context_backend_name(ctx), "vulkan") == 0, "VULKAN context runs on %s",
              ctx ? ldm_context_backend_name(ctx) : "NULL");
    } else {
        CHECK(st == LDM_ERR_BACKEND, "VULKAN context gave %s", ldm_status_string(st));
        CHECK(ctx == NULL && ldm_last_error()[0], "VULKAN: out-pointer or message");
        printf("  vulkan: %s (%s)\n", ldm_status_string(st), ldm_last_error());
    }
    ldm_context_destroy(ctx);

    /* Out-of-range fields. */
    ctx = make_ctx(99, &st);
    CHECK(st == LDM_ERR_INVALID_ARG && ctx == NULL && ldm_last_error()[0], "backend 99 gave %s",
          ldm_status_string(st));
    cp.n_threads = -1;
    CHECK_ERR(ldm_context_create(&cp, &ctx), LDM_ERR_INVALID_ARG, "n_threads");
    CHECK(ctx == NULL, "bad n_threads: out-pointer");
    ldm_context_params_init(&cp);

    /* struct_size too small, and a larger one from a newer caller. */
    cp.struct_size = 4;
    CHECK_ERR(ldm_context_create(&cp, &ctx), LDM_ERR_INVALID_ARG, "struct_size");
    CHECK(ctx == NULL, "small struct_size: out-pointer");
    cp.struct_size = 0;
    CHECK_ERR(ldm_context_create(&cp, &ctx), LDM_ERR_INVALID_ARG, "struct_size");
    struct {
        ldm_context_params p;
        unsigned char future[64];
    } big;
    memset(&big, 0xab, sizeof big);
    ldm_context_params_init(&big.p);
    big.p.struct_size = sizeof big;
    big.p.backend = LDM_BACKEND_CPU;
    big.p.n_threads = 1;
    st = ldm_context_create(&big.p, &ctx);
    CHECK(st == LDM_OK && ctx != NULL, "larger context struct_size refused: %s", ldm_last_error());
    ldm_context_destroy(ctx);
}

/* ---- model -------------------------------------------------------------------------------- */

static ldm_model *load_model(ldm_context *ctx) {
    ldm_model_params mp;
    ldm_model_params_init(&mp);
    CHECK(mp.struct_size == sizeof mp && mp.config_path == NULL && mp.prediction == LDM_PREDICTION_AUTO,
          "model params defaults");
    mp.config_path = g_config_path;
    ldm_model *m = NULL;
    ldm_status st = ldm_model_load(ctx, g_model_path, &mp, &m);
    CHECK(st == LDM_OK && m != NULL, "ldm_model_load(sd1-tiny): %s %s", ldm_status_string(st), ldm_last_error());
    if (!m) return NULL;
    CHECK(ldm_model_family(m) && strcmp(ldm_model_family(m), "sd1") == 0, "family %s",
          ldm_model_family(m) ? ldm_model_family(m) : "NULL");
    CHECK(ldm_model_latent_channels(m) == 4, "latent channels %d", ldm_model_latent_channels(m));
    CHECK(ldm_model_downscale(m) == 8, "downscale %d", ldm_model_downscale(m));
    return m;
}

static void test_model_params(ldm_context *ctx) {
    ldm_model_params mp;
    ldm_model_params_init(&mp);
    ldm_model *m = (ldm_model *)&mp;
    mp.struct_size = 4;
    CHECK_ERR(ldm_model_load(ctx, g_model_path, &mp, &m), LDM_ERR_INVALID_ARG, "struct_size");
    CHECK(m == NULL, "small model struct_size: out-pointer");
    CHECK_ERR(ldm_model_load(ctx, NULL, NULL, &m), LDM_ERR_INVALID_ARG, "path");
    ldm_model_params_init(&mp);
    mp.prediction = 7;
    CHECK_ERR(ldm_model_load(ctx, g_model_path, &mp, &m), LDM_ERR_INVALID_ARG, "prediction");
    CHECK(m == NULL, "bad prediction: out-pointer");

    /* A newer caller's larger struct (unknown trailing fields) is accepted. */
    struct {
        ldm_model_params p;
        unsigned char future[40];
    } big;
    memset(&big, 0x5a, sizeof big);
    ldm_model_params_init(&big.p);
    big.p.struct_size = sizeof big;
    big.p.config_path = g_config_path;
    ldm_status st = ldm_model_load(ctx, g_model_path, &big.p, &m);
    CHECK(st == LDM_OK && m != NULL, "larger model struct_size refused: %s", ldm_last_error());
    ldm_model_destroy(m);

    /* Loading without the config works too (SD1 defaults). */
    st = ldm_model_load(ctx, g_model_path, NULL, &m);
    CHECK(st == LDM_OK && m != NULL, "load without config: %s", ldm_last_error());
    ldm_model_destroy(m);

    CHECK_ERR(ldm_model_load(ctx, "/nonexistent/dir/model.safetensors", NULL, &m), LDM_ERR_IO, "nonexistent");
    CHECK(m == NULL, "missing file: out-pointer");
}

static void test_samplers(void) {
    static const char *const ok_names[] = {"euler", "ddim", "EULER"};
    for (size_t i = 0; i < sizeof ok_names / sizeof *ok_names; i++) {
        ldm_sampler *s = NULL;
        ldm_status st = ldm_sampler_create(ok_names[i], &s);
        CHECK(st == LDM_OK && s != NULL, "ldm_sampler_create(%s): %s", ok_names[i], ldm_last_error());
        if (s) {
            const char *name = ldm_sampler_name(s);
            CHECK(name && (strcmp(name, "euler") == 0 || strcmp(name, "ddim") == 0), "sampler name %s",
                  name ? name : "NULL");
        }
        ldm_sampler_destroy(s);
    }
    /* Every listed name creates a sampler of that canonical name. */
    for (const char *const *l = ldm_sampler_list(); l && *l; l++) {
        ldm_sampler *s = NULL;
        ldm_status st = ldm_sampler_create(*l, &s);
        CHECK(st == LDM_OK && s && ldm_sampler_name(s) && strcmp(ldm_sampler_name(s), *l) == 0,
              "listed sampler '%s': %s", *l, ldm_last_error());
        ldm_sampler_destroy(s);
    }
    ldm_sampler *s = (ldm_sampler *)&g_failures;
    CHECK_ERR(ldm_sampler_create("nope", &s), LDM_ERR_UNSUPPORTED, "nope");
    CHECK(s == NULL, "unknown sampler: out-pointer");
    CHECK_ERR(ldm_sampler_create("", &s), LDM_ERR_UNSUPPORTED, NULL);
}

/* ---- txt2img ------------------------------------------------------------------------------ */

static void small_params(ldm_txt2img_params *tp) {
    ldm_txt2img_params_init(tp);
    tp->prompt = "a photograph of an astronaut riding a horse";
    tp->width = tp->height = 64;
    tp->steps = 2;
}

static ldm_image *run_one(ldm_context *ctx, ldm_model *m, const ldm_txt2img_params *tp, ldm_status *st) {
    ldm_image *img = NULL;
    *st = ldm_txt2img(ctx, m, tp, &img);
    return img;
}

static int cancel_at_step1(int32_t step, int32_t total, void *user) {
    int *calls = user;
    (*calls)++;
    (void)total;
    return step == 1;
}

static int count_steps(int32_t step, int32_t total, void *user) {
    int *seen = user;
    if (step == seen[0] + 1 && total == 2) seen[0] = step;
    else seen[1]++; /* out of order */
    return 0;
}

typedef struct {
    ldm_context *ctx;
    atomic_int started, cancelled;
} cancel_state;

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Holds the sampler on step 1 until the other thread has called ldm_context_cancel(), so the
 * cancellation lands mid-run whatever the machine's speed. */
static int hold_for_cancel(int32_t step, int32_t total, void *user) {
    cancel_state *cs = user;
    (void)total;
    if (step == 1) {
        atomic_store(&cs->started, 1);
        for (int i = 0; i < 10000 && !atomic_load(&cs->cancelled); i++) sleep_ms(1);
    }
    return 0;
}

static void *canceller(void *arg) {
    cancel_state *cs = arg;
    for (int i = 0; i < 60000 && !atomic_load(&cs->started); i++) sleep_ms(1);
    ldm_context_cancel(cs->ctx);
    atomic_store(&cs->cancelled, 1);
    return NULL;
}

static void test_txt2img(ldm_context *ctx, ldm_model *m) {
    ldm_txt2img_params tp;
    small_params(&tp);
    int seen[2] = {0, 0};
    tp.progress = count_steps;
    tp.user_data = seen;
    ldm_status st;
    ldm_image *a = run_one(ctx, m, &tp, &st);
    CHECK(st == LDM_OK && a != NULL, "txt2img: %s %s", ldm_status_string(st), ldm_last_error());
    if (!a) return;
    CHECK(seen[0] == 2 && seen[1] == 0, "progress saw steps up to %d, %d out of order", seen[0], seen[1]);
    CHECK(ldm_image_width(a) == 64 && ldm_image_height(a) == 64, "image %dx%d", ldm_image_width(a),
          ldm_image_height(a));
    CHECK(ldm_image_channels(a) == 3, "channels %d", ldm_image_channels(a));
    CHECK(ldm_image_stride(a) == 192, "stride %zu", ldm_image_stride(a));
    CHECK(ldm_image_seed(a) == 42, "seed %llu", (unsigned long long)ldm_image_seed(a));
    CHECK(ldm_image_data(a) != NULL, "image data");

    ldm_image *b = run_one(ctx, m, &tp, &st);
    CHECK(st == LDM_OK && b != NULL, "txt2img again: %s", ldm_last_error());
    if (b) CHECK(memcmp(ldm_image_data(a), ldm_image_data(b), 64 * 192) == 0, "same seed, different bytes");
    ldm_image_destroy(b);

    tp.seed = 43;
    ldm_image *c = run_one(ctx, m, &tp, &st);
    CHECK(st == LDM_OK && c != NULL, "txt2img seed 43: %s", ldm_last_error());
    if (c) {
        CHECK(memcmp(ldm_image_data(a), ldm_image_data(c), 64 * 192) != 0, "another seed, same bytes");
        CHECK(ldm_image_seed(c) == 43, "seed %llu", (unsigned long long)ldm_image_seed(c));
    }
    ldm_image_destroy(c);

    /* Every sampler / scheduler / rng combination the header names runs. */
    static const char *const samplers[] = {"euler", "ddim"};
    static const char *const schedulers[] = {"discrete", "karras"};
    for (int si = 0; si < 2; si++) {
        for (int sc = 0; sc < 2; sc++) {
            small_params(&tp);
            tp.sampler = samplers[si];
            tp.scheduler = schedulers[sc];
            tp.rng = (si + sc) & 1 ? LDM_RNG_CPU : LDM_RNG_CUDA;
            tp.cfg_scale = sc ? 1.0f : 7.5f;
            ldm_image *x = run_one(ctx, m, &tp, &st);
            CHECK(st == LDM_OK && x != NULL, "txt2img %s/%s: %s", samplers[si], schedulers[sc], ldm_last_error());
            ldm_image_destroy(x);
        }
    }

    /* batch_count 2: two images, seeds 42 and 43; the first equals the single run above. */
    small_params(&tp);
    tp.batch_count = 2;
    ldm_image *pair[2] = {NULL, NULL};
    st = ldm_txt2img(ctx, m, &tp, pair);
    CHECK(st == LDM_OK && pair[0] && pair[1], "batch of 2: %s", ldm_last_error());
    if (pair[0] && pair[1]) {
        CHECK(ldm_image_seed(pair[0]) == 42 && ldm_image_seed(pair[1]) == 43, "batch seeds");
        CHECK(memcmp(ldm_image_data(a), ldm_image_data(pair[0]), 64 * 192) == 0, "batch item 0 differs");
    }
    ldm_image_destroy(pair[0]);
    ldm_image_destroy(pair[1]);

    /* ldm_image_copy: a stride smaller than a row fails, a bigger one works (padding untouched). */
    uint8_t *dst = malloc(64 * 200);
    memset(dst, 0xee, 64 * 200);
    CHECK_ERR(ldm_image_copy(a, dst, 191), LDM_ERR_INVALID_ARG, "stride");
    CHECK_ERR(ldm_image_copy(a, dst, 0), LDM_ERR_INVALID_ARG, "stride");
    CHECK(dst[0] == 0xee, "a failed copy wrote pixels");
    st = ldm_image_copy(a, dst, 200);
    CHECK(st == LDM_OK, "copy with stride 200: %s", ldm_last_error());
    int rows_ok = 1, pad_ok = 1;
    for (int y = 0; y < 64; y++) {
        rows_ok &= memcmp(dst + y * 200, ldm_image_data(a) + y * 192, 192) == 0;
        for (int x = 192; x < 200; x++) pad_ok &= dst[y * 200 + x] == 0xee;
    }
    CHECK(rows_ok && pad_ok, "copy with stride 200: rows %d padding %d", rows_ok, pad_ok);
    st = ldm_image_copy(a, dst, 192);
    CHECK(st == LDM_OK && memcmp(dst, ldm_image_data(a), 64 * 192) == 0, "copy with stride 192");
    free(dst);
    ldm_image_destroy(a);

    /* Cancellation by the progress callback. */
    small_params(&tp);
    int calls = 0;
    tp.progress = cancel_at_step1;
    tp.user_data = &calls;
    ldm_image *img = (ldm_image *)&calls;
    CHECK_ERR(ldm_txt2img(ctx, m, &tp, &img), LDM_ERR_CANCELLED, NULL);
    CHECK(img == NULL, "cancelled run returned an image");
    CHECK(calls == 1, "progress called %d times after cancelling", calls);
    tp.batch_count = 3;
    ldm_image *three[3] = {(ldm_image *)&calls, (ldm_image *)&calls, (ldm_image *)&calls};
    calls = 0;
    CHECK_ERR(ldm_txt2img(ctx, m, &tp, three), LDM_ERR_CANCELLED, NULL);
    CHECK(three[0] == NULL && three[1] == NULL && three[2] == NULL, "cancelled batch left images");

    /* Cancellation from another thread during a 20-step run. */
    small_params(&tp);
    tp.steps = 20;
    cancel_state cs;
    cs.ctx = ctx;
    atomic_init(&cs.started, 0);
    atomic_init(&cs.cancelled, 0);
    tp.progress = hold_for_cancel;
    tp.user_data = &cs;
    pthread_t th;
    int perr = pthread_create(&th, NULL, canceller, &cs);
    CHECK(perr == 0, "pthread_create");
    if (perr == 0) {
        img = (ldm_image *)&cs;
        st = ldm_txt2img(ctx, m, &tp, &img);
        atomic_store(&cs.started, 1); /* release the canceller if the run never reached step 1 */
        pthread_join(th, NULL);
        CHECK(st == LDM_ERR_CANCELLED, "ldm_context_cancel from a thread: %s (%s)", ldm_status_string(st),
              ldm_last_error());
        CHECK(img == NULL, "cancelled (thread) run returned an image");
        CHECK(atomic_load(&cs.cancelled) == 1, "the canceller never ran");
    }
    /* The flag is cleared when the next call starts: the context is usable again. */
    small_params(&tp);
    tp.steps = 1;
    img = run_one(ctx, m, &tp, &st);
    CHECK(st == LDM_OK && img, "run after a cancel: %s %s", ldm_status_string(st), ldm_last_error());
    ldm_image_destroy(img);

    /* Bad arguments (0 is not one: it means the model's own size, checked in test_demo_model). */
    const int32_t bad_sizes[] = {63, 100000, -64, 4, -8};
    for (size_t i = 0; i < sizeof bad_sizes / sizeof *bad_sizes; i++) {
        small_params(&tp);
        tp.width = bad_sizes[i];
        img = (ldm_image *)&tp;
        CHECK_ERR(ldm_txt2img(ctx, m, &tp, &img), LDM_ERR_INVALID_ARG, NULL);
        CHECK(img == NULL, "width %d: image", bad_sizes[i]);
        small_params(&tp);
        tp.height = bad_sizes[i];
        CHECK_ERR(ldm_txt2img(ctx, m, &tp, &img), LDM_ERR_INVALID_ARG, NULL);
    }
    small_params(&tp);
    tp.sampler = "nope";
    CHECK_ERR(ldm_txt2img(ctx, m, &tp, &img), LDM_ERR_UNSUPPORTED, "nope");
    CHECK(img == NULL, "unknown sampler: image");
    small_params(&tp);
    tp.scheduler = "nope";
    CHECK_ERR(ldm_txt2img(ctx, m, &tp, &img), LDM_ERR_UNSUPPORTED, "nope");
    small_params(&tp);
    tp.steps = 0;
    CHECK_ERR(ldm_txt2img(ctx, m, &tp, &img), LDM_ERR_INVALID_ARG, "steps");
    small_params(&tp);
    tp.prompt = NULL;
    CHECK_ERR(ldm_txt2img(ctx, m, &tp, &img), LDM_ERR_INVALID_ARG, "prompt");
    small_params(&tp);
    tp.batch_count = 0;
    CHECK_ERR(ldm_txt2img(ctx, m, &tp, &img), LDM_ERR_INVALID_ARG, "batch_count");
    small_params(&tp);
    tp.rng = 5;
    CHECK_ERR(ldm_txt2img(ctx, m, &tp, &img), LDM_ERR_INVALID_ARG, "rng");
    small_params(&tp);
    tp.cfg_scale = NAN;
    CHECK_ERR(ldm_txt2img(ctx, m, &tp, &img), LDM_ERR_INVALID_ARG, NULL);
    small_params(&tp);
    CHECK_ERR(ldm_txt2img(ctx, m, &tp, NULL), LDM_ERR_INVALID_ARG, NULL);
    CHECK_ERR(ldm_txt2img(ctx, NULL, &tp, &img), LDM_ERR_INVALID_ARG, NULL);
    CHECK_ERR(ldm_txt2img(ctx, m, NULL, &img), LDM_ERR_INVALID_ARG, NULL);

    /* struct_size: too small is refused; a larger one from a newer caller works. */
    small_params(&tp);
    tp.struct_size = 4;
    CHECK_ERR(ldm_txt2img(ctx, m, &tp, &img), LDM_ERR_INVALID_ARG, "struct_size");
    tp.struct_size = sizeof tp - 1;
    CHECK_ERR(ldm_txt2img(ctx, m, &tp, &img), LDM_ERR_INVALID_ARG, "struct_size");
    struct {
        ldm_txt2img_params p;
        unsigned char future[128];
    } big;
    memset(&big, 0x77, sizeof big);
    small_params(&big.p);
    big.p.struct_size = sizeof big;
    big.p.steps = 1;
    img = NULL;
    st = ldm_txt2img(ctx, m, &big.p, &img);
    CHECK(st == LDM_OK && img != NULL, "larger txt2img struct_size refused: %s", ldm_last_error());
    ldm_image_destroy(img);
}

/* ---- component handles -------------------------------------------------------------------- */

static int all_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

static void test_components(ldm_context *ctx, ldm_model *m) {
    ldm_conditioner *cond = NULL;
    ldm_denoiser *den = NULL;
    ldm_autoencoder *ae = NULL;
    CHECK(ldm_conditioner_create(m, &cond) == LDM_OK && cond, "conditioner_create: %s", ldm_last_error());
    CHECK(ldm_denoiser_create(m, &den) == LDM_OK && den, "denoiser_create: %s", ldm_last_error());
    CHECK(ldm_autoencoder_create(m, &ae) == LDM_OK && ae, "autoencoder_create: %s", ldm_last_error());
    CHECK_ERR(ldm_conditioner_create(m, NULL), LDM_ERR_INVALID_ARG, "out");
    CHECK_ERR(ldm_denoiser_create(m, NULL), LDM_ERR_INVALID_ARG, "out");
    CHECK_ERR(ldm_autoencoder_create(m, NULL), LDM_ERR_INVALID_ARG, "out");
    if (!cond || !den || !ae) goto out;

    int32_t tokens = 0, width = 0;
    CHECK(ldm_conditioner_shape(cond, &tokens, &width) == LDM_OK, "conditioner_shape");
    CHECK(tokens == 77 && width == 64, "conditioner shape %dx%d", tokens, width);
    CHECK_ERR(ldm_conditioner_shape(cond, NULL, &width), LDM_ERR_INVALID_ARG, NULL);

    size_t ne = (size_t)tokens * width;
    float *emb = malloc(ne * sizeof *emb), *emb2 = malloc(ne * sizeof *emb2);
    ldm_status st = ldm_conditioner_encode(ctx, cond, "a red cube on a table", 0, emb, ne);
    CHECK(st == LDM_OK, "conditioner_encode: %s %s", ldm_status_string(st), ldm_last_error());
    CHECK(all_finite(emb, ne), "embedding not finite");
    st = ldm_conditioner_encode(ctx, cond, "a red cube on a table", 1, emb2, ne);
    CHECK(st == LDM_OK && memcmp(emb, emb2, ne * sizeof *emb) == 0, "clip_skip 0 and 1 differ: %s",
          ldm_last_error());
    st = ldm_conditioner_encode(ctx, cond, "a red cube on a table", 2, emb2, ne);
    CHECK(st == LDM_OK && memcmp(emb, emb2, ne * sizeof *emb) != 0, "clip_skip 2 equals 1: %s", ldm_last_error());
    st = ldm_conditioner_encode(ctx, cond, "", 0, emb2, ne);
    CHECK(st == LDM_OK, "encode of an empty prompt: %s", ldm_last_error());
    CHECK_ERR(ldm_conditioner_encode(ctx, cond, "x", 0, emb2, ne - 1), LDM_ERR_INVALID_ARG, NULL);
    CHECK_ERR(ldm_conditioner_encode(ctx, cond, "x", -1, emb2, ne), LDM_ERR_INVALID_ARG, "clip_skip");
    CHECK_ERR(ldm_conditioner_encode(ctx, cond, NULL, 0, emb2, ne), LDM_ERR_INVALID_ARG, NULL);
    CHECK_ERR(ldm_conditioner_encode(ctx, cond, "x", 0, NULL, ne), LDM_ERR_INVALID_ARG, NULL);

    /* One denoiser evaluation on an 8x8 latent. */
    const int h = 8, w = 8, c = 4;
    size_t nl = (size_t)c * h * w;
    float *x = malloc(nl * sizeof *x), *eps = malloc(nl * sizeof *eps);
    for (size_t i = 0; i < nl; i++) x[i] = (float)sin((double)i * 0.37);
    float t = 500.0f;
    st = ldm_denoiser_eval(ctx, den, 1, c, h, w, x, &t, tokens, emb, eps);
    CHECK(st == LDM_OK, "denoiser_eval: %s %s", ldm_status_string(st), ldm_last_error());
    CHECK(all_finite(eps, nl), "denoiser output not finite");
    CHECK_ERR(ldm_denoiser_eval(ctx, den, 1, 3, h, w, x, &t, tokens, emb, eps), LDM_ERR_INVALID_ARG, "channels");
    CHECK_ERR(ldm_denoiser_eval(ctx, den, 0, c, h, w, x, &t, tokens, emb, eps), LDM_ERR_INVALID_ARG, NULL);
    CHECK_ERR(ldm_denoiser_eval(ctx, den, 1, c, 0, w, x, &t, tokens, emb, eps), LDM_ERR_INVALID_ARG, NULL);
    CHECK_ERR(ldm_denoiser_eval(ctx, den, 1, c, h, w, x, &t, 0, emb, eps), LDM_ERR_INVALID_ARG, NULL);
    CHECK_ERR(ldm_denoiser_eval(ctx, den, 1, c, h, w, NULL, &t, tokens, emb, eps), LDM_ERR_INVALID_ARG, NULL);

    /* Encode a 64x64 image and decode it back. */
    const int H = 64, W = 64;
    size_t npx = (size_t)3 * H * W;
    float *image = malloc(npx * sizeof *image), *back = malloc(npx * sizeof *back);
    for (int ch = 0; ch < 3; ch++)
        for (int y = 0; y < H; y++)
            for (int xx = 0; xx < W; xx++)
                image[((size_t)ch * H + y) * W + xx] = (float)((xx + y + 10 * ch) % 64) / 32.0f - 1.0f;
    float *lat = malloc(nl * sizeof *lat);
    st = ldm_autoencoder_encode(ctx, ae, 1, H, W, image, lat);
    CHECK(st == LDM_OK, "autoencoder_encode: %s %s", ldm_status_string(st), ldm_last_error());
    CHECK(all_finite(lat, nl), "latent not finite");
    st = ldm_autoencoder_decode(ctx, ae, 1, h, w, lat, back);
    CHECK(st == LDM_OK, "autoencoder_decode: %s %s", ldm_status_string(st), ldm_last_error());
    CHECK(all_finite(back, npx), "decoded image not finite");
    CHECK_ERR(ldm_autoencoder_encode(ctx, ae, 1, 63, W, image, lat), LDM_ERR_INVALID_ARG, "multiple");
    CHECK_ERR(ldm_autoencoder_encode(ctx, ae, 0, H, W, image, lat), LDM_ERR_INVALID_ARG, NULL);
    CHECK_ERR(ldm_autoencoder_decode(ctx, ae, 1, 0, w, lat, back), LDM_ERR_INVALID_ARG, NULL);
    CHECK_ERR(ldm_autoencoder_decode(ctx, ae, 1, h, w, NULL, back), LDM_ERR_INVALID_ARG, NULL);
    free(image);
    free(back);
    free(lat);
    free(x);
    free(eps);
    free(emb);
    free(emb2);
out:
    ldm_conditioner_destroy(cond);
    ldm_denoiser_destroy(den);
    ldm_autoencoder_destroy(ae);
}

/* Two contexts on two threads share one model (the model is immutable after loading). */
typedef struct {
    ldm_model *m;
    ldm_status st;
    uint8_t pixels[64 * 192];
} shared_job;

static void *shared_worker(void *arg) {
    shared_job *j = arg;
    ldm_context *ctx = NULL;
    ldm_context_params cp;
    ldm_context_params_init(&cp);
    cp.backend = LDM_BACKEND_CPU;
    cp.n_threads = 1;
    j->st = ldm_context_create(&cp, &ctx);
    if (j->st) return NULL;
    ldm_txt2img_params tp;
    small_params(&tp);
    ldm_image *img = NULL;
    j->st = ldm_txt2img(ctx, j->m, &tp, &img);
    if (!j->st) j->st = ldm_image_copy(img, j->pixels, 192);
    ldm_image_destroy(img);
    ldm_context_destroy(ctx);
    return NULL;
}

static void test_shared_model(ldm_model *m) {
    static shared_job jobs[2];
    pthread_t th[2];
    int started[2];
    for (int i = 0; i < 2; i++) {
        jobs[i].m = m;
        jobs[i].st = LDM_ERR_INTERNAL;
        started[i] = pthread_create(&th[i], NULL, shared_worker, &jobs[i]) == 0;
        CHECK(started[i], "pthread_create");
    }
    for (int i = 0; i < 2; i++)
        if (started[i]) pthread_join(th[i], NULL);
    CHECK(jobs[0].st == LDM_OK && jobs[1].st == LDM_OK, "shared model runs: %s %s", ldm_status_string(jobs[0].st),
          ldm_status_string(jobs[1].st));
    CHECK(memcmp(jobs[0].pixels, jobs[1].pixels, sizeof jobs[0].pixels) == 0, "two threads, different pixels");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s DATA_DIR\n", argv[0]);
        return 2;
    }
    snprintf(g_model_path, sizeof g_model_path, "%s/models/sd1-tiny.safetensors", argv[1]);
    snprintf(g_config_path, sizeof g_config_path, "%s/models/sd1-tiny.json", argv[1]);

    printf("version, status strings, NULL handling\n");
    test_version();
    test_status_strings();
    test_null_handling();
    printf("contexts\n");
    test_contexts();
    test_samplers();

    ldm_status st;
    ldm_context *ctx = make_ctx(LDM_BACKEND_CPU, &st);
    CHECK(st == LDM_OK && ctx, "context: %s", ldm_last_error());
    if (!ctx) return 1;
    printf("model\n");
    test_model_params(ctx);
    ldm_model *m = load_model(ctx);
    if (m) {
        printf("txt2img\n");
        test_txt2img(ctx, m);
        printf("components\n");
        test_components(ctx, m);
        printf("shared model\n");
        test_shared_model(m);
    }
    ldm_model_destroy(m);
    ldm_context_destroy(ctx);
    printf("%d checks, %d failures\n", g_checks, g_failures);
    return g_failures ? 1 : 0;
}
