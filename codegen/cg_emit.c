/* cg_emit.c: the text emitter every renderer writes through: it keeps
 * the indentation, so generated code comes out formatted. */
#include <stdarg.h>
#include <string.h>

#include "codegen/cg.h"

void cg_emit_init(cg_emitter *e, ir_arena *arena) {
  memset(e, 0, sizeof *e);
  e->arena = arena;
  e->line_start = true;
}

static void append(cg_emitter *e, const char *s, size_t n) {
  if (e->len + n + 1 > e->cap) {
    size_t cap = e->cap ? e->cap : 4096;
    while (e->len + n + 1 > cap) cap *= 2;
    e->buf = ir_arena_grow(e->arena, e->buf, e->len, cap);
    e->cap = cap;
  }
  memcpy(e->buf + e->len, s, n);
  e->len += n;
  e->buf[e->len] = 0;
}

/* Splits text at newlines so each line starts at the current indent. */
static void put(cg_emitter *e, const char *text) {
  while (*text) {
    const char *nl = strchr(text, '\n');
    size_t n = nl ? (size_t)(nl - text) : strlen(text);
    if (n > 0 && e->line_start) {
      for (int i = 0; i < e->indent; i++) append(e, "  ", 2);
      e->line_start = false;
    }
    append(e, text, n);
    if (!nl) break;
    append(e, "\n", 1);
    e->line_start = true;
    text = nl + 1;
  }
}

void cg_emitf(cg_emitter *e, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = ir_arena_vprintf(e->arena, fmt, ap);
  va_end(ap);
  if (s) put(e, s);
}

void cg_emit_open(cg_emitter *e, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = ir_arena_vprintf(e->arena, fmt, ap);
  va_end(ap);
  if (s) put(e, s);
  put(e, " {\n");
  e->indent++;
}

void cg_emit_close(cg_emitter *e, const char *closing) {
  if (e->indent > 0) e->indent--;
  put(e, closing ? closing : "}\n");
}

const char *cg_emit_text(cg_emitter *e) { return e->buf ? e->buf : ""; }
