/*
 * PNG input/output with libpng (see png_io.h).
 *
 * libpng reports errors by longjmp()ing out of whatever call failed. To keep that safe, every
 * function here that calls setjmp() keeps no state of its own: all it touches lives in a struct
 * owned by its caller (reached through a pointer that is never modified), so nothing is left
 * "indeterminate" after the jump (C11 7.13.2.1p3), and the caller releases everything on both
 * paths in one place.
 */
#include "png_io.h"

#include <errno.h>
#include <png.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MSG_SIZE 256

static void set_err(char *err, size_t err_size, const char *fmt, ...)
{
    if (err == NULL || err_size == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
}

/* Shared by the reader and the writer: where libpng's error message is kept for the caller. */
struct png_session {
    FILE *fp;
    char msg[MSG_SIZE];
};

/* libpng's default handler prints to stderr and aborts on a missing jmpbuf; ours keeps the
 * message for the caller's one-line error and jumps back to the guarded function. */
static void on_png_error(png_structp png, png_const_charp message)
{
    struct png_session *s = png_get_error_ptr(png);
    if (message != s->msg) { /* callers may format into s->msg before png_error() */
        snprintf(s->msg, sizeof s->msg, "%s", message);
    }
    png_longjmp(png, 1);
}

/* Warnings (a slightly wrong sRGB profile, a bad ancillary CRC) do not stop decoding, and a
 * command-line tool should not print libpng's chatter about files it read correctly. */
static void on_png_warning(png_structp png, png_const_charp message)
{
    (void)png;
    (void)message;
}

/* ---------------------------------------------------------------------------------------------
 * Reading
 * ------------------------------------------------------------------------------------------- */

struct png_reader {
    struct png_session s; /* first: png_get_error_ptr() returns a pointer to it */
    png_structp png;
    png_infop info;
    png_bytep *rows;
    uint8_t *pixels;
    int width;
    int height;
    int channels; /* of the decoded pixels: 1 or 3 */
    int want_gray;
};

/* The default reader says only "Read Error"; a short read is almost always a truncated file,
 * and saying so is the useful message. */
static void read_data(png_structp png, png_bytep data, size_t length)
{
    struct png_reader *r = png_get_io_ptr(png);
    if (fread(data, 1, length, r->s.fp) == length) {
        return;
    }
    if (ferror(r->s.fp)) {
        snprintf(r->s.msg, sizeof r->s.msg, "read error: %s", strerror(errno));
        png_error(png, r->s.msg);
    }
    png_error(png, "file is truncated");
}

/* Called right after the header is parsed, before anything image-sized is allocated. */
static void check_dimensions(struct png_reader *r, png_uint_32 width, png_uint_32 height)
{
    if (width > PNG_IO_MAX_SIDE || height > PNG_IO_MAX_SIDE ||
        (uint64_t)width * height > PNG_IO_MAX_PIXELS) {
        snprintf(r->s.msg, sizeof r->s.msg,
                 "image is %lux%lu pixels, larger than the supported %dx%d",
                 (unsigned long)width, (unsigned long)height, PNG_IO_MAX_SIDE, PNG_IO_MAX_SIDE);
        png_error(r->png, r->s.msg);
    }
}

/* Asks libpng to turn every PNG flavour into 8-bit gray or 8-bit RGB without alpha. Colour
 * sources read for a mask come out as RGB and are reduced afterwards (reduce_to_gray), because
 * libpng's own rgb_to_gray uses different weights than the tools masks usually come from. */
static void set_transforms(struct png_reader *r, int color_type)
{
    int source_is_gray = !(color_type & PNG_COLOR_MASK_COLOR);

    png_set_expand(r->png); /* palette -> RGB, 1/2/4-bit gray -> 8-bit, tRNS -> alpha */
#ifdef PNG_READ_SCALE_16_TO_8_SUPPORTED
    png_set_scale_16(r->png); /* rounds, unlike strip_16 which truncates */
#else
    png_set_strip_16(r->png);
#endif
    png_set_strip_alpha(r->png); /* a no-op when there is none */
    if (source_is_gray && !r->want_gray) {
        png_set_gray_to_rgb(r->png);
    }
    png_set_interlace_handling(r->png); /* so png_read_image() returns whole rows */
    r->channels = (source_is_gray && r->want_gray) ? 1 : 3;
}

/* Everything that may longjmp. Returns 0 or -1 with r->s.msg set. */
static int decode(struct png_reader *r)
{
    if (setjmp(png_jmpbuf(r->png))) {
        return -1;
    }
    png_set_sig_bytes(r->png, 8); /* the caller already checked the signature */
    png_read_info(r->png, r->info);

    png_uint_32 width = png_get_image_width(r->png, r->info);
    png_uint_32 height = png_get_image_height(r->png, r->info);
    check_dimensions(r, width, height);
    set_transforms(r, png_get_color_type(r->png, r->info));
    png_read_update_info(r->png, r->info);

    /* Trust but verify: a transform this code did not anticipate must not overflow the rows. */
    size_t row_bytes = (size_t)width * (size_t)r->channels;
    if (png_get_bit_depth(r->png, r->info) != 8 || png_get_channels(r->png, r->info) != r->channels ||
        png_get_rowbytes(r->png, r->info) != row_bytes) {
        png_error(r->png, "unexpected pixel layout after conversion");
    }

    r->pixels = malloc(row_bytes * height);
    r->rows = malloc(sizeof *r->rows * height);
    if (r->pixels == NULL || r->rows == NULL) {
        png_error(r->png, "out of memory");
    }
    for (png_uint_32 y = 0; y < height; y++) {
        r->rows[y] = r->pixels + (size_t)y * row_bytes;
    }
    png_read_image(r->png, r->rows);
    png_read_end(r->png, NULL); /* catches a file cut after the last IDAT byte */
    r->width = (int)width;
    r->height = (int)height;
    return 0;
}

/* Opens the file and checks the signature, so "not a PNG" is told apart from "broken PNG". */
static int open_png(struct png_reader *r, const char *path, char *err, size_t err_size)
{
    r->s.fp = fopen(path, "rb");
    if (r->s.fp == NULL) {
        set_err(err, err_size, "cannot open '%s': %s", path, strerror(errno));
        return -1;
    }
    png_byte sig[8];
    if (fread(sig, 1, sizeof sig, r->s.fp) != sizeof sig || png_sig_cmp(sig, 0, sizeof sig) != 0) {
        set_err(err, err_size, "'%s' is not a PNG file", path);
        return -1;
    }
    return 0;
}

/* PIL's convert("L"): L = (19595 R + 38470 G + 7471 B + 2^15) >> 16 (ITU-R 601-2 luma).
 * In place: pixel i is read from 3i before being written to i. */
static void reduce_to_gray(uint8_t *pixels, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        const uint8_t *p = pixels + 3 * i;
        pixels[i] = (uint8_t)((19595u * p[0] + 38470u * p[1] + 7471u * p[2] + 0x8000u) >> 16);
    }
}

