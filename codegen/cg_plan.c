/* cg_plan.c: where every buffer lives.
 *
 * State (parameters, then running statistics, then gradients) sits at
 * fixed offsets. Temporaries of an entry point share one activation
 * region: each is live from the kernel that writes it to the last kernel
 * that reads it (or to the end, for outputs and values assigned to
 * state), and takes the first free gap that fits (first fit, 64-byte
 * aligned), or, when an elementwise kernel reads an operand that dies
 * there element by element in step with its output, that operand's own
 * place (in place). Entry points never run at once, so they share the
 * region. */
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
    for (int o = 0; o < k->num_more_outs; o++) touch(p, k->more_outs[o], i);
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

/* An elementwise kernel reads each element of operand o at the index it
 * writes (contiguous strides over the same loop): its output may then
 * overwrite o in place, when o dies at this kernel. */
static bool same_walk(const cg_program *p, const cg_kernel *k, int o) {
  if (k->kind != CG_K_ELEMENTWISE || k->base[o] != 0) return false;
  const cg_buffer *in = &p->buffers[k->operands[o]], *out = &p->buffers[k->out];
  if (ir_type_bytes(&in->type) != ir_type_bytes(&out->type)) return false;
  int64_t s = 1;
  for (int d = k->loop_rank - 1; d >= 0; d--) {
    if (k->strides[o][d] != s) return false;
    s *= k->loop_dims[d];
  }
  return true;
}

/* The temporary whose memory the output of kernel `at` can take: an
 * operand read in step with the output that is not read after `at`. */
static int in_place_donor(const cg_program *p, const cg_entry *e, int b) {
  const cg_buffer *buf = &p->buffers[b];
  const cg_kernel *k = &e->kernels[buf->first_use];
  if (k->out != b) return -1;
  for (int o = 0; o < k->num_operands; o++) {
    int d = k->operands[o];
    if (d < 0) continue;
    int r = root_of(p, d);
    const cg_buffer *donor = &p->buffers[r];
    if (donor->kind != CG_BUF_TEMP || donor->last_use != buf->first_use || !same_walk(p, k, o))
      continue;
    /* every other read of the donor in this kernel must walk in step too */
    bool ok = true;
    for (int j = 0; j < k->num_operands && ok; j++)
      if (j != o && k->operands[j] >= 0 && root_of(p, k->operands[j]) == r) ok = same_walk(p, k, j);
    if (ok) return r;
  }
  return -1;
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
    int64_t size = align_up(bytes_of(b));
    int donor = in_place_donor(p, e, i);
    int keep = 0;
    for (int j = 0; j < n; j++) {
      if (live[j].last_use < b->first_use) continue;
      if (donor >= 0 && live[j].offset == p->buffers[donor].offset && live[j].last_use == b->first_use &&
          live[j].size == size) {
        /* in place: the donor's block becomes this buffer's */
        b->offset = live[j].offset;
        live[j].last_use = b->last_use;
        donor = -2;
      }
      live[keep++] = live[j];
    }
    n = keep;
    if (donor == -2) continue;
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
