#version 450
// Group norm (+ optional SiLU): one workgroup per (image, group). Two passes over the group for
// the statistics (mean, then the mean of squared deviations: biased variance, eps inside the
// square root, as torch), each a strided per-invocation sum then a tree reduction in shared
// memory (fixed order: deterministic); a third pass applies
// y = (x - mean) * (gamma * rstd) + beta, then SiLU — the CPU backend's formula.
// x may be y (in place): each group is read completely before it is written.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(local_size_x = 256) in;

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer G { float gamma[]; };
layout(std430, binding = 2) readonly buffer Bt { float beta[]; };
layout(std430, binding = 3) writeonly buffer Y { float y[]; };

layout(push_constant) uniform PC {
    uint channels, groups, spatial; // x [N, channels, spatial...]
    float eps;
    uint silu, has_gamma, has_beta;
} pc;

shared float red[256];

float reduce_sum(float v) {
    uint tid = gl_LocalInvocationID.x;
    red[tid] = v;
    barrier();
    for (uint s = 128u; s > 0u; s >>= 1) {
        if (tid < s) red[tid] += red[tid + s];
        barrier();
    }
    float r = red[0];
    barrier();
    return r;
}

void main() {
    uint tid = gl_LocalInvocationID.x;
    uint wg = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    uint n = wg / pc.groups, g = wg - n * pc.groups;
    uint cg = pc.channels / pc.groups, cnt = cg * pc.spatial;
    uint base = (n * pc.channels + g * cg) * pc.spatial;
    float s = 0.0;
    for (uint i = tid; i < cnt; i += 256u) s += x[base + i];
    float mean = reduce_sum(s) / float(cnt);
    float ss = 0.0;
    for (uint i = tid; i < cnt; i += 256u) {
        float d = x[base + i] - mean;
        ss += d * d;
    }
    float rstd = 1.0 / sqrt(reduce_sum(ss) / float(cnt) + pc.eps);
    for (uint i = tid; i < cnt; i += 256u) {
        uint c = g * cg + i / pc.spatial;
        float a = pc.has_gamma != 0u ? gamma[c] * rstd : rstd;
        float b0 = pc.has_beta != 0u ? beta[c] : 0.0;
        float v = (x[base + i] - mean) * a + b0;
        if (pc.silu != 0u) v = v * ldm_sigmoid(v);
        y[base + i] = v;
    }
}
