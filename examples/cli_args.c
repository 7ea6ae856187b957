/* Command-line parsing for the ldm program (see cli_args.h). */
#include "cli_args.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ldm/ldm.h>

#define MAX_SIDE 16384 /* the PNG reader's limit; far beyond what the models are trained for */

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ldm: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---------------------------------------------------------------------------------------------
 * Option tables
 * ------------------------------------------------------------------------------------------- */

typedef enum opt_kind {
    OPT_FLAG,   /* no value; the int32_t field counts occurrences */
    OPT_STRING, /* const char * pointing into argv */
    OPT_INT,    /* int32_t within [min, max], optionally a multiple of `multiple_of` */
    OPT_FLOAT,  /* float within [min, max] */
    OPT_DOUBLE, /* double within [min, max] */
    OPT_SEED,   /* cli_seed */
    OPT_CHOICE, /* int32_t: the value of the matching choice */
    OPT_SIZE,   /* uint64_t bytes: a number with an optional K/M/G/T suffix (powers of 1024) */
} opt_kind;

typedef struct choice {
    const char *name;
    int32_t value;
} choice;

typedef struct option {
    char short_name; /* 0: long form only */
    const char *long_name;
    opt_kind kind;
    size_t offset; /* of the field in the command's options struct */
    const char *metavar;
    const char *help;
    double min, max;
    int32_t multiple_of;
    const choice *choices; /* ended by {NULL, 0} */
    int required;          /* must be given (strings) */
    int nonempty;          /* "" is refused (file names) */
    const char *alias;     /* a second long name (a peer's spelling), or NULL */
} option;

typedef struct command {
    const char *name;
    const char *usage; /* what follows "ldm NAME" in the usage line */
    const char *summary;
    const option *options;
    size_t n_options;
    const char *positional; /* metavar of the one positional argument, NULL = none */
    size_t positional_offset;
    void (*extra_help)(FILE *out);
} command;

static const choice backend_choices[] = {
    {"auto", LDM_BACKEND_AUTO}, {"cpu", LDM_BACKEND_CPU}, {"vulkan", LDM_BACKEND_VULKAN}, {NULL, 0}};
static const choice prediction_choices[] = {
    {"auto", LDM_PREDICTION_AUTO}, {"eps", LDM_PREDICTION_EPS}, {"v", LDM_PREDICTION_V}, {NULL, 0}};
static const choice rng_choices[] = {{"cuda", LDM_RNG_CUDA}, {"cpu", LDM_RNG_CPU}, {NULL, 0}};
/* The library takes the scheduler by name (src/core/schedule.c lists them with aliases); the CLI
 * offers the canonical ones. Values index scheduler_labels. */
static const choice scheduler_choices[] = {{"discrete", 0},    {"karras", 1},      {"exponential", 2},
                                           {"simple", 3},      {"sgm_uniform", 4}, {NULL, 0}};
/* AUTOMATIC1111's "Schedule type" infotext labels; the default (discrete) is not written. */
static const char *const scheduler_labels[] = {NULL, "Karras", "Exponential", "Simple", "SGM Uniform"};

/* Every field by name: the tables read as documentation, and an omitted field is zero. The
 * help text is the first variadic argument (so the list is never empty, as C11 requires) and is
 * followed by any further designators: OPT(..., "help", .min = 1). */
#define OPT(s, l, k, off, mv, ...)                                                                 \
    {.short_name = (s), .long_name = (l), .kind = (k), .offset = (off), .metavar = (mv),           \
     .help = __VA_ARGS__}

/* --device (all commands that open a context): ldm_context_params.device_index. */
#define DEVICE_HELP                                                                                \
    "Vulkan device index from ldm --list-devices (implies --backend vulkan); -1 = the best "      \
    "(discrete > integrated > virtual > CPU)"
#define MAX_DEVICE 1024

#define T2I(field) offsetof(txt2img_options, field)
/* The options after the image source and size, shared by txt2img and img2img. */
#define SAMPLING_OPTIONS                                                                           \
    OPT(0, "steps", OPT_INT, T2I(steps), "N", "sampling steps", .min = 1, .max = 1000),            \
    OPT(0, "cfg-scale", OPT_FLOAT, T2I(cfg_scale), "F",                                            \
        "guidance scale; 1 skips the negative prompt", .min = 0, .max = 100),                      \
    OPT(0, "sampler", OPT_STRING, T2I(sampler), "NAME", "sampling method (list below)",           \
        .nonempty = 1, .alias = "sampling-method"),                                                \
    OPT(0, "scheduler", OPT_CHOICE, T2I(scheduler), NULL, "noise schedule",                       \
        .choices = scheduler_choices),                                                             \
    OPT(0, "seed", OPT_SEED, T2I(seed), "N", "64-bit seed; -1 draws a random one and prints it"),  \
    OPT(0, "rng", OPT_CHOICE, T2I(rng), NULL,                                                      \
        "initial noise: cuda = A1111's NV stream, cpu = PyTorch's", .choices = rng_choices),       \
    OPT(0, "batch-count", OPT_INT, T2I(batch_count), "N",                                          \
        "images to make, with seeds seed, seed+1, ...", .min = 1, .max = 1000),                    \
    OPT(0, "clip-skip", OPT_INT, T2I(clip_skip), "N",                                              \
        "CLIP layer: 1 = last, 2 = penultimate, 0 = model default", .min = 0, .max = 64),          \
    OPT(0, "eta", OPT_FLOAT, T2I(eta), "F", "DDIM eta (noise added back per step)", .min = 0,      \
        .max = 100),                                                                               \
    OPT('t', "threads", OPT_INT, T2I(threads), "N", "CPU threads (0 = all online CPUs)", .min = 0, \
        .max = 4096),                                                                              \
    OPT(0, "backend", OPT_CHOICE, T2I(backend), NULL, "compute backend",                          \
        .choices = backend_choices),                                                               \
    OPT(0, "device", OPT_INT, T2I(device), "N", DEVICE_HELP, .min = -1, .max = MAX_DEVICE),       \
    OPT(0, "config", OPT_STRING, T2I(config), "FILE", "model hyper-parameter JSON", .nonempty = 1), \
    OPT(0, "prediction", OPT_CHOICE, T2I(prediction), NULL, "what the network predicts",          \
        .choices = prediction_choices),                                                            \
    OPT('o', "output", OPT_STRING, T2I(output), "FILE", "PNG file to write", .nonempty = 1),       \
    OPT('v', "verbose", OPT_FLAG, T2I(verbose), NULL, "log more (twice for debug messages)")

