/* st_compare: compare two safetensors files tensor by tensor.
 *
 *   st_compare ACTUAL EXPECTED [--rtol R] [--atol A] [--prefix P]
 *              [--only-expected] [--tol-file TOL] [--verbose]
 *
 * Every tensor of EXPECTED (only those whose name starts with P, with
 * --prefix) must exist in ACTUAL under the same name, with the same shape
 * and the same kind of dtype (floating point or integer; F32 against F64
 * or BF16 is allowed and compared by value), and every element must
 * satisfy |a - e| <= atol + rtol * |e| (defaults rtol 1e-4, atol 1e-6).
 * NaN never matches, not even NaN; equal infinities match. A tensor of
 * ACTUAL that EXPECTED lacks (within the prefix) is a failure too, unless
 * --only-expected is given. With --tol-file TOL (a safetensors file), a
 * tensor of TOL named as one of EXPECTED, with the same element count,
 * adds its elements to that tensor's tolerance, element by element:
 * |a - e| <= atol + rtol * |e| + tol (for values known to be sensitive to
 * rounding, see tests/reference/README.md).
 *
 * For each failing tensor it prints the worst element (the largest
 * |a - e| / (atol + rtol |e|)) and how many elements are out of
 * tolerance; then a summary line. --verbose also prints the worst ratio
 * of every tensor that passes.
 *
 * Exit status: 0 when everything matches, 1 when something differs, 2 on
 * trouble (bad arguments, a file that cannot be read), as cmp(1) does.
 *
 * The files are read with the runtime's safetensors reader
 * (modelc_rt_st_open / find / read_real / read_i32). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modelc_rt.h"

typedef struct {
  double rtol, atol;
  const char *prefix;
  int only_expected, verbose;
  int norm; /* --norm: per tensor |a - e|_2 <= rtol * |e|_2 + atol * sqrt(n) */
  modelc_rt_st_file *tol; /* --tol-file, or NULL */
} options;

static void usage(FILE *out) {
  fprintf(out,
          "usage: st_compare ACTUAL EXPECTED [--rtol R] [--atol A] [--prefix P] [--norm]\n"
          "                  [--only-expected] [--tol-file TOL] [--verbose]\n"
          "Every tensor of EXPECTED (names starting with P) must be in ACTUAL with the same\n"
          "shape and |a - e| <= atol + rtol * |e| (+ TOL's tensor of that name, element by\n"
          "element) for every element (rtol 1e-4, atol 1e-6 unless given; NaN never\n"
          "matches). Tensors of ACTUAL missing from EXPECTED fail too, unless\n"
          "--only-expected. Exit 0 equal, 1 different, 2 trouble.\n");
}

static int parse_double(const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || !(v >= 0) || isinf(v)) return -1;
  *out = v;
  return 0;
}

static int is_float_dtype(modelc_rt_dtype d) {
  return d == MODELC_RT_F32 || d == MODELC_RT_BF16 || d == MODELC_RT_F16 || d == MODELC_RT_F64;
}

static int64_t element_count(const modelc_rt_st_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->rank; i++) n *= t->shape[i];
  return n;
}

static void format_shape(const modelc_rt_st_tensor *t, char *buf, size_t len) {
  size_t used = (size_t)snprintf(buf, len, "[");
  for (int i = 0; i < t->rank && used < len; i++)
    used += (size_t)snprintf(buf + used, len - used, "%s%lld", i ? "," : "", (long long)t->shape[i]);
  if (used < len) snprintf(buf + used, len - used, "]");
}

