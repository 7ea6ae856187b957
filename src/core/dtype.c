#include "dtype.h"

static const struct {
    const char *name;
    size_t size;
} dtype_info[LDM_DT_COUNT] = {
    [LDM_DT_F32] = {"F32", 4}, [LDM_DT_F16] = {"F16", 2}, [LDM_DT_BF16] = {"BF16", 2},
    [LDM_DT_F64] = {"F64", 8}, [LDM_DT_I64] = {"I64", 8}, [LDM_DT_I32] = {"I32", 4},
    [LDM_DT_I16] = {"I16", 2}, [LDM_DT_I8] = {"I8", 1},   [LDM_DT_U8] = {"U8", 1},
    [LDM_DT_BOOL] = {"BOOL", 1},
};

size_t ldm_dtype_size(ldm_dtype dt) { return (unsigned)dt < LDM_DT_COUNT ? dtype_info[dt].size : 0; }

const char *ldm_dtype_name(ldm_dtype dt) {
    return (unsigned)dt < LDM_DT_COUNT ? dtype_info[dt].name : "?";
}

int ldm_dtype_from_name(const char *name, ldm_dtype *out) {
    for (int i = 0; i < LDM_DT_COUNT; i++) {
        if (strcmp(name, dtype_info[i].name) == 0) {
            *out = (ldm_dtype)i;
            return 0;
        }
    }
    return -1;
}

uint16_t ldm_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    int32_t exp = (int32_t)((x >> 23) & 0xff) - 127 + 15;
    uint32_t man = x & 0x7fffffu;
    if (((x >> 23) & 0xff) == 0xff) return (uint16_t)(sign | 0x7c00u | (man ? 0x200u : 0));
    if (exp >= 31) return (uint16_t)(sign | 0x7c00u);
    if (exp <= 0) {
        if (exp < -10) return (uint16_t)sign;
        man |= 0x800000u;
        uint32_t shift = (uint32_t)(14 - exp);
        uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | ((uint32_t)exp << 10) | (man >> 13);
    uint32_t rem = man & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (half & 1))) half++;
    return (uint16_t)half;
}

void ldm_convert_to_f32(ldm_dtype dt, const void *src, float *dst, size_t n) {
    switch (dt) {
    case LDM_DT_F32: memcpy(dst, src, n * 4); break;
    case LDM_DT_F16: {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = ldm_f16_to_f32(s[i]);
        break;
    }
    case LDM_DT_BF16: {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = ldm_bf16_to_f32(s[i]);
        break;
    }
    case LDM_DT_F64: {
        const double *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = (float)s[i];
        break;
    }
    default:
        for (size_t i = 0; i < n; i++) dst[i] = 0.0f;
        break;
    }
}
