/* fe_parse.c: recursive descent over the expression grammar.
 *
 *   expr    := prod (('+' | '-') prod)*
 *   prod    := unary (('*' | '/' | '@') unary)*
 *   unary   := '-' unary | primary
 *   primary := NUMBER | NAME | NAME '(' [arg (',' arg)*] ')' | '(' expr ')'
 *            | '[' [expr (',' expr)*] ']' | STRING
 *   arg     := expr | NAME '=' expr
 *
 * A minus applied to a number literal folds into the literal (-1 is the
 * NUMBER -1), so attribute values such as axis=-1 need no evaluation.
 * After an error inside a call or list the parser skips to the next ','
 * or the closing bracket and goes on, so one scalar can report several
 * independent mistakes; a lexer error is reported once, by the lexer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/fe.h"

/* Deeper nesting than any model needs; the limit keeps hostile input
 * from exhausting the stack. */
enum { MAX_NESTING = 100 };

typedef struct parser {
  fe_lexer lx;
  ir_arena *arena;
  diag_engine *diag;
  fe_token tok;
  fe_token next; /* one token of lookahead, for NAME '=' */
  bool has_next;
  bool failed;
  int depth;
} parser;

static void advance(parser *p) {
  if (p->has_next) {
    p->tok = p->next;
    p->has_next = false;
  } else {
    p->tok = fe_lex_next(&p->lx);
  }
}

static const fe_token *peek(parser *p) {
  if (!p->has_next) {
    p->next = fe_lex_next(&p->lx);
    p->has_next = true;
  }
  return &p->next;
}

static void start(parser *p, ir_arena *arena, diag_engine *d, const char *text, size_t length,
                  const fe_yaml_node *origin, ir_loc base) {
  *p = (parser){.arena = arena, .diag = d};
  fe_lexer_init(&p->lx, d, text, length, origin, base);
  advance(p);
}

static ir_loc tok_loc(const parser *p) { return fe_lexer_loc(&p->lx, p->tok.offset); }

static bool is_punct(const parser *p, char c) {
  return p->tok.kind == FE_TOK_PUNCT && p->tok.punct == c;
}

/* Gives up on the rest of the text: nothing more is reported. */
static void abandon(parser *p) {
  p->lx.pos = p->lx.length;
  p->has_next = false;
  p->tok = (fe_token){.kind = FE_TOK_EOF, .offset = p->lx.length};
}

/* "'x'", "','", "end of expression": what the parser found instead. */
static const char *describe(parser *p) {
  const fe_token *t = &p->tok;
  switch (t->kind) {
  case FE_TOK_EOF: return "end of expression";
  case FE_TOK_STRING: return "a string";
  case FE_TOK_PUNCT: return ir_arena_printf(p->arena, "'%c'", t->punct);
  default: break;
  }
  if (t->length > 40) return ir_arena_printf(p->arena, "'%.37s...'", p->lx.text + t->offset);
  return ir_arena_printf(p->arena, "'%.*s'", (int)t->length, p->lx.text + t->offset);
}

/* Reports at the current token unless the lexer already reported it. */
static void error_here(parser *p, const char *fmt, const char *arg) {
  p->failed = true;
  if (p->tok.kind != FE_TOK_ERROR) diag_error(p->diag, tok_loc(p), fmt, arg);
  if (diag_full(p->diag)) abandon(p);
}

static fe_expr *new_expr(parser *p, fe_expr_kind kind, ir_loc loc) {
  fe_expr *e = ir_arena_alloc(p->arena, sizeof *e);
  if (!e) {
    p->failed = true;
    abandon(p);
    return NULL;
  }
  e->kind = kind;
  e->loc = loc;
  return e;
}

static char *token_text(parser *p, size_t skip) {
  return ir_arena_strndup(p->arena, p->lx.text + p->tok.offset + skip, p->tok.length - 2 * skip);
}

static fe_expr *parse_expr(parser *p);

/* Skips to the ',' or `close` that ends the current item, stepping over
 * nested brackets; stops at the end. */
static void sync_item(parser *p, char close) {
  int nesting = 0;
  while (p->tok.kind != FE_TOK_EOF) {
    if (p->tok.kind == FE_TOK_PUNCT) {
      char c = p->tok.punct;
      if (nesting == 0 && (c == ',' || c == close)) return;
      if (c == '(' || c == '[') nesting++;
      if ((c == ')' || c == ']') && nesting > 0) nesting--;
    }
    advance(p);
  }
}

typedef struct arg_list {
  int count, cap;
  fe_arg *items;
} arg_list;

static bool append_arg(parser *p, arg_list *list, fe_arg arg) {
  if (list->count == list->cap) {
    int cap = list->cap ? 2 * list->cap : 4;
    fe_arg *grown = ir_arena_grow(p->arena, list->items, (size_t)list->cap * sizeof(fe_arg),
                                  (size_t)cap * sizeof(fe_arg));
    if (!grown) return false;
    list->items = grown;
    list->cap = cap;
  }
  list->items[list->count++] = arg;
  return true;
}

