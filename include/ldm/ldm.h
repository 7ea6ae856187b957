/*
 * libldm — Latent Diffusion Models behind a stable C ABI.
 *
 * Conventions (they hold for every function below unless its comment says otherwise):
 *
 *  - Every fallible function returns an ldm_status. LDM_OK (0) is success; any other value is an
 *    error, and ldm_last_error() then returns a readable message for the calling thread.
 *  - Objects are opaque handles created through an out-pointer (`ldm_x_create(..., &x)`) and
 *    released by `ldm_x_destroy(x)`, which accepts NULL. On error the out-pointer is set to NULL.
 *  - Parameter structs start with `size_t struct_size` and are filled by `ldm_*_params_init()`;
 *    they are passed by pointer. A caller built against an older header passes a smaller
 *    struct_size and the library uses defaults for the fields it did not know. A struct_size
 *    smaller than the first version of the struct is LDM_ERR_INVALID_ARG.
 *  - Strings are UTF-8 and NUL-terminated; the library copies what it keeps.
 *  - Tensors crossing the API are float32, row-major: images and latents NCHW, text embeddings
 *    [n, tokens, width]. Images in the float API are in [-1, 1] (the VAE's space).
 *
 * Thread model:
 *  - The library has no global mutable state. ldm_last_error() is thread-local.
 *  - An ldm_context may be used by one thread at a time (it owns scratch memory and the thread
 *    pool setting); use one context per thread for concurrent work.
 *  - An ldm_model is immutable after ldm_model_load(): its weights may be shared by several
 *    contexts on several threads at once. It must outlive every component handle and every
 *    call that uses it.
 *  - ldm_context_cancel() is the one function that may be called on a context from another
 *    thread while a call runs on it.
 */
#ifndef LDM_H
#define LDM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(LDM_BUILDING_DLL)
#define LDM_API __declspec(dllexport)
#elif defined(_WIN32) && defined(LDM_USING_DLL)
#define LDM_API __declspec(dllimport)
#elif defined(__GNUC__)
#define LDM_API __attribute__((visibility("default")))
#else
#define LDM_API
#endif

/* ---------------------------------------------------------------------------------------------
 * Version
 * ------------------------------------------------------------------------------------------- */
#define LDM_VERSION_MAJOR 0
#define LDM_VERSION_MINOR 1
#define LDM_VERSION_PATCH 0
#define LDM_VERSION_NUMBER (LDM_VERSION_MAJOR * 10000 + LDM_VERSION_MINOR * 100 + LDM_VERSION_PATCH)
#define LDM_VERSION_STRING "0.1.0"

/* The version of the library actually linked ("0.1.0"). Never NULL. */
LDM_API const char *ldm_version(void);
/* LDM_VERSION_NUMBER of the library actually linked; compare with the macro to detect a mismatch. */
LDM_API int32_t ldm_version_number(void);

/* ---------------------------------------------------------------------------------------------
 * Status codes. Values are pinned: they never change meaning. New codes may be added.
 * ------------------------------------------------------------------------------------------- */
typedef int32_t ldm_status;
#define LDM_OK 0
#define LDM_ERR_INVALID_ARG 1 /* NULL where a value is required, out-of-range field, bad struct_size */
#define LDM_ERR_NO_MEMORY 2   /* an allocation failed */
#define LDM_ERR_IO 3          /* a file could not be opened, read or written */
#define LDM_ERR_FORMAT 4      /* a file is malformed: truncated, lying header, wrong shapes */
#define LDM_ERR_UNSUPPORTED 5 /* well-formed, but a model family/feature this build cannot run */
#define LDM_ERR_BACKEND 6     /* the requested backend or device is unavailable or failed */
#define LDM_ERR_CANCELLED 7   /* the progress callback or ldm_context_cancel() stopped the call */
#define LDM_ERR_INTERNAL 8    /* a bug: please report it with ldm_last_error() */

/* A constant English name for a status ("LDM_ERR_FORMAT"). Never NULL; unknown codes give
 * "LDM_ERR_UNKNOWN". */
LDM_API const char *ldm_status_string(ldm_status status);

/* The message of the last error on the calling thread ("" if none). The pointer stays valid
 * until the next libldm call on this thread. */
LDM_API const char *ldm_last_error(void);

/* ---------------------------------------------------------------------------------------------
 * Context: backend choice, threads, logging, cancellation.
 * ------------------------------------------------------------------------------------------- */
typedef struct ldm_context ldm_context;

typedef enum ldm_backend_kind {
    LDM_BACKEND_AUTO = 0,   /* Vulkan when a device exists, else CPU (with one log line) */
    LDM_BACKEND_CPU = 1,    /* OpenBLAS */
    LDM_BACKEND_VULKAN = 2, /* LDM_ERR_BACKEND when no device is available */
} ldm_backend_kind;

