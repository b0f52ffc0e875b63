/* interp.h: a reference interpreter of the graph IR, for tests.
 *
 * Evaluates an expanded graph (primitives and gradient ops, no layer
 * ops) in double precision with naive loops, so that the gradients the
 * autodiff pass builds can be checked against finite differences of the
 * same graph (tests/tools/gradcheck.c). Every value of the graph has a
 * row-major buffer of doubles; integer and u8 values hold whole numbers.
 * Not for speed, and not used by the compiler. */
#ifndef MODELC_INTERP_H
#define MODELC_INTERP_H

#include <stdbool.h>
#include <stddef.h>

#include "ir.h"

typedef struct ir_interp ir_interp;

/* Storage for every value of g (nodes added later are not known); NULL
 * when out of memory. The graph must outlive the interpreter. */
ir_interp *ir_interp_new(const ir_graph *g);
void ir_interp_free(ir_interp *in);

/* The buffer of v: ir_type_numel(&v->type) doubles (one for a scalar).
 * Inputs, params and buffers are set by writing into it before a run. */
double *ir_interp_value(ir_interp *in, const ir_value *v);

/* Evaluates every node in graph order. Sources keep what was written
 * (const, mask are filled); `grad %p, %g` stores g as p's gradient;
 * assign and output do nothing. False with a message in err for a layer
 * op, an active dropout mask ("dropout"), an id out of range or memory
 * running out. */
bool ir_interp_run(ir_interp *in, char *err, size_t errlen);

/* The gradient the last run stored for param (its `grad` effects summed),
 * or NULL when the graph has no grad effect for it. */
const double *ir_interp_grad(ir_interp *in, const ir_value *param);

#endif
