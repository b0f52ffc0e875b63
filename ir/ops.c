/* ops.c: the op table, built from ops.def.
 *
 * ops.def gives each op's attributes as one spec string
 * ("axes:ints keepdim:bool a:float?"); it is split into ir_attr_spec
 * entries the first time the table is used, so the rest of the compiler
 * sees structured attributes. */
#include <string.h>

#include "ir.h"
#include "shape.h"

typedef struct op_row {
  const char *name;
  int min_inputs, max_inputs, num_results;
  unsigned flags;
  const char *attrs;
  ir_shape_fn shape;
} op_row;

static const op_row rows[IR_OP_COUNT] = {
#define OP(id, min_in, max_in, results, flags, attrs, shape) \
  {#id, min_in, max_in, results, flags, attrs, shape},
#include "ops.def"
#undef OP
};

/* Attribute names live here; the longest spec string (attention's) is
 * about 120 bytes. */
enum { NAME_POOL = 4096 };
static char name_pool[NAME_POOL];
static size_t name_pool_used;
static ir_op_info table[IR_OP_COUNT];
static bool table_ready;

static const char *const kind_names[] = {"int", "float", "bool", "str", "ints", "floats"};

static bool kind_parse(const char *word, size_t len, ir_attr_kind *out) {
  for (size_t k = 0; k < sizeof kind_names / sizeof kind_names[0]; k++) {
    if (strlen(kind_names[k]) == len && memcmp(kind_names[k], word, len) == 0) {
      *out = (ir_attr_kind)k;
      return true;
    }
  }
  return false;
}

static const char *pool_copy(const char *s, size_t len) {
  if (name_pool_used + len + 1 > NAME_POOL) return NULL;
  char *p = name_pool + name_pool_used;
  memcpy(p, s, len);
  p[len] = 0;
  name_pool_used += len + 1;
  return p;
}

/* One word "name:kind" or "name:kind?"; malformed words are skipped (the
 * unit tests check that every op's spec parses completely). */
static void add_attr(ir_op_info *info, const char *word, size_t len) {
  const char *colon = memchr(word, ':', len);
  if (!colon || info->num_attrs == IR_MAX_ATTRS) return;
  size_t name_len = (size_t)(colon - word);
  const char *kind = colon + 1;
  size_t kind_len = len - name_len - 1;
  bool optional = kind_len > 0 && kind[kind_len - 1] == '?';
  if (optional) kind_len--;
  ir_attr_spec spec = {0};
  if (!kind_parse(kind, kind_len, &spec.kind)) return;
  spec.name = pool_copy(word, name_len);
  if (!spec.name) return;
  spec.optional = optional;
  info->attrs[info->num_attrs++] = spec;
}

static void parse_attrs(ir_op_info *info, const char *spec) {
  const char *p = spec;
  while (*p) {
    while (*p == ' ') p++;
    const char *start = p;
    while (*p && *p != ' ') p++;
    if (p > start) add_attr(info, start, (size_t)(p - start));
  }
}

static void build_table(void) {
  for (int i = 0; i < IR_OP_COUNT; i++) {
    const op_row *row = &rows[i];
    ir_op_info *info = &table[i];
    info->name = row->name;
    info->min_inputs = row->min_inputs;
    info->max_inputs = row->max_inputs;
    info->num_results = row->num_results;
    info->flags = row->flags;
    info->shape = row->shape;
    parse_attrs(info, row->attrs);
  }
  table_ready = true;
}

const ir_op_info *ir_op_get(ir_op op) {
  if ((unsigned)op >= IR_OP_COUNT) return NULL;
  if (!table_ready) build_table();
  return &table[op];
}

bool ir_op_lookup(const char *name, ir_op *out) {
  for (int i = 0; i < IR_OP_COUNT; i++) {
    if (strcmp(rows[i].name, name) == 0) {
      *out = (ir_op)i;
      return true;
    }
  }
  return false;
}