typedef enum ldm_log_level {
    LDM_LOG_ERROR = 0,
    LDM_LOG_WARN = 1,
    LDM_LOG_INFO = 2,
    LDM_LOG_DEBUG = 3,
} ldm_log_level;

/* Called from the thread that runs the call. `message` has no trailing newline. */
typedef void (*ldm_log_fn)(ldm_log_level level, const char *message, void *user_data);

typedef struct ldm_context_params {
    size_t struct_size;      /* sizeof(ldm_context_params) */
    int32_t backend;         /* ldm_backend_kind; default LDM_BACKEND_AUTO */
    int32_t n_threads;       /* 0 = number of online CPUs (default) */
    int32_t device_index;    /* Vulkan device index, -1 = best device (default) */
    int32_t log_level;       /* messages up to this level reach log_fn; default LDM_LOG_WARN */
    ldm_log_fn log_fn;       /* NULL = no logging (default) */
    void *log_user_data;
} ldm_context_params;

LDM_API void ldm_context_params_init(ldm_context_params *params);
LDM_API ldm_status ldm_context_create(const ldm_context_params *params, ldm_context **out);
LDM_API void ldm_context_destroy(ldm_context *ctx);
/* "cpu" or "vulkan": the backend the context actually runs on. */
LDM_API const char *ldm_context_backend_name(const ldm_context *ctx);
/* Asks the call running on ctx to stop at the next operation boundary; it then returns
 * LDM_ERR_CANCELLED. Safe from any thread. The flag is cleared when the next call starts. */
LDM_API void ldm_context_cancel(ldm_context *ctx);

/* ---------------------------------------------------------------------------------------------
 * Model: a checkpoint loaded from a file. Immutable and shareable once loaded.
 * ------------------------------------------------------------------------------------------- */
typedef struct ldm_model ldm_model;

typedef enum ldm_prediction {
    LDM_PREDICTION_AUTO = 0, /* the family's default (SD 1.x: eps) or the config file's */
    LDM_PREDICTION_EPS = 1,
    LDM_PREDICTION_V = 2,
} ldm_prediction;

typedef struct ldm_model_params {
    size_t struct_size;      /* sizeof(ldm_model_params) */
    const char *config_path; /* optional hyper-parameter JSON (docs/model-config.md); NULL = none */
    int32_t prediction;      /* ldm_prediction; default AUTO */
} ldm_model_params;

LDM_API void ldm_model_params_init(ldm_model_params *params);
/* Loads a single-file checkpoint (.safetensors, F32/F16/BF16). The file is memory-mapped and
 * checked before use; weights stay in their file precision. `ctx` supplies logging and the
 * backend that will run the model. LDM_ERR_UNSUPPORTED names what was recognised when the
 * family is not supported. */
LDM_API ldm_status ldm_model_load(ldm_context *ctx, const char *path, const ldm_model_params *params,
                                  ldm_model **out);
LDM_API void ldm_model_destroy(ldm_model *model);
/* Family name ("sd1"). Never NULL for a valid model. */
LDM_API const char *ldm_model_family(const ldm_model *model);
/* Latent channels and the pixel-to-latent downscale factor (SD: 4 and 8). */
LDM_API int32_t ldm_model_latent_channels(const ldm_model *model);
LDM_API int32_t ldm_model_downscale(const ldm_model *model);

/* ---------------------------------------------------------------------------------------------
 * Components. Each handle borrows its model (the model must outlive it) and is cheap.
 * ------------------------------------------------------------------------------------------- */
typedef struct ldm_conditioner ldm_conditioner;
typedef struct ldm_denoiser ldm_denoiser;
typedef struct ldm_autoencoder ldm_autoencoder;
typedef struct ldm_sampler ldm_sampler;

LDM_API ldm_status ldm_conditioner_create(ldm_model *model, ldm_conditioner **out);
LDM_API void ldm_conditioner_destroy(ldm_conditioner *cond);
/* Embedding shape for one prompt: tokens x width (SD 1.x: 77 x 768). */
LDM_API ldm_status ldm_conditioner_shape(const ldm_conditioner *cond, int32_t *tokens, int32_t *width);
/* Encodes `text` into out[tokens*width]. clip_skip: 0 or 1 = last layer, 2 = penultimate, ... */
LDM_API ldm_status ldm_conditioner_encode(ldm_context *ctx, ldm_conditioner *cond, const char *text,
                                          int32_t clip_skip, float *out, size_t out_count);

LDM_API ldm_status ldm_denoiser_create(ldm_model *model, ldm_denoiser **out);
LDM_API void ldm_denoiser_destroy(ldm_denoiser *den);
/* Raw network output (eps or v per the model) for a batch: x [n,c,h,w], timesteps [n] (may be
 * fractional), context [n, tokens, width]; out has the shape of x. h and w in latent pixels. */
LDM_API ldm_status ldm_denoiser_eval(ldm_context *ctx, ldm_denoiser *den, int32_t n, int32_t c,
                                     int32_t h, int32_t w, const float *x, const float *timesteps,
                                     int32_t tokens, const float *context, float *out);

