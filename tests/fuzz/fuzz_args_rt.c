/* fuzz_args_rt.c: the generated driver's command line (runtime/
 * rt_driver.c, `MODEL_main run|train|sample ...`), through its real
 * entry point and a stand-in model whose create() fails: argument
 * parsing, help, and every check before the model is needed run as in a
 * generated program; nothing is read or written. The driver is included
 * so that this file sees its static parser. */
#include "rt_driver.c"

#include "fuzz.h"

static void *fake_create(void) { return NULL; }
static void fake_destroy(void *model) { (void)model; }
static const char *fake_error(const void *model) {
  (void)model;
  return "stand-in model";
}

static const modelc_rt_tensor_desc fake_inputs[2] = {
    {"tokens", MODELC_RT_I32, 2, {2, 8}},
    {"targets", MODELC_RT_I32, 2, {2, 8}},
};
static const modelc_rt_tensor_desc fake_outputs[1] = {{"logits", MODELC_RT_F32, 3, {2, 8, 256}}};
static const int fake_loss_only[2] = {0, 1};

static const modelc_rt_model fake_model = {
    .name = "fuzz",
    .num_inputs = 2,
    .inputs = fake_inputs,
    .num_outputs = 1,
    .outputs = fake_outputs,
    .trains = 0, /* `train` stops after parsing: no data is opened */
    .input_loss_only = fake_loss_only,
    .create = fake_create,
    .destroy = fake_destroy,
    .error = fake_error,
};

int fuzz_rt_main(int argc, char **argv);
int fuzz_rt_main(int argc, char **argv) {
  int rc = modelc_rt_main(argc, argv, &fake_model);
  if (rc != 0 && rc != 1 && rc != 2) {
    fprintf(stderr, "driver exit code %d\n", rc);
    abort();
  }
  return rc;
}
