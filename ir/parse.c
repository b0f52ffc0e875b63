/* parse.c: reads the IR text form that print.c writes.
 *
 *   graph NAME [mode=train|infer] [recompute=blocks|none] {
 *     %v: TYPE, ... = OP %a, %b attr=VAL ... @LINE:COL scope="S"
 *     OP %a attr=VAL
 *   }
 *
 * A line-oriented lexer (newlines are tokens; `#` and `//` start
 * comments) feeds a recursive-descent parser. Non-source nodes are built
 * with ir_node_new and typed by their shape rule; the written result
 * types must equal the inferred ones. The first error stops the parse
 * and is reported as "LINE:COL: message". Input may be arbitrary bytes:
 * every read stops at the terminating NUL. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

typedef enum {
  TOK_EOF,
  TOK_NEWLINE,
  TOK_IDENT,  /* graph, op, attribute and dtype names, true, inf, ... */
  TOK_VALUE,  /* %name or %"name"; text holds the name */
  TOK_INT,
  TOK_FLOAT,
  TOK_STRING, /* text holds the decoded string */
  TOK_PUNCT,  /* { } [ ] , : = @ - */
  TOK_ERROR,  /* the lexer already reported it */
} token_kind;

typedef struct token {
  token_kind kind;
  const char *start; /* in the source */
  size_t len;
  int line, col;
  const char *text; /* NUL-terminated copy (ident, value name, string) */
  char punct;
  int64_t i;
  double f;
} token;

typedef struct parser {
  const char *src;
  size_t pos;
  int line, col;
  token tok;
  ir_arena *arena;
  ir_graph *g;
  const char *file;
  char *err;
  size_t errlen;
  bool failed;
} parser;

