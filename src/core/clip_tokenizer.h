/* The CLIP byte-level BPE tokenizer of Stable Diffusion 1.x / 2.x / XL.
 *
 * Matches openai/CLIP clip/simple_tokenizer.py (@ d05afc43) with ftfy 6.1.1's fix_text as the
 * goldens were made: ftfy.fix_text (without its mojibake repair, see clip_tokenizer.c),
 * html.unescape twice, strip, whitespace collapse, lower-case, the pre-split regex, byte
 * encoder, BPE. The vocabulary (bpe_simple_vocab_16e6.txt.gz) is compiled into the library.
 *
 * A tokenizer is immutable after creation: any number of threads may tokenize with it. */
#ifndef LDM_CORE_CLIP_TOKENIZER_H
#define LDM_CORE_CLIP_TOKENIZER_H

#include "common.h"

#define LDM_CLIP_CONTEXT_LENGTH 77
#define LDM_CLIP_VOCAB_SIZE 49408
#define LDM_CLIP_BOS 49406 /* <|startoftext|> */
#define LDM_CLIP_EOS 49407 /* <|endoftext|> */

typedef struct ldm_clip_tokenizer ldm_clip_tokenizer;

/* Inflates the built-in vocabulary and builds the merge tables (a few tens of ms). */
ldm_status ldm_clip_tokenizer_create(ldm_clip_tokenizer **out);
void ldm_clip_tokenizer_destroy(ldm_clip_tokenizer *tok); /* accepts NULL */

/* BPE ids without start/end tokens, untruncated. *ids is malloc'd (caller frees; never NULL
 * on success, even when *n == 0). Invalid UTF-8 gives LDM_ERR_INVALID_ARG. */
ldm_status ldm_clip_tokenize(const ldm_clip_tokenizer *tok, const char *text, int32_t **ids, size_t *n);

/* The 77-token layout: [49406] + bpe[:75] + [49407], then padded with pad_id
 * (SD1 / HF CLIPTokenizer: 49407; SD2 / open_clip.tokenize: 0). */
ldm_status ldm_clip_encode(const ldm_clip_tokenizer *tok, const char *text, int32_t pad_id,
                           int32_t out[LDM_CLIP_CONTEXT_LENGTH]);

#endif
