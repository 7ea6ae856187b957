#include "context.h"

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
    if (p.backend == LDM_BACKEND_VULKAN) {
        free(ctx);
        return ldm_fail(LDM_ERR_BACKEND, "the Vulkan backend is not available in this build");
    }
    if (p.backend == LDM_BACKEND_AUTO) ctx_log(ctx, LDM_LOG_INFO, "no Vulkan backend in this build; using the CPU");
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
