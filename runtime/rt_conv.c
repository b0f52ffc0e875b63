/* rt_conv.c: 2-D convolution, pooling and upsampling, NCHW, with their
 * gradients. All outputs are overwritten (gradients are not added to
 * what the buffer held).
 *
 * Convolution lowers to GEMM through im2col. For a chunk of nb images
 * and one group, col [K, nb*OH*OW] holds for every output pixel the K =
 * Cg*KH*KW input values its kernel window sees (0 in the padding);
 * col_i are image i's columns, Cg = C/groups, Og = O/groups. Then
 *   forward      y_g [Og, OH*OW] = w_g [Og, K] col_i           per image
 *   grad input   dcol_i [K, OH*OW] = w_g^T g_g, summed back onto dx
 *                (col2im)                                      per image
 *   grad weight  dw_g [Og, K] += gcat [Og, nb*OH*OW] col^T     per chunk
 * A 1x1 kernel with stride 1 and no padding needs no col: it is x.
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

/* col [cg*KH*KW, nb*OH*OW] (image i in columns i*OH*OW...) from channels
 * [c0, c0+cg) of x [nb, C, H, W]. */
static void conv_im2col(modelc_rt_real *col, const modelc_rt_real *x, int64_t nb, int64_t c0,
                        int64_t cg, const modelc_rt_conv *p) {
  int64_t rows = cg * p->kh * p->kw, plane = p->oh * p->ow, ld = nb * plane;
  CONV_OMP("omp parallel for if(nb * rows * plane >= CONV_PARALLEL_MIN)")
  for (int64_t item = 0; item < nb * rows; item++) {
    int64_t img = item / rows, row = item % rows;
    int64_t c = row / (p->kh * p->kw), i = row / p->kw % p->kh, j = row % p->kw;
    const modelc_rt_real *xc = x + (img * p->c + c0 + c) * p->h * p->w;
    modelc_rt_real *dst = col + row * ld + img * plane;
    int64_t off_h = i * p->dil_h - p->pad_h, off_w = j * p->dil_w - p->pad_w;
    int64_t ox_lo, ox_hi;
    conv_valid_range(p->ow, p->stride_w, off_w, p->w, &ox_lo, &ox_hi);
    for (int64_t oy = 0; oy < p->oh; oy++) {
      modelc_rt_real *d = dst + oy * p->ow;
      int64_t iy = oy * p->stride_h + off_h;
      if (iy < 0 || iy >= p->h) {
        memset(d, 0, (size_t)p->ow * sizeof *d);
        continue;
      }
      const modelc_rt_real *src = xc + iy * p->w + off_w;
      for (int64_t ox = 0; ox < ox_lo; ox++) d[ox] = 0.0f;
      if (p->stride_w == 1)
        memcpy(d + ox_lo, src + ox_lo, (size_t)(ox_hi - ox_lo) * sizeof *d);
      else
        for (int64_t ox = ox_lo; ox < ox_hi; ox++) d[ox] = src[ox * p->stride_w];
      for (int64_t ox = ox_hi; ox < p->ow; ox++) d[ox] = 0.0f;
    }
  }
}

/* Channels [c0, c0+cg) of dx [nb, C, H, W] = col [cg*KH*KW, nb*OH*OW]
 * summed back onto the inputs each entry came from (padding dropped).
 * (image, channel) pairs are independent. */
static void conv_col2im(modelc_rt_real *dx, const modelc_rt_real *col, int64_t nb, int64_t c0,
                        int64_t cg, const modelc_rt_conv *p) {
  int64_t plane = p->oh * p->ow, ld = nb * plane;
  CONV_OMP("omp parallel for if(nb * cg * p->kh * p->kw * plane >= CONV_PARALLEL_MIN)")
  for (int64_t item = 0; item < nb * cg; item++) {
    int64_t img = item / cg, c = item % cg;
    modelc_rt_real *dxc = dx + (img * p->c + c0 + c) * p->h * p->w;
    memset(dxc, 0, (size_t)(p->h * p->w) * sizeof *dxc);
    for (int64_t i = 0; i < p->kh; i++)
      for (int64_t j = 0; j < p->kw; j++) {
        const modelc_rt_real *src = col + ((c * p->kh + i) * p->kw + j) * ld + img * plane;
        int64_t off_h = i * p->dil_h - p->pad_h, off_w = j * p->dil_w - p->pad_w;
        int64_t ox_lo, ox_hi;
        conv_valid_range(p->ow, p->stride_w, off_w, p->w, &ox_lo, &ox_hi);
        for (int64_t oy = 0; oy < p->oh; oy++) {
          int64_t iy = oy * p->stride_h + off_h;
          if (iy < 0 || iy >= p->h) continue;
          modelc_rt_real *d = dxc + iy * p->w + off_w;
          const modelc_rt_real *s = src + oy * p->ow;
          for (int64_t ox = ox_lo; ox < ox_hi; ox++) d[ox * p->stride_w] += s[ox];
        }
      }
  }
}

/* Without memory for col: direct loops, slow but exact. `which` 0: y =
 * conv(x, w); 1: dx from g and w; 2: dw from x and g. */
