/* xor_check.c: trains examples/embed/xor.yaml for 20 steps through the
 * API of its object and prints the losses and the final logits, one
 * number a line: run on the host and on aarch64 (under qemu) by
 * tests/run_llvm.sh, which compares the two. */
#include <stdio.h>

#include "xor.h"

int main(void) {
  static const float x[4][2] = {{0, 0}, {0, 1}, {1, 0}, {1, 1}};
  static const int32_t y[4] = {0, 1, 1, 0};
  xor *m = xor_new();
  if (!m) return 1;
  xor_inputs in = {&x[0][0], y};
  for (int step = 0; step < 20; step++) printf("%.7g\n", xor_train_step(m, &in));
  xor_outputs out;
  if (xor_forward(m, &in, &out) != 0) {
    fprintf(stderr, "%s\n", xor_error(m));
    return 1;
  }
  for (int i = 0; i < 8; i++) printf("%.7g\n", out.logits[i]);
  xor_free(m);
  return 0;
}