/* The multi-index of flat element `flat` of t, as "[i,j,k]". */
static void format_index(const modelc_rt_st_tensor *t, int64_t flat, char *buf, size_t len) {
  int64_t idx[MODELC_RT_MAX_RANK];
  for (int i = t->rank - 1; i >= 0; i--) {
    idx[i] = t->shape[i] ? flat % t->shape[i] : 0;
    flat = t->shape[i] ? flat / t->shape[i] : 0;
  }
  size_t used = (size_t)snprintf(buf, len, "[");
  for (int i = 0; i < t->rank && used < len; i++)
    used += (size_t)snprintf(buf + used, len - used, "%s%lld", i ? "," : "", (long long)idx[i]);
  if (used < len) snprintf(buf + used, len - used, "]");
}

/* The values of t as doubles (n of them); NULL with a message on failure. */
static double *read_values(const modelc_rt_st_file *f, const modelc_rt_st_tensor *t, int64_t n) {
  char err[512];
  double *out = malloc((size_t)(n ? n : 1) * sizeof *out);
  if (!out) {
    fprintf(stderr, "st_compare: out of memory\n");
    return NULL;
  }
  if (t->dtype == MODELC_RT_F64) { /* keep f64 exact: read the bytes */
    memcpy(out, f->data + t->offset, (size_t)n * sizeof *out);
    return out;
  }
  int rc;
  if (is_float_dtype(t->dtype)) {
    modelc_rt_real *tmp = malloc((size_t)(n ? n : 1) * sizeof *tmp);
    rc = tmp ? modelc_rt_st_read_real(f, t, 0, n, tmp, err, sizeof err) : -1;
    for (int64_t i = 0; rc == 0 && i < n; i++) out[i] = tmp[i];
    if (!tmp) snprintf(err, sizeof err, "out of memory");
    free(tmp);
  } else {
    int32_t *tmp = malloc((size_t)(n ? n : 1) * sizeof *tmp);
    rc = tmp ? modelc_rt_st_read_i32(f, t, 0, n, tmp, err, sizeof err) : -1;
    for (int64_t i = 0; rc == 0 && i < n; i++) out[i] = tmp[i];
    if (!tmp) snprintf(err, sizeof err, "out of memory");
    free(tmp);
  }
  if (rc != 0) {
    fprintf(stderr, "st_compare: %s\n", err);
    free(out);
    return NULL;
  }
  return out;
}

static int has_prefix(const char *name, const char *prefix) {
  return !prefix || strncmp(name, prefix, strlen(prefix)) == 0;
}

