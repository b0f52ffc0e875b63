/* verify.c: checks a graph's invariants (see ir.h) and reports each
 * problem as one line:
 *
 *   node 12 (matmul %x.3): input 1 %w is used before its definition
 *
 * Nodes are numbered by their position in the graph, from 0. The verifier
 * never changes the graph: shape rules run on a scratch copy of a node. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

enum { MAX_CHECKED_RESULTS = 8 };

typedef struct verifier {
  const ir_graph *g;
  FILE *out;
  int problems;
  int num_values;
  int *def_pos;             /* value id -> position of its defining node, -1 */
  const ir_value **by_id;   /* value id -> the value defined with that id */
  const ir_value **names;   /* open-addressing set of result names */
  int *name_pos;            /* position of the node that took names[i] */
  size_t names_cap;
  /* the node being checked */
  const ir_node *node;
  int pos;
} verifier;

static void report(verifier *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void report(verifier *v, const char *fmt, ...) {
  v->problems++;
  if (!v->out) return;
  const ir_op_info *info = ir_op_get(v->node->op);
  fprintf(v->out, "node %d (%s", v->pos, info ? info->name : "?");
  if (v->node->num_results > 0 && v->node->results && v->node->results[0]) {
    char name[IR_ERR_LEN];
    fprintf(v->out, " %s", ir_value_format(v->node->results[0], name, sizeof name));
  }
  fprintf(v->out, "): ");
  va_list ap;
  va_start(ap, fmt);
  vfprintf(v->out, fmt, ap);
  va_end(ap);
  fprintf(v->out, "\n");
}

static const char *value_text(const ir_value *value, char *buf, size_t len) {
  return ir_value_format(value, buf, len);
}

/* ---- pass 1: where each value is defined, and unique names ---- */

static uint64_t hash_name(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

/* Returns the position of the node that already took the name, or -1
 * after recording it for pos. */
static int claim_name(verifier *v, const ir_value *value, int pos) {
  size_t mask = v->names_cap - 1;
  for (size_t i = hash_name(value->name) & mask;; i = (i + 1) & mask) {
    if (!v->names[i]) {
      v->names[i] = value;
      v->name_pos[i] = pos;
      return -1;
    }
    if (strcmp(v->names[i]->name, value->name) == 0) return v->name_pos[i];
  }
}

static void record_result(verifier *v, const ir_value *value, int i) {
  char name[IR_ERR_LEN];
  if (value->id < 0 || value->id >= v->num_values) {
    report(v, "result %d has id %d outside the graph's %d values", i, value->id, v->num_values);
    return;
  }
  if (v->by_id[value->id]) {
    report(v, "result %d %s is defined again (first by node %d)", i,
           value_text(value, name, sizeof name), v->def_pos[value->id]);
    return;
  }
  v->by_id[value->id] = value;
  v->def_pos[value->id] = v->pos;
  if (!value->name) {
    report(v, "result %d has no name", i);
    return;
  }
  int other = claim_name(v, value, v->pos);
  if (other >= 0)
    report(v, "result %d %s: name already used by node %d", i,
           value_text(value, name, sizeof name), other);
  else if (ir_graph_find(v->g, value->name) != value)
    report(v, "result %d %s is not registered under its name (rename with ir_value_rename)", i,
           value_text(value, name, sizeof name));
}

static void record_node(verifier *v) {
  const ir_node *n = v->node;
  if (n->num_results > 0 && !n->results) {
    report(v, "has no result array");
    return;
  }
  for (int i = 0; i < n->num_results; i++) {
    const ir_value *value = n->results[i];
    if (!value) {
      report(v, "result %d is NULL", i);
      continue;
    }
    if (value->def != n || value->result_index != i)
      report(v, "result %d does not point back at its node", i);
    record_result(v, value, i);
  }
}

/* ---- pass 2: each node ---- */

static void check_counts(verifier *v, const ir_op_info *info) {
  const ir_node *n = v->node;
  int lo = info->min_inputs, hi = info->max_inputs;
  if (n->num_inputs < lo || (hi >= 0 && n->num_inputs > hi)) {
    if (hi < 0)
      report(v, "takes at least %d input%s, got %d", lo, lo == 1 ? "" : "s", n->num_inputs);
    else if (lo == hi)
      report(v, "takes %d input%s, got %d", lo, lo == 1 ? "" : "s", n->num_inputs);
    else
      report(v, "takes %d to %d inputs, got %d", lo, hi, n->num_inputs);
  }
  if (n->num_results != info->num_results)
    report(v, "has %d results, the op defines %d", n->num_results, info->num_results);
}

static bool check_inputs(verifier *v) {
  const ir_node *n = v->node;
  bool ok = true;
  char name[IR_ERR_LEN];
  for (int i = 0; i < n->num_inputs; i++) {
    const ir_value *in = n->inputs[i];
    if (!in) {
      report(v, "input %d is NULL", i);
      ok = false;
      continue;
    }
    bool known = in->id >= 0 && in->id < v->num_values && v->by_id[in->id] == in;
    if (!known)
      report(v, "input %d %s is not defined in the graph", i, value_text(in, name, sizeof name));
    else if (v->def_pos[in->id] >= v->pos)
      report(v, "input %d %s is used before its definition", i,
             value_text(in, name, sizeof name));
  }
  return ok;
}

static const char *const kind_names[] = {"int", "float", "bool", "str", "ints", "floats"};

static const char *kind_name(ir_attr_kind kind) {
  return (unsigned)kind < sizeof kind_names / sizeof kind_names[0] ? kind_names[kind] : "?";
}

static void check_attrs(verifier *v, const ir_op_info *info) {
  const ir_node *n = v->node;
  for (int i = 0; i < n->num_attrs; i++) {
    const ir_attr *a = &n->attrs[i];
    const ir_attr_spec *spec = NULL;
    for (int j = 0; j < info->num_attrs; j++)
      if (strcmp(info->attrs[j].name, a->name) == 0) spec = &info->attrs[j];
    for (int j = 0; j < i; j++)
      if (strcmp(n->attrs[j].name, a->name) == 0) report(v, "attribute '%s' given twice", a->name);
    if (!spec)
      report(v, "unknown attribute '%s'", a->name);
    else if (spec->kind != a->kind)
      report(v, "attribute '%s' is %s, expected %s", a->name, kind_name(a->kind),
             kind_name(spec->kind));
  }
  for (int j = 0; j < info->num_attrs; j++)
    if (!info->attrs[j].optional && !ir_get_attr(n, info->attrs[j].name))
      report(v, "missing attribute '%s'", info->attrs[j].name);
}

static bool type_valid(const ir_type *t) {
  if ((unsigned)t->dtype >= IR_DTYPE_COUNT || t->rank < 0 || t->rank > IR_MAX_RANK) return false;
  for (int i = 0; i < t->rank; i++)
    if (t->dims[i] < 0) return false;
  return true;
}

/* Runs the shape rule on a copy whose results are scratch values. */
static void check_types(verifier *v, const ir_op_info *info) {
  const ir_node *n = v->node;
  int count = n->num_results;
  if (count > MAX_CHECKED_RESULTS) return;
  for (int i = 0; i < count; i++)
    if (!type_valid(&n->results[i]->type)) report(v, "result %d has an invalid type", i);
  if ((info->flags & IR_OPF_SOURCE) || !info->shape) return;
  ir_value scratch[MAX_CHECKED_RESULTS];
  ir_value *results[MAX_CHECKED_RESULTS];
  ir_node copy = *n;
  for (int i = 0; i < count; i++) {
    scratch[i] = *n->results[i];
    results[i] = &scratch[i];
  }
  copy.results = results;
  char msg[IR_ERR_LEN];
  if (!info->shape(&copy, msg, sizeof msg)) {
    report(v, "%s", msg);
    return;
  }
  for (int i = 0; i < count; i++) {
    if (ir_type_equal(&scratch[i].type, &n->results[i]->type)) continue;
    char name[IR_ERR_LEN], have[IR_ERR_LEN], want[IR_ERR_LEN];
    report(v, "result %d %s has type %s but the shape rule gives %s", i,
           value_text(n->results[i], name, sizeof name),
           ir_type_format(&n->results[i]->type, have, sizeof have),
           ir_type_format(&scratch[i].type, want, sizeof want));
  }
}

static void check_node(verifier *v, bool expanded) {
  const ir_op_info *info = ir_op_get(v->node->op);
  if (!info) {
    report(v, "invalid op %d", (int)v->node->op);
    return;
  }
  int before = v->problems;
  check_counts(v, info);
  bool inputs_ok = check_inputs(v);
  check_attrs(v, info);
  bool results_ok = v->node->num_results == 0 || v->node->results;
  for (int i = 0; results_ok && i < v->node->num_results; i++)
    results_ok = v->node->results[i] != NULL;
  /* A rule may only run where counts and inputs make sense. */
  if (inputs_ok && results_ok && v->problems == before) check_types(v, info);
  if (expanded && (info->flags & IR_OPF_LAYER)) report(v, "layer op remains after expansion");
}

static bool setup(verifier *v, const ir_graph *g, FILE *out) {
  memset(v, 0, sizeof *v);
  v->g = g;
  v->out = out;
  v->num_values = g->next_value_id > 0 ? g->next_value_id : 0;
  size_t values = (size_t)v->num_values + 1;
  v->names_cap = 16;
  while (v->names_cap < values * 2) v->names_cap *= 2;
  v->def_pos = calloc(values, sizeof *v->def_pos);
  v->by_id = calloc(values, sizeof *v->by_id);
  v->names = calloc(v->names_cap, sizeof *v->names);
  v->name_pos = calloc(v->names_cap, sizeof *v->name_pos);
  return v->def_pos && v->by_id && v->names && v->name_pos;
}

static void teardown(verifier *v) {
  free(v->def_pos);
  free(v->by_id);
  free(v->names);
  free(v->name_pos);
}

static int check_links(verifier *v) {
  const ir_node *prev = NULL;
  v->pos = 0;
  for (const ir_node *n = v->g->first; n; prev = n, n = n->next, v->pos++) {
    v->node = n;
    if (n->prev != prev) report(v, "its prev link does not point at node %d", v->pos - 1);
    record_node(v);
  }
  if (v->g->last != prev && prev) {
    v->node = prev;
    v->pos--;
    report(v, "is the last node but the graph's last points elsewhere");
  }
  return v->problems;
}

int ir_verify(const ir_graph *g, bool expanded, FILE *err_out) {
  verifier v;
  if (!setup(&v, g, err_out)) {
    teardown(&v);
    if (err_out) fprintf(err_out, "verifier: out of memory\n");
    return 1;
  }
  check_links(&v);
  v.pos = 0;
  for (const ir_node *n = g->first; n; n = n->next, v.pos++) {
    v.node = n;
    check_node(&v, expanded);
  }
  teardown(&v);
  return v.problems;
}