static const option txt2img_table[] = {
    OPT('m', "model", OPT_STRING, T2I(model), "FILE",
        "checkpoint to load (.safetensors, .ckpt, diffusers folder); default: the demo model "
        "ldm-shapes-64 that ships with ldm", .nonempty = 1),
    OPT('p', "prompt", OPT_STRING, T2I(prompt), "TEXT", "what to draw", .required = 1),
    OPT('n', "negative-prompt", OPT_STRING, T2I(negative_prompt), "TEXT", "what to steer away from"),
    OPT('W', "width", OPT_INT, T2I(width), "N",
        "image width in pixels, a multiple of 8; 0 = the model's own size (SD 1.x 512, the demo "
        "model 64)", .min = 0, .max = MAX_SIDE, .multiple_of = 8),
    OPT('H', "height", OPT_INT, T2I(height), "N",
        "image height in pixels, a multiple of 8; 0 = the model's own size", .min = 0,
        .max = MAX_SIDE, .multiple_of = 8),
    OPT(0, "max-memory", OPT_SIZE, T2I(max_memory), "SIZE",
        "peak memory to stay under (e.g. 2.4G, 1500M); the VAE decodes in smaller tiles to fit, "
        "and the run stops before starting when it cannot"),
    OPT(0, "vae-tile", OPT_INT, T2I(vae_tile), "N",
        "VAE decoder tile side in latent pixels (pixels / 8); 0 = automatic, -1 = never", .min = -1,
        .max = 1024),
    SAMPLING_OPTIONS,
};

/* ldm_inpaint_fill, named after A1111's "masked content" choices. */
static const choice fill_choices[] = {{"original", LDM_INPAINT_FILL_ORIGINAL},
                                      {"fill", LDM_INPAINT_FILL_FILL},
                                      {"latent-noise", LDM_INPAINT_FILL_LATENT_NOISE},
                                      {"latent-nothing", LDM_INPAINT_FILL_LATENT_NOTHING},
                                      {NULL, 0}};

static const option inpaint_table[] = {
    OPT('m', "model", OPT_STRING, T2I(model), "FILE",
        "checkpoint to load (.safetensors, .ckpt, diffusers folder); default: the demo model "
        "ldm-shapes-64 that ships with ldm", .nonempty = 1),
    OPT('i', "init-img", OPT_STRING, T2I(init_image), "PNG",
        "image to paint into; its size (multiples of 8) is the output size", .required = 1,
        .nonempty = 1),
    OPT(0, "mask", OPT_STRING, T2I(mask), "PNG",
        "same size as the image: white = repaint, black = keep", .nonempty = 1),
    OPT(0, "outpaint", OPT_STRING, T2I(outpaint), "L,T,R,B",
        "instead of --mask: grow the canvas by these pixels (or one number for all sides) and "
        "paint the new area", .nonempty = 1),
    OPT(0, "overlap", OPT_INT, T2I(overlap), "N",
        "--outpaint: pixels of the image repainted along the seam", .min = 0, .max = MAX_SIDE),
    OPT(0, "mask-blur", OPT_FLOAT, T2I(mask_blur), "F", "Gaussian blur of the mask (sigma, pixels)",
        .min = 0, .max = 1024),
    OPT(0, "fill", OPT_CHOICE, T2I(fill), NULL, "what the masked area starts from",
        .choices = fill_choices),
    OPT(0, "no-composite", OPT_FLAG, T2I(no_composite), NULL,
        "keep the generated pixels outside the mask too"),
    OPT(0, "strength", OPT_DOUBLE, T2I(strength), "S",
        "1 = start the masked area from noise; less keeps more of it", .min = 0, .max = 1),
    OPT('p', "prompt", OPT_STRING, T2I(prompt), "TEXT", "what to draw", .required = 1),
    OPT('n', "negative-prompt", OPT_STRING, T2I(negative_prompt), "TEXT", "what to steer away from"),
    SAMPLING_OPTIONS,
};

static const option img2img_table[] = {
    OPT('m', "model", OPT_STRING, T2I(model), "FILE",
        "checkpoint to load (.safetensors, .ckpt, diffusers folder); default: the demo model "
        "ldm-shapes-64 that ships with ldm", .nonempty = 1),
    OPT('i', "init-img", OPT_STRING, T2I(init_image), "PNG",
        "image to start from (multiples of 8); sets the size", .required = 1,
        .nonempty = 1),
    OPT(0, "strength", OPT_DOUBLE, T2I(strength), "S",
        "how much to change it, 0..1: int(S * steps) steps run", .min = 0, .max = 1),
    OPT('p', "prompt", OPT_STRING, T2I(prompt), "TEXT", "what to draw", .required = 1),
    OPT('n', "negative-prompt", OPT_STRING, T2I(negative_prompt), "TEXT", "what to steer away from"),
    SAMPLING_OPTIONS,
};

