/* The ops of the Vulkan backend: argument checks (the CPU backend's rules and messages), then one
 * or a few dispatches of the shaders in shaders/. Semantics, including what may run in place,
 * are those of src/cpu/ (the numeric reference):
 *   in place: unary, scale, add (y == a), add_per_channel (y == x), group_norm and layer_norm
 *   (y == x); any other sharing of storage between output and input is refused. */
#include "vk_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* eltwise.comp and layout.comp operation codes (their OP specialization constant) */
enum { EW_ADD = 0, EW_SCALE = 1, EW_SILU = 2, EW_GELU = 3, EW_QUICK_GELU = 4, EW_ADD_CHAN = 5, EW_GEGLU = 6 };
enum { LY_UPSAMPLE2X = 0, LY_CONCAT = 1, LY_TRANSPOSE = 2 };

/* ---- checks ---- */

static ldm_status op_begin(ldm_vk_backend *b) {
    b->tick++; /* weights looked up from here on belong to this op (eviction spares them) */
    if (b->sticky) return ldm_fail(b->sticky, "vulkan: the device failed earlier");
    return LDM_OK;
}

static const char *shape_str(const ldm_tensor *t, char *buf, size_t size) {
    if (!t) {
        snprintf(buf, size, "(null)");
        return buf;
    }
    size_t off = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < t->ndim && i < LDM_MAX_DIMS && off < size; i++)
        off += (size_t)snprintf(buf + off, size - off, i ? ", %lld" : "%lld", (long long)t->ne[i]);
    if (off < size) snprintf(buf + off, size - off, "]");
    return buf;
}

static ldm_status check_shape(const char *op, const char *name, const ldm_tensor *t) {
    if (t->ndim < 1 || t->ndim > LDM_MAX_DIMS)
        return ldm_fail(LDM_ERR_INVALID_ARG, "%s: %s has ndim %d (need 1..%d)", op, name, (int)t->ndim, LDM_MAX_DIMS);
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) {
        if (t->ne[i] <= 0)
            return ldm_fail(LDM_ERR_INVALID_ARG, "%s: %s has dimension %d of size %lld", op, name, i, (long long)t->ne[i]);
        if (t->ne[i] > ((int64_t)1 << 40) / n) return ldm_fail(LDM_ERR_INVALID_ARG, "%s: %s is too large", op, name);
        n *= t->ne[i];
    }
    /* the shaders index with 32-bit integers */
    if (n > (int64_t)UINT32_MAX / 2)
        return ldm_fail(LDM_ERR_INVALID_ARG, "%s: %s has %lld elements (the Vulkan kernels take up to 2^31)", op, name,
                        (long long)n);
    return LDM_OK;
}

static ldm_status check_act(const char *op, const char *name, const ldm_tensor *t) {
    if (!t) return ldm_fail(LDM_ERR_INVALID_ARG, "%s: %s is NULL", op, name);
    if (t->dtype != LDM_DT_F32)
        return ldm_fail(LDM_ERR_INVALID_ARG, "%s: %s must be F32 (is %s)", op, name, ldm_dtype_name(t->dtype));
    if (!t->device) return ldm_fail(LDM_ERR_INVALID_ARG, "%s: %s has no Vulkan storage", op, name);
    return check_shape(op, name, t);
}

static ldm_status check_weight(const char *op, const char *name, const ldm_tensor *t) {
    if (!t) return ldm_fail(LDM_ERR_INVALID_ARG, "%s: %s is NULL", op, name);
    if (t->dtype != LDM_DT_F32 && t->dtype != LDM_DT_F16 && t->dtype != LDM_DT_BF16)
        return ldm_fail(LDM_ERR_INVALID_ARG, "%s: %s must be F32, F16 or BF16 (is %s)", op, name,
                        ldm_dtype_name(t->dtype));
    if (t->device && t->dtype != LDM_DT_F32) return ldm_fail(LDM_ERR_INVALID_ARG, "%s: %s must be F32", op, name);
    if (!t->device && !t->data) return ldm_fail(LDM_ERR_INVALID_ARG, "%s: %s has no storage", op, name);
    return check_shape(op, name, t);
}

static bool same_shape(const ldm_tensor *a, const ldm_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->ne[i] != b->ne[i]) return false;
    return true;
}

/* Device tensors never partly overlap (one allocation each): sharing means the same storage. */
static bool shares(const ldm_tensor *a, const ldm_tensor *b) { return a->device && a->device == b->device; }

static ldm_status no_alias(const char *op, const ldm_tensor *out, const ldm_tensor *in) {
    if (shares(out, in))
        return ldm_fail(LDM_ERR_INVALID_ARG, "%s: the output overlaps an input (not supported in place)", op);
    return LDM_OK;
}

static ldm_status same_or_disjoint(const char *op, const ldm_tensor *out, const ldm_tensor *in) {
    if (shares(out, in) && ldm_numel(out) == ldm_numel(in)) return LDM_OK;
    return no_alias(op, out, in);
}

/* A small valid binding for a buffer the shader declares but this call does not use. */
static vk_view dummy_of(const vk_view *v) { return (vk_view){v->block, v->off, v->size < 16 ? v->size : 16}; }

/* ---- elementwise with windows ----
 * A tensor larger than the device's storage-buffer range is processed in windows: the flat
 * range is cut into chunks of at most max_range bytes on `unit`-element boundaries whose byte
 * offsets are aligned, each bound at its offset. */

