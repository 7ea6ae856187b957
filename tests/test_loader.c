/* Robustness of the checkpoint loader: broken safetensors files must give a clean error status
 * (never a crash, a leak or a silent success) with a message, through st_open(),
 * st_open_memory() and the public ldm_model_load(). Also a writer/reader round trip.
 * Usage: test_loader DATA_DIR [TMP_PARENT]
 *   DATA_DIR     tests/data (models/sd1-tiny.safetensors is read from it)
 *   TMP_PARENT   where the scratch directory is made (default /tmp) */
#include "core/context.h"
#include "core/model.h"
#include "core/safetensors.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int g_failures = 0, g_checks = 0;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        g_checks++;                                                                                \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            g_failures++;                                                                          \
        }                                                                                          \
    } while (0)

static char g_tmp[4096];
static ldm_context *g_ctx;
static int g_case = 0;

/* ---- byte buffers ------------------------------------------------------------------------- */

typedef struct {
    unsigned char *p;
    size_t n, cap;
} buf;

static void buf_put(buf *b, const void *data, size_t n) {
    if (b->n + n > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + n) nc *= 2;
        unsigned char *np = realloc(b->p, nc);
        if (!np) {
            fprintf(stderr, "out of memory\n");
            exit(2);
        }
        b->p = np;
        b->cap = nc;
    }
    if (n) memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void buf_u64(buf *b, uint64_t v) {
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(v >> (8 * i));
    buf_put(b, le, 8);
}

/* A safetensors file: length prefix `hlen` (or the header's true length when hlen == ~0),
 * header bytes, then `data_len` bytes of data (a counting pattern). */
static buf make_st_raw(const char *header, size_t header_len, uint64_t hlen, size_t data_len) {
    buf b = {0};
    buf_u64(&b, hlen == UINT64_MAX ? (uint64_t)header_len : hlen);
    buf_put(&b, header, header_len);
    for (size_t i = 0; i < data_len; i++) {
        unsigned char c = (unsigned char)(i * 7 + 1);
        buf_put(&b, &c, 1);
    }
    return b;
}

static buf make_st(const char *header, size_t data_len) {
    return make_st_raw(header, strlen(header), UINT64_MAX, data_len);
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
}

/* ---- expectations ------------------------------------------------------------------------- */

static bool contains(const char *hay, const char *needle) { return needle == NULL || strstr(hay, needle) != NULL; }

/* Runs the bytes through st_open_memory, st_open (via a file) and ldm_model_load. `st_status` is
 * what the container parser must return (LDM_OK when the container is fine), `load_status` what
 * ldm_model_load must return; `needle` (optional) must appear in ldm_model_load's message. */
static void expect_bytes(const char *what, const void *data, size_t n, ldm_status st_status, ldm_status load_status,
                         const char *needle) {
    char path[4200];
    snprintf(path, sizeof path, "%s/case%03d.safetensors", g_tmp, g_case++);
    write_file(path, data, n);

    /* In memory: a private heap copy so ASan sees any read past the end. */
    unsigned char *copy = malloc(n ? n : 1);
    if (n) memcpy(copy, data, n);
    st_file *f = (st_file *)(uintptr_t)1;
    ldm_clear_error();
    ldm_status s = st_open_memory(copy, n, &f);
    CHECK(s == st_status, "%s: st_open_memory gave %s, expected %s (%s)", what, ldm_status_string(s),
          ldm_status_string(st_status), ldm_last_error());
    if (s != LDM_OK) {
        CHECK(f == NULL, "%s: st_open_memory left the out-pointer set on error", what);
        CHECK(ldm_last_error()[0] != '\0', "%s: st_open_memory gave no message", what);
    }
    st_close(s == LDM_OK ? f : NULL);
    free(copy);

    f = (st_file *)(uintptr_t)1;
    ldm_clear_error();
    s = st_open(path, &f);
    CHECK(s == st_status, "%s: st_open gave %s, expected %s (%s)", what, ldm_status_string(s),
          ldm_status_string(st_status), ldm_last_error());
    if (s != LDM_OK) {
        CHECK(f == NULL, "%s: st_open left the out-pointer set on error", what);
        CHECK(ldm_last_error()[0] != '\0', "%s: st_open gave no message", what);
        CHECK(contains(ldm_last_error(), path), "%s: st_open's message does not name the file: %s", what,
              ldm_last_error());
    }
    st_close(s == LDM_OK ? f : NULL);

    ldm_model *m = (ldm_model *)(uintptr_t)1;
    ldm_clear_error();
    s = ldm_model_load(g_ctx, path, NULL, &m);
    CHECK(s == load_status, "%s: ldm_model_load gave %s, expected %s (%s)", what, ldm_status_string(s),
          ldm_status_string(load_status), ldm_last_error());
    if (s != LDM_OK) {
        CHECK(m == NULL, "%s: ldm_model_load left the out-pointer set on error", what);
        CHECK(ldm_last_error()[0] != '\0', "%s: ldm_model_load gave no message", what);
        CHECK(contains(ldm_last_error(), needle), "%s: message lacks '%s': %s", what, needle, ldm_last_error());
        CHECK(strlen(ldm_last_error()) < 1000, "%s: suspiciously long message: %s", what, ldm_last_error());
    } else {
        ldm_model_destroy(m);
    }
    if (g_failures == 0 || getenv("LDM_TEST_VERBOSE"))
        printf("  %-52s %-20s %s\n", what, ldm_status_string(s), ldm_last_error());
    unlink(path);
}

