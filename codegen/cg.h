/* cg.h: code generation: graph IR -> kernel IR -> source text.
 *
 * Lowering (cg_lower.c) turns each graph into a list of kernels over
 * buffers: elementwise loop nests with a scalar expression, library calls
 * into the runtime (GEMM, softmax, conv, ...), copies, and the effects
 * (gradient accumulation, state assignment). Planning (cg_plan.c) gives
 * every buffer a place: model state at fixed offsets, inputs by pointer,
 * temporaries in one activation region reused by liveness. Renderers
 * (cg_render_c.c, later CUDA and LLVM) print kernels; they never decide
 * what a kernel is. */
#ifndef MODELC_CG_H
#define MODELC_CG_H

#include <stdbool.h>
#include <stdio.h>

#include "ir/ir.h"

/* ---- buffers ---- */

typedef enum {
  CG_BUF_PARAM,  /* trainable parameter: state */
  CG_BUF_STATE,  /* buffer (running statistics): state */
  CG_BUF_GRAD,   /* gradient of a parameter: state */
  CG_BUF_INPUT,  /* given by the caller, read only */
  CG_BUF_TEMP,   /* intermediate: in the activation region */
} cg_buffer_kind;

typedef struct cg_buffer {
  int id;
  cg_buffer_kind kind;
  const ir_value *value; /* NULL for gradient buffers */
  const char *name;      /* the value's name, for comments */
  ir_type type;
  int index;             /* parameter / state / input index */
  int64_t offset;        /* bytes: into the state region or the activation region */
  int alias_of;          /* -1, or the buffer whose memory this one views (reshape) */
  int first_use, last_use; /* kernel indices, for planning; outputs live to the end */
} cg_buffer;

/* ---- elementwise expressions ---- */

typedef enum { CG_EXPR_LOAD, CG_EXPR_CONST, CG_EXPR_OP } cg_expr_kind;

typedef struct cg_expr {
  cg_expr_kind kind;
  int operand;  /* LOAD: index into the kernel's operands */
  double value; /* CONST */
  ir_op op;     /* OP: an elementwise IR op */
  ir_dtype dtype; /* of the result */
  int num_args;
  struct cg_expr *args[3];
} cg_expr;

/* ---- kernels ---- */

typedef enum {
  CG_K_ELEMENTWISE, /* out[i] = expr(operands at broadcast indices) */
  CG_K_GEMM,        /* matmul: batched runtime GEMM */
  CG_K_CALL,        /* one runtime kernel: softmax, conv, ... (by node op) */
  CG_K_CONCAT,      /* copies each input into its slice of the output */
  CG_K_PAD,         /* zeros, then the input into the middle */
  CG_K_GRAD,        /* grad buffer += value */
  CG_K_ASSIGN,      /* state = value, at the end of the step */
  CG_K_CONST,       /* a scalar constant into its buffer */
} cg_kernel_kind;

enum { CG_MAX_OPERANDS = 12 };

typedef struct cg_kernel {
  int id;
  cg_kernel_kind kind;
  const ir_node *node; /* the node it computes (first one when fused) */
  const char *name;    /* C function name */
  int out;             /* output buffer, -1 for none */
  int num_more_outs;   /* results after the first (flash_attention's lse) */
  int more_outs[2];
  int num_operands;
  int operands[CG_MAX_OPERANDS];
  /* elementwise: the loop nest over the (collapsed) output shape, each
   * operand's element strides in it (0 where broadcast) */
  cg_expr *expr;
  int loop_rank;
  int64_t loop_dims[IR_MAX_RANK];
  int64_t strides[CG_MAX_OPERANDS][IR_MAX_RANK];
  int64_t base[CG_MAX_OPERANDS]; /* element offset (slice) */
} cg_kernel;

/* One entry point of the generated model: the kernels of one graph. */
typedef struct cg_entry {
  const char *name; /* "forward", "evaluate", "train" */
  const ir_graph *graph;
  int num_kernels;
  cg_kernel *kernels;
  int64_t activation_bytes; /* after planning */
  int num_outputs;
  const char *output_names[32];
  int output_buffers[32];
  int loss_buffer; /* -1 when the graph computes no loss */
  bool input_used[32];
} cg_entry;

typedef struct cg_program {
  ir_arena *arena;
  const char *model; /* C identifier, prefix of every symbol */
  /* buffers of every entry point; state ones are shared */
  int num_buffers, cap_buffers;
  cg_buffer *buffers;
  /* model state, in order: parameters then buffers (running statistics) */
  int num_params;
  int param_buffers[1024];
  int grad_buffers[1024];
  int num_states;
  int state_buffers[256];
  int num_inputs;
  const ir_value *inputs[32];
  bool bf16;                /* precision: bf16: GEMM and conv operands in bf16 */
  int64_t state_bytes;      /* params + buffers */
  int64_t grad_bytes;       /* gradients */
  int num_entries;
  cg_entry entries[3];
} cg_program;

