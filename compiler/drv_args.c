/* drv_args.c: command-line options (--name=value, --name value, flags)
 * and loading a spec into a graph, shared by the commands. */
#include <errno.h>
#include <string.h>

#include "compiler/drv.h"

static const drv_option_spec *find_option(const drv_option_spec *options, int n, const char *name,
                                     size_t len) {
  for (int i = 0; i < n; i++)
    if (strlen(options[i].name) == len && strncmp(options[i].name, name, len) == 0)
      return &options[i];
  return NULL;
}

static bool add_option(const char *command, drv_args *out, const char *name, const char *value) {
  if (out->num_options == 32) {
    fprintf(stderr, "modelc %s: error: too many options\n", command);
    return false;
  }
  out->option_names[out->num_options] = name;
  out->option_values[out->num_options++] = value;
  return true;
}

bool drv_parse_args(const char *command, int argc, char **argv, const drv_option_spec *options,
                    int num_options, drv_args *out) {
  memset(out, 0, sizeof *out);
  out->command = command;
  for (int i = 0; i < argc; i++) {
    const char *arg = argv[i];
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
      out->help = true;
      continue;
    }
    if (strncmp(arg, "--", 2) != 0 || arg[2] == 0) {
      if (out->num_positional == 8) {
        fprintf(stderr, "modelc %s: error: too many arguments\n", command);
        return false;
      }
      out->positional[out->num_positional++] = arg;
      continue;
    }
    const char *name = arg + 2, *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    const drv_option_spec *opt = find_option(options, num_options, name, len);
    if (!opt) {
      fprintf(stderr, "modelc %s: error: unknown option '%.*s' (see 'modelc %s --help')\n",
              command, (int)len + 2, arg, command);
      return false;
    }
    const char *value = NULL;
    if (opt->takes_value) {
      if (eq) {
        value = eq + 1;
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        fprintf(stderr, "modelc %s: error: option '--%s' needs a value\n", command, opt->name);
        return false;
      }
    } else if (eq) {
      fprintf(stderr, "modelc %s: error: option '--%s' takes no value\n", command, opt->name);
      return false;
    }
    if (!add_option(command, out, opt->name, value)) return false;
  }
  return true;
}

const char *drv_option(const drv_args *args, const char *name) {
  const char *found = NULL;
  for (int i = 0; i < args->num_options; i++)
    if (strcmp(args->option_names[i], name) == 0) found = args->option_values[i];
  return found;
}

bool drv_flag(const drv_args *args, const char *name) {
  for (int i = 0; i < args->num_options; i++)
    if (strcmp(args->option_names[i], name) == 0) return true;
  return false;
}

bool drv_mode(const drv_args *args, const fe_spec *spec, fe_mode *out) {
  const char *mode = drv_option(args, "mode");
  *out = spec && spec->has_train ? FE_MODE_TRAIN : FE_MODE_INFER;
  if (!mode) return true;
  if (strcmp(mode, "infer") == 0) {
    *out = FE_MODE_INFER;
  } else if (strcmp(mode, "train") == 0 || strcmp(mode, "eval") == 0) {
    if (spec && !spec->has_train) {
      fprintf(stderr, "modelc %s: error: --mode=%s needs a spec with a 'train:' section\n",
              args->command, mode);
      return false;
    }
    *out = mode[0] == 't' ? FE_MODE_TRAIN : FE_MODE_EVAL;
  } else {
    fprintf(stderr, "modelc %s: error: unknown mode '%s' (modes: infer, eval, train)\n", args->command,
            mode);
    return false;
  }
  return true;
}

char *drv_read_file(ir_arena *arena, const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "modelc: error: cannot read '%s': %s\n", path, strerror(errno));
    return NULL;
  }
  size_t cap = 1 << 16, n = 0;
  char *buf = ir_arena_alloc(arena, cap + 1);
  for (;;) {
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (n < cap) break;
    buf = ir_arena_grow(arena, buf, n, 2 * cap + 1);
    cap *= 2;
  }
  bool failed = ferror(f);
  fclose(f);
  if (failed) {
    fprintf(stderr, "modelc: error: cannot read '%s'\n", path);
    return NULL;
  }
  buf[n] = 0;
  *len = n;
  return buf;
}