/* A broken container: st_open and ldm_model_load both fail with `status`. */
static void expect_broken(const char *what, const char *header, size_t data_len, ldm_status status) {
    buf b = make_st(header, data_len);
    expect_bytes(what, b.p, b.n, status, status, NULL);
    free(b.p);
}

/* A valid container that is not a model: st_open succeeds, ldm_model_load fails. */
static void expect_not_model(const char *what, const char *header, size_t data_len, ldm_status status,
                             const char *needle) {
    buf b = make_st(header, data_len);
    expect_bytes(what, b.p, b.n, LDM_OK, status, needle);
    free(b.p);
}

/* ---- the cases ---------------------------------------------------------------------------- */

#define T1 "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}"
#define T2 "\"b\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[16,22]}"
#define VALID "{\"__metadata__\":{\"format\":\"pt\"}," T1 "," T2 "}"

static void test_truncation(void) {
    printf("truncation and lengths\n");
    expect_bytes("empty file", "", 0, LDM_ERR_FORMAT, LDM_ERR_FORMAT, NULL);
    expect_bytes("5-byte file", "\x10\0\0\0\0", 5, LDM_ERR_FORMAT, LDM_ERR_FORMAT, NULL);
    expect_bytes("7-byte file", "\x02\0\0\0\0\0\0", 7, LDM_ERR_FORMAT, LDM_ERR_FORMAT, NULL);
    expect_bytes("length prefix only (0)", "\0\0\0\0\0\0\0\0", 8, LDM_ERR_FORMAT, LDM_ERR_FORMAT, NULL);

    buf good = make_st(VALID, 22);
    expect_bytes("the valid reference file", good.p, good.n, LDM_OK, LDM_ERR_UNSUPPORTED, "not a recognised");
    expect_bytes("cut in the data section", good.p, good.n - 5, LDM_ERR_FORMAT, LDM_ERR_FORMAT, "past the data");
    expect_bytes("cut at the end of the header", good.p, good.n - 22, LDM_ERR_FORMAT, LDM_ERR_FORMAT, NULL);
    expect_bytes("cut in the header", good.p, 8 + strlen(VALID) / 2, LDM_ERR_FORMAT, LDM_ERR_FORMAT, NULL);
    expect_bytes("cut after the length prefix", good.p, 8, LDM_ERR_FORMAT, LDM_ERR_FORMAT, NULL);
    expect_bytes("cut in the length prefix", good.p, 4, LDM_ERR_FORMAT, LDM_ERR_FORMAT, NULL);
    free(good.p);

    buf b = make_st_raw("{}", 2, 1000, 0);
    expect_bytes("header length past EOF", b.p, b.n, LDM_ERR_FORMAT, LDM_ERR_FORMAT, "past the end");
    free(b.p);
    b = make_st_raw("{}", 2, 3, 0);
    expect_bytes("header length one past EOF", b.p, b.n, LDM_ERR_FORMAT, LDM_ERR_FORMAT, NULL);
    free(b.p);
    b = make_st_raw("{}", 2, (uint64_t)200 << 20, 0);
    expect_bytes("header length 200 MiB (> cap)", b.p, b.n, LDM_ERR_FORMAT, LDM_ERR_FORMAT, "cap");
    free(b.p);
    b = make_st_raw("{}", 2, ((uint64_t)100 << 20) + 1, 0);
    expect_bytes("header length cap + 1", b.p, b.n, LDM_ERR_FORMAT, LDM_ERR_FORMAT, "cap");
    free(b.p);
    b = make_st_raw("{}", 2, UINT64_MAX - 1, 0);
    expect_bytes("header length 2^64 - 2", b.p, b.n, LDM_ERR_FORMAT, LDM_ERR_FORMAT, NULL);
    free(b.p);
    b = make_st_raw("{}", 2, (uint64_t)1 << 63, 0);
    expect_bytes("header length 2^63", b.p, b.n, LDM_ERR_FORMAT, LDM_ERR_FORMAT, NULL);
    free(b.p);
    b = make_st_raw("{", 1, UINT64_MAX, 0);
    expect_bytes("header of 1 byte", b.p, b.n, LDM_ERR_FORMAT, LDM_ERR_FORMAT, NULL);
    free(b.p);
    b = make_st_raw("{}", 2, UINT64_MAX, 0);
    expect_bytes("empty header '{}'", b.p, b.n, LDM_OK, LDM_ERR_UNSUPPORTED, "0 tensors");
    free(b.p);
    b = make_st_raw("{}      ", 8, UINT64_MAX, 0);
    expect_bytes("'{}' padded with spaces", b.p, b.n, LDM_OK, LDM_ERR_UNSUPPORTED, NULL);
    free(b.p);
}

