/* libFuzzer harness for the diffusers -> single-file name mapping (checkpoint.c): the input is
 * a component selector byte and newline-separated tensor names; the layout is scanned from all
 * of them, then each is mapped. A mapping must succeed with a NUL-terminated name that fits, or
 * fail with a message; names are never read past their end. */
#include "core/checkpoint.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) __builtin_trap();                                                             \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 65536) return 0;
    ckpt_component c = (ckpt_component)(data[0] % 4);
    char *text = malloc(size);
    if (!text) return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    for (size_t i = 0; i + 1 < size; i++)
        if (text[i] == '\n') text[i] = '\0';
    ckpt_layout l = {0};
    for (const char *s = text; s < text + size - 1; s += strlen(s) + 1) ckpt_layout_scan(&l, c, s);
    REQUIRE(l.layers_per_block >= 0 && l.n_up >= 0 && l.n_vae_up >= 0 && l.n_text_layers >= 0);
    char out[96]; /* small, so long names exercise the overflow path */
    for (const char *s = text; s < text + size - 1; s += strlen(s) + 1) {
        ckpt_name_info info;
        ldm_status st = ckpt_diffusers_name(c, &l, s, out, sizeof out, &info);
        if (st == LDM_OK) {
            REQUIRE(memchr(out, '\0', sizeof out) != NULL);
            REQUIRE(info.drop ? out[0] == '\0' : strlen(out) > strlen("cond_stage_model."));
            REQUIRE(info.qkv >= -1 && info.qkv <= 2 && (info.qkv < 0 || c == CKPT_TEXT_OPENCLIP));
            if (info.qkv >= 0) REQUIRE(atoi(out + strlen("cond_stage_model.model.transformer.resblocks.")) < l.n_text_layers);
        } else {
            REQUIRE(ldm_last_error()[0] != '\0');
            REQUIRE(!info.conv1x1 || c == CKPT_VAE);
        }
    }
    free(text);
    return 0;
}
