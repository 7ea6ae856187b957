/* The BERT WordPiece tokenizer (LDM-KL-8-G) against the goldens of the reference
 * (tests/data/tokenizer/bert_tokenizer.json = shared/golden/ldm-txt2img-tiny/tokenizer.json:
 * 22 prompts through HF tokenizers' BertTokenizerFast for bert-base-uncased). Every case checks
 * the untruncated word-piece ids, their vocabulary strings and the 77-token layout exactly; plus
 * invalid UTF-8, NULL arguments and a few normalisation edges.
 * Usage: test_bert_tokenizer DATA_DIR */
#include "core/bert_tokenizer.h"
#include "core/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_failures = 0;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            g_failures++;                                                                          \
        }                                                                                          \
    } while (0)

static bool int_array(const json_value *v, int32_t **out, size_t *n) {
    *out = NULL;
    *n = 0;
    if (!v || v->type != JSON_ARRAY) return false;
    int32_t *a = malloc((v->count ? v->count : 1) * sizeof(int32_t));
    if (!a) return false;
    for (size_t i = 0; i < v->count; i++) {
        int64_t x;
        if (!json_as_int64(&v->items[i], &x) || x < INT32_MIN || x > INT32_MAX) {
            free(a);
            return false;
        }
        a[i] = (int32_t)x;
    }
    *out = a;
    *n = v->count;
    return true;
}

static void print_ids(const char *what, const int32_t *a, size_t n) {
    fprintf(stderr, "    %s (%zu):", what, n);
    for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", a[i]);
    fprintf(stderr, "\n");
}

static bool same_ids(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof(int32_t)) == 0);
}

static void check_goldens(const ldm_bert_tokenizer *tok, const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/bert_tokenizer.json", dir);
    char *text = NULL;
    size_t size = 0;
    ldm_status s = ldm_read_file(path, &text, &size);
    CHECK(s == LDM_OK, "read %s: %s", path, ldm_last_error());
    if (s) return;
    json_value *root = NULL;
    s = json_parse(text, size, &root);
    free(text);
    CHECK(s == LDM_OK, "parse %s: %s", path, ldm_last_error());
    if (s) return;
    const json_value *cases = json_get(root, "cases");
    CHECK(cases && cases->type == JSON_ARRAY && cases->count > 0, "no cases");
    size_t passed = 0, total = cases && cases->type == JSON_ARRAY ? cases->count : 0;
    for (size_t c = 0; c < total; c++) {
        const json_value *cs = &cases->items[c];
        const json_value *pv = json_get(cs, "prompt"), *tv = json_get(cs, "wordpiece_tokens");
        int32_t *wp = NULL, *layout = NULL;
        size_t nwp = 0, nl = 0;
        bool ok = pv && pv->type == JSON_STRING && tv && tv->type == JSON_ARRAY &&
                  int_array(json_get(cs, "wordpiece_ids"), &wp, &nwp) &&
                  int_array(json_get(cs, "input_ids"), &layout, &nl) && nl == LDM_BERT_CONTEXT_LENGTH &&
                  tv->count == nwp;
        CHECK(ok, "case %zu is malformed", c);
        if (!ok) {
            free(wp), free(layout);
            continue;
        }
        bool good = true;
        int32_t *ids = NULL;
        size_t n = 0;
        s = ldm_bert_tokenize(tok, pv->string, &ids, &n);
        if (s || !same_ids(ids, n, wp, nwp)) {
            fprintf(stderr, "  case %zu \"%s\": word-piece ids differ (%s)\n", c, pv->string, s ? ldm_last_error() : "");
            print_ids("want", wp, nwp);
            if (!s) print_ids("got ", ids, n);
            good = false;
        }
        /* The ids name the golden's strings (the vocabulary is the reference's). */
        for (size_t i = 0; good && i < nwp; i++) {
            size_t len = 0;
            const char *t = ldm_bert_token(tok, wp[i], &len);
            const char *want = tv->items[i].type == JSON_STRING ? tv->items[i].string : "";
            if (!t || len != strlen(want) || memcmp(t, want, len) != 0) {
                fprintf(stderr, "  case %zu: id %d is not '%s' in the vocabulary\n", c, wp[i], want);
                good = false;
            }
        }
        free(ids);
        int32_t got[LDM_BERT_CONTEXT_LENGTH];
        if (ldm_bert_encode(tok, pv->string, got) != LDM_OK || !same_ids(got, LDM_BERT_CONTEXT_LENGTH, layout, nl)) {
            fprintf(stderr, "  case %zu \"%s\": 77-token layout differs\n", c, pv->string);
            print_ids("want", layout, nl);
            print_ids("got ", got, LDM_BERT_CONTEXT_LENGTH);
            good = false;
        }
        passed += good;
        free(wp), free(layout);
    }
    json_free(root);
    printf("bert_tokenizer.json: %zu of %zu cases exact\n", passed, total);
    CHECK(passed == total, "%zu cases differ", total - passed);
}