LDM_API ldm_status ldm_autoencoder_create(ldm_model *model, ldm_autoencoder **out);
LDM_API void ldm_autoencoder_destroy(ldm_autoencoder *ae);
/* image [n,3,h,w] in [-1,1] -> latent [n,c,h/f,w/f] in diffusion space (posterior mean times the
 * scale factor). h and w must be multiples of the downscale factor. */
LDM_API ldm_status ldm_autoencoder_encode(ldm_context *ctx, ldm_autoencoder *ae, int32_t n, int32_t h,
                                          int32_t w, const float *image, float *latent);
/* latent [n,c,h,w] in diffusion space -> image [n,3,h*f,w*f] (not clamped). */
LDM_API ldm_status ldm_autoencoder_decode(ldm_context *ctx, ldm_autoencoder *ae, int32_t n, int32_t h,
                                          int32_t w, const float *latent, float *image);

/* Samplers by name: "euler", "ddim" (aliases are accepted; see docs/samplers.md).
 * LDM_ERR_UNSUPPORTED for an unknown name. */
LDM_API ldm_status ldm_sampler_create(const char *name, ldm_sampler **out);
LDM_API void ldm_sampler_destroy(ldm_sampler *sampler);
LDM_API const char *ldm_sampler_name(const ldm_sampler *sampler);
/* The canonical sampler names this build knows, NULL-terminated. */
LDM_API const char *const *ldm_sampler_list(void);

/* ---------------------------------------------------------------------------------------------
 * Images returned by the library: 8-bit RGB, owned by the library until ldm_image_destroy().
 * ------------------------------------------------------------------------------------------- */
typedef struct ldm_image ldm_image;
LDM_API void ldm_image_destroy(ldm_image *image);
LDM_API int32_t ldm_image_width(const ldm_image *image);
LDM_API int32_t ldm_image_height(const ldm_image *image);
LDM_API int32_t ldm_image_channels(const ldm_image *image); /* 3 */
LDM_API size_t ldm_image_stride(const ldm_image *image);    /* bytes per row */
LDM_API const uint8_t *ldm_image_data(const ldm_image *image);
/* The seed this image was generated with (useful with a random seed). */
LDM_API uint64_t ldm_image_seed(const ldm_image *image);
/* Copies the pixels into dst (rows of width*3 bytes, `dst_stride` bytes apart). */
LDM_API ldm_status ldm_image_copy(const ldm_image *image, uint8_t *dst, size_t dst_stride);

/* ---------------------------------------------------------------------------------------------
 * High level: text to image.
 * ------------------------------------------------------------------------------------------- */

/* Called after every sampling step: step in 1..total. Return nonzero to cancel (the call then
 * returns LDM_ERR_CANCELLED). Runs on the calling thread. */
typedef int (*ldm_progress_fn)(int32_t step, int32_t total, void *user_data);

typedef enum ldm_rng_kind {
    LDM_RNG_CUDA = 0, /* AUTOMATIC1111's Philox stream ("NV"), all 64 seed bits; the default */
    LDM_RNG_CPU = 1,  /* PyTorch's CPU generator (MT19937 + AVX2 Box-Muller), low 32 seed bits */
} ldm_rng_kind;

typedef struct ldm_txt2img_params {
    size_t struct_size;          /* sizeof(ldm_txt2img_params) */
    const char *prompt;          /* required */
    const char *negative_prompt; /* NULL = "" */
    int32_t width, height;       /* pixels, multiples of 8; default 512 x 512 */
    int32_t steps;               /* default 20 */
    float cfg_scale;             /* default 7.5; 1.0 skips the unconditional pass */
    const char *sampler;         /* default "euler" */
    const char *scheduler;       /* "discrete" (default) or "karras" */
    uint64_t seed;               /* default 42 */
    int32_t random_seed;         /* nonzero: ignore `seed`, draw one (see ldm_image_seed) */
    int32_t batch_count;         /* images to make, item i uses seed+i; default 1 */
    int32_t clip_skip;           /* 0 = family default, 1 = last layer, 2 = penultimate, ... */
    int32_t rng;                 /* ldm_rng_kind; default LDM_RNG_CUDA */
    float eta;                   /* DDIM eta; default 0 */
    ldm_progress_fn progress;    /* optional */
    void *user_data;             /* passed to progress */
} ldm_txt2img_params;

LDM_API void ldm_txt2img_params_init(ldm_txt2img_params *params);
/* Generates params->batch_count images into images[0..batch_count-1] (the caller provides the
 * array; each element receives a new ldm_image or NULL on error). */
LDM_API ldm_status ldm_txt2img(ldm_context *ctx, ldm_model *model, const ldm_txt2img_params *params,
                               ldm_image **images);

#ifdef __cplusplus
}
#endif
#endif /* LDM_H */
