/* test_rt_table.c: the runtime's table-driven model (rt_table.c), which
 * the LLVM backend's objects and JIT run through, with hand-written
 * kernels: y = w * x (elementwise, w a parameter [4]), loss = mean(y);
 * the train entry also writes dloss/dw = x / 4 into the gradient. Checks
 * init, forward, train_step with an SGD step, save/load, the driver's
 * descriptor, a failed check's message (ids, or a kernel's status), and
 * malformed tables. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "modelc_rt.h"

/* buffers: [0] y, [1] w, [2] x */
static int k_scale(modelc_rt_kernel_args *a, void *const *b) {
  (void)a;
  float *y = b[0];
  const float *w = b[1], *x = b[2];
  for (int i = 0; i < 4; i++) y[i] = w[i] * x[i];
  return 0;
}

/* [0] loss, [1] y */
static int k_mean(modelc_rt_kernel_args *a, void *const *b) {
  (void)a;
  const float *y = b[1];
  ((float *)b[0])[0] = (y[0] + y[1] + y[2] + y[3]) / 4;
  return 0;
}

/* [0] grad w, [1] x */
static int k_grad(modelc_rt_kernel_args *a, void *const *b) {
  (void)a;
  float *g = b[0];
  const float *x = b[1];
  for (int i = 0; i < 4; i++) g[i] += x[i] / 4;
  return 0;
}

/* fails when x[0] < 0: as a gather with an id out of range */
static int k_check(modelc_rt_kernel_args *a, void *const *b) {
  (void)a;
  return ((const float *)b[1])[0] < 0;
}

#define ACT(o) MODELC_RT_LOCATION(2, o)
#define GRAD(o) MODELC_RT_LOCATION(1, o)
#define INPUT(i) MODELC_RT_LOCATION(3, i)

static const modelc_rt_step forward[] = {
    {k_check, 0, 2, {0, INPUT(0)}},
    {k_scale, -1, 3, {ACT(0), 0, INPUT(0)}},
};
static const modelc_rt_step train[] = {
    {k_scale, -1, 3, {ACT(0), 0, INPUT(0)}},
    {k_mean, -1, 2, {ACT(16), ACT(0)}},
    {k_grad, -1, 2, {GRAD(0), INPUT(0)}},
};

static const char text[] =
    "model tiny\n"
    "bytes 16 16 0 32\n"
    "train 1 0.5 0.9 0.999 1e-08 0 0 0 0 0 0 10 0 1 7\n"
    "tensor w 0 1 4 0 4 3 0 0 0 1\n"
    "input x 0 2 1 4 0\n"
    "output y 2 1 4\n"
    "entry 0 1\nentry 1 1\nentry 2 1\n"
    "out 0 0 a 0\nout 1 0 a 0\nout 2 0 a 0\n"
    "loss 1 a 16\nloss 2 a 16\n"
    "check x\n";

static const modelc_rt_table_source source = {text, {forward, train, train}, {2, 3, 3}};

typedef struct {
  const float *x;
} tiny_inputs;
typedef struct {
  const float *y;
  float loss;
} tiny_outputs;

static const float x[4] = {1, 2, 3, 4};

START_TEST(forward_and_train_step) {
  modelc_rt_table_model *m = modelc_rt_table_new(&source);
  ck_assert_ptr_nonnull(m);
  tiny_inputs in = {x};
  tiny_outputs out;
  ck_assert_int_eq(modelc_rt_table_forward(m, &in, &out), 0);
  for (int i = 0; i < 4; i++) ck_assert_float_eq(out.y[i], x[i]); /* w = ones */
  ck_assert(isnan(out.loss));
  /* loss = mean(w x) = 2.5; SGD lr 0.5: w -= 0.5 * x / 4 */
  ck_assert_float_eq(modelc_rt_table_train_step(m, &in), 2.5f);
  ck_assert_int_eq(modelc_rt_table_evaluate(m, &in, &out), 0);
  for (int i = 0; i < 4; i++) ck_assert_float_eq_tol(out.y[i], (1 - 0.125f * x[i]) * x[i], 1e-6);
  modelc_rt_table_free(m);
}
END_TEST

START_TEST(failed_check_names_its_value) {
  modelc_rt_table_model *m = modelc_rt_table_new(&source);
  static const float bad[4] = {-1, 0, 0, 0};
  tiny_inputs in = {bad};
  tiny_outputs out;
  ck_assert_int_eq(modelc_rt_table_forward(m, &in, &out), -1);
  ck_assert_str_eq(modelc_rt_table_error(m), "an index of 'x' is outside the embedding table");
  tiny_inputs none = {NULL};
  ck_assert_int_eq(modelc_rt_table_forward(m, &none, &out), -1);
  ck_assert_str_eq(modelc_rt_table_error(m), "input 'x' is missing");
  modelc_rt_table_free(m);
}
END_TEST

