/* fuzz_expr.c: the expression lexer and parser on arbitrary text, and
 * the formatter on what parses: format -> parse -> format must give the
 * same text (the formatter writes what the parser reads). */
#include <stdlib.h>
#include <string.h>

#include "compiler/fe.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ir_arena *arena = ir_arena_new();
  char *text = ir_arena_alloc(arena, size + 1);
  if (size) memcpy(text, data, size);
  text[size] = '\0';
  diag_engine *d = diag_new(arena, fuzz_null_stream());
  diag_add_file(d, "fuzz.yaml", text, size);
  ir_loc base = {"fuzz.yaml", 1, 1};
  /* every token, as the lexer sees the text */
  fe_lexer lx;
  fe_lexer_init(&lx, d, text, size, NULL, base);
  for (int i = 0; i <= (int)size; i++)
    if (fe_lex_next(&lx).kind == FE_TOK_EOF) break;
  fe_expr *e = fe_parse_expression(arena, d, text, size, NULL, base);
  if (e) {
    char *once = fe_expr_format(arena, e);
    diag_engine *quiet = diag_new(arena, fuzz_null_stream());
    fe_expr *again = fe_parse_expression(arena, quiet, once, strlen(once), NULL, base);
    if (!again) {
      fprintf(stderr, "formatted expression does not parse: %s\n", once);
      abort();
    }
    char *twice = fe_expr_format(arena, again);
    if (strcmp(once, twice) != 0) {
      fprintf(stderr, "format is not stable:\n  %s\n  %s\n", once, twice);
      abort();
    }
  }
  diag_finish(d);
  ir_arena_free(arena);
  return 0;
}
