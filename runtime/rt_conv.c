/* rt_conv.c: 2-D convolution, pooling and upsampling, NCHW, with their
 * gradients. All outputs are overwritten (gradients are not added to
 * what the buffer held).
 *
 * Convolution lowers to GEMM through im2col. For a chunk of nb images
 * and one group, col [K, nb*OH*OW] holds for every output pixel the K =
 * Cg*KH*KW input values its kernel window sees (0 in the padding);
 * col_i are image i's columns, Cg = C/groups, Og = O/groups; gcat [Og,
 * nb*OH*OW] holds the chunk's rows of g_g side by side. Then, one GEMM
 * per chunk and group (wide: small images make narrow per-image ones):
 *   forward      ycat [Og, nb*OH*OW] = w_g [Og, K] col, rows into y
 *   grad input   dcol [K, nb*OH*OW] = w_g^T gcat, summed back onto dx
 *                (col2im)
 *   grad weight  dw_g [Og, K] += gcat col^T
 * A 1x1 kernel with stride 1 and no padding needs no col: it is x.
 *
 * The input may be a virtual concatenation of nearest-upsampled parts
 * (conv_concat, made by ir/fuse_conv.c): im2col and col2im read and
 * write each part in place through the upsampling's index map.
 *
 * Chunks keep col under 8 MiB. Threads: OpenMP parallelises im2col and
 * col2im over a chunk; the GEMMs, called one after another outside any
 * parallel region (OpenBLAS's threads must not be started from inside
 * one), use the threads of the GEMM. */
#include "modelc_rt.h"

#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#define CONV_OMP(directive) _Pragma(directive)
#else
#define CONV_OMP(directive)
#endif

/* Loops over fewer elements than this stay on one thread. */
enum { CONV_PARALLEL_MIN = 1 << 15 };