/* Compares one tensor: 0 match, 1 differs, 2 trouble. */
static int compare_tensor(const modelc_rt_st_file *fa, const modelc_rt_st_file *fe,
                          const modelc_rt_st_tensor *te, const options *o) {
  const modelc_rt_st_tensor *ta = modelc_rt_st_find(fa, te->name);
  char sa[256], se[256];
  if (!ta) {
    printf("FAIL %s: missing from %s\n", te->name, fa->path);
    return 1;
  }
  format_shape(ta, sa, sizeof sa);
  format_shape(te, se, sizeof se);
  if (strcmp(sa, se) != 0) {
    printf("FAIL %s: shape %s, expected %s\n", te->name, sa, se);
    return 1;
  }
  if (is_float_dtype(ta->dtype) != is_float_dtype(te->dtype)) {
    printf("FAIL %s: dtype %s, expected %s\n", te->name, modelc_rt_dtype_name(ta->dtype),
           modelc_rt_dtype_name(te->dtype));
    return 1;
  }
  int64_t n = element_count(te);
  double *a = read_values(fa, ta, n), *e = read_values(fe, te, n), *extra = NULL;
  const modelc_rt_st_tensor *tt = o->tol ? modelc_rt_st_find(o->tol, te->name) : NULL;
  if (tt && (!is_float_dtype(tt->dtype) || element_count(tt) != n)) {
    fprintf(stderr, "st_compare: %s: tensor '%s' is not %lld floating-point values like %s's\n",
            o->tol->path, te->name, (long long)n, fe->path);
    free(a);
    free(e);
    return 2;
  }
  if (tt) extra = read_values(o->tol, tt, n);
  if (!a || !e || (tt && !extra)) {
    free(a);
    free(e);
    free(extra);
    return 2;
  }
  if (o->norm) {
    /* Low precision: elements that cancel can be off by their own size,
     * while the tensor as a whole is close. */
    double diff = 0, ref = 0;
    for (int64_t i = 0; i < n; i++) {
      diff += (a[i] - e[i]) * (a[i] - e[i]);
      ref += e[i] * e[i];
    }
    double limit = o->rtol * sqrt(ref) + o->atol * sqrt((double)n);
    int fails = !(sqrt(diff) <= limit);
    if (fails || o->verbose)
      printf("%s %s %s: |a - e| %.3g %s %.3g (rtol %g * |e| %.3g + atol %g * sqrt(n))\n",
             fails ? "FAIL" : "ok  ", te->name, se, sqrt(diff), fails ? ">" : "<=", limit, o->rtol,
             sqrt(ref), o->atol);
    free(a);
    free(e);
    free(extra);
    return fails;
  }
  double atol = o->atol, worst = 0;
  int64_t bad = 0, worst_at = -1;
  for (int64_t i = 0; i < n; i++) {
    double tol = atol + o->rtol * fabs(e[i]) + (extra ? fabs(extra[i]) : 0), ratio;
    if (a[i] == e[i]) /* includes equal infinities */
      ratio = 0;
    else if (isnan(a[i]) || isnan(e[i]) || isinf(a[i]) || isinf(e[i]))
      ratio = INFINITY;
    else
      ratio = tol > 0 ? fabs(a[i] - e[i]) / tol : INFINITY;
    if (ratio > 1) bad++;
    if (worst_at < 0 || ratio > worst) {
      worst = ratio;
      worst_at = i;
    }
  }
  int rc = bad ? 1 : 0;
  if (bad || o->verbose) {
    char idx[256] = "[]";
    if (worst_at >= 0) format_index(te, worst_at, idx, sizeof idx);
    if (worst_at < 0) {
      printf("%s %s: empty\n", bad ? "FAIL" : "ok  ", te->name);
    } else {
      char extra_text[64] = "";
      if (extra) snprintf(extra_text, sizeof extra_text, " + tol %.3g", fabs(extra[worst_at]));
      printf("%s %s %s: %lld of %lld elements out of tolerance; worst at %s: actual %.9g, expected "
             "%.9g, |diff| %.3g %s %.3g (atol %g + rtol %g * |e|%s), ratio %.3g\n",
             bad ? "FAIL" : "ok  ", te->name, se, (long long)bad, (long long)n, idx, a[worst_at],
             e[worst_at], fabs(a[worst_at] - e[worst_at]), bad ? ">" : "<=",
             atol + o->rtol * fabs(e[worst_at]) + (extra ? fabs(extra[worst_at]) : 0), atol, o->rtol,
             extra_text, worst);
    }
  }
  free(a);
  free(e);
  free(extra);
  return rc;
}

