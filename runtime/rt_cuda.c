/* rt_cuda.c: the CUDA loader (modelc_rt_cuda.h): the driver API and
 * NVRTC through dlopen, and the on-disk kernel cache.
 *
 * Only the few entry points used are looked up, by their versioned
 * names where the driver has several (cuMemAlloc_v2, ...). The primary
 * context is used rather than cuCtxCreate, whose signature changed in
 * CUDA 13. */
#include "modelc_rt_cuda.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef int cu_result;
typedef int cu_device;
typedef void *cu_handle; /* CUcontext, CUmodule, CUfunction, CUstream */

typedef struct cu_api {
  cu_result (*init)(unsigned);
  cu_result (*driver_version)(int *);
  cu_result (*device_count)(int *);
  cu_result (*device_get)(cu_device *, int);
  cu_result (*device_attribute)(int *, int, cu_device);
  cu_result (*device_name)(char *, int, cu_device);
  cu_result (*primary_retain)(cu_handle *, cu_device);
  cu_result (*primary_release)(cu_device);
  cu_result (*ctx_set_current)(cu_handle);
  cu_result (*ctx_synchronize)(void);
  cu_result (*module_load_data)(cu_handle *, const void *);
  cu_result (*module_unload)(cu_handle);
  cu_result (*module_function)(cu_handle *, cu_handle, const char *);
  cu_result (*mem_alloc)(modelc_rt_cuda_ptr *, size_t);
  cu_result (*mem_free)(modelc_rt_cuda_ptr);
  cu_result (*htod)(modelc_rt_cuda_ptr, const void *, size_t);
  cu_result (*dtoh)(void *, modelc_rt_cuda_ptr, size_t);
  cu_result (*dtod)(modelc_rt_cuda_ptr, modelc_rt_cuda_ptr, size_t);
  cu_result (*memset8)(modelc_rt_cuda_ptr, unsigned char, size_t);
  cu_result (*launch)(cu_handle, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                      unsigned, cu_handle, void **, void **);
  cu_result (*error_string)(cu_result, const char **);
} cu_api;

struct modelc_rt_cuda {
  void *lib;
  cu_api cu;
  cu_device device;
  cu_handle context, module;
  int capability;
  char name[256];
};

#define CU_ATTRIBUTE_CAPABILITY_MAJOR 75
#define CU_ATTRIBUTE_CAPABILITY_MINOR 76

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int cuda_fail(char *err, size_t errlen, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return -1;
}

/* "what: CUDA_ERROR_...: text" for a failed driver call. */
static int cuda_check(const modelc_rt_cuda *c, cu_result r, const char *what, char *err,
                      size_t errlen) {
  if (r == 0) return 0;
  const char *text = NULL;
  if (c->cu.error_string) c->cu.error_string(r, &text);
  return cuda_fail(err, errlen, "%s failed: CUDA error %d (%s)", what, r, text ? text : "unknown");
}

/* ---- dlopen ---- */

static void *cuda_open_first(const char *const *names, int count) {
  for (int i = 0; i < count; i++) {
    void *lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (lib) return lib;
  }
  return NULL;
}

#define CUDA_SYM(lib, field, name) ((*(void **)&(field) = dlsym(lib, name)) != NULL)

static int cuda_bind_driver(modelc_rt_cuda *c) {
  cu_api *a = &c->cu;
  void *l = c->lib;
  return CUDA_SYM(l, a->init, "cuInit") && CUDA_SYM(l, a->driver_version, "cuDriverGetVersion") &&
         CUDA_SYM(l, a->device_count, "cuDeviceGetCount") && CUDA_SYM(l, a->device_get, "cuDeviceGet") &&
         CUDA_SYM(l, a->device_attribute, "cuDeviceGetAttribute") &&
         CUDA_SYM(l, a->device_name, "cuDeviceGetName") &&
         CUDA_SYM(l, a->primary_retain, "cuDevicePrimaryCtxRetain") &&
         CUDA_SYM(l, a->primary_release, "cuDevicePrimaryCtxRelease_v2") &&
         CUDA_SYM(l, a->ctx_set_current, "cuCtxSetCurrent") &&
         CUDA_SYM(l, a->ctx_synchronize, "cuCtxSynchronize") &&
         CUDA_SYM(l, a->module_load_data, "cuModuleLoadData") &&
         CUDA_SYM(l, a->module_unload, "cuModuleUnload") &&
         CUDA_SYM(l, a->module_function, "cuModuleGetFunction") &&
         CUDA_SYM(l, a->mem_alloc, "cuMemAlloc_v2") && CUDA_SYM(l, a->mem_free, "cuMemFree_v2") &&
         CUDA_SYM(l, a->htod, "cuMemcpyHtoD_v2") && CUDA_SYM(l, a->dtoh, "cuMemcpyDtoH_v2") &&
         CUDA_SYM(l, a->dtod, "cuMemcpyDtoD_v2") && CUDA_SYM(l, a->memset8, "cuMemsetD8_v2") &&
         CUDA_SYM(l, a->launch, "cuLaunchKernel") && CUDA_SYM(l, a->error_string, "cuGetErrorString");
}

