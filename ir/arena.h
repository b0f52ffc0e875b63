/* arena.h: one bump allocator per compilation.
 *
 * The front end and the IR allocate everything from one arena and free it
 * all at once, so no pass has to track ownership. Allocation failure is
 * fatal only in the sense that it returns NULL; callers report it. */
#ifndef MODELC_ARENA_H
#define MODELC_ARENA_H

#include <stdarg.h>
#include <stddef.h>

typedef struct ir_arena ir_arena;

ir_arena *ir_arena_new(void);
void ir_arena_free(ir_arena *arena);
/* Zeroed memory, aligned to 16 bytes. */
void *ir_arena_alloc(ir_arena *arena, size_t size);
/* Grows an array allocated from the arena; the old block is not reused. */
void *ir_arena_grow(ir_arena *arena, void *old, size_t old_size, size_t new_size);
char *ir_arena_strdup(ir_arena *arena, const char *s);
char *ir_arena_strndup(ir_arena *arena, const char *s, size_t n);
char *ir_arena_printf(ir_arena *arena, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
char *ir_arena_vprintf(ir_arena *arena, const char *fmt, va_list ap);
size_t ir_arena_bytes_used(const ir_arena *arena);

#endif