int main(int argc, char **argv) {
  options o = {1e-4, 1e-6, NULL, 0, 0, 0, NULL};
  const char *paths[2], *tol_path = NULL;
  int npaths = 0;
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    const char *val = NULL;
    const char *eq = strchr(arg, '=');
    char opt[64] = "";
    if (strncmp(arg, "--", 2) == 0 && strcmp(arg, "--") != 0) {
      size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
      if (len >= sizeof opt) len = sizeof opt - 1;
      memcpy(opt, arg, len);
      opt[len] = 0;
      if (eq) val = eq + 1;
    }
    int takes_value = !strcmp(opt, "--rtol") || !strcmp(opt, "--atol") ||
                      !strcmp(opt, "--prefix") || !strcmp(opt, "--tol-file");
    if (takes_value && !val) {
      if (i + 1 >= argc) {
        fprintf(stderr, "st_compare: %s needs a value\n", opt);
        return 2;
      }
      val = argv[++i];
    }
    if (!strcmp(arg, "-h") || !strcmp(opt, "--help")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(opt, "--rtol") || !strcmp(opt, "--atol")) {
      if (parse_double(val, opt[2] == 'r' ? &o.rtol : &o.atol) != 0) {
        fprintf(stderr, "st_compare: %s expects a number >= 0, got '%s'\n", opt, val);
        return 2;
      }
    } else if (!strcmp(opt, "--prefix")) {
      o.prefix = val;
    } else if (!strcmp(opt, "--tol-file")) {
      tol_path = val;
    } else if (!strcmp(arg, "--norm")) {
      o.norm = 1;
    } else if (!strcmp(arg, "--only-expected")) {
      o.only_expected = 1;
    } else if (!strcmp(arg, "--verbose") || !strcmp(arg, "-v")) {
      o.verbose = 1;
    } else if (arg[0] == '-' && arg[1]) {
      fprintf(stderr, "st_compare: unknown option '%s'\n", arg);
      usage(stderr);
      return 2;
    } else if (npaths < 2) {
      paths[npaths++] = arg;
    } else {
      fprintf(stderr, "st_compare: too many arguments ('%s')\n", arg);
      usage(stderr);
      return 2;
    }
  }
  if (npaths != 2) {
    usage(stderr);
    return 2;
  }

  modelc_rt_st_file fa, fe, ft;
  char err[512];
  if (modelc_rt_st_open(&fa, paths[0], err, sizeof err) != 0) {
    fprintf(stderr, "st_compare: %s\n", err);
    return 2;
  }
  if (modelc_rt_st_open(&fe, paths[1], err, sizeof err) != 0) {
    fprintf(stderr, "st_compare: %s\n", err);
    modelc_rt_st_close(&fa);
    return 2;
  }
  if (tol_path) {
    if (modelc_rt_st_open(&ft, tol_path, err, sizeof err) != 0) {
      fprintf(stderr, "st_compare: %s\n", err);
      modelc_rt_st_close(&fa);
      modelc_rt_st_close(&fe);
      return 2;
    }
    o.tol = &ft;
  }

  int compared = 0, failed = 0, trouble = 0;
  for (int i = 0; i < fe.count; i++) {
    if (!has_prefix(fe.tensors[i].name, o.prefix)) continue;
    compared++;
    int rc = compare_tensor(&fa, &fe, &fe.tensors[i], &o);
    failed += rc != 0;
    trouble |= rc == 2;
  }
  int extra = 0;
  if (!o.only_expected) {
    for (int i = 0; i < fa.count; i++) {
      const char *name = fa.tensors[i].name;
      if (has_prefix(name, o.prefix) && !modelc_rt_st_find(&fe, name)) {
        printf("FAIL %s: in %s but not expected\n", name, fa.path);
        extra++;
      }
    }
  }
  for (int i = 0; o.tol && i < o.tol->count; i++) {
    if (!modelc_rt_st_find(&fe, o.tol->tensors[i].name))
      printf("note: %s: tensor '%s' is not in %s\n", o.tol->path, o.tol->tensors[i].name, fe.path);
  }
  if (compared == 0) printf("FAIL no tensors%s%s%s in %s\n", o.prefix ? " named '" : "",
                            o.prefix ? o.prefix : "", o.prefix ? "...'" : "", fe.path);
  printf("st_compare: %d tensor%s compared, %d differ%s%s (%s vs %s, rtol %g, atol %g)\n", compared,
         compared == 1 ? "" : "s", failed, failed == 1 ? "s" : "",
         extra ? ", unexpected tensors in ACTUAL" : "", fa.path, fe.path, o.rtol, o.atol);
  modelc_rt_st_close(&fa);
  modelc_rt_st_close(&fe);
  if (o.tol) modelc_rt_st_close(o.tol);
  if (trouble) return 2;
  return failed || extra || compared == 0 ? 1 : 0;
}