int modelc_rt_cuda_open(modelc_rt_cuda **out, char *err, size_t errlen) {
  static const char *const names[] = {"libcuda.so.1", "libcuda.so"};
  *out = NULL;
  modelc_rt_cuda *c = calloc(1, sizeof *c);
  if (!c) return cuda_fail(err, errlen, "out of memory");
  const char *own = getenv("MODELC_CUDA_DRIVER"); /* another driver library (tests/cuda_emu) */
  c->lib = own && *own ? dlopen(own, RTLD_NOW | RTLD_LOCAL) : cuda_open_first(names, 2);
  if (!c->lib) {
    free(c);
    if (own && *own) return cuda_fail(err, errlen, "no GPU: cannot open MODELC_CUDA_DRIVER=%s", own);
    return cuda_fail(err, errlen, "no GPU: the NVIDIA driver (libcuda.so.1) is not installed");
  }
  if (!cuda_bind_driver(c)) {
    dlclose(c->lib);
    free(c);
    return cuda_fail(err, errlen, "no GPU: libcuda.so.1 lacks the driver API this program needs");
  }
  int count = 0, index = 0;
  const char *env = getenv("MODELC_CUDA_DEVICE");
  if (env && *env) index = atoi(env);
  cu_result r = c->cu.init(0);
  if (r == 0) r = c->cu.device_count(&count);
  if (r != 0 || count <= index) {
    if (r != 0) cuda_check(c, r, "no GPU: cuInit", err, errlen);
    else cuda_fail(err, errlen, "no GPU: the driver sees %d device%s", count, count == 1 ? "" : "s");
    dlclose(c->lib);
    free(c);
    return -1;
  }
  int major = 0, minor = 0;
  if (cuda_check(c, c->cu.device_get(&c->device, index), "cuDeviceGet", err, errlen) ||
      cuda_check(c, c->cu.device_attribute(&major, CU_ATTRIBUTE_CAPABILITY_MAJOR, c->device),
                 "cuDeviceGetAttribute", err, errlen) ||
      cuda_check(c, c->cu.device_attribute(&minor, CU_ATTRIBUTE_CAPABILITY_MINOR, c->device),
                 "cuDeviceGetAttribute", err, errlen) ||
      cuda_check(c, c->cu.device_name(c->name, (int)sizeof c->name, c->device), "cuDeviceGetName",
                 err, errlen) ||
      cuda_check(c, c->cu.primary_retain(&c->context, c->device), "cuDevicePrimaryCtxRetain", err,
                 errlen)) {
    dlclose(c->lib);
    free(c);
    return -1;
  }
  if (cuda_check(c, c->cu.ctx_set_current(c->context), "cuCtxSetCurrent", err, errlen)) {
    modelc_rt_cuda_close(c);
    return -1;
  }
  c->capability = major * 10 + minor;
  *out = c;
  return 0;
}

void modelc_rt_cuda_close(modelc_rt_cuda *c) {
  if (!c) return;
  if (c->module) c->cu.module_unload(c->module);
  if (c->context) c->cu.primary_release(c->device);
  dlclose(c->lib);
  free(c);
}

int modelc_rt_cuda_capability(const modelc_rt_cuda *c) { return c->capability; }
const char *modelc_rt_cuda_device_name(const modelc_rt_cuda *c) { return c->name; }

