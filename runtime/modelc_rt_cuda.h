/* modelc_rt_cuda.h: the CUDA loader of the runtime, copied into outputs
 * built with -t cuda (and linked into modelc itself for --aot).
 *
 * Nothing here links against CUDA: the driver API (libcuda.so.1) and
 * NVRTC (libnvrtc.so.*) are opened with dlopen when first needed, so a
 * program builds and links on a machine without them and reports "no
 * GPU" at run time instead of failing to start. Kernels are compiled by
 * NVRTC for the GPU present (or a given architecture) and the images
 * cached on disk, keyed by the source's hash, the architecture and the
 * NVRTC version; or they come embedded (--aot) and NVRTC is not needed.
 *
 * Every function returns 0 on success and -1 with a message in err. */
#ifndef MODELC_RT_CUDA_H
#define MODELC_RT_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct modelc_rt_cuda modelc_rt_cuda;
typedef uint64_t modelc_rt_cuda_ptr; /* a device address (CUdeviceptr) */

/* ---- NVRTC ---- */

/* NVRTC is libnvrtc.so (or .so.13, .so.12, .so.11.x) on the loader's
 * path, or the file named by $MODELC_NVRTC. */

/* The NVRTC version found (major * 1000 + minor * 10, like CUDA's). */
int modelc_rt_cuda_nvrtc_version(int *version, char *err, size_t errlen);
/* Compiles CUDA C for arch ("sm_80"): *image (malloc'd, a cubin) and
 * *ptx (malloc'd, NUL-terminated, or NULL); *log (malloc'd) holds
 * NVRTC's messages, "" when it had none: warnings included. */
int modelc_rt_cuda_nvrtc_compile(const char *source, const char *name, const char *arch,
                                 void **image, size_t *image_size, char **ptx, char **log,
                                 char *err, size_t errlen);

/* ---- the device ---- */

/* Loads the driver (libcuda.so.1, or the library $MODELC_CUDA_DRIVER
 * names), takes device 0 (or $MODELC_CUDA_DEVICE) and its
 * primary context. Fails with "no GPU: ..." and the reason when the
 * driver or a device is missing. */
int modelc_rt_cuda_open(modelc_rt_cuda **out, char *err, size_t errlen);
void modelc_rt_cuda_close(modelc_rt_cuda *c);
/* The device's compute capability as 80, 90, ... and its name. */
int modelc_rt_cuda_capability(const modelc_rt_cuda *c);
const char *modelc_rt_cuda_device_name(const modelc_rt_cuda *c);

/* The kernels' module. With an embedded cubin for this device's
 * architecture (aot_arch == capability) it is loaded as is; else the
 * embedded PTX (JIT by the driver); else the source is compiled by NVRTC
 * for `arch` ("sm_80"; NULL: this device's), through the on-disk cache. */
int modelc_rt_cuda_load(modelc_rt_cuda *c, const char *source, const char *arch,
                        const void *aot_cubin, size_t aot_size, int aot_arch, const char *aot_ptx,
                        char *err, size_t errlen);
/* A kernel of the loaded module, by name. */
int modelc_rt_cuda_function(modelc_rt_cuda *c, const char *name, void **fn, char *err,
                            size_t errlen);

/* The cache folder: $MODELC_CUDA_CACHE, else $MODELC_CACHE/cuda, else
 * $XDG_CACHE_HOME/modelc/cuda, else ~/.cache/modelc/cuda. */
const char *modelc_rt_cuda_cache_dir(char *buf, size_t n);

/* ---- memory and launches (on one stream, in order) ---- */

int modelc_rt_cuda_alloc(modelc_rt_cuda *c, size_t bytes, modelc_rt_cuda_ptr *out, char *err,
                         size_t errlen);
void modelc_rt_cuda_free(modelc_rt_cuda *c, modelc_rt_cuda_ptr p);
int modelc_rt_cuda_upload(modelc_rt_cuda *c, modelc_rt_cuda_ptr dst, const void *src, size_t bytes,
                          char *err, size_t errlen);
/* Waits for the work before it: a kernel's failure is reported here. */
int modelc_rt_cuda_download(modelc_rt_cuda *c, void *dst, modelc_rt_cuda_ptr src, size_t bytes,
                            char *err, size_t errlen);
int modelc_rt_cuda_zero(modelc_rt_cuda *c, modelc_rt_cuda_ptr dst, size_t bytes, char *err,
                        size_t errlen);
int modelc_rt_cuda_copy(modelc_rt_cuda *c, modelc_rt_cuda_ptr dst, modelc_rt_cuda_ptr src,
                        size_t bytes, char *err, size_t errlen);
int modelc_rt_cuda_launch(modelc_rt_cuda *c, void *fn, unsigned grid_x, unsigned grid_y,
                          unsigned grid_z, unsigned block, void **args, char *err, size_t errlen);
int modelc_rt_cuda_sync(modelc_rt_cuda *c, char *err, size_t errlen);

/* `MODEL_main` for -t cuda: says "no GPU" (exit 1) before handing over
 * to modelc_rt_main when a command that needs the device cannot have it. */
int modelc_rt_cuda_probe(char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
