/* ir.h: the graph IR and every pass over it.
 *
 * A graph is a function of tensors: an ordered (topological) list of
 * nodes; each node applies one op to input values and defines result
 * values (SSA: every value is defined once). Every value has a dtype and
 * a static shape. Sources (input, param, buffer, const, ...) carry their
 * type explicitly; every other node's result types come from its op's
 * shape rule (shape.c), so a graph built through ir_node_new is typed as
 * it is built. The op table is ops.def. */
#ifndef MODELC_IR_H
#define MODELC_IR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "arena.h"

enum { IR_MAX_RANK = 8, IR_MAX_ATTRS = 16, IR_ERR_LEN = 256 };

/* ---- types ---- */

#define IR_DTYPES(X) \
  X(f32, 4, 1)       \
  X(bf16, 2, 1)      \
  X(f16, 2, 1)       \
  X(f64, 8, 1)       \
  X(i32, 4, 0)       \
  X(i64, 8, 0)       \
  X(u8, 1, 0)

typedef enum {
#define X(name, bytes, is_float) IR_##name,
  IR_DTYPES(X)
#undef X
      IR_DTYPE_COUNT
} ir_dtype;

typedef struct ir_type {
  ir_dtype dtype;
  int rank; /* 0 = scalar */
  int64_t dims[IR_MAX_RANK];
} ir_type;

const char *ir_dtype_name(ir_dtype dtype);
/* Returns false when name is not a dtype. */
bool ir_dtype_parse(const char *name, ir_dtype *out);
int ir_dtype_bytes(ir_dtype dtype);
bool ir_dtype_is_float(ir_dtype dtype);
int64_t ir_type_numel(const ir_type *type);
int64_t ir_type_bytes(const ir_type *type);
bool ir_type_equal(const ir_type *a, const ir_type *b);
/* "f32[8,128,256]", "f32[]" for a scalar; into buf, returns buf. */
char *ir_type_format(const ir_type *type, char *buf, size_t len);
/* Shape alone: "[8,128,256]". */
char *ir_shape_format(const ir_type *type, char *buf, size_t len);
ir_type ir_type_make(ir_dtype dtype, int rank, const int64_t *dims);

/* ---- ops ---- */

enum {
  IR_OPF_SOURCE = 1 << 0,      /* no inputs; result type given explicitly */
  IR_OPF_ELEMENTWISE = 1 << 1, /* pointwise over broadcast inputs */
  IR_OPF_REDUCE = 1 << 2,      /* reduces or normalises along axes */
  IR_OPF_LAYOUT = 1 << 3,      /* moves data without arithmetic */
  IR_OPF_EFFECT = 1 << 4,      /* no results; kept by dead-code elimination */
  IR_OPF_LAYER = 1 << 5,       /* spec layer op; removed by expand */
};

typedef enum {
#define OP(id, min_in, max_in, results, flags, attrs, shape) IR_OP_##id,
#include "ops.def"
#undef OP
  IR_OP_COUNT
} ir_op;

typedef enum {
  IR_ATTR_INT,
  IR_ATTR_FLOAT,
  IR_ATTR_BOOL,
  IR_ATTR_STR,
  IR_ATTR_INTS,
  IR_ATTR_FLOATS,
} ir_attr_kind;

typedef struct ir_attr_spec {
  const char *name;
  ir_attr_kind kind;
  bool optional;
} ir_attr_spec;

struct ir_node;
/* Computes node->results[i]->type from the inputs and attributes; on
 * failure writes a message (no location, no "error:") to err. */
typedef bool (*ir_shape_fn)(struct ir_node *node, char *err, size_t errlen);

typedef struct ir_op_info {
  const char *name;
  int min_inputs, max_inputs; /* max -1: variadic */
  int num_results;
  unsigned flags;
  int num_attrs;
  ir_attr_spec attrs[IR_MAX_ATTRS];
  ir_shape_fn shape;
} ir_op_info;