static void test_header_json(void) {
    printf("header JSON\n");
    expect_broken("header is not JSON", "hello, world", 0, LDM_ERR_FORMAT);
    expect_broken("header is a JSON array", "[1,2,3]", 0, LDM_ERR_FORMAT);
    expect_broken("header is a JSON string", "\"{}\"", 0, LDM_ERR_FORMAT);
    expect_broken("header is a number", "12345678", 0, LDM_ERR_FORMAT);
    expect_broken("header is null", "null", 0, LDM_ERR_FORMAT);
    expect_broken("trailing garbage after the object", "{} x", 0, LDM_ERR_FORMAT);
    expect_broken("two objects", "{}{}", 0, LDM_ERR_FORMAT);
    expect_broken("unterminated object", "{\"a\":{\"dtype\":\"F32\"", 0, LDM_ERR_FORMAT);
    expect_broken("unterminated string", "{\"abc", 0, LDM_ERR_FORMAT);
    expect_broken("trailing comma", "{" T1 ",}", 16, LDM_ERR_FORMAT);
    expect_broken("single quotes", "{'a':1}", 0, LDM_ERR_FORMAT);
    expect_broken("bad escape in a name", "{\"a\\q\":{}}", 0, LDM_ERR_FORMAT);
    expect_broken("\\u0000 in a name", "{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}",
                  4, LDM_ERR_FORMAT);
    expect_broken("unpaired surrogate escape", "{\"\\ud800\":{}}", 0, LDM_ERR_FORMAT);
    expect_broken("raw control character in a name", "{\"a\tb\":{}}", 0, LDM_ERR_FORMAT);
    /* Non-UTF-8 names. */
    expect_broken("name with byte 0xff", "{\"\xff\xfe\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4,
                  LDM_ERR_FORMAT);
    expect_broken("name with a lone continuation byte", "{\"a\x80\":{}}", 0, LDM_ERR_FORMAT);
    expect_broken("name with an overlong '/'", "{\"\xc0\xaf\":{}}", 0, LDM_ERR_FORMAT);
    expect_broken("name with a UTF-8 surrogate", "{\"\xed\xa0\x80\":{}}", 0, LDM_ERR_FORMAT);
    expect_broken("name with a code point > U+10FFFF", "{\"\xf4\x90\x80\x80\":{}}", 0, LDM_ERR_FORMAT);
    expect_broken("name with a truncated sequence", "{\"\xe2\x82\":{}}", 0, LDM_ERR_FORMAT);
    {
        const char h[] = "{\"a\0\":{}}";
        buf b = make_st_raw(h, sizeof h - 1, UINT64_MAX, 0);
        expect_bytes("raw NUL inside a name", b.p, b.n, LDM_ERR_FORMAT, LDM_ERR_FORMAT, NULL);
        free(b.p);
    }
    /* A valid multi-byte name is fine. */
    expect_not_model("valid UTF-8 name", "{\"caf\xc3\xa9.\xe2\x82\xac\":{\"dtype\":\"F32\",\"shape\":[1],"
                     "\"data_offsets\":[0,4]}}", 4, LDM_ERR_UNSUPPORTED, NULL);

    /* Deep nesting must be refused without exhausting the stack. */
    size_t depth = 100000;
    char *deep = malloc(depth * 2 + 16);
    size_t n = 0;
    for (size_t i = 0; i < depth; i++) deep[n++] = '[';
    deep[n] = '\0';
    expect_broken("100000 '['", deep, 0, LDM_ERR_FORMAT);
    for (size_t i = 0; i < depth; i++) deep[n++] = ']';
    deep[n] = '\0';
    expect_broken("100000 balanced '[' ']'", deep, 0, LDM_ERR_FORMAT);
    n = 0;
    deep[n++] = '{';
    for (size_t i = 0; i < 30000 && n + 8 < depth * 2; i++) {
        memcpy(deep + n, "\"a\":{", 5);
        n += 5;
    }
    deep[n] = '\0';
    expect_broken("30000 nested objects", deep, 0, LDM_ERR_FORMAT);
    free(deep);
    expect_broken("moderate nesting inside a tensor entry",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[[[[[[[[1]]]]]]]],\"data_offsets\":[0,4]}}", 4, LDM_ERR_FORMAT);
    expect_broken("very long number", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0000000000000000000000000000000000000"
                  "0000000000000000000000000000000000000000001],\"data_offsets\":[0,4]}}", 4, LDM_ERR_FORMAT);
}