#define UPS(field) offsetof(upscale_options, field)
static const option upscale_table[] = {
    OPT('m', "model", OPT_STRING, UPS(model), "FILE", "an ldm-sr or x4-upscaler checkpoint", .required = 1,
        .nonempty = 1),
    OPT('i', "input", OPT_STRING, UPS(input), "PNG", "the low-resolution image (any size up to 2048)",
        .required = 1, .nonempty = 1, .alias = "init-img"),
    OPT('o', "output", OPT_STRING, UPS(output), "FILE", "PNG file to write (4x the input)", .nonempty = 1),
    OPT('p', "prompt", OPT_STRING, UPS(prompt), "TEXT", "x4-upscaler: what the image shows"),
    OPT('n', "negative-prompt", OPT_STRING, UPS(negative_prompt), "TEXT", "x4-upscaler: what to steer away from"),
    OPT(0, "steps", OPT_INT, UPS(steps), "N", "sampling steps", .min = 1, .max = 1000),
    OPT(0, "cfg-scale", OPT_FLOAT, UPS(cfg_scale), "F", "x4-upscaler: guidance scale; 1 skips the negative prompt",
        .min = 0, .max = 100),
    OPT(0, "noise-level", OPT_INT, UPS(noise_level), "N",
        "x4-upscaler: noise added to the low-res image (0..350)", .min = 0, .max = 999),
    OPT(0, "sampler", OPT_STRING, UPS(sampler), "NAME", "sampling method", .nonempty = 1,
        .alias = "sampling-method"),
    OPT(0, "scheduler", OPT_CHOICE, UPS(scheduler), NULL, "noise schedule (sigma samplers)",
        .choices = scheduler_choices),
    OPT(0, "eta", OPT_FLOAT, UPS(eta), "F", "DDIM eta; -1 = the model's default (ldm-sr 1, x4 0)", .min = -1,
        .max = 100),
    OPT(0, "seed", OPT_SEED, UPS(seed), "N", "64-bit seed; -1 draws a random one and prints it"),
    OPT(0, "rng", OPT_CHOICE, UPS(rng), NULL, "noise: cuda = A1111's NV stream, cpu = PyTorch's",
        .choices = rng_choices),
    OPT(0, "tile", OPT_INT, UPS(tile), "N",
        "tile side in input pixels (multiple of 8); 0 = automatic, -1 = never", .min = -1, .max = 4096),
    OPT(0, "tile-overlap", OPT_INT, UPS(tile_overlap), "N", "input pixels shared by neighbouring tiles", .min = 0,
        .max = 4096),
    OPT('t', "threads", OPT_INT, UPS(threads), "N", "CPU threads (0 = all online CPUs)", .min = 0, .max = 4096),
    OPT(0, "backend", OPT_CHOICE, UPS(backend), NULL, "compute backend", .choices = backend_choices),
    OPT(0, "device", OPT_INT, UPS(device), "N", DEVICE_HELP, .min = -1, .max = MAX_DEVICE),
    OPT(0, "config", OPT_STRING, UPS(config), "FILE", "model hyper-parameter JSON", .nonempty = 1),
    OPT(0, "prediction", OPT_CHOICE, UPS(prediction), NULL, "what the network predicts",
        .choices = prediction_choices),
    OPT('v', "verbose", OPT_FLAG, UPS(verbose), NULL, "log more (twice for debug messages)"),
};

#define INFO(field) offsetof(info_options, field)
static const option info_table[] = {
    OPT('m', "model", OPT_STRING, INFO(model), "FILE", "checkpoint (or give it as MODEL)",
        .nonempty = 1),
    OPT(0, "config", OPT_STRING, INFO(config), "FILE", "model hyper-parameter JSON", .nonempty = 1),
    OPT(0, "prediction", OPT_CHOICE, INFO(prediction), NULL, "what the network predicts",
        .choices = prediction_choices),
    OPT(0, "backend", OPT_CHOICE, INFO(backend), NULL, "compute backend",
        .choices = backend_choices),
    OPT(0, "device", OPT_INT, INFO(device), "N", DEVICE_HELP, .min = -1, .max = MAX_DEVICE),
    OPT('t', "threads", OPT_INT, INFO(threads), "N", "CPU threads (0 = all online CPUs)", .min = 0,
        .max = 4096),
    OPT('v', "verbose", OPT_FLAG, INFO(verbose), NULL, "log more (twice for debug messages)"),
};

/* The samplers come from the library, so the help lists exactly what this build runs. */
static void txt2img_extra_help(FILE *out)
{
    fputs("\nsamplers:", out);
    const char *const *names = ldm_sampler_list();
    for (size_t i = 0; names != NULL && names[i] != NULL; i++) {
        fprintf(out, "%s %s", i ? "," : "", names[i]);
    }
    fputs("\n\nWith --batch-count N, the first image is written to the --output name and image i\n"
          "(1..N-1) gets \"_i\" before the extension: out.png, out_1.png, out_2.png, ...\n"
          "Each PNG carries a \"parameters\" text chunk in AUTOMATIC1111's format, so other\n"
          "tools can read back how it was made.\n",
          out);
}

static const command txt2img_command = {
    "txt2img", "-m MODEL -p PROMPT [options]", "generate images from a text prompt",
    txt2img_table, sizeof txt2img_table / sizeof txt2img_table[0], NULL, 0, txt2img_extra_help,
};

static void img2img_extra_help(FILE *out)
{
    txt2img_extra_help(out);
    fputs("\nThe init image is encoded by the model's VAE (posterior mean) and noised to the level\n"
          "of step steps - int(strength * steps) of the schedule; the remaining int(strength *\n"
          "steps) steps run (ddim: CompVis scripts/img2img.py). Draw 0 of the seed's stream is\n"
          "that noise. Strength 0 returns the VAE's reconstruction of the init image.\n",
          out);
}