static uint64_t gcd64(uint64_t a, uint64_t b) {
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* Largest chunk of elements of `es` bytes, a multiple of `unit`, whose windows start on aligned
 * byte offsets and span at most the binding range when an element takes `scale` elements. */
static uint64_t chunk_elems_es(const ldm_vk_backend *b, uint64_t unit, uint64_t scale, uint64_t es) {
    uint64_t ae = b->align / es;
    uint64_t step = unit / gcd64(unit, ae) * ae;
    uint64_t fit = b->max_range / (es * scale);
    return fit / step * step;
}

/* The same for float32 elements. */
static uint64_t chunk_elems(const ldm_vk_backend *b, uint64_t unit, uint64_t scale) {
    return chunk_elems_es(b, unit, scale, 4);
}

typedef struct ew_push {
    uint32_t n, nb, base, inner;
    float s;
} ew_push;

/* y = f(a[, bb]) over n elements. bb_mode: 0 none, 1 full-size (windowed like a), 2 small and
 * bound whole (indexed by the global element index). */
static ldm_status eltwise(ldm_vk_backend *b, int op, const vk_view *a, const vk_view *bb, int bb_mode, const vk_view *y,
                          uint64_t n, uint32_t nb, uint32_t inner, float s) {
    uint64_t chunk = n;
    if (n * 4 > b->max_range) chunk = chunk_elems(b, 1, 1);
    if (chunk == 0) return ldm_fail(LDM_ERR_BACKEND, "vulkan: binding range too small");
    if (bb_mode == 2 && bb->size > b->max_range)
        return ldm_fail(LDM_ERR_BACKEND, "vulkan: broadcast operand of %llu bytes exceeds the binding range",
                        (unsigned long long)bb->size);
    for (uint64_t base = 0; base < n; base += chunk) {
        uint64_t cnt = n - base < chunk ? n - base : chunk;
        vk_view v[3];
        v[0] = (vk_view){a->block, a->off + base * 4, cnt * 4};
        if (bb_mode == 1) v[1] = (vk_view){bb->block, bb->off + base * 4, cnt * 4};
        else if (bb_mode == 2) v[1] = *bb;
        else v[1] = dummy_of(&v[0]); /* unused by the op */
        v[2] = (vk_view){y->block, y->off + base * 4, cnt * 4};
        ew_push pc = {(uint32_t)cnt, nb, (uint32_t)base, inner, s};
        if (bb_mode == 1) { /* the window of b lines up with the window of a */
            pc.nb = (uint32_t)cnt;
            pc.base = 0;
        }
        uint32_t spec = (uint32_t)op, gx, gy;
        ldm_status st = vk_grid(b, cnt, 256, &gx, &gy);
        if (!st) st = vk_dispatch(b, LDM_VK_SHADER_ELTWISE, &spec, 1, v, 3, 1u << 2, &pc, sizeof pc, gx, gy, 1);
        if (st) return st;
    }
    return LDM_OK;
}

/* ---- unary, geglu, add, add_per_channel, scale ---- */

ldm_status vk_unary(ldm_backend *be, ldm_unary_op op, const ldm_tensor *x, ldm_tensor *y) {
    ldm_vk_backend *b = vkb(be);
    ldm_status st;
    if ((st = op_begin(b))) return st;
    if ((st = check_act("unary", "x", x)) || (st = check_act("unary", "y", y))) return st;
    char s1[64], s2[64];
    if (!same_shape(x, y))
        return ldm_fail(LDM_ERR_INVALID_ARG, "unary: x %s and y %s differ in shape", shape_str(x, s1, sizeof s1),
                        shape_str(y, s2, sizeof s2));
    int code;
    switch (op) {
    case LDM_UNARY_SILU: code = EW_SILU; break;
    case LDM_UNARY_GELU: code = EW_GELU; break;
    case LDM_UNARY_QUICK_GELU: code = EW_QUICK_GELU; break;
    default: return ldm_fail(LDM_ERR_INVALID_ARG, "unary: unknown op %d", (int)op);
    }
    if ((st = same_or_disjoint("unary", y, x))) return st;
    vk_view vx, vy;
    if ((st = vk_view_of(b, "unary", "x", x, &vx)) || (st = vk_view_of(b, "unary", "y", y, &vy))) return st;
    return eltwise(b, code, &vx, NULL, 0, &vy, (uint64_t)ldm_numel(x), 1, 1, 0.0f);
}

ldm_status vk_scale(ldm_backend *be, const ldm_tensor *x, float s, ldm_tensor *y) {
    ldm_vk_backend *b = vkb(be);
    ldm_status st;
    if ((st = op_begin(b))) return st;
    if ((st = check_act("scale", "x", x)) || (st = check_act("scale", "y", y))) return st;
    char s1[64], s2[64];
    if (!same_shape(x, y))
        return ldm_fail(LDM_ERR_INVALID_ARG, "scale: x %s and y %s differ in shape", shape_str(x, s1, sizeof s1),
                        shape_str(y, s2, sizeof s2));
    if ((st = same_or_disjoint("scale", y, x))) return st;
    vk_view vx, vy;
    if ((st = vk_view_of(b, "scale", "x", x, &vx)) || (st = vk_view_of(b, "scale", "y", y, &vy))) return st;
    return eltwise(b, EW_SCALE, &vx, NULL, 0, &vy, (uint64_t)ldm_numel(x), 1, 1, s);
}

ldm_status vk_geglu(ldm_backend *be, const ldm_tensor *x, ldm_tensor *y) {
    ldm_vk_backend *b = vkb(be);
    ldm_status st;
    if ((st = op_begin(b))) return st;
    if ((st = check_act("geglu", "x", x)) || (st = check_act("geglu", "y", y))) return st;
    char s1[64], s2[64];
    const int64_t d2 = x->ne[x->ndim - 1], d = d2 / 2;
    bool ok = d2 % 2 == 0 && y->ndim == x->ndim && y->ne[y->ndim - 1] == d;
    for (int i = 0; ok && i < x->ndim - 1; i++) ok = x->ne[i] == y->ne[i];
    if (!ok)
        return ldm_fail(LDM_ERR_INVALID_ARG, "geglu: x %s must be [..., 2D] and y %s [..., D]", shape_str(x, s1, sizeof s1),
                        shape_str(y, s2, sizeof s2));
    if ((st = no_alias("geglu", y, x))) return st;
    vk_view vx, vy;
    if ((st = vk_view_of(b, "geglu", "x", x, &vx)) || (st = vk_view_of(b, "geglu", "y", y, &vy))) return st;
    const uint64_t rows = (uint64_t)(ldm_numel(y) / d);
    /* windows of whole rows: x rows are 2d floats, y rows d */
    uint64_t chunk_rows = rows;
    if (vx.size > b->max_range) chunk_rows = chunk_elems(b, (uint64_t)d, 2) / (uint64_t)d;
    if (chunk_rows == 0) return ldm_fail(LDM_ERR_BACKEND, "geglu: a row of %lld floats exceeds the binding range", (long long)d2);
    for (uint64_t r0 = 0; r0 < rows; r0 += chunk_rows) {
        uint64_t cnt = rows - r0 < chunk_rows ? rows - r0 : chunk_rows;
        vk_view v[3] = {{vx.block, vx.off + r0 * (uint64_t)d2 * 4, cnt * (uint64_t)d2 * 4},
                        {vx.block, vx.off + r0 * (uint64_t)d2 * 4, cnt * (uint64_t)d2 * 4},
                        {vy.block, vy.off + r0 * (uint64_t)d * 4, cnt * (uint64_t)d * 4}};
        ew_push pc = {(uint32_t)(cnt * (uint64_t)d), 1, 0, (uint32_t)d, 0.0f};
        uint32_t spec = EW_GEGLU, gx, gy;
        if ((st = vk_grid(b, cnt * (uint64_t)d, 256, &gx, &gy))) return st;
        if ((st = vk_dispatch(b, LDM_VK_SHADER_ELTWISE, &spec, 1, v, 3, 1u << 2, &pc, sizeof pc, gx, gy, 1))) return st;
    }
    return LDM_OK;
}

ldm_status vk_add(ldm_backend *be, const ldm_tensor *a, const ldm_tensor *bt, ldm_tensor *y) {
    ldm_vk_backend *b = vkb(be);
    const char *op = "add";
    ldm_status st;
    if ((st = op_begin(b))) return st;
    if ((st = check_act(op, "a", a)) || (st = check_weight(op, "b", bt)) || (st = check_act(op, "y", y))) return st;
    char s1[64], s2[64], s3[64];
    const int64_t n = ldm_numel(a), nb = ldm_numel(bt);
    if (!same_shape(a, y) || n % nb != 0)
        return ldm_fail(LDM_ERR_INVALID_ARG, "add: a %s, b %s, y %s: y must match a and numel(b) divide numel(a)",
                        shape_str(a, s1, sizeof s1), shape_str(bt, s2, sizeof s2), shape_str(y, s3, sizeof s3));
    if ((st = same_or_disjoint(op, y, a))) return st;
    if (!(shares(y, bt) && nb == n) && (st = no_alias(op, y, bt))) return st;
    vk_view va, vb, vy;
    if ((st = vk_view_of(b, op, "a", a, &va)) || (st = vk_view_of(b, op, "b", bt, &vb)) ||
        (st = vk_view_of(b, op, "y", y, &vy)))
        return st;
    if (nb == n) return eltwise(b, EW_ADD, &va, &vb, 1, &vy, (uint64_t)n, (uint32_t)n, 1, 0.0f);
    return eltwise(b, EW_ADD, &va, &vb, 2, &vy, (uint64_t)n, (uint32_t)nb, 1, 0.0f);
}

ldm_status vk_add_per_channel(ldm_backend *be, const ldm_tensor *x, const ldm_tensor *bt, ldm_tensor *y) {
    ldm_vk_backend *b = vkb(be);
    const char *op = "add_per_channel";
    ldm_status st;
    if ((st = op_begin(b))) return st;
    if ((st = check_act(op, "x", x)) || (st = check_weight(op, "b", bt)) || (st = check_act(op, "y", y))) return st;
    char s1[64], s2[64], s3[64];
    if (x->ndim < 2 || !same_shape(x, y) || ldm_numel(bt) != x->ne[0] * x->ne[1] || bt->ne[0] != x->ne[0])
        return ldm_fail(LDM_ERR_INVALID_ARG, "add_per_channel: x %s, b %s, y %s: need x [N, C, ...], b [N, C], y like x",
                        shape_str(x, s1, sizeof s1), shape_str(bt, s2, sizeof s2), shape_str(y, s3, sizeof s3));
    if ((st = same_or_disjoint(op, y, x)) || (st = no_alias(op, y, bt))) return st;
    vk_view vx, vb, vy;
    if ((st = vk_view_of(b, op, "x", x, &vx)) || (st = vk_view_of(b, op, "b", bt, &vb)) ||
        (st = vk_view_of(b, op, "y", y, &vy)))
        return st;
    return eltwise(b, EW_ADD_CHAN, &vx, &vb, 2, &vy, (uint64_t)ldm_numel(x), 1, (uint32_t)ldm_numel_from(x, 2), 0.0f);
}

/* ---- data movement ---- */

typedef struct ly_push {
    uint32_t n, p, q;
} ly_push;

static ldm_status layout_op(ldm_vk_backend *b, int op, const vk_view *a, const vk_view *bb, const vk_view *y, uint64_t n,
                            uint64_t p, uint64_t q) {
    vk_view v[3] = {*a, bb ? *bb : dummy_of(a), *y};
    ly_push pc = {(uint32_t)n, (uint32_t)p, (uint32_t)q};
    uint32_t spec = (uint32_t)op, gx, gy;
    ldm_status st = vk_grid(b, n, 256, &gx, &gy);
    if (st) return st;
    return vk_dispatch(b, LDM_VK_SHADER_LAYOUT, &spec, 1, v, 3, 1u << 2, &pc, sizeof pc, gx, gy, 1);
}

ldm_status vk_upsample_nearest2x(ldm_backend *be, const ldm_tensor *x, ldm_tensor *y) {
    ldm_vk_backend *b = vkb(be);
    const char *op = "upsample_nearest2x";
    ldm_status st;
    if ((st = op_begin(b))) return st;
    if ((st = check_act(op, "x", x)) || (st = check_act(op, "y", y))) return st;
    char s1[64], s2[64];
    if (x->ndim != 4 || y->ndim != 4 || y->ne[0] != x->ne[0] || y->ne[1] != x->ne[1] || y->ne[2] != 2 * x->ne[2] ||
        y->ne[3] != 2 * x->ne[3])
        return ldm_fail(LDM_ERR_INVALID_ARG, "upsample_nearest2x: x %s, y %s: need [N, C, H, W] -> [N, C, 2H, 2W]",
                        shape_str(x, s1, sizeof s1), shape_str(y, s2, sizeof s2));
    if ((st = no_alias(op, y, x))) return st;
    vk_view vx, vy;
    if ((st = vk_view_of(b, op, "x", x, &vx)) || (st = vk_view_of(b, op, "y", y, &vy))) return st;
    return layout_op(b, LY_UPSAMPLE2X, &vx, NULL, &vy, (uint64_t)ldm_numel(y), (uint64_t)x->ne[2], (uint64_t)x->ne[3]);
}

ldm_status vk_concat_channels(ldm_backend *be, const ldm_tensor *a, const ldm_tensor *bt, ldm_tensor *y) {
    ldm_vk_backend *b = vkb(be);
    const char *op = "concat_channels";
    ldm_status st;
    if ((st = op_begin(b))) return st;
    if ((st = check_act(op, "a", a)) || (st = check_act(op, "b", bt)) || (st = check_act(op, "y", y))) return st;
    char s1[64], s2[64], s3[64];
    bool ok = a->ndim >= 2 && a->ndim == bt->ndim && a->ndim == y->ndim && a->ne[0] == bt->ne[0] &&
              y->ne[0] == a->ne[0] && y->ne[1] == a->ne[1] + bt->ne[1];
    for (int i = 2; ok && i < a->ndim; i++) ok = a->ne[i] == bt->ne[i] && a->ne[i] == y->ne[i];
    if (!ok)
        return ldm_fail(LDM_ERR_INVALID_ARG,
                        "concat_channels: a %s, b %s, y %s: need [N, Ca, ...] + [N, Cb, ...] -> [N, Ca+Cb, ...]",
                        shape_str(a, s1, sizeof s1), shape_str(bt, s2, sizeof s2), shape_str(y, s3, sizeof s3));
    if ((st = no_alias(op, y, a)) || (st = no_alias(op, y, bt))) return st;
    vk_view va, vb, vy;
    if ((st = vk_view_of(b, op, "a", a, &va)) || (st = vk_view_of(b, op, "b", bt, &vb)) ||
        (st = vk_view_of(b, op, "y", y, &vy)))
        return st;
    return layout_op(b, LY_CONCAT, &va, &vb, &vy, (uint64_t)ldm_numel(y), (uint64_t)ldm_numel_from(a, 1),
                     (uint64_t)ldm_numel_from(bt, 1));
}

ldm_status vk_nchw_to_nlc(ldm_backend *be, const ldm_tensor *x, ldm_tensor *y) {
    ldm_vk_backend *b = vkb(be);
    const char *op = "nchw_to_nlc";
    ldm_status st;
    if ((st = op_begin(b))) return st;
    if ((st = check_act(op, "x", x)) || (st = check_act(op, "y", y))) return st;
    char s1[64], s2[64];
    if (x->ndim != 4 || y->ndim != 3 || y->ne[0] != x->ne[0] || y->ne[1] != x->ne[2] * x->ne[3] || y->ne[2] != x->ne[1])
        return ldm_fail(LDM_ERR_INVALID_ARG, "nchw_to_nlc: x %s, y %s: need [N, C, H, W] -> [N, H*W, C]",
                        shape_str(x, s1, sizeof s1), shape_str(y, s2, sizeof s2));
    if ((st = no_alias(op, y, x))) return st;
    vk_view vx, vy;
    if ((st = vk_view_of(b, op, "x", x, &vx)) || (st = vk_view_of(b, op, "y", y, &vy))) return st;
    return layout_op(b, LY_TRANSPOSE, &vx, NULL, &vy, (uint64_t)ldm_numel(x), (uint64_t)x->ne[1],
                     (uint64_t)(x->ne[2] * x->ne[3]));
}

ldm_status vk_nlc_to_nchw(ldm_backend *be, const ldm_tensor *x, ldm_tensor *y) {
    ldm_vk_backend *b = vkb(be);
    const char *op = "nlc_to_nchw";
    ldm_status st;
    if ((st = op_begin(b))) return st;
    if ((st = check_act(op, "x", x)) || (st = check_act(op, "y", y))) return st;
    char s1[64], s2[64];
    if (x->ndim != 3 || y->ndim != 4 || y->ne[0] != x->ne[0] || x->ne[1] != y->ne[2] * y->ne[3] || x->ne[2] != y->ne[1])
        return ldm_fail(LDM_ERR_INVALID_ARG, "nlc_to_nchw: x %s, y %s: need [N, H*W, C] -> [N, C, H, W]",
                        shape_str(x, s1, sizeof s1), shape_str(y, s2, sizeof s2));
    if ((st = no_alias(op, y, x))) return st;
    vk_view vx, vy;
    if ((st = vk_view_of(b, op, "x", x, &vx)) || (st = vk_view_of(b, op, "y", y, &vy))) return st;
    return layout_op(b, LY_TRANSPOSE, &vx, NULL, &vy, (uint64_t)ldm_numel(x), (uint64_t)x->ne[1], (uint64_t)x->ne[2]);
}

/* ---- embedding: a gather on the host (the table stays in the mapped file, only the n rows
 * travel), converted to float32 as it goes into the staging buffer ---- */

ldm_status vk_embedding(ldm_backend *be, const ldm_tensor *weight, const int32_t *ids, int64_t n, ldm_tensor *y) {
    ldm_vk_backend *b = vkb(be);
    const char *op = "embedding";
    ldm_status st;
    if ((st = op_begin(b))) return st;
    if ((st = check_weight(op, "weight", weight)) || (st = check_act(op, "y", y))) return st;
    if (!ids) return ldm_fail(LDM_ERR_INVALID_ARG, "embedding: ids is NULL");
    char s1[64], s2[64];
    if (weight->ndim != 2 || n < 1 || y->ne[y->ndim - 1] != weight->ne[1] || ldm_numel(y) != n * weight->ne[1])
        return ldm_fail(LDM_ERR_INVALID_ARG, "embedding: weight %s, %lld ids, y %s: need [V, D], y [n, D]",
                        shape_str(weight, s1, sizeof s1), (long long)n, shape_str(y, s2, sizeof s2));
    const int64_t v = weight->ne[0], d = weight->ne[1];
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= v)
            return ldm_fail(LDM_ERR_INVALID_ARG, "embedding: id %d at position %lld is outside [0, %lld)", (int)ids[i],
                            (long long)i, (long long)v);
    if (!weight->data) return ldm_fail(LDM_ERR_INVALID_ARG, "embedding: the table must be a host (file) weight");
    if ((st = no_alias(op, y, weight))) return st;
    vk_view vy;
    if ((st = vk_view_of(b, op, "y", y, &vy))) return st;
    const size_t es = ldm_dtype_size(weight->dtype);
    for (int64_t i = 0; i < n; i++) {
        const char *row = (const char *)weight->data + (size_t)ids[i] * (size_t)d * es;
        if ((st = vk_upload_bytes(b, &vy, (VkDeviceSize)(i * d) * 4, row, (VkDeviceSize)d * 4, weight->dtype))) return st;
    }
    return LDM_OK;
}

