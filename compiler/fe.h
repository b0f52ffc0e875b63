/* fe.h: the spec front end: YAML tree, expression lexer and parser, the
 * spec structure, and building the graph IR from it.
 *
 *   text --fe_yaml_load--> fe_yaml_node tree (libyaml, every node located)
 *        --fe_spec_read--> fe_spec (top level checked, dims evaluated,
 *                          expressions parsed into fe_expr trees)
 *        --fe_build_graph--> ir_graph (layer ops, parameters named)
 */
#ifndef MODELC_FE_H
#define MODELC_FE_H

#include <stdbool.h>
#include <stdint.h>

#include "compiler/diag.h"
#include "ir/ir.h"

/* ---- YAML tree (fe_yaml.c) ---- */

typedef enum { FE_YAML_SCALAR, FE_YAML_SEQUENCE, FE_YAML_MAPPING } fe_yaml_kind;

typedef enum {
  FE_YAML_PLAIN,
  FE_YAML_SINGLE_QUOTED,
  FE_YAML_DOUBLE_QUOTED,
  FE_YAML_LITERAL,
  FE_YAML_FOLDED,
} fe_yaml_style;

typedef struct fe_yaml_node fe_yaml_node;
struct fe_yaml_node {
  fe_yaml_kind kind;
  ir_loc loc; /* first character of the node (the quote of a quoted scalar) */
  /* scalar */
  const char *value; /* NUL-terminated, as libyaml delivers it */
  size_t length;
  fe_yaml_style style;
  /* sequence: items; mapping: keys[i] -> values[i] (keys are scalars) */
  int count;
  fe_yaml_node **items;
  fe_yaml_node **keys;
  fe_yaml_node **values;
  /* Set by fe_yaml_load for fe_yaml_offset_loc: the whole source text
   * and the byte offset of `loc` in it (NULL: offsets are counted from
   * loc on one line). */
  const char *source;
  size_t source_len, source_offset;
};

/* Parses text as one YAML document. Syntax errors are reported at
 * libyaml's mark; duplicate mapping keys, anchors/aliases, tags and
 * non-scalar keys are errors. Returns NULL after reporting. An empty
 * document is reported as "empty spec". */
fe_yaml_node *fe_yaml_load(ir_arena *arena, diag_engine *d, const char *filename,
                           const char *text, size_t len);
/* Location of byte `offset` of a scalar's value in the source file,
 * accounting for the quote and for lines folded in plain scalars. */
ir_loc fe_yaml_offset_loc(const fe_yaml_node *scalar, size_t offset);
/* Looks a key up in a mapping; NULL when absent. */
fe_yaml_node *fe_yaml_get(const fe_yaml_node *mapping, const char *key);

/* ---- expressions (fe_lex.c, fe_parse.c) ---- */

typedef enum {
  FE_TOK_EOF,
  FE_TOK_NUMBER,
  FE_TOK_NAME,
  FE_TOK_STRING,
  FE_TOK_PUNCT, /* one of + - * / @ ( ) [ ] , = */
  FE_TOK_ERROR,
} fe_token_kind;

typedef struct fe_token {
  fe_token_kind kind;
  size_t offset, length; /* in the scalar's text */
  char punct;
  bool is_integer;
  int64_t int_value;
  double number;
} fe_token;

typedef struct fe_lexer {
  const char *text;
  size_t length, pos;
  const fe_yaml_node *origin; /* for locations; may be NULL */
  ir_loc base;                /* used when origin is NULL: offset 0 */
  diag_engine *diag;
} fe_lexer;

void fe_lexer_init(fe_lexer *lx, diag_engine *d, const char *text, size_t length,
                   const fe_yaml_node *origin, ir_loc base);
/* Next token; bad characters and malformed numbers are reported and
 * returned as FE_TOK_ERROR. */
fe_token fe_lex_next(fe_lexer *lx);
ir_loc fe_lexer_loc(const fe_lexer *lx, size_t offset);

typedef enum {
  FE_EXPR_NUMBER,
  FE_EXPR_NAME,
  FE_EXPR_STRING,
  FE_EXPR_CALL,
  FE_EXPR_BINARY,
  FE_EXPR_NEG,
  FE_EXPR_LIST,
} fe_expr_kind;

typedef struct fe_expr fe_expr;

typedef struct fe_arg {
  const char *keyword; /* NULL for a positional argument */
  ir_loc keyword_loc;
  fe_expr *value;
} fe_arg;

struct fe_expr {
  fe_expr_kind kind;
  ir_loc loc; /* the first token; for BINARY, the operator */
  bool is_integer;
  int64_t int_value;
  double number;
  const char *name; /* NAME, CALL (callee), STRING (contents) */
  char op;          /* BINARY: + - * / @ */
  fe_expr *lhs, *rhs; /* BINARY; NEG uses lhs */
  int num_args;       /* CALL arguments, LIST items (keyword NULL) */
  fe_arg *args;
};

