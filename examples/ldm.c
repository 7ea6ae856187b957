/*
 * ldm: the command-line front end of libldm.
 *
 *   ldm txt2img -m model.safetensors -p "a photo of a cat" -o cat.png
 *   ldm img2img -m model.safetensors -i cat.png --strength 0.6 -p "a photo of a tiger" -o tiger.png
 *   ldm upscale -m x4-upscaler-ema.safetensors -i low.png -o high.png --noise-level 20
 *   ldm info model.safetensors
 *   ldm --list-samplers | --list-devices | --help | --version
 *
 * It uses only the public API (ldm/ldm.h), so it doubles as an example of that API. Exit
 * statuses: 0 success, 1 library or file failure, 2 usage error, 130 interrupted (Ctrl-C).
 * Batch outputs: the first image keeps the -o name, image i (i >= 1) gets "_i" before the
 * extension (out.png, out_1.png, out_2.png, ...).
 */
#include <assert.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ldm/ldm.h>

#include "cli_args.h"
#include "png_io.h"
#include "progress.h"

/* ---------------------------------------------------------------------------------------------
 * Ctrl-C. The handler asks the running library call to stop (ldm_context_cancel is the one
 * function allowed on a context from elsewhere) and records the fact, so that the program
 * unwinds normally — freeing everything and exiting 130 — instead of dying mid-write.
 *
 * The context pointer is atomic rather than merely volatile because the signal may be handled
 * on one of the library's worker threads, concurrently with the main thread; g_in_handler lets
 * the main thread wait out such a handler before it destroys the context (unpublish_context).
 * ------------------------------------------------------------------------------------------- */
static_assert(ATOMIC_POINTER_LOCK_FREE == 2 && ATOMIC_INT_LOCK_FREE == 2,
              "lock-free atomics are needed in a signal handler");
static _Atomic(ldm_context *) g_cancel_ctx;
static atomic_int g_in_handler;
static volatile sig_atomic_t g_interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    g_interrupted = 1;
    atomic_fetch_add(&g_in_handler, 1); /* before reading the pointer: see unpublish_context */
    ldm_context *ctx = atomic_load(&g_cancel_ctx);
    if (ctx != NULL) {
        ldm_context_cancel(ctx);
    }
    atomic_fetch_sub(&g_in_handler, 1);
    /* write() is async-signal-safe, stdio is not. The leading newline ends a drawn bar. */
    static const char msg[] = "\nldm: interrupted, stopping (press Ctrl-C again to force)\n";
    if (write(STDERR_FILENO, msg, sizeof msg - 1) < 0) {
        /* nothing useful to do from a signal handler */
    }
}

/* SA_RESETHAND: a second Ctrl-C gets the default action, so a call that does not reach a
 * cancellation point soon can still be killed. A SIGINT that was ignored when ldm started
 * (nohup, a background job of a non-interactive shell) stays ignored, as the caller meant. */
static void install_sigint(void)
{
    struct sigaction sa;
    if (sigaction(SIGINT, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN) {
        return;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGINT, &sa, NULL);
}

/* After this returns no handler can still be using ctx: one that read the pointer before it
 * was cleared had already raised g_in_handler (sequentially consistent order), so waiting for
 * the count to drop covers it, and later ones read NULL. */
static void unpublish_context(void)
{
    atomic_store(&g_cancel_ctx, NULL);
    while (atomic_load(&g_in_handler) != 0) {
        sched_yield();
    }
}

static int interrupted_exit(void)
{
    fputs("ldm: interrupted\n", stderr);
    return LDM_EXIT_INTERRUPTED;
}

/* ---------------------------------------------------------------------------------------------
 * Reporting
 * ------------------------------------------------------------------------------------------- */

/* "ldm: error: <message> (<STATUS>)". The message is copied first: ldm_last_error()'s pointer
 * is only valid until the next libldm call, and ldm_status_string() is one. */
static int library_failure(ldm_status status, const char *what)
{
    char message[1024];
    const char *last = ldm_last_error();
    snprintf(message, sizeof message, "%s", last != NULL && last[0] != '\0' ? last : what);
    fprintf(stderr, "ldm: error: %s (%s)\n", message, ldm_status_string(status));
    return LDM_EXIT_FAILURE;
}

static void on_log(ldm_log_level level, const char *message, void *user_data)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};
    const char *name = level >= 0 && level <= LDM_LOG_DEBUG ? names[level] : "log";
    progress_break(user_data); /* do not print into the middle of a drawn bar */
    fprintf(stderr, "ldm: %s: %s\n", name, message);
}