static bool error_at(parser *p, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static bool error_at(parser *p, int line, int col, const char *fmt, ...) {
  if (p->failed) return false;
  p->failed = true;
  if (!p->err || !p->errlen) return false;
  int n = snprintf(p->err, p->errlen, "%d:%d: ", line, col);
  if (n < 0 || (size_t)n >= p->errlen) return false;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
  va_end(ap);
  return false;
}

#define error_tok(p, t, ...) error_at(p, (t)->line, (t)->col, __VA_ARGS__)

/* ---- lexer ---- */

static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_name_char(char c) { return is_alpha(c) || is_digit(c) || c == '.'; }

static char peek_char(const parser *p, size_t ahead) {
  /* never look past the NUL */
  for (size_t i = 0; i < ahead; i++)
    if (!p->src[p->pos + i]) return 0;
  return p->src[p->pos + ahead];
}

static void advance(parser *p, size_t n) {
  for (size_t i = 0; i < n && p->src[p->pos]; i++) {
    if (p->src[p->pos] == '\n') {
      p->line++;
      p->col = 1;
    } else {
      p->col++;
    }
    p->pos++;
  }
}

static void skip_blanks(parser *p) {
  for (;;) {
    char c = peek_char(p, 0);
    if (c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v') {
      advance(p, 1);
    } else if (c == '#' || (c == '/' && peek_char(p, 1) == '/')) {
      while (peek_char(p, 0) && peek_char(p, 0) != '\n') advance(p, 1);
    } else {
      return;
    }
  }
}

static bool lex_error(parser *p, token *t, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool lex_error(parser *p, token *t, const char *fmt, ...) {
  char msg[IR_ERR_LEN];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  t->kind = TOK_ERROR;
  return error_tok(p, t, "%s", msg);
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* One escape after a backslash at src[*i]; advances *i past it. */
static bool decode_escape(parser *p, token *t, size_t *i, char *out) {
  const char *s = p->src;
  char c = s[*i + 1];
  int hi, lo;
  switch (c) {
  case '"': *out = '"'; break;
  case '\\': *out = '\\'; break;
  case 'n': *out = '\n'; break;
  case 't': *out = '\t'; break;
  case 'x':
    hi = hex_value(s[*i + 2]);
    lo = hi < 0 ? -1 : hex_value(s[*i + 3]);
    if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
      return lex_error(p, t, "invalid escape in string");
    *out = (char)(hi * 16 + lo);
    *i += 2;
    break;
  default: return lex_error(p, t, "invalid escape in string");
  }
  *i += 2;
  return true;
}

/* "..." starting at the current position; the decoded text goes to
 * t->text. */
static bool lex_string(parser *p, token *t) {
  size_t start = p->pos, end = start + 1;
  while (p->src[end] && p->src[end] != '"' && p->src[end] != '\n')
    end += p->src[end] == '\\' && p->src[end + 1] && p->src[end + 1] != '\n' ? 2 : 1;
  if (p->src[end] != '"') return lex_error(p, t, "unterminated string");
  char *out = ir_arena_alloc(p->arena, end - start);
  if (!out) return lex_error(p, t, "out of memory");
  size_t n = 0;
  for (size_t i = start + 1; i < end;) {
    if (p->src[i] != '\\') {
      out[n++] = p->src[i++];
      continue;
    }
    if (!decode_escape(p, t, &i, &out[n++])) return false;
  }
  out[n] = 0;
  t->text = out;
  advance(p, end + 1 - start);
  return true;
}

static bool lex_value_name(parser *p, token *t) {
  advance(p, 1); /* '%' */
  t->kind = TOK_VALUE;
  if (peek_char(p, 0) == '"') return lex_string(p, t);
  size_t start = p->pos;
  while (is_name_char(peek_char(p, 0))) advance(p, 1);
  if (p->pos == start) return lex_error(p, t, "expected a value name after '%%'");
  t->text = ir_arena_strndup(p->arena, p->src + start, p->pos - start);
  return t->text ? true : lex_error(p, t, "out of memory");
}

static bool lex_int(parser *p, token *t, const char *s, size_t len) {
  bool neg = s[0] == '-';
  uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, v = 0;
  for (size_t i = neg; i < len; i++) {
    uint64_t d = (uint64_t)(s[i] - '0');
    if (v > (limit - d) / 10) return lex_error(p, t, "integer out of range");
    v = v * 10 + d;
  }
  t->kind = TOK_INT;
  t->i = neg ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
  return true;
}

/* -?DIGITS(.DIGITS*)?([eE][+-]?DIGITS)? */
static bool lex_number(parser *p, token *t) {
  size_t n = peek_char(p, 0) == '-' ? 1 : 0;
  bool is_float = false;
  while (is_digit(peek_char(p, n))) n++;
  if (peek_char(p, n) == '.') {
    is_float = true;
    n++;
    while (is_digit(peek_char(p, n))) n++;
  }
  char e = peek_char(p, n), sign = peek_char(p, n + 1);
  size_t digits = n + 1 + (sign == '+' || sign == '-');
  if ((e == 'e' || e == 'E') && is_digit(peek_char(p, digits))) {
    is_float = true;
    for (n = digits; is_digit(peek_char(p, n));) n++;
  }
  const char *s = p->src + p->pos;
  if (is_name_char(peek_char(p, n))) return lex_error(p, t, "malformed number");
  if (n >= 64) return lex_error(p, t, "number too long");
  advance(p, n);
  t->len = n;
  if (!is_float) return lex_int(p, t, s, n);
  char buf[64];
  memcpy(buf, s, n);
  buf[n] = 0;
  t->kind = TOK_FLOAT;
  t->f = strtod(buf, NULL);
  return true;
}

static void describe_char(char c, char *buf, size_t len) {
  if ((unsigned char)c >= 0x20 && (unsigned char)c < 0x7f)
    snprintf(buf, len, "'%c'", c);
  else
    snprintf(buf, len, "byte 0x%02x", (unsigned char)c);
}

static void lex(parser *p) {
  skip_blanks(p);
  token *t = &p->tok;
  memset(t, 0, sizeof *t);
  t->start = p->src + p->pos;
  t->line = p->line;
  t->col = p->col;
  char c = peek_char(p, 0);
  if (!c) {
    t->kind = TOK_EOF;
  } else if (c == '\n') {
    t->kind = TOK_NEWLINE;
    advance(p, 1);
  } else if (c == '%') {
    lex_value_name(p, t);
  } else if (c == '"') {
    t->kind = TOK_STRING;
    lex_string(p, t);
  } else if (is_alpha(c)) {
    size_t start = p->pos;
    while (is_name_char(peek_char(p, 0))) advance(p, 1);
    t->kind = TOK_IDENT;
    t->text = ir_arena_strndup(p->arena, p->src + start, p->pos - start);
    if (!t->text) lex_error(p, t, "out of memory");
  } else if (is_digit(c) || (c == '-' && is_digit(peek_char(p, 1)))) {
    lex_number(p, t);
  } else if (strchr("{}[],:=@-", c)) {
    t->kind = TOK_PUNCT;
    t->punct = c;
    advance(p, 1);
  } else {
    char what[16];
    describe_char(c, what, sizeof what);
    lex_error(p, t, "unexpected character %s", what);
  }
  t->len = (size_t)(p->src + p->pos - t->start);
}

/* ---- parser helpers ---- */

static bool is_punct(const parser *p, char c) {
  return p->tok.kind == TOK_PUNCT && p->tok.punct == c;
}

static bool is_ident(const parser *p, const char *word) {
  return p->tok.kind == TOK_IDENT && strcmp(p->tok.text, word) == 0;
}

static void describe_token(const token *t, char *buf, size_t len) {
  if (t->kind == TOK_EOF)
    snprintf(buf, len, "end of input");
  else if (t->kind == TOK_NEWLINE)
    snprintf(buf, len, "end of line");
  else
    snprintf(buf, len, "'%.*s'", (int)(t->len > 24 ? 24 : t->len), t->start);
}

static bool expected(parser *p, const char *what) {
  if (p->tok.kind == TOK_ERROR) return false;
  char found[40];
  describe_token(&p->tok, found, sizeof found);
  return error_tok(p, &p->tok, "expected %s, found %s", what, found);
}

static bool expect_punct(parser *p, char c) {
  if (!is_punct(p, c)) {
    char what[8];
    snprintf(what, sizeof what, "'%c'", c);
    return expected(p, what);
  }
  lex(p);
  return !p->failed;
}

static void skip_newlines(parser *p) {
  while (p->tok.kind == TOK_NEWLINE) lex(p);
}

/* A growable array of pointers in the arena. */
typedef struct list {
  void **items;
  int len, cap;
} list;

static bool list_push(parser *p, list *l, void *item) {
  if (l->len == l->cap) {
    int cap = l->cap ? l->cap * 2 : 4;
    void **grown = ir_arena_grow(p->arena, l->items, (size_t)l->len * sizeof(void *),
                                 (size_t)cap * sizeof(void *));
    if (!grown) return error_tok(p, &p->tok, "out of memory");
    l->items = grown;
    l->cap = cap;
  }
  l->items[l->len++] = item;
  return true;
}

/* ---- types ---- */

/* DTYPE[d,...] */
static bool parse_type(parser *p, ir_type *out) {
  memset(out, 0, sizeof *out);
  if (p->tok.kind != TOK_IDENT) return expected(p, "a type");
  if (!ir_dtype_parse(p->tok.text, &out->dtype))
    return error_tok(p, &p->tok, "unknown dtype '%s'", p->tok.text);
  lex(p);
  if (!expect_punct(p, '[')) return false;
  while (!is_punct(p, ']')) {
    if (out->rank && !expect_punct(p, ',')) return false;
    if (p->tok.kind != TOK_INT) return expected(p, "a dimension");
    if (p->tok.i < 0) return error_tok(p, &p->tok, "dimension must be non-negative");
    if (out->rank == IR_MAX_RANK)
      return error_tok(p, &p->tok, "more than %d dimensions", IR_MAX_RANK);
    out->dims[out->rank++] = p->tok.i;
    lex(p);
  }
  lex(p);
  return !p->failed;
}

/* ---- attribute values ---- */

static bool parse_float(parser *p, double *out) {
  bool neg = is_punct(p, '-');
  if (neg) lex(p);
  if (!neg && p->tok.kind == TOK_INT)
    *out = (double)p->tok.i;
  else if (!neg && p->tok.kind == TOK_FLOAT)
    *out = p->tok.f;
  else if (is_ident(p, "inf"))
    *out = neg ? -INFINITY : INFINITY;
  else if (is_ident(p, "nan") && !neg)
    *out = NAN;
  else
    return false;
  lex(p);
  return true;
}

static bool kind_error(parser *p, const token *at, const ir_attr_spec *spec) {
  static const char *const kinds[] = {"int", "float", "bool", "str", "ints", "floats"};
  if (p->tok.kind == TOK_ERROR) return false;
  return error_tok(p, at, "attribute '%s' expects %s", spec->name, kinds[spec->kind]);
}

/* [v, ...] of ints or floats into out (arena arrays). */
static bool parse_list(parser *p, const ir_attr_spec *spec, ir_attr *out) {
  token start = p->tok;
  bool floats = spec->kind == IR_ATTR_FLOATS;
  if (!is_punct(p, '[')) return kind_error(p, &start, spec);
  lex(p);
  int n = 0, cap = 0;
  void *items = NULL;
  size_t size = floats ? sizeof(double) : sizeof(int64_t);
  while (!is_punct(p, ']')) {
    if (n && !expect_punct(p, ',')) return false;
    if (n == cap) {
      cap = cap ? cap * 2 : 4;
      items = ir_arena_grow(p->arena, items, (size_t)n * size, (size_t)cap * size);
      if (!items) return error_tok(p, &p->tok, "out of memory");
    }
    token item = p->tok;
    if (floats) {
      if (!parse_float(p, (double *)items + n)) return kind_error(p, &item, spec);
    } else {
      if (p->tok.kind != TOK_INT) return kind_error(p, &item, spec);
      ((int64_t *)items)[n] = p->tok.i;
      lex(p);
    }
    n++;
  }
  lex(p);
  if (floats) {
    out->u.floats.n = n;
    out->u.floats.v = items;
  } else {
    out->u.ints.n = n;
    out->u.ints.v = items;
  }
  return !p->failed;
}

static bool parse_attr_value(parser *p, const ir_attr_spec *spec, ir_attr *out) {
  token at = p->tok;
  out->name = spec->name;
  out->kind = spec->kind;
  switch (spec->kind) {
  case IR_ATTR_INT:
    if (p->tok.kind != TOK_INT) return kind_error(p, &at, spec);
    out->u.i = p->tok.i;
    break;
  case IR_ATTR_FLOAT:
    if (!parse_float(p, &out->u.f)) return kind_error(p, &at, spec);
    return !p->failed;
  case IR_ATTR_BOOL:
    if (!is_ident(p, "true") && !is_ident(p, "false")) return kind_error(p, &at, spec);
    out->u.b = is_ident(p, "true");
    break;
  case IR_ATTR_STR:
    if (p->tok.kind != TOK_STRING) return kind_error(p, &at, spec);
    out->u.s = p->tok.text;
    break;
  case IR_ATTR_INTS:
  case IR_ATTR_FLOATS: return parse_list(p, spec, out);
  }
  lex(p);
  return !p->failed;
}

/* ---- nodes ---- */

typedef struct result_decl {
  token name;
  ir_type type;
} result_decl;

/* Everything written on one node line, before the node exists. */
typedef struct node_decl {
  list results; /* result_decl * */
  token op_tok;
  ir_op op;
  const ir_op_info *info;
  list inputs; /* ir_value * */
  ir_attr attrs[IR_MAX_ATTRS];
  int num_attrs;
  bool has_loc;
  ir_loc loc;
  const char *scope;
} node_decl;

static bool result_defined(parser *p, const node_decl *d, const token *name) {
  if (ir_graph_find(p->g, name->text)) return true;
  for (int i = 0; i < d->results.len; i++)
    if (strcmp(((result_decl *)d->results.items[i])->name.text, name->text) == 0) return true;
  return false;
}

static bool parse_results(parser *p, node_decl *d) {
  while (p->tok.kind == TOK_VALUE) {
    result_decl *r = ir_arena_alloc(p->arena, sizeof *r);
    if (!r) return error_tok(p, &p->tok, "out of memory");
    r->name = p->tok;
    if (result_defined(p, d, &r->name))
      return error_tok(p, &r->name, "redefinition of value %.*s", (int)r->name.len,
                       r->name.start);
    lex(p);
    if (!expect_punct(p, ':') || !parse_type(p, &r->type) || !list_push(p, &d->results, r))
      return false;
    if (!is_punct(p, ',')) break;
    lex(p);
    if (p->tok.kind != TOK_VALUE) return expected(p, "a result value");
  }
  return expect_punct(p, '=');
}

static bool parse_inputs(parser *p, node_decl *d) {
  while (p->tok.kind == TOK_VALUE) {
    ir_value *v = ir_graph_find(p->g, p->tok.text);
    if (!v)
      return error_tok(p, &p->tok, "use of undefined value %.*s", (int)p->tok.len,
                       p->tok.start);
    if (!list_push(p, &d->inputs, v)) return false;
    lex(p);
    if (!is_punct(p, ',')) break;
    lex(p);
    if (p->tok.kind != TOK_VALUE) return expected(p, "an input value");
  }
  return !p->failed;
}

static const ir_attr_spec *find_spec(const ir_op_info *info, const char *name) {
  for (int i = 0; i < info->num_attrs; i++)
    if (strcmp(info->attrs[i].name, name) == 0) return &info->attrs[i];
  return NULL;
}

static bool parse_attr(parser *p, node_decl *d) {
  token name = p->tok;
  const ir_attr_spec *spec = find_spec(d->info, name.text);
  if (!spec)
    return error_tok(p, &name, "unknown attribute '%s' for %s", name.text, d->info->name);
  for (int i = 0; i < d->num_attrs; i++)
    if (d->attrs[i].name == spec->name)
      return error_tok(p, &name, "attribute '%s' given twice", name.text);
  lex(p);
  if (!expect_punct(p, '=')) return false;
  return parse_attr_value(p, spec, &d->attrs[d->num_attrs++]);
}

static bool parse_loc(parser *p, node_decl *d) {
  if (d->has_loc) return error_tok(p, &p->tok, "location given twice");
  lex(p);
  token line = p->tok;
  if (line.kind != TOK_INT || line.i < 0 || line.i > INT32_MAX) return expected(p, "a line number");
  lex(p);
  if (!expect_punct(p, ':')) return false;
  if (p->tok.kind != TOK_INT || p->tok.i < 0 || p->tok.i > INT32_MAX)
    return expected(p, "a column number");
  d->loc = (ir_loc){p->file, (int)line.i, (int)p->tok.i};
  d->has_loc = true;
  lex(p);
  return !p->failed;
}

static bool parse_scope(parser *p, node_decl *d) {
  if (d->scope) return error_tok(p, &p->tok, "scope given twice");
  lex(p);
  if (!expect_punct(p, '=')) return false;
  if (p->tok.kind != TOK_STRING) return expected(p, "a scope string");
  d->scope = p->tok.text;
  lex(p);
  return !p->failed;
}

/* attr=VAL ... @LINE:COL scope="S", then the end of the line. */
static bool parse_trailer(parser *p, node_decl *d) {
  for (;;) {
    if (is_ident(p, "scope") && !find_spec(d->info, "scope")) {
      if (!parse_scope(p, d)) return false;
    } else if (p->tok.kind == TOK_IDENT) {
      if (!parse_attr(p, d)) return false;
    } else if (is_punct(p, '@')) {
      if (!parse_loc(p, d)) return false;
    } else {
      break;
    }
  }
  if (p->tok.kind != TOK_NEWLINE && p->tok.kind != TOK_EOF)
    return expected(p, "an attribute or the end of the line");
  return true;
}

static bool check_counts(parser *p, const node_decl *d) {
  const ir_op_info *info = d->info;
  const token *at = &d->op_tok;
  int n = d->inputs.len, lo = info->min_inputs, hi = info->max_inputs;
  if (d->results.len != info->num_results) {
    if (!info->num_results) return error_tok(p, at, "%s has no results", info->name);
    return error_tok(p, at, "%s has %d result%s, %d written", info->name, info->num_results,
                     info->num_results == 1 ? "" : "s", d->results.len);
  }
  if (n >= lo && (hi < 0 || n <= hi)) return true;
  if (hi < 0)
    return error_tok(p, at, "%s takes at least %d input%s, got %d", info->name, lo,
                     lo == 1 ? "" : "s", n);
  if (lo == hi)
    return error_tok(p, at, "%s takes %d input%s, got %d", info->name, lo, lo == 1 ? "" : "s", n);
  return error_tok(p, at, "%s takes %d to %d inputs, got %d", info->name, lo, hi, n);
}

static bool check_required(parser *p, const node_decl *d) {
  for (int i = 0; i < d->info->num_attrs; i++) {
    const ir_attr_spec *spec = &d->info->attrs[i];
    bool present = false;
    for (int j = 0; j < d->num_attrs; j++) present = present || d->attrs[j].name == spec->name;
    if (!present && !spec->optional)
      return error_tok(p, &d->op_tok, "%s: missing attribute '%s'", d->info->name, spec->name);
  }
  return true;
}

static void set_attr(ir_graph *g, ir_node *node, const ir_attr *a) {
  switch (a->kind) {
  case IR_ATTR_INT: ir_set_int(g, node, a->name, a->u.i); break;
  case IR_ATTR_FLOAT: ir_set_float(g, node, a->name, a->u.f); break;
  case IR_ATTR_BOOL: ir_set_bool(g, node, a->name, a->u.b); break;
  case IR_ATTR_STR: ir_set_str(g, node, a->name, a->u.s); break;
  case IR_ATTR_INTS: ir_set_ints(g, node, a->name, a->u.ints.n, a->u.ints.v); break;
  case IR_ATTR_FLOATS: ir_set_floats(g, node, a->name, a->u.floats.n, a->u.floats.v); break;
  }
}

static bool in_names(const node_decl *d, const char *name) {
  for (int i = 0; i < d->results.len; i++)
    if (strcmp(((result_decl *)d->results.items[i])->name.text, name) == 0) return true;
  return false;
}

/* Results after the first get their written names. ir_node_new named
 * them name.1, ... which may be written names of their siblings, so they
 * first move out of the way. */
static void name_results(parser *p, ir_node *node, const node_decl *d) {
  for (int i = 1; i < node->num_results; i++)
    while (in_names(d, node->results[i]->name))
      ir_value_rename(p->g, node->results[i], ir_graph_unique_name(p->g, "parse.tmp"));
  for (int i = 1; i < node->num_results; i++)
    ir_value_rename(p->g, node->results[i], ((result_decl *)d->results.items[i])->name.text);
}

/* Each written type must be what the shape rule computed. */
static bool check_types(parser *p, const ir_node *node, const node_decl *d) {
  for (int i = 0; i < node->num_results; i++) {
    const result_decl *r = d->results.items[i];
    if (ir_type_equal(&r->type, &node->results[i]->type)) continue;
    char written[IR_ERR_LEN], inferred[IR_ERR_LEN];
    ir_type_format(&r->type, written, sizeof written);
    ir_type_format(&node->results[i]->type, inferred, sizeof inferred);
    return error_tok(p, &r->name, "%.*s: type %s does not match the inferred %s",
                     (int)r->name.len, r->name.start, written, inferred);
  }
  return true;
}

static bool build_node(parser *p, const node_decl *d) {
  bool source = d->info->flags & IR_OPF_SOURCE;
  const char *first = d->results.len ? ((result_decl *)d->results.items[0])->name.text : NULL;
  ir_node *node = ir_node_new(p->g, d->op, d->inputs.len, (ir_value *const *)d->inputs.items,
                              first);
  if (!node) return error_tok(p, &d->op_tok, "out of memory");
  name_results(p, node, d);
  for (int i = 0; i < d->num_attrs; i++) set_attr(p->g, node, &d->attrs[i]);
  if (d->has_loc) node->loc = d->loc;
  node->scope = d->scope;
  if (source) {
    for (int i = 0; i < node->num_results; i++)
      node->results[i]->type = ((result_decl *)d->results.items[i])->type;
    return true;
  }
  char msg[IR_ERR_LEN];
  if (!ir_node_infer(node, msg, sizeof msg)) return error_tok(p, &d->op_tok, "%s", msg);
  return check_types(p, node, d);
}

static bool parse_node(parser *p) {
  node_decl d;
  memset(&d, 0, sizeof d);
  if (p->tok.kind == TOK_VALUE && !parse_results(p, &d)) return false;
  if (p->tok.kind != TOK_IDENT) return expected(p, d.results.len ? "an op" : "a value or an op");
  d.op_tok = p->tok;
  if (!ir_op_lookup(p->tok.text, &d.op))
    return error_tok(p, &p->tok, "unknown op '%s'", p->tok.text);
  d.info = ir_op_get(d.op);
  lex(p);
  if (!parse_inputs(p, &d) || !parse_trailer(p, &d)) return false;
  if (!check_counts(p, &d) || !check_required(p, &d)) return false;
  return build_node(p, &d);
}

/* ---- graph ---- */

/* `mode=train` marks a training graph (ir_graph.training); `mode=infer`
 * is the default, accepted for symmetry. `recompute=blocks` (or none)
 * may follow. */
static bool parse_mode(parser *p) {
  if (is_ident(p, "mode")) {
    lex(p);
    if (!expect_punct(p, '=')) return false;
    if (is_ident(p, "train"))
      p->g->training = true;
    else if (!is_ident(p, "infer"))
      return expected(p, "'train' or 'infer'");
    lex(p);
    if (p->failed) return false;
  }
  if (!is_ident(p, "recompute")) return true;
  lex(p);
  if (!expect_punct(p, '=')) return false;
  if (is_ident(p, "blocks"))
    p->g->recompute_blocks = true;
  else if (!is_ident(p, "none"))
    return expected(p, "'blocks' or 'none'");
  lex(p);
  return !p->failed;
}

static bool parse_header(parser *p) {
  skip_newlines(p);
  if (!is_ident(p, "graph")) return expected(p, "'graph'");
  lex(p);
  if (p->tok.kind != TOK_IDENT && p->tok.kind != TOK_STRING) return expected(p, "a graph name");
  p->g = ir_graph_new(p->arena, p->tok.text);
  if (!p->g) return error_tok(p, &p->tok, "out of memory");
  lex(p);
  if (!parse_mode(p) || !expect_punct(p, '{')) return false;
  if (p->tok.kind != TOK_NEWLINE) return expected(p, "the end of the line");
  return true;
}

static bool parse_graph(parser *p) {
  if (!parse_header(p)) return false;
  for (;;) {
    skip_newlines(p);
    if (p->failed) return false;
    if (is_punct(p, '}')) break;
    if (p->tok.kind == TOK_EOF) return expected(p, "'}'");
    if (!parse_node(p)) return false;
  }
  lex(p);
  skip_newlines(p);
  if (p->tok.kind != TOK_EOF) return expected(p, "the end of the input after the graph");
  return !p->failed;
}

ir_graph *ir_parse(ir_arena *arena, const char *text, const char *filename, char *err,
                   size_t errlen) {
  parser p;
  memset(&p, 0, sizeof p);
  p.src = text ? text : "";
  p.line = p.col = 1;
  p.arena = arena;
  p.err = err;
  p.errlen = errlen;
  /* Locations need a file to print; the text form does not carry it. */
  p.file = ir_arena_strdup(arena, filename ? filename : "<input>");
  if (err && errlen) err[0] = 0;
  lex(&p);
  if (!parse_graph(&p)) return NULL;
  return p.g;
}