static const command img2img_command = {
    "img2img", "-m MODEL -i INIT.png -p PROMPT [--strength S] [options]",
    "change an image guided by a text prompt", img2img_table,
    sizeof img2img_table / sizeof img2img_table[0], NULL, 0, img2img_extra_help,
};

static void inpaint_extra_help(FILE *out)
{
    txt2img_extra_help(out);
    fputs("\nInpainting checkpoints (9-channel UNet, e.g. sd-v1-5-inpainting) see the mask and the\n"
          "masked image; ordinary checkpoints keep the unmasked area by resetting it to the\n"
          "(noised) original after every step. --fill: original = the image as it is, fill = its\n"
          "surrounding colours, latent-noise / latent-nothing = noise / zeros in the latent.\n"
          "The result is pasted over the original through the blurred mask unless\n"
          "--no-composite. --outpaint 64,0,64,0 adds 64 pixels left and right (right and bottom\n"
          "grow further until the canvas is a multiple of 64; the new area starts as the nearest\n"
          "edge pixels).\n",
          out);
}

static const command inpaint_command = {
    "inpaint", "-m MODEL -i IMAGE.png --mask MASK.png -p PROMPT [options]",
    "repaint the masked part of an image (or outpaint with --outpaint)", inpaint_table,
    sizeof inpaint_table / sizeof inpaint_table[0], NULL, 0, inpaint_extra_help,
};

static const command info_command = {
    "info", "[options] MODEL", "load a checkpoint and show its family and latent shape",
    info_table, sizeof info_table / sizeof info_table[0], "MODEL", INFO(model), NULL,
};

static void upscale_extra_help(FILE *out)
{
    fputs("\nldm-sr (the LDM paper's 4x super-resolution, VQ-f4) takes no prompt and no guidance;\n"
          "x4-upscaler (Stable Diffusion's) takes a prompt, --cfg-scale and --noise-level. Inputs\n"
          "larger than a tile run in overlapping tiles blended over the overlap, so memory stays\n"
          "bounded; the input is edge-padded to a multiple of 8 and the result cropped to 4x.\n",
          out);
}

static const command upscale_command = {
    "upscale", "-m MODEL -i LOW.png -o HIGH.png [--steps N] [--noise-level N] [options]",
    "make an image 4x larger with a super-resolution model", upscale_table,
    sizeof upscale_table / sizeof upscale_table[0], NULL, 0, upscale_extra_help,
};

static const command *const all_commands[] = {&txt2img_command, &img2img_command, &inpaint_command,
                                              &upscale_command, &info_command};

/* ---------------------------------------------------------------------------------------------
 * Value parsing. Every function prints its own error line and returns nonzero on failure.
 * ------------------------------------------------------------------------------------------- */

static void *field(void *opts, const option *opt)
{
    return (char *)opts + opt->offset;
}

/* strtol/strtod skip leading blanks and accept "+"; a number on the command line should be
 * just a number, so anything else is refused up front. */
static int looks_numeric(const char *s)
{
    if (*s == '-') {
        s++;
    }
    return (*s >= '0' && *s <= '9') || (*s == '.' && s[1] >= '0' && s[1] <= '9');
}

static int parse_int(const option *opt, const char *text, int32_t *out)
{
    char *end = NULL;
    errno = 0;
    long v = looks_numeric(text) ? strtol(text, &end, 10) : 0;
    if (end == NULL || end == text || *end != '\0') {
        cli_error("--%s: '%s' is not an integer", opt->long_name, text);
        return -1;
    }
    if (errno == ERANGE || (double)v < opt->min || (double)v > opt->max) {
        cli_error("--%s: %s is out of range (%.0f..%.0f)", opt->long_name, text, opt->min, opt->max);
        return -1;
    }
    if (opt->multiple_of > 0 && v % opt->multiple_of != 0) {
        cli_error("--%s: %s is not a multiple of %d", opt->long_name, text, opt->multiple_of);
        return -1;
    }
    *out = (int32_t)v;
    return 0;
}

static int parse_float(const option *opt, const char *text, float *out)
{
    char *end = NULL;
    double v = looks_numeric(text) ? strtod(text, &end) : 0; /* "C" locale: '.' decimal point */
    if (end == NULL || end == text || *end != '\0' || !isfinite(v)) {
        cli_error("--%s: '%s' is not a number", opt->long_name, text);
        return -1;
    }
    if (v < opt->min || v > opt->max) {
        cli_error("--%s: %s is out of range (%g..%g)", opt->long_name, text, opt->min, opt->max);
        return -1;
    }
    *out = (float)v;
    return 0;
}

static int parse_double(const option *opt, const char *text, double *out)
{
    char *end = NULL;
    double v = looks_numeric(text) ? strtod(text, &end) : 0;
    if (end == NULL || end == text || *end != '\0' || !isfinite(v)) {
        cli_error("--%s: '%s' is not a number", opt->long_name, text);
        return -1;
    }
    if (v < opt->min || v > opt->max) {
        cli_error("--%s: %s is out of range (%g..%g)", opt->long_name, text, opt->min, opt->max);
        return -1;
    }
    *out = v;
    return 0;
}