static int read_png(const char *path, int want_gray, png_io_image *out, char *err, size_t err_size)
{
    struct png_reader r;
    memset(&r, 0, sizeof r);
    memset(out, 0, sizeof *out);
    r.want_gray = want_gray;

    int rc = open_png(&r, path, err, err_size);
    if (rc == 0) {
        r.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &r.s, on_png_error, on_png_warning);
        r.info = r.png ? png_create_info_struct(r.png) : NULL;
        if (r.info == NULL) {
            set_err(err, err_size, "cannot read '%s': out of memory", path);
            rc = -1;
        }
    }
    if (rc == 0) {
        png_set_read_fn(r.png, &r, read_data);
        rc = decode(&r);
        if (rc != 0) {
            set_err(err, err_size, "cannot read '%s': %s", path, r.s.msg);
        }
    }

    /* One cleanup for every path; png_destroy_read_struct accepts NULLs. */
    png_destroy_read_struct(&r.png, &r.info, NULL);
    if (r.s.fp != NULL) {
        fclose(r.s.fp);
    }
    free(r.rows);
    if (rc != 0) {
        free(r.pixels);
        return -1;
    }

    if (want_gray && r.channels == 3) {
        reduce_to_gray(r.pixels, (size_t)r.width * (size_t)r.height);
        r.channels = 1;
    }
    out->width = r.width;
    out->height = r.height;
    out->channels = r.channels;
    out->data = r.pixels;
    return 0;
}

int png_io_read_rgb(const char *path, png_io_image *out, char *err, size_t err_size)
{
    return read_png(path, 0, out, err, err_size);
}

int png_io_read_gray(const char *path, png_io_image *out, char *err, size_t err_size)
{
    return read_png(path, 1, out, err, err_size);
}

void png_io_image_free(png_io_image *image)
{
    if (image != NULL) {
        free(image->data);
        memset(image, 0, sizeof *image);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Writing
 * ------------------------------------------------------------------------------------------- */

struct png_writer {
    struct png_session s; /* first: png_get_error_ptr() returns a pointer to it */
    png_structp png;
    png_infop info;
    png_bytep *rows;
    png_textp text;
    int is_regular; /* only a regular file is removed after a failure (never /dev/full...) */
};

/* fwrite() failures (a full disk) must fail the write, not give a silently short file. */
static void write_data(png_structp png, png_bytep data, size_t length)
{
    struct png_writer *w = png_get_io_ptr(png);
    if (fwrite(data, 1, length, w->s.fp) != length) {
        snprintf(w->s.msg, sizeof w->s.msg, "write error: %s", strerror(errno));
        png_error(png, w->s.msg);
    }
}

static void flush_data(png_structp png)
{
    struct png_writer *w = png_get_io_ptr(png);
    fflush(w->s.fp);
}

static int is_ascii(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s >= 0x80) {
            return 0;
        }
    }
    return 1;
}

