/*
 * Tests for examples/png_io.c: RGB round trip with text chunks, conversion of every PNG flavour
 * to 8-bit RGB / gray, and clean failures on missing, foreign, truncated, corrupt and oversized
 * files. Usage: test_png SCRATCH_DIR (files are created there and removed).
 *
 * Reference PNGs in unusual formats are written here with libpng directly, so the reader is
 * checked against an independent writer, not only against png_io's own.
 */
#include <png.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "png_io.h"

static int g_failures;
static char g_dir[1024];

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            g_failures++;                                                                          \
        }                                                                                          \
    } while (0)

/* A path in the scratch directory. A few rotating buffers, so that a test can hold two. */
static const char *scratch(const char *name)
{
    static char paths[4][2048];
    static int next;
    char *path = paths[next++ % 4];
    snprintf(path, sizeof paths[0], "%s/%s", g_dir, name);
    return path;
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static unsigned char *slurp(const char *path, long *size)
{
    *size = file_size(path);
    FILE *f = fopen(path, "rb");
    unsigned char *buf = *size > 0 ? malloc((size_t)*size) : NULL;
    if (f == NULL || buf == NULL || fread(buf, 1, (size_t)*size, f) != (size_t)*size) {
        free(buf);
        buf = NULL;
    }
    if (f != NULL) {
        fclose(f);
    }
    return buf;
}

static void spit(const char *path, const unsigned char *data, long size)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, (size_t)size, f) != (size_t)size) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
    fclose(f);
}

/* ---------------------------------------------------------------------------------------------
 * An independent PNG writer for the reader tests (plain libpng, errors abort the test).
 * ------------------------------------------------------------------------------------------- */
typedef struct raw_png {
    int width, height, color_type, bit_depth, interlace;
    const uint8_t *pixels; /* packed rows as libpng expects them for this format */
    size_t row_bytes;
    const png_color *palette;
    int n_palette;
    const png_byte *trns;
    int n_trns;
} raw_png;

static void write_raw(const char *path, const raw_png *r)
{
    FILE *f = fopen(path, "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    png_bytep *rows = malloc(sizeof *rows * (size_t)r->height);
    if (f == NULL || info == NULL || rows == NULL || setjmp(png_jmpbuf(png))) {
        fprintf(stderr, "reference writer failed for %s\n", path);
        exit(2);
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)r->width, (png_uint_32)r->height, r->bit_depth,
                 r->color_type, r->interlace, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (r->palette != NULL) {
        png_set_PLTE(png, info, r->palette, r->n_palette);
    }
    if (r->trns != NULL) {
        png_set_tRNS(png, info, r->trns, r->n_trns, NULL);
    }
    png_write_info(png, info);
    for (int y = 0; y < r->height; y++) {
        rows[y] = (png_bytep)(r->pixels + (size_t)y * r->row_bytes);
    }
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    fclose(f);
}

/* ---------------------------------------------------------------------------------------------
 * Round trip through png_io's own writer and reader.
 * ------------------------------------------------------------------------------------------- */

static uint8_t pattern(int x, int y, int c)
{
    return (uint8_t)(x * 37 + y * 91 + c * 53 + (x ^ y) * 7);
}

/* Reads the text chunks back with libpng to check keys, values and chunk types. */
static void check_text_chunks(const char *path, const char *params, const char *software)
{
    FILE *f = fopen(path, "rb");
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (f == NULL || info == NULL || setjmp(png_jmpbuf(png))) {
        CHECK(0, "cannot read text chunks of %s", path);
        exit(2);
    }
    png_init_io(png, f);
    png_read_info(png, info);
    png_textp text = NULL;
    int n = png_get_text(png, info, &text, NULL);
    int found = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(text[i].key, "parameters") == 0) {
            found |= 1;
            CHECK(strcmp(text[i].text, params) == 0, "parameters = '%s'", text[i].text);
            CHECK(text[i].compression == PNG_ITXT_COMPRESSION_NONE, "non-ASCII goes to iTXt");
        } else if (strcmp(text[i].key, "Software") == 0) {
            found |= 2;
            CHECK(strcmp(text[i].text, software) == 0, "Software = '%s'", text[i].text);
            CHECK(text[i].compression == PNG_TEXT_COMPRESSION_NONE, "ASCII goes to tEXt");
        }
    }
    CHECK(found == 3, "text chunks found: mask %d of %d chunks", found, n);
    CHECK(png_get_bit_depth(png, info) == 8 && png_get_color_type(png, info) == PNG_COLOR_TYPE_RGB,
          "written as 8-bit RGB");
    png_destroy_read_struct(&png, &info, NULL);
    fclose(f);
}

