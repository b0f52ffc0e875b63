/* shape.h: the shape rules named in ops.def (defined in shape.c). */
#ifndef MODELC_SHAPE_H
#define MODELC_SHAPE_H

#include "ir.h"

#define SHAPE_RULE(name) bool name(ir_node *node, char *err, size_t errlen);
SHAPE_RULE(ir_shape_unary)
SHAPE_RULE(ir_shape_cast)
SHAPE_RULE(ir_shape_broadcast)
SHAPE_RULE(ir_shape_where)
SHAPE_RULE(ir_shape_reduce)
SHAPE_RULE(ir_shape_nll_loss)
SHAPE_RULE(ir_shape_matmul)
SHAPE_RULE(ir_shape_conv)
SHAPE_RULE(ir_shape_pool)
SHAPE_RULE(ir_shape_upsample)
SHAPE_RULE(ir_shape_gather)
SHAPE_RULE(ir_shape_reshape)
SHAPE_RULE(ir_shape_permute)
SHAPE_RULE(ir_shape_broadcast_to)
SHAPE_RULE(ir_shape_slice)
SHAPE_RULE(ir_shape_concat)
SHAPE_RULE(ir_shape_assign)
SHAPE_RULE(ir_shape_none)
SHAPE_RULE(ir_shape_linear)
SHAPE_RULE(ir_shape_cross_entropy)
SHAPE_RULE(ir_shape_loss_pair)
SHAPE_RULE(ir_shape_grad_like)
SHAPE_RULE(ir_shape_max_grad)
SHAPE_RULE(ir_shape_nll_loss_grad)
SHAPE_RULE(ir_shape_conv_grad)
SHAPE_RULE(ir_shape_first_input)
SHAPE_RULE(ir_shape_gather_grad)
SHAPE_RULE(ir_shape_pad)
SHAPE_RULE(ir_shape_flash_attention)
SHAPE_RULE(ir_shape_flash_attention_grad)
SHAPE_RULE(ir_shape_fused_elementwise)
SHAPE_RULE(ir_shape_softmax_cross_entropy)
SHAPE_RULE(ir_shape_softmax_cross_entropy_grad)
SHAPE_RULE(ir_shape_glu)
SHAPE_RULE(ir_shape_glu_grad)
SHAPE_RULE(ir_shape_conv_concat)
SHAPE_RULE(ir_shape_conv_concat_grad)
SHAPE_RULE(ir_shape_fused_norm)
SHAPE_RULE(ir_shape_fused_norm_grad)
#undef SHAPE_RULE

/* Broadcasts two shapes as PyTorch does; false if they do not. */
bool ir_broadcast_shapes(const ir_type *a, const ir_type *b, ir_type *out);

#endif
