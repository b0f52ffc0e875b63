/* diag_fixture.h: the fixture that front-end unit tests share: an arena
 * and a diagnostics engine writing into memory, so a test can compare
 * the exact text of what was reported. Included by one test file each. */
#ifndef MODELC_DIAG_FIXTURE_H
#define MODELC_DIAG_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>

#include "compiler/diag.h"

static ir_arena *arena;
static diag_engine *diag;
static FILE *out;
static char *buf;
static size_t len;

static void setup(void) {
  arena = ir_arena_new();
  out = open_memstream(&buf, &len);
  diag = diag_new(arena, out);
}

static void teardown(void) {
  fclose(out);
  free(buf);
  buf = NULL;
  ir_arena_free(arena);
}

/* Everything reported since setup(). */
static const char *output(void) {
  fflush(out);
  return buf;
}

#endif