static void test_round_trip(void)
{
    const int w = 13, h = 7;
    const size_t stride = (size_t)w * 3 + 5; /* padded rows, as the library may return */
    uint8_t *rgb = calloc(stride * h, 1);
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            for (int c = 0; c < 3; c++) {
                rgb[(size_t)y * stride + (size_t)x * 3 + c] = pattern(x, y, c);
            }
        }
    }
    const char *params = "a caf\xc3\xa9 at dusk\nNegative prompt: blurry\nSteps: 20, Seed: 42";
    png_io_text texts[] = {{"parameters", params}, {"Software", "libldm test"}};
    char err[512] = "";
    const char *path = scratch("roundtrip.png");
    CHECK(png_io_write_rgb(path, rgb, w, h, stride, texts, 2, err, sizeof err) == 0, "%s", err);
    check_text_chunks(path, params, "libldm test");

    png_io_image img;
    CHECK(png_io_read_rgb(path, &img, err, sizeof err) == 0, "%s", err);
    CHECK(img.width == w && img.height == h && img.channels == 3, "%dx%dx%d", img.width, img.height,
          img.channels);
    int mismatches = 0;
    for (int y = 0; y < h && img.data; y++) {
        mismatches += memcmp(img.data + (size_t)y * w * 3, rgb + (size_t)y * stride, (size_t)w * 3) != 0;
    }
    CHECK(mismatches == 0, "%d rows differ", mismatches);
    png_io_image_free(&img);

    /* The mask reader reduces colour with PIL's convert("L") weights. */
    CHECK(png_io_read_gray(path, &img, err, sizeof err) == 0, "%s", err);
    CHECK(img.channels == 1 && img.width == w, "gray %dx%d", img.width, img.channels);
    for (int y = 0; y < h && img.data; y++) {
        for (int x = 0; x < w; x++) {
            const uint8_t *p = rgb + (size_t)y * stride + (size_t)x * 3;
            unsigned want = (19595u * p[0] + 38470u * p[1] + 7471u * p[2] + 0x8000u) >> 16;
            CHECK(img.data[y * w + x] == want, "gray at %d,%d: %d != %u", x, y, img.data[y * w + x], want);
        }
    }
    png_io_image_free(&img);
    free(rgb);
    remove(path);
}

/* ---------------------------------------------------------------------------------------------
 * Conversions from other PNG flavours.
 * ------------------------------------------------------------------------------------------- */

/* Reads `path` as RGB and compares with `want` (w*h*3), then removes the file. */
static void expect_rgb(const char *what, const char *path, int w, int h, const uint8_t *want)
{
    png_io_image img;
    char err[512] = "";
    int rc = png_io_read_rgb(path, &img, err, sizeof err);
    CHECK(rc == 0, "%s: %s", what, err);
    if (rc == 0) {
        CHECK(img.width == w && img.height == h && img.channels == 3, "%s: %dx%dx%d", what,
              img.width, img.height, img.channels);
        CHECK(memcmp(img.data, want, (size_t)w * h * 3) == 0, "%s: pixels differ", what);
    }
    png_io_image_free(&img);
}

static void expect_gray(const char *what, const char *path, int w, int h, const uint8_t *want)
{
    png_io_image img;
    char err[512] = "";
    int rc = png_io_read_gray(path, &img, err, sizeof err);
    CHECK(rc == 0, "%s: %s", what, err);
    if (rc == 0) {
        CHECK(img.width == w && img.height == h && img.channels == 1, "%s: %dx%dx%d", what,
              img.width, img.height, img.channels);
        CHECK(memcmp(img.data, want, (size_t)w * h) == 0, "%s: pixels differ", what);
    }
    png_io_image_free(&img);
}

