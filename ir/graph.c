/* graph.c: building and editing graphs: nodes, values, unique names,
 * attributes. Everything comes from the graph's arena.
 *
 * Value names live in an open-addressing hash table (ir_graph.table):
 * slots hold value pointers keyed by value->name; removed names leave a
 * tombstone so probe chains stay intact. table_len counts occupied slots,
 * tombstones included, and decides when to grow. */
#include <stdio.h>
#include <string.h>

#include "ir.h"

enum { TABLE_MIN = 64 };

static ir_value tombstone;

static uint64_t hash_name(const char *s) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

static bool slot_live(const ir_value *v) { return v && v != &tombstone; }

/* Slot holding name, or -1. */
static int table_find(const ir_graph *g, const char *name) {
  if (!g->table_cap) return -1;
  size_t mask = (size_t)g->table_cap - 1;
  for (size_t i = hash_name(name) & mask;; i = (i + 1) & mask) {
    ir_value *v = g->table[i];
    if (!v) return -1;
    if (v != &tombstone && strcmp(v->name, name) == 0) return (int)i;
  }
}

static void table_put(ir_value **slots, int cap, ir_value *value) {
  size_t mask = (size_t)cap - 1;
  size_t i = hash_name(value->name) & mask;
  while (slot_live(slots[i])) i = (i + 1) & mask;
  slots[i] = value;
}

static bool table_grow(ir_graph *g) {
  int cap = g->table_cap ? g->table_cap * 2 : TABLE_MIN;
  int live = 0;
  for (int i = 0; i < g->table_cap; i++) live += slot_live(g->table[i]);
  /* Mostly tombstones: rehash at the same size. */
  if (g->table_cap && live * 4 < g->table_cap) cap = g->table_cap;
  ir_value **slots = ir_arena_alloc(g->arena, (size_t)cap * sizeof *slots);
  if (!slots) return false;
  for (int i = 0; i < g->table_cap; i++)
    if (slot_live(g->table[i])) table_put(slots, cap, g->table[i]);
  g->table = slots;
  g->table_cap = cap;
  g->table_len = live;
  return true;
}

/* The caller guarantees value->name is not in the table yet. */
static void table_insert(ir_graph *g, ir_value *value) {
  if ((g->table_len + 1) * 4 > g->table_cap * 3 && !table_grow(g)) return;
  size_t mask = (size_t)g->table_cap - 1;
  size_t i = hash_name(value->name) & mask;
  while (slot_live(g->table[i])) i = (i + 1) & mask;
  if (!g->table[i]) g->table_len++;
  g->table[i] = value;
}

static void table_remove(ir_graph *g, const ir_value *value) {
  int slot = table_find(g, value->name);
  if (slot >= 0 && g->table[slot] == value) g->table[slot] = &tombstone;
}

ir_graph *ir_graph_new(ir_arena *arena, const char *name) {
  ir_graph *g = ir_arena_alloc(arena, sizeof *g);
  if (!g) return NULL;
  g->arena = arena;
  g->name = ir_arena_strdup(arena, name ? name : "");
  return g;
}

const char *ir_graph_unique_name(ir_graph *g, const char *base) {
  if (!base) base = "t";
  if (table_find(g, base) < 0) return ir_arena_strdup(g->arena, base);
  size_t len = strlen(base) + 24;
  char *buf = ir_arena_alloc(g->arena, len);
  if (!buf) return NULL;
  for (long i = 1;; i++) {
    snprintf(buf, len, "%s.%ld", base, i);
    if (table_find(g, buf) < 0) return buf;
  }
}

ir_value *ir_graph_find(const ir_graph *g, const char *name) {
  int slot = table_find(g, name);
  return slot < 0 ? NULL : g->table[slot];
}

void ir_value_rename(ir_graph *g, ir_value *value, const char *name) {
  if (value->name && strcmp(value->name, name) == 0) return;
  if (value->name) table_remove(g, value);
  /* A taken name would break uniqueness; fall back to a fresh one. */
  value->name = ir_graph_unique_name(g, name);
  table_insert(g, value);
}

/* ---- nodes ---- */

static void link_node(ir_graph *g, ir_node *node, ir_node *before) {
  if (!before) {
    node->prev = g->last;
    if (g->last)
      g->last->next = node;
    else
      g->first = node;
    g->last = node;
    return;
  }
  node->next = before;
  node->prev = before->prev;
  if (before->prev)
    before->prev->next = node;
  else
    g->first = node;
  before->prev = node;
}

/* Result i of a node named `name`: name, name.1, ...; unnamed: t<id>. */
static const char *result_name(ir_graph *g, const char *name, int i, int id) {
  char buf[32];
  if (!name) {
    snprintf(buf, sizeof buf, "t%d", id);
    return ir_graph_unique_name(g, buf);
  }
  if (i == 0) return ir_graph_unique_name(g, name);
  const char *base = ir_arena_printf(g->arena, "%s.%d", name, i);
  return base ? ir_graph_unique_name(g, base) : NULL;
}