int modelc_rt_cuda_probe(char *err, size_t errlen) {
  modelc_rt_cuda *c;
  if (modelc_rt_cuda_open(&c, err, errlen) != 0) return -1;
  modelc_rt_cuda_close(c);
  return 0;
}

/* ---- NVRTC ---- */

typedef struct nvrtc_api {
  void *lib;
  int (*version)(int *, int *);
  int (*create)(void **, const char *, const char *, int, const char *const *, const char *const *);
  int (*compile)(void *, int, const char *const *);
  int (*log_size)(void *, size_t *);
  int (*log)(void *, char *);
  int (*cubin_size)(void *, size_t *);
  int (*cubin)(void *, char *);
  int (*ptx_size)(void *, size_t *);
  int (*ptx)(void *, char *);
  int (*destroy)(void **);
  const char *(*error_string)(int);
} nvrtc_api;

/* NVRTC, opened once per process (never closed: its handles are cheap). */
static int nvrtc_get(nvrtc_api **out, char *err, size_t errlen) {
  static nvrtc_api api;
  static int state; /* 0 untried, 1 ok, -1 missing */
  if (state == 0) {
    static const char *const names[] = {"libnvrtc.so",      "libnvrtc.so.13",    "libnvrtc.so.12",
                                        "libnvrtc.so.11.2", "libnvrtc.so.11.1", "libnvrtc.so.11.0"};
    nvrtc_api *a = &api;
    const char *own = getenv("MODELC_NVRTC"); /* a given libnvrtc.so, and only it */
    a->lib = own && *own ? dlopen(own, RTLD_NOW | RTLD_LOCAL) : cuda_open_first(names, 6);
    state = a->lib && CUDA_SYM(a->lib, a->version, "nvrtcVersion") &&
                    CUDA_SYM(a->lib, a->create, "nvrtcCreateProgram") &&
                    CUDA_SYM(a->lib, a->compile, "nvrtcCompileProgram") &&
                    CUDA_SYM(a->lib, a->log_size, "nvrtcGetProgramLogSize") &&
                    CUDA_SYM(a->lib, a->log, "nvrtcGetProgramLog") &&
                    CUDA_SYM(a->lib, a->cubin_size, "nvrtcGetCUBINSize") &&
                    CUDA_SYM(a->lib, a->cubin, "nvrtcGetCUBIN") &&
                    CUDA_SYM(a->lib, a->ptx_size, "nvrtcGetPTXSize") &&
                    CUDA_SYM(a->lib, a->ptx, "nvrtcGetPTX") &&
                    CUDA_SYM(a->lib, a->destroy, "nvrtcDestroyProgram") &&
                    CUDA_SYM(a->lib, a->error_string, "nvrtcGetErrorString")
                ? 1
                : -1;
  }
  if (state < 0)
    return cuda_fail(err, errlen, "NVRTC (libnvrtc.so) is not installed: install the CUDA "
                                  "toolkit's NVRTC, or build the model with --aot");
  *out = &api;
  return 0;
}

int modelc_rt_cuda_nvrtc_version(int *version, char *err, size_t errlen) {
  nvrtc_api *a;
  if (nvrtc_get(&a, err, errlen) != 0) return -1;
  int major = 0, minor = 0;
  a->version(&major, &minor);
  *version = major * 1000 + minor * 10;
  return 0;
}

int modelc_rt_cuda_nvrtc_compile(const char *source, const char *name, const char *arch,
                                 void **image, size_t *image_size, char **ptx, char **log,
                                 char *err, size_t errlen) {
  nvrtc_api *a;
  *image = NULL;
  *image_size = 0;
  *ptx = *log = NULL;
  if (nvrtc_get(&a, err, errlen) != 0) return -1;
  void *prog = NULL;
  int r = a->create(&prog, source, name, 0, NULL, NULL);
  if (r != 0) return cuda_fail(err, errlen, "nvrtcCreateProgram: %s", a->error_string(r));
  char arch_option[64];
  snprintf(arch_option, sizeof arch_option, "--gpu-architecture=%s", arch);
  const char *options[] = {arch_option, "--std=c++17"};
  int rc = a->compile(prog, 2, options);
  size_t n = 0;
  a->log_size(prog, &n);
  *log = calloc(1, n + 1);
  if (*log && n) a->log(prog, *log);
  if (*log && n) (*log)[n] = 0;
  if (rc != 0) {
    a->destroy(&prog);
    return cuda_fail(err, errlen, "NVRTC could not compile %s for %s: %s", name, arch,
                     a->error_string(rc));
  }
  if (a->cubin_size(prog, &n) == 0 && n > 0 && (*image = malloc(n)) != NULL) {
    a->cubin(prog, *image);
    *image_size = n;
  }
  if (a->ptx_size(prog, &n) == 0 && n > 0 && (*ptx = calloc(1, n + 1)) != NULL) a->ptx(prog, *ptx);
  a->destroy(&prog);
  if (!*image) return cuda_fail(err, errlen, "NVRTC gave no cubin for %s", arch);
  return 0;
}

