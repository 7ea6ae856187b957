#version 450
// Multi-head attention, flash style: y = softmax(scale q k^T [+ causal mask]) v with an online
// softmax over tiles of BK keys, so no Lq x Lk matrix exists. One workgroup of 64 invocations
// owns BQ query rows of one (batch, head); the running output (BQ x D) lives in registers,
// MAXO elements per invocation (BQ * D <= 64 * MAXO). fp32 throughout, fixed order.
// q, y [B, Lq, H*D]; k, v [B, Lk, H*D]; head h uses columns h*D .. h*D + D - 1.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(local_size_x = 64) in;
layout(constant_id = 0) const uint BQ = 8u;
layout(constant_id = 1) const uint MAXO = 8u;
const uint BK = 32u;

layout(std430, binding = 0) readonly buffer Q { float q[]; };
layout(std430, binding = 1) readonly buffer K { float k[]; };
layout(std430, binding = 2) readonly buffer V { float v[]; };
layout(std430, binding = 3) writeonly buffer Y { float y[]; };

layout(push_constant) uniform PC {
    uint lq, lk, heads, d;
    float scale;
    uint causal;
} pc;

shared float Qs[64u * MAXO]; // BQ * D <= 64 * MAXO
shared float S[BQ][BK];
shared float rmax[BQ], rsum[BQ], ralpha[BQ];

void main() {
    const float NEG_INF = uintBitsToFloat(0xff800000u);
    uint tid = gl_LocalInvocationID.x;
    uint q0 = gl_WorkGroupID.x * BQ;
    uint bh = gl_WorkGroupID.y, b = bh / pc.heads, h = bh - b * pc.heads;
    uint D = pc.d, HD = pc.heads * pc.d;
    uint qbase = b * pc.lq * HD + h * D, kbase = b * pc.lk * HD + h * D;

    for (uint e = tid; e < BQ * D; e += 64u) {
        uint r = e / D, c = e - r * D;
        Qs[e] = q0 + r < pc.lq ? q[qbase + (q0 + r) * HD + c] : 0.0;
    }
    if (tid < BQ) {
        rmax[tid] = NEG_INF;
        rsum[tid] = 0.0;
    }
    float o[MAXO];
    for (uint j = 0u; j < MAXO; j++) o[j] = 0.0;
    barrier();

    // keys a query block can see: all, or up to its last row under the causal mask
    uint kend = pc.causal != 0u ? min(pc.lk, q0 + BQ) : pc.lk;
    for (uint k0 = 0u; k0 < kend; k0 += BK) {
        // scores of the tile; NEG_INF marks masked or missing keys
        for (uint e = tid; e < BQ * BK; e += 64u) {
            uint r = e / BK, c = e - r * BK;
            uint qi = q0 + r, kj = k0 + c;
            float sc = NEG_INF;
            if (qi < pc.lq && kj < pc.lk && (pc.causal == 0u || kj <= qi)) {
                float dot = 0.0;
                uint kr = kbase + kj * HD;
                for (uint c2 = 0u; c2 < D; c2++) dot += Qs[r * D + c2] * k[kr + c2];
                sc = pc.scale * dot;
            }
            S[r][c] = sc;
        }
        barrier();
        // online softmax: new running max, rescale factor, probabilities of this tile
        if (tid < BQ) {
            uint r = tid;
            float mold = rmax[r], mx = mold;
            for (uint c = 0u; c < BK; c++) mx = max(mx, S[r][c]);
            float alpha = mold == NEG_INF ? 0.0 : ldm_exp(mold - mx);
            float sum = 0.0;
            for (uint c = 0u; c < BK; c++) {
                float sc = S[r][c];
                float p = sc == NEG_INF ? 0.0 : ldm_exp(sc - mx);
                S[r][c] = p;
                sum += p;
            }
            rsum[r] = rsum[r] * alpha + sum;
            rmax[r] = mx;
            ralpha[r] = alpha;
        }
        barrier();
        uint kn = min(BK, pc.lk - k0);
        for (uint j = 0u; j < MAXO; j++) {
            uint e = tid + j * 64u;
            if (e < BQ * D) {
                uint r = e / D, c = e - r * D;
                float acc = o[j] * ralpha[r];
                uint vr = kbase + k0 * HD + c;
                for (uint kk = 0u; kk < kn; kk++) acc += S[r][kk] * v[vr + kk * HD];
                o[j] = acc;
            }
        }
        barrier();
    }
    for (uint j = 0u; j < MAXO; j++) {
        uint e = tid + j * 64u;
        if (e < BQ * D) {
            uint r = e / D, c = e - r * D;
            if (q0 + r < pc.lq) y[qbase + (q0 + r) * HD + c] = o[j] * (1.0 / rsum[r]);
        }
    }
}