static bool make_results(ir_graph *g, ir_node *node, const char *name) {
  node->results = ir_arena_alloc(g->arena, (size_t)node->num_results * sizeof(ir_value *));
  if (!node->results) return false;
  for (int i = 0; i < node->num_results; i++) {
    ir_value *v = ir_arena_alloc(g->arena, sizeof *v);
    if (!v) return false;
    v->id = g->next_value_id++;
    v->def = node;
    v->result_index = i;
    v->name = result_name(g, name, i, v->id);
    if (!v->name) return false;
    table_insert(g, v);
    node->results[i] = v;
  }
  return true;
}

ir_node *ir_node_insert(ir_graph *g, ir_node *before, ir_op op, int num_inputs,
                        ir_value *const *inputs, const char *name) {
  const ir_op_info *info = ir_op_get(op);
  if (!info || num_inputs < 0) return NULL;
  ir_node *node = ir_arena_alloc(g->arena, sizeof *node);
  if (!node) return NULL;
  node->id = g->next_node_id++;
  node->op = op;
  node->num_inputs = num_inputs;
  node->inputs = ir_arena_alloc(g->arena, (size_t)num_inputs * sizeof(ir_value *));
  if (!node->inputs) return NULL;
  if (num_inputs) memcpy(node->inputs, inputs, (size_t)num_inputs * sizeof(ir_value *));
  node->num_results = info->num_results;
  if (!make_results(g, node, name)) return NULL;
  link_node(g, node, before);
  return node;
}

ir_node *ir_node_new(ir_graph *g, ir_op op, int num_inputs, ir_value *const *inputs,
                     const char *name) {
  return ir_node_insert(g, NULL, op, num_inputs, inputs, name);
}

ir_node *ir_source_new(ir_graph *g, ir_op op, ir_type type, const char *name) {
  ir_node *node = ir_node_new(g, op, 0, NULL, name);
  if (!node) return NULL;
  for (int i = 0; i < node->num_results; i++) node->results[i]->type = type;
  return node;
}

void ir_node_remove(ir_graph *g, ir_node *node) {
  if (node->prev)
    node->prev->next = node->next;
  else if (g->first == node)
    g->first = node->next;
  if (node->next)
    node->next->prev = node->prev;
  else if (g->last == node)
    g->last = node->prev;
  node->prev = node->next = NULL;
  /* Its names become free again. */
  for (int i = 0; i < node->num_results; i++) table_remove(g, node->results[i]);
}

void ir_node_replace(ir_graph *g, ir_node *old, ir_node *replacement) {
  enum { MAX_RESULTS = 8 }; /* ops have at most 3 */
  int n = old->num_results < replacement->num_results ? old->num_results : replacement->num_results;
  if (n > MAX_RESULTS) n = MAX_RESULTS;
  const char *names[MAX_RESULTS];
  for (int i = 0; i < n; i++) {
    names[i] = old->results[i]->name;
    ir_replace_uses(g, old->results[i], replacement->results[i]);
  }
  ir_node_remove(g, old);
  for (int i = 0; i < n; i++) ir_value_rename(g, replacement->results[i], names[i]);
}

static bool check_inputs(const ir_node *node, const ir_op_info *info, char *err,
                         size_t errlen) {
  int n = node->num_inputs, lo = info->min_inputs, hi = info->max_inputs;
  if (n < lo || (hi >= 0 && n > hi)) {
    if (hi < 0)
      snprintf(err, errlen, "%s takes at least %d input%s, got %d", info->name, lo,
               lo == 1 ? "" : "s", n);
    else if (lo == hi)
      snprintf(err, errlen, "%s takes %d input%s, got %d", info->name, lo, lo == 1 ? "" : "s",
               n);
    else
      snprintf(err, errlen, "%s takes %d to %d inputs, got %d", info->name, lo, hi, n);
    return false;
  }
  for (int i = 0; i < n; i++) {
    if (!node->inputs[i]) {
      snprintf(err, errlen, "%s: input %d is missing", info->name, i);
      return false;
    }
  }
  return true;
}

bool ir_node_infer(ir_node *node, char *err, size_t errlen) {
  const ir_op_info *info = ir_op_get(node->op);
  if (!info) {
    snprintf(err, errlen, "invalid op %d", (int)node->op);
    return false;
  }
  if (info->flags & IR_OPF_SOURCE) return true;
  if (!check_inputs(node, info, err, errlen)) return false;
  return info->shape ? info->shape(node, err, errlen) : true;
}

/* ---- uses ---- */

void ir_replace_uses(ir_graph *g, ir_value *from, ir_value *to) {
  ir_node *start = from->def ? from->def->next : g->first;
  for (ir_node *n = start; n; n = n->next) {
    /* A node never uses its own result: skipping to's definition lets a
     * caller build y = f(x) and then redirect every other use of x to y. */
    if (to && n == to->def) continue;
    for (int i = 0; i < n->num_inputs; i++)
      if (n->inputs[i] == from) n->inputs[i] = to;
  }
}

int ir_count_uses(const ir_graph *g, const ir_value *value) {
  int count = 0;
  for (const ir_node *n = g->first; n; n = n->next)
    for (int i = 0; i < n->num_inputs; i++) count += n->inputs[i] == value;
  return count;
}