/* A kernel that returns its status (flash attention allocating): a
 * `status NAME` record, counted among the checks, names its result. */
static int k_out_of_memory(modelc_rt_kernel_args *a, void *const *b) {
  (void)a;
  (void)b;
  return 1;
}

START_TEST(failed_status_names_its_result) {
  static const modelc_rt_step failing[] = {
      {k_check, 0, 2, {0, INPUT(0)}},
      {k_out_of_memory, 1, 1, {ACT(0)}},
  };
  static const char status_text[] =
      "model tiny\n"
      "bytes 16 16 0 32\n"
      "tensor w 0 1 4 0 4 3 0 0 0 1\n"
      "input x 0 2 1 4 0\n"
      "output y 2 1 4\n"
      "entry 0 1\n"
      "out 0 0 a 0\n"
      "check x\n"
      "status y\n";
  static const modelc_rt_table_source status_source = {status_text, {failing, NULL, NULL}, {2, 0, 0}};
  modelc_rt_table_model *m = modelc_rt_table_new(&status_source);
  ck_assert_ptr_nonnull(m);
  tiny_inputs in = {x};
  tiny_outputs out;
  ck_assert_int_eq(modelc_rt_table_forward(m, &in, &out), -1);
  ck_assert_str_eq(modelc_rt_table_error(m), "out of memory in 'y'");
  modelc_rt_table_free(m);
}
END_TEST

START_TEST(save_load_round_trip) {
  char path[] = "/tmp/test_rt_table_XXXXXX";
  int fd = mkstemp(path);
  ck_assert_int_ge(fd, 0);
  close(fd);
  modelc_rt_table_model *a = modelc_rt_table_new(&source), *b = modelc_rt_table_new(&source);
  tiny_inputs in = {x};
  tiny_outputs out;
  modelc_rt_table_train_step(a, &in);
  ck_assert_int_eq(modelc_rt_table_save(a, path), 0);
  ck_assert_int_eq(modelc_rt_table_load(b, path), 0);
  ck_assert_int_eq(modelc_rt_table_forward(b, &in, &out), 0);
  ck_assert_float_eq_tol(out.y[3], (1 - 0.125f * 4) * 4, 1e-6);
  remove(path);
  modelc_rt_table_free(a);
  modelc_rt_table_free(b);
}
END_TEST

START_TEST(descriptor_for_the_driver) {
  char err[256];
  modelc_rt_model *d = modelc_rt_table_describe(&source, err, sizeof err);
  ck_assert_ptr_nonnull(d);
  ck_assert_str_eq(d->name, "tiny");
  ck_assert_int_eq(d->num_params, 1);
  ck_assert_str_eq(d->params[0].name, "w");
  ck_assert_int_eq(d->trains, 1);
  ck_assert_int_eq(d->train.optimizer, 1);
  ck_assert_int_eq((int)d->train.seed, 7);
  void *m = modelc_rt_model_create(d);
  ck_assert_ptr_nonnull(m);
  const void *inputs[1] = {x};
  const float *outputs[1];
  float loss;
  ck_assert_int_eq(d->backward(m, inputs, outputs, &loss), 0);
  ck_assert_float_eq(loss, 2.5f);
  ck_assert_float_eq(d->grad(m, 0)[1], 0.5f);
  double norm, lr;
  ck_assert_int_eq(d->update(m, 1, &norm, &lr), 0);
  ck_assert_float_eq((float)lr, 0.5f);
  ck_assert_int_eq((int)d->step(m), 1);
  d->destroy(m);
  modelc_rt_table_release(d);
}
END_TEST

START_TEST(malformed_tables) {
  char err[256];
  static const char *const bad[] = {
      "model tiny\nbytes 16\n",                 /* too few numbers */
      "bytes 16 16 0 32\nentry 0 1\n",          /* no model name */
      "model tiny\nbytes 16 16 0 32\nwhat 1\n", /* unknown record */
      "model tiny\nbytes 16 16 0 32\nout 0 0 q 1\nentry 0\n", /* unknown region */
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    modelc_rt_table_source s = {bad[i], {forward, NULL, NULL}, {2, 0, 0}};
    err[0] = 0;
    ck_assert_ptr_null(modelc_rt_table_describe(&s, err, sizeof err));
    ck_assert_msg(strstr(err, "malformed model table") != NULL, "table %zu: %s", i, err);
  }
}
END_TEST

static Suite *table_suite(void) {
  Suite *s = suite_create("rt_table");
  TCase *t = tcase_create("table_model");
  tcase_add_test(t, forward_and_train_step);
  tcase_add_test(t, failed_check_names_its_value);
  tcase_add_test(t, failed_status_names_its_result);
  tcase_add_test(t, save_load_round_trip);
  tcase_add_test(t, descriptor_for_the_driver);
  tcase_add_test(t, malformed_tables);
  suite_add_tcase(s, t);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(table_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? 0 : 1;
}