static void expect(const ldm_bert_tokenizer *tok, const char *text, const int32_t *want, size_t nwant) {
    int32_t *ids = NULL;
    size_t n = 0;
    ldm_status s = ldm_bert_tokenize(tok, text, &ids, &n);
    CHECK(s == LDM_OK && same_ids(ids, n, want, nwant), "\"%s\" tokenizes differently", text);
    if (s == LDM_OK && !same_ids(ids, n, want, nwant)) {
        print_ids("want", want, nwant);
        print_ids("got ", ids, n);
    }
    free(ids);
}

static void check_edges(const ldm_bert_tokenizer *tok) {
    static const char *const bad[] = {"\xff", "abc\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "a\x80z"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int32_t *ids = (int32_t *)&ids;
        size_t n = 7;
        ldm_status s = ldm_bert_tokenize(tok, bad[i], &ids, &n);
        CHECK(s == LDM_ERR_INVALID_ARG && ids == NULL && n == 0, "invalid UTF-8 #%zu: status %d", i, s);
        int32_t out[LDM_BERT_CONTEXT_LENGTH];
        CHECK(ldm_bert_encode(tok, bad[i], out) == LDM_ERR_INVALID_ARG, "invalid UTF-8 #%zu via encode", i);
    }
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK(ldm_bert_tokenize(NULL, "a", &ids, &n) == LDM_ERR_INVALID_ARG, "NULL tokenizer accepted");
    CHECK(ldm_bert_tokenize(tok, NULL, &ids, &n) == LDM_ERR_INVALID_ARG, "NULL text accepted");
    /* Controls and zero-width format characters vanish; NBSP and U+2028 are whitespace. */
    expect(tok, "ca\x01t", (const int32_t[]){4937}, 1);
    expect(tok, "ca\xe2\x80\x8bt", (const int32_t[]){4937}, 1);
    expect(tok, "cat\xc2\xa0" "cat\xe2\x80\xa8" "cat", (const int32_t[]){4937, 4937, 4937}, 3);
    /* Accents go (NFD + drop Mn) before lower-casing: "CAFÉ" -> "cafe", "NAÏVE" -> "naive". */
    expect(tok, "CAF\xc3\x89 NA\xc3\x8fVE", (const int32_t[]){7668, 15743}, 2);
    /* A special-token string next to letters still splits off; lower case is not special. */
    expect(tok, "a[MASK]b", (const int32_t[]){1037, LDM_BERT_MASK, 1038}, 3);
    /* A word of 101 characters is one [UNK]; a lone unknown symbol too. */
    char longw[102];
    memset(longw, 'a', 101);
    longw[101] = 0;
    expect(tok, longw, (const int32_t[]){LDM_BERT_UNK}, 1);
    int32_t out[LDM_BERT_CONTEXT_LENGTH];
    CHECK(ldm_bert_encode(tok, "", out) == LDM_OK && out[0] == LDM_BERT_CLS && out[1] == LDM_BERT_SEP && out[2] == 0 &&
              out[76] == 0,
          "empty prompt layout");
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_bert_tokenizer DATA_DIR\n");
        return 2;
    }
    ldm_bert_tokenizer *tok = NULL;
    ldm_status s = ldm_bert_tokenizer_create(&tok);
    CHECK(s == LDM_OK, "create: %s", ldm_last_error());
    if (s) return 1;
    check_goldens(tok, argv[1]);
    check_edges(tok);
    ldm_bert_tokenizer_destroy(tok);
    if (g_failures) {
        fprintf(stderr, "%d failure(s)\n", g_failures);
        return 1;
    }
    printf("all BERT tokenizer checks passed\n");
    return 0;
}
