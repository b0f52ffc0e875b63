/* fuse_attention.c: scaled dot-product attention into flash_attention.
 *
 * The pattern, on primitives (so it fires on the `attention` layer op's
 * expansion and on attention spelled out with @, transpose, softmax and
 * where):
 *
 *   s   = matmul q, k transpose_b      (or matmul q, permute(k) swapping
 *                                       the last two dims)
 *   s'  = mul s, c | mul c, s | div s, c    (a scalar const; optional)
 *   s'' = where mask, s', f            (mask a `mask` source, f -inf or
 *                                       at most -1e9; optional)
 *   p   = softmax s'' axis=-1
 *   o   = matmul p, v
 *
 * with q, k, v [B,H,T,hd] (or [B,T,hd]: one head) and every intermediate
 * used once. (A fill of -1e9 masks as -inf does: its exp is exactly 0 in
 * f32 next to any score above -1e9 + 104.) It becomes `o, lse = flash_attention q, k, v` carrying the
 * mask's kind (causal, window, global) and the scale. Further:
 *   - GQA: k and v broadcast from [B,KV,T,hd] (reshape, broadcast,
 *     reshape) are read at their own KV heads;
 *   - layout: when q, k, v are permutes [0,2,1,3] of [B,T,H,hd] values
 *     and o's one use is the permute back, the op reads and writes the
 *     [B,T,H,hd] values ("bthd") and the four copies disappear;
 *   - RoPE: rope on q and k (same base; under the permutes) moves into
 *     the op, which rotates rows as it reads them.
 * It runs before autodiff, whose rule for flash_attention is the fused
 * backward (flash_attention_grad), so training never stores the T x T
 * probabilities either. Nodes left unused are removed (dce). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ir.h"

static bool used_once(const int *uses, const ir_value *v) { return uses[v->id] == 1; }

static bool is_op(const ir_value *v, ir_op op) { return v && v->def && v->def->op == op; }

static bool scalar_const(const ir_value *v, double *out) {
  if (!is_op(v, IR_OP_const) || v->type.rank != 0) return false;
  *out = ir_get_float(v->def, "value", 0);
  return true;
}

static bool perm_is(const ir_node *n, int rank, const int64_t *want) {
  const int64_t *perm;
  if (ir_get_ints(n, "perm", &perm) != rank) return false;
  for (int i = 0; i < rank; i++)
    if (perm[i] != want[i] && perm[i] - rank != want[i]) return false;
  return true;
}

static const int64_t SWAP_TH[4] = {0, 2, 1, 3};

/* What the pass found for one attention. */
typedef struct match {
  ir_node *out_mm;       /* o = matmul p, v */
  ir_value *q, *k, *v;   /* [B,H,T,hd] operands (k, v maybe fewer heads) */
  double scale;
  const ir_node *mask;   /* NULL: no mask */
  ir_node *out_permute;  /* permute o [0,2,1,3], its one use, or NULL */
  double rope;           /* base, 0 none */
  bool bthd;
} match;

/* s = q k^T: matmul q, k transpose_b, or matmul q, permute(k) (last two
 * dims swapped). */
static bool match_scores(const int *uses, ir_value *s, match *m) {
  if (!is_op(s, IR_OP_matmul) || !used_once(uses, s)) return false;
  ir_node *n = s->def;
  if (ir_get_bool(n, "transpose_a", false)) return false;
  ir_value *q = n->inputs[0], *k = n->inputs[1];
  if (!ir_get_bool(n, "transpose_b", false)) {
    int r = k->type.rank;
    int64_t want[IR_MAX_RANK];
    for (int i = 0; i < r; i++) want[i] = i;
    if (r < 2 || !is_op(k, IR_OP_permute) || !used_once(uses, k)) return false;
    want[r - 2] = r - 1, want[r - 1] = r - 2;
    if (!perm_is(k->def, r, want)) return false;
    k = k->def->inputs[0];
  }
  m->q = q, m->k = k;
  return true;
}

/* p's argument: [where mask,] [scale] scores. */
static bool match_logits(const int *uses, ir_value *x, match *m) {
  m->mask = NULL;
  m->scale = 1.0;
  if (is_op(x, IR_OP_where)) {
    double fill;
    ir_node *w = x->def;
    if (!used_once(uses, x) || !is_op(w->inputs[0], IR_OP_mask)) return false;
    if (!scalar_const(w->inputs[2], &fill) || !(fill <= -1e9)) return false;
    m->mask = w->inputs[0]->def;
    x = w->inputs[1];
  }
  if (is_op(x, IR_OP_mul) || is_op(x, IR_OP_div)) {
    ir_node *n = x->def;
    double c;
    if (!used_once(uses, x)) return false;
    ir_value *other = NULL;
    if (scalar_const(n->inputs[1], &c))
      other = n->inputs[0];
    else if (n->op == IR_OP_mul && scalar_const(n->inputs[0], &c))
      other = n->inputs[1];
    if (!other || c == 0 || !isfinite(c)) return false;
    m->scale = n->op == IR_OP_div ? 1.0 / c : c;
    x = other;
  }
  return match_scores(uses, x, m);
}

