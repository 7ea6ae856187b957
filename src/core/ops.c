#include "ops.h"

#include <string.h>

void ldm_exec_init(ldm_exec *ex, ldm_backend *be, atomic_int *cancel) {
    ex->be = be;
    ex->cancel = cancel;
    ex->status = LDM_OK;
}

ldm_tensor *op_error(ldm_exec *ex, ldm_status st) {
    if (ex->status == LDM_OK) ex->status = st;
    return NULL;
}

/* True when the op may run: no earlier error and no cancellation request. */
static bool op_ready(ldm_exec *ex) {
    if (ex->status != LDM_OK) return false;
    if (ex->cancel && atomic_load_explicit(ex->cancel, memory_order_relaxed)) {
        ex->status = ldm_fail(LDM_ERR_CANCELLED, "cancelled");
        return false;
    }
    return true;
}

ldm_tensor *op_new(ldm_exec *ex, int32_t ndim, const int64_t *shape) {
    if (ex->status != LDM_OK) return NULL;
    ldm_tensor *t = ex->be->ops->new_tensor(ex->be, ndim, shape);
    if (!t) return op_error(ex, LDM_ERR_NO_MEMORY);
    return t;
}

ldm_tensor *op_new4(ldm_exec *ex, int64_t a, int64_t b, int64_t c, int64_t d) {
    int64_t s[4] = {a, b, c, d};
    int i = 0;
    while (i < 3 && s[i] == 0) i++;
    return op_new(ex, 4 - i, s + i);
}

ldm_tensor *op_from_host(ldm_exec *ex, int32_t ndim, const int64_t *shape, const float *data) {
    ldm_tensor *t = op_new(ex, ndim, shape);
    if (!t) return NULL;
    ldm_status st = ex->be->ops->upload(ex->be, t, data);
    if (st) {
        op_free(ex, t);
        return op_error(ex, st);
    }
    return t;
}

ldm_status op_to_host(ldm_exec *ex, const ldm_tensor *t, float *out) {
    if (ex->status != LDM_OK) return ex->status;
    if (!t) return ex->status = ldm_fail(LDM_ERR_INTERNAL, "op_to_host: NULL tensor");
    ldm_status st = ex->be->ops->download(ex->be, t, out);
    if (st) ex->status = st;
    return st;
}

void op_free(ldm_exec *ex, ldm_tensor *t) {
    if (t) ex->be->ops->free_tensor(ex->be, t);
}

ldm_tensor *op_reshape(ldm_exec *ex, ldm_tensor *t, int32_t ndim, const int64_t *shape) {
    if (!t) return NULL;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    if (ndim < 1 || ndim > LDM_MAX_DIMS || n != ldm_numel(t)) {
        ldm_fail(LDM_ERR_INTERNAL, "op_reshape: element count mismatch");
        return op_error(ex, LDM_ERR_INTERNAL);
    }
    t->ndim = ndim;
    memcpy(t->ne, shape, (size_t)ndim * sizeof *shape);
    return t;
}

/* Runs `call` into a fresh output of `shape`, freeing the output on failure. */
#define OP_RUN(ex, ndim, shape, call)                                                                            \
    do {                                                                                                         \
        ldm_tensor *y_ = op_new(ex, ndim, shape);                                                                \
        if (!y_) return NULL;                                                                                    \
        ldm_tensor *y = y_;                                                                                      \
        ldm_status st_ = (call);                                                                                 \
        if (st_) {                                                                                               \
            op_free(ex, y_);                                                                                     \
            return op_error(ex, st_);                                                                            \
        }                                                                                                        \
        return y_;                                                                                               \
    } while (0)

ldm_tensor *op_conv2d_ex(ldm_exec *ex, const ldm_tensor *x, const ldm_tensor *w, const ldm_tensor *b,
                         const ldm_conv2d_params *p) {
    if (!op_ready(ex) || !x || !w) return op_error(ex, LDM_ERR_INTERNAL);
    if (x->ndim != 4 || w->ndim != 4 || p->stride < 1) {
        ldm_fail(LDM_ERR_INVALID_ARG, "conv2d: expected 4-D input and weight");
        return op_error(ex, LDM_ERR_INVALID_ARG);
    }
    int64_t oh = (x->ne[2] + p->pad_top + p->pad_bottom - w->ne[2]) / p->stride + 1;
    int64_t ow = (x->ne[3] + p->pad_left + p->pad_right - w->ne[3]) / p->stride + 1;
    int64_t shape[4] = {x->ne[0], w->ne[0], oh, ow};
    OP_RUN(ex, 4, shape, ex->be->ops->conv2d(ex->be, x, w, b, p, y));
}

ldm_tensor *op_conv2d(ldm_exec *ex, const ldm_tensor *x, const ldm_tensor *w, const ldm_tensor *b, int32_t stride,
                      int32_t pad) {
    ldm_conv2d_params p = {stride, pad, pad, pad, pad};
    return op_conv2d_ex(ex, x, w, b, &p);
}

ldm_tensor *op_linear(ldm_exec *ex, const ldm_tensor *x, const ldm_tensor *w, const ldm_tensor *b) {
    if (!op_ready(ex) || !x || !w) return op_error(ex, LDM_ERR_INTERNAL);
    int64_t shape[LDM_MAX_DIMS];
    memcpy(shape, x->ne, sizeof shape);
    shape[x->ndim - 1] = w->ne[0];
    OP_RUN(ex, x->ndim, shape, ex->be->ops->linear(ex->be, x, w, b, y));
}

