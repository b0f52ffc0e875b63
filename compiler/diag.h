/* diag.h: compiler diagnostics.
 *
 *   spec.yaml:12:17: error: unknown op 'atention'; did you mean 'attention'?
 *      12 |   - attn: atention(ln1, heads=H)
 *         |           ^
 *   spec.yaml:3:5: note: first defined here
 *      ...
 *
 * Errors are collected (up to DIAG_MAX_ERRORS are printed, then one line
 * says the rest were suppressed); the caller decides when to stop. */
#ifndef MODELC_DIAG_H
#define MODELC_DIAG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

#include "ir/ir.h"

enum { DIAG_MAX_ERRORS = 20 };

typedef struct diag_engine diag_engine;

diag_engine *diag_new(ir_arena *arena, FILE *out);
/* Registers a file's text so diagnostics can show its lines. The text is
 * not copied and must outlive the engine. */
void diag_add_file(diag_engine *d, const char *name, const char *text, size_t len);
void diag_error(diag_engine *d, ir_loc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void diag_warning(diag_engine *d, ir_loc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A note attaches to the last error or warning; it is dropped when that
 * one was suppressed. */
void diag_note(diag_engine *d, ir_loc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int diag_error_count(const diag_engine *d);
/* True once DIAG_MAX_ERRORS errors were reported: callers stop early. */
bool diag_full(const diag_engine *d);
/* Prints "modelc: note: N more errors not shown" if any were suppressed,
 * and flushes the output. */
void diag_finish(diag_engine *d);

/* The closest of candidates to word by edit distance, or NULL when none
 * is close enough to suggest: Levenshtein distance at most
 * max(1, strlen(word)/3), a unique best, and not a complete rewrite of
 * the word (x -> B) unless only the case differs (b -> B). */
const char *diag_suggest(const char *word, const char *const *candidates, int count);

#endif