/* "2.4G", "1500M", "512k", "123456" (bytes): a non-negative number and a binary suffix. */
static int parse_size(const option *opt, const char *text, uint64_t *out)
{
    char *end = NULL;
    double v = looks_numeric(text) ? strtod(text, &end) : -1;
    double mul = 1;
    if (end != NULL && end != text) {
        switch (*end) {
        case 'k': case 'K': mul = 1024.0; end++; break;
        case 'm': case 'M': mul = 1048576.0; end++; break;
        case 'g': case 'G': mul = 1073741824.0; end++; break;
        case 't': case 'T': mul = 1099511627776.0; end++; break;
        default: break;
        }
        if (mul > 1 && (*end == 'B' || *end == 'b')) {
            end++;
        }
    }
    if (end == NULL || end == text || *end != '\0' || !(v >= 0) || !isfinite(v) || v * mul > 1.8e19) {
        cli_error("--%s: '%s' is not a size (e.g. 2.4G, 1500M, or bytes)", opt->long_name, text);
        return -1;
    }
    *out = (uint64_t)(v * mul);
    return 0;
}

/* Seeds are full 64-bit integers: parsed with strtoull, never through a double (which would
 * round anything above 2^53). strtoull also accepts "-5" (negating it modulo 2^64), so only
 * digits are allowed, plus the literal "-1" meaning "random". */
static int parse_seed(const option *opt, const char *text, cli_seed *out)
{
    if (strcmp(text, "-1") == 0) {
        out->random = 1;
        return 0;
    }
    size_t digits = strspn(text, "0123456789");
    char *end = NULL;
    errno = 0;
    unsigned long long v = digits > 0 && text[digits] == '\0' ? strtoull(text, &end, 10) : 0;
    if (end == NULL || *end != '\0') {
        cli_error("--%s: '%s' is not a seed (an integer 0..18446744073709551615, or -1 for random)",
                  opt->long_name, text);
        return -1;
    }
#if ULLONG_MAX > UINT64_MAX
    if (v > UINT64_MAX) {
        errno = ERANGE;
    }
#endif
    if (errno == ERANGE) {
        cli_error("--%s: %s is out of range (0..18446744073709551615)", opt->long_name, text);
        return -1;
    }
    out->value = (uint64_t)v;
    out->random = 0;
    return 0;
}

/* Names are matched without regard to case ("Karras" is how A1111 writes it). */
static int parse_choice(const option *opt, const char *text, int32_t *out)
{
    for (const choice *c = opt->choices; c->name != NULL; c++) {
        if (strcasecmp(c->name, text) == 0) {
            *out = c->value;
            return 0;
        }
    }
    char names[128] = "";
    for (const choice *c = opt->choices; c->name != NULL; c++) {
        size_t len = strlen(names);
        snprintf(names + len, sizeof names - len, "%s%s", len ? ", " : "", c->name);
    }
    cli_error("--%s: '%s' is not one of %s", opt->long_name, text, names);
    return -1;
}

static int apply_value(const option *opt, const char *value, void *opts)
{
    void *dst = field(opts, opt);
    switch (opt->kind) {
    case OPT_STRING:
        if (opt->nonempty && value[0] == '\0') {
            cli_error("--%s: the value is empty", opt->long_name);
            return -1;
        }
        *(const char **)dst = value;
        return 0;
    case OPT_INT:
        return parse_int(opt, value, dst);
    case OPT_FLOAT:
        return parse_float(opt, value, dst);
    case OPT_DOUBLE:
        return parse_double(opt, value, dst);
    case OPT_SEED:
        return parse_seed(opt, value, dst);
    case OPT_CHOICE:
        return parse_choice(opt, value, dst);
    case OPT_SIZE:
        return parse_size(opt, value, dst);
    case OPT_FLAG:
        break;
    }
    return -1; /* flags never get here: the walkers handle them */
}

/* ---------------------------------------------------------------------------------------------
 * argv walking
 * ------------------------------------------------------------------------------------------- */

static const option *find_long(const command *cmd, const char *name, size_t len)
{
    for (size_t i = 0; i < cmd->n_options; i++) {
        const char *ln = cmd->options[i].long_name;
        const char *alias = cmd->options[i].alias;
        if ((strlen(ln) == len && strncmp(ln, name, len) == 0) ||
            (alias != NULL && strlen(alias) == len && strncmp(alias, name, len) == 0)) {
            return &cmd->options[i];
        }
    }
    return NULL;
}

static const option *find_short(const command *cmd, char c)
{
    for (size_t i = 0; i < cmd->n_options; i++) {
        if (cmd->options[i].short_name == c) {
            return &cmd->options[i];
        }
    }
    return NULL;
}

static cli_result unknown_option(const command *cmd, const char *shown)
{
    cli_error("unknown option '%s' for 'ldm %s' (see 'ldm %s --help')", shown, cmd->name,
              cmd->name);
    return CLI_USAGE;
}

/* The value of an option given as a separate argument: the next one, whatever it looks like. */
static const char *next_value(const char *shown, int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        cli_error("option '%s' needs a value", shown);
        return NULL;
    }
    return argv[++*i];
}

/* "--name", "--name value" or "--name=value". */
static cli_result parse_long(const command *cmd, int argc, char **argv, int *i, void *opts)
{
    const char *name = argv[*i] + 2;
    const char *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    if (len == 4 && strncmp(name, "help", 4) == 0 && eq == NULL) {
        return CLI_HELP;
    }
    const option *opt = find_long(cmd, name, len);
    if (opt == NULL) {
        char shown[64];
        snprintf(shown, sizeof shown, "--%.*s", (int)(len < 40 ? len : 40), name);
        return unknown_option(cmd, shown);
    }
    if (opt->kind == OPT_FLAG) {
        if (eq != NULL) {
            cli_error("option '--%s' takes no value", opt->long_name);
            return CLI_USAGE;
        }
        (*(int32_t *)field(opts, opt))++;
        return CLI_RUN;
    }
    char shown[64];
    snprintf(shown, sizeof shown, "--%s", opt->long_name);
    const char *value = eq ? eq + 1 : next_value(shown, argc, argv, i);
    if (value == NULL || apply_value(opt, value, opts) != 0) {
        return CLI_USAGE;
    }
    return CLI_RUN;
}

