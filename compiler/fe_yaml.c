/* fe_yaml.c: YAML text to a located fe_yaml_node tree, through libyaml's
 * event API.
 *
 * libyaml's marks are 0-based and count characters, not bytes; ours are
 * 1-based. A scalar also keeps where it starts in the source as a byte
 * offset, so that an error inside an expression can be pointed at the
 * exact character even when the scalar is quoted or folded over lines. */
#include <string.h>
#include <yaml.h>

#include "compiler/fe.h"

/* Specs nest a few levels; this only stops hostile input from exhausting
 * the stack of the recursive builder. */
enum { MAX_DEPTH = 64 };

typedef struct loader {
  yaml_parser_t parser;
  ir_arena *arena;
  diag_engine *diag;
  const char *file;
  const char *text;
  size_t len;
  size_t *line_starts; /* byte offset of each 0-based line */
  size_t num_lines;
  bool failed;  /* an error was reported: no tree is returned */
  bool stopped; /* the events cannot be followed any further */
} loader;

/* ---- positions ---- */

/* Length of the line break at s[i], or 0. libyaml (YAML 1.1) also breaks
 * lines at NEL, LS and PS; counting them keeps our lines in step. */
static size_t break_length(const char *s, size_t len, size_t i) {
  if (i >= len) return 0;
  unsigned char c = (unsigned char)s[i];
  if (c == '\n') return 1;
  if (c == '\r') return i + 1 < len && s[i + 1] == '\n' ? 2 : 1;
  if (c == 0xC2 && i + 1 < len && (unsigned char)s[i + 1] == 0x85) return 2;
  if (c == 0xE2 && i + 2 < len && (unsigned char)s[i + 1] == 0x80 &&
      ((unsigned char)s[i + 2] == 0xA8 || (unsigned char)s[i + 2] == 0xA9))
    return 3;
  return 0;
}

/* Bytes of the character at s[i]: a lead byte and its continuations. */
static size_t char_length(const char *s, size_t len, size_t i) {
  size_t n = 1;
  while (i + n < len && ((unsigned char)s[i + n] & 0xC0) == 0x80) n++;
  return n;
}