static void test_entries(void) {
    printf("tensor entries\n");
    expect_broken("entry is not an object", "{\"a\":[1,2]}", 0, LDM_ERR_FORMAT);
    expect_broken("entry is a string", "{\"a\":\"F32\"}", 0, LDM_ERR_FORMAT);
    expect_broken("entry lacks dtype", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, LDM_ERR_FORMAT);
    expect_broken("entry lacks shape", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, LDM_ERR_FORMAT);
    expect_broken("entry lacks data_offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, LDM_ERR_FORMAT);
    expect_broken("dtype is a number", "{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, LDM_ERR_FORMAT);
    expect_broken("shape is an object", "{\"a\":{\"dtype\":\"F32\",\"shape\":{},\"data_offsets\":[0,4]}}", 4,
                  LDM_ERR_FORMAT);
    expect_broken("data_offsets has 1 number", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]}}", 4,
                  LDM_ERR_FORMAT);
    expect_broken("data_offsets has 3 numbers", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}",
                  8, LDM_ERR_FORMAT);
    expect_broken("data_offsets are strings", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[\"0\",\"4\"]}}",
                  4, LDM_ERR_FORMAT);
    expect_broken("data_offsets fractional", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0.0,4.0]}}", 4,
                  LDM_ERR_FORMAT);
    expect_broken("data_offsets negative", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4,
                  LDM_ERR_FORMAT);
    expect_broken("data_offsets past EOF", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 12,
                  LDM_ERR_FORMAT);
    expect_broken("data_offsets far past EOF",
                  "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[9223372036854775800,9223372036854775804]}}",
                  4, LDM_ERR_FORMAT);
    expect_broken("data_offsets beyond int64",
                  "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,18446744073709551620]}}", 4,
                  LDM_ERR_FORMAT);
    expect_broken("begin > end", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, LDM_ERR_FORMAT);
    expect_broken("begin > end, both past EOF", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[100,96]}}",
                  8, LDM_ERR_FORMAT);
    expect_broken("overlapping offsets",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
                  16, LDM_ERR_FORMAT);
    expect_broken("identical offsets",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                  "\"b\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                  8, LDM_ERR_FORMAT);
    expect_broken("overlap listed in reverse order",
                  "{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]},"
                  "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
                  20, LDM_ERR_FORMAT);
    expect_broken("overlap hidden behind an empty tensor",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[25],\"data_offsets\":[0,100]},"
                  "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[10,10]},"
                  "\"c\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[50,66]}}",
                  100, LDM_ERR_FORMAT);
    expect_broken("overlap with a tensor contained in another",
                  "{\"a\":{\"dtype\":\"U8\",\"shape\":[100],\"data_offsets\":[0,100]},"
                  "\"b\":{\"dtype\":\"U8\",\"shape\":[10],\"data_offsets\":[10,20]},"
                  "\"c\":{\"dtype\":\"U8\",\"shape\":[10],\"data_offsets\":[30,40]}}",
                  100, LDM_ERR_FORMAT);
    expect_not_model("adjacent tensors and an empty one are fine",
                     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                     "\"e\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[8,8]},"
                     "\"s\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[8,16]}}",
                     16, LDM_ERR_UNSUPPORTED, "not a recognised");
    expect_broken("shape x dtype smaller than the span",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}", 16, LDM_ERR_FORMAT);
    expect_broken("shape x dtype larger than the span",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[5],\"data_offsets\":[0,16]}}", 16, LDM_ERR_FORMAT);
    expect_broken("F16 sized as F32", "{\"a\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16,
                  LDM_ERR_FORMAT);
    expect_broken("scalar with an empty span", "{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,0]}}", 0,
                  LDM_ERR_FORMAT);
    expect_broken("shape [2^62, 2^62] (overflow)",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4611686018427387904],"
                  "\"data_offsets\":[0,16]}}",
                  16, LDM_ERR_FORMAT);
    expect_broken("shape [2^32, 2^32] U8 (overflow)",
                  "{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", 0,
                  LDM_ERR_FORMAT);
    expect_broken("shape [2^62] F32 (size overflows)",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}}", 0,
                  LDM_ERR_FORMAT);
    expect_broken("shape [2^63 - 1]",
                  "{\"a\":{\"dtype\":\"U8\",\"shape\":[9223372036854775807],\"data_offsets\":[0,16]}}", 16,
                  LDM_ERR_FORMAT);
    expect_broken("shape beyond int64", "{\"a\":{\"dtype\":\"U8\",\"shape\":[99999999999999999999],\"data_offsets\":[0,1]}}",
                  1, LDM_ERR_FORMAT);
    expect_broken("negative dimension", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1,4],\"data_offsets\":[0,16]}}", 16,
                  LDM_ERR_FORMAT);
    expect_broken("negative dimensions whose product fits",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2,-2],\"data_offsets\":[0,16]}}", 16, LDM_ERR_FORMAT);
    expect_broken("fractional dimension", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4.0],\"data_offsets\":[0,16]}}", 16,
                  LDM_ERR_FORMAT);
    expect_broken("exponent dimension", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4e0],\"data_offsets\":[0,16]}}", 16,
                  LDM_ERR_FORMAT);
    expect_broken("dimension is a string", "{\"a\":{\"dtype\":\"F32\",\"shape\":[\"4\"],\"data_offsets\":[0,16]}}",
                  16, LDM_ERR_FORMAT);
    expect_broken("dimension is null", "{\"a\":{\"dtype\":\"F32\",\"shape\":[null],\"data_offsets\":[0,16]}}", 16,
                  LDM_ERR_FORMAT);
    expect_broken("9 dimensions",
                  "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
                  LDM_ERR_FORMAT);
    expect_broken("overflow before a zero dimension",
                  "{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,0],\"data_offsets\":[0,0]}}", 0,
                  LDM_ERR_FORMAT);
    expect_not_model("8 dimensions are fine",
                     "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,2,1,2,1,2,1,2],\"data_offsets\":[0,16]}}", 16,
                     LDM_ERR_UNSUPPORTED, NULL);
    expect_not_model("a zero dimension makes large ones harmless",
                     "{\"a\":{\"dtype\":\"F32\",\"shape\":[0,4611686018427387904],\"data_offsets\":[0,0]}}", 0,
                     LDM_ERR_UNSUPPORTED, NULL);
    expect_broken("unknown dtype", "{\"a\":{\"dtype\":\"Q4_K\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16,
                  LDM_ERR_UNSUPPORTED);
    expect_broken("float8 dtype (valid, unsupported)",
                  "{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4, LDM_ERR_UNSUPPORTED);
    expect_broken("lower-case dtype", "{\"a\":{\"dtype\":\"f32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16,
                  LDM_ERR_UNSUPPORTED);
    expect_broken("empty dtype", "{\"a\":{\"dtype\":\"\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16,
                  LDM_ERR_UNSUPPORTED);
    expect_broken("duplicate tensor names",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                  "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                  8, LDM_ERR_FORMAT);
    expect_broken("duplicate names, one escaped",
                  "{\"ab\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                  "\"a\\u0062\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                  8, LDM_ERR_FORMAT);
}

static void test_metadata(void) {
    printf("__metadata__\n");
    expect_broken("__metadata__ is an array", "{\"__metadata__\":[\"a\"]," T1 "}", 16, LDM_ERR_FORMAT);
    expect_broken("__metadata__ is a string", "{\"__metadata__\":\"pt\"," T1 "}", 16, LDM_ERR_FORMAT);
    expect_broken("__metadata__ is null", "{\"__metadata__\":null}", 0, LDM_ERR_FORMAT);
    expect_broken("__metadata__ number value", "{\"__metadata__\":{\"format\":1}," T1 "}", 16, LDM_ERR_FORMAT);
    expect_broken("__metadata__ object value", "{\"__metadata__\":{\"format\":{}}," T1 "}", 16, LDM_ERR_FORMAT);
    expect_broken("__metadata__ null value", "{\"__metadata__\":{\"a\":\"x\",\"b\":null}}", 0, LDM_ERR_FORMAT);
    expect_broken("__metadata__ twice (big, then small)",
                  "{\"__metadata__\":{\"a\":\"1\",\"b\":\"2\",\"c\":\"3\",\"d\":\"4\"},\"__metadata__\":{\"e\":\"5\"}}",
                  0, LDM_ERR_FORMAT);
    expect_broken("__metadata__ twice (equal)", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, LDM_ERR_FORMAT);
    expect_not_model("__metadata__ empty", "{\"__metadata__\":{}," T1 "}", 16, LDM_ERR_UNSUPPORTED, NULL);
    expect_not_model("__metadata__ only", "{\"__metadata__\":{\"format\":\"pt\"}}", 0, LDM_ERR_UNSUPPORTED, NULL);
}

static void test_not_models(void) {
    printf("well-formed files that are not SD1 models\n");
    expect_not_model("one random tensor", "{\"weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}",
                     16, LDM_ERR_UNSUPPORTED, "not a recognised diffusion checkpoint");
    expect_not_model("SDXL keys",
                     "{\"conditioner.embedders.1.model.token_embedding.weight\":{\"dtype\":\"F16\",\"shape\":[4,2],"
                     "\"data_offsets\":[0,16]}}",
                     16, LDM_ERR_UNSUPPORTED, "SDXL");
    expect_not_model("SD 2.x keys",
                     "{\"cond_stage_model.model.token_embedding.weight\":{\"dtype\":\"F16\",\"shape\":[4,2],"
                     "\"data_offsets\":[0,16]}}",
                     16, LDM_ERR_UNSUPPORTED, "2.x");
    expect_not_model("VQ LDM keys",
                     "{\"first_stage_model.quantize.embedding.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],"
                     "\"data_offsets\":[0,16]}}",
                     16, LDM_ERR_UNSUPPORTED, "VQ");
    expect_not_model("a UNet alone",
                     "{\"model.diffusion_model.input_blocks.0.0.weight\":{\"dtype\":\"F32\",\"shape\":[1,4,1,1],"
                     "\"data_offsets\":[0,16]}}",
                     16, LDM_ERR_UNSUPPORTED, "UNet");
    /* The three SD1 family keys with nothing else: recognised, then derivation fails cleanly, also
     * with zero-sized or rank-deficient tensors (no division by zero, no out-of-bounds dims). */
    expect_not_model("SD1 family keys only",
                     "{\"model.diffusion_model.input_blocks.0.0.weight\":{\"dtype\":\"F32\",\"shape\":[1,4,1,1],"
                     "\"data_offsets\":[0,16]},"
                     "\"first_stage_model.encoder.conv_in.weight\":{\"dtype\":\"F32\",\"shape\":[1],"
                     "\"data_offsets\":[16,20]},"
                     "\"cond_stage_model.transformer.text_model.embeddings.token_embedding.weight\":{\"dtype\":\"F32\","
                     "\"shape\":[1],\"data_offsets\":[20,24]}}",
                     24, LDM_ERR_FORMAT, "model.diffusion_model.out.2.weight");
}

/* ---- SD1 checkpoints with one tensor removed or damaged ----------------------------------- */

/* Writes sd1-tiny minus `drop` (and with `shrink` given a wrong shape) to path. */
static void write_sd1_variant(const st_file *src, const char *path, const char *drop, const char *zero_dim) {
    st_writer *w = st_writer_new();
    for (size_t i = 0; i < st_count(src); i++) {
        const st_tensor *t = st_at(src, i);
        if (drop && strcmp(t->name, drop) == 0) continue;
        if (zero_dim && strcmp(t->name, zero_dim) == 0) {
            int64_t shape[ST_MAX_DIMS];
            memcpy(shape, t->shape, sizeof shape);
            shape[0] = 0;
            CHECK(st_writer_add(w, t->name, t->dtype, t->ndim, shape, t->data) == LDM_OK, "writer");
            continue;
        }
        CHECK(st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data) == LDM_OK, "writer: %s",
              ldm_last_error());
    }
    const char *fmt = st_meta(src, "format");
    if (fmt) st_writer_meta(w, "format", fmt);
    CHECK(st_writer_save(w, path) == LDM_OK, "save %s: %s", path, ldm_last_error());
    st_writer_free(w);
}

static void test_sd1_missing(const char *data_dir) {
    printf("sd1-tiny with a tensor missing\n");
    char src_path[4200], path[4200];
    snprintf(src_path, sizeof src_path, "%s/models/sd1-tiny.safetensors", data_dir);
    snprintf(path, sizeof path, "%s/sd1-variant.safetensors", g_tmp);
    st_file *src = NULL;
    ldm_status s = st_open(src_path, &src);
    CHECK(s == LDM_OK, "st_open(%s): %s", src_path, ldm_last_error());
    if (s) return;

    /* The whole file loads. */
    ldm_model *m = NULL;
    s = ldm_model_load(g_ctx, src_path, NULL, &m);
    CHECK(s == LDM_OK, "ldm_model_load(sd1-tiny): %s", ldm_last_error());
    if (m) CHECK(strcmp(ldm_model_family(m), "sd1") == 0, "family %s", ldm_model_family(m));
    ldm_model_destroy(m);

    static const char *const keys[] = {
        "model.diffusion_model.out.2.weight",
        "model.diffusion_model.input_blocks.1.1.proj_in.weight",
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
        "first_stage_model.decoder.conv_out.weight",
        "first_stage_model.post_quant_conv.weight",
        "first_stage_model.decoder.conv_in.weight",
        "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight",
        "cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc1.weight",
    };
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
        CHECK(st_find(src, keys[k]) != NULL, "sd1-tiny lacks %s", keys[k]);
        write_sd1_variant(src, path, keys[k], NULL);
        m = (ldm_model *)(uintptr_t)1;
        ldm_clear_error();
        s = ldm_model_load(g_ctx, path, NULL, &m);
        CHECK(s == LDM_ERR_FORMAT, "without %s: ldm_model_load gave %s (%s)", keys[k], ldm_status_string(s),
              ldm_last_error());
        CHECK(m == NULL, "without %s: out-pointer set", keys[k]);
        CHECK(strstr(ldm_last_error(), keys[k]) != NULL, "without %s: message does not name it: %s", keys[k],
              ldm_last_error());
        printf("  without %-70s %s\n", keys[k], ldm_status_string(s));
        if (s == LDM_OK) ldm_model_destroy(m);
    }

    /* A tensor deep inside a network, which loading need not look at: if the load succeeds, the
     * first use fails with LDM_ERR_FORMAT naming it (never a crash or a NULL dereference). */
    static const char *const deep_keys[] = {
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight",
        "first_stage_model.decoder.up.0.block.1.conv2.weight",
        "cond_stage_model.transformer.text_model.encoder.layers.1.self_attn.out_proj.bias",
        "cond_stage_model.transformer.text_model.final_layer_norm.weight",
        /* Optional by presence (a residual block without a channel change has none): without it
         * the next conv sees the wrong channel count. Any clean error will do. */
        "model.diffusion_model.output_blocks.2.0.skip_connection.weight",
    };
    const size_t n_strict = 4;
    for (size_t k = 0; k < sizeof deep_keys / sizeof *deep_keys; k++) {
        CHECK(st_find(src, deep_keys[k]) != NULL, "sd1-tiny lacks %s", deep_keys[k]);
        write_sd1_variant(src, path, deep_keys[k], NULL);
        m = NULL;
        ldm_clear_error();
        s = ldm_model_load(g_ctx, path, NULL, &m);
        const char *when = "load";
        if (s == LDM_OK) {
            when = "txt2img";
            ldm_txt2img_params tp;
            ldm_txt2img_params_init(&tp);
            tp.prompt = "a cat";
            tp.width = tp.height = 64;
            tp.steps = 1;
            ldm_image *img = (ldm_image *)(uintptr_t)1;
            s = ldm_txt2img(g_ctx, m, &tp, &img);
            CHECK(img == NULL, "without %s: an image came back", deep_keys[k]);
            if (s == LDM_OK) ldm_image_destroy(img);
            ldm_model_destroy(m);
        }
        if (k < n_strict) {
            CHECK(s == LDM_ERR_FORMAT, "without %s: %s gave %s (%s)", deep_keys[k], when, ldm_status_string(s),
                  ldm_last_error());
            CHECK(strstr(ldm_last_error(), deep_keys[k]) != NULL, "without %s: message does not name it: %s",
                  deep_keys[k], ldm_last_error());
        } else {
            CHECK(s != LDM_OK && ldm_last_error()[0], "without %s: %s gave %s", deep_keys[k], when,
                  ldm_status_string(s));
        }
        printf("  without %-70s %s at %s: %s\n", deep_keys[k], ldm_status_string(s), when, ldm_last_error());
    }

    /* Zero-sized leading dimensions of the tensors the hyper-parameters are read from: a clean
     * error at load, never a division by zero or a mis-sized buffer later. */
    static const char *const zero_keys[] = {
        "model.diffusion_model.input_blocks.0.0.weight",
        "first_stage_model.encoder.conv_in.weight",
        /* UNet output channels 0 != input channels 4: the sampler's buffers would be sized by one
         * and read as the other (was a heap overflow in ldm_txt2img). */
        "model.diffusion_model.out.2.weight",
    };
    for (size_t k = 0; k < sizeof zero_keys / sizeof *zero_keys; k++) {
        write_sd1_variant(src, path, NULL, zero_keys[k]);
        m = (ldm_model *)(uintptr_t)1;
        ldm_clear_error();
        s = ldm_model_load(g_ctx, path, NULL, &m);
        CHECK(s == LDM_ERR_FORMAT, "%s with a 0 dimension: ldm_model_load gave %s (%s)", zero_keys[k],
              ldm_status_string(s), ldm_last_error());
        CHECK(m == NULL && ldm_last_error()[0], "%s with a 0 dimension: out-pointer or message", zero_keys[k]);
        printf("  %s with a 0 dim: %s %s\n", zero_keys[k], ldm_status_string(s), ldm_last_error());
        if (s == LDM_OK) ldm_model_destroy(m);
    }
    unlink(path);
    st_close(src);
}