/* ---- the on-disk cache ---- */

const char *modelc_rt_cuda_cache_dir(char *buf, size_t n) {
  const char *env;
  if ((env = getenv("MODELC_CUDA_CACHE")) && *env) snprintf(buf, n, "%s", env);
  else if ((env = getenv("MODELC_CACHE")) && *env) snprintf(buf, n, "%s/cuda", env);
  else if ((env = getenv("XDG_CACHE_HOME")) && *env) snprintf(buf, n, "%s/modelc/cuda", env);
  else if ((env = getenv("HOME")) && *env) snprintf(buf, n, "%s/.cache/modelc/cuda", env);
  else snprintf(buf, n, "/tmp/modelc-cache/cuda");
  return buf;
}

static void cuda_mkdirs(const char *dir) {
  char path[4096];
  snprintf(path, sizeof path, "%s", dir);
  for (char *p = path + 1;; p++) {
    if (*p != '/' && *p != 0) continue;
    char saved = *p;
    *p = 0;
    mkdir(path, 0777);
    *p = saved;
    if (!saved) break;
  }
}

static uint64_t cuda_fnv(const char *text) {
  uint64_t h = 14695981039346656037ull;
  for (const unsigned char *s = (const unsigned char *)text; *s; s++) h = (h ^ *s) * 1099511628211ull;
  return h;
}

/* The whole file, malloc'd; NULL if absent. */
static void *cuda_read(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  void *data = NULL;
  if (fseek(f, 0, SEEK_END) == 0) {
    long n = ftell(f);
    if (n > 0 && fseek(f, 0, SEEK_SET) == 0 && (data = malloc((size_t)n)) != NULL) {
      if (fread(data, 1, (size_t)n, f) != (size_t)n) {
        free(data);
        data = NULL;
      }
      *size = (size_t)n;
    }
  }
  fclose(f);
  return data;
}

/* Atomic: a temporary name, then rename. A failure only loses the cache. */
static void cuda_write(const char *path, const void *data, size_t size) {
  char tmp[4400];
  int len = snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
  if (len < 0 || (size_t)len >= sizeof tmp) return;
  FILE *f = fopen(tmp, "wb");
  if (!f) return;
  int ok = fwrite(data, 1, size, f) == size;
  ok = fclose(f) == 0 && ok;
  if (!ok || rename(tmp, path) != 0) remove(tmp);
}

/* A cubin for arch from the cache, or compiled and cached. */
static int cuda_cached_image(const char *source, const char *arch, void **image, size_t *size,
                             char *err, size_t errlen) {
  int version;
  if (modelc_rt_cuda_nvrtc_version(&version, err, errlen) != 0) return -1;
  char dir[4096], path[4200];
  modelc_rt_cuda_cache_dir(dir, sizeof dir);
  int len = snprintf(path, sizeof path, "%s/%016llx-%.32s-nvrtc%d.cubin", dir,
                     (unsigned long long)cuda_fnv(source), arch, version);
  if (len < 0 || (size_t)len >= sizeof path) return cuda_fail(err, errlen, "cache path too long");
  if ((*image = cuda_read(path, size)) != NULL) return 0;
  char *ptx, *log;
  int rc = modelc_rt_cuda_nvrtc_compile(source, "kernels.cu", arch, image, size, &ptx, &log, err, errlen);
  if (rc != 0 && log && *log) {
    size_t used = strlen(err);
    snprintf(err + used, errlen - used, ":\n%.600s", log);
  }
  free(ptx);
  free(log);
  if (rc != 0) return -1;
  cuda_mkdirs(dir);
  cuda_write(path, *image, *size);
  return 0;
}