/* ---- linear, conv2d ---- */

typedef struct mm_push {
    uint32_t m, n, k, has_bias, ldy, col0;
} mm_push;

ldm_status vk_linear(ldm_backend *be, const ldm_tensor *x, const ldm_tensor *w, const ldm_tensor *bias, ldm_tensor *y) {
    ldm_vk_backend *b = vkb(be);
    const char *op = "linear";
    ldm_status st;
    if ((st = op_begin(b))) return st;
    if ((st = check_act(op, "x", x)) || (st = check_weight(op, "w", w)) || (st = check_act(op, "y", y))) return st;
    if (bias && (st = check_weight(op, "b", bias))) return st;
    char s1[64], s2[64], s3[64];
    const int64_t in = x->ne[x->ndim - 1];
    bool ok = w->ndim == 2 && w->ne[1] == in && y->ndim == x->ndim && y->ne[y->ndim - 1] == w->ne[0];
    for (int i = 0; ok && i < x->ndim - 1; i++) ok = x->ne[i] == y->ne[i];
    if (!ok)
        return ldm_fail(LDM_ERR_INVALID_ARG, "linear: x %s, w %s, y %s do not match (x [..., in], w [out, in], y [..., out])",
                        shape_str(x, s1, sizeof s1), shape_str(w, s2, sizeof s2), shape_str(y, s3, sizeof s3));
    const int64_t out = w->ne[0], m = ldm_numel(x) / in;
    if (bias && ldm_numel(bias) != out)
        return ldm_fail(LDM_ERR_INVALID_ARG, "linear: bias has %lld elements for %lld outputs", (long long)ldm_numel(bias),
                        (long long)out);
    if ((st = no_alias(op, y, x))) return st;
    vk_view v[4];
    bool f16 = false; /* the weight is stored as float16 (matmul_f16) */
    if ((st = vk_view_of(b, op, "x", x, &v[0])) || (st = vk_matrix_view_of(b, op, "w", w, &v[1], &f16))) return st;
    const uint64_t wes = f16 ? 2 : 4;
    if (bias) {
        if ((st = vk_view_of(b, op, "b", bias, &v[2]))) return st;
    } else {
        v[2] = dummy_of(&v[1]);
    }
    if ((st = vk_view_of(b, op, "y", y, &v[3]))) return st;
    /* a weight over the binding range is bound in slices of whole rows (output features) */
    uint64_t rows = (uint64_t)out;
    if (v[1].size > b->max_range) rows = chunk_elems_es(b, (uint64_t)in, 1, wes) / (uint64_t)in;
    if (rows == 0) return ldm_fail(LDM_ERR_BACKEND, "linear: one weight row of %lld floats exceeds the binding range", (long long)in);
    uint64_t gy = ((uint64_t)m + 63) / 64;
    for (uint64_t n0 = 0; n0 < (uint64_t)out; n0 += rows) {
        uint64_t cnt = (uint64_t)out - n0 < rows ? (uint64_t)out - n0 : rows;
        uint64_t gx = (cnt + 63) / 64;
        if (gx > b->max_groups[0] || gy > b->max_groups[1])
            return ldm_fail(LDM_ERR_INVALID_ARG, "linear: %lld x %lld output is too large for one dispatch", (long long)m,
                            (long long)out);
        vk_view vs[4] = {v[0], {v[1].block, v[1].off + n0 * (uint64_t)in * wes, cnt * (uint64_t)in * wes}, v[2], v[3]};
        mm_push pc = {(uint32_t)m, (uint32_t)cnt, (uint32_t)in, bias != NULL, (uint32_t)out, (uint32_t)n0};
        const ldm_vk_shader_id shader = f16 ? LDM_VK_SHADER_MATMUL_F16 : LDM_VK_SHADER_MATMUL;
        if ((st = vk_dispatch(b, shader, NULL, 0, vs, 4, 1u << 3, &pc, sizeof pc, (uint32_t)gx, (uint32_t)gy, 1)))
            return st;
    }
    return LDM_OK;
}

