/* Does a picture show "a {colour} {shape} on a {colour} background"? The demo model's check
 * (models/README.md): colour and shape statistics only, no learned model. The same rules as
 * tools/train/shape_eval.py, which the training report uses:
 *
 * 1. background = the per-channel median of the 2-pixel border, named by the nearest palette colour;
 * 2. shape pixels = the largest 4-connected region of the pixels further than 40 from the
 *    background colour (RGB distance; the closest palette pair, yellow and orange, is 81 apart), so
 *    that stray speckles do not count; it must cover 3-70 % of the picture; the shape colour is
 *    its per-channel median, named by the nearest palette colour;
 * 3. shape: over the rows of the shape pixels' bounding box, the mean width of the top quarter
 *    over that of the bottom quarter < 0.55 -> triangle; else bounding-box fill > 0.89 -> square;
 *    else circle. */
#ifndef LDM_TOOLS_SHAPE_EVAL_H
#define LDM_TOOLS_SHAPE_EVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct shape_desc {
    const char *background; /* palette name */
    const char *colour;     /* NULL when no shape was found */
    const char *shape;      /* "circle", "square", "triangle"; NULL when no shape was found */
} shape_desc;

/* The palette: the ten colours the demo model was trained on (tools/train/shapes_data.py). */
extern const char *const shape_eval_colours[10];
extern const char *const shape_eval_shapes[3];

/* rgb: height rows of width*3 bytes, `stride` bytes apart. Returns false on out of memory. */
bool shape_eval_describe(const uint8_t *rgb, int width, int height, size_t stride, shape_desc *out);
/* Parses "a {colour} {shape} on a {colour} background" (the demo captions). */
bool shape_eval_parse_caption(const char *caption, const char **colour, const char **shape, const char **background);
/* True when the picture's description equals the caption's. */
bool shape_eval_matches(const shape_desc *d, const char *colour, const char *shape, const char *background);

#endif
