/* Drives ldm-conform on one golden case the way the acceptance check does, and compares:
 *  1. writes a copy of CASE holding only the input tensors of its kind (plus __metadata__), so
 *     the runner provably never reads the expected outputs;
 *  2. runs `ldm-conform MODEL INPUTS OUT`;
 *  3. checks the required outputs exist and every tensor shared by OUT and CASE is within the
 *     tolerance rule of shared/golden/CONFORM.md for its name.
 * usage: conform_test LDM_CONFORM MODEL CASE SCRATCH_DIR [BACKEND]
 * (BACKEND, e.g. vulkan, is passed on as --backend and names the scratch files. A BACKEND ending in
 * "-fp16", a half-precision weight path, is held to CONFORM.md's half-precision rule instead:
 * max|d| <= 1e-2 max|ref| for every float tensor except schedules; exact tensors stay exact.) */
#include "core/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool in_list(const char *name, const char *const *list) {
    for (; *list; list++)
        if (strcmp(name, *list) == 0) return true;
    return false;
}

static bool starts(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

/* Input tensors of each case kind (CONFORM.md "Case kinds"). */
static bool is_input(const char *kind, const char *name) {
    static const char *const unet[] = {"x", "timesteps", "context", "c_concat", "lr_cond", "noise_level", NULL};
    static const char *const venc[] = {"image", "sample_noise", NULL};
    static const char *const sampling[] = {"x_T", "noises", NULL};
    static const char *const img2img[] = {"init_image", "posterior_noise", "encode_noise", NULL};
    static const char *const inpaint[] = {"x_T", "image_in", "mask_u8", "posterior_noise", "noises", NULL};
    static const char *const sr[] = {"x_T", "lr_u8", "lr_image", "noises", NULL};
    static const char *const upscale[] = {"x_T", "lr_u8", "lr_image", "noise_level", "aug_noise", NULL};
    static const char *const noise_aug[] = {"lr_image", "noise_level", "noise", NULL};
    if (strcmp(kind, "text_encoder") == 0) return strcmp(name, "input_ids") == 0;
    if (starts(kind, "unet_")) return in_list(name, unet);
    if (starts(kind, "vae_encode")) return in_list(name, venc);
    if (starts(kind, "vae_decode")) return strcmp(name, "latent_scaled") == 0;
    if (strcmp(kind, "vae_taps") == 0 || strcmp(kind, "vq_encode_decode") == 0) return strcmp(name, "image") == 0;
    if (starts(kind, "txt2img_")) return in_list(name, sampling);
    if (starts(kind, "img2img_")) return in_list(name, img2img);
    if (starts(kind, "inpaint_")) return in_list(name, inpaint);
    if (starts(kind, "sr_")) return in_list(name, sr);
    if (starts(kind, "upscale_")) return in_list(name, upscale);
    if (strcmp(kind, "noise_augmentation") == 0) return in_list(name, noise_aug);
    return false;
}

static const char *const *required(const char *kind, const char *model) {
    static const char *const te[] = {"last_hidden_state", NULL};
    /* OpenCLIP models (B, E): the SD 2.x context is the required output. */
    static const char *const te_openclip[] = {"penultimate_ln", NULL};
    if (strcmp(kind, "text_encoder") == 0 && (strcmp(model, "sd2-tiny") == 0 || strcmp(model, "x4-upscaler-tiny") == 0))
        return te_openclip;
    static const char *const unet[] = {"out", NULL};
    static const char *const venc[] = {"mean", "logvar", "latent_scaled", NULL};
    static const char *const vdec[] = {"image", NULL};
    static const char *const taps[] = {"moments", "decoded_from_mean", NULL};
    static const char *const sampling[] = {"latent_final", "image", "x_steps", NULL};
    static const char *const img2img[] = {"latent_final", "image", NULL};
    static const char *const none[] = {NULL};
    if (strcmp(kind, "text_encoder") == 0) return te;
    if (starts(kind, "unet_")) return unet;
    if (starts(kind, "vae_encode")) return venc;
    if (starts(kind, "vae_decode")) return vdec;
    if (strcmp(kind, "vae_taps") == 0) return taps;
    if (starts(kind, "txt2img_") || starts(kind, "inpaint_") || starts(kind, "sr_") || starts(kind, "upscale_"))
        return sampling;
    if (starts(kind, "img2img_")) return img2img;
    return none;
}

typedef enum { RULE_EXACT, RULE_SCHEDULE, RULE_SAMPLER, RULE_IMAGE, RULE_SINGLE, RULE_HALF } rule;

static rule rule_for(const char *kind, const char *name) {
    static const char *const exact[] = {"input_ids", "ids_cond", "ids_uncond", "ddim_timesteps", "t_enc", "indices",
                                        "final_indices", "noise_level", "mask_u8", "lr_u8", NULL};
    static const char *const sched[] = {"ddim_alphas", "ddim_alphas_prev", "ddim_sigmas", "sigmas", "lms_coeffs",
                                        "sqrt_alphas_cumprod_lr", "sqrt_one_minus_alphas_cumprod_lr", NULL};
    static const char *const sampler[] = {"latent_final", "x_steps", "pred_x0_steps", "denoised_steps", "x_init",
                                          "unet_in_x", "unet_out", NULL};
    if (in_list(name, exact)) return RULE_EXACT;
    if (in_list(name, sched)) return RULE_SCHEDULE;
    if (in_list(name, sampler)) return RULE_SAMPLER;
    bool sampling_kind = starts(kind, "txt2img_") || starts(kind, "img2img_") || starts(kind, "inpaint_") ||
                         starts(kind, "sr_") || starts(kind, "upscale_");
    if ((strcmp(name, "image") == 0 && sampling_kind) || strcmp(name, "image_noquant") == 0) return RULE_IMAGE;
    return RULE_SINGLE;
}

static double *as_f64(const st_tensor *t) {
    size_t n = st_numel(t);
    double *v = malloc((n ? n : 1) * sizeof *v);
    if (!v) return NULL;
    for (size_t i = 0; i < n; i++) {
        const char *p = (const char *)t->data + i * ldm_dtype_size(t->dtype);
        switch (t->dtype) {
        case LDM_DT_F32: { float f; memcpy(&f, p, 4); v[i] = f; break; }
        case LDM_DT_F64: { double d; memcpy(&d, p, 8); v[i] = d; break; }
        case LDM_DT_F16: { uint16_t h; memcpy(&h, p, 2); v[i] = ldm_f16_to_f32(h); break; }
        case LDM_DT_BF16: { uint16_t h; memcpy(&h, p, 2); v[i] = ldm_bf16_to_f32(h); break; }
        case LDM_DT_I64: { int64_t x; memcpy(&x, p, 8); v[i] = (double)x; break; }
        case LDM_DT_I32: { int32_t x; memcpy(&x, p, 4); v[i] = x; break; }
        case LDM_DT_U8: v[i] = *(const uint8_t *)p; break;
        default: v[i] = NAN; break;
        }
    }
    return v;
}

static bool is_int(ldm_dtype d) { return d == LDM_DT_I64 || d == LDM_DT_I32 || d == LDM_DT_I16 || d == LDM_DT_I8 || d == LDM_DT_U8; }

/* Returns true when `out` matches `ref` under the rule; prints one line. */
static bool compare(const char *kind, const st_tensor *out, const st_tensor *ref, const char *model, bool half) {
    const char *name = ref->name;
    if (out->ndim != ref->ndim || memcmp(out->shape, ref->shape, (size_t)ref->ndim * sizeof(int64_t)) != 0) {
        printf("  FAIL %-22s shape differs\n", name);
        return false;
    }
    if (is_int(ref->dtype) && !is_int(out->dtype)) {
        printf("  FAIL %-22s float written for an integer tensor\n", name);
        return false;
    }
    size_t n = st_numel(ref);
    double *a = as_f64(out), *b = as_f64(ref);
    rule r = rule_for(kind, name);
    if (half && r != RULE_EXACT && r != RULE_SCHEDULE) r = RULE_HALF;
    double single_abs = (strcmp(model, "ldm-txt2img-tiny") == 0 && strcmp(name, "decoded_from_mean") == 0) ? 2e-4 : 1e-4;
    double maxd = 0, maxref = 0, worst = 0;
    bool ok = a && b;
    for (size_t i = 0; ok && i < n; i++) {
        if (!isfinite(a[i])) ok = false;
        double d = fabs(a[i] - b[i]);
        maxd = fmax(maxd, d);
        maxref = fmax(maxref, fabs(b[i]));
        double lim = r == RULE_EXACT ? 0 : r == RULE_SCHEDULE ? 1e-6 * fabs(b[i]) : r == RULE_IMAGE ? 2e-4
                   : r == RULE_SINGLE ? single_abs + 1e-4 * fabs(b[i]) : INFINITY; /* sampler, half: below */
        if (d > lim) ok = false;
        if (lim > 0 && isfinite(lim)) worst = fmax(worst, d / lim);
    }
    if (ok && (r == RULE_SAMPLER || r == RULE_HALF)) {
        double rel = r == RULE_SAMPLER ? 1e-4 : 1e-2;
        ok = maxd <= rel * maxref;
        worst = maxref > 0 ? maxd / (rel * maxref) : (maxd > 0 ? INFINITY : 0);
    }
    static const char *const rule_names[] = {"exact", "schedule", "sampler", "image", "single-op", "half"};
    printf("  %s %-22s %-9s max|d| %.3g (%.0f%% of the allowed)\n", ok ? "ok  " : "FAIL", name, rule_names[r], maxd,
           100.0 * worst);
    free(a);
    free(b);
    return ok;
}

int main(int argc, char **argv) {
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: conform_test LDM_CONFORM MODEL CASE SCRATCH_DIR [BACKEND]\n");
        return 2;
    }
    const char *runner = argv[1], *model = argv[2], *case_path = argv[3], *dir = argv[4];
    st_file *ref = NULL;
    if (st_open(case_path, &ref)) {
        fprintf(stderr, "conform_test: %s\n", ldm_last_error());
        return 1;
    }
    const char *kind = st_meta(ref, "case"), *model_name = st_meta(ref, "model");
    if (!kind || !model_name) {
        fprintf(stderr, "conform_test: case lacks metadata\n");
        return 1;
    }
    /* 1. inputs-only copy */
    char in_path[4096], out_path[4096];
    const char *backend = argc == 6 ? argv[5] : NULL;
    const bool half = backend && strlen(backend) > 5 && strcmp(backend + strlen(backend) - 5, "-fp16") == 0;
    snprintf(in_path, sizeof in_path, "%s/%s-%s%s%s.inputs.safetensors", dir, model_name, kind, backend ? "-" : "",
             backend ? backend : "");
    snprintf(out_path, sizeof out_path, "%s/%s-%s%s%s.out.safetensors", dir, model_name, kind, backend ? "-" : "",
             backend ? backend : "");
    st_writer *w = st_writer_new();
    static const char *const meta_keys[] = {"model", "case", "set", "prompt", "negative_prompt", "guidance_scale", "steps",
                                            "strength", "eta", "noise_level", "parameterization", "prompts", "dtype", NULL};
    for (const char *const *k = meta_keys; *k; k++)
        if (st_meta(ref, *k)) st_writer_meta(w, *k, st_meta(ref, *k));
    for (size_t i = 0; i < st_count(ref); i++) {
        const st_tensor *t = st_at(ref, i);
        if (is_input(kind, t->name)) st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data);
    }
    if (st_writer_save(w, in_path)) {
        fprintf(stderr, "conform_test: %s\n", ldm_last_error());
        return 1;
    }
    st_writer_free(w);
    unlink(out_path);
    /* 2. run */
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' '%s'%s%s </dev/null", runner, model, in_path, out_path,
             backend ? " --backend " : "", backend ? backend : "");
    int rc = system(cmd);
    if (rc != 0) {
        printf("FAIL %s/%s: ldm-conform exited with status %d\n", model_name, kind, rc);
        return 1;
    }
    st_file *out = NULL;
    if (st_open(out_path, &out)) {
        printf("FAIL %s/%s: OUT unreadable: %s\n", model_name, kind, ldm_last_error());
        return 1;
    }
    /* 3. compare */
    bool ok = true;
    for (const char *const *r = required(kind, model_name); *r; r++) {
        if (!st_find(out, *r)) {
            printf("  FAIL required output '%s' missing\n", *r);
            ok = false;
        }
    }
    int compared = 0;
    for (size_t i = 0; i < st_count(out); i++) {
        const st_tensor *o = st_at(out, i);
        const st_tensor *g = st_find(ref, o->name);
        if (!g) continue;
        if (is_input(kind, o->name)) {
            printf("  FAIL %-22s input copied to OUT\n", o->name);
            ok = false;
            continue;
        }
        ok &= compare(kind, o, g, model_name, half);
        compared++;
    }
    printf("%s %s/%s: %d tensors compared\n", ok ? "PASS" : "FAIL", model_name, kind, compared);
    st_close(out);
    st_close(ref);
    return ok ? 0 : 1;
}