typedef struct conv_push {
    uint32_t cin, h, w, cout;
    uint32_t oh, ow, pad_top, pad_left;
    uint32_t has_bias;
} conv_push;

ldm_status vk_conv2d(ldm_backend *be, const ldm_tensor *x, const ldm_tensor *w, const ldm_tensor *bias,
                     const ldm_conv2d_params *p, ldm_tensor *y) {
    ldm_vk_backend *b = vkb(be);
    const char *op = "conv2d";
    ldm_status st;
    if ((st = op_begin(b))) return st;
    if ((st = check_act(op, "x", x)) || (st = check_weight(op, "w", w)) || (st = check_act(op, "y", y))) return st;
    if (bias && (st = check_weight(op, "b", bias))) return st;
    if (!p) return ldm_fail(LDM_ERR_INVALID_ARG, "conv2d: params is NULL");
    char s1[64], s2[64];
    if (x->ndim != 4 || w->ndim != 4 || y->ndim != 4)
        return ldm_fail(LDM_ERR_INVALID_ARG, "conv2d: x %s, w %s and y %s must all be 4-D", shape_str(x, s1, sizeof s1),
                        shape_str(w, s2, sizeof s2), y->ndim == 4 ? "[4-D]" : "[not 4-D]");
    if (w->ne[1] != x->ne[1])
        return ldm_fail(LDM_ERR_INVALID_ARG, "conv2d: w %s expects %lld input channels, x %s has %lld",
                        shape_str(w, s1, sizeof s1), (long long)w->ne[1], shape_str(x, s2, sizeof s2), (long long)x->ne[1]);
    if (bias && ldm_numel(bias) != w->ne[0])
        return ldm_fail(LDM_ERR_INVALID_ARG, "conv2d: bias has %lld elements for %lld output channels",
                        (long long)ldm_numel(bias), (long long)w->ne[0]);
    if (p->stride < 1 || p->pad_top < 0 || p->pad_left < 0 || p->pad_bottom < 0 || p->pad_right < 0)
        return ldm_fail(LDM_ERR_INVALID_ARG, "conv2d: bad stride %d / padding %d,%d,%d,%d", (int)p->stride,
                        (int)p->pad_top, (int)p->pad_left, (int)p->pad_bottom, (int)p->pad_right);
    const int64_t n = x->ne[0], cin = x->ne[1], h = x->ne[2], wd = x->ne[3];
    const int64_t cout = w->ne[0], kh = w->ne[2], kw = w->ne[3];
    int64_t hp = h + p->pad_top + p->pad_bottom, wp = wd + p->pad_left + p->pad_right;
    if (hp < kh || wp < kw)
        return ldm_fail(LDM_ERR_INVALID_ARG, "conv2d: kernel %lldx%lld larger than padded input %lldx%lld", (long long)kh,
                        (long long)kw, (long long)hp, (long long)wp);
    const int64_t oh = (hp - kh) / p->stride + 1, ow = (wp - kw) / p->stride + 1;
    if (y->ne[0] != n || y->ne[1] != cout || y->ne[2] != oh || y->ne[3] != ow)
        return ldm_fail(LDM_ERR_INVALID_ARG, "conv2d: y is %s, expected [%lld, %lld, %lld, %lld]",
                        shape_str(y, s1, sizeof s1), (long long)n, (long long)cout, (long long)oh, (long long)ow);
    if ((st = no_alias(op, y, x))) return st;
    vk_view vx, vw, vb, vy;
    bool f16 = false; /* the weight is stored as float16 (conv2d_f16) */
    if ((st = vk_view_of(b, op, "x", x, &vx)) || (st = vk_matrix_view_of(b, op, "w", w, &vw, &f16))) return st;
    const ldm_vk_shader_id shader = f16 ? LDM_VK_SHADER_CONV2D_F16 : LDM_VK_SHADER_CONV2D;
    if (bias) {
        if ((st = vk_view_of(b, op, "b", bias, &vb))) return st;
    } else {
        vb = dummy_of(&vw);
    }
    if ((st = vk_view_of(b, op, "y", y, &vy))) return st;
    const uint64_t P = (uint64_t)(oh * ow);
    uint64_t gx = (P + 63) / 64, gy = ((uint64_t)cout + 63) / 64;
    if (gx > b->max_groups[0] || gy > b->max_groups[1])
        return ldm_fail(LDM_ERR_INVALID_ARG, "conv2d: output %lldx%lldx%lld too large for one dispatch", (long long)cout,
                        (long long)oh, (long long)ow);
    conv_push pc = {(uint32_t)cin, (uint32_t)h,         (uint32_t)wd,          (uint32_t)cout, (uint32_t)oh,
                    (uint32_t)ow,  (uint32_t)p->pad_top, (uint32_t)p->pad_left, bias != NULL};
    /* kernel size and stride specialise the pipeline (a handful of variants per model) */
    const uint32_t spec[3] = {(uint32_t)kh, (uint32_t)kw, (uint32_t)p->stride};
    /* one dispatch over the batch, or one per image when the batch does not fit one binding */
    const uint64_t img_in = (uint64_t)(cin * h * wd) * 4, img_out = (uint64_t)cout * P * 4;
    if (vx.size <= b->max_range && vy.size <= b->max_range) {
        vk_view v[4] = {vx, vw, vb, vy};
        if (n > b->max_groups[2]) return ldm_fail(LDM_ERR_INVALID_ARG, "conv2d: batch %lld too large", (long long)n);
        return vk_dispatch(b, shader, spec, 3, v, 4, 1u << 3, &pc, sizeof pc, (uint32_t)gx, (uint32_t)gy,
                           (uint32_t)n);
    }
    if (img_in > b->max_range || img_out > b->max_range || img_in % b->align || img_out % b->align)
        return ldm_fail(LDM_ERR_BACKEND,
                        "conv2d: one image (%llu bytes in, %llu out) exceeds the device's storage buffer range of %llu bytes",
                        (unsigned long long)img_in, (unsigned long long)img_out, (unsigned long long)b->max_range);
    for (int64_t i = 0; i < n; i++) {
        vk_view v[4] = {{vx.block, vx.off + (uint64_t)i * img_in, img_in}, vw, vb,
                        {vy.block, vy.off + (uint64_t)i * img_out, img_out}};
        if ((st = vk_dispatch(b, shader, spec, 3, v, 4, 1u << 3, &pc, sizeof pc, (uint32_t)gx, (uint32_t)gy,
                              1)))
            return st;
    }
    return LDM_OK;
}