/* ---- attributes ---- */

const ir_attr *ir_get_attr(const ir_node *node, const char *name) {
  for (int i = 0; i < node->num_attrs; i++)
    if (strcmp(node->attrs[i].name, name) == 0) return &node->attrs[i];
  return NULL;
}

/* The slot for name, replacing an existing one; the array grows by
 * doubling (capacity is implied: the next power of two >= num_attrs). */
static ir_attr *attr_slot(ir_graph *g, ir_node *node, const char *name, ir_attr_kind kind) {
  ir_attr *a = (ir_attr *)ir_get_attr(node, name);
  if (!a) {
    int n = node->num_attrs;
    if (n == 0 || (n & (n - 1)) == 0) {
      int cap = n ? n * 2 : 2;
      ir_attr *grown = ir_arena_grow(g->arena, node->attrs, (size_t)n * sizeof *grown,
                                     (size_t)cap * sizeof *grown);
      if (!grown) return NULL;
      node->attrs = grown;
    }
    a = &node->attrs[node->num_attrs++];
    /* Point at the op table's copy of the name when there is one. */
    const ir_op_info *info = ir_op_get(node->op);
    a->name = NULL;
    for (int i = 0; info && i < info->num_attrs; i++)
      if (strcmp(info->attrs[i].name, name) == 0) a->name = info->attrs[i].name;
    if (!a->name) a->name = ir_arena_strdup(g->arena, name);
  }
  memset(&a->u, 0, sizeof a->u);
  a->kind = kind;
  return a;
}

void ir_set_int(ir_graph *g, ir_node *node, const char *name, int64_t v) {
  ir_attr *a = attr_slot(g, node, name, IR_ATTR_INT);
  if (a) a->u.i = v;
}

void ir_set_float(ir_graph *g, ir_node *node, const char *name, double v) {
  ir_attr *a = attr_slot(g, node, name, IR_ATTR_FLOAT);
  if (a) a->u.f = v;
}

void ir_set_bool(ir_graph *g, ir_node *node, const char *name, bool v) {
  ir_attr *a = attr_slot(g, node, name, IR_ATTR_BOOL);
  if (a) a->u.b = v;
}

void ir_set_str(ir_graph *g, ir_node *node, const char *name, const char *v) {
  ir_attr *a = attr_slot(g, node, name, IR_ATTR_STR);
  if (a) a->u.s = ir_arena_strdup(g->arena, v ? v : "");
}

void ir_set_ints(ir_graph *g, ir_node *node, const char *name, int n, const int64_t *v) {
  ir_attr *a = attr_slot(g, node, name, IR_ATTR_INTS);
  if (!a) return;
  if (n < 0) n = 0;
  a->u.ints.v = ir_arena_alloc(g->arena, (size_t)n * sizeof *v);
  if (!a->u.ints.v) return;
  if (n) memcpy(a->u.ints.v, v, (size_t)n * sizeof *v);
  a->u.ints.n = n;
}

void ir_set_floats(ir_graph *g, ir_node *node, const char *name, int n, const double *v) {
  ir_attr *a = attr_slot(g, node, name, IR_ATTR_FLOATS);
  if (!a) return;
  if (n < 0) n = 0;
  a->u.floats.v = ir_arena_alloc(g->arena, (size_t)n * sizeof *v);
  if (!a->u.floats.v) return;
  if (n) memcpy(a->u.floats.v, v, (size_t)n * sizeof *v);
  a->u.floats.n = n;
}

/* Getters fall back when the attribute is absent or of another kind, so
 * shape rules stay safe on graphs the verifier would reject. */
static const ir_attr *get_kind(const ir_node *node, const char *name, ir_attr_kind kind) {
  const ir_attr *a = ir_get_attr(node, name);
  return a && a->kind == kind ? a : NULL;
}

int64_t ir_get_int(const ir_node *node, const char *name, int64_t fallback) {
  const ir_attr *a = get_kind(node, name, IR_ATTR_INT);
  return a ? a->u.i : fallback;
}

double ir_get_float(const ir_node *node, const char *name, double fallback) {
  const ir_attr *a = ir_get_attr(node, name);
  if (a && a->kind == IR_ATTR_INT) return (double)a->u.i;
  return a && a->kind == IR_ATTR_FLOAT ? a->u.f : fallback;
}

bool ir_get_bool(const ir_node *node, const char *name, bool fallback) {
  const ir_attr *a = get_kind(node, name, IR_ATTR_BOOL);
  return a ? a->u.b : fallback;
}

const char *ir_get_str(const ir_node *node, const char *name, const char *fallback) {
  const ir_attr *a = get_kind(node, name, IR_ATTR_STR);
  return a ? a->u.s : fallback;
}

int ir_get_ints(const ir_node *node, const char *name, const int64_t **v) {
  const ir_attr *a = get_kind(node, name, IR_ATTR_INTS);
  *v = a ? a->u.ints.v : NULL;
  return a ? a->u.ints.n : 0;
}