const ir_op_info *ir_op_get(ir_op op);

/* ---- fused elementwise expressions (fexpr.c) ----
 * The `expr` of a fused_elementwise node: a tree over the node's inputs
 * (%i), constants and elementwise ops. Text: `mul(add(%0, 1), silu(%1))`. */
typedef enum { IR_FEXPR_INPUT, IR_FEXPR_CONST, IR_FEXPR_OP } ir_fexpr_kind;

typedef struct ir_fexpr {
  ir_fexpr_kind kind;
  int input;    /* INPUT */
  double value; /* CONST */
  ir_op op;     /* OP */
  int num_args;
  struct ir_fexpr *args[3];
} ir_fexpr;

/* NULL with a message when the text is malformed or names an input
 * beyond num_inputs. */
ir_fexpr *ir_fexpr_parse(ir_arena *arena, const char *text, int num_inputs, char *err,
                         size_t errlen);
const char *ir_fexpr_text(ir_arena *arena, const ir_fexpr *x);
/* Returns false when name is not an op. */
bool ir_op_lookup(const char *name, ir_op *out);

/* ---- values, nodes, graphs ---- */

typedef struct ir_loc {
  const char *file; /* NULL: no location */
  int line, col;    /* 1-based */
} ir_loc;

typedef struct ir_attr {
  const char *name; /* points into the op table */
  ir_attr_kind kind;
  union {
    int64_t i;
    double f;
    bool b;
    const char *s;
    struct {
      int n;
      int64_t *v;
    } ints;
    struct {
      int n;
      double *v;
    } floats;
  } u;
} ir_attr;

typedef struct ir_value {
  int id;           /* unique in the graph, in creation order */
  const char *name; /* unique in the graph; printed as %name */
  ir_type type;
  struct ir_node *def;
  int result_index;
} ir_value;

typedef struct ir_node {
  int id;
  ir_op op;
  int num_inputs;
  ir_value **inputs;
  int num_results;
  ir_value **results;
  int num_attrs;
  ir_attr *attrs;
  ir_loc loc;         /* where the spec wrote it, if it came from a spec */
  const char *scope;  /* spec scope, "layers.3" inside a repeat; NULL at top */
  struct ir_node *prev, *next;
} ir_node;

typedef struct ir_graph {
  ir_arena *arena;
  const char *name;
  /* Built in training mode: dropout active, batch statistics, the loss
   * output named "loss"; autodiff differentiates only such graphs.
   * Printed as `graph NAME mode=train {`. */
  bool training;
  /* train.recompute: blocks: the recompute pass recomputes each repeat
   * iteration's activations in the backward instead of keeping them.
   * Printed as `recompute=blocks` after the mode. */
  bool recompute_blocks;
  ir_node *first, *last;
  int next_value_id, next_node_id;
  /* name -> value table for unique naming and the parser */
  int table_cap, table_len;
  ir_value **table;
} ir_graph;

ir_graph *ir_graph_new(ir_arena *arena, const char *name);

/* Creates a node of op with the given inputs, appended at the end of the
 * graph (or before `before` with ir_node_insert). Attributes are added
 * with ir_set_* before ir_node_infer. Result values are named from
 * `name` (made unique by ir_graph_unique_name); NULL gives %t<value id>;
 * result i > 0 of a node is named `name.i`. */
ir_node *ir_node_new(ir_graph *g, ir_op op, int num_inputs, ir_value *const *inputs,
                     const char *name);
/* Same, placed before `before` (NULL = at the end). */
ir_node *ir_node_insert(ir_graph *g, ir_node *before, ir_op op, int num_inputs,
                        ir_value *const *inputs, const char *name);
void ir_node_remove(ir_graph *g, ir_node *node);
/* A fusion's last step: the uses of old's result i go to replacement's
 * result i (placed before them), old is removed and replacement's results
 * take old's names. */