/* ---- norms ---- */

static ldm_status affine_check(const char *op, const ldm_tensor *gamma, const ldm_tensor *beta, int64_t c) {
    ldm_status st;
    if (gamma && ((st = check_weight(op, "gamma", gamma)))) return st;
    if (beta && ((st = check_weight(op, "beta", beta)))) return st;
    if (gamma && ldm_numel(gamma) != c)
        return ldm_fail(LDM_ERR_INVALID_ARG, "%s: gamma has %lld elements for %lld channels", op,
                        (long long)ldm_numel(gamma), (long long)c);
    if (beta && ldm_numel(beta) != c)
        return ldm_fail(LDM_ERR_INVALID_ARG, "%s: beta has %lld elements for %lld channels", op,
                        (long long)ldm_numel(beta), (long long)c);
    return LDM_OK;
}

typedef struct gn_push {
    uint32_t channels, groups, spatial;
    float eps;
    uint32_t silu, has_gamma, has_beta;
} gn_push;

ldm_status vk_group_norm(ldm_backend *be, const ldm_tensor *x, const ldm_tensor *gamma, const ldm_tensor *beta,
                         int32_t groups, float eps, int32_t silu, ldm_tensor *y) {
    ldm_vk_backend *b = vkb(be);
    const char *op = "group_norm";
    ldm_status st;
    if ((st = op_begin(b))) return st;
    if ((st = check_act(op, "x", x)) || (st = check_act(op, "y", y))) return st;
    char s1[64], s2[64];
    if (x->ndim < 2 || !same_shape(x, y))
        return ldm_fail(LDM_ERR_INVALID_ARG, "group_norm: x %s and y %s must have the same shape [N, C, ...]",
                        shape_str(x, s1, sizeof s1), shape_str(y, s2, sizeof s2));
    const int64_t n = x->ne[0], c = x->ne[1], sp = ldm_numel_from(x, 2);
    if (groups < 1 || c % groups != 0)
        return ldm_fail(LDM_ERR_INVALID_ARG, "group_norm: %lld channels not divisible into %d groups", (long long)c,
                        (int)groups);
    if (!(eps >= 0.0f) || isinf(eps)) return ldm_fail(LDM_ERR_INVALID_ARG, "group_norm: bad eps %g", (double)eps);
    if ((st = affine_check(op, gamma, beta, c))) return st;
    if ((st = same_or_disjoint(op, y, x))) return st;
    vk_view v[4];
    if ((st = vk_view_of(b, op, "x", x, &v[0]))) return st;
    v[1] = v[2] = dummy_of(&v[0]);
    if (gamma && (st = vk_view_of(b, op, "gamma", gamma, &v[1]))) return st;
    if (beta && (st = vk_view_of(b, op, "beta", beta, &v[2]))) return st;
    if ((st = vk_view_of(b, op, "y", y, &v[3]))) return st;
    const uint64_t wgs = (uint64_t)n * (uint64_t)groups;
    if (wgs > b->max_groups[0]) return ldm_fail(LDM_ERR_INVALID_ARG, "group_norm: %llu groups in one call are too many",
                                                (unsigned long long)wgs);
    gn_push pc = {(uint32_t)c, (uint32_t)groups, (uint32_t)sp, eps, silu != 0, gamma != NULL, beta != NULL};
    return vk_dispatch(b, LDM_VK_SHADER_GROUP_NORM, NULL, 0, v, 4, 1u << 3, &pc, sizeof pc, (uint32_t)wgs, 1, 1);
}

