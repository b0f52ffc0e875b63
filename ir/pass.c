/* pass.c: the pass manager.
 *
 * The pipeline is one table: a pass, the stage the graph reaches after
 * it, and the function. Adding a pass is adding a row. Stage "parsed" is
 * the graph before any pass. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

static const ir_pass_info pipeline[] = {
    {"expand", "expanded", ir_pass_expand},
    {"fuse_attention", "fused", ir_pass_fuse_attention},
    {"fuse_gating", "fused", ir_pass_fuse_gating},
    {"fuse_conv", "fused", ir_pass_fuse_conv},
    {"fuse_norm", "fused", ir_pass_fuse_norm},
    {"fuse_cross_entropy", "fused", ir_pass_fuse_cross_entropy},
    {"autodiff", "autodiff", ir_pass_autodiff},
    {"recompute", "final", ir_pass_recompute},
    {"dce", "final", ir_pass_dce},
    {"fuse_norm_residual", "final", ir_pass_fuse_norm_residual},
    {"fuse_elementwise", "final", ir_pass_fuse_elementwise},
};

enum { PIPELINE_LEN = sizeof pipeline / sizeof pipeline[0] };

static const char *const first_stage = "parsed";

const ir_pass_info *ir_pipeline(int *count) {
  *count = PIPELINE_LEN;
  return pipeline;
}

/* "parsed, expanded, autodiff, final" or "expand, autodiff, dce" into buf. */
static void list_names(bool stages, char *buf, size_t len) {
  size_t used = (size_t)snprintf(buf, len, "%s", stages ? first_stage : "");
  for (int i = 0; i < PIPELINE_LEN && used < len; i++) {
    const char *name = stages ? pipeline[i].stage : pipeline[i].name;
    if (stages && i > 0 && strcmp(name, pipeline[i - 1].stage) == 0) continue;
    used += (size_t)snprintf(buf + used, len - used, "%s%s", used ? ", " : "", name);
  }
}

/* Index of the pass after which to stop (the last one reaching the
 * stage); -1 for "parsed"; -2 unknown. */
static int stop_index(const char *stage) {
  if (!stage) return PIPELINE_LEN - 1;
  if (strcmp(stage, first_stage) == 0) return -1;
  for (int i = PIPELINE_LEN - 1; i >= 0; i--)
    if (strcmp(pipeline[i].stage, stage) == 0) return i;
  return -2;
}

static const char fuse_prefix[] = "fuse_";

const char *ir_fusion_names(void) {
  static char names[256];
  size_t used = 0;
  names[0] = 0;
  for (int i = 0; i < PIPELINE_LEN && used < sizeof names; i++)
    if (strncmp(pipeline[i].name, fuse_prefix, strlen(fuse_prefix)) == 0)
      used += (size_t)snprintf(names + used, sizeof names - used, "%s%s", used ? ", " : "",
                               pipeline[i].name + strlen(fuse_prefix));
  return names;
}

/* Whether `name` is one of the comma-separated words of list. */
static bool listed(const char *list, const char *name) {
  size_t len = strlen(name);
  for (const char *s = list; s && *s;) {
    size_t word = strcspn(s, ",");
    if (word == len && strncmp(s, name, len) == 0) return true;
    s += word + (s[word] == ',');
  }
  return false;
}

static bool fusion_known(const char *word, size_t len) {
  for (int i = 0; i < PIPELINE_LEN; i++) {
    const char *n = pipeline[i].name;
    if (strncmp(n, fuse_prefix, strlen(fuse_prefix)) == 0 &&
        strlen(n + strlen(fuse_prefix)) == len && strncmp(n + strlen(fuse_prefix), word, len) == 0)
      return true;
  }
  return false;
}

/* Skipped by --no-fuse. */
static bool skipped(const ir_pass_options *opts, const char *pass) {
  return strncmp(pass, fuse_prefix, strlen(fuse_prefix)) == 0 &&
         listed(opts->no_fuse, pass + strlen(fuse_prefix));
}

static bool pass_known(const char *name) {
  for (int i = 0; i < PIPELINE_LEN; i++)
    if (strcmp(pipeline[i].name, name) == 0) return true;
  return false;
}

bool ir_fusion_list_ok(const char *list, char *err, size_t errlen) {
  for (const char *s = list; s && *s;) {
    size_t word = strcspn(s, ",");
    if (!fusion_known(s, word)) {
      snprintf(err, errlen, "unknown fusion '%.*s' (fusions: %s)", (int)word, s, ir_fusion_names());
      return false;
    }
    s += word + (s[word] == ',');
  }
  return true;
}

static bool check_names(const ir_pass_options *opts, char *err, size_t errlen) {
  char names[256];
  if (!ir_fusion_list_ok(opts->no_fuse, err, errlen)) return false;
  if (stop_index(opts->stop_after_stage) == -2) {
    list_names(true, names, sizeof names);
    snprintf(err, errlen, "unknown stage '%s' (stages: %s)", opts->stop_after_stage, names);
    return false;
  }
  if (opts->print_after && !pass_known(opts->print_after)) {
    list_names(false, names, sizeof names);
    snprintf(err, errlen, "unknown pass '%s' (passes: %s)", opts->print_after, names);
    return false;
  }
  return true;
}

/* The verifier writes lines to a FILE; the first becomes the message. */
static bool verify_after(const ir_graph *g, const char *pass, bool expanded, char *err,
                         size_t errlen) {
  char *text = NULL;
  size_t size = 0;
  FILE *out = open_memstream(&text, &size);
  int problems = ir_verify(g, expanded, out);
  if (out) fclose(out);
  if (problems) {
    size_t line = text ? strcspn(text, "\n") : 0;
    char more[48] = "";
    if (problems > 1) snprintf(more, sizeof more, " (and %d more)", problems - 1);
    snprintf(err, errlen, "invalid IR after pass '%s': %.*s%s", pass, (int)line,
             text ? text : "", more);
  }
  free(text);
  return problems == 0;
}

bool ir_run_pipeline(ir_graph *g, const ir_pass_options *opts, char *err, size_t errlen) {
  static const ir_pass_options defaults = {0};
  if (!opts) opts = &defaults;
  if (!check_names(opts, err, errlen)) return false;
  int last = stop_index(opts->stop_after_stage);
  FILE *out = opts->print_out ? opts->print_out : stdout;
  bool expanded = false;
  for (int i = 0; i <= last; i++) {
    const ir_pass_info *pass = &pipeline[i];
    if (skipped(opts, pass->name)) continue;
    if (!pass->run(g, err, errlen)) return false;
    expanded = expanded || strcmp(pass->name, "expand") == 0;
    if (opts->print_after_all || (opts->print_after && strcmp(opts->print_after, pass->name) == 0)) {
      fprintf(out, "// ----- IR after %s -----\n", pass->name);
      ir_print(out, g);
    }
    if (opts->verify_each && !verify_after(g, pass->name, expanded, err, errlen)) return false;
  }
  return true;
}
