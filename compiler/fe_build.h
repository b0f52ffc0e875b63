/* fe_build.h: internals shared by the graph builder (fe_build.c: scopes,
 * statements, blocks, repeat, naming) and the op emitters (fe_ops.c: one
 * function per spec op, turning a bound call into IR nodes). */
#ifndef MODELC_FE_BUILD_H
#define MODELC_FE_BUILD_H

#include "compiler/fe.h"

enum { FE_MAX_ARGS = 16 };

typedef struct fe_binding {
  const char *name;
  ir_value *value; /* NULL: poisoned by an earlier error; uses stay quiet */
  ir_loc loc;
  bool holds_params;
} fe_binding;

typedef struct fe_scope {
  fe_binding *items;
  int count, cap;
  const fe_stmt *stmts; /* the statements of this scope, for "used before" */
  int num_stmts;
  int current;           /* index of the statement being built */
  const char *prefix;    /* "" at top, "layers.3." inside a repeat */
  const char *label;     /* node scope: "layers.3", NULL at top */
  bool shared;           /* a shared repeat: parameters are reused */
} fe_scope;

typedef struct fe_counter {
  const char *op;
  int count;
} fe_counter;

typedef struct fe_builder {
  ir_arena *arena;
  diag_engine *diag;
  const fe_spec *spec;
  ir_graph *graph;
  fe_mode mode;
  fe_scope *scope;
  /* the statement being built */
  const fe_stmt *stmt;
  const fe_expr *outermost; /* the layer call that takes the NODE name */
  fe_counter counters[32];  /* NODE.OP numbering, per statement */
  int num_counters;
  int params_made; /* parameters created by this statement */
  int dropout_streams;
  const char *call_stack[64]; /* blocks being expanded, for cycles */
  int depth;
} fe_builder;

/* A call's arguments matched to an op's signature. */
typedef struct fe_call {
  const fe_expr *expr;
  const char *op;
  int num_params;
  const char *const *params; /* signature, positional order */
  const fe_expr *args[FE_MAX_ARGS];
  ir_loc arg_locs[FE_MAX_ARGS];
  const fe_expr *rest[FE_MAX_ARGS]; /* variadic tensors (concat) */
  int num_rest;
  const fe_expr *name_override; /* name="..." */
} fe_call;

/* ---- fe_build.c, used by the emitters ---- */

/* Evaluates an expression to a tensor; numbers become scalar constants
 * of `like`'s dtype (f32 when like is NULL). NULL after an error. */
ir_value *fe_eval_tensor(fe_builder *b, const fe_expr *e);
/* Builds a node and runs its shape rule; shape errors are reported at
 * loc. The node is named for the statement (root) or NODE.op. */
ir_node *fe_emit(fe_builder *b, const fe_expr *at, ir_op op, int n, ir_value *const *inputs);
/* Like fe_emit for a scalar constant of the given dtype. */
ir_value *fe_emit_const(fe_builder *b, const fe_expr *at, ir_dtype dtype, double value);
/* The parameter prefix for a layer call: "attn." (the statement's own
 * name), "y.linear_1." (nested), or the name="..." override. */
const char *fe_layer_prefix(fe_builder *b, const fe_call *call);
/* Creates (or, in a shared repeat, reuses) a parameter or buffer named
 * prefix + suffix. NULL after reporting a duplicate. */
ir_value *fe_make_param(fe_builder *b, const fe_call *call, const char *prefix, const char *suffix,
                        ir_op kind, ir_type type, const char *init, double a, double bb);
/* Builds a call to a block (direct call or one repeat iteration) with
 * the given parameter prefix; returns the block's first return, or NULL.
 * Nodes get the scope `label`, or, when NULL, the prefix without its dot
 * (a shared repeat names its iterations "layers.0", "layers.1", ... while
 * their parameters all keep the prefix "layers."). */
ir_value *fe_call_block(fe_builder *b, const fe_block *block, const fe_expr *at,
                        const char *prefix, const char *label, bool shared, ir_value **args,
                        int num_args, ir_value **returns);
const fe_block *fe_find_block(const fe_builder *b, const char *name);

/* ---- argument access (fe_ops.c) ---- */

bool fe_arg_present(const fe_call *call, const char *name);
const fe_expr *fe_arg_expr(const fe_call *call, const char *name);
/* Typed getters: the default when absent; false after reporting an error. */
bool fe_arg_int(fe_builder *b, const fe_call *call, const char *name, int64_t def, int64_t *out);
bool fe_arg_float(fe_builder *b, const fe_call *call, const char *name, double def, double *out);
bool fe_arg_bool(fe_builder *b, const fe_call *call, const char *name, bool def, bool *out);
/* A bare word from a fixed set (act=gelu, mode=nearest). */
bool fe_arg_word(fe_builder *b, const fe_call *call, const char *name, const char *def,
                 const char *const *allowed, int num_allowed, const char **out);

/* ---- the op table (fe_ops.c) ---- */

/* Evaluates a call expression: an op of the language or a block call.
 * Returns the resulting tensor, or NULL after reporting an error. */
ir_value *fe_eval_call(fe_builder *b, const fe_expr *e);
/* True if the call creates parameters (linear, attention, a block...). */
bool fe_is_layer_call(const fe_builder *b, const fe_expr *e);
/* Names of every op, for "did you mean". */
int fe_op_names(const char **out, int max);

#endif
