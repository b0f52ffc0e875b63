/* fexpr.c: the expressions of fused_elementwise nodes (ir.h).
 *
 * Text: `%i` is the node's input i, a number is a constant (`inf`,
 * `-inf` and `nan` allowed), and `op(a, b, ...)` applies an elementwise
 * IR op: `mul(add(%0, %1), silu(%2))`. The fuse_elementwise pass writes
 * them, the verifier's shape rule, the interpreter and the lowering read
 * them back. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

typedef struct fparser {
  ir_arena *arena;
  const char *s;
  int num_inputs;
  char *err;
  size_t errlen;
  int depth;
} fparser;

static ir_fexpr *fail(fparser *p, const char *msg) {
  if (p->err && p->errlen && !p->err[0]) snprintf(p->err, p->errlen, "expr: %s at '%.12s'", msg, p->s);
  return NULL;
}

static void skip_space(fparser *p) {
  while (*p->s == ' ') p->s++;
}

static ir_fexpr *node(fparser *p, ir_fexpr_kind kind) {
  ir_fexpr *x = ir_arena_alloc(p->arena, sizeof *x);
  if (x) x->kind = kind;
  return x;
}

static ir_fexpr *parse_expr(fparser *p);

static ir_fexpr *parse_call(fparser *p) {
  const char *start = p->s;
  while ((*p->s >= 'a' && *p->s <= 'z') || *p->s == '_') p->s++;
  char name[32];
  size_t len = (size_t)(p->s - start);
  if (len == 0 || len >= sizeof name) return fail(p, "expected an op name");
  memcpy(name, start, len);
  name[len] = 0;
  ir_fexpr *x = node(p, IR_FEXPR_OP);
  if (!x) return fail(p, "out of memory");
  if (!ir_op_lookup(name, &x->op) || !(ir_op_get(x->op)->flags & IR_OPF_ELEMENTWISE) ||
      x->op == IR_OP_cast)
    return fail(p, "not a fusable elementwise op");
  skip_space(p);
  if (*p->s++ != '(') return fail(p, "expected '('");
  for (;;) {
    if (x->num_args == 3) return fail(p, "too many arguments");
    ir_fexpr *arg = parse_expr(p);
    if (!arg) return NULL;
    x->args[x->num_args++] = arg;
    skip_space(p);
    if (*p->s == ',') {
      p->s++;
      continue;
    }
    if (*p->s++ != ')') return fail(p, "expected ',' or ')'");
    break;
  }
  const ir_op_info *info = ir_op_get(x->op);
  if (x->num_args < info->min_inputs || x->num_args > info->max_inputs)
    return fail(p, "wrong number of arguments");
  return x;
}

static ir_fexpr *parse_expr(fparser *p) {
  skip_space(p);
  if (++p->depth > 64) return fail(p, "nested too deeply");
  ir_fexpr *x;
  if (*p->s == '%') {
    char *end;
    p->s++;
    errno = 0;
    long i = strtol(p->s, &end, 10);
    if (end == p->s || errno || i < 0 || i >= p->num_inputs) return fail(p, "bad input index");
    p->s = end;
    if (!(x = node(p, IR_FEXPR_INPUT))) return fail(p, "out of memory");
    x->input = (int)i;
  } else if ((*p->s >= '0' && *p->s <= '9') || *p->s == '-' || *p->s == '.' ||
             strncmp(p->s, "inf", 3) == 0 || strncmp(p->s, "nan", 3) == 0) {
    char *end;
    double v = strtod(p->s, &end);
    if (end == p->s) return fail(p, "bad number");
    p->s = end;
    if (!(x = node(p, IR_FEXPR_CONST))) return fail(p, "out of memory");
    x->value = v;
  } else {
    x = parse_call(p);
  }
  p->depth--;
  return x;
}

ir_fexpr *ir_fexpr_parse(ir_arena *arena, const char *text, int num_inputs, char *err,
                         size_t errlen) {
  if (err && errlen) err[0] = 0;
  fparser p = {arena, text ? text : "", num_inputs, err, errlen, 0};
  ir_fexpr *x = parse_expr(&p);
  if (!x) return NULL;
  skip_space(&p);
  if (*p.s) return fail(&p, "unexpected text");
  return x;
}

static void print(const ir_fexpr *x, char **buf, size_t *len, FILE *out) {
  (void)buf, (void)len;
  switch (x->kind) {
  case IR_FEXPR_INPUT: fprintf(out, "%%%d", x->input); break;
  case IR_FEXPR_CONST:
    if (isnan(x->value))
      fprintf(out, "nan");
    else if (isinf(x->value))
      fprintf(out, x->value < 0 ? "-inf" : "inf");
    else
      fprintf(out, "%.17g", x->value);
    break;
  case IR_FEXPR_OP:
    fprintf(out, "%s(", ir_op_get(x->op)->name);
    for (int i = 0; i < x->num_args; i++) {
      if (i) fprintf(out, ", ");
      print(x->args[i], buf, len, out);
    }
    fprintf(out, ")");
    break;
  }
}

const char *ir_fexpr_text(ir_arena *arena, const ir_fexpr *x) {
  char *buf = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&buf, &len);
  if (!out) return NULL;
  print(x, &buf, &len, out);
  fclose(out);
  const char *text = buf ? ir_arena_printf(arena, "%s", buf) : NULL;
  free(buf);
  return text;
}
