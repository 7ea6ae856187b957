/* txt2img on the Vulkan backend through the public API (sd1-tiny, 64x64, euler, 4 steps, CFG 7.5):
 *  - the same seed twice gives bit-identical images;
 *  - CPU and Vulkan images differ by at most 1/255 on at least 99.9% of the pixels (issue 4);
 *  - a cancellation from the progress callback returns LDM_ERR_CANCELLED and the context still
 *    works afterwards (the next run gives the same image again);
 *  - the device list, backend=vulkan with a bad device index (LDM_ERR_BACKEND, a message, no
 *    crash), and AUTO never taking a CPU Vulkan driver.
 * usage: test_vulkan_txt2img DATA_DIR (tests/data). Run with LDM_VULKAN_VALIDATION=1. */
#include <ldm/ldm.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;

#define FAILF(...)                                                                                           \
    do {                                                                                                     \
        failures++;                                                                                          \
        fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                                 \
        fprintf(stderr, __VA_ARGS__);                                                                        \
        fprintf(stderr, "\n");                                                                               \
    } while (0)

enum { SIZE = 64 };

static int cancel_at = -1;

static int progress(int32_t step, int32_t total, void *user) {
    (void)total;
    (void)user;
    return cancel_at >= 0 && step >= cancel_at;
}

static uint8_t *generate(ldm_context *ctx, ldm_model *m, uint64_t seed, ldm_status *status) {
    ldm_txt2img_params p;
    ldm_txt2img_params_init(&p);
    p.prompt = "a photograph of an astronaut riding a horse";
    p.width = p.height = SIZE;
    p.steps = 4;
    p.cfg_scale = 7.5f;
    p.sampler = "euler";
    p.seed = seed;
    p.progress = progress;
    ldm_image *img = NULL;
    *status = ldm_txt2img(ctx, m, &p, &img);
    if (*status) return NULL;
    uint8_t *px = malloc((size_t)SIZE * SIZE * 3);
    ldm_image_copy(img, px, (size_t)SIZE * 3);
    ldm_image_destroy(img);
    return px;
}

static ldm_status open_ctx(int32_t backend, int32_t device, ldm_context **ctx) {
    ldm_context_params cp;
    ldm_context_params_init(&cp);
    cp.backend = backend;
    cp.device_index = device;
    cp.n_threads = 2;
    return ldm_context_create(&cp, ctx);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_vulkan_txt2img DATA_DIR\n");
        return 2;
    }
    char model_path[4096];
    snprintf(model_path, sizeof model_path, "%s/models/sd1-tiny.safetensors", argv[1]);

    /* devices */
    int32_t count = -1;
    if (ldm_device_count(&count) || count < 1) FAILF("ldm_device_count: %d device(s): %s", (int)count, ldm_last_error());
    bool gpu = false;
    for (int32_t i = 0; i < count; i++) {
        ldm_device_info info = {.struct_size = sizeof info};
        if (ldm_device_get(i, &info)) FAILF("ldm_device_get(%d): %s", (int)i, ldm_last_error());
        printf("device %d: %s (type %d, %llu MiB)%s\n", (int)i, info.name, (int)info.type,
               (unsigned long long)(info.memory_bytes >> 20), info.preferred ? " preferred" : "");
        if (info.type != LDM_DEVICE_CPU && info.usable) gpu = true;
    }
    ldm_device_info bad = {.struct_size = sizeof bad};
    if (ldm_device_get(count, &bad) != LDM_ERR_INVALID_ARG) FAILF("ldm_device_get(count) is not LDM_ERR_INVALID_ARG");

    ldm_context *ctx = NULL;
    ldm_status st = open_ctx(LDM_BACKEND_VULKAN, count + 3, &ctx);
    if (st != LDM_ERR_BACKEND || ctx || strlen(ldm_last_error()) == 0)
        FAILF("backend=vulkan with device %d: status %d, message '%s'", (int)(count + 3), (int)st, ldm_last_error());
    if (!open_ctx(LDM_BACKEND_AUTO, -1, &ctx)) {
        const char *name = ldm_context_backend_name(ctx);
        if (!gpu && strcmp(name, "cpu") != 0) FAILF("AUTO took Vulkan with only a CPU Vulkan driver present");
        printf("AUTO runs on: %s\n", name);
        ldm_context_destroy(ctx);
    } else {
        FAILF("AUTO context: %s", ldm_last_error());
    }

    ldm_context *vk = NULL, *cpu = NULL;
    if ((st = open_ctx(LDM_BACKEND_VULKAN, -1, &vk))) {
        fprintf(stderr, "FAIL: no Vulkan context: %s\n", ldm_last_error());
        return 1;
    }
    if (strcmp(ldm_context_backend_name(vk), "vulkan") != 0) FAILF("backend name %s", ldm_context_backend_name(vk));
    if ((st = open_ctx(LDM_BACKEND_CPU, -1, &cpu))) {
        fprintf(stderr, "cpu context: %s\n", ldm_last_error());
        return 1;
    }
    ldm_model_params mp;
    ldm_model_params_init(&mp);
    ldm_model *m = NULL;
    if (ldm_model_load(vk, model_path, &mp, &m)) {
        fprintf(stderr, "loading %s: %s\n", model_path, ldm_last_error());
        return 1;
    }

    uint8_t *a = generate(vk, m, 42, &st);
    if (!a) FAILF("vulkan txt2img: %s", ldm_last_error());
    uint8_t *b = generate(vk, m, 42, &st);
    if (!b) FAILF("vulkan txt2img (again): %s", ldm_last_error());
    size_t n = (size_t)SIZE * SIZE * 3;
    if (a && b && memcmp(a, b, n) != 0) FAILF("the same seed twice on Vulkan gave different images");

    uint8_t *c = generate(cpu, m, 42, &st);
    if (!c) FAILF("cpu txt2img: %s", ldm_last_error());
    if (a && c) {
        int maxd = 0;
        size_t over = 0;
        for (size_t px = 0; px < (size_t)SIZE * SIZE; px++) {
            int d = 0;
            for (int ch = 0; ch < 3; ch++) {
                int e = abs((int)a[px * 3 + ch] - (int)c[px * 3 + ch]);
                d = e > d ? e : d;
            }
            maxd = d > maxd ? d : maxd;
            over += d > 1;
        }
        double frac = 1.0 - (double)over / (SIZE * SIZE);
        printf("CPU vs Vulkan: %.4f%% of the pixels within 1/255, max difference %d/255\n", 100.0 * frac, maxd);
        if (frac < 0.999) FAILF("CPU vs Vulkan: only %.4f%% of the pixels within 1/255", 100.0 * frac);
    }

    /* cancellation at step 2 of 4, then the same context again */
    cancel_at = 2;
    uint8_t *x = generate(vk, m, 42, &st);
    if (x || st != LDM_ERR_CANCELLED) FAILF("cancelled run: status %d (%s)", (int)st, ldm_last_error());
    free(x);
    cancel_at = -1;
    uint8_t *d = generate(vk, m, 42, &st);
    if (!d) FAILF("txt2img after a cancellation: %s", ldm_last_error());
    if (a && d && memcmp(a, d, n) != 0) FAILF("the run after a cancellation differs from the first");

    free(a);
    free(b);
    free(c);
    free(d);
    ldm_model_destroy(m);
    ldm_context_destroy(vk);
    ldm_context_destroy(cpu);
    printf("%s\n", failures ? "FAILED" : "all passed");
    return failures ? 1 : 0;
}