/* ---- public-API file errors --------------------------------------------------------------- */

static void test_io(const char *data_dir) {
    printf("I/O errors\n");
    char path[4200];
    snprintf(path, sizeof path, "%s/does-not-exist.safetensors", g_tmp);
    st_file *f = (st_file *)(uintptr_t)1;
    ldm_status s = st_open(path, &f);
    CHECK(s == LDM_ERR_IO && f == NULL && ldm_last_error()[0], "missing file: st_open %s", ldm_status_string(s));
    ldm_model *m = (ldm_model *)(uintptr_t)1;
    s = ldm_model_load(g_ctx, path, NULL, &m);
    CHECK(s == LDM_ERR_IO && m == NULL && strstr(ldm_last_error(), "does-not-exist"), "missing file: load %s (%s)",
          ldm_status_string(s), ldm_last_error());
    s = st_open(g_tmp, &f);
    CHECK(s == LDM_ERR_IO && f == NULL && ldm_last_error()[0], "directory: st_open %s", ldm_status_string(s));
    s = ldm_model_load(g_ctx, g_tmp, NULL, &m);
    /* A directory is tried as a diffusers folder (checkpoint.c): not one -> LDM_ERR_FORMAT. */
    CHECK((s == LDM_ERR_IO || s == LDM_ERR_FORMAT) && m == NULL && ldm_last_error()[0], "directory: load %s",
          ldm_status_string(s));

    /* A missing config file. */
    char model_path[4200];
    snprintf(model_path, sizeof model_path, "%s/models/sd1-tiny.safetensors", data_dir);
    ldm_model_params mp;
    ldm_model_params_init(&mp);
    mp.config_path = path;
    s = ldm_model_load(g_ctx, model_path, &mp, &m);
    CHECK(s == LDM_ERR_IO && m == NULL && ldm_last_error()[0], "missing config: load %s (%s)", ldm_status_string(s),
          ldm_last_error());
    /* A config that is not JSON. */
    snprintf(path, sizeof path, "%s/bad-config.json", g_tmp);
    write_file(path, "{\"model\": [", 11);
    s = ldm_model_load(g_ctx, model_path, &mp, &m);
    CHECK(s == LDM_ERR_FORMAT && m == NULL && strstr(ldm_last_error(), "bad-config.json"), "bad config: load %s (%s)",
          ldm_status_string(s), ldm_last_error());
    CHECK(strlen(ldm_last_error()) < 600, "bad config: message garbled: %s", ldm_last_error());
    printf("  bad config: %s\n", ldm_last_error());
    unlink(path);
    printf("  I/O cases done\n");
}