/* k or v broadcast from fewer heads: reshape [B,KV,1,T,hd] -> broadcast
 * [B,KV,G,T,hd] -> reshape [B,H,T,hd]; returns the [B,KV,T,hd] value. */
static ir_value *grouped_source(const int *uses, ir_value *x) {
  if (!is_op(x, IR_OP_reshape) || !used_once(uses, x)) return x;
  ir_value *b = x->def->inputs[0];
  if (!is_op(b, IR_OP_broadcast) || !used_once(uses, b) || b->type.rank != 5) return x;
  ir_value *r = b->def->inputs[0];
  if (!is_op(r, IR_OP_reshape) || !used_once(uses, r) || r->type.rank != 5) return x;
  ir_value *src = r->def->inputs[0];
  const int64_t *d = b->type.dims;
  if (src->type.rank != 4 || r->type.dims[2] != 1 || src->type.dims[1] != d[1] ||
      src->type.dims[0] != d[0] || src->type.dims[2] != d[3] || src->type.dims[3] != d[4])
    return x;
  return src;
}

/* x = permute(y, [0,2,1,3]) used once: y, else NULL. */
static ir_value *unpermuted(const int *uses, ir_value *x) {
  if (!is_op(x, IR_OP_permute) || !used_once(uses, x) || x->type.rank != 4) return NULL;
  return perm_is(x->def, 4, SWAP_TH) ? x->def->inputs[0] : NULL;
}

/* The one node that uses v, or NULL. */
static ir_node *user_of(ir_node *after, const ir_value *v) {
  for (ir_node *n = after->next; n; n = n->next)
    for (int i = 0; i < n->num_inputs; i++)
      if (n->inputs[i] == v) return n;
  return NULL;
}

/* The layout and rope refinements (see the file comment). */
static void match_layout(const int *uses, match *m) {
  m->bthd = false;
  m->rope = 0;
  m->out_permute = NULL;
  ir_value *q = m->q, *k = m->k;
  double base = 0;
  if (is_op(q, IR_OP_rope) && is_op(k, IR_OP_rope) && used_once(uses, q) && used_once(uses, k)) {
    base = ir_get_float(q->def, "base", 10000.0);
    if (base != ir_get_float(k->def, "base", 10000.0) || base <= 0) return;
    q = q->def->inputs[0], k = k->def->inputs[0];
  }
  ir_value *qp = unpermuted(uses, q), *kp = unpermuted(uses, k), *vp = unpermuted(uses, m->v);
  ir_value *o = m->out_mm->results[0];
  if (!qp || !kp || !vp || !used_once(uses, o)) return;
  ir_node *user = user_of(m->out_mm, o);
  if (!user || user->op != IR_OP_permute || !perm_is(user, 4, SWAP_TH)) return;
  m->out_permute = user;
  m->q = qp, m->k = kp, m->v = vp;
  m->rope = base;
  m->bthd = true;
}

static bool match_at(const int *uses, ir_node *n, match *m) {
  memset(m, 0, sizeof *m);
  if (n->op != IR_OP_matmul || ir_get_bool(n, "transpose_a", false) ||
      ir_get_bool(n, "transpose_b", false))
    return false;
  ir_value *p = n->inputs[0];
  if (!is_op(p, IR_OP_softmax) || !used_once(uses, p)) return false;
  int64_t axis = ir_get_int(p->def, "axis", -1);
  if (axis != -1 && axis != p->type.rank - 1) return false;
  m->out_mm = n;
  m->v = n->inputs[1];
  if (!match_logits(uses, p->def->inputs[0], m)) return false;
  int rank = m->q->type.rank;
  if (rank != 3 && rank != 4) return false;
  if (m->k->type.rank != rank || m->v->type.rank != rank) return false;
  if (rank == 4) {
    ir_value *k = grouped_source(uses, m->k), *v = grouped_source(uses, m->v);
    if (k != m->k && v != m->v && ir_type_equal(&k->type, &v->type)) m->k = k, m->v = v;
  }
  const ir_type *q = &m->q->type, *k = &m->k->type;
  int64_t t = q->dims[rank - 2], d = q->dims[rank - 1];
  /* self attention over one length, f32, a head size the kernel takes */
  if (q->dtype != IR_f32 || k->dtype != IR_f32 || !ir_type_equal(k, &m->v->type)) return false;
  if (k->dims[rank - 2] != t || k->dims[rank - 1] != d || k->dims[0] != q->dims[0]) return false;
  if (d > 256 || t < 1) return false;
  if (m->mask && (m->mask->results[0]->type.dims[0] != t || m->mask->results[0]->type.dims[1] != t))
    return false;
  if (rank == 4) match_layout(uses, m);
  return true;
}

