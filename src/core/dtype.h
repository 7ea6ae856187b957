/* Element types of stored and computed tensors. */
#ifndef LDM_CORE_DTYPE_H
#define LDM_CORE_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum ldm_dtype {
    LDM_DT_F32 = 0,
    LDM_DT_F16,
    LDM_DT_BF16,
    LDM_DT_F64,
    LDM_DT_I64,
    LDM_DT_I32,
    LDM_DT_I16,
    LDM_DT_I8,
    LDM_DT_U8,
    LDM_DT_BOOL,
    LDM_DT_COUNT
} ldm_dtype;

size_t ldm_dtype_size(ldm_dtype dt);
const char *ldm_dtype_name(ldm_dtype dt); /* safetensors spelling: "F32", "F16", ... */
int ldm_dtype_from_name(const char *name, ldm_dtype *out); /* 0 on success */

/* IEEE half and bfloat16 to float (exact). */
static inline float ldm_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ffu, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400u)) {
                man <<= 1;
                exp--;
            }
            man &= 0x3ffu;
            bits = sign | (exp << 23) | (man << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline float ldm_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* float to half, round to nearest even (used by tests and writers). */
uint16_t ldm_f32_to_f16(float f);

/* Converts n elements of a float-typed source (F32/F16/BF16/F64) to float32. */
void ldm_convert_to_f32(ldm_dtype dt, const void *src, float *dst, size_t n);

#endif
