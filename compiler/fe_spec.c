/* fe_spec.c: the top level of a spec, checked section by section.
 *
 * Every problem is reported where it is (file:line:col) and reading goes
 * on past it where that is safe, so one run shows most mistakes. A dim
 * whose value could not be computed is remembered as "poisoned": later
 * uses of it fail quietly instead of repeating the first error. Names in
 * the graph are resolved by fe_build.c, not here. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/fe.h"

static const char *const top_keys[] = {"model", "dims",    "inputs", "blocks",
                                       "graph", "outputs", "train"};
static const char *const block_keys[] = {"args", "body", "returns"};
static const char *const train_keys[] = {"loss",       "optimizer", "schedule",  "grad_clip",
                                         "accumulate", "precision", "recompute", "seed"};
enum { NUM_TOP_KEYS = 7, NUM_BLOCK_KEYS = 3, NUM_TRAIN_KEYS = 8 };

/* The dtypes a spec may name (ir has more, such as f64, for internal use). */
static const struct {
  const char *name;
  ir_dtype dtype;
} spec_dtypes[] = {{"f32", IR_f32}, {"bf16", IR_bf16}, {"f16", IR_f16},
                   {"i32", IR_i32}, {"i64", IR_i64},   {"u8", IR_u8}};
enum { NUM_SPEC_DTYPES = 6 };

typedef struct reader {
  ir_arena *arena;
  diag_engine *diag;
  fe_spec *spec;
  const fe_yaml_node *dims_map; /* while dims are read: for "defined later" */
  const char *defining;         /* the dim being defined */
  const char **poisoned;
  int num_poisoned, cap_poisoned;
} reader;

/* ---- small helpers ---- */

static bool is_null(const fe_yaml_node *n) {
  if (!n) return true;
  if (n->kind != FE_YAML_SCALAR || n->style != FE_YAML_PLAIN) return false;
  return n->length == 0 || strcmp(n->value, "~") == 0 || strcmp(n->value, "null") == 0;
}

static const char *kind_name(const fe_yaml_node *n) {
  if (is_null(n)) return "nothing";
  if (n->kind == FE_YAML_MAPPING) return n->count ? "a mapping" : "an empty mapping";
  if (n->kind == FE_YAML_SEQUENCE) return n->count ? "a list" : "an empty list";
  return "a scalar";
}

