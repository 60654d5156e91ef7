/* Backend selection (sd/device.h): the environment's choice, the CUDA module
 * found and loaded with dlopen (never linked, so the binary needs no CUDA
 * library to start), its ABI checked, and the CPU as the fall-back of
 * `auto` with the reason kept for the start-up line. */
#include "sd/device.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define CUDA_MODULE_NAME "libsdxl_cuda.so"

static const char *const kind_names[] = {"from-env", "auto", "cpu", "cuda"};
static const char *const precision_names[] = {"from-env", "auto", "fp16", "bf16", "fp32"};

static int parse_name(const char *s, const char *const *names, int n, int *out)
{
    for (int i = 1; s && i < n; i++)
        if (!strcasecmp(s, names[i])) return *out = i, 0;
    return -1;
}

int sd_device_kind_parse(const char *s, sd_device_kind *out)
{
    int v;
    if (parse_name(s, kind_names, 4, &v)) return -1;
    *out = (sd_device_kind)v;
    return 0;
}

int sd_precision_parse(const char *s, sd_precision *out)
{
    int v;
    if (parse_name(s, precision_names, 5, &v)) return -1;
    *out = (sd_precision)v;
    return 0;
}

const char *sd_device_kind_name(sd_device_kind k) { return k <= SD_DEVICE_CUDA ? kind_names[k] : "?"; }
const char *sd_precision_name(sd_precision p) { return p <= SD_PRECISION_FP32 ? precision_names[p] : "?"; }

void sd_cuda_options_for(sd_precision p, sd_dtype weights, sd_cuda_options *o)
{
    if (p == SD_PRECISION_AUTO || p == SD_PRECISION_FROM_ENV)
        p = weights == SD_BF16 ? SD_PRECISION_BF16 : SD_PRECISION_FP16;
    sd_dtype nets = p == SD_PRECISION_BF16 ? SD_BF16 : p == SD_PRECISION_FP32 ? SD_F32 : SD_F16;
    o->stage_dtype[SD_STAGE_TEXT] = nets;
    o->stage_dtype[SD_STAGE_UNET] = nets;
    o->stage_dtype[SD_STAGE_VAE] = p == SD_PRECISION_BF16 ? SD_BF16 : SD_F32;
    o->allow_tf32 = p != SD_PRECISION_FP32;
}

/* The options with FROM_ENV fields filled from SDXL_DEVICE and SDXL_CUDA_PRECISION, and the
 * CPU backend's bf16 switch from SDXL_CPU_PRECISION (fp32, the default, or bf16). */
static int resolve_env(sd_device_options *o, char *err, size_t errlen)
{
    const char *dev = getenv("SDXL_DEVICE"), *prec = getenv("SDXL_CUDA_PRECISION");
    if (o->kind == SD_DEVICE_FROM_ENV) {
        o->kind = SD_DEVICE_AUTO;
        if (dev && *dev && sd_device_kind_parse(dev, &o->kind))
            return snprintf(err, errlen, "SDXL_DEVICE '%s' is not auto, cuda or cpu", dev), -1;
    }
    const char *cpu_prec = getenv("SDXL_CPU_PRECISION");
    if (cpu_prec && *cpu_prec) {
        if (strcasecmp(cpu_prec, "fp32") && strcasecmp(cpu_prec, "bf16"))
            return snprintf(err, errlen, "SDXL_CPU_PRECISION '%s' is not fp32 or bf16", cpu_prec), -1;
        if (!strcasecmp(cpu_prec, "bf16")) o->cpu.bf16 = 1;
    }
    const char *limit = getenv("SDXL_CUDA_MEMORY_LIMIT_MB");
    if (!o->cuda_memory_limit && limit && *limit) {
        char *end;
        unsigned long long mb = strtoull(limit, &end, 10);
        if (*end || mb == 0 || mb > (1ull << 30))
            return snprintf(err, errlen, "SDXL_CUDA_MEMORY_LIMIT_MB '%s' is not a positive number of MiB", limit), -1;
        o->cuda_memory_limit = (size_t)mb << 20;
    }
    if (o->precision == SD_PRECISION_FROM_ENV) {
        o->precision = SD_PRECISION_AUTO;
        if (prec && *prec && sd_precision_parse(prec, &o->precision))
            return snprintf(err, errlen, "SDXL_CUDA_PRECISION '%s' is not auto, fp16, bf16 or fp32", prec), -1;
    }
    return 0;
}