static int64_t conv_min(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t conv_max(int64_t a, int64_t b) { return a > b ? a : b; }

/* The range [*lo, *hi) of outputs o in [0, count) whose input
 * o*stride + offset lies in [0, size). */
static void conv_valid_range(int64_t count, int64_t stride, int64_t offset, int64_t size,
                             int64_t *lo, int64_t *hi) {
  /* o >= ceil(-offset / stride), o <= floor((size - 1 - offset) / stride) */
  int64_t a = -offset, b = size - 1 - offset;
  int64_t first = a <= 0 ? 0 : (a + stride - 1) / stride;
  int64_t last = b < 0 ? -1 : b / stride;
  *lo = conv_min(first, count);
  *hi = conv_max(*lo, conv_min(last + 1, count));
}

static int conv_is_pointwise(const modelc_rt_conv *p) {
  return p->kh == 1 && p->kw == 1 && p->stride_h == 1 && p->stride_w == 1 && p->pad_h == 0 &&
         p->pad_w == 0 && p->oh == p->h && p->ow == p->w;
}

/* Images per chunk: col [K, nb*OH*OW] stays under this many floats. */
enum { CONV_COL_BUDGET = 1 << 21 };

static int64_t conv_chunk(const modelc_rt_conv *p, int64_t k) {
  int64_t per = k * p->oh * p->ow, nb = per > 0 ? CONV_COL_BUDGET / per : p->n;
  return nb < 1 ? 1 : nb > p->n ? p->n : nb;
}

/* Where the input channels come from. A plain conv reads one tensor x
 * [N, C, H, W]; a fused conv_concat reads the parts of the channel
 * concatenation, part i [N, c[i], H/up[i], W/up[i]] nearest-upsampled by
 * up[i] through the index map (iy, ix) -> (iy/up, ix/up), so neither the
 * concatenated nor the upsampled input is ever stored. */
typedef struct conv_src {
  int parts;
  const modelc_rt_real *x[MODELC_RT_CONV_PARTS];
  int64_t c[MODELC_RT_CONV_PARTS], up[MODELC_RT_CONV_PARTS];
} conv_src;

static conv_src conv_single(const modelc_rt_real *x, const modelc_rt_conv *p) {
  conv_src s = {.parts = 1};
  s.x[0] = x, s.c[0] = p->c, s.up[0] = 1;
  return s;
}

/* Input channel c of image img: its plane, and the part's upsampling. */
static const modelc_rt_real *conv_plane(const conv_src *s, const modelc_rt_conv *p, int64_t img,
                                        int64_t c, int64_t *up) {
  int i = 0;
  while (i + 1 < s->parts && c >= s->c[i]) c -= s->c[i++];
  *up = s->up[i];
  return s->x[i] + (img * s->c[i] + c) * (p->h / s->up[i]) * (p->w / s->up[i]);
}

/* A row of an upsampled part, widened into buf (the part's row repeated
 * up times per value): reading it then needs no division. */
enum { CONV_ROW_MAX = 2048 };

static const modelc_rt_real *conv_up_row(modelc_rt_real *buf, const modelc_rt_real *src, int64_t w,
                                         int64_t up) {
  for (int64_t k = 0; k < w / up; k++)
    for (int64_t u = 0; u < up; u++) buf[k * up + u] = src[k];
  return buf;
}

/* col [cg*KH*KW, nb*OH*OW] (image i in columns i*OH*OW...) from input
 * channels [c0, c0+cg) of images [n0, n0+nb). */
static void conv_im2col(modelc_rt_real *col, const conv_src *s, int64_t n0, int64_t nb, int64_t c0,
                        int64_t cg, const modelc_rt_conv *p) {
  int64_t rows = cg * p->kh * p->kw, plane = p->oh * p->ow, ld = nb * plane;
  CONV_OMP("omp parallel for if(nb * rows * plane >= CONV_PARALLEL_MIN)")
  for (int64_t item = 0; item < nb * rows; item++) {
    int64_t img = item / rows, row = item % rows;
    int64_t c = row / (p->kh * p->kw), i = row / p->kw % p->kh, j = row % p->kw, up;
    const modelc_rt_real *xc = conv_plane(s, p, n0 + img, c0 + c, &up);
    int64_t sw = p->w / up;
    modelc_rt_real *dst = col + row * ld + img * plane, wide[CONV_ROW_MAX];
    int64_t off_h = i * p->dil_h - p->pad_h, off_w = j * p->dil_w - p->pad_w;
    int64_t ox_lo, ox_hi;
    conv_valid_range(p->ow, p->stride_w, off_w, p->w, &ox_lo, &ox_hi);
    for (int64_t oy = 0; oy < p->oh; oy++) {
      modelc_rt_real *d = dst + oy * p->ow;
      int64_t iy = oy * p->stride_h + off_h;
      if (iy < 0 || iy >= p->h) {
        for (int64_t ox = 0; ox < p->ow; ox++) d[ox] = 0.0f;
        continue;
      }
      for (int64_t ox = 0; ox < ox_lo; ox++) d[ox] = 0.0f;
      const modelc_rt_real *src = NULL;
      if (up == 1)
        src = xc + iy * p->w;
      else if (p->w <= CONV_ROW_MAX)
        src = conv_up_row(wide, xc + iy / up * sw, p->w, up);
      if (src) {
        src += off_w;
        if (p->stride_w == 1)
          memcpy(d + ox_lo, src + ox_lo, (size_t)(ox_hi - ox_lo) * sizeof *d);
        else
          for (int64_t ox = ox_lo; ox < ox_hi; ox++) d[ox] = src[ox * p->stride_w];
      } else { /* a row wider than the buffer */
        const modelc_rt_real *r = xc + iy / up * sw;
        for (int64_t ox = ox_lo; ox < ox_hi; ox++) d[ox] = r[(ox * p->stride_w + off_w) / up];
      }
      for (int64_t ox = ox_hi; ox < p->ow; ox++) d[ox] = 0.0f;
    }
  }
}

/* dx [nb, cx, H/up, W/up] channels [c0, c0+cg) = col [cg*KH*KW,
 * nb*OH*OW] summed back onto the inputs each entry came from (padding
 * dropped; an upsampled input sums its up x up copies). (image,
 * channel) pairs are independent. */
static void conv_col2im(modelc_rt_real *dx, const modelc_rt_real *col, int64_t nb, int64_t c0,
                        int64_t cg, int64_t cx, int64_t up, const modelc_rt_conv *p) {
  int64_t plane = p->oh * p->ow, ld = nb * plane, sh = p->h / up, sw = p->w / up;
  CONV_OMP("omp parallel for if(nb * cg * p->kh * p->kw * plane >= CONV_PARALLEL_MIN)")
  for (int64_t item = 0; item < nb * cg; item++) {
    int64_t img = item / cg, c = item % cg;
    modelc_rt_real *dxc = dx + (img * cx + c0 + c) * sh * sw;
    /* An upsampled part sums at full size first (no division per value),
     * then folds each up x up block into its value. */
    modelc_rt_real *full = up == 1 ? dxc : malloc((size_t)(p->h * p->w) * sizeof *full);
    int64_t wd = full ? p->w : sw, u = full ? 1 : up;
    modelc_rt_real *acc = full ? full : dxc;
    memset(acc, 0, (size_t)(full ? p->h * p->w : sh * sw) * sizeof *acc);
    for (int64_t i = 0; i < p->kh; i++)
      for (int64_t j = 0; j < p->kw; j++) {
        const modelc_rt_real *src = col + ((c * p->kh + i) * p->kw + j) * ld + img * plane;
        int64_t off_h = i * p->dil_h - p->pad_h, off_w = j * p->dil_w - p->pad_w;
        int64_t ox_lo, ox_hi;
        conv_valid_range(p->ow, p->stride_w, off_w, p->w, &ox_lo, &ox_hi);
        for (int64_t oy = 0; oy < p->oh; oy++) {
          int64_t iy = oy * p->stride_h + off_h;
          if (iy < 0 || iy >= p->h) continue;
          const modelc_rt_real *s = src + oy * p->ow;
          if (u == 1) {
            modelc_rt_real *d = acc + iy * wd + off_w;
            if (p->stride_w == 1)
              for (int64_t ox = ox_lo; ox < ox_hi; ox++) d[ox] += s[ox];
            else
              for (int64_t ox = ox_lo; ox < ox_hi; ox++) d[ox * p->stride_w] += s[ox];
          } else { /* no memory for the full-size plane */
            modelc_rt_real *d = acc + iy / u * wd;
            for (int64_t ox = ox_lo; ox < ox_hi; ox++) d[(ox * p->stride_w + off_w) / u] += s[ox];
          }
        }
      }
    if (full && full != dxc) {
      for (int64_t y = 0; y < sh; y++) {
        modelc_rt_real *d = dxc + y * sw;
        for (int64_t x = 0; x < sw; x++) d[x] = 0.0f;
        for (int64_t v = 0; v < up; v++) {
          const modelc_rt_real *r = full + (y * up + v) * p->w;
          for (int64_t x = 0; x < sw; x++)
            for (int64_t q = 0; q < up; q++) d[x] += r[x * up + q];
        }
      }
      free(full);
    }
  }
}

/* Without memory for col: direct loops, slow but exact, reading the
 * input through its source. `which` 0: out = y from x (s) and b = w;
 * 1: out = dx from a = g and b = w, where dx holds input channels
 * [first, first + cx) stored at 1/up of the input's size; 2: out = dw
 * from x (s) and a = g. */
static void conv_direct(modelc_rt_real *out, const conv_src *s, const modelc_rt_real *a,
                        const modelc_rt_real *b, const modelc_rt_conv *p, int which, int64_t first,
                        int64_t cx, int64_t up) {
  int64_t cg = p->c / p->groups, og = p->o / p->groups, sh = p->h / up, sw = p->w / up;
  int64_t n_out = which == 0   ? p->n * p->o * p->oh * p->ow
                  : which == 1 ? p->n * cx * sh * sw
                               : p->o * cg * p->kh * p->kw;
  memset(out, 0, (size_t)n_out * sizeof *out);
  for (int64_t n = 0; n < p->n; n++)
    for (int64_t oc = 0; oc < p->o; oc++)
      for (int64_t c = 0; c < cg; c++) {
        int64_t ch = oc / og * cg + c, xup = 1;
        if (which == 1 && (ch < first || ch >= first + cx)) continue;
        const modelc_rt_real *xc = which == 1 ? NULL : conv_plane(s, p, n, ch, &xup);
        modelc_rt_real *dxc = which == 1 ? out + (n * cx + ch - first) * sh * sw : NULL;
        for (int64_t i = 0; i < p->kh; i++)
          for (int64_t j = 0; j < p->kw; j++)
            for (int64_t oy = 0; oy < p->oh; oy++) {
              int64_t iy = oy * p->stride_h - p->pad_h + i * p->dil_h;
              if (iy < 0 || iy >= p->h) continue;
              for (int64_t ox = 0; ox < p->ow; ox++) {
                int64_t ix = ox * p->stride_w - p->pad_w + j * p->dil_w;
                if (ix < 0 || ix >= p->w) continue;
                int64_t wi = ((oc * cg + c) * p->kh + i) * p->kw + j;
                int64_t yi = ((n * p->o + oc) * p->oh + oy) * p->ow + ox;
                if (which == 1) {
                  dxc[iy / up * sw + ix / up] += a[yi] * b[wi]; /* a = g, b = w */
                  continue;
                }
                modelc_rt_real xv = xc[iy / xup * (p->w / xup) + ix / xup];
                if (which == 0)
                  out[yi] += xv * b[wi]; /* b = w */
                else
                  out[wi] += xv * a[yi]; /* a = g */
              }
            }
      }
}

/* The buffers of one im2col pass: col [K, chunk*OH*OW] for a chunk of
 * images and one group, and beside it rows [Og, chunk*OH*OW] for the
 * chunk's rows of y or g. */
typedef struct conv_work {
  int64_t cg, og, k, plane, chunk;
  modelc_rt_real *col, *rows;
} conv_work;

static int conv_work_alloc(conv_work *w, const modelc_rt_conv *p) {
  w->cg = p->c / p->groups, w->og = p->o / p->groups, w->k = w->cg * p->kh * p->kw;
  w->plane = p->oh * p->ow;
  w->chunk = conv_chunk(p, w->k);
  w->col = malloc((size_t)((w->k + w->og) * w->chunk * w->plane) * sizeof *w->col);
  w->rows = w->col ? w->col + w->k * w->chunk * w->plane : NULL;
  return w->col ? 0 : -1;
}

/* Images in the chunk starting at n0. */
static int64_t conv_batch(const modelc_rt_conv *p, const conv_work *w, int64_t n0) {
  return p->n - n0 < w->chunk ? p->n - n0 : w->chunk;
}

/* g_g's rows of images [n0, n0+nb) side by side: gcat [Og, nb*OH*OW]. */
static void conv_gather_rows(modelc_rt_real *gcat, const modelc_rt_real *g, int64_t n0, int64_t nb,
                             int64_t c0, int64_t og, const modelc_rt_conv *p) {
  int64_t plane = p->oh * p->ow, ld = nb * plane;
  CONV_OMP("omp parallel for if(nb * og * plane >= CONV_PARALLEL_MIN)")
  for (int64_t item = 0; item < nb * og; item++) {
    int64_t i = item / og, oc = item % og;
    memcpy(gcat + oc * ld + i * plane, g + ((n0 + i) * p->o + c0 + oc) * plane,
           (size_t)plane * sizeof *gcat);
  }
}

/* The inverse: ycat [Og, nb*OH*OW] into y's channels [c0, c0+og). */
static void conv_scatter_rows(modelc_rt_real *y, const modelc_rt_real *ycat, int64_t n0, int64_t nb,
                              int64_t c0, int64_t og, const modelc_rt_conv *p) {
  int64_t plane = p->oh * p->ow, ld = nb * plane;
  CONV_OMP("omp parallel for if(nb * og * plane >= CONV_PARALLEL_MIN)")
  for (int64_t item = 0; item < nb * og; item++) {
    int64_t i = item / og, oc = item % og;
    memcpy(y + ((n0 + i) * p->o + c0 + oc) * plane, ycat + oc * ld + i * plane,
           (size_t)plane * sizeof *y);
  }
}

/* The forward through im2col: per chunk of images, one GEMM ycat_g [Og,
 * nb*OH*OW] = w_g [Og, K] col (one wide product instead of nb narrow
 * ones), then ycat's rows into y. Returns 0, or -1 when col could not be
 * allocated. */
static int conv_forward(modelc_rt_real *y, const conv_src *s, const modelc_rt_real *w,
                        const modelc_rt_conv *p) {
  conv_work c;
  if (conv_work_alloc(&c, p) != 0) return -1;
  for (int64_t n0 = 0; n0 < p->n; n0 += c.chunk) {
    int64_t nb = conv_batch(p, &c, n0), ld = nb * c.plane;
    for (int64_t g = 0; g < p->groups; g++) {
      conv_im2col(c.col, s, n0, nb, g * c.cg, c.cg, p);
      modelc_rt_gemm(0, 0, c.og, ld, c.k, 1.0f, w + g * c.og * c.k, c.k, c.col, ld, 0.0f, c.rows, ld);
      conv_scatter_rows(y, c.rows, n0, nb, g * c.og, c.og, p);
    }
  }
  free(c.col);
  return 0;
}

/* dx holds input channels [c_first, c_first + cx), stored at 1/up of the
 * input's height and width: per chunk and group, the channels it shares
 * with that range, dcol [rows, nb*OH*OW] = (the matching columns of
 * w_g)^T gcat in one GEMM, then col2im. Returns -1 when col could not be
 * allocated. */
static int conv_grad_input_into(modelc_rt_real *dx, int64_t c_first, int64_t cx, int64_t up,
                                const modelc_rt_real *g, const modelc_rt_real *w,
                                const modelc_rt_conv *p) {
  conv_work c;
  if (conv_work_alloc(&c, p) != 0) return -1;
  int64_t taps = p->kh * p->kw, in_plane = (p->h / up) * (p->w / up);
  for (int64_t n0 = 0; n0 < p->n; n0 += c.chunk) {
    int64_t nb = conv_batch(p, &c, n0), ld = nb * c.plane;
    for (int64_t gr = 0; gr < p->groups; gr++) {
      int64_t lo = conv_max(gr * c.cg, c_first), hi = conv_min((gr + 1) * c.cg, c_first + cx);
      if (lo >= hi) continue;
      int64_t rows = (hi - lo) * taps, koff = (lo - gr * c.cg) * taps;
      conv_gather_rows(c.rows, g, n0, nb, gr * c.og, c.og, p);
      modelc_rt_gemm(1, 0, rows, ld, c.og, 1.0f, w + gr * c.og * c.k + koff, c.k, c.rows, ld, 0.0f,
                     c.col, ld);
      conv_col2im(dx + n0 * cx * in_plane, c.col, nb, lo - c_first, hi - lo, cx, up, p);
    }
  }
  free(c.col);
  return 0;
}

/* dw_g [Og, K] = sum over chunks of gcat [Og, nb*OH*OW] col^T: a chunk of
 * images is one GEMM, g_g's rows gathered next to col. Returns -1 when
 * col could not be allocated. */
static int conv_grad_weight_from(modelc_rt_real *dw, const conv_src *s, const modelc_rt_real *g,
                                 const modelc_rt_conv *p) {
  conv_work c;
  if (conv_work_alloc(&c, p) != 0) return -1;
  memset(dw, 0, (size_t)(p->o * c.k) * sizeof *dw);
  for (int64_t n0 = 0; n0 < p->n; n0 += c.chunk) {
    int64_t nb = conv_batch(p, &c, n0), ld = nb * c.plane;
    for (int64_t gr = 0; gr < p->groups; gr++) {
      conv_im2col(c.col, s, n0, nb, gr * c.cg, c.cg, p);
      conv_gather_rows(c.rows, g, n0, nb, gr * c.og, c.og, p);
      modelc_rt_gemm(0, 1, c.og, c.k, ld, 1.0f, c.rows, ld, c.col, ld, 1.0f, dw + gr * c.og * c.k, c.k);
    }
  }
  free(c.col);
  return 0;
}

/* y [N,O,OH,OW] = x [N,C,H,W] (*) w [O,C/groups,KH,KW]. */
void modelc_rt_conv2d(modelc_rt_real *y, const modelc_rt_real *x, const modelc_rt_real *w,
                      const modelc_rt_conv *p) {
  int64_t cg = p->c / p->groups, og = p->o / p->groups, k = cg * p->kh * p->kw;
  int64_t plane = p->oh * p->ow, in_plane = p->h * p->w;
  if (conv_is_pointwise(p)) { /* y_g [Og, H*W] = w_g [Og, Cg] x_g [Cg, H*W] */
    for (int64_t n = 0; n < p->n; n++)
      for (int64_t g = 0; g < p->groups; g++)
        modelc_rt_gemm(0, 0, og, plane, k, 1.0f, w + g * og * k, k,
                       x + (n * p->c + g * cg) * in_plane, plane, 0.0f,
                       y + (n * p->o + g * og) * plane, plane);
    return;
  }
  conv_src s = conv_single(x, p);
  if (conv_forward(y, &s, w, p) != 0) conv_direct(y, &s, NULL, w, p, 0, 0, 0, 1);
}

/* dx [N,C,H,W] from g [N,O,OH,OW] and w [O,C/groups,KH,KW]. */
void modelc_rt_conv2d_grad_input(modelc_rt_real *dx, const modelc_rt_real *g,
                                 const modelc_rt_real *w, const modelc_rt_conv *p) {
  int64_t cg = p->c / p->groups, og = p->o / p->groups, k = cg * p->kh * p->kw;
  int64_t plane = p->oh * p->ow, in_plane = p->h * p->w;
  if (conv_is_pointwise(p)) { /* dx_g [Cg, H*W] = w_g^T [Cg, Og] g_g [Og, H*W] */
    for (int64_t n = 0; n < p->n; n++)
      for (int64_t gr = 0; gr < p->groups; gr++)
        modelc_rt_gemm(1, 0, k, plane, og, 1.0f, w + gr * og * k, k,
                       g + (n * p->o + gr * og) * plane, plane, 0.0f,
                       dx + (n * p->c + gr * cg) * in_plane, plane);
    return;
  }
  if (conv_grad_input_into(dx, 0, p->c, 1, g, w, p) != 0) conv_direct(dx, NULL, g, w, p, 1, 0, p->c, 1);
}

/* dw [O,C/groups,KH,KW] = sum over images of g_g col^T. */
void modelc_rt_conv2d_grad_weight(modelc_rt_real *dw, const modelc_rt_real *x,
                                  const modelc_rt_real *g, const modelc_rt_conv *p) {
  int64_t cg = p->c / p->groups, og = p->o / p->groups, k = cg * p->kh * p->kw;
  int64_t plane = p->oh * p->ow, in_plane = p->h * p->w;
  if (conv_is_pointwise(p)) { /* dw_g [Og, Cg] += g_g [Og, H*W] x_g^T [H*W, Cg] */
    memset(dw, 0, (size_t)(p->o * k) * sizeof *dw);
    for (int64_t n = 0; n < p->n; n++)
      for (int64_t gr = 0; gr < p->groups; gr++)
        modelc_rt_gemm(0, 1, og, k, plane, 1.0f, g + (n * p->o + gr * og) * plane, plane,
                       x + (n * p->c + gr * cg) * in_plane, plane, 1.0f, dw + gr * og * k, k);
    return;
  }
  conv_src s = conv_single(x, p);
  if (conv_grad_weight_from(dw, &s, g, p) != 0) conv_direct(dw, &s, g, NULL, p, 2, 0, 0, 1);
}

/* ---- conv_concat: conv over concat(upsample(x_i)) read in place ---- */

static conv_src conv_parts(const modelc_rt_conv_cat *q, const modelc_rt_real *x0,
                           const modelc_rt_real *x1, const modelc_rt_real *x2) {
  conv_src s = {.parts = (int)q->parts};
  const modelc_rt_real *xs[MODELC_RT_CONV_PARTS] = {x0, x1, x2};
  for (int i = 0; i < s.parts; i++) s.x[i] = xs[i], s.c[i] = q->channels[i], s.up[i] = q->up[i];
  return s;
}

void modelc_rt_conv2d_cat(modelc_rt_real *y, const modelc_rt_real *w, const modelc_rt_conv_cat *q,
                          const modelc_rt_real *x0, const modelc_rt_real *x1,
                          const modelc_rt_real *x2) {
  conv_src s = conv_parts(q, x0, x1, x2);
  if (conv_forward(y, &s, w, &q->conv) != 0) conv_direct(y, &s, NULL, w, &q->conv, 0, 0, 0, 1);
}

void modelc_rt_conv2d_cat_grad_input(modelc_rt_real *dx, const modelc_rt_real *g,
                                     const modelc_rt_real *w, const modelc_rt_conv_cat *q,
                                     int64_t part) {
  const modelc_rt_conv *p = &q->conv;
  int64_t first = 0;
  for (int64_t i = 0; i < part; i++) first += q->channels[i];
  int64_t cx = q->channels[part], up = q->up[part];
  if (conv_grad_input_into(dx, first, cx, up, g, w, p) != 0)
    conv_direct(dx, NULL, g, w, p, 1, first, cx, up);
}

void modelc_rt_conv2d_cat_grad_weight(modelc_rt_real *dw, const modelc_rt_real *g,
                                      const modelc_rt_conv_cat *q, const modelc_rt_real *x0,
                                      const modelc_rt_real *x1, const modelc_rt_real *x2) {
  conv_src s = conv_parts(q, x0, x1, x2);
  if (conv_grad_weight_from(dw, &s, g, &q->conv) != 0)
    conv_direct(dw, &s, g, NULL, &q->conv, 2, 0, 0, 1);
}

/* ---- pooling ---- */

/* The window of output (oy, ox) clipped to the input: rows [*h0, *h1),
 * columns [*w0, *w1). */
static void conv_pool_window(const modelc_rt_pool *p, int64_t oy, int64_t ox, int64_t *h0,
                             int64_t *h1, int64_t *w0, int64_t *w1) {
  int64_t hs = oy * p->stride_h - p->pad_h, ws = ox * p->stride_w - p->pad_w;
  *h0 = conv_max(hs, 0);
  *h1 = conv_min(hs + p->kh, p->h);
  *w0 = conv_max(ws, 0);
  *w1 = conv_min(ws + p->kw, p->w);
}

/* Index in the plane of the max of the window, PyTorch's rule: scan in
 * row-major order, take v when v > max or v is NaN (ties keep the first,
 * NaN the last); -1 for a window with no input in it. */
static int64_t conv_pool_argmax(const modelc_rt_real *xc, const modelc_rt_pool *p, int64_t oy,
                                int64_t ox) {
  int64_t h0, h1, w0, w1;
  conv_pool_window(p, oy, ox, &h0, &h1, &w0, &w1);
  if (h0 >= h1 || w0 >= w1) return -1;
  int64_t at = h0 * p->w + w0;
  modelc_rt_real mx = -INFINITY;
  for (int64_t iy = h0; iy < h1; iy++)
    for (int64_t ix = w0; ix < w1; ix++) {
      modelc_rt_real v = xc[iy * p->w + ix];
      if (v > mx || v != v) {
        mx = v;
        at = iy * p->w + ix;
      }
    }
  return at;
}

/* y [N,C,OH,OW] = max of x [N,C,H,W] over each window; padding is -inf. */
void modelc_rt_maxpool2d(modelc_rt_real *y, const modelc_rt_real *x, const modelc_rt_pool *p) {
  int64_t planes = p->n * p->c;
  CONV_OMP("omp parallel for if(planes * p->h * p->w >= CONV_PARALLEL_MIN)")
  for (int64_t pl = 0; pl < planes; pl++) {
    const modelc_rt_real *xc = x + pl * p->h * p->w;
    modelc_rt_real *yc = y + pl * p->oh * p->ow;
    for (int64_t oy = 0; oy < p->oh; oy++)
      for (int64_t ox = 0; ox < p->ow; ox++) {
        int64_t at = conv_pool_argmax(xc, p, oy, ox);
        yc[oy * p->ow + ox] = at < 0 ? -INFINITY : xc[at];
      }
  }
}

/* dx [N,C,H,W] = g [N,C,OH,OW] summed at each window's argmax. */
void modelc_rt_maxpool2d_grad(modelc_rt_real *dx, const modelc_rt_real *x, const modelc_rt_real *g,
                              const modelc_rt_pool *p) {
  int64_t planes = p->n * p->c;
  CONV_OMP("omp parallel for if(planes * p->h * p->w >= CONV_PARALLEL_MIN)")
  for (int64_t pl = 0; pl < planes; pl++) {
    const modelc_rt_real *xc = x + pl * p->h * p->w;
    const modelc_rt_real *gc = g + pl * p->oh * p->ow;
    modelc_rt_real *dxc = dx + pl * p->h * p->w;
    memset(dxc, 0, (size_t)(p->h * p->w) * sizeof *dxc);
    for (int64_t oy = 0; oy < p->oh; oy++)
      for (int64_t ox = 0; ox < p->ow; ox++) {
        int64_t at = conv_pool_argmax(xc, p, oy, ox);
        if (at >= 0) dxc[at] += gc[oy * p->ow + ox];
      }
  }
}

/* PyTorch's divisor with count_include_pad: the window clipped to the
 * padded input (not to the input). */
static modelc_rt_real conv_pool_divisor(const modelc_rt_pool *p, int64_t oy, int64_t ox) {
  int64_t hs = oy * p->stride_h - p->pad_h, ws = ox * p->stride_w - p->pad_w;
  int64_t he = conv_min(hs + p->kh, p->h + p->pad_h), we = conv_min(ws + p->kw, p->w + p->pad_w);
  return (modelc_rt_real)((he - hs) * (we - ws));
}

/* y [N,C,OH,OW] = mean of x over each window, padding counted as 0. */
void modelc_rt_avgpool2d(modelc_rt_real *y, const modelc_rt_real *x, const modelc_rt_pool *p) {
  int64_t planes = p->n * p->c;
  CONV_OMP("omp parallel for if(planes * p->h * p->w >= CONV_PARALLEL_MIN)")
  for (int64_t pl = 0; pl < planes; pl++) {
    const modelc_rt_real *xc = x + pl * p->h * p->w;
    modelc_rt_real *yc = y + pl * p->oh * p->ow;
    for (int64_t oy = 0; oy < p->oh; oy++)
      for (int64_t ox = 0; ox < p->ow; ox++) {
        int64_t h0, h1, w0, w1;
        conv_pool_window(p, oy, ox, &h0, &h1, &w0, &w1);
        modelc_rt_real sum = 0.0f;
        for (int64_t iy = h0; iy < h1; iy++)
          for (int64_t ix = w0; ix < w1; ix++) sum += xc[iy * p->w + ix];
        yc[oy * p->ow + ox] = sum / conv_pool_divisor(p, oy, ox);
      }
  }
}

/* dx [N,C,H,W] = g [N,C,OH,OW] / divisor spread over each window. */
void modelc_rt_avgpool2d_grad(modelc_rt_real *dx, const modelc_rt_real *g,
                              const modelc_rt_pool *p) {
  int64_t planes = p->n * p->c;
  CONV_OMP("omp parallel for if(planes * p->h * p->w >= CONV_PARALLEL_MIN)")
  for (int64_t pl = 0; pl < planes; pl++) {
    const modelc_rt_real *gc = g + pl * p->oh * p->ow;
    modelc_rt_real *dxc = dx + pl * p->h * p->w;
    memset(dxc, 0, (size_t)(p->h * p->w) * sizeof *dxc);
    for (int64_t oy = 0; oy < p->oh; oy++)
      for (int64_t ox = 0; ox < p->ow; ox++) {
        int64_t h0, h1, w0, w1;
        conv_pool_window(p, oy, ox, &h0, &h1, &w0, &w1);
        modelc_rt_real share = gc[oy * p->ow + ox] / conv_pool_divisor(p, oy, ox);
        for (int64_t iy = h0; iy < h1; iy++)
          for (int64_t ix = w0; ix < w1; ix++) dxc[iy * p->w + ix] += share;
      }
  }
}

/* ---- upsampling by an integer scale ---- */

/* y [planes, H*s, W*s]: y[i, j] = x[i/s, j/s]. */
void modelc_rt_upsample_nearest(modelc_rt_real *y, const modelc_rt_real *x, int64_t planes,
                                int64_t h, int64_t w, int64_t scale) {
  int64_t ow = w * scale, oh = h * scale;
  CONV_OMP("omp parallel for if(planes * oh * ow >= CONV_PARALLEL_MIN)")
  for (int64_t pl = 0; pl < planes; pl++)
    for (int64_t oy = 0; oy < oh; oy++) {
      const modelc_rt_real *src = x + (pl * h + oy / scale) * w;
      modelc_rt_real *dst = y + (pl * oh + oy) * ow;
      for (int64_t ox = 0; ox < ow; ox++) dst[ox] = src[ox / scale];
    }
}

/* dx [planes, H, W] = sums of g [planes, H*s, W*s] over s x s blocks. */
void modelc_rt_upsample_nearest_grad(modelc_rt_real *dx, const modelc_rt_real *g, int64_t planes,
                                     int64_t h, int64_t w, int64_t scale) {
  int64_t ow = w * scale, oh = h * scale;
  CONV_OMP("omp parallel for if(planes * oh * ow >= CONV_PARALLEL_MIN)")
  for (int64_t pl = 0; pl < planes; pl++) {
    modelc_rt_real *dst = dx + pl * h * w;
    memset(dst, 0, (size_t)(h * w) * sizeof *dst);
    for (int64_t oy = 0; oy < oh; oy++) {
      const modelc_rt_real *src = g + (pl * oh + oy) * ow;
      modelc_rt_real *d = dst + oy / scale * w;
      for (int64_t ox = 0; ox < ow; ox++) d[ox / scale] += src[ox];
    }
  }
}

/* Source taps of output index `o` along a dim of `size` inputs, as
 * PyTorch computes them for align_corners=false with a given scale:
 * src = max((1/s) (o + 0.5) - 0.5, 0) (1/s in modelc_rt_real, the rest in
 * double, rounded to modelc_rt_real), i0 = floor(src), i1 = min(i0 + 1, size -
 * 1), weights 1 - l and l with l = src - i0. */
typedef struct conv_taps {
  int64_t i0, i1;
  modelc_rt_real l0, l1;
} conv_taps;

static conv_taps conv_linear_taps(int64_t o, int64_t size, int64_t scale) {
  modelc_rt_real inv = (modelc_rt_real)(1.0 / (double)scale);
  modelc_rt_real src = (modelc_rt_real)((double)inv * ((double)o + 0.5) - 0.5);
  if (src < 0.0f) src = 0.0f;
  conv_taps t;
  t.i0 = (int64_t)src;
  if (t.i0 > size - 1) t.i0 = size - 1;
  t.i1 = t.i0 + (t.i0 < size - 1 ? 1 : 0);
  t.l1 = src - (modelc_rt_real)t.i0;
  if (t.l1 > 1.0f) t.l1 = 1.0f;
  t.l0 = 1.0f - t.l1;
  return t;
}

/* y [planes, H*s, W*s] bilinear from x [planes, H, W], align_corners=false. */
void modelc_rt_upsample_bilinear(modelc_rt_real *y, const modelc_rt_real *x, int64_t planes,
                                 int64_t h, int64_t w, int64_t scale) {
  int64_t ow = w * scale, oh = h * scale;
  CONV_OMP("omp parallel for if(planes * oh * ow >= CONV_PARALLEL_MIN)")
  for (int64_t pl = 0; pl < planes; pl++)
    for (int64_t oy = 0; oy < oh; oy++) {
      conv_taps ty = conv_linear_taps(oy, h, scale);
      const modelc_rt_real *r0 = x + (pl * h + ty.i0) * w, *r1 = x + (pl * h + ty.i1) * w;
      modelc_rt_real *dst = y + (pl * oh + oy) * ow;
      for (int64_t ox = 0; ox < ow; ox++) {
        conv_taps tx = conv_linear_taps(ox, w, scale);
        dst[ox] = ty.l0 * (tx.l0 * r0[tx.i0] + tx.l1 * r0[tx.i1]) +
                  ty.l1 * (tx.l0 * r1[tx.i0] + tx.l1 * r1[tx.i1]);
      }
    }
}

/* dx [planes, H, W]: each g [planes, H*s, W*s] value spread to its four
 * taps with the forward weights. */
void modelc_rt_upsample_bilinear_grad(modelc_rt_real *dx, const modelc_rt_real *g, int64_t planes,
                                      int64_t h, int64_t w, int64_t scale) {
  int64_t ow = w * scale, oh = h * scale;
  CONV_OMP("omp parallel for if(planes * oh * ow >= CONV_PARALLEL_MIN)")
  for (int64_t pl = 0; pl < planes; pl++) {
    modelc_rt_real *d = dx + pl * h * w;
    memset(d, 0, (size_t)(h * w) * sizeof *d);
    for (int64_t oy = 0; oy < oh; oy++) {
      conv_taps ty = conv_linear_taps(oy, h, scale);
      modelc_rt_real *r0 = d + ty.i0 * w, *r1 = d + ty.i1 * w;
      const modelc_rt_real *src = g + (pl * oh + oy) * ow;
      for (int64_t ox = 0; ox < ow; ox++) {
        conv_taps tx = conv_linear_taps(ox, w, scale);
        modelc_rt_real v = src[ox];
        r0[tx.i0] += ty.l0 * tx.l0 * v;
        r0[tx.i1] += ty.l0 * tx.l1 * v;
        r1[tx.i0] += ty.l1 * tx.l0 * v;
        r1[tx.i1] += ty.l1 * tx.l1 * v;
      }
    }
  }
}