/* One call argument: `expr` or `NAME = expr`; checks the order and the
 * uniqueness of keywords against those already in list. */
static bool parse_arg(parser *p, arg_list *list, bool keywords) {
  fe_arg arg = {0};
  ir_loc start_loc = tok_loc(p);
  if (keywords && p->tok.kind == FE_TOK_NAME && peek(p)->kind == FE_TOK_PUNCT &&
      peek(p)->punct == '=') {
    arg.keyword = token_text(p, 0);
    arg.keyword_loc = start_loc;
    advance(p);
    advance(p);
  }
  arg.value = parse_expr(p);
  if (!arg.value) return false;
  bool ok = true;
  if (keywords && !arg.keyword && list->count > 0 && list->items[list->count - 1].keyword) {
    diag_error(p->diag, start_loc, "positional argument after keyword argument");
    ok = false;
  }
  for (int i = 0; arg.keyword && i < list->count; i++) {
    if (!list->items[i].keyword || strcmp(list->items[i].keyword, arg.keyword) != 0) continue;
    diag_error(p->diag, arg.keyword_loc, "duplicate keyword argument '%s'", arg.keyword);
    diag_note(p->diag, list->items[i].keyword_loc, "first given here");
    ok = false;
    break;
  }
  if (!ok) p->failed = true;
  return append_arg(p, list, arg) && ok;
}

/* The items of a call (keywords allowed) or a list after its opening
 * bracket, through the closing one. */
static bool parse_items(parser *p, char open, ir_loc open_loc, arg_list *list) {
  char close = open == '(' ? ')' : ']';
  bool ok = true;
  if (is_punct(p, close)) {
    advance(p);
    return true;
  }
  for (;;) {
    if (!parse_arg(p, list, open == '(')) {
      ok = false;
      sync_item(p, close);
    } else if (!is_punct(p, ',') && !is_punct(p, close)) {
      if (p->tok.kind != FE_TOK_ERROR) {
        diag_error(p->diag, tok_loc(p), "expected ',' or '%c' to close '%c'", close, open);
        diag_note(p->diag, open_loc, "'%c' opened here", open);
        if (diag_full(p->diag)) abandon(p);
      }
      ok = false;
      sync_item(p, close);
    }
    if (!ok) p->failed = true;
    if (is_punct(p, ',')) {
      advance(p);
      continue;
    }
    if (is_punct(p, close)) {
      advance(p);
      return ok;
    }
    return false; /* the end of the text: already reported */
  }
}

static fe_expr *finish_items(parser *p, fe_expr *e, char open, ir_loc open_loc) {
  arg_list list = {0};
  bool ok = parse_items(p, open, open_loc, &list);
  if (!ok || !e) return NULL;
  e->num_args = list.count;
  e->args = list.items;
  return e;
}

static fe_expr *parse_group(parser *p) {
  ir_loc open_loc = tok_loc(p);
  advance(p);
  fe_expr *inner = parse_expr(p);
  if (!inner) return NULL;
  if (!is_punct(p, ')')) {
    if (p->tok.kind != FE_TOK_ERROR) {
      diag_error(p->diag, tok_loc(p), "expected ')' to close '('");
      diag_note(p->diag, open_loc, "'(' opened here");
    }
    p->failed = true;
    return NULL;
  }
  advance(p);
  return inner;
}

static fe_expr *parse_number(parser *p) {
  fe_expr *e = new_expr(p, FE_EXPR_NUMBER, tok_loc(p));
  if (!e) return NULL;
  e->is_integer = p->tok.is_integer;
  e->int_value = p->tok.int_value;
  e->number = p->tok.number;
  advance(p);
  return e;
}

static fe_expr *parse_name(parser *p) {
  ir_loc loc = tok_loc(p);
  const char *name = token_text(p, 0);
  advance(p);
  if (!is_punct(p, '(')) {
    fe_expr *e = new_expr(p, FE_EXPR_NAME, loc);
    if (e) e->name = name;
    return e;
  }
  ir_loc open_loc = tok_loc(p);
  advance(p);
  fe_expr *call = new_expr(p, FE_EXPR_CALL, loc);
  if (call) call->name = name;
  return finish_items(p, call, '(', open_loc);
}

