/* cg_table.c: the model around the kernels as a table, for backends
 * that render kernels only (LLVM): the runtime (rt_table.c) reads it
 * and does what cg_model_c.c writes out as C. The format is described
 * at the top of runtime/rt_table.c. */
#include <string.h>

#include "codegen/cg.h"

static const cg_entry *entry_named(const cg_program *p, const char *name) {
  for (int i = 0; i < p->num_entries; i++)
    if (strcmp(p->entries[i].name, name) == 0) return &p->entries[i];
  return NULL;
}

static void dims(cg_emitter *e, const ir_type *t) {
  cg_emitf(e, " %d", t->rank);
  for (int d = 0; d < t->rank; d++) cg_emitf(e, " %lld", (long long)t->dims[d]);
}

static void location(cg_emitter *e, const cg_program *p, int b) {
  const cg_buffer *r = &p->buffers[b];
  while (r->alias_of >= 0) r = &p->buffers[r->alias_of];
  char region = r->kind == CG_BUF_TEMP ? 'a' : r->kind == CG_BUF_INPUT ? 'i' : r->kind == CG_BUF_GRAD ? 'g' : 's';
  cg_emitf(e, " %c %lld", region, (long long)(region == 'i' ? r->index : r->offset));
}

int64_t cg_activation_bytes(const cg_program *p) {
  int64_t most = 0;
  for (int i = 0; i < p->num_entries; i++)
    if (p->entries[i].activation_bytes > most) most = p->entries[i].activation_bytes;
  return most;
}

bool cg_kernel_checks(const cg_kernel *k) { return cg_kernel_returns_status(k); }

int cg_check_index(const cg_program *p, const cg_entry *entry, int kernel) {
  int n = 0;
  for (int i = 0; i < p->num_entries; i++)
    for (int j = 0; j < p->entries[i].num_kernels; j++) {
      if (&p->entries[i] == entry && j == kernel) return n;
      if (cg_kernel_checks(&p->entries[i].kernels[j])) n++;
    }
  return n;
}

static void tensors(cg_emitter *e, const cg_program *p) {
  for (int i = 0; i < p->num_params + p->num_states; i++) {
    int b = i < p->num_params ? p->param_buffers[i] : p->state_buffers[i - p->num_params];
    const cg_buffer *buf = &p->buffers[b];
    const char *init = ir_get_str(buf->value->def, "init", "zeros");
    int kind = !strcmp(init, "normal") ? 0 : !strcmp(init, "uniform") ? 1 : !strcmp(init, "ones") ? 3 : 2;
    cg_emitf(e, "tensor %s %d", buf->name, buf->type.dtype == IR_i64 ? IR_i64 : IR_f32);
    dims(e, &buf->type);
    cg_emitf(e, " %lld %lld %d %.9g %.9g %d %d\n", (long long)buf->offset,
             (long long)ir_type_numel(&buf->type), kind, (double)(float)ir_get_float(buf->value->def, "a", 0),
             (double)(float)ir_get_float(buf->value->def, "b", 0), buf->type.rank >= 2 && i < p->num_params,
             i < p->num_params);
  }
}

const char *cg_table_text(const cg_program *p, const cg_spec_info *info) {
  cg_emitter e;
  cg_emit_init(&e, p->arena);
  const cg_entry *forward = entry_named(p, "forward"), *train = entry_named(p, "train");
  const char *names[3] = {"forward", "evaluate", "train"};
  int64_t grads = train ? p->grad_bytes : 0;
  int64_t slots = !train ? 0 : info->optimizer == 0 ? 2 : info->momentum != 0 ? 1 : 0;
  cg_emitf(&e, "model %s\n", p->model);
  cg_emitf(&e, "bytes %lld %lld %lld %lld\n", (long long)p->state_bytes, (long long)grads,
           (long long)(grads * slots), (long long)cg_activation_bytes(p));
  if (train)
    cg_emitf(&e, "train %d %.17g %.17g %.17g %.17g %.17g %.17g %d %d %.17g %lld %lld %.17g %lld %llu\n",
             info->optimizer, info->lr, info->beta1, info->beta2, info->eps, info->weight_decay,
             info->momentum, info->nesterov, info->schedule, info->min_lr, (long long)info->warmup,
             (long long)info->steps, info->grad_clip, (long long)info->accumulate,
             (unsigned long long)info->seed);
  tensors(&e, p);
  for (int i = 0; i < p->num_inputs; i++) {
    const ir_type *t = &p->inputs[i]->type;
    cg_emitf(&e, "input %s %d", p->inputs[i]->name, t->dtype == IR_i32 ? IR_i32 : IR_f32);
    dims(&e, t);
    cg_emitf(&e, " %d\n", forward && !forward->input_used[i]);
  }
  for (int i = 0; forward && i < forward->num_outputs; i++) {
    cg_emitf(&e, "output %s", forward->output_names[i]);
    dims(&e, &p->buffers[forward->output_buffers[i]].type);
    cg_emitf(&e, "\n");
  }
  for (int n = 0; n < 3; n++) {
    const cg_entry *entry = entry_named(p, names[n]);
    if (!entry) continue;
    cg_emitf(&e, "entry %d", n);
    for (int i = 0; i < p->num_inputs; i++) cg_emitf(&e, " %d", entry->input_used[i]);
    cg_emitf(&e, "\n");
    for (int i = 0; i < entry->num_outputs; i++) {
      cg_emitf(&e, "out %d %d", n, i);
      location(&e, p, entry->output_buffers[i]);
      cg_emitf(&e, "\n");
    }
    if (entry->loss_buffer >= 0) {
      cg_emitf(&e, "loss %d", n);
      location(&e, p, entry->loss_buffer);
      cg_emitf(&e, "\n");
    }
  }
  for (int i = 0; i < p->num_entries; i++)
    for (int j = 0; j < p->entries[i].num_kernels; j++)
      if (cg_kernel_checks(&p->entries[i].kernels[j])) {
        const ir_node *n = p->entries[i].kernels[j].node;
        /* an embedding's ids, or a kernel that allocates (flash attention) */
        if (n->op == IR_OP_gather) cg_emitf(&e, "check %s\n", n->inputs[1]->name);
        else cg_emitf(&e, "status %s\n", n->results[0]->name);
      }
  return cg_emit_text(&e);
}