static bool is_identifier(const char *s, size_t len) {
  if (len == 0 || strlen(s) != len) return false;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

static bool is_c_keyword(const char *s) {
  static const char *const words[] = {
      "auto",           "break",        "case",     "char",     "const",      "continue",
      "default",        "do",           "double",   "else",     "enum",       "extern",
      "float",          "for",          "goto",     "if",       "inline",     "int",
      "long",           "register",     "restrict", "return",   "short",      "signed",
      "sizeof",         "static",       "struct",   "switch",   "typedef",    "union",
      "unsigned",       "void",         "volatile", "while",    "_Alignas",   "_Alignof",
      "_Atomic",        "_Bool",        "_Complex", "_Generic", "_Imaginary", "_Noreturn",
      "_Static_assert", "_Thread_local"};
  for (size_t i = 0; i < sizeof words / sizeof *words; i++)
    if (strcmp(s, words[i]) == 0) return true;
  return false;
}

static bool spec_dtype(const char *name, ir_dtype *out) {
  for (int i = 0; i < NUM_SPEC_DTYPES; i++) {
    if (strcmp(name, spec_dtypes[i].name) != 0) continue;
    *out = spec_dtypes[i].dtype;
    return true;
  }
  return false;
}

static bool is_dtype_name(const char *name) {
  ir_dtype unused;
  return spec_dtype(name, &unused);
}

static void *alloc_array(reader *r, int count, size_t size) {
  return ir_arena_alloc(r->arena, (size_t)(count > 0 ? count : 1) * size);
}

static bool is_poisoned(const reader *r, const char *name) {
  for (int i = 0; i < r->num_poisoned; i++)
    if (strcmp(r->poisoned[i], name) == 0) return true;
  return false;
}

static void poison(reader *r, const char *name) {
  if (r->num_poisoned == r->cap_poisoned) {
    int cap = r->cap_poisoned ? 2 * r->cap_poisoned : 8;
    const char **grown =
        ir_arena_grow(r->arena, r->poisoned, (size_t)r->cap_poisoned * sizeof *grown,
                      (size_t)cap * sizeof *grown);
    if (!grown) return;
    r->poisoned = grown;
    r->cap_poisoned = cap;
  }
  r->poisoned[r->num_poisoned++] = name;
}

/* "did you mean 'dims'?" when one key is close, else the list of keys. */
static const char *key_hint(reader *r, const char *word, const char *const *keys, int count) {
  const char *near = diag_suggest(word, keys, count);
  if (near) return ir_arena_printf(r->arena, "did you mean '%s'?", near);
  char *list = ir_arena_strdup(r->arena, "expected one of ");
  for (int i = 0; i < count && list; i++)
    list = ir_arena_printf(r->arena, "%s%s%s", list, i ? ", " : "", keys[i]);
  return list ? list : "";
}

/* Reports keys of map not in keys; *suggested collects the known keys a
 * typo was taken for, so that "missing 'args'" is not said after
 * "unknown key 'arg'; did you mean 'args'?". */
static void check_keys(reader *r, const fe_yaml_node *map, const char *const *keys, int count,
                       const char *what, const char *where, unsigned *suggested) {
  for (int i = 0; i < map->count && !diag_full(r->diag); i++) {
    const fe_yaml_node *key = map->keys[i];
    bool known = false;
    for (int k = 0; k < count && !known; k++) known = strcmp(key->value, keys[k]) == 0;
    if (known) continue;
    const char *near = diag_suggest(key->value, keys, count);
    for (int k = 0; near && k < count; k++)
      if (keys[k] == near) *suggested |= 1u << k;
    diag_error(r->diag, key->loc, "unknown %s '%s'%s; %s", what, key->value, where,
               key_hint(r, key->value, keys, count));
  }
}

static bool was_suggested(unsigned suggested, const char *const *keys, int count, const char *key) {
  for (int k = 0; k < count; k++)
    if (strcmp(keys[k], key) == 0) return (suggested >> k) & 1u;
  return false;
}

/* ---- evaluating integer and real expressions ---- */

static bool eval_int(reader *r, const fe_expr *e, int64_t *out);

static void report_unknown_dim(reader *r, const fe_expr *e) {
  const fe_spec *spec = r->spec;
  if (r->defining && strcmp(e->name, r->defining) == 0) {
    diag_error(r->diag, e->loc, "dim '%s' used in its own definition", e->name);
    return;
  }
  const fe_yaml_node *map = r->dims_map;
  for (int i = 0; map && i < map->count; i++) {
    if (strcmp(map->keys[i]->value, e->name) != 0) continue;
    diag_error(r->diag, e->loc, "dim '%s' used before its definition", e->name);
    diag_note(r->diag, map->keys[i]->loc, "'%s' is defined here", e->name);
    return;
  }
  const char **names = alloc_array(r, spec->num_dims, sizeof *names);
  for (int i = 0; names && i < spec->num_dims; i++) names[i] = spec->dims[i].name;
  const char *near = names ? diag_suggest(e->name, names, spec->num_dims) : NULL;
  if (near)
    diag_error(r->diag, e->loc, "unknown dim '%s'; did you mean '%s'?", e->name, near);
  else
    diag_error(r->diag, e->loc, "unknown dim '%s'", e->name);
}

static bool eval_name(reader *r, const fe_expr *e, int64_t *out) {
  if (fe_spec_dim(r->spec, e->name, out)) return true;
  if (!is_poisoned(r, e->name)) report_unknown_dim(r, e);
  return false;
}

/* "D/H" for the divisibility message: the operands as written, no spaces
 * around the operator itself. */
static const char *division_text(reader *r, const fe_expr *e) {
  const char *lhs = fe_expr_format(r->arena, e->lhs), *rhs = fe_expr_format(r->arena, e->rhs);
  bool lp = e->lhs->kind == FE_EXPR_BINARY && strchr("+-", e->lhs->op);
  bool rp = e->rhs->kind == FE_EXPR_BINARY;
  return ir_arena_printf(r->arena, "%s%s%s/%s%s%s", lp ? "(" : "", lhs ? lhs : "?", lp ? ")" : "",
                         rp ? "(" : "", rhs ? rhs : "?", rp ? ")" : "");
}

static bool eval_binary(reader *r, const fe_expr *e, int64_t a, int64_t b, int64_t *out) {
  bool overflow = false;
  switch (e->op) {
  case '+': overflow = __builtin_add_overflow(a, b, out); break;
  case '-': overflow = __builtin_sub_overflow(a, b, out); break;
  case '*': overflow = __builtin_mul_overflow(a, b, out); break;
  case '/':
    if (b == 0) {
      diag_error(r->diag, e->loc, "division by zero");
      return false;
    }
    if (a == INT64_MIN && b == -1) {
      overflow = true;
      break;
    }
    if (a % b != 0) {
      diag_error(r->diag, e->loc, "%s: %lld is not divisible by %lld", division_text(r, e),
                 (long long)a, (long long)b);
      return false;
    }
    *out = a / b;
    break;
  default:
    diag_error(r->diag, e->loc, "'%c' cannot be used in an integer expression", e->op);
    return false;
  }
  if (overflow) diag_error(r->diag, e->loc, "integer overflow");
  return !overflow;
}

static const char *expr_kind_name(reader *r, const fe_expr *e) {
  switch (e->kind) {
  case FE_EXPR_CALL: return ir_arena_printf(r->arena, "a call to '%s'", e->name);
  case FE_EXPR_LIST: return "a list";
  case FE_EXPR_STRING: return "a string";
  default: return "an expression";
  }
}

static bool eval_int(reader *r, const fe_expr *e, int64_t *out) {
  int64_t a = 0, b = 0;
  switch (e->kind) {
  case FE_EXPR_NUMBER:
    if (!e->is_integer) {
      diag_error(r->diag, e->loc, "expected an integer, got %s", fe_expr_format(r->arena, e));
      return false;
    }
    *out = e->int_value;
    return true;
  case FE_EXPR_NAME: return eval_name(r, e, out);
  case FE_EXPR_NEG:
    if (!eval_int(r, e->lhs, &a)) return false;
    if (a == INT64_MIN) {
      diag_error(r->diag, e->loc, "integer overflow");
      return false;
    }
    *out = -a;
    return true;
  case FE_EXPR_BINARY: {
    bool ok = eval_int(r, e->lhs, &a);
    ok = eval_int(r, e->rhs, &b) && ok;
    return ok && eval_binary(r, e, a, b, out);
  }
  default:
    diag_error(r->diag, e->loc, "expected an integer expression, found %s", expr_kind_name(r, e));
    return false;
  }
}

/* Real-valued: numbers, dims, + - * / (true division). */
static bool eval_real(reader *r, const fe_expr *e, double *out) {
  int64_t dim;
  double a = 0, b = 0;
  switch (e->kind) {
  case FE_EXPR_NUMBER: *out = e->is_integer ? (double)e->int_value : e->number; return true;
  case FE_EXPR_NAME:
    if (!eval_name(r, e, &dim)) return false;
    *out = (double)dim;
    return true;
  case FE_EXPR_NEG:
    if (!eval_real(r, e->lhs, &a)) return false;
    *out = -a;
    return true;
  case FE_EXPR_BINARY: {
    bool ok = eval_real(r, e->lhs, &a);
    ok = eval_real(r, e->rhs, &b) && ok;
    if (!ok) return false;
    if (e->op == '/' && b == 0) {
      diag_error(r->diag, e->loc, "division by zero");
      return false;
    }
    if (e->op == '@') {
      diag_error(r->diag, e->loc, "'@' cannot be used in a number");
      return false;
    }
    *out = e->op == '+' ? a + b : e->op == '-' ? a - b : e->op == '*' ? a * b : a / b;
    return true;
  }
  default:
    diag_error(r->diag, e->loc, "expected a number, found %s", expr_kind_name(r, e));
    return false;
  }
}

bool fe_spec_dim(const fe_spec *spec, const char *name, int64_t *out) {
  for (int i = 0; spec && name && i < spec->num_dims; i++) {
    if (strcmp(spec->dims[i].name, name) != 0) continue;
    if (out) *out = spec->dims[i].value;
    return true;
  }
  return false;
}

bool fe_eval_int(diag_engine *d, const fe_spec *spec, const fe_expr *e, int64_t *out) {
  ir_arena *arena = ir_arena_new();
  if (!arena || !e) {
    ir_arena_free(arena);
    return false;
  }
  fe_spec empty = {0};
  reader r = {.arena = arena, .diag = d, .spec = spec ? (fe_spec *)spec : &empty};
  int64_t value;
  bool ok = eval_int(&r, e, &value);
  if (ok && out) *out = value;
  ir_arena_free(arena);
  return ok;
}

/* ---- names ---- */

/* A name given as a value (an output, an argument, the loss). */
static bool read_name(reader *r, const fe_yaml_node *n, const char *what, fe_name_ref *out) {
  if (is_null(n) || n->kind != FE_YAML_SCALAR) {
    diag_error(r->diag, n->loc, "expected the name of the %s, found %s", what, kind_name(n));
    return false;
  }
  if (!is_identifier(n->value, n->length)) {
    diag_error(r->diag, n->loc, "%s name '%s' is not an identifier", what, n->value);
    return false;
  }
  *out = (fe_name_ref){n->value, n->loc};
  return true;
}

/* A name or a list of names (outputs, returns); args must be a list.
 * Duplicates are errors. */
static fe_name_ref *read_names(reader *r, const fe_yaml_node *n, const char *what, bool one_ok,
                               const char *section, int *count) {
  *count = 0;
  if (n->kind == FE_YAML_SCALAR && one_ok && !is_null(n)) {
    fe_name_ref *one = alloc_array(r, 1, sizeof *one);
    if (one && read_name(r, n, what, one)) *count = 1;
    return one;
  }
  if (n->kind != FE_YAML_SEQUENCE) {
    diag_error(r->diag, n->loc, "%s must be a list of names, found %s", section, kind_name(n));
    return NULL;
  }
  fe_name_ref *names = alloc_array(r, n->count, sizeof *names);
  for (int i = 0; names && i < n->count && !diag_full(r->diag); i++) {
    fe_name_ref ref;
    if (!read_name(r, n->items[i], what, &ref)) continue;
    bool seen = false;
    for (int j = 0; j < *count && !seen; j++) {
      if (strcmp(names[j].name, ref.name) != 0) continue;
      diag_error(r->diag, ref.loc, "duplicate %s '%s'", what, ref.name);
      diag_note(r->diag, names[j].loc, "first listed here");
      seen = true;
    }
    if (!seen) names[(*count)++] = ref;
  }
  return names;
}

/* ---- model, dims, inputs ---- */

static void read_model(reader *r, const fe_yaml_node *root) {
  const fe_yaml_node *n = fe_yaml_get(root, "model");
  if (!n) {
    diag_error(r->diag, root->loc, "missing 'model'");
    return;
  }
  if (is_null(n) || n->kind != FE_YAML_SCALAR) {
    diag_error(r->diag, n->loc, "'model' must be a C identifier, found %s", kind_name(n));
  } else if (!is_identifier(n->value, n->length)) {
    diag_error(r->diag, n->loc, "model name '%s' is not a C identifier", n->value);
  } else if (is_c_keyword(n->value)) {
    diag_error(r->diag, n->loc, "model name '%s' is a C keyword", n->value);
  } else {
    r->spec->model = n->value;
    r->spec->model_loc = n->loc;
  }
}

/* One `NAME: expr` of dims, evaluated over the dims before it; false
 * (after reporting) when it has no value. */
static bool read_dim(reader *r, const fe_yaml_node *key, const fe_yaml_node *value) {
  const char *name = key->value;
  if (!is_identifier(name, key->length)) {
    diag_error(r->diag, key->loc, "dim name '%s' is not an identifier", name);
    return false;
  }
  if (is_dtype_name(name)) {
    diag_error(r->diag, key->loc, "dim name '%s' is a dtype name", name);
    return false;
  }
  if (is_null(value) || value->kind != FE_YAML_SCALAR) {
    diag_error(r->diag, is_null(value) ? key->loc : value->loc,
               "dim '%s' must be an integer expression, found %s", name, kind_name(value));
    return false;
  }
  fe_expr *e = fe_parse_scalar(r->arena, r->diag, value);
  int64_t v;
  r->defining = name;
  bool ok = e && eval_int(r, e, &v);
  r->defining = NULL;
  if (!ok) return false;
  if (v <= 0) {
    diag_error(r->diag, value->loc, "dim '%s' must be positive, got %lld", name, (long long)v);
    return false;
  }
  r->spec->dims[r->spec->num_dims++] = (fe_dim){name, v, key->loc};
  return true;
}

static void read_dims(reader *r, const fe_yaml_node *n) {
  if (!n) return;
  if (n->kind != FE_YAML_MAPPING) {
    if (!is_null(n))
      diag_error(r->diag, n->loc, "'dims' must be a mapping of name: value, found %s",
                 kind_name(n));
    return;
  }
  r->spec->dims = alloc_array(r, n->count, sizeof *r->spec->dims);
  if (!r->spec->dims) return;
  r->dims_map = n;
  for (int i = 0; i < n->count && !diag_full(r->diag); i++)
    if (!read_dim(r, n->keys[i], n->values[i])) poison(r, n->keys[i]->value);
  r->dims_map = NULL;
}

static bool read_input_dims(reader *r, const char *name, const fe_expr *list, ir_type *type) {
  if (list->num_args > IR_MAX_RANK) {
    diag_error(r->diag, list->loc, "input '%s' has %d dims; at most %d are supported", name,
               list->num_args, IR_MAX_RANK);
    return false;
  }
  bool ok = true;
  type->rank = list->num_args;
  for (int i = 0; i < list->num_args; i++) {
    const fe_expr *e = list->args[i].value;
    int64_t v = 0;
    if (!eval_int(r, e, &v)) {
      ok = false;
    } else if (v <= 0) {
      diag_error(r->diag, e->loc, "dimension of input '%s' must be positive, got %lld", name,
                 (long long)v);
      ok = false;
    }
    type->dims[i] = v;
  }
  return ok;
}

static void report_unknown_dtype(reader *r, const fe_expr *dtype) {
  const char *names[NUM_SPEC_DTYPES];
  for (int i = 0; i < NUM_SPEC_DTYPES; i++) names[i] = spec_dtypes[i].name;
  /* f64 exists in the IR but not in specs; i64, one letter away, is not
   * what its writer meant. */
  const char *near =
      strcmp(dtype->name, "f64") == 0 ? NULL : diag_suggest(dtype->name, names, NUM_SPEC_DTYPES);
  if (near)
    diag_error(r->diag, dtype->loc, "unknown dtype '%s'; did you mean '%s'?", dtype->name, near);
  else
    diag_error(r->diag, dtype->loc,
               "unknown dtype '%s'; expected one of f32, bf16, f16, i32, i64, u8", dtype->name);
}

static void read_input(reader *r, const fe_yaml_node *key, const fe_yaml_node *value) {
  const char *name = key->value;
  if (!is_identifier(name, key->length)) {
    diag_error(r->diag, key->loc, "input name '%s' is not an identifier", name);
    return;
  }
  for (int i = 0; i < r->spec->num_dims; i++) {
    if (strcmp(r->spec->dims[i].name, name) != 0) continue;
    diag_error(r->diag, key->loc, "input '%s' has the same name as a dim", name);
    diag_note(r->diag, r->spec->dims[i].loc, "dim '%s' is defined here", name);
    return;
  }
  if (is_null(value) || value->kind != FE_YAML_SCALAR) {
    diag_error(r->diag, is_null(value) ? key->loc : value->loc,
               "input '%s' must be a type such as i32[B, T], found %s", name, kind_name(value));
    return;
  }
  fe_expr *dtype, *dims;
  if (!fe_parse_input_type(r->arena, r->diag, value, &dtype, &dims)) return;
  ir_type type = {0};
  bool ok = spec_dtype(dtype->name, &type.dtype);
  if (!ok) report_unknown_dtype(r, dtype);
  if (!read_input_dims(r, name, dims, &type) || !ok) return;
  r->spec->inputs[r->spec->num_inputs++] = (fe_input){name, type, key->loc};
}

static void read_inputs(reader *r, const fe_yaml_node *n) {
  if (!n) return;
  if (n->kind != FE_YAML_MAPPING) {
    if (!is_null(n))
      diag_error(r->diag, n->loc, "'inputs' must be a mapping of name: type, found %s",
                 kind_name(n));
    return;
  }
  r->spec->inputs = alloc_array(r, n->count, sizeof *r->spec->inputs);
  for (int i = 0; r->spec->inputs && i < n->count && !diag_full(r->diag); i++)
    read_input(r, n->keys[i], n->values[i]);
}

/* ---- statements, blocks, graph, outputs ---- */

static bool read_stmt(reader *r, const fe_yaml_node *item, const char *where, fe_stmt *out) {
  if (item->kind != FE_YAML_MAPPING || item->count == 0) {
    diag_error(r->diag, item->loc, "%s entry must be '- name: expression', found %s", where,
               kind_name(item));
    return false;
  }
  if (item->count > 1) {
    diag_error(r->diag, item->keys[1]->loc,
               "%s entry holds one 'name: expression'; start a new '- ' item for '%s'", where,
               item->keys[1]->value);
    return false;
  }
  const fe_yaml_node *key = item->keys[0], *value = item->values[0];
  if (!is_identifier(key->value, key->length)) {
    diag_error(r->diag, key->loc, "node name '%s' is not an identifier", key->value);
    return false;
  }
  if (is_null(value)) {
    diag_error(r->diag, key->loc, "missing expression for '%s'", key->value);
    return false;
  }
  if (value->kind != FE_YAML_SCALAR) {
    diag_error(r->diag, value->loc, "the value of '%s' must be an expression, found %s%s",
               key->value, kind_name(value),
               value->kind == FE_YAML_SEQUENCE ? "; quote an expression that starts with '['" : "");
    return false;
  }
  *out = (fe_stmt){key->value, key->loc, fe_parse_scalar(r->arena, r->diag, value)};
  return out->expr != NULL;
}

static fe_stmt *read_stmts(reader *r, const fe_yaml_node *n, const char *section, const char *where,
                           int *count) {
  *count = 0;
  if (n->kind != FE_YAML_SEQUENCE || n->count == 0) {
    diag_error(r->diag, n->loc, "%s must be a list of '- name: expression' entries, found %s",
               section, kind_name(n));
    return NULL;
  }
  fe_stmt *stmts = alloc_array(r, n->count, sizeof *stmts);
  for (int i = 0; stmts && i < n->count && !diag_full(r->diag); i++)
    if (read_stmt(r, n->items[i], where, &stmts[*count])) (*count)++;
  return stmts;
}

static void read_block(reader *r, const fe_yaml_node *key, const fe_yaml_node *value) {
  fe_block *b = &r->spec->blocks[r->spec->num_blocks];
  *b = (fe_block){.name = key->value, .loc = key->loc};
  if (!is_identifier(key->value, key->length)) {
    diag_error(r->diag, key->loc, "block name '%s' is not an identifier", key->value);
    return;
  }
  if (value->kind != FE_YAML_MAPPING) {
    diag_error(r->diag, is_null(value) ? key->loc : value->loc,
               "block '%s' must be a mapping with args, body and returns, found %s", b->name,
               kind_name(value));
    return;
  }
  unsigned suggested = 0;
  const char *where = ir_arena_printf(r->arena, " in block '%s'", b->name);
  check_keys(r, value, block_keys, NUM_BLOCK_KEYS, "key", where ? where : "", &suggested);
  const fe_yaml_node *parts[NUM_BLOCK_KEYS]; /* all three are required */
  for (int k = 0; k < NUM_BLOCK_KEYS; k++) {
    parts[k] = fe_yaml_get(value, block_keys[k]);
    if (!parts[k] && !was_suggested(suggested, block_keys, NUM_BLOCK_KEYS, block_keys[k]))
      diag_error(r->diag, key->loc, "block '%s' is missing '%s'", b->name, block_keys[k]);
  }
  const char *section = ir_arena_printf(r->arena, "the body of block '%s'", b->name);
  if (parts[0]) b->args = read_names(r, parts[0], "argument", false, "'args'", &b->num_args);
  if (parts[1]) b->body = read_stmts(r, parts[1], section, "a block body", &b->num_body);
  if (parts[2]) b->returns = read_names(r, parts[2], "return", true, "'returns'", &b->num_returns);
  r->spec->num_blocks++;
}

static void read_blocks(reader *r, const fe_yaml_node *n) {
  if (!n) return;
  if (n->kind != FE_YAML_MAPPING) {
    if (!is_null(n))
      diag_error(r->diag, n->loc, "'blocks' must be a mapping of name: block, found %s",
                 kind_name(n));
    return;
  }
  r->spec->blocks = alloc_array(r, n->count, sizeof *r->spec->blocks);
  for (int i = 0; r->spec->blocks && i < n->count && !diag_full(r->diag); i++)
    read_block(r, n->keys[i], n->values[i]);
}

static void read_graph(reader *r, const fe_yaml_node *root, unsigned suggested) {
  const fe_yaml_node *n = fe_yaml_get(root, "graph");
  if (!n) {
    if (!was_suggested(suggested, top_keys, NUM_TOP_KEYS, "graph"))
      diag_error(r->diag, root->loc, "missing 'graph'");
    return;
  }
  r->spec->graph = read_stmts(r, n, "'graph'", "a graph", &r->spec->num_graph);
}

static void read_outputs(reader *r, const fe_yaml_node *root, unsigned suggested) {
  const fe_yaml_node *n = fe_yaml_get(root, "outputs");
  if (!n) {
    if (!was_suggested(suggested, top_keys, NUM_TOP_KEYS, "outputs"))
      diag_error(r->diag, root->loc, "missing 'outputs'");
    return;
  }
  if (n->kind == FE_YAML_SEQUENCE && n->count == 0) {
    diag_error(r->diag, n->loc, "'outputs' is empty");
    return;
  }
  r->spec->outputs = read_names(r, n, "output", true, "'outputs'", &r->spec->num_outputs);
}

/* ---- train ---- */

/* Arguments of a call in the train section, bound to parameter names:
 * positional ones in order (at most max_positional), then keywords. */
typedef struct call_args {
  const char *callee;
  const char *const *params;
  int num_params;
  const fe_expr *values[8];
} call_args;

static bool bind_args(reader *r, const fe_expr *call, call_args *a, int max_positional) {
  bool ok = true;
  memset(a->values, 0, sizeof a->values);
  for (int i = 0; call->kind == FE_EXPR_CALL && i < call->num_args; i++) {
    const fe_arg *arg = &call->args[i];
    int slot = -1;
    if (!arg->keyword) {
      if (i >= max_positional) {
        diag_error(r->diag, arg->value->loc,
                   "too many positional arguments for %s(): expected at most %d", a->callee,
                   max_positional);
        ok = false;
        continue;
      }
      slot = i;
    }
    for (int k = 0; arg->keyword && k < a->num_params; k++)
      if (strcmp(arg->keyword, a->params[k]) == 0) slot = k;
    if (slot < 0) {
      diag_error(r->diag, arg->keyword_loc, "unknown keyword argument '%s' for %s(); %s",
                 arg->keyword, a->callee, key_hint(r, arg->keyword, a->params, a->num_params));
      ok = false;
    } else if (a->values[slot]) {
      diag_error(r->diag, arg->keyword_loc, "'%s' is given both by position and by keyword",
                 arg->keyword);
      ok = false;
    } else {
      a->values[slot] = arg->value;
    }
  }
  return ok;
}

static bool real_param(reader *r, const fe_expr *e, const char *name, double *out) {
  double v;
  if (!e) return true;
  if (!eval_real(r, e, &v)) return false;
  if (v < 0) {
    diag_error(r->diag, e->loc, "%s must be non-negative, got %g", name, v);
    return false;
  }
  *out = v;
  return true;
}

static bool int_param(reader *r, const fe_expr *e, const char *name, int64_t min, int64_t *out) {
  int64_t v;
  if (!e) return true;
  if (!eval_int(r, e, &v)) return false;
  if (v < min) {
    if (min == 0)
      diag_error(r->diag, e->loc, "%s must be non-negative, got %lld", name, (long long)v);
    else
      diag_error(r->diag, e->loc, "%s must be at least %lld, got %lld", name, (long long)min,
                 (long long)v);
    return false;
  }
  *out = v;
  return true;
}

static bool bool_param(reader *r, const fe_expr *e, const char *name, bool *out) {
  if (!e) return true;
  if (e->kind == FE_EXPR_NAME && (!strcmp(e->name, "true") || !strcmp(e->name, "false"))) {
    *out = e->name[0] == 't';
    return true;
  }
  diag_error(r->diag, e->loc, "%s must be true or false, got %s", name,
             fe_expr_format(r->arena, e));
  return false;
}

static bool read_betas(reader *r, const fe_expr *e, fe_train *t) {
  if (!e) return true;
  if (e->kind != FE_EXPR_LIST || e->num_args != 2) {
    diag_error(r->diag, e->loc, "betas must be a list of two numbers, such as [0.9, 0.999]");
    return false;
  }
  double beta[2];
  bool ok = true;
  for (int i = 0; i < 2; i++) {
    const fe_expr *item = e->args[i].value;
    if (!eval_real(r, item, &beta[i])) {
      ok = false;
    } else if (beta[i] < 0 || beta[i] >= 1) {
      diag_error(r->diag, item->loc, "betas[%d] must be in [0, 1), got %g", i, beta[i]);
      ok = false;
    }
  }
  if (ok) t->beta1 = beta[0], t->beta2 = beta[1];
  return ok;
}

static const char *const adamw_params[] = {"lr", "betas", "eps", "weight_decay"};
static const char *const sgd_params[] = {"lr", "momentum", "nesterov", "weight_decay"};

static void read_adamw(reader *r, const fe_expr *call, fe_train *t) {
  call_args a = {"adamw", adamw_params, 4, {0}};
  if (!bind_args(r, call, &a, 1)) return;
  real_param(r, a.values[0], "lr", &t->lr);
  read_betas(r, a.values[1], t);
  real_param(r, a.values[2], "eps", &t->eps);
  real_param(r, a.values[3], "weight_decay", &t->weight_decay);
}

static void read_sgd(reader *r, const fe_expr *call, fe_train *t) {
  call_args a = {"sgd", sgd_params, 4, {0}};
  t->optimizer = FE_OPT_SGD;
  t->weight_decay = 0;
  if (!bind_args(r, call, &a, 1)) return;
  if (!a.values[0]) diag_error(r->diag, call->loc, "sgd() requires lr");
  real_param(r, a.values[0], "lr", &t->lr);
  bool ok = real_param(r, a.values[1], "momentum", &t->momentum);
  ok = bool_param(r, a.values[2], "nesterov", &t->nesterov) && ok;
  real_param(r, a.values[3], "weight_decay", &t->weight_decay);
  if (ok && t->nesterov && t->momentum <= 0)
    diag_error(r->diag, a.values[2]->loc, "nesterov=true requires momentum > 0");
}

/* `adamw` alone reads as `adamw()`. */
static const fe_expr *read_call(reader *r, const fe_yaml_node *n, const char *what) {
  const fe_expr *e = fe_parse_scalar(r->arena, r->diag, n);
  if (!e) return NULL;
  if (e->kind != FE_EXPR_CALL && e->kind != FE_EXPR_NAME) {
    diag_error(r->diag, e->loc, "%s must be a call such as %s, found %s", what,
               strcmp(what, "optimizer") == 0 ? "adamw(lr=3e-4)" : "cosine(warmup=100, steps=5000)",
               fe_expr_format(r->arena, e));
    return NULL;
  }
  return e;
}

static void read_optimizer(reader *r, const fe_yaml_node *n, fe_train *t) {
  t->optimizer_loc = n->loc;
  const fe_expr *e = read_call(r, n, "optimizer");
  if (!e) return;
  t->optimizer_loc = e->loc;
  if (strcmp(e->name, "adamw") == 0)
    read_adamw(r, e, t);
  else if (strcmp(e->name, "sgd") == 0)
    read_sgd(r, e, t);
  else
    diag_error(r->diag, e->loc, "unknown optimizer '%s'; expected adamw or sgd", e->name);
}

static const char *const schedule_params[] = {"warmup", "steps", "min_lr"};

static void read_schedule(reader *r, const fe_yaml_node *n, fe_train *t) {
  t->schedule_loc = n->loc;
  const fe_expr *e = read_call(r, n, "schedule");
  if (!e) return;
  t->schedule_loc = e->loc;
  bool constant = strcmp(e->name, "constant") == 0;
  if (constant)
    t->schedule = FE_SCHED_CONSTANT;
  else if (strcmp(e->name, "cosine") == 0)
    t->schedule = FE_SCHED_COSINE;
  else if (strcmp(e->name, "linear") == 0)
    t->schedule = FE_SCHED_LINEAR;
  else {
    diag_error(r->diag, e->loc, "unknown schedule '%s'; expected constant, cosine or linear",
               e->name);
    return;
  }
  call_args a = {e->name, schedule_params, constant ? 1 : 3, {0}};
  if (!bind_args(r, e, &a, a.num_params)) return;
  bool ok = int_param(r, a.values[0], "warmup", 0, &t->warmup);
  if (constant) return;
  if (!a.values[1]) {
    diag_error(r->diag, e->loc, "%s() requires steps", e->name);
    ok = false;
  }
  ok = int_param(r, a.values[1], "steps", 1, &t->steps) && ok;
  real_param(r, a.values[2], "min_lr", &t->min_lr);
  if (ok && t->warmup > t->steps)
    diag_error(r->diag, a.values[0]->loc, "warmup (%lld) must not exceed steps (%lld)",
               (long long)t->warmup, (long long)t->steps);
}

/* precision and recompute: one of two words. */
static const char *read_word(reader *r, const fe_yaml_node *n, const char *key, const char *a,
                             const char *b) {
  if (n->kind == FE_YAML_SCALAR && (strcmp(n->value, a) == 0 || strcmp(n->value, b) == 0))
    return n->value;
  if (n->kind == FE_YAML_SCALAR && !is_null(n))
    diag_error(r->diag, n->loc, "%s must be %s or %s, got '%s'", key, a, b, n->value);
  else
    diag_error(r->diag, n->loc, "%s must be %s or %s, found %s", key, a, b, kind_name(n));
  return NULL;
}

static void read_train_value(reader *r, const char *key, const fe_yaml_node *n, fe_train *t) {
  const fe_expr *e = NULL;
  int64_t seed = 0;
  const char *word;
  if (!strcmp(key, "loss")) {
    read_name(r, n, "loss", &t->loss);
  } else if (!strcmp(key, "optimizer")) {
    read_optimizer(r, n, t);
  } else if (!strcmp(key, "schedule")) {
    read_schedule(r, n, t);
  } else if (!strcmp(key, "precision")) {
    if ((word = read_word(r, n, key, "f32", "bf16")))
      t->precision = word[0] == 'f' ? IR_f32 : IR_bf16;
  } else if (!strcmp(key, "recompute")) {
    if ((word = read_word(r, n, key, "none", "blocks"))) t->recompute_blocks = word[0] == 'b';
  } else if ((e = fe_parse_scalar(r->arena, r->diag, n))) {
    if (!strcmp(key, "grad_clip"))
      real_param(r, e, key, &t->grad_clip);
    else if (!strcmp(key, "accumulate"))
      int_param(r, e, key, 1, &t->accumulate);
    else if (int_param(r, e, key, 0, &seed))
      t->seed = (uint64_t)seed;
  }
}

static void read_train(reader *r, const fe_yaml_node *root) {
  const fe_yaml_node *key = NULL, *n = NULL;
  for (int i = 0; i < root->count && !n; i++)
    if (!strcmp(root->keys[i]->value, "train")) key = root->keys[i], n = root->values[i];
  if (!n) return;
  fe_train *t = &r->spec->train;
  *t = (fe_train){.loc = key->loc,
                  .optimizer = FE_OPT_ADAMW,
                  .optimizer_loc = key->loc,
                  .lr = 1e-3,
                  .beta1 = 0.9,
                  .beta2 = 0.999,
                  .eps = 1e-8,
                  .weight_decay = 0.01,
                  .schedule = FE_SCHED_CONSTANT,
                  .schedule_loc = key->loc,
                  .accumulate = 1,
                  .precision = IR_f32,
                  .seed = 1337};
  r->spec->has_train = true;
  if (n->kind != FE_YAML_MAPPING) {
    diag_error(r->diag, is_null(n) ? key->loc : n->loc,
               "'train' must be a mapping with at least 'loss', found %s", kind_name(n));
    return;
  }
  unsigned suggested = 0;
  check_keys(r, n, train_keys, NUM_TRAIN_KEYS, "key", " in train", &suggested);
  if (!fe_yaml_get(n, "loss") && !was_suggested(suggested, train_keys, NUM_TRAIN_KEYS, "loss"))
    diag_error(r->diag, key->loc, "missing 'loss' in train");
  for (int i = 0; i < NUM_TRAIN_KEYS && !diag_full(r->diag); i++) {
    const fe_yaml_node *value = fe_yaml_get(n, train_keys[i]);
    if (value) read_train_value(r, train_keys[i], value, t);
  }
}

/* ---- the whole spec ---- */

fe_spec *fe_spec_read(ir_arena *arena, diag_engine *d, const char *filename,
                      const fe_yaml_node *root) {
  if (!root) return NULL;
  int errors = diag_error_count(d);
  fe_spec *spec = ir_arena_alloc(arena, sizeof *spec);
  if (!spec) return NULL;
  spec->file = filename;
  if (root->kind != FE_YAML_MAPPING) {
    diag_error(d, root->loc,
               "a spec must be a mapping with model, dims, inputs, graph, ..., found %s",
               kind_name(root));
    return NULL;
  }
  reader r = {.arena = arena, .diag = d, .spec = spec};
  unsigned suggested = 0;
  check_keys(&r, root, top_keys, NUM_TOP_KEYS, "top-level key", "", &suggested);
  if (!diag_full(d)) read_model(&r, root);
  if (!diag_full(d)) read_dims(&r, fe_yaml_get(root, "dims"));
  if (!diag_full(d)) read_inputs(&r, fe_yaml_get(root, "inputs"));
  if (!diag_full(d)) read_blocks(&r, fe_yaml_get(root, "blocks"));
  if (!diag_full(d)) read_graph(&r, root, suggested);
  if (!diag_full(d)) read_outputs(&r, root, suggested);
  if (!diag_full(d)) read_train(&r, root);
  return diag_error_count(d) > errors ? NULL : spec;
}

/* Reads the whole file into the arena, NUL-terminated. */
static char *read_file(ir_arena *arena, const char *path, size_t *len, int *err) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    *err = errno;
    return NULL;
  }
  size_t cap = 4096, n = 0;
  char *buf = ir_arena_alloc(arena, cap);
  while (buf) {
    n += fread(buf + n, 1, cap - 1 - n, f);
    if (n < cap - 1) break;
    buf = ir_arena_grow(arena, buf, n, cap * 2);
    cap *= 2;
  }
  *err = !buf ? ENOMEM : ferror(f) ? (errno ? errno : EIO) : 0;
  fclose(f);
  if (*err) return NULL;
  buf[n] = 0;
  *len = n;
  return buf;
}

fe_spec *fe_spec_load(ir_arena *arena, diag_engine *d, const char *path) {
  size_t len = 0;
  int err = 0;
  errno = 0;
  char *text = path ? read_file(arena, path, &len, &err) : NULL;
  if (!text) {
    diag_error(d, (ir_loc){0}, "cannot read '%s': %s", path ? path : "(null)",
               strerror(err ? err : EINVAL));
    return NULL;
  }
  diag_add_file(d, path, text, len);
  fe_yaml_node *root = fe_yaml_load(arena, d, path, text, len);
  return fe_spec_read(arena, d, path, root);
}
