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
    LDM_BACKEND_AUTO = 0,   /* Vulkan on a GPU when one exists, else CPU (with one log line); a
                               CPU Vulkan driver (lavapipe) is never picked: the CPU backend is faster */
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
    /* Vulkan only, opt-in (default 0): store the weights of linear and conv2d layers as float16
     * on the device (half the memory; arithmetic stays float32), where the device has
     * storageBuffer16BitAccess; otherwise, or for a tensor with values beyond the half range,
     * float32 as usual. Results then differ from float32 by the weight rounding (about 1e-3
     * relative). The last member: a struct_size that ends at log_user_data leaves it 0. */
    int32_t vulkan_fp16_weights;
} ldm_context_params;

LDM_API void ldm_context_params_init(ldm_context_params *params);
LDM_API ldm_status ldm_context_create(const ldm_context_params *params, ldm_context **out);
LDM_API void ldm_context_destroy(ldm_context *ctx);
/* "cpu" or "vulkan": the backend the context actually runs on. */
LDM_API const char *ldm_context_backend_name(const ldm_context *ctx);
/* Asks the call running on ctx to stop at the next operation boundary; it then returns
 * LDM_ERR_CANCELLED. Safe from any thread. The flag is cleared when the next call starts. */
LDM_API void ldm_context_cancel(ldm_context *ctx);

/* Vulkan compute devices, in the order device_index counts them. */
typedef enum ldm_device_type {
    LDM_DEVICE_OTHER = 0,
    LDM_DEVICE_INTEGRATED_GPU = 1,
    LDM_DEVICE_DISCRETE_GPU = 2,
    LDM_DEVICE_VIRTUAL_GPU = 3,
    LDM_DEVICE_CPU = 4, /* a software implementation such as lavapipe */
} ldm_device_type;

typedef struct ldm_device_info {
    size_t struct_size;    /* set by the caller: sizeof(ldm_device_info) */
    int32_t index;         /* the device_index that selects it */
    int32_t type;          /* ldm_device_type */
    char name[256];
    uint64_t memory_bytes; /* largest device-local memory heap */
    uint32_t vendor_id, device_id;
    int32_t preferred;     /* nonzero: LDM_BACKEND_VULKAN with device_index -1 picks this one */
    int32_t usable;        /* zero: the device lacks something the backend needs */
} ldm_device_info;

/* Number of Vulkan devices; 0 (and LDM_OK) in a build without Vulkan or without a driver. */
LDM_API ldm_status ldm_device_count(int32_t *count);
/* Describes device `index` (0 .. count-1). */
LDM_API ldm_status ldm_device_get(int32_t index, ldm_device_info *info);

/* ---------------------------------------------------------------------------------------------
 * Model: a checkpoint loaded from a file. Immutable and shareable once loaded.
 * ------------------------------------------------------------------------------------------- */
typedef struct ldm_model ldm_model;

