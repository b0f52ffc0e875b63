/* fuzz_ir.c: the graph IR text parser on arbitrary text. What parses is
 * verified, and print -> parse -> print must be the identity (ir.h); a
 * graph the verifier accepts is also run through the pipeline's passes. */
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ir_arena *arena = ir_arena_new();
  char *text = ir_arena_alloc(arena, size + 1);
  if (size) memcpy(text, data, size);
  text[size] = '\0';
  char err[IR_ERR_LEN];
  ir_graph *g = ir_parse(arena, text, "fuzz.ir", err, sizeof err);
  if (g) {
    char *once = ir_print_to_string(arena, g);
    ir_graph *again = ir_parse(arena, once, "printed.ir", err, sizeof err);
    if (!again) {
      fprintf(stderr, "printed graph does not parse: %s\n%s", err, once);
      abort();
    }
    char *twice = ir_print_to_string(arena, again);
    if (strcmp(once, twice) != 0) {
      fprintf(stderr, "print -> parse -> print changed the text:\n%s---\n%s", once, twice);
      abort();
    }
    if (ir_verify(g, false, NULL) == 0) {
      ir_pass_options opts = {.verify_each = true};
      (void)ir_run_pipeline(g, &opts, err, sizeof err);
    }
  }
  ir_arena_free(arena);
  return 0;
}