ldm_tensor *op_group_norm(ldm_exec *ex, const ldm_tensor *x, const ldm_tensor *g, const ldm_tensor *b,
                          int32_t groups, float eps, int32_t silu) {
    if (!op_ready(ex) || !x) return op_error(ex, LDM_ERR_INTERNAL);
    OP_RUN(ex, x->ndim, x->ne, ex->be->ops->group_norm(ex->be, x, g, b, groups, eps, silu, y));
}

ldm_tensor *op_layer_norm(ldm_exec *ex, const ldm_tensor *x, const ldm_tensor *g, const ldm_tensor *b, float eps) {
    if (!op_ready(ex) || !x) return op_error(ex, LDM_ERR_INTERNAL);
    OP_RUN(ex, x->ndim, x->ne, ex->be->ops->layer_norm(ex->be, x, g, b, eps, y));
}

ldm_tensor *op_attention(ldm_exec *ex, const ldm_tensor *q, const ldm_tensor *k, const ldm_tensor *v,
                         int32_t heads, float scale, int32_t causal) {
    if (!op_ready(ex) || !q || !k || !v) return op_error(ex, LDM_ERR_INTERNAL);
    OP_RUN(ex, q->ndim, q->ne, ex->be->ops->attention(ex->be, q, k, v, heads, scale, causal, y));
}

ldm_tensor *op_unary(ldm_exec *ex, ldm_unary_op op, const ldm_tensor *x) {
    if (!op_ready(ex) || !x) return op_error(ex, LDM_ERR_INTERNAL);
    OP_RUN(ex, x->ndim, x->ne, ex->be->ops->unary(ex->be, op, x, y));
}

ldm_tensor *op_geglu(ldm_exec *ex, const ldm_tensor *x) {
    if (!op_ready(ex) || !x) return op_error(ex, LDM_ERR_INTERNAL);
    int64_t shape[LDM_MAX_DIMS];
    memcpy(shape, x->ne, sizeof shape);
    shape[x->ndim - 1] /= 2;
    OP_RUN(ex, x->ndim, shape, ex->be->ops->geglu(ex->be, x, y));
}

ldm_tensor *op_add(ldm_exec *ex, const ldm_tensor *a, const ldm_tensor *b) {
    if (!op_ready(ex) || !a || !b) return op_error(ex, LDM_ERR_INTERNAL);
    OP_RUN(ex, a->ndim, a->ne, ex->be->ops->add(ex->be, a, b, y));
}

ldm_tensor *op_add_per_channel(ldm_exec *ex, const ldm_tensor *x, const ldm_tensor *b) {
    if (!op_ready(ex) || !x || !b) return op_error(ex, LDM_ERR_INTERNAL);
    OP_RUN(ex, x->ndim, x->ne, ex->be->ops->add_per_channel(ex->be, x, b, y));
}

ldm_tensor *op_scale(ldm_exec *ex, const ldm_tensor *x, float s) {
    if (!op_ready(ex) || !x) return op_error(ex, LDM_ERR_INTERNAL);
    OP_RUN(ex, x->ndim, x->ne, ex->be->ops->scale(ex->be, x, s, y));
}

ldm_tensor *op_upsample2x(ldm_exec *ex, const ldm_tensor *x) {
    if (!op_ready(ex) || !x) return op_error(ex, LDM_ERR_INTERNAL);
    int64_t shape[4] = {x->ne[0], x->ne[1], x->ne[2] * 2, x->ne[3] * 2};
    OP_RUN(ex, 4, shape, ex->be->ops->upsample_nearest2x(ex->be, x, y));
}

ldm_tensor *op_concat(ldm_exec *ex, const ldm_tensor *a, const ldm_tensor *b) {
    if (!op_ready(ex) || !a || !b) return op_error(ex, LDM_ERR_INTERNAL);
    int64_t shape[LDM_MAX_DIMS];
    memcpy(shape, a->ne, sizeof shape);
    shape[1] = a->ne[1] + b->ne[1];
    OP_RUN(ex, a->ndim, shape, ex->be->ops->concat_channels(ex->be, a, b, y));
}

ldm_tensor *op_to_nlc(ldm_exec *ex, const ldm_tensor *x) {
    if (!op_ready(ex) || !x) return op_error(ex, LDM_ERR_INTERNAL);
    int64_t shape[3] = {x->ne[0], x->ne[2] * x->ne[3], x->ne[1]};
    OP_RUN(ex, 3, shape, ex->be->ops->nchw_to_nlc(ex->be, x, y));
}

ldm_tensor *op_to_nchw(ldm_exec *ex, const ldm_tensor *x, int64_t h, int64_t w) {
    if (!op_ready(ex) || !x) return op_error(ex, LDM_ERR_INTERNAL);
    int64_t shape[4] = {x->ne[0], x->ne[2], h, w};
    OP_RUN(ex, 4, shape, ex->be->ops->nlc_to_nchw(ex->be, x, y));
}

ldm_tensor *op_embedding(ldm_exec *ex, const ldm_tensor *weight, const int32_t *ids, int64_t n) {
    if (!op_ready(ex) || !weight) return op_error(ex, LDM_ERR_INTERNAL);
    int64_t shape[2] = {n, weight->ne[1]};
    OP_RUN(ex, 2, shape, ex->be->ops->embedding(ex->be, weight, ids, n, y));
}

ldm_tensor *op_add_into(ldm_exec *ex, ldm_tensor *a, ldm_tensor *b_to_free) {
    ldm_tensor *y = op_add(ex, a, b_to_free);
    op_free(ex, a);
    op_free(ex, b_to_free);
    return y;
}