static fe_expr *parse_primary(parser *p) {
  switch (p->tok.kind) {
  case FE_TOK_NUMBER: return parse_number(p);
  case FE_TOK_NAME: return parse_name(p);
  case FE_TOK_STRING: {
    fe_expr *e = new_expr(p, FE_EXPR_STRING, tok_loc(p));
    if (e) e->name = token_text(p, 1);
    advance(p);
    return e;
  }
  default: break;
  }
  if (is_punct(p, '(')) return parse_group(p);
  if (is_punct(p, '[')) {
    ir_loc open_loc = tok_loc(p);
    advance(p);
    return finish_items(p, new_expr(p, FE_EXPR_LIST, open_loc), '[', open_loc);
  }
  error_here(p, "expected an expression, found %s", describe(p));
  return NULL;
}

static fe_expr *negate(parser *p, ir_loc loc, fe_expr *operand) {
  if (operand->kind == FE_EXPR_NUMBER) {
    operand->int_value = -operand->int_value;
    operand->number = -operand->number;
    operand->loc = loc;
    return operand;
  }
  fe_expr *e = new_expr(p, FE_EXPR_NEG, loc);
  if (e) e->lhs = operand;
  return e;
}

static fe_expr *parse_unary(parser *p) {
  if (++p->depth > MAX_NESTING) {
    error_here(p, "%s", "expression is nested too deeply");
    abandon(p);
    return NULL;
  }
  fe_expr *e;
  if (is_punct(p, '-')) {
    ir_loc loc = tok_loc(p);
    advance(p);
    fe_expr *operand = parse_unary(p);
    e = operand ? negate(p, loc, operand) : NULL;
  } else {
    e = parse_primary(p);
  }
  p->depth--;
  return e;
}

static fe_expr *binary(parser *p, char op, ir_loc loc, fe_expr *lhs, fe_expr *rhs) {
  fe_expr *e = new_expr(p, FE_EXPR_BINARY, loc);
  if (!e) return NULL;
  e->op = op;
  e->lhs = lhs;
  e->rhs = rhs;
  return e;
}

/* One precedence level: operand (op operand)*, left-associative. */
static fe_expr *parse_level(parser *p, const char *ops, fe_expr *(*operand)(parser *)) {
  fe_expr *lhs = operand(p);
  while (lhs && p->tok.kind == FE_TOK_PUNCT && strchr(ops, p->tok.punct)) {
    char op = p->tok.punct;
    ir_loc loc = tok_loc(p);
    advance(p);
    fe_expr *rhs = operand(p);
    lhs = rhs ? binary(p, op, loc, lhs, rhs) : NULL;
  }
  return lhs;
}

static fe_expr *parse_prod(parser *p) { return parse_level(p, "*/@", parse_unary); }
static fe_expr *parse_expr(parser *p) { return parse_level(p, "+-", parse_prod); }

static void expect_end(parser *p, const char *after) {
  if (p->tok.kind == FE_TOK_EOF) return;
  if (is_punct(p, ')') || is_punct(p, ']'))
    error_here(p, "unmatched %s", describe(p));
  else
    error_here(p, after, describe(p));
}

fe_expr *fe_parse_expression(ir_arena *arena, diag_engine *d, const char *text, size_t length,
                             const fe_yaml_node *origin, ir_loc base) {
  parser p;
  start(&p, arena, d, text, length, origin, base);
  if (p.tok.kind == FE_TOK_EOF) {
    diag_error(d, fe_lexer_loc(&p.lx, 0), "empty expression");
    return NULL;
  }
  fe_expr *e = parse_expr(&p);
  if (e) expect_end(&p, "expected an operator, found %s");
  return p.failed || !e ? NULL : e;
}

fe_expr *fe_parse_scalar(ir_arena *arena, diag_engine *d, const fe_yaml_node *scalar) {
  if (!scalar) return NULL;
  if (scalar->kind != FE_YAML_SCALAR) {
    diag_error(d, scalar->loc, "expected an expression, found a %s",
               scalar->kind == FE_YAML_MAPPING ? "mapping" : "list");
    return NULL;
  }
  return fe_parse_expression(arena, d, scalar->value, scalar->length, scalar, scalar->loc);
}

bool fe_parse_input_type(ir_arena *arena, diag_engine *d, const fe_yaml_node *scalar,
                         fe_expr **dtype, fe_expr **dims) {
  *dtype = *dims = NULL;
  if (!scalar || scalar->kind != FE_YAML_SCALAR) {
    if (scalar) diag_error(d, scalar->loc, "expected an input type such as i32[B, T]");
    return false;
  }
  parser p;
  start(&p, arena, d, scalar->value, scalar->length, scalar, scalar->loc);
  if (p.tok.kind != FE_TOK_NAME) {
    error_here(&p, "expected a dtype such as f32, found %s", describe(&p));
    return false;
  }
  fe_expr *name = parse_primary(&p);
  if (!name) return false;
  if (name->kind != FE_EXPR_NAME || !is_punct(&p, '[')) {
    if (name->kind == FE_EXPR_NAME)
      error_here(&p, "expected '[' after the dtype, found %s", describe(&p));
    else
      diag_error(d, name->loc, "expected an input type such as i32[B, T]");
    return false;
  }
  fe_expr *list = parse_primary(&p);
  if (!list) return false;
  expect_end(&p, "unexpected %s after the input type");
  if (p.failed) return false;
  *dtype = name;
  *dims = list;
  return true;
}