static void test_gray_1bit(void)
{
    /* 10x2, 1 bit per pixel: rows are 2 bytes, MSB first. */
    const uint8_t packed[] = {0xA5, 0x80, 0x0F, 0x40};
    raw_png r = {10, 2, PNG_COLOR_TYPE_GRAY, 1, PNG_INTERLACE_NONE, packed, 2, NULL, 0, NULL, 0};
    const char *path = scratch("gray1.png");
    write_raw(path, &r);
    uint8_t gray[20], rgb[60];
    for (int y = 0; y < 2; y++) {
        for (int x = 0; x < 10; x++) {
            int bit = (packed[y * 2 + x / 8] >> (7 - x % 8)) & 1;
            gray[y * 10 + x] = bit ? 255 : 0;
            memset(rgb + (y * 10 + x) * 3, gray[y * 10 + x], 3);
        }
    }
    expect_rgb("gray 1-bit", path, 10, 2, rgb);
    expect_gray("gray 1-bit as mask", path, 10, 2, gray);
    remove(path);
}

static void test_16bit(void)
{
    /* RGB 16-bit, big-endian samples; 8-bit result is round(v * 255 / 65535). */
    const uint16_t values[] = {0, 0x1234, 0x7FFF, 0x8080, 0xFF7F, 0xFFFF};
    uint8_t px[2 * 6 * 2 * 3]; /* 6x2 pixels, 3 channels, 2 bytes */
    uint8_t want[6 * 2 * 3];
    for (int i = 0; i < 6 * 2 * 3; i++) {
        uint16_t v = values[(i * 5 + i / 3) % 6];
        px[2 * i] = (uint8_t)(v >> 8);
        px[2 * i + 1] = (uint8_t)(v & 0xFF);
        want[i] = (uint8_t)((v * 255u + 32767u) / 65535u);
    }
    raw_png r = {6, 2, PNG_COLOR_TYPE_RGB, 16, PNG_INTERLACE_NONE, px, 6 * 6, NULL, 0, NULL, 0};
    const char *path = scratch("rgb16.png");
    write_raw(path, &r);
    expect_rgb("RGB 16-bit", path, 6, 2, want);
    remove(path);
}

static void test_palette_trns(void)
{
    const png_color pal[3] = {{255, 0, 0}, {0, 128, 255}, {9, 8, 7}};
    const png_byte trns[2] = {0, 128}; /* transparency is dropped, colours kept */
    const uint8_t idx[] = {0, 1, 2, 1, 2, 0, 2, 2};
    raw_png r = {4, 2, PNG_COLOR_TYPE_PALETTE, 8, PNG_INTERLACE_NONE, idx, 4, pal, 3, trns, 2};
    const char *path = scratch("palette.png");
    write_raw(path, &r);
    uint8_t want[8 * 3];
    for (int i = 0; i < 8; i++) {
        want[3 * i] = pal[idx[i]].red;
        want[3 * i + 1] = pal[idx[i]].green;
        want[3 * i + 2] = pal[idx[i]].blue;
    }
    expect_rgb("palette + tRNS", path, 4, 2, want);
    remove(path);
}

static void test_alpha(void)
{
    const uint8_t rgba[] = {10, 20, 30, 0, 40, 50, 60, 128, 70, 80, 90, 255};
    raw_png r = {3, 1, PNG_COLOR_TYPE_RGB_ALPHA, 8, PNG_INTERLACE_NONE, rgba, 12, NULL, 0, NULL, 0};
    const char *path = scratch("rgba.png");
    write_raw(path, &r);
    const uint8_t want[] = {10, 20, 30, 40, 50, 60, 70, 80, 90};
    expect_rgb("RGBA", path, 3, 1, want);
    remove(path);

    const uint8_t ga[] = {5, 0, 200, 255};
    raw_png g = {2, 1, PNG_COLOR_TYPE_GRAY_ALPHA, 8, PNG_INTERLACE_NONE, ga, 4, NULL, 0, NULL, 0};
    path = scratch("graya.png");
    write_raw(path, &g);
    const uint8_t want_rgb[] = {5, 5, 5, 200, 200, 200};
    const uint8_t want_gray[] = {5, 200};
    expect_rgb("gray+alpha", path, 2, 1, want_rgb);
    expect_gray("gray+alpha as mask", path, 2, 1, want_gray);
    remove(path);
}