static void conv_direct(modelc_rt_real *out, const modelc_rt_real *a, const modelc_rt_real *b,
                        const modelc_rt_conv *p, int which) {
  int64_t cg = p->c / p->groups, og = p->o / p->groups;
  int64_t n_out = which == 0   ? p->n * p->o * p->oh * p->ow
                  : which == 1 ? p->n * p->c * p->h * p->w
                               : p->o * cg * p->kh * p->kw;
  memset(out, 0, (size_t)n_out * sizeof *out);
  for (int64_t n = 0; n < p->n; n++)
    for (int64_t oc = 0; oc < p->o; oc++) {
      int64_t g = oc / og;
      for (int64_t c = 0; c < cg; c++)
        for (int64_t i = 0; i < p->kh; i++)
          for (int64_t j = 0; j < p->kw; j++)
            for (int64_t oy = 0; oy < p->oh; oy++) {
              int64_t iy = oy * p->stride_h - p->pad_h + i * p->dil_h;
              if (iy < 0 || iy >= p->h) continue;
              for (int64_t ox = 0; ox < p->ow; ox++) {
                int64_t ix = ox * p->stride_w - p->pad_w + j * p->dil_w;
                if (ix < 0 || ix >= p->w) continue;
                int64_t xi = ((n * p->c + g * cg + c) * p->h + iy) * p->w + ix;
                int64_t wi = ((oc * cg + c) * p->kh + i) * p->kw + j;
                int64_t yi = ((n * p->o + oc) * p->oh + oy) * p->ow + ox;
                if (which == 0)
                  out[yi] += a[xi] * b[wi]; /* a = x, b = w */
                else if (which == 1)
                  out[xi] += a[yi] * b[wi]; /* a = g, b = w */
                else
                  out[wi] += a[xi] * b[yi]; /* a = x, b = g */
              }
            }
    }
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
  int64_t chunk = conv_chunk(p, k);
  modelc_rt_real *col = malloc((size_t)(k * chunk * plane) * sizeof *col);
  if (!col) {
    conv_direct(y, x, w, p, 0);
    return;
  }
  for (int64_t n0 = 0; n0 < p->n; n0 += chunk) {
    int64_t nb = p->n - n0 < chunk ? p->n - n0 : chunk;
    for (int64_t g = 0; g < p->groups; g++) {
      conv_im2col(col, x + n0 * p->c * in_plane, nb, g * cg, cg, p);
      /* y_g [Og, OH*OW] = w_g [Og, K] col_i [K, OH*OW] */
      for (int64_t i = 0; i < nb; i++)
        modelc_rt_gemm(0, 0, og, plane, k, 1.0f, w + g * og * k, k, col + i * plane, nb * plane,
                       0.0f, y + ((n0 + i) * p->o + g * og) * plane, plane);
    }
  }
  free(col);
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
  int64_t chunk = conv_chunk(p, k);
  modelc_rt_real *col = malloc((size_t)(k * chunk * plane) * sizeof *col);
  if (!col) {
    conv_direct(dx, g, w, p, 1);
    return;
  }
  for (int64_t n0 = 0; n0 < p->n; n0 += chunk) {
    int64_t nb = p->n - n0 < chunk ? p->n - n0 : chunk;
    for (int64_t gr = 0; gr < p->groups; gr++) {
      /* dcol_i [K, OH*OW] = w_g^T [K, Og] g_g [Og, OH*OW] */
      for (int64_t i = 0; i < nb; i++)
        modelc_rt_gemm(1, 0, k, plane, og, 1.0f, w + gr * og * k, k,
                       g + ((n0 + i) * p->o + gr * og) * plane, plane, 0.0f, col + i * plane,
                       nb * plane);
      conv_col2im(dx + n0 * p->c * in_plane, col, nb, gr * cg, cg, p);
    }
  }
  free(col);
}

/* dw [O,C/groups,KH,KW] = sum over images of g_g col^T. */
void modelc_rt_conv2d_grad_weight(modelc_rt_real *dw, const modelc_rt_real *x,
                                  const modelc_rt_real *g, const modelc_rt_conv *p) {
  int64_t cg = p->c / p->groups, og = p->o / p->groups, k = cg * p->kh * p->kw;
  int64_t plane = p->oh * p->ow, in_plane = p->h * p->w;
  memset(dw, 0, (size_t)(p->o * k) * sizeof *dw);
  if (conv_is_pointwise(p)) { /* dw_g [Og, Cg] += g_g [Og, H*W] x_g^T [H*W, Cg] */
    for (int64_t n = 0; n < p->n; n++)
      for (int64_t gr = 0; gr < p->groups; gr++)
        modelc_rt_gemm(0, 1, og, k, plane, 1.0f, g + (n * p->o + gr * og) * plane, plane,
                       x + (n * p->c + gr * cg) * in_plane, plane, 1.0f, dw + gr * og * k, k);
    return;
  }
  /* A chunk of images is one GEMM with inner dim nb*OH*OW: col [K,
   * nb*OH*OW] and the matching g_g rows gathered into gcat [Og, nb*OH*OW]. */
  int64_t chunk = conv_chunk(p, k);
  modelc_rt_real *col = malloc((size_t)((k + og) * chunk * plane) * sizeof *col);
  if (!col) {
    conv_direct(dw, x, g, p, 2);
    return;
  }
  modelc_rt_real *gcat = col + k * chunk * plane;
  for (int64_t n0 = 0; n0 < p->n; n0 += chunk) {
    int64_t nb = p->n - n0 < chunk ? p->n - n0 : chunk, ld = nb * plane;
    for (int64_t gr = 0; gr < p->groups; gr++) {
      conv_im2col(col, x + n0 * p->c * in_plane, nb, gr * cg, cg, p);
      for (int64_t i = 0; i < nb; i++)
        for (int64_t oc = 0; oc < og; oc++)
          memcpy(gcat + oc * ld + i * plane, g + ((n0 + i) * p->o + gr * og + oc) * plane,
                 (size_t)plane * sizeof *gcat);
      modelc_rt_gemm(0, 1, og, k, ld, 1.0f, gcat, ld, col, ld, 1.0f, dw + gr * og * k, k);
    }
  }
  free(col);
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