void ir_node_replace(ir_graph *g, ir_node *old, ir_node *replacement);
/* Runs the op's shape rule; for sources, checks nothing. */
bool ir_node_infer(ir_node *node, char *err, size_t errlen);

/* A source node (input, param, buffer, const, mask, dropout_mask) with its
 * result type. */
ir_node *ir_source_new(ir_graph *g, ir_op op, ir_type type, const char *name);

/* A name not yet used in g: `base`, else `base.1`, `base.2`, ... */
const char *ir_graph_unique_name(ir_graph *g, const char *base);
ir_value *ir_graph_find(const ir_graph *g, const char *name);
/* Renames a value (name must be unused). */
void ir_value_rename(ir_graph *g, ir_value *value, const char *name);
/* Replaces every use of from by to in nodes after from's definition. */
void ir_replace_uses(ir_graph *g, ir_value *from, ir_value *to);
int ir_count_uses(const ir_graph *g, const ir_value *value);

/* Attributes: set replaces an attribute of the same name. The name must be
 * one of the op's attributes (checked by the verifier). */
void ir_set_int(ir_graph *g, ir_node *node, const char *name, int64_t v);
void ir_set_float(ir_graph *g, ir_node *node, const char *name, double v);
void ir_set_bool(ir_graph *g, ir_node *node, const char *name, bool v);
void ir_set_str(ir_graph *g, ir_node *node, const char *name, const char *v);
void ir_set_ints(ir_graph *g, ir_node *node, const char *name, int n, const int64_t *v);
void ir_set_floats(ir_graph *g, ir_node *node, const char *name, int n, const double *v);
const ir_attr *ir_get_attr(const ir_node *node, const char *name);
/* Getters return the fallback when the attribute is absent. */
int64_t ir_get_int(const ir_node *node, const char *name, int64_t fallback);
double ir_get_float(const ir_node *node, const char *name, double fallback);
bool ir_get_bool(const ir_node *node, const char *name, bool fallback);
const char *ir_get_str(const ir_node *node, const char *name, const char *fallback);
/* Returns the count and sets *v, or 0 when absent. */
int ir_get_ints(const ir_node *node, const char *name, const int64_t **v);

/* ---- text form (print.c, parse.c) ----
 *
 *   graph gpt_mini {
 *     %tokens: i32[8,128] = input
 *     %tok.weight: f32[512,256] = param init="normal" a=0 b=0.02
 *     %tok: f32[8,128,256] = gather %tok.weight, %tokens @12:11
 *     output %logits name="logits"
 *   }
 *
 * Attributes print in the op table's order; `@line:col` is the spec
 * location, `scope="..."` the spec scope. print -> parse -> print is the
 * identity. */
void ir_print(FILE *out, const ir_graph *g);
char *ir_print_to_string(ir_arena *arena, const ir_graph *g);
void ir_print_node(FILE *out, const ir_node *node);
/* A value as the text form writes it: "%x.3", or %"odd name" quoted;
 * into buf (truncated to len), returns buf. For messages. */
char *ir_value_format(const ir_value *value, char *buf, size_t len);
/* Parses one graph; NULL on error with "line:col: message" in err. */
ir_graph *ir_parse(ir_arena *arena, const char *text, const char *filename, char *err,
                   size_t errlen);

/* ---- verifier (verify.c) ----
 * Checks SSA order (uses after definitions, each value defined once),
 * input counts, attribute names and kinds, that each result type equals
 * what the shape rule computes, unique names, and that no layer op
 * remains when `expanded` is set. Returns the number of problems; each
 * is written to err_out (if non-NULL) as one line. */
int ir_verify(const ir_graph *g, bool expanded, FILE *err_out);

/* ---- passes (one file each) ---- */

/* expand.c: every layer op into primitives. */
bool ir_pass_expand(ir_graph *g, char *err, size_t errlen);
/* autodiff.c: in a training graph, appends the backward graph of the
 * output named "loss": one `grad %param, %g` effect per parameter that
 * the loss depends on. Does nothing to other graphs. */
