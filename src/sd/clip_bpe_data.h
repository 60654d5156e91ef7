/* CLIP's BPE merge list, embedded (generated clip_bpe_data.c). Merge r, in
 * rank order, joins token sd_clip_merges[2r] and token sd_clip_merges[2r+1]
 * into token 512 + r; tokens 0..255 are the byte symbols and 256..511 the
 * same with "</w>" (see tokenizer.c for the derived vocabulary). */
#ifndef SDXL_SD_CLIP_BPE_DATA_H
#define SDXL_SD_CLIP_BPE_DATA_H

#include <stdint.h>

#define SD_CLIP_NUM_MERGES 48894

extern const uint16_t sd_clip_merges[2 * SD_CLIP_NUM_MERGES];

#endif
