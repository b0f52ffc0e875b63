/* fuzz_args.c: command-line parsing. The input is split at NUL bytes
 * into arguments; the first byte picks what parses them:
 *   0  the compiler's option parser (drv_parse_args) with every
 *      command's options, then the option and mode lookups;
 *   1  `modelc check ARGS` and 2 `modelc ir ARGS`: the real commands,
 *      with every positional argument replaced by a small spec of the
 *      test suite so that no other file is read;
 *   3  the generated driver's command line (fuzz_args_rt.c).
 * stdout is discarded; messages go to stderr (-close_fd_mask=2). */
#include <stdlib.h>
#include <string.h>

#include "compiler/drv.h"
#include "fuzz.h"

#ifndef FUZZ_SPEC
#define FUZZ_SPEC "tests/reference/cases/linear.yaml"
#endif

int fuzz_rt_main(int argc, char **argv);

enum { FUZZ_MAX_ARGS = 40 };

static const drv_option_spec every_option[] = {
    {"params", false}, {"mode", true},         {"t", true},       {"target", true},
    {"o", true},       {"out", true},          {"stage", true},   {"print-after", true},
    {"passes", true},  {"print-after-all", false}, {"no-verify", false},
};

static void fuzz_options(int argc, char **argv) {
  drv_args args;
  if (!drv_parse_args("fuzz", argc, argv, every_option,
                      (int)(sizeof every_option / sizeof every_option[0]), &args))
    return;
  (void)drv_option(&args, "mode");
  (void)drv_flag(&args, "params");
  fe_mode mode;
  (void)drv_mode(&args, NULL, &mode);
}

/* Positional arguments (not options, nor an option's value) -> the spec. */
static void fuzz_pin_spec(int argc, char **argv) {
  for (int i = 0; i < argc; i++)
    if (argv[i][0] != '-' && (i == 0 || argv[i - 1][0] != '-' || strchr(argv[i - 1], '=')))
      argv[i] = FUZZ_SPEC;
    else if (argv[i][0] != '-')
      argv[i] = "infer"; /* an option's value: a word the options take */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int stdout_closed;
  if (!stdout_closed) {
    stdout_closed = 1;
    if (!freopen("/dev/null", "w", stdout)) abort();
  }
  if (size < 1) return 0;
  int which = data[0] % 4;
  char *text = malloc(size);
  if (!text) abort();
  memcpy(text, data + 1, size - 1);
  text[size - 1] = '\0';
  char *argv[FUZZ_MAX_ARGS + 2];
  int argc = 0;
  if (which == 3) argv[argc++] = "fuzz";
  for (size_t at = 0; at < size - 1 && argc < FUZZ_MAX_ARGS;) {
    argv[argc++] = text + at;
    at += strlen(text + at) + 1;
  }
  argv[argc] = NULL;
  switch (which) {
  case 0: fuzz_options(argc, argv); break;
  case 1: fuzz_pin_spec(argc, argv); (void)drv_check(argc, argv); break;
  case 2: fuzz_pin_spec(argc, argv); (void)drv_ir(argc, argv); break;
  default: (void)fuzz_rt_main(argc, argv); break;
  }
  fflush(stdout);
  free(text);
  return 0;
}