/* tEXt is Latin-1 only; a UTF-8 prompt with non-ASCII characters goes in an iTXt chunk, which
 * is what PIL (and so AUTOMATIC1111) does and what their readers look for. */
static void fill_text(png_textp text, const png_io_text *src)
{
    memset(text, 0, sizeof *text);
    text->key = (png_charp)src->key;
    text->text = (png_charp)src->value;
    if (is_ascii(src->value)) {
        text->compression = PNG_TEXT_COMPRESSION_NONE;
        text->text_length = strlen(src->value);
    } else {
        text->compression = PNG_ITXT_COMPRESSION_NONE;
        text->itxt_length = strlen(src->value);
        text->lang = (png_charp)"";
        text->lang_key = (png_charp)"";
    }
}

/* Everything that may longjmp. Returns 0 or -1 with w->s.msg set. */
static int encode(struct png_writer *w, const uint8_t *rgb, int width, int height, size_t stride,
                  const png_io_text *texts, int n_texts)
{
    if (setjmp(png_jmpbuf(w->png))) {
        return -1;
    }
    png_set_IHDR(w->png, w->info, (png_uint_32)width, (png_uint_32)height, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (n_texts > 0) {
        w->text = calloc((size_t)n_texts, sizeof *w->text);
        if (w->text == NULL) {
            png_error(w->png, "out of memory");
        }
        for (int i = 0; i < n_texts; i++) {
            fill_text(&w->text[i], &texts[i]);
        }
        png_set_text(w->png, w->info, w->text, n_texts); /* before IDAT, so readers find it early */
    }
    png_write_info(w->png, w->info);

    w->rows = malloc(sizeof *w->rows * (size_t)height);
    if (w->rows == NULL) {
        png_error(w->png, "out of memory");
    }
    for (int y = 0; y < height; y++) {
        w->rows[y] = (png_bytep)(rgb + (size_t)y * stride); /* libpng does not write through it */
    }
    png_write_image(w->png, w->rows);
    png_write_end(w->png, NULL);
    return 0;
}

static int check_write_args(const uint8_t *rgb, int width, int height, size_t stride,
                            const png_io_text *texts, int n_texts, char *err, size_t err_size)
{
    if (rgb == NULL || width <= 0 || height <= 0 || width > PNG_IO_MAX_SIDE ||
        height > PNG_IO_MAX_SIDE || stride < (size_t)width * 3 || n_texts < 0 ||
        (n_texts > 0 && texts == NULL)) {
        set_err(err, err_size, "invalid image for PNG output (%dx%d, stride %zu)", width, height,
                stride);
        return -1;
    }
    for (int i = 0; i < n_texts; i++) {
        size_t key_len = texts[i].key ? strlen(texts[i].key) : 0;
        if (key_len == 0 || key_len > 79 || texts[i].value == NULL) {
            set_err(err, err_size, "invalid PNG text chunk keyword '%s'",
                    texts[i].key ? texts[i].key : "(null)");
            return -1;
        }
    }
    return 0;
}

int png_io_write_rgb(const char *path, const uint8_t *rgb, int width, int height, size_t stride,
                     const png_io_text *texts, int n_texts, char *err, size_t err_size)
{
    if (check_write_args(rgb, width, height, stride, texts, n_texts, err, err_size) != 0) {
        return -1;
    }
    struct png_writer w;
    memset(&w, 0, sizeof w);
    w.s.fp = fopen(path, "wb");
    if (w.s.fp == NULL) {
        set_err(err, err_size, "cannot write '%s': %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    w.is_regular = fstat(fileno(w.s.fp), &st) == 0 && S_ISREG(st.st_mode);

    int rc = -1;
    w.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &w.s, on_png_error, on_png_warning);
    w.info = w.png ? png_create_info_struct(w.png) : NULL;
    if (w.info == NULL) {
        snprintf(w.s.msg, sizeof w.s.msg, "out of memory");
    } else {
        png_set_write_fn(w.png, &w, write_data, flush_data);
        rc = encode(&w, rgb, width, height, stride, texts, n_texts);
    }
    png_destroy_write_struct(&w.png, &w.info);
    free(w.rows);
    free(w.text);

    /* fclose() flushes the last buffer: its failure is a failed write too. */
    if (fclose(w.s.fp) != 0 && rc == 0) {
        snprintf(w.s.msg, sizeof w.s.msg, "%s", strerror(errno));
        rc = -1;
    }
    if (rc != 0) {
        set_err(err, err_size, "cannot write '%s': %s", path, w.s.msg);
        if (w.is_regular) {
            remove(path);
        }
        return -1;
    }
    return 0;
}