typedef enum ldm_prediction {
    LDM_PREDICTION_AUTO = 0, /* the config file's, else the family's (SD 1.x and inpainting: eps;
                              * SD 2.x: a one-call UNet probe as A1111, docs/model-config.md) */
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
/* Family name ("sd1", "sd2"). Never NULL for a valid model. */
LDM_API const char *ldm_model_family(const ldm_model *model);
/* Latent channels and the pixel-to-latent downscale factor (SD: 4 and 8). */
LDM_API int32_t ldm_model_latent_channels(const ldm_model *model);
LDM_API int32_t ldm_model_downscale(const ldm_model *model);

/* One part of a checkpoint: its tensors by key prefix (model.diffusion_model., first_stage_model.,
 * cond_stage_model., anything else). */
typedef struct ldm_component_info {
    int64_t params;    /* tensor elements */
    int64_t bytes;     /* their size in the file */
    const char *dtype; /* "f32", "f16", "bf16", ..., or several joined by '+' (most parameters first); "" if none */
} ldm_component_info;

/* What was detected when loading; see ldm_model_get_info(). Strings live as long as the model. */
typedef struct ldm_model_info {
    size_t struct_size;            /* sizeof(ldm_model_info): set by the caller */
    const char *family;            /* "sd1", "sd2", "ldm-sr", "x4-upscaler", "ldm-txt2img" */
    int32_t prediction;            /* LDM_PREDICTION_EPS or LDM_PREDICTION_V (never AUTO) */
    const char *prediction_source; /* "parameter", "config", "probe" or "family default" (docs/model-config.md) */
    int32_t inpainting;            /* nonzero: the UNet also takes a mask and a masked-image latent */
    int32_t unet_in_channels;      /* 4, or 9 for inpainting checkpoints */
    int32_t latent_channels;
    int32_t downscale;
    int32_t context_dim;           /* text embedding width the UNet attends to */
    const char *text_encoder;      /* "clip" (HF CLIPTextModel names), "openclip", "bert" (LDM-KL-8-G's
                                      BERTEmbedder) or "none" (ldm-sr: the image is the condition) */
    int32_t text_layers;
    int32_t clip_skip_default;     /* what clip_skip 0 means: 1 = last layer, 2 = penultimate */
    float scale_factor;
    ldm_component_info unet, vae, text, other;
    /* Appended after the first layout (a smaller struct_size leaves them out): */
    const char *first_stage;       /* "kl" (AutoencoderKL) or "vq" (VQModelInterface, ldm-sr) */
    int32_t upscaler;              /* nonzero: a super-resolution model, run with ldm_upscale() */
    /* Appended in the third layout: */
    int32_t image_size;            /* the width and height txt2img uses when given 0: the file's
                                      "ldm.image_size" metadata, else the family's training size
                                      (SD 1.x 512, SD 2.x v 768, LDM-KL-8-G 256); 0 for upscalers */
} ldm_model_info;

/* Fills info up to info->struct_size (fields are only ever appended). */
LDM_API ldm_status ldm_model_get_info(const ldm_model *model, ldm_model_info *info);

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
/* Encodes `text` into out[tokens*width]. clip_skip: 1 = last layer, 2 = penultimate, ...;
 * 0 = the family's default (SD 1.x: last layer; SD 2.x: penultimate, as Stability's
 * FrozenOpenCLIPEmbedder). */
LDM_API ldm_status ldm_conditioner_encode(ldm_context *ctx, ldm_conditioner *cond, const char *text,
                                          int32_t clip_skip, float *out, size_t out_count);

LDM_API ldm_status ldm_denoiser_create(ldm_model *model, ldm_denoiser **out);
LDM_API void ldm_denoiser_destroy(ldm_denoiser *den);
/* Raw network output (eps or v per the model) for a batch: x [n,c,h,w], timesteps [n] (may be
 * fractional), context [n, tokens, width]; out has the shape of x. h and w in latent pixels.
 * ldm-sr: c is latent + low-res image (6) and context may be NULL (no cross-attention); the x4
 * upscaler's UNet also needs the noise level and is LDM_ERR_INVALID_ARG here (ldm_upscale). */
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

/* What ldm_progress_ex_fn receives after every sampling step. struct_size is the size the
 * library fills (fields are only ever appended): read a field only if it lies within it. */
typedef struct ldm_progress_info {
    size_t struct_size;  /* sizeof(ldm_progress_info) as the library was built */
    int32_t step;        /* 1..total */
    int32_t total;       /* steps this image runs (img2img: int(strength * steps)) */
    int32_t batch_index; /* 0-based image of the batch */
    int32_t batch_count;
    double elapsed;      /* seconds since the call began (monotonic clock), whole batch */
} ldm_progress_info;

/* Progress with timing: the same calls as ldm_progress_fn (after `progress` when both are
 * set). Return nonzero to cancel. Runs on the calling thread; `info` is valid during the call. */
typedef int (*ldm_progress_ex_fn)(const ldm_progress_info *info, void *user_data);

/* A cheap preview of the current denoised estimate (the sampler's x0 prediction), decoded by a
 * fixed linear latent -> RGB projection instead of the VAE, at latent resolution (image size /
 * the model's downscale factor). SD 1.x coefficients: ComfyUI comfy/latent_formats.py `SD15`
 * `latent_rgb_factors` (no bias), applied to the latent in diffusion space, then
 * 255 * clamp((v + 1) / 2, 0, 1) rounded. Models whose latent has other than 4 channels get no
 * previews. */
typedef struct ldm_preview_image {
    size_t struct_size;  /* sizeof(ldm_preview_image) as the library was built */
    int32_t step;        /* 1..total, as in ldm_progress_info */
    int32_t total;
    int32_t batch_index;
    int32_t width;       /* latent width and height */
    int32_t height;
    size_t stride;       /* bytes per row of rgb (>= width * 3) */
    const uint8_t *rgb;  /* interleaved 8-bit RGB; valid during the callback only */
} ldm_preview_image;

/* Runs on the calling thread, before the progress callbacks of the same step. */
typedef void (*ldm_preview_fn)(const ldm_preview_image *preview, void *user_data);

typedef enum ldm_rng_kind {
    LDM_RNG_CUDA = 0, /* AUTOMATIC1111's Philox stream ("NV"), all 64 seed bits; the default */
    LDM_RNG_CPU = 1,  /* PyTorch's CPU generator (MT19937 + AVX2 Box-Muller), low 32 seed bits */
} ldm_rng_kind;

typedef struct ldm_txt2img_params {
    size_t struct_size;          /* sizeof(ldm_txt2img_params) */
    const char *prompt;          /* required */
    const char *negative_prompt; /* NULL = "" */
    int32_t width, height;       /* pixels, multiples of 8; 0 (the default) = the model's own
                                    size, ldm_model_info.image_size (SD 1.x: 512) */
    int32_t steps;               /* default 20 */
    float cfg_scale;             /* default 7.5; 1.0 skips the unconditional pass */
    const char *sampler;         /* default "euler" */
    const char *scheduler;       /* "discrete" (default), "karras", "exponential", "simple", "sgm_uniform" */
    uint64_t seed;               /* default 42 */
    int32_t random_seed;         /* nonzero: ignore `seed`, draw one (see ldm_image_seed) */
    int32_t batch_count;         /* images to make, item i uses seed+i; default 1 */
    int32_t clip_skip;           /* 0 = family default, 1 = last layer, 2 = penultimate, ... */
    int32_t rng;                 /* ldm_rng_kind; default LDM_RNG_CUDA */
    float eta;                   /* DDIM eta; default 0 */
    ldm_progress_fn progress;    /* optional */
    void *user_data;             /* passed to progress, progress_ex and preview */
    /* Appended after the first layout (struct_size up to user_data still works): */
    ldm_progress_ex_fn progress_ex; /* optional: step, total, elapsed seconds; nonzero cancels */
    ldm_preview_fn preview;         /* optional: linear RGB preview of the denoised estimate */
    int32_t preview_interval;       /* preview every N steps and at the last one; default 1 */
    /* Appended in the third layout (struct_size up to preview_interval still works): */
    uint64_t max_memory; /* bytes the call may hold at its peak, as ldm_memory_estimate counts them;
                            0 = no limit (default). Above it the VAE decodes in smaller tiles; when
                            nothing fits the call fails with LDM_ERR_NO_MEMORY before any work */
    int32_t vae_tile;    /* VAE decoder tile side in latent pixels (image pixels / 8): 0 = automatic
                            (default: whole while the decoder needs under 1 GiB, about 640x640 for
                            SD, else tiles; smaller when max_memory asks), -1 = never, > 0 = this */
} ldm_txt2img_params;

LDM_API void ldm_txt2img_params_init(ldm_txt2img_params *params);

/* The peak memory in bytes that ldm_txt2img(ctx, model, params) is expected to hold: the
 * process baseline, the weights of the stage running (the pipeline drops the memory-mapped
 * pages of the text encoder and of the UNet once they are done), that stage's activations
 * (measured by walking the networks at the requested size without computing) and the buffers.
 * Counts the CPU backend's resident memory (what /usr/bin/time -v reports as the maximum RSS);
 * with the Vulkan backend the activations are device memory instead. Honours max_memory and
 * vae_tile as ldm_txt2img would (the estimate of the tiling it would choose); *vae_tile
 * (optional) receives that tile (0 = whole). */
LDM_API ldm_status ldm_memory_estimate(ldm_context *ctx, const ldm_model *model, const ldm_txt2img_params *params,
                                       uint64_t *bytes, int32_t *vae_tile);
/* Generates params->batch_count images into images[0..batch_count-1] (the caller provides the
 * array; each element receives a new ldm_image or NULL on error). */
LDM_API ldm_status ldm_txt2img(ldm_context *ctx, ldm_model *model, const ldm_txt2img_params *params,
                               ldm_image **images);

/* ---------------------------------------------------------------------------------------------
 * High level: image to image (SEEDED_CONTRACT item 4, CompVis scripts/img2img.py).
 *
 * The init image is mapped to [-1, 1] (2 * u8 / 255 - 1), encoded by the VAE to its posterior
 * mean and scaled (init_latent = scale_factor * mean). t_enc = int(strength * steps) steps run:
 *  - k-diffusion samplers walk the last t_enc + 1 sigmas of the steps-step schedule, starting
 *    from init_latent + noise * sigmas[steps - t_enc];
 *  - ddim (and plms) start from sqrt(a) * init_latent + sqrt(1 - a) * noise with
 *    a = alphas_cumprod[ddim_timesteps[t_enc]] (the upstream one-step offset, kept), then
 *    denoise at ddim_timesteps[t_enc - 1], ..., [0].
 * The noise is draw 0 of the seeded stream (further draws as in txt2img). strength 0 runs no
 * step and returns the VAE's reconstruction of the init image.
 * ------------------------------------------------------------------------------------------- */
typedef struct ldm_img2img_params {
    size_t struct_size;          /* sizeof(ldm_img2img_params) */
    const char *prompt;          /* required */
    const char *negative_prompt; /* NULL = "" */
    const uint8_t *init_image;   /* required: interleaved 8-bit RGB rows */
    int32_t init_width;          /* pixels, multiples of 8; the output has the same size */
    int32_t init_height;
    size_t init_stride;          /* bytes from one row to the next; 0 = init_width * 3 */
    double strength;             /* 0..1, default 0.75 (a double: int(0.7 * 10) must be 7) */
    int32_t steps;               /* default 20 (the full schedule; int(strength * steps) run) */
    float cfg_scale;             /* default 7.5; 1.0 skips the unconditional pass */
    const char *sampler;         /* default "euler" */
    const char *scheduler;       /* "discrete" (default), "karras", "exponential", "simple", "sgm_uniform" */
    uint64_t seed;               /* default 42 */
    int32_t random_seed;         /* nonzero: ignore `seed`, draw one (see ldm_image_seed) */
    int32_t batch_count;         /* images to make, item i uses seed+i; default 1 */
    int32_t clip_skip;           /* 0 = family default, 1 = last layer, 2 = penultimate, ... */
    int32_t rng;                 /* ldm_rng_kind; default LDM_RNG_CUDA */
    float eta;                   /* DDIM eta; default 0 */
    ldm_progress_fn progress;    /* optional */
    void *user_data;             /* passed to progress, progress_ex and preview */
    ldm_progress_ex_fn progress_ex; /* optional */
    ldm_preview_fn preview;         /* optional */
    int32_t preview_interval;       /* default 1 */
} ldm_img2img_params;

LDM_API void ldm_img2img_params_init(ldm_img2img_params *params);
/* Generates params->batch_count images of the init image's size into images[0..batch_count-1]
 * (caller's array; each element receives a new ldm_image or NULL on error). */
LDM_API ldm_status ldm_img2img(ldm_context *ctx, ldm_model *model, const ldm_img2img_params *params,
                               ldm_image **images);

/* ---------------------------------------------------------------------------------------------
 * High level: inpainting and outpainting (docs/inpainting.md).
 *
 * The mask is 8-bit, the size of the image: 255 (>= 128 after blurring) = repaint, 0 = keep.
 *  - Inpainting checkpoints (9-channel UNet: latent + mask + masked-image latent, runwayml
 *    sd-v1-5-inpainting / SD 2 inpainting) get the mask and the VAE latent of the image with
 *    the masked region zeroed as extra UNet input (scripts/inpaint_st.py).
 *  - Ordinary checkpoints repaint by blending: after every step the latent outside the mask is
 *    reset to the image's latent noised to the current level (CompVis DDIM `mask`, A1111).
 * Both composite the result over the original through the blurred mask (A1111's overlay).
 * strength 1 (the default) starts from pure noise, as txt2img (draw 0 is x_T); below 1 the run
 * starts from the image's latent as ldm_img2img does (draw 0 is the added noise).
 * ------------------------------------------------------------------------------------------- */

/* What the masked region starts from (A1111 "masked content"). Values are pinned. */
typedef enum ldm_inpaint_fill {
    LDM_INPAINT_FILL_ORIGINAL = 0,       /* the image as it is (A1111 "original"; the default) */
    LDM_INPAINT_FILL_FILL = 1,           /* its surroundings' colours, blurred in (A1111 "fill") */
    LDM_INPAINT_FILL_LATENT_NOISE = 2,   /* latent = the seed's draw 0 under the mask (A1111 "latent noise") */
    LDM_INPAINT_FILL_LATENT_NOTHING = 3, /* latent = 0 under the mask (A1111 "latent nothing") */
} ldm_inpaint_fill;

typedef struct ldm_inpaint_params {
    size_t struct_size;          /* sizeof(ldm_inpaint_params) */
    const char *prompt;          /* required */
    const char *negative_prompt; /* NULL = "" */
    const uint8_t *image;        /* required: interleaved 8-bit RGB rows */
    int32_t width, height;       /* pixels, multiples of 8; the output has the same size */
    size_t image_stride;         /* bytes from one row to the next; 0 = width * 3 */
    const uint8_t *mask;         /* required: 8-bit rows of width x height, see mask_channels */
    size_t mask_stride;          /* 0 = width * mask_channels */
    int32_t mask_channels;       /* 1 (gray, default) or 3 (RGB, read as luma like PIL's "L") */
    float mask_blur;             /* Gaussian sigma in pixels (A1111 "mask blur"), default 4; 0 = none */
    int32_t fill;                /* ldm_inpaint_fill; default LDM_INPAINT_FILL_ORIGINAL */
    int32_t composite;           /* nonzero (default): keep the original pixels outside the mask */
    double strength;             /* 0..1, default 1 (see above) */
    int32_t steps;               /* default 20 */
    float cfg_scale;             /* default 7.5; 1.0 skips the unconditional pass */
    const char *sampler;         /* default "euler" */
    const char *scheduler;       /* as ldm_txt2img_params; default "discrete" */
    uint64_t seed;               /* default 42 */
    int32_t random_seed;         /* nonzero: ignore `seed`, draw one (see ldm_image_seed) */
    int32_t batch_count;         /* images to make, item i uses seed+i; default 1 */
    int32_t clip_skip;           /* 0 = family default, 1 = last layer, 2 = penultimate, ... */
    int32_t rng;                 /* ldm_rng_kind; default LDM_RNG_CUDA */
    float eta;                   /* DDIM eta; default 0 */
    ldm_progress_fn progress;    /* optional */
    void *user_data;             /* passed to progress, progress_ex and preview */
    ldm_progress_ex_fn progress_ex; /* optional */
    ldm_preview_fn preview;         /* optional */
    int32_t preview_interval;       /* default 1 */
} ldm_inpaint_params;

LDM_API void ldm_inpaint_params_init(ldm_inpaint_params *params);
/* Generates params->batch_count images of the image's size into images[0..batch_count-1]
 * (caller's array; each element receives a new ldm_image or NULL on error). Works with
 * inpainting and ordinary text-to-image checkpoints (not the super-resolution models). */
LDM_API ldm_status ldm_inpaint(ldm_context *ctx, ldm_model *model, const ldm_inpaint_params *params,
                               ldm_image **images);

/* Outpainting: makes the canvas and the mask for ldm_inpaint. The image is placed at (left, top)
 * of a canvas grown by left/top/right/bottom pixels (right and bottom are enlarged as needed to
 * make the size a multiple of `multiple`); the new area repeats the nearest edge pixel. The mask
 * (255 = repaint) covers the new area and reaches `overlap` pixels into the image on the sides
 * that grew, so the seam is repainted too. Both outputs are new images (mask: R = G = B); pass
 * the mask's data with mask_channels 3. */
typedef struct ldm_outpaint_params {
    size_t struct_size;              /* sizeof(ldm_outpaint_params) */
    int32_t left, top, right, bottom; /* pixels to add on each side, >= 0 */
    int32_t overlap;                 /* default 8 */
    int32_t multiple;                /* default 64: SD UNets need latent sides divisible by 8 */
} ldm_outpaint_params;

LDM_API void ldm_outpaint_params_init(ldm_outpaint_params *params);
LDM_API ldm_status ldm_outpaint_prepare(const uint8_t *image, int32_t width, int32_t height, size_t stride,
                                        const ldm_outpaint_params *params, ldm_image **canvas,
                                        ldm_image **mask);

/* ---------------------------------------------------------------------------------------------
 * High level: super-resolution (models whose family is "ldm-sr" or "x4-upscaler").
 *
 *  - "ldm-sr": the LDM paper's 4x super-resolution (CompVis latent-diffusion bsr_sr): the
 *    low-res image, 2 * u8 / 255 - 1, is concatenated to the latent; no text, no guidance; the
 *    latent is decoded by the VQ-f4 first stage (quantised). notebook_helpers.py's defaults
 *    are 100 DDIM steps at eta 1.
 *  - "x4-upscaler": the SD x4 upscaler (Stability x4-upscaling.yaml): the low-res image,
 *    u8 / 127.5 - 1, is noise-augmented to `noise_level` (its own schedule), concatenated to the
 *    latent and its level fed to label_emb; the prompt conditions through OpenCLIP with
 *    classifier-free guidance (the unconditional row keeps the image and the level); v.
 * The result is 4x the input size. Any size is accepted: the input is edge-padded to the UNet's
 * multiple (8) and the result cropped. Large inputs run in overlapping tiles (UNet and decoder),
 * blended over the overlap, so memory depends on the tile size, not on the image size.
 * Noise: draw 0 of the seeded stream is the initial latent; x4 draw 1 is the augmentation noise;
 * the sampler's draws (eta > 0, ancestral samplers) follow.
 * ------------------------------------------------------------------------------------------- */
typedef struct ldm_upscale_params {
    size_t struct_size;          /* sizeof(ldm_upscale_params) */
    const uint8_t *image;        /* required: the low-res image, interleaved 8-bit RGB rows */
    int32_t width, height;       /* its size in pixels, 1..4096 (the result is 4x) */
    size_t stride;               /* bytes from one row to the next; 0 = width * 3 */
    const char *prompt;          /* x4-upscaler: the text (NULL = ""); ignored by ldm-sr */
    const char *negative_prompt; /* x4-upscaler: NULL = "" */
    int32_t steps;               /* default 50 */
    float cfg_scale;             /* x4-upscaler: default 9 (1 skips the unconditional pass); ldm-sr: unused */
    int32_t noise_level;         /* x4-upscaler: 0..350, default 20; ldm-sr: unused */
    const char *sampler;         /* default "ddim" */
    const char *scheduler;       /* sigma samplers' schedule, as ldm_txt2img_params; default "discrete" */
    float eta;                   /* DDIM eta; < 0 = the family default (ldm-sr 1, x4-upscaler 0); default -1 */
    uint64_t seed;               /* default 42 */
    int32_t random_seed;         /* nonzero: ignore `seed`, draw one (see ldm_image_seed) */
    int32_t rng;                 /* ldm_rng_kind; default LDM_RNG_CUDA */
    int32_t tile;                /* UNet tile side in low-res pixels (a multiple of 8); 0 = automatic
                                    (128 when the input is larger), -1 = never tile; default 0 */
    int32_t tile_overlap;        /* low-res pixels shared by neighbouring tiles; default 32 */
    ldm_progress_fn progress;    /* optional */
    void *user_data;             /* passed to progress and progress_ex */
    ldm_progress_ex_fn progress_ex; /* optional */
} ldm_upscale_params;

LDM_API void ldm_upscale_params_init(ldm_upscale_params *params);
/* Upscales params->image 4x into *out (a new image). LDM_ERR_UNSUPPORTED for a model of another
 * family. */
LDM_API ldm_status ldm_upscale(ldm_context *ctx, ldm_model *model, const ldm_upscale_params *params,
                               ldm_image **out);

#ifdef __cplusplus
}
#endif
#endif /* LDM_H */
