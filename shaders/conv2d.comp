#version 450
#ifdef W_F16
#extension GL_EXT_shader_16bit_storage : require
#endif
// 2-D convolution as an implicit GEMM (no column buffer): for image n = gl_WorkGroupID.z,
//   y[n, co, p] = bias[co] + sum_k w[co, k] col[k, p],  k = (ci, ky, kx), p = (oy, ox),
//   col[k, p] = x[n, ci, oy*s - pad_top + ky, ox*s - pad_left + kx] (0 outside the image).
// An 8x8 workgroup computes 64 output channels x 64 positions, 8x8 per invocation (channels
// ty + 8 i, positions tx + 8 j), stepping over k in slices of 16; the im2col element is
// computed while loading the shared tile (no column buffer). fp32 accumulation in a fixed order.
layout(local_size_x = 8, local_size_y = 8) in;

layout(std430, binding = 0) readonly buffer X { float x[]; };
// With W_F16 (the _f16 module, LDM_CONTEXT fp16 weights) the weights are stored as float16 and
// widened on load; all arithmetic stays float32 (no arithmetic on halves at all).
#ifdef W_F16
layout(std430, binding = 1) readonly buffer W { float16_t w[]; };
#define WLOAD(i) float(w[i])
#else
layout(std430, binding = 1) readonly buffer W { float w[]; };
#define WLOAD(i) w[i]
#endif
layout(std430, binding = 2) readonly buffer Bias { float bias[]; };
layout(std430, binding = 3) writeonly buffer Y { float y[]; };

// Kernel size and stride are specialization constants (3x3/1, 3x3/2, 1x1/1 in practice), so the
// im2col index arithmetic divides by constants; the output position each invocation loads is
// fixed for the whole k loop and decomposed once.
layout(constant_id = 0) const uint KH = 3u;
layout(constant_id = 1) const uint KW = 3u;
layout(constant_id = 2) const uint STRIDE = 1u;

layout(push_constant) uniform PC {
    uint cin, h, w_, cout;
    uint oh, ow, pad_top, pad_left;
    uint has_bias;
} pc;

const uint BM = 64u, BN = 64u, BK = 16u, T = 8u;
shared float As[BK][BM + 1u];
shared float Bs[BK][BN + 1u];

void main() {
    uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
    uint t = ty * 8u + tx;
    uint co0 = gl_WorkGroupID.y * BM, p0 = gl_WorkGroupID.x * BN, n = gl_WorkGroupID.z;
    const uint KHW = KH * KW;
    uint K = pc.cin * KHW, P = pc.oh * pc.ow;
    uint xbase = n * pc.cin * pc.h * pc.w_;
    // the column this invocation loads: position p0 + t, all 16 rows of each k slice
    uint pp = t;
    uint p = p0 + pp;
    bool pvalid = p < P;
    uint oy = pvalid ? p / pc.ow : 0u, ox = pvalid ? p - (p / pc.ow) * pc.ow : 0u;
    int iy0 = int(oy * STRIDE) - int(pc.pad_top), ix0 = int(ox * STRIDE) - int(pc.pad_left);
    float acc[T][T];
    for (uint i = 0u; i < T; i++)
        for (uint j = 0u; j < T; j++) acc[i][j] = 0.0;
    for (uint k0 = 0u; k0 < K; k0 += BK) {
        for (uint e = 0u; e < 16u; e++) {
            uint idx = t + e * 64u;
            // weights: 64 channels x 16 k, consecutive invocations along k
            uint r = idx / BK, c = idx % BK;
            uint k = k0 + c, co = co0 + r;
            As[c][r] = (co < pc.cout && k < K) ? WLOAD(co * K + k) : 0.0;
            // columns: 16 k x 64 positions, consecutive invocations along p
            uint kk = e, kb = k0 + kk;
            float v = 0.0;
            if (kb < K && pvalid) {
                uint ci = kb / KHW, rk = kb - ci * KHW;
                uint ky = rk / KW, kx = rk - ky * KW;
                int iy = iy0 + int(ky), ix = ix0 + int(kx);
                if (iy >= 0 && iy < int(pc.h) && ix >= 0 && ix < int(pc.w_))
                    v = x[xbase + (ci * pc.h + uint(iy)) * pc.w_ + uint(ix)];
            }
            Bs[kk][pp] = v;
        }
        barrier();
        for (uint kk = 0u; kk < BK; kk++) {
            float av[T], bv[T];
            for (uint i = 0u; i < T; i++) av[i] = As[kk][ty + 8u * i];
            for (uint j = 0u; j < T; j++) bv[j] = Bs[kk][tx + 8u * j];
            for (uint i = 0u; i < T; i++)
                for (uint j = 0u; j < T; j++) acc[i][j] += av[i] * bv[j];
        }
        barrier();
    }
    uint ybase = n * pc.cout * P;
    for (uint i = 0u; i < T; i++) {
        uint co = co0 + ty + 8u * i;
        if (co >= pc.cout) continue;
        float bv = pc.has_bias != 0u ? bias[co] : 0.0;
        for (uint j = 0u; j < T; j++) {
            uint p = p0 + tx + 8u * j;
            if (p < P) y[ybase + co * P + p] = acc[i][j] + bv;
        }
    }
}