/* cg_lower.c: a new program for the model; entries are added one graph
 * at a time (expanded, and differentiated for "train"). The first graph
 * added fixes the parameters, states and inputs. */
cg_program *cg_program_new(ir_arena *arena, const char *model);
bool cg_lower_entry(cg_program *p, const char *name, const ir_graph *g, char *err, size_t errlen);

/* cg_plan.c: offsets for every buffer; returns the arena size of the
 * activation region per entry (the largest is what the model needs). */
void cg_plan(cg_program *p);

/* ---- text emission (cg_emit.c) ---- */

typedef struct cg_emitter {
  ir_arena *arena;
  char *buf;
  size_t len, cap;
  int indent;
  bool line_start;
} cg_emitter;

void cg_emit_init(cg_emitter *e, ir_arena *arena);
/* Appends formatted text; "\n" ends a line, the next starts indented. */
void cg_emitf(cg_emitter *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cg_emit_open(cg_emitter *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cg_emit_close(cg_emitter *e, const char *closing);
const char *cg_emit_text(cg_emitter *e);

/* ---- rendering C (cg_render_c.c, cg_model_c.c) ---- */

/* A literal of the dtype: 0.5f, (-INFINITY), 3. */
const char *cg_c_literal(ir_arena *a, double v, ir_dtype dtype);
/* The C spelling of a scalar element type: f32 is modelc_rt_real (float,
 * or double under MODELC_DOUBLE). */
const char *cg_c_type(ir_dtype dtype);
/* Whether the kernel's C function returns a status (int, 0 success)
 * rather than void: embedding lookups check ids, flash attention
 * allocates its rope tables. */
bool cg_kernel_returns_status(const cg_kernel *k);
/* A planned size or offset in bytes as the C counts it: in modelc_rt_real
 * elements (4 bytes of the plan each). */
int64_t cg_c_elements(int64_t bytes);
/* One kernel as a static C function `static void NAME(MODEL *m)`. */
void cg_render_c_kernel(cg_emitter *e, const cg_program *p, const cg_entry *entry,
                        const cg_kernel *k);

/* cg_numerics.c: --check-numerics. The index of the entry's first
 * backward kernel (num_kernels when none), and the check after kernel k. */
int cg_backward_start(const cg_entry *entry);
/* The C expression of a buffer's first element, typed (const unless
 * writable), as every kernel addresses it. */
const char *cg_c_pointer(const cg_program *p, int b, bool writable);
void cg_emit_numerics_check(cg_emitter *e, const cg_program *p, const cg_kernel *k, bool backward);

typedef struct cg_spec_info {
  const char *source_file;   /* the spec's path, for the header comment */
  int optimizer;             /* 0 adamw, 1 sgd */
  double lr, beta1, beta2, eps, weight_decay, momentum;
  bool nesterov;
  int schedule;              /* 0 constant, 1 cosine, 2 linear */
  int64_t warmup, steps;
  double min_lr, grad_clip;
  int64_t accumulate;
  uint64_t seed;
} cg_spec_info;

/* Writes the whole output folder: MODEL.h, MODEL.c, MODEL_main.c,
 * modelc_rt.h, modelc_rt.c, CMakeLists.txt. Files are written to
 * temporary names and renamed, so a failure leaves no partial file. */
bool cg_write_c(const cg_program *p, const cg_spec_info *info, const char *dir, char *err,
                size_t errlen);

/* ---- the model as a table (cg_table.c), for backends that render kernels only ---- */

/* The table runtime/rt_table.c reads (its format is described there). */
const char *cg_table_text(const cg_program *p, const cg_spec_info *info);
/* The largest activation region of the entry points. */
int64_t cg_activation_bytes(const cg_program *p);
/* Whether a kernel can fail (gather: ids in range; flash attention: its
 * allocation), and the index of kernel `kernel` of `entry` among the
 * checking kernels of the program: an entry that fails returns 1 + that
 * index. */
bool cg_kernel_checks(const cg_kernel *k);
int cg_check_index(const cg_program *p, const cg_entry *entry, int kernel);

/* The public header MODEL.h, the same for every CPU backend. */
const char *cg_c_header(const cg_program *p, const cg_spec_info *info);

/* Shapes that several renderers need (cg_render_c.c). */
typedef struct cg_gemm_shape {
  int64_t m, n, k, batch;
  int ta, tb;
  int64_t a_matrix, b_matrix; /* elements per matrix */
  int batch_rank;
  int64_t dims[IR_MAX_RANK], a_strides[IR_MAX_RANK], b_strides[IR_MAX_RANK];
} cg_gemm_shape;
cg_gemm_shape cg_gemm_of(const ir_node *n);
/* One GEMM over all batch rows: a shared weight, rows stacked in memory. */
bool cg_gemm_folds(const cg_gemm_shape *g);
/* [outer, n, inner] around an axis. */
void cg_around_axis(const ir_type *t, int64_t axis, int64_t *outer, int64_t *n, int64_t *inner);
/* modelc_rt_conv of a conv node (x, w, y as the forward sees them) and
 * modelc_rt_pool of a pooling node, field by field. */
void cg_conv_params(const ir_node *n, const ir_type *x, const ir_type *w, const ir_type *y,
                    int64_t out[16]);
void cg_pool_params(const ir_node *n, int64_t out[12]);
/* modelc_rt_conv_cat of a conv_concat node or one of its gradients: the
 * 16 conv fields over the concatenation, then parts, channels[3], up[3]
 * (0 where absent). */
enum { MODELC_CG_CONV_PARTS = 3, CG_CONV_CAT_FIELDS = 16 + 1 + 2 * MODELC_CG_CONV_PARTS };
void cg_conv_concat_params(const ir_node *n, int64_t out[CG_CONV_CAT_FIELDS]);
/* The same as a C initialiser {{conv}, parts, {channels}, {up}}, each
 * number followed by suffix ("" or "LL"). */
const char *cg_conv_concat_literal(ir_arena *a, const ir_node *n, const char *suffix);
/* reduce[i] = 1 for each reduced axis of x (axes absent = all). */
void cg_reduce_mask(const ir_node *n, const ir_type *x, int mask[IR_MAX_RANK]);

/* ---- rendering CUDA (cg_render_cuda.c, cg_model_cuda.c) ---- */

/* How the host launches a kernel: a grid of blocks of `block` threads;
 * with zero_bytes > 0 the output is zeroed first (kernels that add with
 * atomics). */
typedef struct cg_cuda_launch {
  int64_t grid_x, grid_y, grid_z;
  int block;
  int64_t zero_bytes;
} cg_cuda_launch;

/* One kernel as `extern "C" __global__ void NAME(mc_args m, mc_ptrs q)`,
 * and its launch: operand i is read at q.p[i], the output written at
 * q.p[CG_MAX_OPERANDS], so kernels that differ only in their buffers are
 * the same text. Kernels of kind ASSIGN are copies done by the host. */
void cg_render_cuda_kernel(cg_emitter *e, const cg_program *p, const cg_kernel *k,
                           cg_cuda_launch *launch);
/* The comment above it: the node and its shapes. */
void cg_render_cuda_comment(cg_emitter *e, const cg_program *p, const cg_kernel *k);

/* Kernels embedded at build time by --aot (NULL: compiled at first use). */
typedef struct cg_cuda_image {
  const void *cubin;
  size_t cubin_size;
  const char *ptx; /* or NULL */
  int arch;        /* 80 for sm_80 */
} cg_cuda_image;

/* Every kernel of every entry point as one CUDA translation unit (the
 * device library first); *count receives the number of kernels in it. */
const char *cg_cuda_kernels_source(const cg_program *p, int *count);
/* Writes the -t cuda output folder: MODEL.h (the C backend's API),
 * MODEL.c (host code), MODEL_kernels.cu, MODEL_kernels.c (the source
 * and any --aot image as data), MODEL_main.c, the runtime with its CUDA
 * loader, CMakeLists.txt. arch: "sm_80" to compile for, or NULL for the
 * GPU present at run time. */
bool cg_write_cuda(const cg_program *p, const cg_spec_info *info, const char *arch,
                   const cg_cuda_image *aot, const char *dir, char *err, size_t errlen);

/* The CUDA runtime, embedded at build time (cuda_embed.c). */
extern const char *const cg_cuda_runtime_header;  /* runtime/modelc_rt_cuda.h */
extern const char *const cg_cuda_runtime_source;  /* runtime/rt_cuda.c */
extern const char *const cg_cuda_device_library;  /* runtime/rt_cuda_kernels.cu */

/* The runtime as copied into an output (cg_model_c.c): a header with its
 * external names renamed MODEL_rt_* (several models link into one
 * program), and the sources concatenated into one modelc_rt.c. */
const char *cg_runtime_renamed_header(ir_arena *a, const char *model, const char *file,
                                      const char *h);
const char *cg_runtime_source_text(ir_arena *a);

/* The runtime sources, embedded at build time (runtime_embed.c). */
extern const char *const cg_runtime_header;
extern const char *const cg_runtime_sources[];
extern const char *const cg_runtime_source_names[];
extern const int cg_runtime_source_count;

#endif