/* "-v", "-vv", "-W 512", "-W512", "-vW512": flags may be bundled, and the first option that
 * takes a value consumes the rest of the argument (or the next one). */
static cli_result parse_short(const command *cmd, int argc, char **argv, int *i, void *opts)
{
    const char *arg = argv[*i];
    for (size_t j = 1; arg[j] != '\0'; j++) {
        char shown[3] = {'-', arg[j], '\0'};
        if (arg[j] == 'h') {
            return CLI_HELP;
        }
        const option *opt = find_short(cmd, arg[j]);
        if (opt == NULL) {
            return unknown_option(cmd, shown);
        }
        if (opt->kind == OPT_FLAG) {
            (*(int32_t *)field(opts, opt))++;
            continue;
        }
        const char *value = arg[j + 1] ? &arg[j + 1] : next_value(shown, argc, argv, i);
        if (value == NULL || apply_value(opt, value, opts) != 0) {
            return CLI_USAGE;
        }
        return CLI_RUN;
    }
    return CLI_RUN;
}

static cli_result take_positional(const command *cmd, const char *arg, void *opts, int *taken)
{
    if (cmd->positional == NULL || *taken) {
        cli_error("unexpected argument '%s' for 'ldm %s' (see 'ldm %s --help')", arg, cmd->name,
                  cmd->name);
        return CLI_USAGE;
    }
    *(const char **)((char *)opts + cmd->positional_offset) = arg;
    *taken = 1;
    return CLI_RUN;
}

static cli_result check_required(const command *cmd, const void *opts)
{
    for (size_t i = 0; i < cmd->n_options; i++) {
        const option *opt = &cmd->options[i];
        if (opt->required && *(const char *const *)((const char *)opts + opt->offset) == NULL) {
            cli_error("missing required option --%s (see 'ldm %s --help')", opt->long_name,
                      cmd->name);
            return CLI_USAGE;
        }
    }
    return CLI_RUN;
}

/* argv[0] is the subcommand's name. */
static cli_result parse_command(const command *cmd, int argc, char **argv, void *opts)
{
    int options_done = 0;
    int taken = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        cli_result r;
        if (!options_done && strcmp(arg, "--") == 0) {
            options_done = 1;
            continue;
        }
        if (!options_done && arg[0] == '-' && arg[1] == '-') {
            r = parse_long(cmd, argc, argv, &i, opts);
        } else if (!options_done && arg[0] == '-' && arg[1] != '\0') {
            r = parse_short(cmd, argc, argv, &i, opts);
        } else {
            r = take_positional(cmd, arg, opts, &taken);
        }
        if (r != CLI_RUN) {
            return r;
        }
    }
    return check_required(cmd, opts);
}

/* ---------------------------------------------------------------------------------------------
 * Help
 * ------------------------------------------------------------------------------------------- */

static const char *choice_name(const choice *choices, int32_t value)
{
    for (const choice *c = choices; c->name != NULL; c++) {
        if (c->value == value) {
            return c->name;
        }
    }
    return "?";
}

/* " (default: 512)" from the defaults struct, "" where a default means nothing. */
static void format_default(const option *opt, const void *defaults, char *buf, size_t size)
{
    const void *src = (const char *)defaults + opt->offset;
    buf[0] = '\0';
    switch (opt->kind) {
    case OPT_STRING:
        if (*(const char *const *)src != NULL) {
            snprintf(buf, size, " (default: %s)", *(const char *const *)src);
        }
        break;
    case OPT_INT:
        snprintf(buf, size, " (default: %d)", *(const int32_t *)src);
        break;
    case OPT_FLOAT:
        snprintf(buf, size, " (default: %g)", (double)*(const float *)src);
        break;
    case OPT_DOUBLE:
        snprintf(buf, size, " (default: %g)", *(const double *)src);
        break;
    case OPT_SEED: {
        const cli_seed *seed = src;
        if (seed->random) {
            snprintf(buf, size, " (default: random)");
        } else {
            snprintf(buf, size, " (default: %llu)", (unsigned long long)seed->value);
        }
        break;
    }
    case OPT_CHOICE:
        snprintf(buf, size, " (default: %s)", choice_name(opt->choices, *(const int32_t *)src));
        break;
    case OPT_SIZE:
        if (*(const uint64_t *)src == 0) {
            snprintf(buf, size, " (default: no limit)");
        } else {
            snprintf(buf, size, " (default: %llu)", (unsigned long long)*(const uint64_t *)src);
        }
        break;
    case OPT_FLAG:
        break;
    }
    if (opt->required) {
        snprintf(buf, size, " (required)");
    }
}

static void format_metavar(const option *opt, char *buf, size_t size)
{
    buf[0] = '\0';
    if (opt->kind == OPT_FLAG) {
        return;
    }
    if (opt->metavar != NULL) {
        snprintf(buf, size, " %s", opt->metavar);
        return;
    }
    for (const choice *c = opt->choices; c->name != NULL; c++) {
        size_t len = strlen(buf);
        snprintf(buf + len, size - len, "%s%s", c == opt->choices ? " " : "|", c->name);
    }
}

