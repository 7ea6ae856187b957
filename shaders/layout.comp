#version 450
// Data movement: nearest 2x upsampling, channel concatenation and batched transposes
// (NCHW <-> NLC). One invocation per output element; OP is a specialization constant.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(local_size_x = 256) in;
layout(constant_id = 0) const int OP = 0;
const int OP_UPSAMPLE2X = 0; // x [planes, h, w] -> y [planes, 2h, 2w]
const int OP_CONCAT = 1;     // a [n, p], b [n, q] -> y [n, p + q]
const int OP_TRANSPOSE = 2;  // x [count, p, q] -> y [count, q, p]

layout(std430, binding = 0) readonly buffer A { float a[]; };
layout(std430, binding = 1) readonly buffer B { float b[]; };
layout(std430, binding = 2) writeonly buffer Y { float y[]; };

layout(push_constant) uniform PC {
    uint n; // output elements
    uint p; // UPSAMPLE2X: h; CONCAT: per-image elements of a; TRANSPOSE: rows of the source
    uint q; // UPSAMPLE2X: w; CONCAT: per-image elements of b; TRANSPOSE: columns of the source
} pc;

void main() {
    uint i = flat_index(256u);
    if (i >= pc.n) return;
    if (OP == OP_UPSAMPLE2X) {
        uint w2 = 2u * pc.q, hw4 = 4u * pc.p * pc.q;
        uint plane = i / hw4, rem = i - plane * hw4;
        uint oy = rem / w2, ox = rem - oy * w2;
        y[i] = a[plane * pc.p * pc.q + (oy >> 1) * pc.q + (ox >> 1)];
    } else if (OP == OP_CONCAT) {
        uint per = pc.p + pc.q;
        uint img = i / per, r = i - img * per;
        y[i] = r < pc.p ? a[img * pc.p + r] : b[img * pc.q + (r - pc.p)];
    } else {
        uint pq = pc.p * pc.q;
        uint m = i / pq, rem = i - m * pq;
        uint c = rem / pc.p, r = rem - c * pc.p; // output [m, c, r] = source [m, r, c]
        y[i] = a[m * pq + r * pc.q + c];
    }
}
