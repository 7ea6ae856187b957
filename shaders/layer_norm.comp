#version 450
// Layer norm over the last dimension: one workgroup of 64 invocations per row; two-pass
// statistics (mean, biased variance, eps inside the square root) with tree reductions in a
// fixed order; y = (x - mean) * rstd * gamma + beta, as the CPU backend. x may be y.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer G { float gamma[]; };
layout(std430, binding = 2) readonly buffer Bt { float beta[]; };
layout(std430, binding = 3) writeonly buffer Y { float y[]; };

layout(push_constant) uniform PC {
    uint rows, c;
    float eps;
    uint has_gamma, has_beta;
} pc;

shared float red[64];

float reduce_sum(float v) {
    uint tid = gl_LocalInvocationID.x;
    red[tid] = v;
    barrier();
    for (uint s = 32u; s > 0u; s >>= 1) {
        if (tid < s) red[tid] += red[tid + s];
        barrier();
    }
    float r = red[0];
    barrier();
    return r;
}

void main() {
    uint tid = gl_LocalInvocationID.x;
    uint row = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    if (row >= pc.rows) return; // uniform over the workgroup
    uint base = row * pc.c;
    float s = 0.0;
    for (uint i = tid; i < pc.c; i += 64u) s += x[base + i];
    float mean = reduce_sum(s) / float(pc.c);
    float ss = 0.0;
    for (uint i = tid; i < pc.c; i += 64u) {
        float d = x[base + i] - mean;
        ss += d * d;
    }
    float rstd = 1.0 / sqrt(reduce_sum(ss) / float(pc.c) + pc.eps);
    for (uint i = tid; i < pc.c; i += 64u) {
        float v = (x[base + i] - mean) * rstd;
        if (pc.has_gamma != 0u) v *= gamma[i];
        if (pc.has_beta != 0u) v += beta[i];
        y[base + i] = v;
    }
}
