/* print.c: the IR text form (grammar in ir.h; parse.c reads it back).
 *
 *   graph NAME [mode=train] [recompute=blocks] {
 *     %v: TYPE = OP %a, %b attr=VAL @LINE:COL scope="S"
 *     OP %a attr=VAL
 *   }
 *
 * Output goes to a sink: a FILE, a string growing in an arena, or a
 * fixed buffer that truncates, so every entry point shares one printer. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

typedef struct sink {
  FILE *file;
  ir_arena *arena;
  char *buf;
  size_t len, cap;
} sink;

static void put(sink *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool reserve(sink *s, size_t n) {
  if (s->len + n + 1 <= s->cap) return true;
  size_t cap = s->cap ? s->cap : 256;
  while (s->len + n + 1 > cap) cap *= 2;
  char *grown = ir_arena_grow(s->arena, s->buf, s->len, cap);
  if (!grown) return false;
  s->buf = grown;
  s->cap = cap;
  return true;
}

static void put(sink *s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (s->file) {
    vfprintf(s->file, fmt, ap);
  } else {
    va_list copy;
    va_copy(copy, ap);
    int n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (n > 0 && s->arena && !reserve(s, (size_t)n)) n = 0;
    if (n > 0 && s->len + 1 < s->cap) {
      vsnprintf(s->buf + s->len, s->cap - s->len, fmt, ap);
      s->len += (size_t)n;
      if (s->len >= s->cap) s->len = s->cap - 1; /* fixed buffer: truncated */
    }
  }
  va_end(ap);
}

/* ---- pieces ---- */

/* Names print bare when made of [A-Za-z0-9_.] (parse.c agrees). */
static bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '_' || c == '.';
}

static bool name_is_bare(const char *name) {
  if (!*name) return false;
  for (const char *p = name; *p; p++)
    if (!is_name_char(*p)) return false;
  return true;
}

/* Escapes for "..." strings: \" \\ \n \t, other control bytes as \xHH. */
static void put_quoted(sink *s, const char *str) {
  put(s, "\"");
  for (const unsigned char *p = (const unsigned char *)str; *p; p++) {
    if (*p == '"' || *p == '\\')
      put(s, "\\%c", *p);
    else if (*p == '\n')
      put(s, "\\n");
    else if (*p == '\t')
      put(s, "\\t");
    else if (*p < 0x20 || *p == 0x7f)
      put(s, "\\x%02x", *p);
    else
      put(s, "%c", *p);
  }
  put(s, "\"");
}

static void put_name(sink *s, const char *name) {
  if (name && name_is_bare(name))
    put(s, "%s", name);
  else
    put_quoted(s, name ? name : "");
}

static void put_value(sink *s, const ir_value *v) {
  put(s, "%%");
  put_name(s, v ? v->name : NULL);
}

/* Shortest of %.6g, %.9g, %.17g that reads back as the same double,
 * always with a '.' or 'e' so that it reads back as a float. */
static void format_float(double v, char *buf, size_t len) {
  if (isnan(v)) {
    snprintf(buf, len, "nan");
    return;
  }
  if (isinf(v)) {
    snprintf(buf, len, v < 0 ? "-inf" : "inf");
    return;
  }
  static const char *const formats[] = {"%.6g", "%.9g", "%.17g"};
  for (int i = 0; i < 3; i++) {
    snprintf(buf, len, formats[i], v);
    if (strtod(buf, NULL) == v) break;
  }
  /* "3" would read back as an int */
  if (!strpbrk(buf, ".e") && strlen(buf) + 3 <= len) strcat(buf, ".0");
}

static void put_float(sink *s, double v) {
  char buf[48];
  format_float(v, buf, sizeof buf);
  put(s, "%s", buf);
}

