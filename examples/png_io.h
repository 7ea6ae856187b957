/*
 * PNG input/output for the ldm command-line program, on top of libpng.
 *
 * Reading accepts anything libpng decodes (palette, gray, 1..16-bit, alpha, interlaced) and
 * always returns 8-bit pixels, so the callers never see PNG's variety. Writing produces 8-bit
 * RGB with text chunks (the generation parameters). Every function reports failure through a
 * return value and a one-line message in a caller buffer; none of them prints or exits.
 */
#ifndef LDM_PNG_IO_H
#define LDM_PNG_IO_H

#include <stddef.h>
#include <stdint.h>

/* Images larger than this are refused before any pixel memory is allocated: a 100-byte file
 * can claim to be 2^31 x 2^31 pixels, and no model here works at that size anyway. */
#define PNG_IO_MAX_SIDE 16384
#define PNG_IO_MAX_PIXELS ((uint64_t)1 << 28)

/* A decoded image: `channels` is 3 (RGB) or 1 (gray); rows are packed (stride width*channels). */
typedef struct png_io_image {
    int width;
    int height;
    int channels;
    uint8_t *data;
} png_io_image;

/* One text chunk: written as tEXt when the value is plain ASCII, else as iTXt (UTF-8). */
typedef struct png_io_text {
    const char *key; /* 1..79 Latin-1 characters, e.g. "parameters" */
    const char *value;
} png_io_text;

/* Reads any PNG as 8-bit RGB. Alpha is dropped (not composited), like PIL's convert("RGB"), so
 * the colours under transparent pixels are kept. Returns 0, or -1 with `err` filled and `out`
 * zeroed. */
int png_io_read_rgb(const char *path, png_io_image *out, char *err, size_t err_size);

/* Reads any PNG as a single 8-bit gray channel (an inpainting mask). Colour images are reduced
 * with PIL's convert("L") weights, so masks match what other tools derive. */
int png_io_read_gray(const char *path, png_io_image *out, char *err, size_t err_size);

/* Frees the pixels of an image filled by a read function; accepts a zeroed image. */
void png_io_image_free(png_io_image *image);

/* Writes 8-bit RGB rows (`stride` bytes apart) to `path` with the given text chunks. On failure
 * the partial file is removed, so a failed run never leaves a truncated PNG behind. */
int png_io_write_rgb(const char *path, const uint8_t *rgb, int width, int height, size_t stride,
                     const png_io_text *texts, int n_texts, char *err, size_t err_size);

#endif /* LDM_PNG_IO_H */
