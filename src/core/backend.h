/* The backend interface: every numeric operation a model needs, behind one vtable (in the
 * spirit of ggml's ggml_backend_i). Model code calls these through core/ops.h and never knows
 * which backend runs it.
 *
 * Tensors: activations are always float32, row-major, outermost dimension first (images NCHW,
 * token sequences [N, L, C]). Weights may be F32, F16 or BF16 exactly as stored in the file;
 * a backend must accept all three wherever a weight is taken (conv, linear, norms, embedding)
 * and accumulate in float32.
 *
 * Every op writes into an output tensor the caller allocated with new_tensor() in the right
 * shape; outputs never alias inputs unless the op says so. Ops return LDM_OK or an error
 * (with ldm_fail() called). */
#ifndef LDM_CORE_BACKEND_H
#define LDM_CORE_BACKEND_H

#include "common.h"
#include "tensor.h"

typedef struct ldm_backend ldm_backend;

typedef enum ldm_unary_op {
    LDM_UNARY_SILU = 0,      /* x * sigmoid(x) */
    LDM_UNARY_GELU = 1,      /* exact: 0.5 x (1 + erf(x / sqrt 2)) */
    LDM_UNARY_QUICK_GELU = 2 /* x * sigmoid(1.702 x) (openai CLIP) */
} ldm_unary_op;

typedef struct ldm_conv2d_params {
    int32_t stride;
    int32_t pad_top, pad_left, pad_bottom, pad_right; /* zero padding */
} ldm_conv2d_params;

typedef struct ldm_backend_ops {
    const char *name;
    void (*destroy)(ldm_backend *be);

    /* Storage. new_tensor returns an uninitialised F32 tensor or NULL (ldm_fail called). */
    ldm_tensor *(*new_tensor)(ldm_backend *be, int32_t ndim, const int64_t *shape);
    void (*free_tensor)(ldm_backend *be, ldm_tensor *t); /* accepts NULL */
    ldm_status (*upload)(ldm_backend *be, ldm_tensor *dst, const float *src);   /* numel floats */
    ldm_status (*download)(ldm_backend *be, const ldm_tensor *src, float *dst); /* numel floats */

    /* y[n,co,oh,ow] = b[co] + sum w[co,ci,kh,kw] * xpad[n,ci,oh*s+kh,ow*s+kw]; b may be NULL.
     * oh = (h + pad_top + pad_bottom - kh) / s + 1, likewise ow. */
    ldm_status (*conv2d)(ldm_backend *be, const ldm_tensor *x, const ldm_tensor *w, const ldm_tensor *b,
                         const ldm_conv2d_params *p, ldm_tensor *y);
    /* x [..., in], w [out, in] (torch Linear layout), b [out] or NULL -> y [..., out]. */
    ldm_status (*linear)(ldm_backend *be, const ldm_tensor *x, const ldm_tensor *w, const ldm_tensor *b,
                         ldm_tensor *y);
    /* x [N, C, ...]: statistics per (n, group of C/groups channels) over the channels and all
     * trailing elements (biased variance), then per-channel affine (gamma/beta [C], may be NULL),
     * then SiLU when silu != 0. */
    ldm_status (*group_norm)(ldm_backend *be, const ldm_tensor *x, const ldm_tensor *gamma,
                             const ldm_tensor *beta, int32_t groups, float eps, int32_t silu, ldm_tensor *y);
    /* x [..., C]: normalise each row of C (biased variance), affine gamma/beta [C]. */
    ldm_status (*layer_norm)(ldm_backend *be, const ldm_tensor *x, const ldm_tensor *gamma,
                             const ldm_tensor *beta, float eps, ldm_tensor *y);
    /* Multi-head attention without projections. q [B, Lq, H*D], k and v [B, Lk, H*D]; head h
     * uses columns h*D..h*D+D-1. y = softmax(scale * q k^T [+ causal mask]) v, [B, Lq, H*D].
     * Must not allocate a full Lq x Lk matrix per head for large L (tile the queries). */
    ldm_status (*attention)(ldm_backend *be, const ldm_tensor *q, const ldm_tensor *k, const ldm_tensor *v,
                            int32_t heads, float scale, int32_t causal, ldm_tensor *y);
    ldm_status (*unary)(ldm_backend *be, ldm_unary_op op, const ldm_tensor *x, ldm_tensor *y);
    /* x [..., 2D] -> y [..., D] = x[..., :D] * gelu(x[..., D:]) (exact GELU; CompVis GEGLU). */
    ldm_status (*geglu)(ldm_backend *be, const ldm_tensor *x, ldm_tensor *y);
    /* y = a + b where numel(a) % numel(b) == 0 and b repeats: y[i] = a[i] + b[i % numel(b)]. */
    ldm_status (*add)(ldm_backend *be, const ldm_tensor *a, const ldm_tensor *b, ldm_tensor *y);
    /* x [N, C, ...], b [N, C]: y[n, c, ...] = x[n, c, ...] + b[n, c]. */
    ldm_status (*add_per_channel)(ldm_backend *be, const ldm_tensor *x, const ldm_tensor *b, ldm_tensor *y);
    /* y = x * s. */
    ldm_status (*scale)(ldm_backend *be, const ldm_tensor *x, float s, ldm_tensor *y);
    /* x [N, C, H, W] -> y [N, C, 2H, 2W], nearest. */
    ldm_status (*upsample_nearest2x)(ldm_backend *be, const ldm_tensor *x, ldm_tensor *y);
    /* a [N, Ca, ...], b [N, Cb, ...] -> y [N, Ca + Cb, ...] (torch.cat dim 1). */
    ldm_status (*concat_channels)(ldm_backend *be, const ldm_tensor *a, const ldm_tensor *b, ldm_tensor *y);
    /* [N, C, H, W] <-> [N, H*W, C]. */
    ldm_status (*nchw_to_nlc)(ldm_backend *be, const ldm_tensor *x, ldm_tensor *y);
    ldm_status (*nlc_to_nchw)(ldm_backend *be, const ldm_tensor *x, ldm_tensor *y);
    /* weight [V, D] (any weight dtype), ids [n] -> y [n, D]. Ids are checked against V. */
    ldm_status (*embedding)(ldm_backend *be, const ldm_tensor *weight, const int32_t *ids, int64_t n,
                            ldm_tensor *y);

    /* Optional (NULL: no limits, the CPU). Device memory still available within the backend's
     * budget and the largest single tensor its ops take, in bytes, so that a network can split
     * its work before running out (the VAE decoder tiles, core/vae_tiling.c). */
    void (*memory_limits)(ldm_backend *be, uint64_t *free_bytes, uint64_t *max_tensor_bytes);
} ldm_backend_ops;

struct ldm_backend {
    const ldm_backend_ops *ops;
    int32_t n_threads;
};

/* The CPU backend (src/cpu). */
ldm_status ldm_cpu_backend_create(int32_t n_threads, ldm_backend **out);

#endif
