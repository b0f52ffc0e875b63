/* diag.c: diagnostics with the source line and a caret under the column.
 *
 *   spec.yaml:12:11: error: unknown op 'atention'; did you mean 'attention'?
 *     12 |   - attn: atention(ln1, heads=H)
 *        |           ^
 *
 * Columns count characters (UTF-8 code points), as libyaml's marks do; a
 * tab counts as one column, and the caret line copies the source's tabs
 * so the caret lands under the character whatever the tab width. */
#include "compiler/diag.h"

#include <stdlib.h>
#include <string.h>

enum { GUTTER_WIDTH = 4 };

typedef struct source_file {
  const char *name;
  const char *text;
  size_t len;
  struct source_file *next;
} source_file;

struct diag_engine {
  ir_arena *arena;
  FILE *out;
  source_file *files;
  int errors;
  int suppressed;
  /* The last error or warning was not printed, so its notes are dropped. */
  bool drop_notes;
};

diag_engine *diag_new(ir_arena *arena, FILE *out) {
  diag_engine *d = ir_arena_alloc(arena, sizeof *d);
  if (!d) return NULL;
  d->arena = arena;
  d->out = out ? out : stderr;
  return d;
}

void diag_add_file(diag_engine *d, const char *name, const char *text, size_t len) {
  if (!d || !name || !text) return;
  source_file *f = ir_arena_alloc(d->arena, sizeof *f);
  if (!f) return;
  f->name = name;
  f->text = text;
  f->len = len;
  f->next = d->files;
  d->files = f;
}

static const source_file *find_file(const diag_engine *d, const char *name) {
  for (const source_file *f = d->files; f; f = f->next)
    if (f->name == name || strcmp(f->name, name) == 0) return f;
  return NULL;
}

/* Length of the line break at s[i] (\n, \r\n, \r, and the Unicode breaks
 * NEL, LS, PS that libyaml counts as lines too), or 0. */
static size_t break_length(const char *s, size_t len, size_t i) {
  unsigned char c = (unsigned char)s[i];
  if (c == '\n') return 1;
  if (c == '\r') return i + 1 < len && s[i + 1] == '\n' ? 2 : 1;
  if (c == 0xC2 && i + 1 < len && (unsigned char)s[i + 1] == 0x85) return 2;
  if (c == 0xE2 && i + 2 < len && (unsigned char)s[i + 1] == 0x80 &&
      ((unsigned char)s[i + 2] == 0xA8 || (unsigned char)s[i + 2] == 0xA9))
    return 3;
  return 0;
}

/* Finds 1-based line `line` of f; false when out of range. */
static bool find_line(const source_file *f, int line, const char **start, size_t *len) {
  size_t i = 0;
  /* libyaml skips a UTF-8 byte order mark without counting it. */
  if (f->len >= 3 && memcmp(f->text, "\xEF\xBB\xBF", 3) == 0) i = 3;
  for (int n = 1; n < line; n++) {
    size_t b = 0;
    while (i < f->len && (b = break_length(f->text, f->len, i)) == 0) i++;
    if (i >= f->len) return false;
    i += b;
  }
  if (i >= f->len) return false;
  size_t end = i;
  while (end < f->len && break_length(f->text, f->len, end) == 0) end++;
  *start = f->text + i;
  *len = end - i;
  return true;
}

static bool is_continuation(unsigned char c) { return (c & 0xC0) == 0x80; }

/* Control characters other than tab would garble a terminal: '?' keeps
 * their column. */
static void put_source_line(FILE *out, const char *s, size_t len) {
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    fputc((c < 0x20 && c != '\t') || c == 0x7F ? '?' : c, out);
  }
}

static void put_caret(FILE *out, const char *s, size_t len, int col) {
  size_t i = 0;
  for (int n = 1; n < col; n++) {
    char c = ' ';
    if (i < len) {
      if (s[i] == '\t') c = '\t';
      i++;
      while (i < len && is_continuation((unsigned char)s[i])) i++;
    }
    fputc(c, out);
  }
  fputc('^', out);
}

static int digits(int n) {
  int k = 1;
  while (n >= 10) n /= 10, k++;
  return k;
}

static void show_source(const diag_engine *d, ir_loc loc) {
  const source_file *f = find_file(d, loc.file);
  const char *line;
  size_t len;
  if (!f || loc.line <= 0 || !find_line(f, loc.line, &line, &len)) return;
  int width = digits(loc.line) > GUTTER_WIDTH ? digits(loc.line) : GUTTER_WIDTH;
  fprintf(d->out, "%*d | ", width, loc.line);
  put_source_line(d->out, line, len);
  fprintf(d->out, "\n%*s | ", width, "");
  put_caret(d->out, line, len, loc.col > 0 ? loc.col : 1);
  fputc('\n', d->out);
}

/* A message is one line: line breaks and control characters that came
 * from the user's text are flattened. */
