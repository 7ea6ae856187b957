/*
 * Command-line parsing for the ldm program.
 *
 * Each subcommand describes its options in a table (name, type, bounds, help text, where the
 * value goes); one generic parser walks argv with that table and the --help text is generated
 * from the same table, so usage, validation and documentation cannot drift apart. Defaults come
 * from the library's own *_params_init() functions for the same reason.
 *
 * Syntax accepted, getopt-style: "-W 512", "-W512", "--width 512", "--width=512", repeated
 * flags ("-v -v" or "-vv"), and "--" to end options. Values may start with '-' ("--seed -1",
 * "-n -blurry").
 */
#ifndef LDM_CLI_ARGS_H
#define LDM_CLI_ARGS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Exit statuses of the ldm program (documented in --help). */
#define LDM_EXIT_OK 0
#define LDM_EXIT_FAILURE 1     /* the library or a file operation failed */
#define LDM_EXIT_USAGE 2       /* the command line was wrong; nothing was attempted */
#define LDM_EXIT_INTERRUPTED 130 /* 128 + SIGINT, the shell convention for Ctrl-C */

/* What a parse function tells its caller to do next. */
typedef enum cli_result {
    CLI_RUN = 0,   /* options are valid: run the command */
    CLI_HELP = 1,  /* --help was printed to stdout: exit 0 */
    CLI_USAGE = 2, /* an error line was printed to stderr: exit LDM_EXIT_USAGE */
} cli_result;

/* Prints "ldm: error: <message>" on one line of stderr. */
void cli_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* A seed option: either a value or "draw one" (--seed -1). */
typedef struct cli_seed {
    uint64_t value;
    int32_t random;
} cli_seed;

/* ---------------------------------------------------------------------------------------------
 * ldm txt2img and ldm img2img (one options struct; img2img adds the init image and strength
 * and takes its size from the init image)
 * ------------------------------------------------------------------------------------------- */
typedef struct txt2img_options {
    const char *model;
    const char *prompt;
    const char *negative_prompt;
    const char *output;
    const char *config;
    const char *sampler;
    int32_t scheduler; /* index into cli_scheduler_name() */
    int32_t width, height;
    int32_t steps;
    float cfg_scale;
    cli_seed seed;
    int32_t rng;       /* ldm_rng_kind */
    int32_t batch_count;
    int32_t clip_skip;
    float eta;
    int32_t threads;
    int32_t backend;    /* ldm_backend_kind */
    int32_t device;     /* --device: Vulkan device index, -1 = the best (ldm_context_params) */
    int32_t prediction; /* ldm_prediction */
    int32_t verbose;    /* number of -v */
    const char *init_image; /* img2img: -i PNG */
    double strength;        /* img2img: --strength (a double, as the library takes it) */
    /* inpaint: --mask PNG, or --outpaint L,T,R,B (the mask is made by ldm_outpaint_prepare) */
    const char *mask;
    const char *outpaint;
    int32_t pad[4];       /* --outpaint parsed: left, top, right, bottom */
    int32_t overlap;      /* --overlap */
    float mask_blur;      /* --mask-blur */
    int32_t fill;         /* --fill: ldm_inpaint_fill */
    int32_t no_composite; /* --no-composite */
    uint64_t max_memory;  /* txt2img --max-memory (bytes, 0 = no limit) */
    int32_t vae_tile;     /* txt2img --vae-tile */
} txt2img_options;

/* Parses argv (argv[0] is "txt2img") into `o`, which starts from the library defaults. */
cli_result txt2img_parse(int argc, char **argv, txt2img_options *o);
/* Parses argv (argv[0] is "img2img"); defaults from ldm_img2img_params_init(). */
cli_result img2img_parse(int argc, char **argv, txt2img_options *o);
/* Parses argv (argv[0] is "inpaint"); defaults from ldm_inpaint_params_init(). Exactly one of
 * --mask and --outpaint is required. */
cli_result inpaint_parse(int argc, char **argv, txt2img_options *o);

/* ---------------------------------------------------------------------------------------------
 * ldm upscale (ldm-sr and x4-upscaler models)
 * ------------------------------------------------------------------------------------------- */
typedef struct upscale_options {
    const char *model;
    const char *input;  /* -i: the low-res PNG */
    const char *output;
    const char *prompt; /* x4-upscaler only */
    const char *negative_prompt;
    const char *config;
    const char *sampler;
    int32_t scheduler;
    int32_t steps;
    float cfg_scale;
    int32_t noise_level;
    float eta; /* < 0: the family default */
    cli_seed seed;
    int32_t rng;
    int32_t tile, tile_overlap;
    int32_t threads;
    int32_t backend;
    int32_t device; /* --device, as in txt2img_options */
    int32_t prediction;
    int32_t verbose;
} upscale_options;

/* Parses argv (argv[0] is "upscale"); defaults from ldm_upscale_params_init(). */
cli_result upscale_parse(int argc, char **argv, upscale_options *o);

/* ---------------------------------------------------------------------------------------------
 * ldm info
 * ------------------------------------------------------------------------------------------- */
typedef struct info_options {
    const char *model;
    const char *config;
    int32_t backend;
    int32_t device; /* --device, as in txt2img_options */
    int32_t prediction;
    int32_t threads;
    int32_t verbose;
} info_options;

cli_result info_parse(int argc, char **argv, info_options *o);

/* ---------------------------------------------------------------------------------------------
 * Names for the choice values, for messages and the PNG parameters.
 * ------------------------------------------------------------------------------------------- */
const char *cli_scheduler_name(int32_t scheduler); /* "discrete", "karras", ... (library names) */
/* AUTOMATIC1111's "Schedule type" label ("Karras", "SGM Uniform"); NULL for the default. */
const char *cli_scheduler_label(int32_t scheduler);
const char *cli_rng_name(int32_t rng);             /* "cuda", "cpu" */
const char *cli_fill_name(int32_t fill);           /* "original", "fill", "latent-noise", ... */

/* The top-level usage (ldm --help): every subcommand with its one-line summary. */
void cli_print_usage(FILE *out);

#endif /* LDM_CLI_ARGS_H */
