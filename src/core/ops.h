/* The execution layer that model code calls: thin wrappers over the backend vtable that
 *  - allocate the output in the right shape,
 *  - check the context's cancellation flag between operations,
 *  - propagate failure: once an op fails, `ex->status` holds the first error and every later op
 *    given a NULL input returns NULL without work, so a forward pass reads as straight-line code
 *    and checks the status once at the end (the style of llm.c's forward functions).
 * Ops never take ownership of their inputs; release intermediates with op_free(). */
#ifndef LDM_CORE_OPS_H
#define LDM_CORE_OPS_H

#include "backend.h"

#include <stdatomic.h>

typedef struct ldm_exec {
    ldm_backend *be;
    atomic_int *cancel; /* may be NULL */
    ldm_status status;  /* first error, LDM_OK while all is well */
} ldm_exec;

void ldm_exec_init(ldm_exec *ex, ldm_backend *be, atomic_int *cancel);
/* Records an error (first one wins) and returns NULL, for use in op-returning code. */
ldm_tensor *op_error(ldm_exec *ex, ldm_status st);

ldm_tensor *op_new(ldm_exec *ex, int32_t ndim, const int64_t *shape);
ldm_tensor *op_new4(ldm_exec *ex, int64_t a, int64_t b, int64_t c, int64_t d); /* drops leading 0s */
ldm_tensor *op_from_host(ldm_exec *ex, int32_t ndim, const int64_t *shape, const float *data);
ldm_status op_to_host(ldm_exec *ex, const ldm_tensor *t, float *out);
void op_free(ldm_exec *ex, ldm_tensor *t);
/* Changes the shape of t in place (same element count). Returns t (or NULL if t is NULL). */
ldm_tensor *op_reshape(ldm_exec *ex, ldm_tensor *t, int32_t ndim, const int64_t *shape);

ldm_tensor *op_conv2d(ldm_exec *ex, const ldm_tensor *x, const ldm_tensor *w, const ldm_tensor *b, int32_t stride,
                      int32_t pad);
ldm_tensor *op_conv2d_ex(ldm_exec *ex, const ldm_tensor *x, const ldm_tensor *w, const ldm_tensor *b,
                         const ldm_conv2d_params *p);
ldm_tensor *op_linear(ldm_exec *ex, const ldm_tensor *x, const ldm_tensor *w, const ldm_tensor *b);
ldm_tensor *op_group_norm(ldm_exec *ex, const ldm_tensor *x, const ldm_tensor *g, const ldm_tensor *b,
                          int32_t groups, float eps, int32_t silu);
ldm_tensor *op_layer_norm(ldm_exec *ex, const ldm_tensor *x, const ldm_tensor *g, const ldm_tensor *b, float eps);
ldm_tensor *op_attention(ldm_exec *ex, const ldm_tensor *q, const ldm_tensor *k, const ldm_tensor *v,
                         int32_t heads, float scale, int32_t causal);
ldm_tensor *op_unary(ldm_exec *ex, ldm_unary_op op, const ldm_tensor *x);
ldm_tensor *op_geglu(ldm_exec *ex, const ldm_tensor *x);
ldm_tensor *op_add(ldm_exec *ex, const ldm_tensor *a, const ldm_tensor *b);
ldm_tensor *op_add_per_channel(ldm_exec *ex, const ldm_tensor *x, const ldm_tensor *b);
ldm_tensor *op_scale(ldm_exec *ex, const ldm_tensor *x, float s);
ldm_tensor *op_upsample2x(ldm_exec *ex, const ldm_tensor *x);
ldm_tensor *op_concat(ldm_exec *ex, const ldm_tensor *a, const ldm_tensor *b);
ldm_tensor *op_to_nlc(ldm_exec *ex, const ldm_tensor *x);
ldm_tensor *op_to_nchw(ldm_exec *ex, const ldm_tensor *x, int64_t h, int64_t w);
ldm_tensor *op_embedding(ldm_exec *ex, const ldm_tensor *weight, const int32_t *ids, int64_t n);

/* Adds b to a and frees a: the residual-connection idiom `x = x + f(x)`. */
ldm_tensor *op_add_into(ldm_exec *ex, ldm_tensor *a, ldm_tensor *b_to_free);

#endif
