/* The BERT WordPiece tokenizer (bert-base-uncased) of LDM-KL-8-G's BERTEmbedder.
 *
 * Matches what CompVis/latent-diffusion runs, transformers' BertTokenizerFast, i.e. the HF
 * tokenizers pipeline: special-token strings ([PAD] [UNK] [CLS] [SEP] [MASK]) matched
 * case-sensitively in the raw text; BertNormalizer (drop NUL, U+FFFD and Cc/Cf/Cn/Co except
 * tab/LF/CR, whitespace -> ' ', spaces around CJK ideographs, NFD and drop Mn, per-character
 * lower case); BertPreTokenizer (split on whitespace, each punctuation character a word);
 * greedy longest-match WordPiece with "##" continuations, [UNK] for a word that does not match
 * or has more than 100 characters. The vocabulary (data/vocab/bert-base-uncased-vocab.txt) is
 * compiled into the library.
 *
 * A tokenizer is immutable after creation: any number of threads may use it. */
#ifndef LDM_CORE_BERT_TOKENIZER_H
#define LDM_CORE_BERT_TOKENIZER_H

#include "common.h"

#define LDM_BERT_CONTEXT_LENGTH 77
#define LDM_BERT_VOCAB_SIZE 30522
#define LDM_BERT_PAD 0
#define LDM_BERT_UNK 100
#define LDM_BERT_CLS 101
#define LDM_BERT_SEP 102
#define LDM_BERT_MASK 103

typedef struct ldm_bert_tokenizer ldm_bert_tokenizer;

/* Indexes the built-in vocabulary (a few ms). */
ldm_status ldm_bert_tokenizer_create(ldm_bert_tokenizer **out);
void ldm_bert_tokenizer_destroy(ldm_bert_tokenizer *tok); /* accepts NULL */

/* Word-piece ids without [CLS]/[SEP], untruncated. *ids is malloc'd (caller frees; never NULL on
 * success, even when *n == 0). Invalid UTF-8 gives LDM_ERR_INVALID_ARG. */
ldm_status ldm_bert_tokenize(const ldm_bert_tokenizer *tok, const char *text, int32_t **ids, size_t *n);

/* The 77-token layout of BertTokenizerFast(truncation=True, max_length=77, padding="max_length"):
 * [101] + ids[:75] + [102], padded with 0. */
ldm_status ldm_bert_encode(const ldm_bert_tokenizer *tok, const char *text, int32_t out[LDM_BERT_CONTEXT_LENGTH]);

/* The vocabulary string of an id (for tests), or NULL when out of range. Not NUL-terminated:
 * *len receives its byte length. */
const char *ldm_bert_token(const ldm_bert_tokenizer *tok, int32_t id, size_t *len);

#endif