/* -v shows INFO, -vv DEBUG; warnings and errors are always shown. */
static int32_t log_level_for(int32_t verbose)
{
    return verbose >= 2 ? LDM_LOG_DEBUG : verbose == 1 ? LDM_LOG_INFO : LDM_LOG_WARN;
}

/* ---------------------------------------------------------------------------------------------
 * Context and model
 * ------------------------------------------------------------------------------------------- */

/* device >= 0 (--device N) names a Vulkan device: the backend becomes Vulkan even when it was
 * auto, so that a missing or unusable device is an error ("device index N requested, K
 * device(s) found") rather than a quiet fall back to the CPU. --backend cpu with --device was
 * refused while parsing. */
static ldm_status open_context(int32_t backend, int32_t device, int32_t threads, int32_t verbose,
                               progress *bar, ldm_context **ctx)
{
    ldm_context_params cp;
    ldm_context_params_init(&cp);
    cp.backend = device >= 0 && backend == LDM_BACKEND_AUTO ? LDM_BACKEND_VULKAN : backend;
    cp.device_index = device;
    cp.n_threads = threads;
    cp.log_level = log_level_for(verbose);
    cp.log_fn = on_log;
    cp.log_user_data = bar;
    return ldm_context_create(&cp, ctx);
}

static ldm_status load_model(ldm_context *ctx, const char *path, const char *config,
                             int32_t prediction, int32_t verbose, ldm_model **model)
{
    ldm_model_params mp;
    ldm_model_params_init(&mp);
    mp.config_path = config;
    mp.prediction = prediction;
    double t0 = progress_now();
    ldm_status st = ldm_model_load(ctx, path, &mp, model);
    if (st == LDM_OK && verbose) {
        fprintf(stderr, "ldm: loaded %s (%s) in %.1fs on %s\n", path, ldm_model_family(*model),
                progress_now() - t0, ldm_context_backend_name(ctx));
    }
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * Paths
 * ------------------------------------------------------------------------------------------- */

#ifndef LDM_MODELS_DIR
#define LDM_MODELS_DIR "/usr/local/share/ldm/models"
#endif
#define DEMO_MODEL "ldm-shapes-64.safetensors"

/* The model used when -m is omitted: the demo model (models/README.md), looked for beside the
 * program first (a build tree keeps it in build/models, the program in build/examples), then
 * where `meson install` puts it. Fills `buf`; returns 0, or -1 when neither exists. */
static int default_model_path(char *buf, size_t size)
{
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash != NULL) {
            *slash = '\0';
            snprintf(buf, size, "%s/../models/" DEMO_MODEL, exe);
            if (access(buf, R_OK) == 0) {
                return 0;
            }
        }
    }
    snprintf(buf, size, "%s/" DEMO_MODEL, LDM_MODELS_DIR);
    return access(buf, R_OK) == 0 ? 0 : -1;
}

/* Offset of the extension's dot in `path` (or its length): only a dot in the last component
 * that is not its first character counts, so "dir.v2/out" and ".hidden" have none. */
static size_t extension_offset(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    const char *dot = strrchr(base, '.');
    return dot != NULL && dot != base ? (size_t)(dot - path) : strlen(path);
}

/* Image `index` of a batch: index 0 keeps `path`, others get "_index" before the extension. */
static char *batch_output_path(const char *path, int index)
{
    size_t len = strlen(path) + 16;
    char *out = malloc(len);
    if (out == NULL) {
        return NULL;
    }
    if (index == 0) {
        snprintf(out, len, "%s", path);
    } else {
        size_t ext = extension_offset(path);
        snprintf(out, len, "%.*s_%d%s", (int)ext, path, index, path + ext);
    }
    return out;
}

/* The checkpoint's file name without directory and extension, as A1111's "Model:" field. */
static void model_name(const char *path, char *buf, size_t size)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t len = extension_offset(path) - (size_t)(base - path);
    snprintf(buf, size, "%.*s", (int)len, base);
}

/* Generation takes minutes; finding out afterwards that the output cannot be written would
 * waste them, so the directory is checked first. */