typedef struct ln_push {
    uint32_t rows, c;
    float eps;
    uint32_t has_gamma, has_beta;
} ln_push;

ldm_status vk_layer_norm(ldm_backend *be, const ldm_tensor *x, const ldm_tensor *gamma, const ldm_tensor *beta, float eps,
                         ldm_tensor *y) {
    ldm_vk_backend *b = vkb(be);
    const char *op = "layer_norm";
    ldm_status st;
    if ((st = op_begin(b))) return st;
    if ((st = check_act(op, "x", x)) || (st = check_act(op, "y", y))) return st;
    char s1[64], s2[64];
    if (!same_shape(x, y))
        return ldm_fail(LDM_ERR_INVALID_ARG, "layer_norm: x %s and y %s must have the same shape",
                        shape_str(x, s1, sizeof s1), shape_str(y, s2, sizeof s2));
    const int64_t c = x->ne[x->ndim - 1], rows = ldm_numel(x) / c;
    if (!(eps >= 0.0f) || isinf(eps)) return ldm_fail(LDM_ERR_INVALID_ARG, "layer_norm: bad eps %g", (double)eps);
    if ((st = affine_check(op, gamma, beta, c))) return st;
    if ((st = same_or_disjoint(op, y, x))) return st;
    vk_view v[4];
    if ((st = vk_view_of(b, op, "x", x, &v[0]))) return st;
    v[1] = v[2] = dummy_of(&v[0]);
    if (gamma && (st = vk_view_of(b, op, "gamma", gamma, &v[1]))) return st;
    if (beta && (st = vk_view_of(b, op, "beta", beta, &v[2]))) return st;
    if ((st = vk_view_of(b, op, "y", y, &v[3]))) return st;
    uint32_t gx, gy;
    if ((st = vk_grid(b, (uint64_t)rows, 1, &gx, &gy))) return st;
    ln_push pc = {(uint32_t)rows, (uint32_t)c, eps, gamma != NULL, beta != NULL};
    return vk_dispatch(b, LDM_VK_SHADER_LAYER_NORM, NULL, 0, v, 4, 1u << 3, &pc, sizeof pc, gx, gy, 1);
}