/* Loads the module once per process (CUDA's libraries are never unloaded);
 * NULL with why. Looks at `path`, $SDXL_CUDA_MODULE, the executable's folder,
 * then the loader's search path. */
static void *load_module(const char *path, char *why, size_t whylen)
{
    static void *handle;
    if (handle) return handle;
    char exe_dir_path[PATH_MAX + sizeof CUDA_MODULE_NAME];
    const char *env = getenv("SDXL_CUDA_MODULE");
    if (!path && env && *env) path = env;
    if (!path) {
        ssize_t n = readlink("/proc/self/exe", exe_dir_path, PATH_MAX);
        char *slash = n > 0 ? memrchr(exe_dir_path, '/', (size_t)n) : NULL;
        if (slash) {
            strcpy(slash + 1, CUDA_MODULE_NAME);
            if (access(exe_dir_path, F_OK) == 0) path = exe_dir_path;
        }
    }
    handle = dlopen(path ? path : CUDA_MODULE_NAME, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char *e = dlerror();
        if (!path && e && strstr(e, CUDA_MODULE_NAME ":"))
            snprintf(why, whylen, "this build has no CUDA backend (%s not found)", CUDA_MODULE_NAME);
        else
            snprintf(why, whylen, "the CUDA backend did not load: %s", e ? e : "unknown error");
        return NULL;
    }
    int (*abi)(void) = (int (*)(void))dlsym(handle, "sd_cuda_module_abi");
    if (!abi || abi() != SD_CUDA_MODULE_ABI) {
        snprintf(why, whylen, "the CUDA backend %.300s is of another version (ABI %d, this binary needs %d)",
                 path ? path : CUDA_MODULE_NAME, abi ? abi() : -1, SD_CUDA_MODULE_ABI);
        dlclose(handle);
        handle = NULL;
    }
    return handle;
}

static sd_backend *open_cuda(const sd_device_options *o, sd_dtype weights, char *why, size_t whylen)
{
    void *module = load_module(o->cuda_module, why, whylen);
    if (!module) return NULL;
    sd_backend *(*make)(const sd_cuda_options *, char *, size_t) =
        (sd_backend * (*)(const sd_cuda_options *, char *, size_t)) dlsym(module, "sd_backend_cuda_new");
    if (!make) return snprintf(why, whylen, "the CUDA backend has no constructor"), NULL;
    sd_cuda_options co = {.device = o->cuda_device, .memory_limit = o->cuda_memory_limit};
    sd_cuda_options_for(o->precision, weights, &co);
    return make(&co, why, whylen);
}

sd_backend *sd_backend_open(const sd_device_options *opts, sd_dtype weights, char *line, size_t linelen, char *err,
                            size_t errlen)
{
    sd_device_options o = opts ? *opts : (sd_device_options){0};
    if (resolve_env(&o, err, errlen)) return NULL;
    char why[512] = "";
    if (o.kind != SD_DEVICE_CPU) {
        sd_backend *be = open_cuda(&o, weights, why, sizeof why);
        if (be) {
            snprintf(line, linelen, "cuda: %s", sd_backend_describe(be));
            return be;
        }
        if (o.kind == SD_DEVICE_CUDA) {
            snprintf(err, errlen, "SDXL_DEVICE=cuda but no usable GPU: %s", why);
            return NULL;
        }
    }
    sd_backend *be = sd_backend_cpu_open(&o.cpu, err, errlen);
    if (!be) return NULL;
    if (why[0])
        snprintf(line, linelen, "cpu: %s (GPU not used: %s)", sd_backend_describe(be), why);
    else
        snprintf(line, linelen, "cpu: %s (SDXL_DEVICE=cpu)", sd_backend_describe(be));
    return be;
}