static bool index_lines(loader *L) {
  size_t cap = 64, n = 0;
  size_t *starts = ir_arena_alloc(L->arena, cap * sizeof *starts);
  if (!starts) return false;
  size_t i = L->len >= 3 && memcmp(L->text, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
  starts[n++] = i;
  while (i < L->len) {
    size_t b = break_length(L->text, L->len, i);
    if (!b) {
      i++;
      continue;
    }
    i += b;
    if (n == cap) {
      starts = ir_arena_grow(L->arena, starts, cap * sizeof *starts, 2 * cap * sizeof *starts);
      if (!starts) return false;
      cap *= 2;
    }
    starts[n++] = i;
  }
  L->line_starts = starts;
  L->num_lines = n;
  return true;
}

static size_t mark_offset(const loader *L, yaml_mark_t mark) {
  if (mark.line >= L->num_lines) return L->len;
  size_t i = L->line_starts[mark.line];
  for (size_t col = 0; col < mark.column && i < L->len; col++) {
    if (break_length(L->text, L->len, i)) break;
    i += char_length(L->text, L->len, i);
  }
  return i;
}

static ir_loc mark_loc(const loader *L, yaml_mark_t mark) {
  return (ir_loc){L->file, (int)mark.line + 1, (int)mark.column + 1};
}

/* Reader errors come with a byte offset instead of a mark. */
static ir_loc offset_loc(const loader *L, size_t offset) {
  size_t line = 0;
  while (line + 1 < L->num_lines && L->line_starts[line + 1] <= offset) line++;
  int col = 1;
  for (size_t i = L->line_starts[line]; i < offset && i < L->len;
       i += char_length(L->text, L->len, i))
    col++;
  return (ir_loc){L->file, (int)line + 1, col};
}

/* ---- errors ---- */

/* libyaml's contexts read "while scanning a quoted scalar": the note
 * becomes "the quoted scalar started here". */
static void context_note(loader *L) {
  const char *context = L->parser.context;
  yaml_mark_t at = L->parser.context_mark, problem = L->parser.problem_mark;
  if (!context || (at.line == problem.line && at.column == problem.column)) return;
  const char *what = context;
  if (strncmp(what, "while scanning ", 15) == 0) what += 15;
  if (strncmp(what, "while parsing ", 14) == 0) what += 14;
  if (strncmp(what, "a ", 2) == 0) what += 2;
  if (strncmp(what, "an ", 3) == 0) what += 3;
  diag_note(L->diag, mark_loc(L, at), "the %s started here", what);
}

static void report_parser_error(loader *L) {
  yaml_parser_t *p = &L->parser;
  const char *problem = p->problem ? p->problem : "syntax error";
  L->failed = L->stopped = true;
  switch (p->error) {
  case YAML_MEMORY_ERROR:
    diag_error(L->diag, (ir_loc){L->file, 0, 0}, "YAML: out of memory");
    return;
  case YAML_READER_ERROR:
    diag_error(L->diag, offset_loc(L, p->problem_offset), "YAML: %s", problem);
    return;
  default: break;
  }
  if (p->context)
    diag_error(L->diag, mark_loc(L, p->problem_mark), "YAML: %s (%s)", problem, p->context);
  else
    diag_error(L->diag, mark_loc(L, p->problem_mark), "YAML: %s", problem);
  context_note(L);
}

static bool next_event(loader *L, yaml_event_t *ev) {
  if (L->stopped) return false;
  if (yaml_parser_parse(&L->parser, ev)) return true;
  report_parser_error(L);
  return false;
}

static void error_at(loader *L, ir_loc loc, const char *message) {
  diag_error(L->diag, loc, "%s", message);
  L->failed = true;
  if (diag_full(L->diag)) L->stopped = true;
}

/* ---- tree ---- */

static fe_yaml_node *new_node(loader *L, fe_yaml_kind kind, yaml_mark_t mark) {
  fe_yaml_node *n = ir_arena_alloc(L->arena, sizeof *n);
  if (!n) {
    error_at(L, (ir_loc){L->file, 0, 0}, "out of memory");
    L->stopped = true;
    return NULL;
  }
  n->kind = kind;
  n->loc = mark_loc(L, mark);
  n->source = L->text;
  n->source_len = L->len;
  n->source_offset = mark_offset(L, mark);
  n->value = "";
  return n;
}

static void check_properties(loader *L, const yaml_event_t *ev) {
  const yaml_char_t *anchor = NULL, *tag = NULL;
  if (ev->type == YAML_SCALAR_EVENT) {
    anchor = ev->data.scalar.anchor, tag = ev->data.scalar.tag;
  } else if (ev->type == YAML_SEQUENCE_START_EVENT) {
    anchor = ev->data.sequence_start.anchor, tag = ev->data.sequence_start.tag;
  } else if (ev->type == YAML_MAPPING_START_EVENT) {
    anchor = ev->data.mapping_start.anchor, tag = ev->data.mapping_start.tag;
  }
  if (anchor)
    error_at(L, mark_loc(L, ev->start_mark), "YAML anchors and aliases are not supported");
  if (tag) error_at(L, mark_loc(L, ev->start_mark), "YAML tags are not supported");
}

static fe_yaml_style scalar_style(yaml_scalar_style_t style) {
  switch (style) {
  case YAML_SINGLE_QUOTED_SCALAR_STYLE: return FE_YAML_SINGLE_QUOTED;
  case YAML_DOUBLE_QUOTED_SCALAR_STYLE: return FE_YAML_DOUBLE_QUOTED;
  case YAML_LITERAL_SCALAR_STYLE: return FE_YAML_LITERAL;
  case YAML_FOLDED_SCALAR_STYLE: return FE_YAML_FOLDED;
  default: return FE_YAML_PLAIN;
  }
}

static fe_yaml_node *make_scalar(loader *L, const yaml_event_t *ev) {
  fe_yaml_node *n = new_node(L, FE_YAML_SCALAR, ev->start_mark);
  if (!n) return NULL;
  n->length = ev->data.scalar.length;
  n->value = ir_arena_strndup(L->arena, (const char *)ev->data.scalar.value, n->length);
  n->style = scalar_style(ev->data.scalar.style);
  if (!n->value) {
    n->value = "";
    n->length = 0;
  }
  return n;
}

/* Appends to an arena array of node pointers, doubling its capacity. */
static bool push(loader *L, fe_yaml_node ***array, int *count, int *cap, fe_yaml_node *item) {
  if (*count == *cap) {
    int grown = *cap ? 2 * *cap : 8;
    fe_yaml_node **bigger = ir_arena_grow(L->arena, *array, (size_t)*cap * sizeof **array,
                                          (size_t)grown * sizeof **array);
    if (!bigger) {
      L->stopped = L->failed = true;
      return false;
    }
    *array = bigger;
    *cap = grown;
  }
  (*array)[(*count)++] = item;
  return true;
}

static fe_yaml_node *parse_node(loader *L, yaml_event_t *ev, int depth);

static void parse_sequence(loader *L, fe_yaml_node *seq, int depth) {
  int cap = 0;
  yaml_event_t ev;
  while (next_event(L, &ev)) {
    if (ev.type == YAML_SEQUENCE_END_EVENT) {
      yaml_event_delete(&ev);
      return;
    }
    fe_yaml_node *item = parse_node(L, &ev, depth + 1);
    if (L->stopped || !push(L, &seq->items, &seq->count, &cap, item)) return;
  }
}

static bool same_key(const fe_yaml_node *a, const fe_yaml_node *b) {
  return a->kind == FE_YAML_SCALAR && b->kind == FE_YAML_SCALAR && a->length == b->length &&
         memcmp(a->value, b->value, a->length) == 0;
}

static size_t hash_key(const fe_yaml_node *key) {
  size_t h = 14695981039346656037u; /* FNV-1a */
  for (size_t i = 0; i < key->length; i++) h = (h ^ (unsigned char)key->value[i]) * 1099511628211u;
  return h;
}

/* Reports every key equal to an earlier one, through a hash table so
 * that a huge mapping costs linear time. */
static void check_duplicates(loader *L, const fe_yaml_node *map) {
  size_t size = 16;
  while (size < 2 * (size_t)map->count) size *= 2;
  const fe_yaml_node **table = ir_arena_alloc(L->arena, size * sizeof *table);
  if (!table) return;
  for (int i = 0; i < map->count && !L->stopped; i++) {
    const fe_yaml_node *key = map->keys[i];
    if (key->kind != FE_YAML_SCALAR) continue;
    size_t slot = hash_key(key) & (size - 1);
    while (table[slot] && !same_key(table[slot], key)) slot = (slot + 1) & (size - 1);
    if (!table[slot]) {
      table[slot] = key;
      continue;
    }
    diag_error(L->diag, key->loc, "duplicate key '%s'", key->value);
    diag_note(L->diag, table[slot]->loc, "first defined here");
    L->failed = true;
    if (diag_full(L->diag)) L->stopped = true;
  }
}

static void parse_mapping(loader *L, fe_yaml_node *map, int depth) {
  int key_cap = 0, value_cap = 0;
  yaml_event_t ev;
  while (next_event(L, &ev)) {
    if (ev.type == YAML_MAPPING_END_EVENT) {
      yaml_event_delete(&ev);
      check_duplicates(L, map);
      return;
    }
    bool scalar_key = ev.type == YAML_SCALAR_EVENT || ev.type == YAML_ALIAS_EVENT;
    fe_yaml_node *key = parse_node(L, &ev, depth + 1);
    if (L->stopped) return;
    if (!scalar_key) error_at(L, key->loc, "YAML mapping keys must be scalars");
    if (!next_event(L, &ev)) return;
    fe_yaml_node *value = parse_node(L, &ev, depth + 1);
    if (L->stopped) return;
    int num_keys = map->count, num_values = map->count;
    if (!push(L, &map->keys, &num_keys, &key_cap, key) ||
        !push(L, &map->values, &num_values, &value_cap, value))
      return;
    map->count++;
  }
}

/* Builds the node that starts with ev, reading the events of its
 * children; ev is consumed. NULL once L->stopped. */
static fe_yaml_node *parse_node(loader *L, yaml_event_t *ev, int depth) {
  check_properties(L, ev);
  yaml_event_type_t type = ev->type;
  yaml_mark_t mark = ev->start_mark;
  fe_yaml_node *n = NULL;
  if (type == YAML_SCALAR_EVENT) n = make_scalar(L, ev);
  yaml_event_delete(ev);
  if (L->stopped) return NULL;
  switch (type) {
  case YAML_SCALAR_EVENT: return n;
  case YAML_ALIAS_EVENT:
    error_at(L, mark_loc(L, mark), "YAML anchors and aliases are not supported");
    return L->stopped ? NULL : new_node(L, FE_YAML_SCALAR, mark);
  case YAML_SEQUENCE_START_EVENT:
  case YAML_MAPPING_START_EVENT: break;
  default:
    error_at(L, mark_loc(L, mark), "YAML: unexpected event");
    L->stopped = true;
    return NULL;
  }
  if (depth >= MAX_DEPTH) {
    error_at(L, mark_loc(L, mark), "YAML nesting is too deep");
    L->stopped = true;
    return NULL;
  }
  bool is_seq = type == YAML_SEQUENCE_START_EVENT;
  n = new_node(L, is_seq ? FE_YAML_SEQUENCE : FE_YAML_MAPPING, mark);
  if (!n) return NULL;
  if (is_seq)
    parse_sequence(L, n, depth);
  else
    parse_mapping(L, n, depth);
  return L->stopped ? NULL : n;
}

static bool expect_event(loader *L, yaml_event_type_t type, yaml_event_t *ev) {
  if (!next_event(L, ev)) return false;
  if (ev->type == type) return true;
  yaml_event_delete(ev);
  error_at(L, mark_loc(L, ev->start_mark), "YAML: unexpected event");
  L->stopped = true;
  return false;
}

static void report_empty(loader *L) {
  error_at(L, (ir_loc){L->file, 1, 1},
           "empty spec: expected a mapping with model, dims, inputs, graph, ...");
}

/* The stream must hold exactly one document. */
static fe_yaml_node *parse_stream(loader *L) {
  yaml_event_t ev;
  if (!expect_event(L, YAML_STREAM_START_EVENT, &ev)) return NULL;
  yaml_event_delete(&ev);
  if (!next_event(L, &ev)) return NULL;
  if (ev.type == YAML_STREAM_END_EVENT) {
    yaml_event_delete(&ev);
    report_empty(L);
    return NULL;
  }
  yaml_event_delete(&ev); /* DOCUMENT-START */
  if (!next_event(L, &ev)) return NULL;
  fe_yaml_node *root = parse_node(L, &ev, 0);
  if (!root || !expect_event(L, YAML_DOCUMENT_END_EVENT, &ev)) return NULL;
  yaml_event_delete(&ev);
  if (!next_event(L, &ev)) return NULL;
  if (ev.type == YAML_DOCUMENT_START_EVENT)
    error_at(L, mark_loc(L, ev.start_mark), "a spec must be a single YAML document");
  yaml_event_delete(&ev);
  if (root->kind == FE_YAML_SCALAR && root->style == FE_YAML_PLAIN && root->length == 0) {
    report_empty(L);
    return NULL;
  }
  return root;
}

fe_yaml_node *fe_yaml_load(ir_arena *arena, diag_engine *d, const char *filename, const char *text,
                           size_t len) {
  loader L = {
      .arena = arena, .diag = d, .file = filename, .text = text ? text : "", .len = text ? len : 0};
  if (!index_lines(&L) || !yaml_parser_initialize(&L.parser)) {
    diag_error(d, (ir_loc){filename, 0, 0}, "out of memory");
    return NULL;
  }
  yaml_parser_set_input_string(&L.parser, (const unsigned char *)L.text, L.len);
  fe_yaml_node *root = parse_stream(&L);
  yaml_parser_delete(&L.parser);
  return L.failed ? NULL : root;
}

fe_yaml_node *fe_yaml_get(const fe_yaml_node *mapping, const char *key) {
  if (!mapping || mapping->kind != FE_YAML_MAPPING || !key) return NULL;
  size_t len = strlen(key);
  for (int i = 0; i < mapping->count; i++) {
    const fe_yaml_node *k = mapping->keys[i];
    if (k->length == len && memcmp(k->value, key, len) == 0) return mapping->values[i];
  }
  return NULL;
}

/* ---- offsets inside scalars ---- */

/* Walks the source text alongside a scalar's value. */
typedef struct walker {
  const char *src;
  size_t len, pos;
  int line, col;
} walker;

static void step(walker *w) {
  size_t b = break_length(w->src, w->len, w->pos);
  if (b) {
    w->pos += b;
    w->line++;
    w->col = 1;
  } else if (w->pos < w->len) {
    w->pos += char_length(w->src, w->len, w->pos);
    w->col++;
  }
}

static void step_to(walker *w, size_t target) {
  while (w->pos < target && w->pos < w->len) step(w);
}

static bool is_blank(const walker *w, size_t i) {
  return i < w->len && (w->src[i] == ' ' || w->src[i] == '\t');
}

static size_t skip_blanks(const walker *w, size_t i) {
  while (is_blank(w, i)) i++;
  return i;
}

/* A fold in a flow scalar: blanks, k >= 1 line breaks (with blank lines
 * between) and the next line's indentation, which the value holds as one
 * space (k == 1) or k-1 newlines. Returns the value bytes it stands for
 * (0 when there is no fold at w->pos) and where it ends in *end. */
static size_t flow_fold(const walker *w, size_t *end) {
  size_t i = skip_blanks(w, w->pos), breaks = 0, b;
  while ((b = break_length(w->src, w->len, i)) != 0) {
    breaks++;
    i = skip_blanks(w, i + b);
  }
  *end = i;
  if (breaks == 0) return 0;
  return breaks == 1 ? 1 : breaks - 1;
}

/* Value bytes of the escape at src[i] == '\\' in a double-quoted scalar,
 * and its source length in *span. Approximate for invalid escapes. */
static size_t escape_bytes(const walker *w, size_t i, size_t *span) {
  char c = i + 1 < w->len ? w->src[i + 1] : 0;
  int hex = c == 'x' ? 2 : c == 'u' ? 4 : c == 'U' ? 8 : 0;
  *span = 2;
  if (c == 'N' || c == '_') return 2;
  if (c == 'L' || c == 'P') return 3;
  if (!hex) return 1;
  unsigned long code = 0;
  for (int k = 0; k < hex && i + 2 + (size_t)k < w->len; k++) {
    char h = w->src[i + 2 + k];
    int v = h >= '0' && h <= '9'   ? h - '0'
            : h >= 'a' && h <= 'f' ? h - 'a' + 10
            : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                   : 0;
    code = code * 16 + (unsigned long)v;
  }
  *span = 2 + (size_t)hex;
  return code < 0x80 ? 1 : code < 0x800 ? 2 : code < 0x10000 ? 3 : 4;
}

/* An escaped line break in a double-quoted scalar stands for nothing. */
static bool skip_escaped_break(walker *w) {
  if (w->pos >= w->len || w->src[w->pos] != '\\') return false;
  size_t b = break_length(w->src, w->len, w->pos + 1);
  if (!b) return false;
  step_to(w, skip_blanks(w, w->pos + 1 + b));
  return true;
}

static void walk_flow(walker *w, fe_yaml_style style, size_t offset) {
  size_t i = 0;
  for (;;) {
    while (style == FE_YAML_DOUBLE_QUOTED && skip_escaped_break(w)) continue;
    if (i >= offset || w->pos >= w->len) return;
    size_t end, bytes = flow_fold(w, &end), span = 0;
    if (bytes) {
      span = end - w->pos;
    } else if (style == FE_YAML_SINGLE_QUOTED && w->src[w->pos] == '\'') {
      bytes = 1, span = 2; /* '' stands for ' */
    } else if (style == FE_YAML_DOUBLE_QUOTED && w->src[w->pos] == '\\') {
      bytes = escape_bytes(w, w->pos, &span);
    } else {
      bytes = span = char_length(w->src, w->len, w->pos);
    }
    if (i + bytes > offset) return; /* offset is inside this piece: point at it */
    step_to(w, w->pos + span);
    i += bytes;
  }
}

/* Indentation of a block scalar's content: that of its first non-empty
 * line (explicit indentation indicators are rare enough to ignore). */
static size_t block_indent(const walker *w) {
  size_t i = w->pos;
  for (;;) {
    size_t start = i;
    while (i < w->len && w->src[i] == ' ') i++;
    size_t b = break_length(w->src, w->len, skip_blanks(w, i));
    if (!b) return i - start;
    i = skip_blanks(w, i) + b;
  }
}

static void walk_block(walker *w, fe_yaml_style style, size_t offset) {
  while (w->pos < w->len && !break_length(w->src, w->len, w->pos)) step(w); /* the header */
  step(w);
  size_t indent = block_indent(w), i = 0;
  bool line_start = true;
  for (;;) {
    if (line_start) {
      for (size_t k = 0; k < indent && w->pos < w->len && w->src[w->pos] == ' '; k++) step(w);
      line_start = false;
    }
    if (i >= offset || w->pos >= w->len) return;
    size_t b = break_length(w->src, w->len, w->pos), bytes = 1, end = w->pos + b;
    if (b && style == FE_YAML_FOLDED) {
      size_t breaks = 1, next;
      while ((next = break_length(w->src, w->len, skip_blanks(w, end))) != 0) {
        end = skip_blanks(w, end) + next;
        breaks++;
      }
      bytes = breaks == 1 ? 1 : breaks - 1;
    } else if (!b) {
      bytes = char_length(w->src, w->len, w->pos);
      end = w->pos + bytes;
    }
    if (i + bytes > offset) return;
    step_to(w, end);
    i += bytes;
    line_start = b != 0;
  }
}

/* Counts characters of the value itself, for nodes made without source. */
static ir_loc count_in_value(const fe_yaml_node *n, size_t offset) {
  ir_loc loc = n->loc;
  for (size_t i = 0; i < offset; i += char_length(n->value, n->length, i)) loc.col++;
  return loc;
}

ir_loc fe_yaml_offset_loc(const fe_yaml_node *scalar, size_t offset) {
  if (!scalar) return (ir_loc){0};
  if (scalar->kind != FE_YAML_SCALAR) return scalar->loc;
  if (offset > scalar->length) offset = scalar->length;
  if (!scalar->source || scalar->source_offset > scalar->source_len)
    return count_in_value(scalar, offset);
  walker w = {scalar->source, scalar->source_len, scalar->source_offset, scalar->loc.line,
              scalar->loc.col};
  switch (scalar->style) {
  case FE_YAML_PLAIN: walk_flow(&w, scalar->style, offset); break;
  case FE_YAML_SINGLE_QUOTED:
  case FE_YAML_DOUBLE_QUOTED:
    step(&w); /* the opening quote */
    walk_flow(&w, scalar->style, offset);
    break;
  case FE_YAML_LITERAL:
  case FE_YAML_FOLDED: walk_block(&w, scalar->style, offset); break;
  }
  return (ir_loc){scalar->loc.file, w.line, w.col};
}
