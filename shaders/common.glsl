// Shared helpers of the compute shaders. exp and the exact GELU are the CPU backend's own
// algorithms (src/cpu/cpu_math.h: cpu_expf, cpu_gelu) written again in GLSL, so that both
// backends evaluate the same formulas; `precise` forbids the compiler from fusing or
// reassociating the steps that rely on float rounding.

// 2D dispatches: the flat invocation index when the grid is (gx, gy) groups of LOCAL threads.
uint flat_index(uint local_size) {
    return gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * local_size;
}

float ldm_exp(float x) {
    uint xb = floatBitsToUint(x);
    int i = min(int(xb), 0x42b00000);       // caps positive inputs at 88
    uint u = min(uint(i), 0xc2ae999au);     // caps negative inputs at -87.3
    float xc = uintBitsToFloat(u);
    precise float k = xc * 1.44269504088896341 + 12582912.0;
    precise float n = k - 12582912.0;
    int ni = int(floatBitsToUint(k) - 0x4b400000u);
    precise float r = xc - n * 0.693359375;
    r = r - n * -2.12194440e-4;
    precise float p = 1.9875691500e-4;
    p = p * r + 1.3981999507e-3;
    p = p * r + 8.3334519073e-3;
    p = p * r + 4.1665795894e-2;
    p = p * r + 1.6666665459e-1;
    p = p * r + 5.0000001201e-1;
    p = p * (r * r) + r + 1.0;
    precise float res = p * uintBitsToFloat(uint(ni + 127) << 23);
    return isnan(x) ? x : res;
}

float ldm_sigmoid(float x) { return 1.0 / (1.0 + ldm_exp(-x)); }

// 0.5 x (1 + erf(x / sqrt 2)): erf(a) = a P(a^2) for a < 1.5, else erfc(a) = exp(-a^2) Q(1/a).
float ldm_gelu(float x) {
    precise float a = abs(x) * 0.70710678118654752;
    precise float s = a * a;
    precise float p = -5.65576146982e-6;
    p = p * s + 9.1973656172e-5;
    p = p * s - 8.04373854924e-4;
    p = p * s + 5.17245055267e-3;
    p = p * s - 2.6836861727e-2;
    p = p * s + 1.12829571003e-1;
    p = p * s - 3.76125466672e-1;
    p = p * s + 1.12837914998;
    precise float erf_small = a * p;
    precise float u = 1.0 / clamp(a, 1.5, 9.3);
    precise float q = -0.197007415437;
    q = q * u + 0.720322857715;
    q = q * u - 1.07997603914;
    q = q * u + 0.752480109373;
    q = q * u - 0.0559475163374;
    q = q * u - 0.27749681177;
    q = q * u - 8.73868771061e-6;
    q = q * u + 0.564164211756;
    q = q * u + 1.24362795421e-6;
    precise float erfc_big = ldm_exp(-s) * q;
    bool neg = x < 0.0;
    float phi = a < 1.5 ? (neg ? 1.0 - erf_small : 1.0 + erf_small) : (neg ? erfc_big : 2.0 - erfc_big);
    return 0.5 * x * phi;
}
