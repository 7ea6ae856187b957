/* A small, strict JSON reader (RFC 8259) for safetensors headers, model configs and case
 * metadata. Strings are validated as UTF-8; nesting depth is capped. */
#ifndef LDM_CORE_JSON_H
#define LDM_CORE_JSON_H

#include "common.h"

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } json_type;

typedef struct json_value json_value;
struct json_value {
    json_type type;
    bool boolean;
    double number;
    char *string;      /* JSON_STRING: decoded UTF-8 (may contain no NUL: \u0000 is rejected) */
    char *number_text; /* JSON_NUMBER: the literal as written, for exact integer parsing */
    size_t count;      /* ARRAY/OBJECT: number of members */
    char **keys;       /* OBJECT: member names (in file order) */
    json_value *items; /* ARRAY/OBJECT: members */
};

/* Parses text[0..len). On error returns LDM_ERR_FORMAT with a message naming the offset. */
ldm_status json_parse(const char *text, size_t len, json_value **out);
void json_free(json_value *v);

const json_value *json_get(const json_value *obj, const char *key); /* NULL if absent / not obj */
const json_value *json_path(const json_value *root, const char *dotted); /* "a.b.c" */
/* Integer value of a JSON_NUMBER without fractional part, exactly (no double round-trip). */
bool json_as_int64(const json_value *v, int64_t *out);
double json_number_or(const json_value *v, double fallback);

#endif
