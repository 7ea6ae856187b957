/* libFuzzer harness for the restricted pickle evaluator (pickle.c) on its own, so the fuzzer
 * reaches the opcodes without having to forge a zip: any byte string is either refused with a
 * message or gives a state dict whose tensors have sane views. Nothing is ever executed. */
#include "core/pickle.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) __builtin_trap();                                                             \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pk_state_dict sd;
    ldm_status st = pk_load_state_dict(data, size, &sd);
    if (st != LDM_OK) {
        REQUIRE(sd.count == 0 && sd.tensors == NULL);
        REQUIRE(ldm_last_error()[0] != '\0');
        REQUIRE(strlen(ldm_last_error()) < 1024);
        return 0;
    }
    volatile uint64_t sink = 0;
    for (size_t i = 0; i < sd.count; i++) {
        const pk_tensor *t = &sd.tensors[i];
        REQUIRE(t->name && t->storage_key);
        REQUIRE((unsigned)t->dtype < LDM_DT_COUNT);
        REQUIRE(t->ndim >= 0 && t->ndim <= PK_MAX_DIMS);
        for (int d = 0; d < t->ndim; d++) REQUIRE(t->shape[d] >= 0 && t->stride[d] >= 0);
        sink += strlen(t->name) + strlen(t->storage_key) + t->offset + t->storage_numel;
    }
    pk_state_dict_free(&sd);
    (void)sink;
    return 0;
}
