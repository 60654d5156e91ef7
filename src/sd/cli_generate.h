/* `sdxl-worker generate`: the developer command line for the txt2img engine
 * (like stable-diffusion.cpp's sd -p ...): one job from flags, PNGs with
 * A1111's `parameters` text out. Owner: developer tooling. */
#ifndef SDXL_SD_CLI_GENERATE_H
#define SDXL_SD_CLI_GENERATE_H

/* argv[0] is "generate". Returns the process exit code: 0 done, 1 the job
 * or an output failed, 2 bad usage. */
int sd_generate_main(int argc, char **argv);

#endif
