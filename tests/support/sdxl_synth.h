/* Synthetic SDXL-layout checkpoints for tests: every tensor of the SGM
 * single-file layout (UNet, CLIP-L, OpenCLIP-bigG, VAE) with the shapes a
 * given sdxl_hparams implies and zero F16 data, plus the __metadata__
 * overrides for values shapes cannot carry. Tests then remove or reshape
 * tensors to produce broken variants. */
#ifndef SDXL_TEST_SDXL_SYNTH_H
#define SDXL_TEST_SDXL_SYNTH_H

#include "sd/checkpoint.h"
#include "st_writer.h"

/* A tiny but structurally complete SDXL (3 UNet levels, the first without
 * attention, depths 0/1/2, mid depth 2; 3 VAE levels; 2-layer encoders). */
void synth_tiny_hparams(sdxl_hparams *hp);
/* Adds all tensors and metadata for hp to w. */
void synth_sdxl(stw *w, const sdxl_hparams *hp);

#endif