static void test_interlaced(void)
{
    enum { W = 11, H = 9 };
    uint8_t px[W * H * 3];
    for (int i = 0; i < W * H * 3; i++) {
        px[i] = pattern(i % (W * 3), i / (W * 3), i % 3);
    }
    raw_png r = {W, H, PNG_COLOR_TYPE_RGB, 8, PNG_INTERLACE_ADAM7, px, W * 3, NULL, 0, NULL, 0};
    const char *path = scratch("adam7.png");
    write_raw(path, &r);
    expect_rgb("Adam7 interlaced", path, W, H, px);
    remove(path);
}

/* ---------------------------------------------------------------------------------------------
 * Failures: each must return -1 with a message, zero the output, and leak nothing (worth
 * running under valgrind or -Db_sanitize=address when png_io.c changes).
 * ------------------------------------------------------------------------------------------- */

static void expect_read_error(const char *what, const char *path, const char *needle)
{
    png_io_image img = {1, 1, 1, (uint8_t *)1}; /* garbage that must be cleared */
    char err[512] = "";
    CHECK(png_io_read_rgb(path, &img, err, sizeof err) == -1, "%s: read succeeded", what);
    CHECK(img.data == NULL && img.width == 0, "%s: output not cleared", what);
    CHECK(err[0] != '\0', "%s: empty message", what);
    CHECK(needle == NULL || strstr(err, needle) != NULL, "%s: message '%s' lacks '%s'", what, err,
          needle);
    png_io_image_free(&img);
}

static void test_missing_and_foreign(void)
{
    expect_read_error("missing file", scratch("does-not-exist.png"), "cannot open");
    const char *path = scratch("not-a-png.png");
    spit(path, (const unsigned char *)"GIF89a, honestly", 16);
    expect_read_error("foreign file", path, "not a PNG");
    spit(path, (const unsigned char *)"", 0);
    expect_read_error("empty file", path, "not a PNG");
    remove(path);
}

/* Every possible truncation of a valid file must fail cleanly, wherever libpng is when the
 * data runs out (header, IDAT, after the last IDAT, inside IEND). */
static void test_truncated(void)
{
    enum { W = 40, H = 30 };
    uint8_t px[W * H * 3];
    uint32_t state = 2463534242u; /* xorshift32 noise: incompressible, so IDAT is large */
    for (int i = 0; i < W * H * 3; i++) {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        px[i] = (uint8_t)(state >> 24);
    }
    char err[512];
    const char *full = scratch("full.png");
    CHECK(png_io_write_rgb(full, px, W, H, W * 3, NULL, 0, err, sizeof err) == 0, "%s", err);
    long size = 0;
    unsigned char *bytes = slurp(full, &size);
    CHECK(bytes != NULL && size > 1000, "%s: %ld bytes, expected a multi-KB file", full, size);
    const char *cut = scratch("cut.png");
    int failures_before = g_failures;
    for (long n = 8; bytes != NULL && n < size && g_failures == failures_before; n++) {
        spit(cut, bytes, n);
        char what[64];
        snprintf(what, sizeof what, "truncated to %ld of %ld bytes", n, size);
        expect_read_error(what, cut, "truncated");
    }
    free(bytes);
    remove(cut);
    remove(full);
}

static void test_corrupt(void)
{
    enum { W = 16, H = 16 };
    uint8_t px[W * H * 3];
    memset(px, 77, sizeof px);
    char err[512];
    const char *path = scratch("corrupt.png");
    CHECK(png_io_write_rgb(path, px, W, H, W * 3, NULL, 0, err, sizeof err) == 0, "%s", err);
    long size = 0;
    unsigned char *bytes = slurp(path, &size);
    if (bytes == NULL) {
        CHECK(0, "cannot read back %s", path);
        return;
    }
    /* Flip a byte of the IHDR data (offset 16 is the width): a critical-chunk CRC error. */
    bytes[17] ^= 0x40;
    spit(path, bytes, size);
    expect_read_error("bad IHDR CRC", path, NULL);
    bytes[17] ^= 0x40;
    /* Damage the compressed stream too (the IDAT follows the 33-byte header). */
    for (long i = 45; i < size - 20; i++) {
        bytes[i] ^= 0xFF;
    }
    spit(path, bytes, size);
    expect_read_error("bad IDAT", path, NULL);
    free(bytes);
    remove(path);
}

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* A well-formed header claiming a huge image (with valid CRCs, so libpng accepts it) and no
 * pixel data: it must be refused by size, not by an allocation failure or a read error. */