/* ---- attention ---- */

typedef struct attn_push {
    uint32_t lq, lk, heads, d;
    float scale;
    uint32_t causal;
} attn_push;

ldm_status vk_attention(ldm_backend *be, const ldm_tensor *q, const ldm_tensor *k, const ldm_tensor *v, int32_t heads,
                        float scale, int32_t causal, ldm_tensor *y) {
    ldm_vk_backend *b = vkb(be);
    const char *op = "attention";
    ldm_status st;
    if ((st = op_begin(b))) return st;
    if ((st = check_act(op, "q", q)) || (st = check_act(op, "k", k)) || (st = check_act(op, "v", v)) ||
        (st = check_act(op, "y", y)))
        return st;
    char s1[64], s2[64], s3[64];
    if (q->ndim != 3 || !same_shape(k, v) || k->ndim != 3 || k->ne[0] != q->ne[0] || k->ne[2] != q->ne[2] ||
        !same_shape(q, y))
        return ldm_fail(LDM_ERR_INVALID_ARG, "attention: q %s, k/v %s, y %s: need q, y [B, Lq, H*D], k, v [B, Lk, H*D]",
                        shape_str(q, s1, sizeof s1), shape_str(k, s2, sizeof s2), shape_str(y, s3, sizeof s3));
    if (heads < 1 || q->ne[2] % heads != 0)
        return ldm_fail(LDM_ERR_INVALID_ARG, "attention: width %lld is not divisible into %d heads", (long long)q->ne[2],
                        (int)heads);
    if ((st = no_alias(op, y, q)) || (st = no_alias(op, y, k)) || (st = no_alias(op, y, v))) return st;
    const int64_t bsz = q->ne[0], lq = q->ne[1], lk = k->ne[1], d = q->ne[2] / heads;
    /* BQ query rows per workgroup, their outputs in registers: BQ * D <= 64 * MAXO. BQ is the
     * largest power of two up to 16 with BQ * D <= 512 (MAXO 8); wider heads get BQ 1 and more
     * registers. Few variants: one pipeline per (BQ, MAXO). */
    uint32_t bq = 16, maxo = 8;
    while (bq > 1 && (uint64_t)bq * (uint64_t)d > 512) bq /= 2;
    if ((uint64_t)bq * (uint64_t)d > 512) {
        maxo = 16;
        while ((uint64_t)64 * maxo < (uint64_t)d && maxo < 64) maxo *= 2;
        if ((uint64_t)64 * maxo < (uint64_t)d)
            return ldm_fail(LDM_ERR_UNSUPPORTED, "attention: head width %lld exceeds the kernel's 4096", (long long)d);
    }
    /* shared memory: Q (64 * MAXO floats), scores (BQ x 32), three row statistics */
    if ((uint64_t)(64 * maxo + bq * 32 + 3 * bq) * 4 > b->shared_mem)
        return ldm_fail(LDM_ERR_UNSUPPORTED, "attention: head width %lld needs more shared memory than the device has",
                        (long long)d);
    vk_view vv[4];
    if ((st = vk_view_of(b, op, "q", q, &vv[0])) || (st = vk_view_of(b, op, "k", k, &vv[1])) ||
        (st = vk_view_of(b, op, "v", v, &vv[2])) || (st = vk_view_of(b, op, "y", y, &vv[3])))
        return st;
    uint64_t gx = ((uint64_t)lq + bq - 1) / bq, gy = (uint64_t)bsz * (uint64_t)heads;
    if (gx > b->max_groups[0] || gy > b->max_groups[1])
        return ldm_fail(LDM_ERR_INVALID_ARG, "attention: too many query blocks for one dispatch");
    attn_push pc = {(uint32_t)lq, (uint32_t)lk, (uint32_t)heads, (uint32_t)d, scale, causal != 0};
    uint32_t spec[2] = {bq, maxo};
    return vk_dispatch(b, LDM_VK_SHADER_ATTENTION, spec, 2, vv, 4, 1u << 3, &pc, sizeof pc, (uint32_t)gx, (uint32_t)gy, 1);
}