static void print_option(const option *opt, const void *defaults, FILE *out)
{
    char left[128], metavar[96], def[96], alias[48] = "";
    format_metavar(opt, metavar, sizeof metavar);
    if (opt->alias != NULL) {
        snprintf(alias, sizeof alias, ", --%s", opt->alias);
    }
    if (opt->short_name) {
        snprintf(left, sizeof left, "-%c, --%s%s%s", opt->short_name, opt->long_name, alias, metavar);
    } else {
        snprintf(left, sizeof left, "    --%s%s%s", opt->long_name, alias, metavar);
    }
    format_default(opt, defaults, def, sizeof def);
    if (strlen(left) > 28) { /* keep the help column aligned for long option names */
        fprintf(out, "  %s\n  %-28s  %s%s\n", left, "", opt->help, def);
    } else {
        fprintf(out, "  %-28s  %s%s\n", left, opt->help, def);
    }
}

static void print_help(const command *cmd, const void *defaults, FILE *out)
{
    fprintf(out, "usage: ldm %s %s\n\n%c%s.\n\noptions:\n", cmd->name, cmd->usage,
            toupper((unsigned char)cmd->summary[0]), cmd->summary + 1);
    for (size_t i = 0; i < cmd->n_options; i++) {
        print_option(&cmd->options[i], defaults, out);
    }
    fprintf(out, "  %-28s  %s\n", "-h, --help", "show this help and exit");
    if (cmd->extra_help != NULL) {
        cmd->extra_help(out);
    }
}

void cli_print_usage(FILE *out)
{
    fputs("usage: ldm <command> [options]\n"
          "       ldm --list-samplers | --list-devices | --help | --version\n\ncommands:\n",
          out);
    for (size_t i = 0; i < sizeof all_commands / sizeof all_commands[0]; i++) {
        const command *cmd = all_commands[i];
        fprintf(out, "  ldm %s %s\n      %s\n", cmd->name, cmd->usage, cmd->summary);
    }
    fputs("\n'ldm <command> --help' lists a command's options.\n"
          "\nexit status: 0 success, 1 failure (library or file error), 2 usage error,\n"
          "130 interrupted (Ctrl-C).\n",
          out);
}

/* ---------------------------------------------------------------------------------------------
 * Commands
 * ------------------------------------------------------------------------------------------- */

static int32_t scheduler_index(const char *name)
{
    for (const choice *c = scheduler_choices; c->name != NULL; c++) {
        if (name != NULL && strcmp(c->name, name) == 0) {
            return c->value;
        }
    }
    return 0;
}

/* The defaults shown by --help. The help printer reads fields by offset and kind from a
 * type-erased pointer; a union of every command's options makes that object large enough and
 * fully initialised whatever the table says (and keeps the compiler's flow analysis quiet). */
typedef union any_options {
    txt2img_options txt2img;
    upscale_options upscale;
    info_options info;
} any_options;

/* Defaults are the library's, read from its params_init functions rather than repeated here. */
static void txt2img_defaults(txt2img_options *o)
{
    ldm_txt2img_params p;
    ldm_context_params c;
    ldm_model_params m;
    ldm_txt2img_params_init(&p);
    ldm_context_params_init(&c);
    ldm_model_params_init(&m);

    memset(o, 0, sizeof *o);
    o->negative_prompt = p.negative_prompt;
    o->output = "out.png";
    o->sampler = p.sampler != NULL ? p.sampler : "euler"; /* ldm.h: NULL means euler */
    o->scheduler = scheduler_index(p.scheduler);
    o->width = p.width;
    o->height = p.height;
    o->steps = p.steps;
    o->cfg_scale = p.cfg_scale;
    o->seed.value = p.seed;
    o->seed.random = p.random_seed;
    o->rng = p.rng;
    o->batch_count = p.batch_count;
    o->clip_skip = p.clip_skip;
    o->eta = p.eta;
    o->max_memory = p.max_memory;
    o->vae_tile = p.vae_tile;
    o->threads = c.n_threads;
    o->backend = c.backend;
    o->device = c.device_index;
    o->prediction = m.prediction;
}

/* --device N picks a Vulkan device: with --backend cpu it is a contradiction. */
static cli_result check_device(cli_result r, int32_t backend, int32_t device)
{
    if (r == CLI_RUN && device >= 0 && backend == LDM_BACKEND_CPU) {
        cli_error("--device %d selects a Vulkan device; it cannot be combined with --backend cpu", (int)device);
        return CLI_USAGE;
    }
    return r;
}

cli_result txt2img_parse(int argc, char **argv, txt2img_options *o)
{
    txt2img_defaults(o);
    any_options defaults; /* for --help, untouched by options parsed before it */
    memset(&defaults, 0, sizeof defaults);
    defaults.txt2img = *o;
    cli_result r = parse_command(&txt2img_command, argc, argv, o);
    r = check_device(r, o->backend, o->device);
    if (r == CLI_HELP) {
        print_help(&txt2img_command, &defaults, stdout);
    }
    return r;
}

/* The img2img defaults are ldm_img2img_params_init()'s (strength 0.75, ...). */
static void img2img_defaults(txt2img_options *o)
{
    ldm_img2img_params p;
    ldm_img2img_params_init(&p);
    txt2img_defaults(o);
    o->width = 0; /* from the init image */
    o->height = 0;
    o->sampler = p.sampler != NULL ? p.sampler : "euler";
    o->scheduler = scheduler_index(p.scheduler);
    o->steps = p.steps;
    o->cfg_scale = p.cfg_scale;
    o->seed.value = p.seed;
    o->seed.random = p.random_seed;
    o->rng = p.rng;
    o->batch_count = p.batch_count;
    o->clip_skip = p.clip_skip;
    o->eta = p.eta;
    o->strength = p.strength;
}

cli_result img2img_parse(int argc, char **argv, txt2img_options *o)
{
    img2img_defaults(o);
    any_options defaults;
    memset(&defaults, 0, sizeof defaults);
    defaults.txt2img = *o;
    cli_result r = parse_command(&img2img_command, argc, argv, o);
    r = check_device(r, o->backend, o->device);
    if (r == CLI_HELP) {
        print_help(&img2img_command, &defaults, stdout);
    }
    return r;
}