/* ---- printing ---- */

typedef struct text_buf {
  ir_arena *arena;
  char *data;
  size_t len, cap;
  bool failed;
} text_buf;

static void put(text_buf *b, const char *s, size_t n) {
  if (b->failed) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 64;
    while (b->len + n + 1 > cap) cap *= 2;
    char *grown = ir_arena_grow(b->arena, b->data, b->len, cap);
    if (!grown) {
      b->failed = true;
      return;
    }
    b->data = grown;
    b->cap = cap;
  }
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = 0;
}

static void puts_buf(text_buf *b, const char *s) { put(b, s, strlen(s)); }

/* The shortest text that reads back as the same double, in fixed
 * notation for 1e-4 <= |v| < 1e16 and with an exponent otherwise, always
 * with a '.' or an exponent so it stays a real: 3e-4 -> 0.0003, 100 ->
 * 100.0, 1e-08 -> 1e-8. */
static void format_real(char *out, size_t size, double v) {
  int digits = 1;
  for (; digits < 17; digits++) {
    snprintf(out, size, "%.*e", digits - 1, v);
    if (strtod(out, NULL) == v) break;
  }
  snprintf(out, size, "%.*e", digits - 1, v);
  char *e = strchr(out, 'e');
  int exponent = e ? atoi(e + 1) : 0;
  if (v != 0 && (exponent < -4 || exponent >= 16)) {
    snprintf(e + 1, size - (size_t)(e + 1 - out), "%d", exponent);
    return;
  }
  int decimals = digits - 1 - exponent;
  snprintf(out, size, "%.*f", decimals > 0 ? decimals : 0, v);
  if (!strchr(out, '.')) strcat(out, ".0");
}

static int precedence(const fe_expr *e) {
  if (e->kind == FE_EXPR_BINARY) return strchr("+-", e->op) ? 1 : 2;
  if (e->kind == FE_EXPR_NEG) return 3;
  if (e->kind == FE_EXPR_NUMBER && e->number < 0) return 3;
  return 4;
}

static void format_expr(text_buf *b, const fe_expr *e);

static void format_child(text_buf *b, const fe_expr *e, bool parens) {
  if (parens) puts_buf(b, "(");
  format_expr(b, e);
  if (parens) puts_buf(b, ")");
}

static void format_items(text_buf *b, const fe_expr *e, const char *open, const char *close) {
  puts_buf(b, open);
  for (int i = 0; i < e->num_args; i++) {
    if (i) puts_buf(b, ", ");
    if (e->args[i].keyword) {
      puts_buf(b, e->args[i].keyword);
      puts_buf(b, "=");
    }
    format_expr(b, e->args[i].value);
  }
  puts_buf(b, close);
}

static void format_expr(text_buf *b, const fe_expr *e) {
  char num[64];
  if (!e) {
    puts_buf(b, "<null>");
    return;
  }
  switch (e->kind) {
  case FE_EXPR_NUMBER:
    if (e->is_integer)
      snprintf(num, sizeof num, "%lld", (long long)e->int_value);
    else
      format_real(num, sizeof num - 4, e->number);
    puts_buf(b, num);
    return;
  case FE_EXPR_NAME: puts_buf(b, e->name); return;
  case FE_EXPR_STRING: {
    const char *quote = strchr(e->name, '"') ? "'" : "\"";
    puts_buf(b, quote);
    puts_buf(b, e->name);
    puts_buf(b, quote);
    return;
  }
  case FE_EXPR_CALL:
    puts_buf(b, e->name);
    format_items(b, e, "(", ")");
    return;
  case FE_EXPR_LIST: format_items(b, e, "[", "]"); return;
  case FE_EXPR_NEG:
    /* "--x", not "-(-x)": the parentheses would cost nesting depth, and
     * a chain of minus signs that parses would format into one that
     * does not. (A NEG never holds a number: the parser folds those.) */
    puts_buf(b, "-");
    format_child(b, e->lhs, precedence(e->lhs) < 3);
    return;
  case FE_EXPR_BINARY: {
    int prec = precedence(e);
    char op[4] = {' ', e->op, ' ', 0};
    format_child(b, e->lhs, precedence(e->lhs) < prec);
    puts_buf(b, op);
    format_child(b, e->rhs, precedence(e->rhs) <= prec);
    return;
  }
  }
}

char *fe_expr_format(ir_arena *arena, const fe_expr *e) {
  text_buf b = {.arena = arena};
  puts_buf(&b, "");
  format_expr(&b, e);
  return b.failed ? NULL : b.data;
}