bool ir_pass_autodiff(ir_graph *g, char *err, size_t errlen);
/* fuse_attention.c: matmul, scale, mask, softmax, matmul into
 * flash_attention (before autodiff, whose rule for it is the fused
 * backward). */
bool ir_pass_fuse_attention(ir_graph *g, char *err, size_t errlen);
/* fuse_gating.c: gate and up projections of a GLU as one GEMM with a glu
 * epilogue (before autodiff). */
bool ir_pass_fuse_gating(ir_graph *g, char *err, size_t errlen);
/* fuse_conv.c: conv over concat(upsample(a), b) reads the parts in place
 * (conv_concat; before autodiff). */
bool ir_pass_fuse_conv(ir_graph *g, char *err, size_t errlen);
/* fuse_norm.c: layernorm/rmsnorm primitives into fused_norm (before
 * autodiff); fuse_norm_residual: the residual stream's gradient summed
 * into fused_norm_grad's d.x (after autodiff). */
bool ir_pass_fuse_norm(ir_graph *g, char *err, size_t errlen);
bool ir_pass_fuse_norm_residual(ir_graph *g, char *err, size_t errlen);
/* fuse_cross_entropy.c: log_softmax + nll_loss into softmax_cross_entropy
 * (before autodiff). */
bool ir_pass_fuse_cross_entropy(ir_graph *g, char *err, size_t errlen);
/* fuse_elementwise.c: chains of elementwise ops into fused_elementwise
 * nodes (after autodiff: forward and backward alike). */
bool ir_pass_fuse_elementwise(ir_graph *g, char *err, size_t errlen);
/* recompute.c: with recompute=blocks, the backward recomputes each repeat
 * iteration's activations from its input instead of keeping them. */
bool ir_pass_recompute(ir_graph *g, char *err, size_t errlen);
/* dce.c: removes nodes whose results are unused, keeping effects. */
bool ir_pass_dce(ir_graph *g, char *err, size_t errlen);

/* ---- pass manager (pass.c) ---- */

typedef bool (*ir_pass_fn)(ir_graph *g, char *err, size_t errlen);

typedef struct ir_pass_info {
  const char *name;  /* --print-after=NAME */
  const char *stage; /* the stage reached after it: --stage=STAGE */
  ir_pass_fn run;
} ir_pass_info;

/* The pipeline in order; *count set to its length. */
const ir_pass_info *ir_pipeline(int *count);

typedef struct ir_pass_options {
  const char *stop_after_stage; /* NULL: run everything */
  const char *print_after;      /* pass name, or NULL */
  bool print_after_all;
  bool verify_each; /* run the verifier after every pass */
  FILE *print_out;
  /* Comma-separated fusions to skip ("attention"): pass fuse_NAME does
   * not run. An unknown name is an error. */
  const char *no_fuse;
} ir_pass_options;

/* The fusions --no-fuse knows, as "attention, ..." (for messages). */
const char *ir_fusion_names(void);
/* Whether every word of a --no-fuse list names a fusion; else a message. */
bool ir_fusion_list_ok(const char *list, char *err, size_t errlen);

/* Runs the pipeline; false with a message in err when a pass or the
 * verifier fails, or when a stage or pass name is unknown. */
bool ir_run_pipeline(ir_graph *g, const ir_pass_options *opts, char *err, size_t errlen);

/* ---- analysis (stats.c) ---- */

typedef struct ir_stats {
  int64_t num_params;       /* trainable scalars, each tied weight once */
  int64_t param_bytes;
  int64_t buffer_bytes;     /* non-trainable state */
  int64_t input_bytes;
  int64_t activation_bytes; /* every non-source result */
  int64_t flops;            /* forward, multiply-add = 2 */
} ir_stats;

void ir_graph_stats(const ir_graph *g, ir_stats *out);
int64_t ir_node_flops(const ir_node *node);

#endif