static void put_attr_value(sink *s, const ir_attr *a) {
  switch (a->kind) {
  case IR_ATTR_INT: put(s, "%lld", (long long)a->u.i); break;
  case IR_ATTR_FLOAT: put_float(s, a->u.f); break;
  case IR_ATTR_BOOL: put(s, "%s", a->u.b ? "true" : "false"); break;
  case IR_ATTR_STR: put_quoted(s, a->u.s ? a->u.s : ""); break;
  case IR_ATTR_INTS:
    put(s, "[");
    for (int i = 0; i < a->u.ints.n; i++) put(s, "%s%lld", i ? "," : "", (long long)a->u.ints.v[i]);
    put(s, "]");
    break;
  case IR_ATTR_FLOATS:
    put(s, "[");
    for (int i = 0; i < a->u.floats.n; i++) {
      if (i) put(s, ",");
      put_float(s, a->u.floats.v[i]);
    }
    put(s, "]");
    break;
  }
}

static void put_attr(sink *s, const ir_attr *a) {
  put(s, " %s=", a->name);
  put_attr_value(s, a);
}

/* Op-table order first; names the op does not know (a verifier error)
 * after, in the order they were set. */
static void put_attrs(sink *s, const ir_node *node, const ir_op_info *info) {
  for (int i = 0; info && i < info->num_attrs; i++) {
    const ir_attr *a = ir_get_attr(node, info->attrs[i].name);
    if (a) put_attr(s, a);
  }
  for (int i = 0; i < node->num_attrs; i++) {
    bool known = false;
    for (int j = 0; info && j < info->num_attrs; j++)
      known = known || strcmp(node->attrs[i].name, info->attrs[j].name) == 0;
    if (!known) put_attr(s, &node->attrs[i]);
  }
}

static void put_node(sink *s, const ir_node *node) {
  const ir_op_info *info = ir_op_get(node->op);
  char type[IR_ERR_LEN];
  for (int i = 0; i < node->num_results; i++) {
    if (i) put(s, ", ");
    put_value(s, node->results[i]);
    put(s, ": %s", ir_type_format(&node->results[i]->type, type, sizeof type));
  }
  if (node->num_results) put(s, " = ");
  put(s, "%s", info ? info->name : "?");
  for (int i = 0; i < node->num_inputs; i++) {
    put(s, i ? ", " : " ");
    put_value(s, node->inputs[i]);
  }
  put_attrs(s, node, info);
  if (node->loc.file) put(s, " @%d:%d", node->loc.line, node->loc.col);
  if (node->scope) {
    put(s, " scope=");
    put_quoted(s, node->scope);
  }
  put(s, "\n");
}

static void put_graph(sink *s, const ir_graph *g) {
  put(s, "graph ");
  /* bare only if it lexes as an identifier: a letter or '_' first */
  const char *name = g->name ? g->name : "";
  bool ident = (*name >= 'a' && *name <= 'z') || (*name >= 'A' && *name <= 'Z') || *name == '_';
  if (ident && name_is_bare(name))
    put(s, "%s", name);
  else
    put_quoted(s, name);
  if (g->training) put(s, " mode=train");
  if (g->recompute_blocks) put(s, " recompute=blocks");
  put(s, " {\n");
  for (const ir_node *n = g->first; n; n = n->next) {
    put(s, "  ");
    put_node(s, n);
  }
  put(s, "}\n");
}

void ir_print(FILE *out, const ir_graph *g) {
  sink s = {.file = out};
  put_graph(&s, g);
}

char *ir_print_to_string(ir_arena *arena, const ir_graph *g) {
  sink s = {.arena = arena};
  put_graph(&s, g);
  return s.buf ? s.buf : ir_arena_strdup(arena, "");
}

/* One node as a graph line without the indent, newline included. */
void ir_print_node(FILE *out, const ir_node *node) {
  sink s = {.file = out};
  put_node(&s, node);
}

char *ir_value_format(const ir_value *v, char *buf, size_t len) {
  if (!len) return buf;
  sink s = {.buf = buf, .cap = len};
  buf[0] = 0;
  put_value(&s, v);
  return buf;
}
