/* libFuzzer harness for the safetensors reader: any byte string must either be refused with an
 * error status and a message, or give tensors whose metadata is consistent and whose data lies
 * inside the buffer. Built as a real fuzzer with -Dfuzz=true (clang), else linked with
 * replay_main.c to re-run the corpus as a unit test. */
#include "core/safetensors.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) __builtin_trap();                                                             \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_file *f = (st_file *)(uintptr_t)1;
    ldm_status st = st_open_memory(data, size, &f);
    if (st != LDM_OK) {
        REQUIRE(f == NULL);
        REQUIRE(ldm_last_error()[0] != '\0');
        REQUIRE(strlen(ldm_last_error()) < 1024);
        return 0;
    }
    REQUIRE(f != NULL);
    volatile uint64_t sink = 0;
    const uint8_t *end = data + size;
    for (size_t i = 0; i < st_count(f); i++) {
        const st_tensor *t = st_at(f, i);
        REQUIRE(t != NULL && t->name != NULL);
        REQUIRE(st_find(f, t->name) == t); /* names are unique and indexed */
        REQUIRE((unsigned)t->dtype < LDM_DT_COUNT);
        REQUIRE(t->ndim >= 0 && t->ndim <= ST_MAX_DIMS);
        size_t bytes = ldm_dtype_size(t->dtype);
        for (int d = 0; d < t->ndim; d++) {
            REQUIRE(t->shape[d] >= 0);
            REQUIRE(!__builtin_mul_overflow(bytes, (size_t)t->shape[d], &bytes));
            sink += (uint64_t)t->shape[d];
        }
        REQUIRE(bytes == t->nbytes);
        REQUIRE(st_numel(t) * ldm_dtype_size(t->dtype) == t->nbytes);
        sink += strlen(t->name) + (uint64_t)t->dtype + (uint64_t)t->ndim;
        const uint8_t *p = t->data;
        REQUIRE(p >= data + 8 && p <= end);
        REQUIRE(t->nbytes <= (size_t)(end - p));
        if (t->nbytes) {
            sink += p[0];
            sink += p[t->nbytes - 1];
        }
        /* Exercise the float conversion on small float tensors. */
        if (t->nbytes <= 4096 && (t->dtype == LDM_DT_F32 || t->dtype == LDM_DT_F16 || t->dtype == LDM_DT_BF16 ||
                                  t->dtype == LDM_DT_F64)) {
            float *vals = NULL;
            if (st_read_f32(t, &vals) == LDM_OK) {
                size_t n = st_numel(t);
                if (n) sink += (uint64_t)(vals[0] == vals[n - 1]);
                free(vals);
            }
        }
    }
    REQUIRE(st_at(f, st_count(f)) == NULL);
    const char *fmt = st_meta(f, "format");
    if (fmt) sink += strlen(fmt);
    (void)st_find(f, "__metadata__");
    (void)st_find(f, "");
    st_close(f);
    (void)sink;
    return 0;
}