/* Parses a whole expression from text; reports errors (several where it
 * can resynchronise) and returns NULL if there was any. */
fe_expr *fe_parse_expression(ir_arena *arena, diag_engine *d, const char *text, size_t length,
                             const fe_yaml_node *origin, ir_loc base);
/* Parses a scalar node's value as an expression. */
fe_expr *fe_parse_scalar(ir_arena *arena, diag_engine *d, const fe_yaml_node *scalar);
/* Parses an input type `DTYPE[expr, ...]` (`i32[B, T]`) from a scalar:
 * *dtype is a NAME expression, *dims a LIST (possibly empty). Reports
 * errors and returns false if there was any. */
bool fe_parse_input_type(ir_arena *arena, diag_engine *d, const fe_yaml_node *scalar,
                         fe_expr **dtype, fe_expr **dims);
/* Writes an expression back as text (for messages and tests). */
char *fe_expr_format(ir_arena *arena, const fe_expr *e);

/* ---- the spec (fe_spec.c) ---- */

typedef struct fe_dim {
  const char *name;
  int64_t value;
  ir_loc loc;
} fe_dim;

typedef struct fe_input {
  const char *name;
  ir_type type;
  ir_loc loc;
} fe_input;

/* `- name: expression` in graph or a block body. */
typedef struct fe_stmt {
  const char *name;
  ir_loc name_loc;
  fe_expr *expr;
} fe_stmt;

typedef struct fe_name_ref {
  const char *name;
  ir_loc loc;
} fe_name_ref;

typedef struct fe_block {
  const char *name;
  ir_loc loc;
  int num_args;
  fe_name_ref *args;
  int num_body;
  fe_stmt *body;
  int num_returns;
  fe_name_ref *returns;
} fe_block;

typedef enum { FE_OPT_ADAMW, FE_OPT_SGD } fe_optimizer_kind;
typedef enum { FE_SCHED_CONSTANT, FE_SCHED_COSINE, FE_SCHED_LINEAR } fe_schedule_kind;

typedef struct fe_train {
  ir_loc loc;
  fe_name_ref loss;
  /* optimizer: PyTorch's defaults where the spec leaves a value out */
  fe_optimizer_kind optimizer;
  ir_loc optimizer_loc;
  double lr, beta1, beta2, eps, weight_decay, momentum;
  bool nesterov;
  /* schedule, default constant() */
  fe_schedule_kind schedule;
  ir_loc schedule_loc;
  int64_t warmup, steps;
  double min_lr;
  double grad_clip;   /* 0 = off */
  int64_t accumulate; /* >= 1 */
  ir_dtype precision; /* f32 or bf16 */
  bool recompute_blocks;
  uint64_t seed;
} fe_train;

typedef struct fe_spec {
  const char *file;
  const char *model;
  ir_loc model_loc;
  int num_dims;
  fe_dim *dims;
  int num_inputs;
  fe_input *inputs;
  int num_blocks;
  fe_block *blocks;
  int num_graph;
  fe_stmt *graph;
  int num_outputs;
  fe_name_ref *outputs;
  bool has_train;
  fe_train train;
} fe_spec;

/* Reads the top level: keys, dims (evaluated in order), inputs, blocks,
 * graph statements (expressions parsed), outputs, train. Reports every
 * problem it finds; returns NULL if there was any error. */
fe_spec *fe_spec_read(ir_arena *arena, diag_engine *d, const char *filename,
                      const fe_yaml_node *root);
/* Loads and reads a spec file: fe_yaml_load + fe_spec_read; the file's
 * text is registered with d. */
fe_spec *fe_spec_load(ir_arena *arena, diag_engine *d, const char *path);
/* Value of a dim, or false when there is none of that name. */
bool fe_spec_dim(const fe_spec *spec, const char *name, int64_t *out);

/* Evaluates an integer constant expression over dims (+ - * / and
 * parentheses; / must divide). Reports and returns false on error. */
bool fe_eval_int(diag_engine *d, const fe_spec *spec, const fe_expr *e, int64_t *out);

/* ---- building the graph (fe_build.c) ---- */

/* INFER: outputs only; EVAL: inference semantics (dropout off, running
 * statistics) plus the loss as output "loss"; TRAIN: training semantics
 * and the loss. */
typedef enum { FE_MODE_INFER, FE_MODE_TRAIN, FE_MODE_EVAL } fe_mode;

/* Builds the graph of the spec: inputs, parameters (named by the
 * contract's rule), layer ops and primitives, one output per `outputs:`
 * entry and, in training mode, the loss as output "loss". Shapes and
 * dtypes are checked as nodes are made. NULL after reporting errors. */
ir_graph *fe_build_graph(ir_arena *arena, diag_engine *d, const fe_spec *spec, fe_mode mode);

#endif
