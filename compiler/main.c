/* main.c: the modelc command line: dispatches to the commands in drv_*.c.
 * The only place that decides the process's exit code. */
#include <stdio.h>
#include <string.h>

#include "compiler/drv.h"

#ifndef MODELC_VERSION
#define MODELC_VERSION "0.0.0"
#endif

typedef int (*command_fn)(int argc, char **argv);

typedef struct command {
  const char *name;
  const char *summary;
  command_fn run; /* NULL: arrives with a later release */
} command;

static const command commands[] = {
    {"check", "validate a spec; summary of parameters, FLOPs and memory", drv_check},
    {"ir", "print the graph IR at a stage of the pipeline", drv_ir},
    {"build", "generate standalone C (-t c) for a spec", drv_build},
    {"run", "run a model on one batch: outputs, loss, gradients", drv_run},
    {"train", "train a model on data, with checkpoints and metrics", drv_train},
    {"sample", "generate text from a trained byte-level language model", drv_sample},
    {"data", "convert text or Fashion-MNIST files into training data", drv_data},
    {"bench", "time a model's generated code: forward and training step", drv_bench},
};

enum { NUM_COMMANDS = sizeof commands / sizeof commands[0] };

static void usage(FILE *out) {
  fprintf(out,
          "usage: modelc COMMAND [ARGS...]\n"
          "       modelc COMMAND --help\n"
          "       modelc --version\n"
          "\n"
          "modelc compiles model specs (YAML) into standalone code.\n"
          "\n"
          "commands:\n");
  for (int i = 0; i < NUM_COMMANDS; i++)
    fprintf(out, "  %-7s %s\n", commands[i].name, commands[i].summary);
  fprintf(out, "\nexit codes: 0 success, 1 an error in the input, 2 an internal error\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return DRV_USER_ERROR;
  }
  const char *name = argv[1];
  if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
    usage(stdout);
    return DRV_OK;
  }
  if (strcmp(name, "--version") == 0) {
    printf("modelc %s\n", MODELC_VERSION);
    return DRV_OK;
  }
  for (int i = 0; i < NUM_COMMANDS; i++) {
    if (strcmp(commands[i].name, name) != 0) continue;
    if (!commands[i].run) {
      fprintf(stderr, "modelc %s: error: this release of modelc has no %s command yet\n", name,
              name);
      return DRV_USER_ERROR;
    }
    return commands[i].run(argc - 2, argv + 2);
  }
  fprintf(stderr, "modelc: error: unknown command '%s' (see 'modelc --help')\n", name);
  return DRV_USER_ERROR;
}
