#version 450
// Elementwise ops over a flat range, one invocation per output element. OP is a specialization
// constant, so each op is its own small pipeline. Large tensors are processed in windows: the
// buffers are bound at an offset and `base` is the flat index of the window's first element.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(local_size_x = 256) in;
layout(constant_id = 0) const int OP = 0;
const int OP_ADD = 0;        // y = a + b[(base + i) % nb]
const int OP_SCALE = 1;      // y = a * s
const int OP_SILU = 2;       // y = a * sigmoid(a)
const int OP_GELU = 3;       // exact GELU
const int OP_QUICK_GELU = 4; // y = a * sigmoid(1.702 a)
const int OP_ADD_CHAN = 5;   // y = a + b[(base + i) / inner]
const int OP_GEGLU = 6;      // y[r, j] = a[r, j] * gelu(a[r, inner + j]), j < inner (a is [rows, 2 inner])

layout(std430, binding = 0) readonly buffer A { float a[]; };
layout(std430, binding = 1) readonly buffer B { float b[]; };
layout(std430, binding = 2) writeonly buffer Y { float y[]; };

layout(push_constant) uniform PC {
    uint n;     // elements in this window
    uint nb;    // ADD: elements of b
    uint base;  // flat index of the window's first element
    uint inner; // ADD_CHAN: elements per channel plane; GEGLU: D
    float s;    // SCALE
} pc;

void main() {
    uint i = flat_index(256u);
    if (i >= pc.n) return;
    float v;
    if (OP == OP_ADD) {
        v = a[i] + b[(pc.base + i) % pc.nb];
    } else if (OP == OP_SCALE) {
        v = a[i] * pc.s;
    } else if (OP == OP_SILU) {
        float x = a[i];
        v = x * ldm_sigmoid(x);
    } else if (OP == OP_GELU) {
        v = ldm_gelu(a[i]);
    } else if (OP == OP_QUICK_GELU) {
        float x = a[i];
        v = x * ldm_sigmoid(1.702 * x);
    } else if (OP == OP_ADD_CHAN) {
        v = a[i] + b[(pc.base + i) / pc.inner];
    } else {
        uint r = i / pc.inner, j = i - r * pc.inner;
        uint src = r * 2u * pc.inner + j;
        v = a[src] * ldm_gelu(a[src + pc.inner]);
    }
    y[i] = v;
}