static int check_output_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (slash == NULL) {
        snprintf(dir, sizeof dir, ".");
    } else {
        snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    }
    if (access(dir, W_OK) != 0) {
        fprintf(stderr, "ldm: error: cannot write to directory '%s': %s\n", dir, strerror(errno));
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * txt2img
 * ------------------------------------------------------------------------------------------- */

/* Unknown samplers are caught before loading a model, with the list of valid names; the
 * canonical name (aliases resolved) is kept for the PNG parameters. */
static int check_sampler(const char *name, char *canonical, size_t size)
{
    ldm_sampler *sampler = NULL;
    if (ldm_sampler_create(name, &sampler) == LDM_OK) {
        snprintf(canonical, size, "%s", ldm_sampler_name(sampler));
        ldm_sampler_destroy(sampler);
        return 0;
    }
    char names[256] = "";
    const char *const *list = ldm_sampler_list();
    for (size_t i = 0; list != NULL && list[i] != NULL; i++) {
        size_t len = strlen(names);
        snprintf(names + len, sizeof names - len, "%s%s", i ? ", " : "", list[i]);
    }
    cli_error("--sampler: unknown sampler '%s' (available: %s)", name, names);
    return -1;
}

/* The "parameters" text in AUTOMATIC1111's format, which its PNG-info tab and many other tools
 * parse. Optional fields appear only when they differ from the default, as A1111 does. */
static char *format_parameters(const txt2img_options *o, const char *sampler, uint64_t seed,
                               int width, int height)
{
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    if (f == NULL) {
        return NULL;
    }
    char model[256];
    model_name(o->model, model, sizeof model);

    fprintf(f, "%s\n", o->prompt);
    if (o->negative_prompt != NULL && o->negative_prompt[0] != '\0') {
        fprintf(f, "Negative prompt: %s\n", o->negative_prompt);
    }
    fprintf(f, "Steps: %d, Sampler: %s, ", o->steps, sampler);
    const char *schedule = cli_scheduler_label(o->scheduler); /* "Karras"; NULL for the default */
    if (schedule != NULL) {
        fprintf(f, "Schedule type: %s, ", schedule);
    }
    fprintf(f, "CFG scale: %g, Seed: %llu, Size: %dx%d, Model: %s, ", (double)o->cfg_scale,
            (unsigned long long)seed, width, height, model);
    if (o->init_image != NULL) {
        fprintf(f, "Denoising strength: %g, ", o->strength);
    }
    if (o->mask != NULL || o->outpaint != NULL) {
        fprintf(f, "Mask blur: %g, ", (double)o->mask_blur);
    }
    if (o->clip_skip > 1) {
        fprintf(f, "Clip skip: %d, ", o->clip_skip);
    }
    if (o->eta != 0.0f) {
        fprintf(f, "Eta: %g, ", (double)o->eta);
    }
    fprintf(f, "RNG: %s", cli_rng_name(o->rng));
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

static int write_image(const txt2img_options *o, const char *sampler, const ldm_image *image,
                       int index)
{
    /* Guards against a library bug; the API promises an RGB image for every batch item. */
    if (image == NULL || ldm_image_channels(image) != 3) {
        cli_error("the library returned no RGB image for batch item %d", index);
        return -1;
    }
    int width = ldm_image_width(image);
    int height = ldm_image_height(image);
    uint64_t seed = ldm_image_seed(image);
    char *path = batch_output_path(o->output, index);
    char *parameters = format_parameters(o, sampler, seed, width, height);
    char software[64];
    snprintf(software, sizeof software, "libldm %s", ldm_version());

    int rc = -1;
    if (path == NULL || parameters == NULL) {
        cli_error("out of memory");
    } else {
        png_io_text texts[] = {{"parameters", parameters}, {"Software", software}};
        char err[512];
        rc = png_io_write_rgb(path, ldm_image_data(image), width, height, ldm_image_stride(image),
                              texts, 2, err, sizeof err);
        if (rc != 0) {
            cli_error("%s", err);
        } else {
            fprintf(stderr, "ldm: wrote %s (seed %llu)\n", path, (unsigned long long)seed);
        }
    }
    free(parameters);
    free(path);
    return rc;
}

/* Progress callback: draws the bar, and cancels if Ctrl-C came when no call was running to see
 * ldm_context_cancel() (the library clears that flag when the next call starts). */
static int on_progress(int32_t step, int32_t total, void *user_data)
{
    progress_update(user_data, step, total);
    return g_interrupted ? 1 : 0;
}

static void fill_txt2img_params(const txt2img_options *o, progress *bar, ldm_txt2img_params *p)
{
    ldm_txt2img_params_init(p);
    p->prompt = o->prompt;
    p->negative_prompt = o->negative_prompt;
    p->width = o->width;
    p->height = o->height;
    p->steps = o->steps;
    p->cfg_scale = o->cfg_scale;
    p->sampler = o->sampler;
    p->scheduler = cli_scheduler_name(o->scheduler);
    p->seed = o->seed.value;
    p->random_seed = o->seed.random;
    p->batch_count = o->batch_count;
    p->clip_skip = o->clip_skip;
    p->rng = o->rng;
    p->eta = o->eta;
    p->max_memory = o->max_memory;
    p->vae_tile = o->vae_tile;
    p->progress = on_progress;
    p->user_data = bar;
}

static void fill_img2img_params(const txt2img_options *o, const png_io_image *init, progress *bar,
                               ldm_img2img_params *p)
{
    ldm_img2img_params_init(p);
    p->prompt = o->prompt;
    p->negative_prompt = o->negative_prompt;
    p->init_image = init->data;
    p->init_width = init->width;
    p->init_height = init->height;
    p->init_stride = (size_t)init->width * 3;
    p->strength = o->strength;
    p->steps = o->steps;
    p->cfg_scale = o->cfg_scale;
    p->sampler = o->sampler;
    p->scheduler = cli_scheduler_name(o->scheduler);
    p->seed = o->seed.value;
    p->random_seed = o->seed.random;
    p->batch_count = o->batch_count;
    p->clip_skip = o->clip_skip;
    p->rng = o->rng;
    p->eta = o->eta;
    p->progress = on_progress;
    p->user_data = bar;
}

static void fill_inpaint_params(const txt2img_options *o, const png_io_image *init,
                                const png_io_image *mask, progress *bar, ldm_inpaint_params *p)
{
    ldm_inpaint_params_init(p);
    p->prompt = o->prompt;
    p->negative_prompt = o->negative_prompt;
    p->image = init->data;
    p->width = init->width;
    p->height = init->height;
    p->image_stride = (size_t)init->width * 3;
    p->mask = mask->data;
    p->mask_channels = mask->channels;
    p->mask_stride = (size_t)mask->width * (size_t)mask->channels;
    p->mask_blur = o->mask_blur;
    p->fill = o->fill;
    p->composite = !o->no_composite;
    p->strength = o->strength;
    p->steps = o->steps;
    p->cfg_scale = o->cfg_scale;
    p->sampler = o->sampler;
    p->scheduler = cli_scheduler_name(o->scheduler);
    p->seed = o->seed.value;
    p->random_seed = o->seed.random;
    p->batch_count = o->batch_count;
    p->clip_skip = o->clip_skip;
    p->rng = o->rng;
    p->eta = o->eta;
    p->progress = on_progress;
    p->user_data = bar;
}

/* Generates and saves; the context and model are owned by the caller. `init` is the img2img
 * and inpaint input (NULL for txt2img), `mask` the inpaint mask (NULL otherwise). */
static int generate(ldm_context *ctx, ldm_model *model, const txt2img_options *o,
                    const char *sampler, const png_io_image *init, const png_io_image *mask,
                    progress *bar)
{
    ldm_image **images = calloc((size_t)o->batch_count, sizeof *images);
    if (images == NULL) {
        cli_error("out of memory");
        return LDM_EXIT_FAILURE;
    }
    double t0 = progress_now();
    progress_init(bar, stderr, o->batch_count);
    ldm_status st;
    if (init != NULL && mask != NULL) {
        ldm_inpaint_params params;
        fill_inpaint_params(o, init, mask, bar, &params);
        st = ldm_inpaint(ctx, model, &params, images);
    } else if (init != NULL) {
        ldm_img2img_params params;
        fill_img2img_params(o, init, bar, &params);
        st = ldm_img2img(ctx, model, &params, images);
    } else {
        ldm_txt2img_params params;
        fill_txt2img_params(o, bar, &params);
        if (o->verbose) {
            uint64_t need = 0;
            int32_t tile = 0;
            if (ldm_memory_estimate(ctx, model, &params, &need, &tile) == LDM_OK) {
                fprintf(stderr, "ldm: expected peak memory %.0f MiB (VAE decode %s", need / 1048576.0,
                        tile > 0 ? "in tiles of " : "whole");
                if (tile > 0) {
                    fprintf(stderr, "%d latent pixels", tile);
                }
                fprintf(stderr, ")\n");
            }
        }
        st = ldm_txt2img(ctx, model, &params, images);
    }
    progress_break(bar);

    int rc = LDM_EXIT_OK;
    if (st == LDM_ERR_CANCELLED || g_interrupted) {
        rc = interrupted_exit();
    } else if (st != LDM_OK) {
        rc = library_failure(st, "image generation failed");
    } else {
        if (o->verbose) {
            fprintf(stderr, "ldm: generated %d image(s) in %.1fs\n", o->batch_count,
                    progress_now() - t0);
        }
        for (int i = 0; i < o->batch_count && rc == LDM_EXIT_OK; i++) {
            if (write_image(o, sampler, images[i], i) != 0) {
                rc = LDM_EXIT_FAILURE;
            }
        }
    }
    for (int i = 0; i < o->batch_count; i++) {
        ldm_image_destroy(images[i]);
    }
    free(images);
    return rc;
}

/* --outpaint: the canvas and mask from ldm_outpaint_prepare replace the image (gray mask). */
static int prepare_outpaint(const txt2img_options *o, png_io_image *init, png_io_image *mask)
{
    ldm_outpaint_params op;
    ldm_outpaint_params_init(&op);
    op.left = o->pad[0];
    op.top = o->pad[1];
    op.right = o->pad[2];
    op.bottom = o->pad[3];
    op.overlap = o->overlap;
    ldm_image *canvas = NULL, *mimg = NULL;
    ldm_status st = ldm_outpaint_prepare(init->data, init->width, init->height,
                                         (size_t)init->width * 3, &op, &canvas, &mimg);
    if (st != LDM_OK) {
        library_failure(st, "cannot prepare the outpainting canvas");
        return -1;
    }
    int w = ldm_image_width(canvas), h = ldm_image_height(canvas);
    uint8_t *rgb = malloc((size_t)w * h * 3), *gray = malloc((size_t)w * h);
    if (rgb == NULL || gray == NULL) {
        free(rgb);
        free(gray);
        ldm_image_destroy(canvas);
        ldm_image_destroy(mimg);
        cli_error("out of memory");
        return -1;
    }
    ldm_image_copy(canvas, rgb, (size_t)w * 3);
    const uint8_t *m = ldm_image_data(mimg);
    for (size_t i = 0; i < (size_t)w * h; i++) {
        gray[i] = m[i * 3];
    }
    ldm_image_destroy(canvas);
    ldm_image_destroy(mimg);
    png_io_image_free(init);
    *init = (png_io_image){.width = w, .height = h, .channels = 3, .data = rgb};
    *mask = (png_io_image){.width = w, .height = h, .channels = 1, .data = gray};
    return 0;
}

/* The inpaint mask: a PNG of the image's size, or made by --outpaint. */
static int read_mask(const txt2img_options *o, png_io_image *init, png_io_image *mask)
{
    if (o->outpaint != NULL) {
        return prepare_outpaint(o, init, mask);
    }
    char err[512];
    if (png_io_read_gray(o->mask, mask, err, sizeof err) != 0) {
        cli_error("%s", err);
        return -1;
    }
    if (mask->width != init->width || mask->height != init->height) {
        cli_error("the mask %s is %dx%d, the image %dx%d: they must be the same size", o->mask,
                  mask->width, mask->height, init->width, init->height);
        png_io_image_free(mask);
        return -1;
    }
    return 0;
}

/* txt2img, img2img and inpaint: argv[0] names the command. */
static int cmd_generate(int argc, char **argv)
{
    txt2img_options o;
    int img2img = strcmp(argv[0], "img2img") == 0;
    int inpaint = strcmp(argv[0], "inpaint") == 0;
    cli_result parsed = img2img   ? img2img_parse(argc, argv, &o)
                        : inpaint ? inpaint_parse(argc, argv, &o)
                                  : txt2img_parse(argc, argv, &o);
    if (parsed != CLI_RUN) {
        return parsed == CLI_HELP ? LDM_EXIT_OK : LDM_EXIT_USAGE;
    }
    char sampler[64];
    if (check_sampler(o.sampler, sampler, sizeof sampler) != 0) {
        return LDM_EXIT_USAGE;
    }
    if (check_output_dir(o.output) != 0) {
        return LDM_EXIT_FAILURE;
    }
    char demo_model[4200];
    if (o.model == NULL) {
        if (default_model_path(demo_model, sizeof demo_model) != 0) {
            cli_error("no -m MODEL given, and the demo model " DEMO_MODEL " is neither beside this "
                      "program (../models) nor in " LDM_MODELS_DIR);
            return LDM_EXIT_USAGE;
        }
        o.model = demo_model;
    }
    /* The init image is read (and its size checked) before the slow model load. */
    png_io_image init = {0}, mask = {0};
    if (img2img || inpaint) {
        char err[512];
        if (png_io_read_rgb(o.init_image, &init, err, sizeof err) != 0) {
            cli_error("%s", err);
            return LDM_EXIT_FAILURE;
        }
        if (inpaint && read_mask(&o, &init, &mask) != 0) {
            png_io_image_free(&init);
            return LDM_EXIT_FAILURE;
        }
        if (init.width % 8 != 0 || init.height % 8 != 0) {
            cli_error("%s is %dx%d: %s needs a width and height that are multiples of 8",
                      o.init_image, init.width, init.height, argv[0]);
            png_io_image_free(&init);
            png_io_image_free(&mask);
            return LDM_EXIT_FAILURE;
        }
        o.width = init.width;
        o.height = init.height;
    }

    install_sigint();
    progress bar;
    progress_init(&bar, stderr, o.batch_count);
    ldm_context *ctx = NULL;
    ldm_model *model = NULL;
    int rc;
    ldm_status st = open_context(o.backend, o.device, o.threads, o.verbose, &bar, &ctx);
    if (st != LDM_OK) {
        png_io_image_free(&init);
        png_io_image_free(&mask);
        return library_failure(st, "cannot create a context");
    }
    atomic_store(&g_cancel_ctx, ctx);

    if (!g_interrupted) {
        st = load_model(ctx, o.model, o.config, o.prediction, o.verbose, &model);
    }
    if (g_interrupted) {
        rc = interrupted_exit();
    } else if (st != LDM_OK) {
        rc = library_failure(st, "cannot load the model");
    } else {
        rc = generate(ctx, model, &o, sampler, img2img || inpaint ? &init : NULL,
                      inpaint ? &mask : NULL, &bar);
    }

    unpublish_context(); /* a late Ctrl-C must not reach a destroyed context */
    ldm_model_destroy(model);
    ldm_context_destroy(ctx);
    png_io_image_free(&init);
    png_io_image_free(&mask);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * upscale
 * ------------------------------------------------------------------------------------------- */

static int cmd_upscale(int argc, char **argv)
{
    upscale_options o;
    cli_result parsed = upscale_parse(argc, argv, &o);
    if (parsed != CLI_RUN) {
        return parsed == CLI_HELP ? LDM_EXIT_OK : LDM_EXIT_USAGE;
    }
    char sampler[64];
    if (check_sampler(o.sampler, sampler, sizeof sampler) != 0) {
        return LDM_EXIT_USAGE;
    }
    if (check_output_dir(o.output) != 0) {
        return LDM_EXIT_FAILURE;
    }
    png_io_image low = {0};
    char err[512];
    if (png_io_read_rgb(o.input, &low, err, sizeof err) != 0) {
        cli_error("%s", err);
        return LDM_EXIT_FAILURE;
    }
    install_sigint();
    progress bar;
    progress_init(&bar, stderr, 1);
    ldm_context *ctx = NULL;
    ldm_model *model = NULL;
    ldm_image *high = NULL;
    int rc = LDM_EXIT_OK;
    ldm_status st = open_context(o.backend, o.device, o.threads, o.verbose, &bar, &ctx);
    if (st != LDM_OK) {
        png_io_image_free(&low);
        return library_failure(st, "cannot create a context");
    }
    atomic_store(&g_cancel_ctx, ctx);
    if (!g_interrupted) {
        st = load_model(ctx, o.model, o.config, o.prediction, o.verbose, &model);
    }
    if (!g_interrupted && st == LDM_OK) {
        ldm_upscale_params p;
        ldm_upscale_params_init(&p);
        p.image = low.data;
        p.width = low.width;
        p.height = low.height;
        p.stride = (size_t)low.width * 3;
        p.prompt = o.prompt;
        p.negative_prompt = o.negative_prompt;
        p.steps = o.steps;
        p.cfg_scale = o.cfg_scale;
        p.noise_level = o.noise_level;
        p.sampler = sampler;
        p.scheduler = cli_scheduler_name(o.scheduler);
        p.eta = o.eta;
        p.seed = o.seed.value;
        p.random_seed = o.seed.random;
        p.rng = o.rng;
        p.tile = o.tile;
        p.tile_overlap = o.tile_overlap;
        p.progress = on_progress;
        p.user_data = &bar;
        double t0 = progress_now();
        st = ldm_upscale(ctx, model, &p, &high);
        progress_break(&bar);
        if (st == LDM_OK && o.verbose) {
            fprintf(stderr, "ldm: upscaled %dx%d to %dx%d in %.1fs\n", low.width, low.height, ldm_image_width(high),
                    ldm_image_height(high), progress_now() - t0);
        }
    }
    if (g_interrupted) {
        rc = interrupted_exit();
    } else if (st != LDM_OK) {
        rc = library_failure(st, model == NULL ? "cannot load the model" : "upscaling failed");
    } else {
        char software[64];
        snprintf(software, sizeof software, "libldm %s", ldm_version());
        png_io_text texts[] = {{"Software", software}};
        if (png_io_write_rgb(o.output, ldm_image_data(high), ldm_image_width(high), ldm_image_height(high),
                             ldm_image_stride(high), texts, 1, err, sizeof err) != 0) {
            cli_error("%s", err);
            rc = LDM_EXIT_FAILURE;
        } else {
            fprintf(stderr, "ldm: wrote %s (%dx%d, seed %llu)\n", o.output, ldm_image_width(high),
                    ldm_image_height(high), (unsigned long long)ldm_image_seed(high));
        }
    }
    unpublish_context();
    ldm_image_destroy(high);
    ldm_model_destroy(model);
    ldm_context_destroy(ctx);
    png_io_image_free(&low);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * info
 * ------------------------------------------------------------------------------------------- */

/* "1,234,567" */
static void group_digits(int64_t v, char *buf, size_t size)
{
    char raw[32];
    snprintf(raw, sizeof raw, "%lld", (long long)v);
    size_t len = strlen(raw), j = 0;
    for (size_t i = 0; i < len && j + 2 < size; i++) {
        if (i > 0 && raw[i - 1] != '-' && (len - i) % 3 == 0) {
            buf[j++] = ',';
        }
        buf[j++] = raw[i];
    }
    buf[j] = '\0';
}

static void print_component(const char *name, const ldm_component_info *c)
{
    char params[40];
    group_digits(c->params, params, sizeof params);
    printf("  %-14s %15s params  %9.1f MiB  %s\n", name, params, (double)c->bytes / (1024.0 * 1024.0),
           c->params ? c->dtype : "-");
}

static void print_model_info(const char *path, const ldm_model_info *info, const char *backend)
{
    static const char *const family_names[][2] = {
        {"sd1", "Stable Diffusion 1.x"},
        {"sd2", "Stable Diffusion 2.x"},
        {"ldm-sr", "LDM 4x super-resolution, VQ-f4 (ldm upscale)"},
        {"x4-upscaler", "Stable Diffusion x4 upscaler (ldm upscale)"},
        {"ldm-txt2img", "LDM-KL-8-G text-to-image, BERT text encoder"}};
    const char *family = info->family;
    for (size_t i = 0; i < sizeof family_names / sizeof family_names[0]; i++) {
        if (strcmp(family_names[i][0], info->family) == 0) {
            family = family_names[i][1];
        }
    }
    printf("model:           %s\n", path);
    printf("family:          %s (%s)%s\n", info->family, family,
           info->inpainting ? ", inpainting" : "");
    printf("prediction:      %s (%s)\n", info->prediction == LDM_PREDICTION_V ? "v" : "eps",
           info->prediction_source);
    printf("unet input:      %d channels%s\n", info->unet_in_channels,
           info->inpainting ? " (latent + mask + masked-image latent)" : "");
    printf("latent channels: %d\n", info->latent_channels);
    printf("downscale:       %d\n", info->downscale);
    printf("scale factor:    %g\n", (double)info->scale_factor);
    if (info->image_size > 0) printf("image size:      %d x %d (txt2img default)\n", info->image_size, info->image_size);
    if (strcmp(info->text_encoder, "none") == 0) {
        printf("text encoder:    none (conditioned on the low-res image)\n");
    } else if (strcmp(info->text_encoder, "bert") == 0) {
        printf("text encoder:    BERT (x-transformers), %d layers, width %d\n", info->text_layers,
               info->context_dim);
    } else {
        printf("text encoder:    %s, %d layers, width %d, default clip skip %d\n",
               strcmp(info->text_encoder, "openclip") == 0 ? "OpenCLIP" : "CLIP", info->text_layers,
               info->context_dim, info->clip_skip_default);
    }
    printf("first stage:     %s\n",
           strcmp(info->first_stage, "vq") == 0 ? "VQ (vector-quantised)" : "KL (AutoencoderKL)");
    printf("components:\n");
    print_component("unet", &info->unet);
    print_component("vae", &info->vae);
    print_component("text encoder", &info->text);
    print_component("other", &info->other);
    printf("backend:         %s\n", backend);
}

static int cmd_info(int argc, char **argv)
{
    info_options o;
    cli_result parsed = info_parse(argc, argv, &o);
    if (parsed != CLI_RUN) {
        return parsed == CLI_HELP ? LDM_EXIT_OK : LDM_EXIT_USAGE;
    }
    progress bar; /* never drawn; the log callback expects one */
    progress_init(&bar, stderr, 1);
    ldm_context *ctx = NULL;
    ldm_model *model = NULL;
    ldm_status st = open_context(o.backend, o.device, o.threads, o.verbose, &bar, &ctx);
    if (st != LDM_OK) {
        return library_failure(st, "cannot create a context");
    }
    int rc = LDM_EXIT_OK;
    st = load_model(ctx, o.model, o.config, o.prediction, o.verbose, &model);
    if (st != LDM_OK) {
        rc = library_failure(st, "cannot load the model");
    } else {
        ldm_model_info info;
        info.struct_size = sizeof info;
        st = ldm_model_get_info(model, &info);
        if (st != LDM_OK) {
            rc = library_failure(st, "cannot describe the model");
        } else {
            print_model_info(o.model, &info, ldm_context_backend_name(ctx));
        }
    }
    ldm_model_destroy(model);
    ldm_context_destroy(ctx);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * main
 * ------------------------------------------------------------------------------------------- */

static int cmd_help(int argc, char **argv);

typedef struct subcommand {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the subcommand name */
} subcommand;

static const subcommand subcommands[] = {
    {"txt2img", cmd_generate},
    {"img2img", cmd_generate},
    {"inpaint", cmd_generate},
    {"upscale", cmd_upscale},
    {"info", cmd_info},
    {"help", cmd_help},
};

static const subcommand *find_subcommand(const char *name)
{
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++) {
        if (strcmp(subcommands[i].name, name) == 0) {
            return &subcommands[i];
        }
    }
    return NULL;
}

/* "ldm help" is "ldm --help"; "ldm help txt2img" is "ldm txt2img --help". */
static int cmd_help(int argc, char **argv)
{
    if (argc < 2) {
        cli_print_usage(stdout);
        return LDM_EXIT_OK;
    }
    const subcommand *sub = find_subcommand(argv[1]);
    if (sub == NULL || sub->run == cmd_help) {
        cli_error("no help for '%s' (see 'ldm --help')", argv[1]);
        return LDM_EXIT_USAGE;
    }
    char *help_argv[] = {argv[1], "--help", NULL};
    return sub->run(2, help_argv);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        cli_print_usage(stderr);
        cli_error("no command given");
        return LDM_EXIT_USAGE;
    }
    const char *first = argv[1];
    if (strcmp(first, "--help") == 0 || strcmp(first, "-h") == 0) {
        cli_print_usage(stdout);
        return LDM_EXIT_OK;
    }
    if (strcmp(first, "--version") == 0 || strcmp(first, "-V") == 0) {
        printf("ldm %s\n", ldm_version());
        return LDM_EXIT_OK;
    }
    /* One canonical name per line, from the library (aliases such as euler_a also work). */
    if (strcmp(first, "--list-samplers") == 0) {
        const char *const *names = ldm_sampler_list();
        for (size_t i = 0; names != NULL && names[i] != NULL; i++) {
            printf("%s\n", names[i]);
        }
        return LDM_EXIT_OK;
    }
    /* The Vulkan devices, numbered as ldm_context_params.device_index counts them. */
    if (strcmp(first, "--list-devices") == 0) {
        int32_t count = 0;
        if (ldm_device_count(&count) != LDM_OK) {
            fprintf(stderr, "ldm: error: %s\n", ldm_last_error());
            return LDM_EXIT_FAILURE;
        }
        static const char *const kinds[] = {"other", "integrated GPU", "discrete GPU", "virtual GPU", "CPU"};
        for (int32_t i = 0; i < count; i++) {
            ldm_device_info d = {.struct_size = sizeof d};
            if (ldm_device_get(i, &d) != LDM_OK) {
                fprintf(stderr, "ldm: error: %s\n", ldm_last_error());
                return LDM_EXIT_FAILURE;
            }
            printf("%d: %s (%s, %llu MiB)%s%s\n", (int)i, d.name,
                   d.type >= 0 && d.type <= 4 ? kinds[d.type] : "other",
                   (unsigned long long)(d.memory_bytes >> 20), d.preferred ? " [default for --backend vulkan]" : "",
                   d.usable ? "" : " [not usable]");
        }
        if (count == 0) {
            printf("no Vulkan devices\n");
        }
        return LDM_EXIT_OK;
    }
    const subcommand *sub = find_subcommand(first);
    if (sub == NULL) {
        cli_error("unknown %s '%s' (see 'ldm --help')", first[0] == '-' ? "option" : "command",
                  first);
        return LDM_EXIT_USAGE;
    }
    return sub->run(argc - 1, argv + 1);
}