static void test_absurd_dimensions(uint32_t width, uint32_t height, const char *needle)
{
    unsigned char file[8 + 25 + 12 + 12];
    memcpy(file, "\x89PNG\r\n\x1a\n", 8);
    unsigned char *ihdr = file + 8;
    put32(ihdr, 13);
    memcpy(ihdr + 4, "IHDR", 4);
    put32(ihdr + 8, width);
    put32(ihdr + 12, height);
    memcpy(ihdr + 16, "\x08\x02\x00\x00\x00", 5); /* 8-bit RGB, not interlaced */
    put32(ihdr + 21, (uint32_t)crc32(0, ihdr + 4, 17));
    /* An empty IDAT: libpng's header parsing stops there, as it would on a real image. */
    unsigned char *idat = ihdr + 25;
    put32(idat, 0);
    memcpy(idat + 4, "IDAT", 4);
    put32(idat + 8, (uint32_t)crc32(0, idat + 4, 4));
    unsigned char *iend = idat + 12;
    put32(iend, 0);
    memcpy(iend + 4, "IEND", 4);
    put32(iend + 8, (uint32_t)crc32(0, iend + 4, 4));

    const char *path = scratch("huge.png");
    spit(path, file, sizeof file);
    char what[64];
    snprintf(what, sizeof what, "%ux%u header", (unsigned)width, (unsigned)height);
    expect_read_error(what, path, needle);
    remove(path);
}

static void test_write_errors(void)
{
    uint8_t px[4 * 4 * 3] = {0};
    char err[512] = "";
    CHECK(png_io_write_rgb(scratch("no/such/dir/x.png"), px, 4, 4, 12, NULL, 0, err, sizeof err) == -1,
          "write into a missing directory succeeded");
    CHECK(strstr(err, "cannot write") != NULL, "message: %s", err);
    CHECK(png_io_write_rgb(scratch("bad.png"), px, 4, 4, 5, NULL, 0, err, sizeof err) == -1,
          "stride smaller than a row accepted");
    png_io_text bad_key = {"", "x"};
    CHECK(png_io_write_rgb(scratch("bad.png"), px, 4, 4, 12, &bad_key, 1, err, sizeof err) == -1,
          "empty text keyword accepted");
    CHECK(access(scratch("bad.png"), F_OK) != 0, "a refused write left a file");

    /* A full disk: the error must surface, and the device must of course not be removed. */
    if (access("/dev/full", W_OK) == 0) {
        CHECK(png_io_write_rgb("/dev/full", px, 4, 4, 12, NULL, 0, err, sizeof err) == -1,
              "write to /dev/full succeeded");
        CHECK(strstr(err, "cannot write") != NULL, "message: %s", err);
        CHECK(access("/dev/full", F_OK) == 0, "/dev/full was removed");
    }
}

int main(int argc, char **argv)
{
    snprintf(g_dir, sizeof g_dir, "%s", argc > 1 ? argv[1] : ".");
    test_round_trip();
    test_gray_1bit();
    test_16bit();
    test_palette_trns();
    test_alpha();
    test_interlaced();
    test_missing_and_foreign();
    test_truncated();
    test_corrupt();
    test_absurd_dimensions(20000, 16, "larger than");
    test_absurd_dimensions(16, 16385, "larger than");
    /* libpng's own sanity limits may refuse this one first; any clean error will do. */
    test_absurd_dimensions(0x7FFFFFFFu, 0x7FFFFFFFu, NULL);
    test_write_errors();
    if (g_failures != 0) {
        fprintf(stderr, "%d check(s) failed\n", g_failures);
        return 1;
    }
    printf("png_io: all checks passed\n");
    return 0;
}