/* ---- writer/reader round trip ------------------------------------------------------------- */

static void test_round_trip(void) {
    printf("st_writer -> st_open round trip\n");
    float f32[6] = {1.0f, -2.5f, 3.25f, 0.0f, -0.0f, 1e-30f};
    uint16_t f16[4] = {0x3c00, 0xc000, 0x7bff, 0x0001};      /* 1, -2, 65504, smallest subnormal */
    uint16_t bf16[3] = {0x3f80, 0xbf80, 0x7f7f};             /* 1, -1, ~3.39e38 */
    int64_t i64[5] = {0, -1, INT64_MAX, INT64_MIN, 123456789012345};
    double f64 = 3.141592653589793;
    int64_t s_f32[2] = {2, 3}, s_f16[1] = {4}, s_bf16[3] = {1, 3, 1}, s_i64[1] = {5}, s_empty[2] = {0, 7};
    st_writer *w = st_writer_new();
    CHECK(w != NULL, "st_writer_new");
    CHECK(st_writer_add(w, "weights/f32", LDM_DT_F32, 2, s_f32, f32) == LDM_OK, "add f32");
    CHECK(st_writer_add(w, "f16 \"quoted\" \\ name", LDM_DT_F16, 1, s_f16, f16) == LDM_OK, "add f16");
    CHECK(st_writer_add(w, "bf16.caf\xc3\xa9", LDM_DT_BF16, 3, s_bf16, bf16) == LDM_OK, "add bf16");
    CHECK(st_writer_add(w, "ids", LDM_DT_I64, 1, s_i64, i64) == LDM_OK, "add i64");
    CHECK(st_writer_add(w, "scalar", LDM_DT_F64, 0, NULL, &f64) == LDM_OK, "add scalar");
    CHECK(st_writer_add(w, "empty", LDM_DT_F32, 2, s_empty, f32) == LDM_OK, "add empty");
    CHECK(st_writer_meta(w, "format", "pt") == LDM_OK, "meta");
    CHECK(st_writer_meta(w, "note", "line1\nline2\t\"q\" \\ \xe2\x82\xac") == LDM_OK, "meta 2");
    char path[4200];
    snprintf(path, sizeof path, "%s/round-trip.safetensors", g_tmp);
    CHECK(st_writer_save(w, path) == LDM_OK, "save: %s", ldm_last_error());
    st_writer_free(w);

    st_file *f = NULL;
    ldm_status s = st_open(path, &f);
    CHECK(s == LDM_OK, "st_open round trip: %s", ldm_last_error());
    if (s) return;
    CHECK(st_count(f) == 6, "count %zu", st_count(f));
    CHECK(st_at(f, 6) == NULL, "st_at past the end");
    CHECK(st_find(f, "nope") == NULL, "st_find of a missing name");
    CHECK(st_meta(f, "format") && strcmp(st_meta(f, "format"), "pt") == 0, "meta format");
    CHECK(st_meta(f, "note") && strcmp(st_meta(f, "note"), "line1\nline2\t\"q\" \\ \xe2\x82\xac") == 0, "meta note: %s",
          st_meta(f, "note") ? st_meta(f, "note") : "(null)");
    CHECK(st_meta(f, "missing") == NULL, "missing meta");

    const struct {
        const char *name;
        ldm_dtype dt;
        int ndim;
        const int64_t *shape;
        const void *data;
        size_t nbytes;
    } want[] = {
        {"weights/f32", LDM_DT_F32, 2, s_f32, f32, sizeof f32},
        {"f16 \"quoted\" \\ name", LDM_DT_F16, 1, s_f16, f16, sizeof f16},
        {"bf16.caf\xc3\xa9", LDM_DT_BF16, 3, s_bf16, bf16, sizeof bf16},
        {"ids", LDM_DT_I64, 1, s_i64, i64, sizeof i64},
        {"scalar", LDM_DT_F64, 0, NULL, &f64, sizeof f64},
        {"empty", LDM_DT_F32, 2, s_empty, NULL, 0},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        const st_tensor *t = st_find(f, want[i].name);
        CHECK(t != NULL, "round trip: '%s' missing", want[i].name);
        if (!t) continue;
        CHECK(t == st_at(f, i), "round trip: '%s' out of order", want[i].name);
        CHECK(strcmp(t->name, want[i].name) == 0, "name");
        CHECK(t->dtype == want[i].dt, "'%s' dtype %d", want[i].name, (int)t->dtype);
        CHECK(t->ndim == want[i].ndim, "'%s' ndim %d", want[i].name, t->ndim);
        for (int d = 0; d < want[i].ndim && d < t->ndim; d++)
            CHECK(t->shape[d] == want[i].shape[d], "'%s' dim %d", want[i].name, d);
        CHECK(t->nbytes == want[i].nbytes, "'%s' nbytes %zu", want[i].name, t->nbytes);
        if (want[i].nbytes) CHECK(memcmp(t->data, want[i].data, want[i].nbytes) == 0, "'%s' data", want[i].name);
    }
    const st_tensor *t = st_find(f, "f16 \"quoted\" \\ name");
    float *vals = NULL;
    if (t && st_read_f32(t, &vals) == LDM_OK) {
        CHECK(vals[0] == 1.0f && vals[1] == -2.0f && vals[2] == 65504.0f && vals[3] == 0x1p-24f, "f16 values");
        free(vals);
    }
    t = st_find(f, "bf16.caf\xc3\xa9");
    if (t && st_read_f32(t, &vals) == LDM_OK) {
        CHECK(vals[0] == 1.0f && vals[1] == -1.0f && vals[2] > 3e38f, "bf16 values");
        free(vals);
    }
    t = st_find(f, "ids");
    CHECK(t && st_read_f32(t, &vals) == LDM_ERR_FORMAT && vals == NULL, "st_read_f32 of I64 must fail");
    t = st_find(f, "empty");
    CHECK(t && st_numel(t) == 0, "empty numel");
    CHECK(st_numel(st_find(f, "scalar")) == 1, "scalar numel");
    st_close(f);

    /* The same bytes through st_open_memory. */
    FILE *fp = fopen(path, "rb");
    buf b = {0};
    if (fp) {
        unsigned char chunk[4096];
        size_t got;
        while ((got = fread(chunk, 1, sizeof chunk, fp)) > 0) buf_put(&b, chunk, got);
        fclose(fp);
    }
    CHECK(b.n > 8 && (b.n - 8 - 0) % 1 == 0, "read back");
    uint64_t hlen = 0;
    for (int i = 7; i >= 0 && b.n >= 8; i--) hlen = (hlen << 8) | b.p[i];
    CHECK((8 + hlen) % 8 == 0, "writer pads the header to 8 bytes (%llu)", (unsigned long long)hlen);
    s = st_open_memory(b.p, b.n, &f);
    CHECK(s == LDM_OK && st_count(f) == 6, "st_open_memory round trip: %s", ldm_last_error());
    if (!s) {
        const st_tensor *ids = st_find(f, "ids");
        CHECK(ids && memcmp(ids->data, i64, sizeof i64) == 0, "ids via memory");
        st_close(f);
    }
    free(b.p);
    unlink(path);
}

