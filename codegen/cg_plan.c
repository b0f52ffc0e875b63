/* cg_plan.c: where every buffer lives.
 *
 * State (parameters, then running statistics, then gradients) sits at
 * fixed offsets. Temporaries of an entry point share one activation
 * region: each is live from the kernel that writes it to the last kernel
 * that reads it (or to the end, for outputs and values assigned to
 * state), and takes the first free gap that fits (first fit, 64-byte
 * aligned). Entry points never run at once, so they share the region. */
#include <stdlib.h>
#include <string.h>

#include "codegen/cg.h"

enum { ALIGN = 64 };

static int64_t align_up(int64_t n) { return (n + ALIGN - 1) / ALIGN * ALIGN; }

static int64_t bytes_of(const cg_buffer *b) {
  int64_t n = ir_type_bytes(&b->type);
  return n > 0 ? n : 1;
}

static int root_of(const cg_program *p, int b) {
  while (p->buffers[b].alias_of >= 0) b = p->buffers[b].alias_of;
  return b;
}

static void touch(cg_program *p, int b, int kernel) {
  if (b < 0) return;
  cg_buffer *buf = &p->buffers[root_of(p, b)];
  if (buf->kind != CG_BUF_TEMP) return;
  if (buf->first_use < 0 || kernel < buf->first_use) buf->first_use = kernel;
  if (kernel > buf->last_use) buf->last_use = kernel;
}

/* Lifetimes of the temporaries of one entry, in kernel indices. */
static void lifetimes(cg_program *p, cg_entry *e) {
  for (int i = 0; i < e->num_kernels; i++) {
    const cg_kernel *k = &e->kernels[i];
    touch(p, k->out, i);
    for (int o = 0; o < k->num_operands; o++) touch(p, k->operands[o], i);
  }
  int end = e->num_kernels;
  for (int i = 0; i < e->num_outputs; i++) touch(p, e->output_buffers[i], end);
  touch(p, e->loss_buffer, end);
  /* Assignments to state run at the end of the step. */
  for (int i = 0; i < e->num_kernels; i++)
    if (e->kernels[i].kind == CG_K_ASSIGN) touch(p, e->kernels[i].operands[1], end);
}

typedef struct placed {
  int64_t offset, size;
  int last_use;
} placed;

static int by_offset(const void *a, const void *b) {
  int64_t x = ((const placed *)a)->offset, y = ((const placed *)b)->offset;
  return (x > y) - (x < y);
}

/* First fit among the live blocks (sorted by offset). */
static int64_t first_fit(placed *live, int n, int64_t size) {
  qsort(live, (size_t)n, sizeof *live, by_offset);
  int64_t at = 0;
  for (int i = 0; i < n; i++) {
    if (live[i].offset - at >= size) return at;
    int64_t end = live[i].offset + live[i].size;
    if (end > at) at = end;
  }
  return at;
}

static void place_entry(cg_program *p, cg_entry *e) {
  for (int i = 0; i < p->num_buffers; i++) p->buffers[i].first_use = p->buffers[i].last_use = -1;
  lifetimes(p, e);
  int n = 0, cap = 64;
  placed *live = malloc(sizeof *live * (size_t)cap);
  int64_t peak = 0;
  /* Temporaries are created in kernel order, so walking buffers by id
   * meets them in the order they start. */
  for (int i = 0; i < p->num_buffers && live; i++) {
    cg_buffer *b = &p->buffers[i];
    if (b->kind != CG_BUF_TEMP || b->alias_of >= 0 || b->first_use < 0) continue;
    int keep = 0;
    for (int j = 0; j < n; j++)
      if (live[j].last_use >= b->first_use) live[keep++] = live[j];
    n = keep;
    int64_t size = align_up(bytes_of(b));
    b->offset = first_fit(live, n, size);
    if (b->offset + size > peak) peak = b->offset + size;
    if (n == cap) {
      placed *grown = realloc(live, sizeof *live * (size_t)(cap *= 2));
      if (!grown) break;
      live = grown;
    }
    live[n++] = (placed){b->offset, size, b->last_use};
  }
  free(live);
  e->activation_bytes = peak;
}

void cg_plan(cg_program *p) {
  int64_t at = 0;
  for (int i = 0; i < p->num_params; i++) {
    p->buffers[p->param_buffers[i]].offset = at;
    at += align_up(bytes_of(&p->buffers[p->param_buffers[i]]));
  }
  for (int i = 0; i < p->num_states; i++) {
    p->buffers[p->state_buffers[i]].offset = at;
    at += align_up(bytes_of(&p->buffers[p->state_buffers[i]]));
  }
  p->state_bytes = at;
  int64_t g = 0;
  for (int i = 0; i < p->num_params; i++) {
    p->buffers[p->grad_buffers[i]].offset = g;
    g += align_up(bytes_of(&p->buffers[p->grad_buffers[i]]));
  }
  p->grad_bytes = g;
  for (int i = 0; i < p->num_entries; i++) place_entry(p, &p->entries[i]);
}
