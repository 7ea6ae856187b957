/* ldm-shape-check IMAGE.png ["a red circle on a blue background"]
 * Says what tools/shape_eval.h sees in a picture of the demo model; with a caption, whether they
 * agree (exit 0 = match, 1 = no match, 2 = usage or unreadable image). */
#include "png_io.h"
#include "shape_eval.h"

#include <stdio.h>

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: ldm-shape-check IMAGE.png [\"a {colour} {shape} on a {colour} background\"]\n");
        return 2;
    }
    const char *colour = NULL, *shape = NULL, *bg = NULL;
    if (argc == 3 && !shape_eval_parse_caption(argv[2], &colour, &shape, &bg)) {
        fprintf(stderr, "ldm-shape-check: the caption must read \"a {colour} {shape} on a {colour} background\"\n");
        return 2;
    }
    char err[256];
    png_io_image img;
    if (png_io_read_rgb(argv[1], &img, err, sizeof err) != 0) {
        fprintf(stderr, "ldm-shape-check: %s\n", err);
        return 2;
    }
    shape_desc d;
    if (!shape_eval_describe(img.data, img.width, img.height, (size_t)img.width * 3, &d)) {
        fprintf(stderr, "ldm-shape-check: out of memory\n");
        png_io_image_free(&img);
        return 2;
    }
    png_io_image_free(&img);
    if (d.shape)
        printf("a %s %s on a %s background\n", d.colour, d.shape, d.background);
    else
        printf("no shape on a %s background\n", d.background);
    if (argc == 2) return 0;
    int ok = shape_eval_matches(&d, colour, shape, bg);
    printf("%s\n", ok ? "match" : "no match");
    return ok ? 0 : 1;
}