static void put_message(FILE *out, const char *msg) {
  for (const unsigned char *p = (const unsigned char *)msg; *p; p++)
    fputc(*p < 0x20 || *p == 0x7F ? ' ' : *p, out);
}

static void emit(diag_engine *d, const char *kind, ir_loc loc, const char *fmt, va_list ap) {
  char stack[512];
  va_list copy;
  va_copy(copy, ap);
  int n = vsnprintf(stack, sizeof stack, fmt, copy);
  va_end(copy);
  const char *msg = stack;
  if (n >= (int)sizeof stack) {
    char *big = ir_arena_vprintf(d->arena, fmt, ap);
    if (big) msg = big;
  }
  if (!loc.file)
    fprintf(d->out, "modelc: %s: ", kind);
  else if (loc.line <= 0)
    fprintf(d->out, "%s: %s: ", loc.file, kind);
  else
    fprintf(d->out, "%s:%d:%d: %s: ", loc.file, loc.line, loc.col > 0 ? loc.col : 1, kind);
  put_message(d->out, msg);
  fputc('\n', d->out);
  if (loc.file) show_source(d, loc);
}

void diag_error(diag_engine *d, ir_loc loc, const char *fmt, ...) {
  if (!d) return;
  d->errors++;
  if (d->errors > DIAG_MAX_ERRORS) {
    d->suppressed++;
    d->drop_notes = true;
    return;
  }
  d->drop_notes = false;
  va_list ap;
  va_start(ap, fmt);
  emit(d, "error", loc, fmt, ap);
  va_end(ap);
}

void diag_warning(diag_engine *d, ir_loc loc, const char *fmt, ...) {
  if (!d) return;
  d->drop_notes = false;
  va_list ap;
  va_start(ap, fmt);
  emit(d, "warning", loc, fmt, ap);
  va_end(ap);
}

void diag_note(diag_engine *d, ir_loc loc, const char *fmt, ...) {
  if (!d || d->drop_notes) return;
  va_list ap;
  va_start(ap, fmt);
  emit(d, "note", loc, fmt, ap);
  va_end(ap);
}

int diag_error_count(const diag_engine *d) { return d ? d->errors : 0; }

bool diag_full(const diag_engine *d) { return d && d->errors >= DIAG_MAX_ERRORS; }

void diag_finish(diag_engine *d) {
  if (!d) return;
  if (d->suppressed > 0)
    fprintf(d->out, "modelc: note: %d more error%s not shown\n", d->suppressed,
            d->suppressed == 1 ? "" : "s");
  fflush(d->out);
}

/* ---- suggestions ---- */

static size_t min3(size_t a, size_t b, size_t c) {
  size_t m = a < b ? a : b;
  return m < c ? m : c;
}

/* Levenshtein distance, giving up (returning limit + 1) once it must
 * exceed limit, so long garbage words cost little. */
static size_t edit_distance(const char *a, const char *b, size_t limit) {
  size_t la = strlen(a), lb = strlen(b);
  size_t gap = la > lb ? la - lb : lb - la;
  if (gap > limit) return limit + 1;
  size_t *row = malloc((lb + 1) * sizeof *row);
  if (!row) return limit + 1;
  for (size_t j = 0; j <= lb; j++) row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t diagonal = row[0], best = row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t up = row[j];
      row[j] = min3(row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1]));
      diagonal = up;
      if (row[j] < best) best = row[j];
    }
    if (best > limit) {
      free(row);
      return limit + 1;
    }
  }
  size_t result = row[lb];
  free(row);
  return result;
}

static bool same_ignoring_case(const char *a, const char *b) {
  for (; *a && *b; a++, b++) {
    char x = *a >= 'A' && *a <= 'Z' ? (char)(*a + 32) : *a;
    char y = *b >= 'A' && *b <= 'Z' ? (char)(*b + 32) : *b;
    if (x != y) return false;
  }
  return *a == *b;
}

/* Levenshtein distance at most max(1, len/3), the best unique. A word
 * that must be rewritten entirely to match (x -> B) is no typo, unless
 * only the case differs (b -> B). */
const char *diag_suggest(const char *word, const char *const *candidates, int count) {
  if (!word || !candidates) return NULL;
  size_t limit = strlen(word) / 3 > 1 ? strlen(word) / 3 : 1;
  const char *best = NULL;
  size_t best_distance = limit + 1;
  bool tie = false;
  for (int i = 0; i < count; i++) {
    if (!candidates[i]) continue;
    size_t dist = edit_distance(word, candidates[i], limit);
    if (dist > limit || (dist >= strlen(word) && !same_ignoring_case(word, candidates[i])))
      continue;
    if (dist < best_distance) {
      best = candidates[i], best_distance = dist, tie = false;
    } else if (dist == best_distance && strcmp(best, candidates[i]) != 0) {
      tie = true;
    }
  }
  return tie ? NULL : best;
}
