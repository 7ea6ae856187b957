#include "context.h"

#ifdef LDM_HAVE_VULKAN
#include "vulkan/vk_api.h"
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

LDM_API void ldm_context_params_init(ldm_context_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->backend = LDM_BACKEND_AUTO;
    p->n_threads = 0;
    p->device_index = -1;
    p->log_level = LDM_LOG_WARN;
}

void ctx_log(ldm_context *ctx, ldm_log_level level, const char *fmt, ...) {
    if (!ctx || !ctx->log_fn || (int)level > ctx->log_level) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ctx->log_fn(level, msg, ctx->log_user_data);
}

void ctx_begin(ldm_context *ctx, ldm_exec *ex) {
    atomic_store(&ctx->cancel, 0);
    ldm_clear_error();
    ldm_exec_init(ex, ctx->be, &ctx->cancel);
}

LDM_API ldm_status ldm_context_create(const ldm_context_params *params, ldm_context **out) {
    if (!out) return ldm_fail(LDM_ERR_INVALID_ARG, "ldm_context_create: out is NULL");
    *out = NULL;
    ldm_context_params p;
    ldm_context_params_init(&p);
    if (params) {
        /* Copy what the caller's (possibly older) struct holds. */
        if (params->struct_size < offsetof(ldm_context_params, log_user_data) + sizeof(void *))
            return ldm_fail(LDM_ERR_INVALID_ARG, "ldm_context_params.struct_size %zu is too small", params->struct_size);
        memcpy(&p, params, LDM_MIN(params->struct_size, sizeof p));
        p.struct_size = sizeof p;
    }
    if (p.backend < LDM_BACKEND_AUTO || p.backend > LDM_BACKEND_VULKAN)
        return ldm_fail(LDM_ERR_INVALID_ARG, "unknown backend %d", p.backend);
    if (p.n_threads < 0 || p.n_threads > 1024) return ldm_fail(LDM_ERR_INVALID_ARG, "n_threads %d out of range", p.n_threads);
    ldm_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    ctx->n_threads = p.n_threads > 0 ? p.n_threads : (int32_t)sysconf(_SC_NPROCESSORS_ONLN);
    if (ctx->n_threads < 1) ctx->n_threads = 1;
    ctx->log_fn = p.log_fn;
    ctx->log_user_data = p.log_user_data;
    ctx->log_level = p.log_level;
    atomic_init(&ctx->cancel, 0);
    if (p.backend != LDM_BACKEND_CPU) {
#ifdef LDM_HAVE_VULKAN
        /* AUTO takes a GPU only: a CPU Vulkan driver (lavapipe) is slower than our CPU backend. */
        ldm_vk_options vo;
        ldm_vk_options_init(&vo);
        vo.device_index = p.device_index;
        vo.allow_cpu_device = p.backend == LDM_BACKEND_VULKAN || p.device_index >= 0;
        vo.fp16_weights = p.vulkan_fp16_weights != 0;
        ldm_status vst = ldm_vk_backend_create(&vo, ctx->n_threads, &ctx->be);
        if (!vst) {
            ctx->backend_kind = LDM_BACKEND_VULKAN;
            ctx_log(ctx, LDM_LOG_INFO, "using the Vulkan device %s", ldm_vk_device_name(ctx->be));
            if (vo.fp16_weights && !ldm_vk_fp16_weights(ctx->be))
                ctx_log(ctx, LDM_LOG_INFO, "the device lacks storageBuffer16BitAccess: weights stay float32");
            *out = ctx;
            return LDM_OK;
        }
        if (p.backend == LDM_BACKEND_VULKAN) {
            free(ctx);
            return vst; /* LDM_ERR_BACKEND with the reason */
        }
        ctx_log(ctx, LDM_LOG_INFO, "%s; using the CPU", ldm_last_error());
        ldm_clear_error();
#else
        if (p.backend == LDM_BACKEND_VULKAN) {
            free(ctx);
            return ldm_fail(LDM_ERR_BACKEND, "the Vulkan backend is not available in this build");
        }
        ctx_log(ctx, LDM_LOG_INFO, "no Vulkan backend in this build; using the CPU");
#endif
    }
    ldm_status st = ldm_cpu_backend_create(ctx->n_threads, &ctx->be);
    if (st) {
        free(ctx);
        return st;
    }
    ctx->backend_kind = LDM_BACKEND_CPU;
    *out = ctx;
    return LDM_OK;
}

LDM_API void ldm_context_destroy(ldm_context *ctx) {
    if (!ctx) return;
    if (ctx->be) ctx->be->ops->destroy(ctx->be);
    free(ctx);
}

LDM_API const char *ldm_context_backend_name(const ldm_context *ctx) {
    if (!ctx) return NULL;
    return ctx->backend_kind == LDM_BACKEND_VULKAN ? "vulkan" : "cpu";
}

LDM_API void ldm_context_cancel(ldm_context *ctx) {
    if (ctx) atomic_store(&ctx->cancel, 1);
}

LDM_API ldm_status ldm_device_count(int32_t *count) {
    if (!count) return ldm_fail(LDM_ERR_INVALID_ARG, "ldm_device_count: count is NULL");
    *count = 0;
#ifdef LDM_HAVE_VULKAN
    /* no loader, no driver: simply no devices */
    if (ldm_vk_list_devices(-1, count, NULL, 0, NULL, NULL, NULL, NULL, NULL, NULL)) {
        *count = 0;
        ldm_clear_error();
    }
#endif
    return LDM_OK;
}

LDM_API ldm_status ldm_device_get(int32_t index, ldm_device_info *info) {
    if (!info) return ldm_fail(LDM_ERR_INVALID_ARG, "ldm_device_get: info is NULL");
    if (info->struct_size < offsetof(ldm_device_info, usable) + sizeof info->usable)
        return ldm_fail(LDM_ERR_INVALID_ARG, "ldm_device_info.struct_size %zu is too small", info->struct_size);
    size_t size = info->struct_size;
    ldm_device_info d;
    memset(&d, 0, sizeof d);
    d.struct_size = LDM_MIN(size, sizeof d);
    d.index = index;
#ifdef LDM_HAVE_VULKAN
    int32_t count = 0;
    ldm_status st = ldm_vk_list_devices(index, &count, d.name, sizeof d.name, &d.type, &d.memory_bytes, &d.vendor_id,
                                        &d.device_id, &d.preferred, &d.usable);
    if (st) return st;
    if (index < 0 || index >= count)
        return ldm_fail(LDM_ERR_INVALID_ARG, "device index %d out of range (%d device(s))", (int)index, (int)count);
    /* Vulkan's VkPhysicalDeviceType numbers are ldm_device_type's */
    memcpy(info, &d, LDM_MIN(size, sizeof d));
    return LDM_OK;
#else
    (void)d;
    return ldm_fail(LDM_ERR_INVALID_ARG, "device index %d out of range (no Vulkan in this build)", (int)index);
#endif
}
