/* arena.c: bump allocation in chunks, freed all at once. */
#include "arena.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CHUNK_MIN = 64 * 1024, ALIGN = 16 };

typedef struct chunk {
  struct chunk *next;
  size_t size;
  size_t used;
  _Alignas(16) unsigned char data[];
} chunk;

struct ir_arena {
  chunk *head;
  size_t total;
};

ir_arena *ir_arena_new(void) { return calloc(1, sizeof(ir_arena)); }

void ir_arena_free(ir_arena *arena) {
  if (!arena) return;
  chunk *c = arena->head;
  while (c) {
    chunk *next = c->next;
    free(c);
    c = next;
  }
  free(arena);
}

void *ir_arena_alloc(ir_arena *arena, size_t size) {
  size = (size + ALIGN - 1) & ~(size_t)(ALIGN - 1);
  if (size == 0) size = ALIGN;
  chunk *c = arena->head;
  if (!c || c->size - c->used < size) {
    size_t want = size > CHUNK_MIN ? size : CHUNK_MIN;
    c = malloc(sizeof(chunk) + want);
    if (!c) return NULL;
    c->size = want;
    c->used = 0;
    c->next = arena->head;
    arena->head = c;
  }
  void *p = c->data + c->used;
  c->used += size;
  arena->total += size;
  memset(p, 0, size);
  return p;
}

void *ir_arena_grow(ir_arena *arena, void *old, size_t old_size, size_t new_size) {
  void *p = ir_arena_alloc(arena, new_size);
  if (p && old && old_size) memcpy(p, old, old_size < new_size ? old_size : new_size);
  return p;
}

char *ir_arena_strndup(ir_arena *arena, const char *s, size_t n) {
  char *p = ir_arena_alloc(arena, n + 1);
  if (!p) return NULL;
  memcpy(p, s, n);
  p[n] = 0;
  return p;
}

char *ir_arena_strdup(ir_arena *arena, const char *s) {
  return ir_arena_strndup(arena, s, strlen(s));
}

char *ir_arena_vprintf(ir_arena *arena, const char *fmt, va_list ap) {
  va_list copy;
  va_copy(copy, ap);
  int n = vsnprintf(NULL, 0, fmt, copy);
  va_end(copy);
  if (n < 0) return NULL;
  char *p = ir_arena_alloc(arena, (size_t)n + 1);
  if (!p) return NULL;
  vsnprintf(p, (size_t)n + 1, fmt, ap);
  return p;
}

char *ir_arena_printf(ir_arena *arena, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *p = ir_arena_vprintf(arena, fmt, ap);
  va_end(ap);
  return p;
}

size_t ir_arena_bytes_used(const ir_arena *arena) { return arena->total; }