/* The inpaint defaults are ldm_inpaint_params_init()'s (strength 1, mask blur 4, ...). */
static void inpaint_defaults(txt2img_options *o)
{
    ldm_inpaint_params p;
    ldm_outpaint_params op;
    ldm_inpaint_params_init(&p);
    ldm_outpaint_params_init(&op);
    txt2img_defaults(o);
    o->width = 0; /* from the image */
    o->height = 0;
    o->sampler = p.sampler != NULL ? p.sampler : "euler";
    o->scheduler = scheduler_index(p.scheduler);
    o->steps = p.steps;
    o->cfg_scale = p.cfg_scale;
    o->seed.value = p.seed;
    o->seed.random = p.random_seed;
    o->rng = p.rng;
    o->batch_count = p.batch_count;
    o->clip_skip = p.clip_skip;
    o->eta = p.eta;
    o->strength = p.strength;
    o->mask_blur = p.mask_blur;
    o->fill = p.fill;
    o->no_composite = !p.composite;
    o->overlap = op.overlap;
}

/* "L,T,R,B" or "N" (all sides), each 0..MAX_SIDE. */
static int parse_padding(const char *text, int32_t pad[4])
{
    int32_t v[4];
    int n = 0;
    const char *p = text;
    while (n < 4) {
        char *end = NULL;
        errno = 0;
        long x = looks_numeric(p) ? strtol(p, &end, 10) : -1;
        if (end == NULL || end == p || errno == ERANGE || x < 0 || x > MAX_SIDE) {
            break;
        }
        v[n++] = (int32_t)x;
        p = end;
        if (*p != ',') {
            break;
        }
        p++;
    }
    if (*p != '\0' || (n != 1 && n != 4)) {
        cli_error("--outpaint: '%s' is not N or L,T,R,B (pixels, 0..%d)", text, MAX_SIDE);
        return -1;
    }
    for (int i = 0; i < 4; i++) {
        pad[i] = n == 1 ? v[0] : v[i];
    }
    return 0;
}

cli_result inpaint_parse(int argc, char **argv, txt2img_options *o)
{
    inpaint_defaults(o);
    any_options defaults;
    memset(&defaults, 0, sizeof defaults);
    defaults.txt2img = *o;
    cli_result r = parse_command(&inpaint_command, argc, argv, o);
    r = check_device(r, o->backend, o->device);
    if (r == CLI_HELP) {
        print_help(&inpaint_command, &defaults, stdout);
    } else if (r == CLI_RUN && (o->mask == NULL) == (o->outpaint == NULL)) {
        cli_error("give exactly one of --mask and --outpaint (see 'ldm inpaint --help')");
        r = CLI_USAGE;
    } else if (r == CLI_RUN && o->outpaint != NULL && parse_padding(o->outpaint, o->pad) != 0) {
        r = CLI_USAGE;
    }
    return r;
}

/* The upscale defaults are ldm_upscale_params_init()'s. */
cli_result upscale_parse(int argc, char **argv, upscale_options *o)
{
    ldm_upscale_params p;
    ldm_context_params c;
    ldm_model_params m;
    ldm_upscale_params_init(&p);
    ldm_context_params_init(&c);
    ldm_model_params_init(&m);
    memset(o, 0, sizeof *o);
    o->output = "out.png";
    o->sampler = p.sampler;
    o->scheduler = scheduler_index(p.scheduler);
    o->steps = p.steps;
    o->cfg_scale = p.cfg_scale;
    o->noise_level = p.noise_level;
    o->eta = p.eta;
    o->seed.value = p.seed;
    o->seed.random = p.random_seed;
    o->rng = p.rng;
    o->tile = p.tile;
    o->tile_overlap = p.tile_overlap;
    o->threads = c.n_threads;
    o->backend = c.backend;
    o->device = c.device_index;
    o->prediction = m.prediction;
    any_options defaults;
    memset(&defaults, 0, sizeof defaults);
    defaults.upscale = *o;
    cli_result r = parse_command(&upscale_command, argc, argv, o);
    r = check_device(r, o->backend, o->device);
    if (r == CLI_HELP) {
        print_help(&upscale_command, &defaults, stdout);
    }
    return r;
}

cli_result info_parse(int argc, char **argv, info_options *o)
{
    ldm_context_params c;
    ldm_model_params m;
    ldm_context_params_init(&c);
    ldm_model_params_init(&m);
    memset(o, 0, sizeof *o);
    o->backend = c.backend;
    o->device = c.device_index;
    o->prediction = m.prediction;
    o->threads = c.n_threads;

    any_options defaults;
    memset(&defaults, 0, sizeof defaults);
    defaults.info = *o;
    cli_result r = parse_command(&info_command, argc, argv, o);
    r = check_device(r, o->backend, o->device);
    if (r == CLI_HELP) {
        print_help(&info_command, &defaults, stdout);
    } else if (r == CLI_RUN && o->model == NULL) {
        cli_error("missing MODEL (see 'ldm info --help')");
        r = CLI_USAGE;
    }
    return r;
}

const char *cli_scheduler_name(int32_t scheduler)
{
    return choice_name(scheduler_choices, scheduler);
}

const char *cli_scheduler_label(int32_t scheduler)
{
    size_t n = sizeof scheduler_labels / sizeof scheduler_labels[0];
    return scheduler >= 0 && (size_t)scheduler < n ? scheduler_labels[scheduler] : NULL;
}

const char *cli_rng_name(int32_t rng)
{
    return choice_name(rng_choices, rng);
}

const char *cli_fill_name(int32_t fill)
{
    return choice_name(fill_choices, fill);
}