/* [B,T,hd] -> [B,1,T,hd] (or back): a reshape before `at`. */
static ir_value *reshaped(ir_graph *g, ir_node *at, ir_value *x, int rank, const int64_t *dims,
                          const char *name) {
  ir_node *n = ir_node_insert(g, at, IR_OP_reshape, 1, &x, name);
  if (!n) return NULL;
  n->loc = at->loc;
  n->scope = at->scope;
  ir_set_ints(g, n, "shape", rank, dims);
  return ir_node_infer(n, NULL, 0) ? n->results[0] : NULL;
}

static const char *flash_name(ir_graph *g, const ir_value *o) {
  size_t len = strlen(o->name);
  if (len > 7 && strcmp(o->name + len - 7, "context") == 0)
    return ir_arena_printf(g->arena, "%.*sflash", (int)(len - 7), o->name);
  return ir_arena_printf(g->arena, "%s.flash", o->name);
}

static bool rewrite(ir_graph *g, const match *m, char *err, size_t errlen) {
  ir_node *at = m->out_mm;
  ir_value *o = at->results[0];
  const char *name = flash_name(g, o);
  ir_value *q = m->q, *k = m->k, *v = m->v;
  bool one_head = q->type.rank == 3;
  if (one_head) {
    int64_t qd[4] = {q->type.dims[0], 1, q->type.dims[1], q->type.dims[2]};
    q = reshaped(g, at, q, 4, qd, ir_arena_printf(g->arena, "%s.q", name));
    k = reshaped(g, at, k, 4, qd, ir_arena_printf(g->arena, "%s.k", name));
    v = reshaped(g, at, v, 4, qd, ir_arena_printf(g->arena, "%s.v", name));
    if (!q || !k || !v) return snprintf(err, errlen, "fuse_attention: out of memory"), false;
  }
  ir_value *ins[3] = {q, k, v};
  ir_node *f = ir_node_insert(g, at, IR_OP_flash_attention, 3, ins, name);
  if (!f) return snprintf(err, errlen, "fuse_attention: out of memory"), false;
  f->loc = at->loc;
  f->scope = at->scope;
  ir_set_bool(g, f, "causal", m->mask && ir_get_bool(m->mask, "causal", false));
  ir_set_int(g, f, "window", m->mask ? ir_get_int(m->mask, "window", 0) : 0);
  ir_set_int(g, f, "global", m->mask ? ir_get_int(m->mask, "global", 0) : 0);
  ir_set_float(g, f, "scale", m->scale);
  if (m->rope > 0) ir_set_float(g, f, "rope", m->rope);
  if (m->bthd) ir_set_str(g, f, "layout", "bthd");
  char msg[IR_ERR_LEN];
  if (!ir_node_infer(f, msg, sizeof msg))
    return snprintf(err, errlen, "fuse_attention: %s", msg), false;
  ir_value *result = f->results[0];
  if (one_head) result = reshaped(g, at, result, 3, o->type.dims, ir_arena_printf(g->arena, "%s.out", name));
  if (!result) return snprintf(err, errlen, "fuse_attention: out of memory"), false;
  ir_replace_uses(g, m->out_permute ? m->out_permute->results[0] : o, result);
  return true;
}

static int *count_uses(ir_graph *g) {
  int *uses = ir_arena_alloc(g->arena, ((size_t)g->next_value_id + 1) * sizeof *uses);
  if (!uses) return NULL;
  for (ir_node *n = g->first; n; n = n->next)
    for (int i = 0; i < n->num_inputs; i++) uses[n->inputs[i]->id]++;
  return uses;
}

bool ir_pass_fuse_attention(ir_graph *g, char *err, size_t errlen) {
  bool changed = false;
  for (ir_node *n = g->first; n; n = n->next) {
    if (n->op != IR_OP_matmul || !is_op(n->inputs[0], IR_OP_softmax)) continue;
    /* counts change with every rewrite; graphs have few attentions */
    int *uses = count_uses(g);
    if (!uses) return snprintf(err, errlen, "fuse_attention: out of memory"), false;
    match m;
    if (!match_at(uses, n, &m)) continue;
    if (!rewrite(g, &m, err, errlen)) return false;
    changed = true;
  }
  return !changed || ir_pass_dce(g, err, errlen);
}