/* ---- main --------------------------------------------------------------------------------- */

static void remove_tmp(void) {
    DIR *d = opendir(g_tmp);
    if (d) {
        struct dirent *e;
        char p[4400];
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            snprintf(p, sizeof p, "%s/%s", g_tmp, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(g_tmp);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s DATA_DIR [TMP_PARENT]\n", argv[0]);
        return 2;
    }
    const char *parent = argc > 2 ? argv[2] : "/tmp";
    snprintf(g_tmp, sizeof g_tmp, "%s/test_loader.XXXXXX", parent);
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 2;
    }
    ldm_context_params cp;
    ldm_context_params_init(&cp);
    cp.backend = LDM_BACKEND_CPU;
    cp.n_threads = 1;
    if (ldm_context_create(&cp, &g_ctx) != LDM_OK) {
        fprintf(stderr, "ldm_context_create: %s\n", ldm_last_error());
        remove_tmp();
        return 2;
    }

    test_truncation();
    test_header_json();
    test_entries();
    test_metadata();
    test_not_models();
    test_io(argv[1]);
    test_round_trip();
    test_sd1_missing(argv[1]);

    ldm_context_destroy(g_ctx);
    remove_tmp();
    printf("%d cases, %d checks, %d failures\n", g_case, g_checks, g_failures);
    return g_failures ? 1 : 0;
}
