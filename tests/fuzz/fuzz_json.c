/* libFuzzer harness for the JSON reader: parse, then walk the whole tree through the accessors
 * (depth is capped by the parser, so the recursive walk is bounded). */
#include "core/json.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) __builtin_trap();                                                             \
    } while (0)

static uint64_t walk(const json_value *v, int depth) {
    REQUIRE(depth <= 256);
    uint64_t h = (uint64_t)v->type;
    int64_t iv;
    switch (v->type) {
    case JSON_NULL: break;
    case JSON_BOOL: h += v->boolean; break;
    case JSON_NUMBER:
        REQUIRE(v->number_text != NULL);
        if (json_as_int64(v, &iv)) h += (uint64_t)iv;
        h += (uint64_t)(json_number_or(v, 0.0) == v->number);
        break;
    case JSON_STRING:
        REQUIRE(v->string != NULL);
        h += strlen(v->string);
        break;
    case JSON_ARRAY:
        for (size_t i = 0; i < v->count; i++) h += walk(&v->items[i], depth + 1);
        break;
    case JSON_OBJECT:
        for (size_t i = 0; i < v->count; i++) {
            REQUIRE(v->keys[i] != NULL);
            const json_value *g = json_get(v, v->keys[i]);
            REQUIRE(g != NULL && g <= &v->items[i]); /* the first member with that name */
            h += walk(&v->items[i], depth + 1);
        }
        break;
    }
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    json_value *v = (json_value *)(uintptr_t)1;
    ldm_status st = json_parse((const char *)data, size, &v);
    if (st != LDM_OK) {
        REQUIRE(v == NULL);
        REQUIRE(ldm_last_error()[0] != '\0');
        return 0;
    }
    REQUIRE(v != NULL);
    volatile uint64_t sink = walk(v, 0);
    (void)json_path(v, "model.params.unet_config");
    (void)json_path(v, "a.b.c.d.e.f");
    (void)json_get(v, "");
    json_free(v);
    (void)sink;
    return 0;
}
