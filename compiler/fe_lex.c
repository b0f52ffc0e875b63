/* fe_lex.c: tokens of the expression language inside YAML scalars.
 *
 *   NUMBER  123  1.5  1.  3e-4  1E+8     (a leading '.' as in .5 is an error)
 *   NAME    [A-Za-z_][A-Za-z0-9_]*
 *   STRING  "..." or '...'               (no escapes: a backslash is itself)
 *   PUNCT   + - * / @ ( ) [ ] , =
 *
 * Offsets are bytes into the scalar's value; fe_lexer_loc turns one into
 * a file position through the YAML node, so errors point at the exact
 * character even inside quoted or folded scalars. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/fe.h"

void fe_lexer_init(fe_lexer *lx, diag_engine *d, const char *text, size_t length,
                   const fe_yaml_node *origin, ir_loc base) {
  *lx = (fe_lexer){.text = text ? text : "",
                   .length = text ? length : 0,
                   .origin = origin,
                   .base = base,
                   .diag = d};
}

ir_loc fe_lexer_loc(const fe_lexer *lx, size_t offset) {
  if (offset > lx->length) offset = lx->length;
  if (lx->origin) return fe_yaml_offset_loc(lx->origin, offset);
  ir_loc loc = lx->base;
  for (size_t i = 0; i < offset; i++)
    if (((unsigned char)lx->text[i] & 0xC0) != 0x80) loc.col++;
  return loc;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_name_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
static bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

static char peek_at(const fe_lexer *lx, size_t i) { return i < lx->length ? lx->text[i] : 0; }

static fe_token make(fe_lexer *lx, fe_token_kind kind, size_t start) {
  return (fe_token){.kind = kind, .offset = start, .length = lx->pos - start};
}

static fe_token error_token(fe_lexer *lx, size_t start) { return make(lx, FE_TOK_ERROR, start); }

static size_t skip_digits(const fe_lexer *lx, size_t i) {
  while (is_digit(peek_at(lx, i))) i++;
  return i;
}

static bool parse_integer(const char *s, size_t n, int64_t *out) {
  int64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    int digit = s[i] - '0';
    if (v > (INT64_MAX - digit) / 10) return false;
    v = v * 10 + digit;
  }
  *out = v;
  return true;
}

/* strtod needs a terminated copy: the scalar's text may go on. */
static double parse_real(const char *s, size_t n) {
  char small[64];
  char *buf = n < sizeof small ? small : malloc(n + 1);
  if (!buf) return HUGE_VAL;
  memcpy(buf, s, n);
  buf[n] = 0;
  double v = strtod(buf, NULL);
  if (buf != small) free(buf);
  return v;
}

static fe_token lex_number(fe_lexer *lx) {
  size_t start = lx->pos, i = skip_digits(lx, start);
  bool integer = true;
  if (peek_at(lx, i) == '.') integer = false, i = skip_digits(lx, i + 1);
  char e = peek_at(lx, i);
  if (e == 'e' || e == 'E') {
    size_t j = i + 1;
    if (peek_at(lx, j) == '+' || peek_at(lx, j) == '-') j++;
    if (is_digit(peek_at(lx, j))) integer = false, i = skip_digits(lx, j);
  }
  if (is_name_char(peek_at(lx, i)) || peek_at(lx, i) == '.') {
    while (is_name_char(peek_at(lx, i)) || peek_at(lx, i) == '.') i++;
    lx->pos = i;
    diag_error(lx->diag, fe_lexer_loc(lx, start), "malformed number '%.*s'", (int)(i - start),
               lx->text + start);
    return error_token(lx, start);
  }
  lx->pos = i;
  fe_token t = make(lx, FE_TOK_NUMBER, start);
  t.is_integer = integer;
  const char *s = lx->text + start;
  if (integer) {
    if (!parse_integer(s, t.length, &t.int_value)) {
      diag_error(lx->diag, fe_lexer_loc(lx, start), "integer '%.*s' is too large", (int)t.length,
                 s);
      return error_token(lx, start);
    }
    t.number = (double)t.int_value;
  } else {
    t.number = parse_real(s, t.length);
    if (isinf(t.number)) {
      diag_error(lx->diag, fe_lexer_loc(lx, start), "number '%.*s' is out of range", (int)t.length,
                 s);
      return error_token(lx, start);
    }
  }
  return t;
}

static fe_token lex_string(fe_lexer *lx) {
  size_t start = lx->pos;
  char quote = lx->text[start];
  const char *close = memchr(lx->text + start + 1, quote, lx->length - start - 1);
  if (!close) {
    lx->pos = lx->length;
    diag_error(lx->diag, fe_lexer_loc(lx, start), "unterminated string");
    return error_token(lx, start);
  }
  lx->pos = (size_t)(close - lx->text) + 1;
  return make(lx, FE_TOK_STRING, start);
}

/* Decodes one UTF-8 character at s (n bytes available); 0 when invalid. */
static size_t decode_utf8(const unsigned char *s, size_t n, unsigned *code) {
  size_t len = s[0] >= 0xF0 && s[0] < 0xF5 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC2 ? 2 : 0;
  if (s[0] >= 0xF5 || len == 0 || len > n) return 0;
  unsigned c = s[0] & (0x7F >> len);
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    c = c << 6 | (s[i] & 0x3F);
  }
  *code = c;
  return len;
}

static fe_token lex_bad_character(fe_lexer *lx) {
  size_t start = lx->pos;
  unsigned char c = (unsigned char)lx->text[start];
  ir_loc loc = fe_lexer_loc(lx, start);
  unsigned code;
  size_t len;
  lx->pos++;
  if (c == ':') {
    diag_error(lx->diag, loc, "unexpected character ':'; keyword arguments are written name=value");
  } else if (c == '.' && is_digit(peek_at(lx, lx->pos))) {
    lx->pos = skip_digits(lx, lx->pos);
    diag_error(lx->diag, loc, "malformed number '.%.*s'; write 0.%.*s", (int)(lx->pos - start - 1),
               lx->text + start + 1, (int)(lx->pos - start - 1), lx->text + start + 1);
  } else if (c > 0x20 && c < 0x7F) {
    diag_error(lx->diag, loc, "unexpected character '%c'", c);
  } else if (c >= 0x80 && (len = decode_utf8((const unsigned char *)lx->text + start,
                                             lx->length - start, &code)) != 0) {
    lx->pos = start + len;
    diag_error(lx->diag, loc, "unexpected character U+%04X", code);
  } else {
    diag_error(lx->diag, loc, "unexpected byte 0x%02X", c);
  }
  return error_token(lx, start);
}

fe_token fe_lex_next(fe_lexer *lx) {
  while (lx->pos < lx->length && strchr(" \t\r\n", lx->text[lx->pos]) && lx->text[lx->pos])
    lx->pos++;
  size_t start = lx->pos;
  if (start >= lx->length) return make(lx, FE_TOK_EOF, start);
  char c = lx->text[start];
  if (is_digit(c)) return lex_number(lx);
  if (is_name_start(c)) {
    while (is_name_char(peek_at(lx, lx->pos))) lx->pos++;
    return make(lx, FE_TOK_NAME, start);
  }
  if (c == '"' || c == '\'') return lex_string(lx);
  if (c && strchr("+-*/@()[],=", c)) {
    lx->pos++;
    fe_token t = make(lx, FE_TOK_PUNCT, start);
    t.punct = c;
    return t;
  }
  return lex_bad_character(lx);
}
