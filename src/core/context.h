/* The context: the backend a call runs on, logging and the cancellation flag. */
#ifndef LDM_CORE_CONTEXT_H
#define LDM_CORE_CONTEXT_H

#include "backend.h"
#include "ops.h"

#include <stdatomic.h>

struct ldm_context {
    ldm_backend *be;
    int32_t backend_kind; /* resolved: LDM_BACKEND_CPU or LDM_BACKEND_VULKAN */
    int32_t n_threads;
    int32_t log_level;
    ldm_log_fn log_fn;
    void *log_user_data;
    atomic_int cancel;
};

void ctx_log(ldm_context *ctx, ldm_log_level level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Starts a call: clears the cancel flag and the last error, prepares an executor. */
void ctx_begin(ldm_context *ctx, ldm_exec *ex);

ldm_status ldm_model_load_internal(const char *path, const ldm_model_params *params, ldm_model **out);

#endif
