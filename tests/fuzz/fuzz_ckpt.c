/* libFuzzer harness for torch zip checkpoints (zip.c + pickle.c + checkpoint.c through
 * ckpt_open_torch_memory): any byte string must either be refused with an error status and a
 * message, or give an index whose tensors are consistent and readable end to end (ASan checks
 * that every data pointer lies in the buffer or in a copy the index owns). Built as a real
 * fuzzer with -Dfuzz=true (clang), else linked with replay_main.c to re-run the corpus. */
#include "core/checkpoint.h"

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
    ldm_status st = ckpt_open_torch_memory(data, size, &f);
    if (st != LDM_OK) {
        REQUIRE(f == NULL);
        REQUIRE(ldm_last_error()[0] != '\0');
        REQUIRE(strlen(ldm_last_error()) < 1024);
        return 0;
    }
    REQUIRE(f != NULL);
    volatile uint64_t sink = 0;
    for (size_t i = 0; i < st_count(f); i++) {
        const st_tensor *t = st_at(f, i);
        REQUIRE(t != NULL && t->name != NULL);
        REQUIRE(st_find(f, t->name) == t);
        REQUIRE((unsigned)t->dtype < LDM_DT_COUNT);
        REQUIRE(t->ndim >= 0 && t->ndim <= ST_MAX_DIMS);
        size_t bytes = ldm_dtype_size(t->dtype);
        for (int d = 0; d < t->ndim; d++) {
            REQUIRE(t->shape[d] >= 0);
            REQUIRE(!__builtin_mul_overflow(bytes, (size_t)t->shape[d], &bytes));
        }
        REQUIRE(bytes == t->nbytes);
        const uint8_t *p = t->data;
        for (size_t k = 0; k < t->nbytes; k += 61) sink += p[k]; /* touches the whole span */
        if (t->nbytes) sink += p[t->nbytes - 1];
        if (t->nbytes <= 4096 && (t->dtype == LDM_DT_F32 || t->dtype == LDM_DT_F16 || t->dtype == LDM_DT_BF16)) {
            float *vals = NULL;
            if (st_read_f32(t, &vals) == LDM_OK) {
                if (st_numel(t)) sink += (uint64_t)(vals[0] == vals[st_numel(t) - 1]);
                free(vals);
            }
        }
    }
    REQUIRE(st_at(f, st_count(f)) == NULL);
    const char *c = st_meta(f, "ldm.container");
    REQUIRE(c && strcmp(c, "torch-zip") == 0);
    st_close(f);
    (void)sink;
    return 0;
}