int modelc_rt_cuda_load(modelc_rt_cuda *c, const char *source, const char *arch,
                        const void *aot_cubin, size_t aot_size, int aot_arch, const char *aot_ptx,
                        char *err, size_t errlen) {
  if (c->module) return 0;
  if (aot_cubin && aot_size && aot_arch == c->capability &&
      c->cu.module_load_data(&c->module, aot_cubin) == 0)
    return 0;
  c->module = NULL;
  if (aot_ptx && c->cu.module_load_data(&c->module, aot_ptx) == 0) return 0;
  c->module = NULL;
  if (!source)
    return cuda_fail(err, errlen, "the embedded kernels (sm_%d) do not run on %s (sm_%d)", aot_arch,
                     c->name, c->capability);
  char own[32];
  if (!arch) {
    snprintf(own, sizeof own, "sm_%d", c->capability);
    arch = own;
  }
  void *image;
  size_t size;
  if (cuda_cached_image(source, arch, &image, &size, err, errlen) != 0) return -1;
  cu_result r = c->cu.module_load_data(&c->module, image);
  free(image);
  if (r != 0) {
    c->module = NULL;
    return cuda_check(c, r, "loading the kernels (cuModuleLoadData)", err, errlen);
  }
  return 0;
}

int modelc_rt_cuda_function(modelc_rt_cuda *c, const char *name, void **fn, char *err,
                            size_t errlen) {
  cu_handle f = NULL;
  cu_result r = c->cu.module_function(&f, c->module, name);
  if (r != 0) return cuda_fail(err, errlen, "kernel '%s' is missing from the module", name);
  *fn = f;
  return 0;
}

/* ---- memory and launches ---- */

int modelc_rt_cuda_alloc(modelc_rt_cuda *c, size_t bytes, modelc_rt_cuda_ptr *out, char *err,
                         size_t errlen) {
  return cuda_check(c, c->cu.mem_alloc(out, bytes ? bytes : 1), "cuMemAlloc", err, errlen);
}

void modelc_rt_cuda_free(modelc_rt_cuda *c, modelc_rt_cuda_ptr p) {
  if (p) c->cu.mem_free(p);
}

int modelc_rt_cuda_upload(modelc_rt_cuda *c, modelc_rt_cuda_ptr dst, const void *src, size_t bytes,
                          char *err, size_t errlen) {
  return bytes ? cuda_check(c, c->cu.htod(dst, src, bytes), "cuMemcpyHtoD", err, errlen) : 0;
}

int modelc_rt_cuda_download(modelc_rt_cuda *c, void *dst, modelc_rt_cuda_ptr src, size_t bytes,
                            char *err, size_t errlen) {
  return bytes ? cuda_check(c, c->cu.dtoh(dst, src, bytes), "cuMemcpyDtoH", err, errlen) : 0;
}

int modelc_rt_cuda_zero(modelc_rt_cuda *c, modelc_rt_cuda_ptr dst, size_t bytes, char *err,
                        size_t errlen) {
  return bytes ? cuda_check(c, c->cu.memset8(dst, 0, bytes), "cuMemsetD8", err, errlen) : 0;
}

int modelc_rt_cuda_copy(modelc_rt_cuda *c, modelc_rt_cuda_ptr dst, modelc_rt_cuda_ptr src,
                        size_t bytes, char *err, size_t errlen) {
  return bytes ? cuda_check(c, c->cu.dtod(dst, src, bytes), "cuMemcpyDtoD", err, errlen) : 0;
}

int modelc_rt_cuda_launch(modelc_rt_cuda *c, void *fn, unsigned grid_x, unsigned grid_y,
                          unsigned grid_z, unsigned block, void **args, char *err, size_t errlen) {
  return cuda_check(c, c->cu.launch(fn, grid_x, grid_y, grid_z, block, 1, 1, 0, NULL, args, NULL),
                    "cuLaunchKernel", err, errlen);
}

int modelc_rt_cuda_sync(modelc_rt_cuda *c, char *err, size_t errlen) {
  return cuda_check(c, c->cu.ctx_synchronize(), "a kernel (cuCtxSynchronize)", err, errlen);
}
