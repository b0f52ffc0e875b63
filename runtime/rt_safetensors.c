/* rt_safetensors.c: safetensors files, read with strict validation and
 * written atomically; whole-file read and atomic write for the data tools.
 *
 * The reader parses the JSON header directly against the format's schema
 * (an object of tensor entries and an optional `__metadata__` object of
 * strings), so nesting is at most three levels and nothing is built for
 * values the format does not allow: a value of the wrong kind is reported
 * as soon as it starts. Offsets in messages about invalid JSON are bytes
 * from the start of the header text (0-based).
 *
 * The writer produces what the Python package writes: tensors ordered by
 * dtype (I64, F64, F32, I32, BF16, F16, U8, the order that keeps every
 * tensor aligned to its element size), then by name in byte order; the
 * header lists them in that order and is padded with spaces to a multiple
 * of 8 bytes. Little-endian hosts only, as the format is little-endian. */
#include "modelc_rt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { ST_MAX_HEADER = 100000000 };


/* ---- whole files ---- */

int modelc_rt_read_file(const char *path, unsigned char **data, size_t *size, char *err,
                        size_t errlen) {
  *data = NULL;
  *size = 0;
  int fd = open(path, O_RDONLY);
  if (fd < 0) return modelc_rt_fail(err, errlen, "cannot read '%s': %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return modelc_rt_fail(err, errlen, "cannot read '%s': %s", path, strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return modelc_rt_fail(err, errlen, "cannot read '%s': %s", path,
                   S_ISDIR(st.st_mode) ? strerror(EISDIR) : "not a regular file");
  }
  size_t n = (size_t)st.st_size, got = 0;
  unsigned char *buf = malloc(n ? n : 1);
  if (!buf) {
    close(fd);
    return modelc_rt_fail(err, errlen, "cannot read '%s': out of memory (%zu bytes)", path, n);
  }
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int e = errno;
      free(buf);
      close(fd);
      return modelc_rt_fail(err, errlen, "cannot read '%s': %s", path, strerror(e));
    }
    if (r == 0) break;
    got += (size_t)r;
  }
  close(fd);
  if (got != n) {
    free(buf);
    return modelc_rt_fail(err, errlen, "cannot read '%s': the file shrank while being read", path);
  }
  *data = buf;
  *size = n;
  return 0;
}

static int st_write_all(int fd, const unsigned char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* fsync of the folder holding path, so that the rename is durable. File
 * systems that cannot sync a folder (EINVAL) are not an error. */
static int st_sync_parent(const char *path) {
  const char *slash = strrchr(path, '/');
  size_t len = slash ? (size_t)(slash - path) : 1;
  if (slash && len == 0) len = 1; /* "/x": the root */
  char *dir = malloc(len + 1);
  if (!dir) return 0;
  if (slash)
    memcpy(dir, path, len);
  else
    dir[0] = '.';
  dir[len] = '\0';
  int fd = open(dir, O_RDONLY);
  free(dir);
  if (fd < 0) return 0; /* nothing to sync through (no read permission) */
  int rc = fsync(fd);
  int e = errno;
  close(fd);
  if (rc != 0 && e != EINVAL && e != EROFS) {
    errno = e;
    return -1;
  }
  return 0;
}

int modelc_rt_write_file_atomic(const char *path, const void *const *parts, const size_t *sizes,
                                int count, char *err, size_t errlen) {
  size_t plen = strlen(path);
  char *tmp = malloc(plen + 32);
  if (!tmp) return modelc_rt_fail(err, errlen, "cannot write '%s': out of memory", path);
  snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
  if (fd < 0) {
    int e = errno;
    free(tmp);
    return modelc_rt_fail(err, errlen, "cannot write '%s': %s", path, strerror(e));
  }
  int ok = 1;
  for (int i = 0; ok && i < count; i++)
    if (sizes[i] && st_write_all(fd, parts[i], sizes[i]) != 0) ok = 0;
  if (ok && fsync(fd) != 0) ok = 0;
  int e = errno;
  if (close(fd) != 0 && ok) { /* NFS and others report late write errors here */
    ok = 0;
    e = errno;
  }
  if (ok && rename(tmp, path) != 0) {
    ok = 0;
    e = errno;
  }
  if (!ok) {
    unlink(tmp);
    free(tmp);
    return modelc_rt_fail(err, errlen, "cannot write '%s': %s", path, strerror(e));
  }
  free(tmp);
  if (st_sync_parent(path) != 0)
    return modelc_rt_fail(err, errlen, "cannot write '%s': syncing its folder: %s", path, strerror(errno));
  return 0;
}

/* ---- the header parser ---- */

typedef struct st_reader {
  const char *path;
  const unsigned char *text; /* the header, not NUL-terminated */
  size_t len, pos;
  char *pool; /* decoded strings, NUL-terminated; never longer than their JSON text */
  size_t pool_used;
  char *err;
  size_t errlen;
} st_reader;

typedef struct st_number {
  size_t at, len; /* the number's text in the header */
  int negative, integer, too_large;
  uint64_t value;
} st_number;

static int st_json_error(st_reader *r, size_t at, const char *what) {
  return modelc_rt_fail(r->err, r->errlen, "%s: invalid JSON in header at byte %zu: %s", r->path, at,
                 what);
}

static void st_skip_space(st_reader *r) {
  while (r->pos < r->len) {
    unsigned char c = r->text[r->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    r->pos++;
  }
}

static int st_peek(const st_reader *r) { return r->pos < r->len ? r->text[r->pos] : -1; }

static int st_starts(const st_reader *r, const char *word) {
  size_t n = strlen(word);
  return r->len - r->pos >= n && memcmp(r->text + r->pos, word, n) == 0;
}

/* Whether a JSON value starts at the cursor: a value of the wrong kind is
 * a schema error, anything else invalid JSON. */
static int st_at_value(const st_reader *r) {
  int c = st_peek(r);
  return c == '"' || c == '{' || c == '[' || c == '-' || (c >= '0' && c <= '9') ||
         st_starts(r, "true") || st_starts(r, "false") || st_starts(r, "null");
}

static int st_expect(st_reader *r, char c) {
  st_skip_space(r);
  if (st_peek(r) != (unsigned char)c) {
    char what[16];
    snprintf(what, sizeof what, "expected '%c'", c);
    return st_json_error(r, r->pos, what);
  }
  r->pos++;
  return 0;
}

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlong
 * forms, no surrogates, at most U+10FFFF), or 0. */
static size_t st_utf8_length(const unsigned char *s, size_t avail) {
  unsigned c = s[0];
  size_t k;
  uint32_t cp = 0, min = 0;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) {
    k = 2, cp = c & 0x1f, min = 0x80;
  } else if ((c & 0xf0) == 0xe0) {
    k = 3, cp = c & 0x0f, min = 0x800;
  } else if (c >= 0xf0 && c <= 0xf4) {
    k = 4, cp = c & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (avail < k) return 0;
  for (size_t i = 1; i < k; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    cp = cp << 6 | (s[i] & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return k;
}

static int st_hex4(const st_reader *r, size_t at, uint32_t *v) {
  if (at > r->len || r->len - at < 4) return -1;
  *v = 0;
  for (int i = 0; i < 4; i++) {
    int c = r->text[at + (size_t)i], d;
    if (c >= '0' && c <= '9')
      d = c - '0';
    else if (c >= 'a' && c <= 'f')
      d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
      d = c - 'A' + 10;
    else
      return -1;
    *v = *v << 4 | (uint32_t)d;
  }
  return 0;
}

static size_t st_utf8_encode(char *out, uint32_t cp) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xc0 | cp >> 6);
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xe0 | cp >> 12);
    out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
    out[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
  }
  out[0] = (char)(0xf0 | cp >> 18);
  out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
  out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
  out[3] = (char)(0x80 | (cp & 0x3f));
  return 4;
}

/* \uXXXX at the cursor (after the backslash and 'u'), with a following
 * low surrogate when it is a high one. */
static int st_unicode_escape(st_reader *r, size_t esc, uint32_t *cp) {
  if (st_hex4(r, r->pos, cp) != 0) return st_json_error(r, esc, "invalid \\u escape");
  r->pos += 4;
  if (*cp >= 0xdc00 && *cp <= 0xdfff)
    return st_json_error(r, esc, "unpaired surrogate in \\u escape");
  if (*cp < 0xd800 || *cp > 0xdbff) return 0;
  uint32_t low;
  if (!st_starts(r, "\\u") || st_hex4(r, r->pos + 2, &low) != 0 || low < 0xdc00 || low > 0xdfff)
    return st_json_error(r, esc, "unpaired surrogate in \\u escape");
  r->pos += 6;
  *cp = 0x10000 + ((*cp - 0xd800) << 10) + (low - 0xdc00);
  return 0;
}

/* The string at the cursor (which is at its '"'), decoded into the pool. */
static int st_parse_string(st_reader *r, const char **out, size_t *out_len) {
  size_t start = r->pos++;
  char *dst = r->pool + r->pool_used;
  size_t n = 0;
  for (;;) {
    if (r->pos >= r->len) return st_json_error(r, start, "unterminated string");
    unsigned char c = r->text[r->pos];
    if (c == '"') {
      r->pos++;
      break;
    }
    if (c < 0x20) return st_json_error(r, r->pos, "control character in string");
    if (c == '\\') {
      size_t esc = r->pos++;
      int e = st_peek(r);
      r->pos++;
      switch (e) {
      case '"': dst[n++] = '"'; break;
      case '\\': dst[n++] = '\\'; break;
      case '/': dst[n++] = '/'; break;
      case 'b': dst[n++] = '\b'; break;
      case 'f': dst[n++] = '\f'; break;
      case 'n': dst[n++] = '\n'; break;
      case 'r': dst[n++] = '\r'; break;
      case 't': dst[n++] = '\t'; break;
      case 'u': {
        uint32_t cp = 0;
        if (st_unicode_escape(r, esc, &cp) != 0) return -1;
        n += st_utf8_encode(dst + n, cp);
        break;
      }
      case -1: return st_json_error(r, start, "unterminated string");
      default: return st_json_error(r, esc, "invalid escape in string");
      }
      continue;
    }
    size_t k = st_utf8_length(r->text + r->pos, r->len - r->pos);
    if (k == 0) return st_json_error(r, r->pos, "invalid UTF-8 in string");
    memcpy(dst + n, r->text + r->pos, k);
    n += k;
    r->pos += k;
  }
  dst[n] = '\0';
  r->pool_used += n + 1;
  *out = dst;
  *out_len = n;
  return 0;
}

static int st_digit(int c) { return c >= '0' && c <= '9'; }

/* A JSON number at the cursor; integers are kept exactly up to 2^64 - 1. */
static int st_parse_number(st_reader *r, st_number *num) {
  memset(num, 0, sizeof *num);
  num->at = r->pos;
  num->integer = 1;
  if (st_peek(r) == '-') {
    num->negative = 1;
    r->pos++;
  }
  if (!st_digit(st_peek(r))) return st_json_error(r, num->at, "invalid number");
  if (st_peek(r) == '0') {
    r->pos++;
    if (st_digit(st_peek(r))) return st_json_error(r, num->at, "invalid number (leading zero)");
  } else {
    while (st_digit(st_peek(r))) {
      unsigned d = (unsigned)(st_peek(r) - '0');
      if (num->value > (UINT64_MAX - d) / 10) num->too_large = 1;
      num->value = num->value * 10 + d;
      r->pos++;
    }
  }
  if (st_peek(r) == '.') {
    num->integer = 0;
    r->pos++;
    if (!st_digit(st_peek(r))) return st_json_error(r, num->at, "invalid number");
    while (st_digit(st_peek(r))) r->pos++;
  }
  if (st_peek(r) == 'e' || st_peek(r) == 'E') {
    num->integer = 0;
    r->pos++;
    if (st_peek(r) == '+' || st_peek(r) == '-') r->pos++;
    if (!st_digit(st_peek(r))) return st_json_error(r, num->at, "invalid number");
    while (st_digit(st_peek(r))) r->pos++;
  }
  num->len = r->pos - num->at;
  return 0;
}

/* After an element of an array or object: 1 when another follows, 0 at
 * the closing bracket, -1 on an error. */
static int st_next_element(st_reader *r, char close) {
  st_skip_space(r);
  int c = st_peek(r);
  if (c == ',') {
    r->pos++;
    return 1;
  }
  if (c == close) {
    r->pos++;
    return 0;
  }
  return st_json_error(r, r->pos, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
}

/* An object's opening brace, and whether it is empty: 1 when members
 * follow, 0 when it was "{}", -1 on an error. */
static int st_open_object(st_reader *r) {
  r->pos++; /* '{' */
  st_skip_space(r);
  if (st_peek(r) == '}') {
    r->pos++;
    return 0;
  }
  return 1;
}

/* A member's key and colon. */
static int st_parse_key(st_reader *r, const char **key, size_t *key_len) {
  st_skip_space(r);
  if (st_peek(r) != '"') return st_json_error(r, r->pos, "expected a string key");
  if (st_parse_string(r, key, key_len) != 0) return -1;
  return st_expect(r, ':');
}

/* Something other than the value the format wants at the cursor: the
 * schema error `what` when it is a JSON value, invalid JSON otherwise. */
static int st_wrong_kind(st_reader *r, const char *tensor, const char *what) {
  if (!st_at_value(r)) return st_json_error(r, r->pos, "expected a value");
  if (tensor) return modelc_rt_fail(r->err, r->errlen, "%s: tensor '%s': %s", r->path, tensor, what);
  return modelc_rt_fail(r->err, r->errlen, "%s: %s", r->path, what);
}

/* `__metadata__`: an object of string values, accepted and ignored. */
static int st_parse_metadata(st_reader *r) {
  static const char *const what = "__metadata__ must be an object of string values";
  st_skip_space(r);
  if (st_peek(r) != '{') return st_wrong_kind(r, NULL, what);
  int more = st_open_object(r);
  while (more > 0) {
    const char *s;
    size_t n;
    if (st_parse_key(r, &s, &n) != 0) return -1;
    st_skip_space(r);
    if (st_peek(r) != '"') return st_wrong_kind(r, NULL, what);
    if (st_parse_string(r, &s, &n) != 0) return -1;
    more = st_next_element(r, '}');
  }
  return more;
}

/* An array of at most `max` non-negative integers up to `limit`, `what`
 * being the message for anything else; a count over max stops at the
 * first extra element with *count = max + 1. */
static int st_parse_integers(st_reader *r, const char *tensor, const char *key, const char *what,
                             uint64_t *values, int max, uint64_t limit, int *count) {
  *count = 0;
  st_skip_space(r);
  if (st_peek(r) != '[') return st_wrong_kind(r, tensor, what);
  r->pos++;
  st_skip_space(r);
  if (st_peek(r) == ']') {
    r->pos++;
    return 0;
  }
  for (;;) {
    st_skip_space(r);
    int c = st_peek(r);
    if (c != '-' && !st_digit(c)) return st_wrong_kind(r, tensor, what);
    st_number num;
    if (st_parse_number(r, &num) != 0) return -1;
    if (!num.integer || (num.negative && num.value != 0))
      return modelc_rt_fail(r->err, r->errlen, "%s: tensor '%s': %s", r->path, tensor, what);
    if (num.too_large || num.value > limit)
      return modelc_rt_fail(r->err, r->errlen, "%s: tensor '%s': %s value %.*s is too large", r->path,
                     tensor, key, (int)num.len, (const char *)r->text + num.at);
    if (*count == max) {
      *count = max + 1;
      return 0;
    }
    values[(*count)++] = num.value;
    int more = st_next_element(r, ']');
    if (more <= 0) return more;
  }
}

static void st_format_shape(char *buf, size_t n, const int64_t *shape, int rank) {
  size_t used = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < rank && used < n; i++)
    used += (size_t)snprintf(buf + used, n - used, "%s%lld", i ? "," : "", (long long)shape[i]);
  if (used < n) snprintf(buf + used, n - used, "]");
}

static int st_dtype_from_name(const char *name, modelc_rt_dtype *dtype) {
  for (int d = MODELC_RT_F32; d <= MODELC_RT_U8; d++) {
    if (strcmp(name, modelc_rt_dtype_name((modelc_rt_dtype)d)) == 0) {
      *dtype = (modelc_rt_dtype)d;
      return 0;
    }
  }
  return -1;
}

/* Byte count of dtype x shape, or -1 when it does not fit in 64 bits. */
static int st_byte_count(modelc_rt_dtype dtype, const int64_t *shape, int rank, uint64_t *bytes) {
  uint64_t n = modelc_rt_dtype_size(dtype);
  for (int i = 0; i < rank; i++) {
    uint64_t d = (uint64_t)shape[i];
    if (d != 0 && n > UINT64_MAX / d) return -1;
    n *= d;
  }
  *bytes = n;
  return 0;
}

enum { ST_HAS_DTYPE = 1, ST_HAS_SHAPE = 2, ST_HAS_OFFSETS = 4 };

/* The members of one tensor entry, in any order, each exactly once. */
static int st_parse_entry_members(st_reader *r, modelc_rt_st_tensor *t, uint64_t offsets[2],
                                  int *seen) {
  const char *name = t->name;
  int more = st_open_object(r);
  while (more > 0) {
    const char *key, *s;
    size_t key_len, n;
    if (st_parse_key(r, &key, &key_len) != 0) return -1;
    int which = strcmp(key, "dtype") == 0          ? ST_HAS_DTYPE
                : strcmp(key, "shape") == 0        ? ST_HAS_SHAPE
                : strcmp(key, "data_offsets") == 0 ? ST_HAS_OFFSETS
                                                   : 0;
    if (!which || strlen(key) != key_len)
      return modelc_rt_fail(r->err, r->errlen, "%s: tensor '%s': unexpected key '%s'", r->path, name, key);
    if (*seen & which)
      return modelc_rt_fail(r->err, r->errlen, "%s: tensor '%s': duplicate key '%s'", r->path, name, key);
    *seen |= which;
    st_skip_space(r);
    if (which == ST_HAS_DTYPE) {
      if (st_peek(r) != '"') return st_wrong_kind(r, name, "dtype must be a string");
      if (st_parse_string(r, &s, &n) != 0) return -1;
      if (strlen(s) != n || st_dtype_from_name(s, &t->dtype) != 0)
        return modelc_rt_fail(r->err, r->errlen,
                       "%s: tensor '%s': unknown dtype '%s' (expected F32, BF16, F16, F64, I32, "
                       "I64 or U8)",
                       r->path, name, s);
    } else if (which == ST_HAS_SHAPE) {
      uint64_t dims[MODELC_RT_MAX_RANK];
      if (st_parse_integers(r, name, "shape", "shape must be an array of non-negative integers",
                            dims, MODELC_RT_MAX_RANK, INT64_MAX, &t->rank) != 0)
        return -1;
      if (t->rank > MODELC_RT_MAX_RANK)
        return modelc_rt_fail(r->err, r->errlen, "%s: tensor '%s': shape has more than %d dimensions",
                       r->path, name, MODELC_RT_MAX_RANK);
      for (int i = 0; i < t->rank; i++) t->shape[i] = (int64_t)dims[i];
    } else {
      static const char *const what = "data_offsets must be an array of two non-negative integers";
      int count;
      if (st_parse_integers(r, name, "data_offsets", what, offsets, 2, UINT64_MAX, &count) != 0)
        return -1;
      if (count != 2) return modelc_rt_fail(r->err, r->errlen, "%s: tensor '%s': %s", r->path, name, what);
    }
    more = st_next_element(r, '}');
  }
  return more;
}

/* One tensor entry; t->name is already set. Offsets are checked against
 * data_len, the byte count after the header. */
static int st_parse_entry(st_reader *r, modelc_rt_st_tensor *t, size_t data_len) {
  const char *name = t->name;
  st_skip_space(r);
  if (st_peek(r) != '{') return st_wrong_kind(r, name, "entry must be an object");
  uint64_t offsets[2] = {0, 0};
  int seen = 0;
  if (st_parse_entry_members(r, t, offsets, &seen) != 0) return -1;
  static const char *const keys[] = {"dtype", "shape", "data_offsets"};
  for (int i = 0; i < 3; i++)
    if (!(seen & (1 << i)))
      return modelc_rt_fail(r->err, r->errlen, "%s: tensor '%s': missing key '%s'", r->path, name,
                     keys[i]);
  uint64_t begin = offsets[0], end = offsets[1], need;
  char shape[8 * 24];
  st_format_shape(shape, sizeof shape, t->shape, t->rank);
  if (begin > end)
    return modelc_rt_fail(r->err, r->errlen,
                   "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin", r->path,
                   name, (unsigned long long)begin, (unsigned long long)end);
  if (end > data_len)
    return modelc_rt_fail(r->err, r->errlen,
                   "%s: tensor '%s': data_offsets [%llu, %llu] run past the end of the data (%zu "
                   "bytes)",
                   r->path, name, (unsigned long long)begin, (unsigned long long)end, data_len);
  if (st_byte_count(t->dtype, t->shape, t->rank, &need) != 0)
    return modelc_rt_fail(r->err, r->errlen, "%s: tensor '%s': %s %s has too many bytes to address",
                   r->path, name, modelc_rt_dtype_name(t->dtype), shape);
  if (end - begin != need)
    return modelc_rt_fail(
        r->err, r->errlen,
        "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but %s %s needs %llu", r->path,
        name, (unsigned long long)begin, (unsigned long long)end, (unsigned long long)(end - begin),
        modelc_rt_dtype_name(t->dtype), shape, (unsigned long long)need);
  t->offset = (size_t)begin;
  t->nbytes = (size_t)need;
  return 0;
}

static int st_add_tensor(st_reader *r, modelc_rt_st_file *f, int *cap, const char *name,
                         size_t name_len) {
  if (strlen(name) != name_len)
    return modelc_rt_fail(r->err, r->errlen, "%s: tensor '%s...' has a NUL character in its name", r->path,
                   name);
  if (f->count == *cap) {
    int grown = *cap ? 2 * *cap : 16;
    modelc_rt_st_tensor *more = realloc(f->tensors, (size_t)grown * sizeof *more);
    if (!more) return modelc_rt_fail(r->err, r->errlen, "%s: out of memory", r->path);
    f->tensors = more;
    *cap = grown;
  }
  modelc_rt_st_tensor *t = &f->tensors[f->count];
  memset(t, 0, sizeof *t);
  t->name = malloc(name_len + 1);
  if (!t->name) return modelc_rt_fail(r->err, r->errlen, "%s: out of memory", r->path);
  memcpy(t->name, name, name_len + 1);
  f->count++;
  return 0;
}

static int st_parse_header(st_reader *r, modelc_rt_st_file *f) {
  st_skip_space(r);
  if (st_peek(r) != '{') {
    if (st_at_value(r))
      return modelc_rt_fail(r->err, r->errlen, "%s: header is not a JSON object", r->path);
    return st_json_error(r, r->pos, "expected '{'");
  }
  size_t data_len = f->size - f->data_start;
  int cap = 0, has_metadata = 0;
  int more = st_open_object(r);
  while (more > 0) {
    const char *key;
    size_t key_len;
    if (st_parse_key(r, &key, &key_len) != 0) return -1;
    if (strcmp(key, "__metadata__") == 0 && strlen(key) == key_len) {
      if (has_metadata)
        return modelc_rt_fail(r->err, r->errlen, "%s: duplicate key '__metadata__'", r->path);
      has_metadata = 1;
      if (st_parse_metadata(r) != 0) return -1;
    } else {
      if (st_add_tensor(r, f, &cap, key, key_len) != 0) return -1;
      if (st_parse_entry(r, &f->tensors[f->count - 1], data_len) != 0) return -1;
    }
    more = st_next_element(r, '}');
  }
  if (more < 0) return -1;
  st_skip_space(r);
  if (r->pos != r->len) return st_json_error(r, r->pos, "unexpected data after the header object");
  return 0;
}

/* ---- whole-file checks after parsing ---- */

static int st_compare_names(const void *a, const void *b) {
  const modelc_rt_st_tensor *x = *(const modelc_rt_st_tensor *const *)a;
  const modelc_rt_st_tensor *y = *(const modelc_rt_st_tensor *const *)b;
  return strcmp(x->name, y->name);
}

typedef struct st_range {
  size_t begin, end;
  int index;
} st_range;

static int st_compare_ranges(const void *a, const void *b) {
  const st_range *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return x->index - y->index;
}

/* Unique names, and no two non-empty byte ranges sharing a byte. Ranges
 * in any order, and gaps, are accepted. */
static int st_check_tensors(const modelc_rt_st_file *f, char *err, size_t errlen) {
  if (f->count < 2) return 0;
  size_t n = (size_t)f->count;
  const modelc_rt_st_tensor **by_name = malloc(n * sizeof *by_name);
  st_range *ranges = malloc(n * sizeof *ranges);
  int rc = 0;
  if (!by_name || !ranges) {
    rc = modelc_rt_fail(err, errlen, "%s: out of memory", f->path);
    goto done;
  }
  for (size_t i = 0; i < n; i++) by_name[i] = &f->tensors[i];
  qsort(by_name, n, sizeof *by_name, st_compare_names);
  for (size_t i = 1; i < n; i++) {
    if (strcmp(by_name[i - 1]->name, by_name[i]->name) == 0) {
      rc = modelc_rt_fail(err, errlen, "%s: duplicate tensor '%s'", f->path, by_name[i]->name);
      goto done;
    }
  }
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    const modelc_rt_st_tensor *t = &f->tensors[i];
    if (t->nbytes) ranges[m++] = (st_range){t->offset, t->offset + t->nbytes, (int)i};
  }
  qsort(ranges, m, sizeof *ranges, st_compare_ranges);
  for (size_t i = 1; i < m; i++) {
    const st_range *a = &ranges[i - 1], *b = &ranges[i];
    if (b->begin < a->end) {
      size_t base = f->data_start;
      rc = modelc_rt_fail(err, errlen,
                   "%s: tensors '%s' and '%s' overlap: data_offsets [%zu, %zu] and [%zu, %zu]",
                   f->path, f->tensors[a->index].name, f->tensors[b->index].name, a->begin - base,
                   a->end - base, b->begin - base, b->end - base);
      goto done;
    }
  }
done:
  free(by_name);
  free(ranges);
  return rc;
}

/* ---- the public reader ---- */

int modelc_rt_st_open(modelc_rt_st_file *f, const char *path, char *err, size_t errlen) {
  memset(f, 0, sizeof *f);
  size_t plen = strlen(path);
  f->path = malloc(plen + 1);
  if (!f->path) return modelc_rt_fail(err, errlen, "%s: out of memory", path);
  memcpy(f->path, path, plen + 1);
  if (modelc_rt_read_file(path, &f->data, &f->size, err, errlen) != 0) goto fail;
  if (f->size < 8) {
    modelc_rt_fail(err, errlen, "%s: file is %zu bytes, too short for the 8-byte header length", path,
            f->size);
    goto fail;
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = n << 8 | f->data[i];
  if (n > ST_MAX_HEADER) {
    modelc_rt_fail(err, errlen, "%s: header length %llu is over the limit of %d bytes", path,
            (unsigned long long)n, ST_MAX_HEADER);
    goto fail;
  }
  if (n > f->size - 8) {
    modelc_rt_fail(err, errlen, "%s: header length %llu runs past the end of the file (%zu bytes)", path,
            (unsigned long long)n, f->size);
    goto fail;
  }
  f->data_start = 8 + (size_t)n;
  st_reader r = {path, f->data + 8, (size_t)n, 0, malloc((size_t)n + 1), 0, err, errlen};
  if (!r.pool) {
    modelc_rt_fail(err, errlen, "%s: out of memory", path);
    goto fail;
  }
  int rc = st_parse_header(&r, f);
  free(r.pool);
  if (rc != 0) goto fail;
  for (int i = 0; i < f->count; i++) f->tensors[i].offset += f->data_start;
  if (st_check_tensors(f, err, errlen) != 0) goto fail;
  return 0;
fail:
  modelc_rt_st_close(f);
  return -1;
}

void modelc_rt_st_close(modelc_rt_st_file *f) {
  if (!f) return;
  for (int i = 0; i < f->count; i++) free(f->tensors[i].name);
  free(f->tensors);
  free(f->data);
  free(f->path);
  memset(f, 0, sizeof *f);
}

const modelc_rt_st_tensor *modelc_rt_st_find(const modelc_rt_st_file *f, const char *name) {
  for (int i = 0; i < f->count; i++)
    if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
  return NULL;
}

/* The element range [first, first + count) of t, checked; the first
 * byte of the range is returned in *src. */
static int st_check_range(const modelc_rt_st_file *f, const modelc_rt_st_tensor *t, int64_t first,
                          int64_t count, const unsigned char **src, char *err, size_t errlen) {
  int64_t total = (int64_t)(t->nbytes / modelc_rt_dtype_size(t->dtype));
  if (first < 0 || count < 0 || first > total || count > total - first)
    return modelc_rt_fail(err, errlen, "%s: tensor '%s': cannot read elements [%lld, %lld) of its %lld",
                   f->path, t->name, (long long)first, (long long)first + (long long)count,
                   (long long)total);
  *src = f->data + t->offset + (size_t)first * modelc_rt_dtype_size(t->dtype);
  return 0;
}

int modelc_rt_st_read_real(const modelc_rt_st_file *f, const modelc_rt_st_tensor *t,
                           int64_t first, int64_t count, modelc_rt_real *dst, char *err,
                           size_t errlen) {
  const unsigned char *src = NULL;
  if (t->dtype != MODELC_RT_F32 && t->dtype != MODELC_RT_BF16 && t->dtype != MODELC_RT_F16 &&
      t->dtype != MODELC_RT_F64)
    return modelc_rt_fail(err, errlen,
                   "%s: tensor '%s' is %s, not a floating-point dtype (F32, BF16, F16, F64)",
                   f->path, t->name, modelc_rt_dtype_name(t->dtype));
  if (st_check_range(f, t, first, count, &src, err, errlen) != 0) return -1;
  size_t n = (size_t)count;
  switch (t->dtype) {
  case MODELC_RT_F32:
    if (sizeof *dst == 4) {
      if (n) memcpy(dst, src, n * 4);
      break;
    }
    for (size_t i = 0; i < n; i++) {
      float v;
      memcpy(&v, src + 4 * i, 4);
      dst[i] = v;
    }
    break;
  case MODELC_RT_BF16:
  case MODELC_RT_F16:
    for (size_t i = 0; i < n; i++) {
      uint16_t v;
      memcpy(&v, src + 2 * i, 2);
      dst[i] = t->dtype == MODELC_RT_BF16 ? modelc_rt_bf16_to_f32(v) : modelc_rt_f16_to_f32(v);
    }
    break;
  default:
    for (size_t i = 0; i < n; i++) {
      double v;
      memcpy(&v, src + 8 * i, 8);
      dst[i] = (modelc_rt_real)v;
    }
    break;
  }
  return 0;
}

int modelc_rt_st_read_i32(const modelc_rt_st_file *f, const modelc_rt_st_tensor *t, int64_t first,
                          int64_t count, int32_t *dst, char *err, size_t errlen) {
  const unsigned char *src = NULL;
  if (t->dtype != MODELC_RT_I32 && t->dtype != MODELC_RT_I64 && t->dtype != MODELC_RT_U8)
    return modelc_rt_fail(err, errlen, "%s: tensor '%s' is %s, not an integer dtype (I32, I64, U8)",
                   f->path, t->name, modelc_rt_dtype_name(t->dtype));
  if (st_check_range(f, t, first, count, &src, err, errlen) != 0) return -1;
  size_t n = (size_t)count;
  switch (t->dtype) {
  case MODELC_RT_I32:
    if (n) memcpy(dst, src, n * 4);
    break;
  case MODELC_RT_U8:
    for (size_t i = 0; i < n; i++) dst[i] = src[i];
    break;
  default:
    for (size_t i = 0; i < n; i++) {
      int64_t v;
      memcpy(&v, src + 8 * i, 8);
      if (v < INT32_MIN || v > INT32_MAX)
        return modelc_rt_fail(err, errlen,
                       "%s: tensor '%s': element %lld is %lld, outside the int32 range", f->path,
                       t->name, (long long)first + (long long)i, (long long)v);
      dst[i] = (int32_t)v;
    }
    break;
  }
  return 0;
}

/* ---- the writer ---- */

typedef struct st_text {
  char *buf;
  size_t len, cap;
  int failed;
} st_text;

static void st_append(st_text *b, const char *s, size_t n) {
  if (b->failed) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (b->len + n + 1 > cap) cap *= 2;
    char *grown = realloc(b->buf, cap);
    if (!grown) {
      b->failed = 1;
      return;
    }
    b->buf = grown;
    b->cap = cap;
  }
  memcpy(b->buf + b->len, s, n);
  b->len += n;
  b->buf[b->len] = '\0';
}

static void st_append_str(st_text *b, const char *s) { st_append(b, s, strlen(s)); }

static void st_append_u64(st_text *b, uint64_t v) {
  char num[24];
  st_append(b, num, (size_t)snprintf(num, sizeof num, "%llu", (unsigned long long)v));
}

/* A JSON string escaped as serde_json (and so the Python package) does. */
static void st_append_json_string(st_text *b, const char *s) {
  st_append(b, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    const char *esc = NULL;
    char hex[8];
    switch (*p) {
    case '"': esc = "\\\""; break;
    case '\\': esc = "\\\\"; break;
    case '\b': esc = "\\b"; break;
    case '\f': esc = "\\f"; break;
    case '\n': esc = "\\n"; break;
    case '\r': esc = "\\r"; break;
    case '\t': esc = "\\t"; break;
    default:
      if (*p < 0x20) {
        snprintf(hex, sizeof hex, "\\u%04x", *p);
        esc = hex;
      }
    }
    if (esc)
      st_append_str(b, esc);
    else
      st_append(b, (const char *)p, 1);
  }
  st_append(b, "\"", 1);
}

/* Larger alignments first, as the Python package orders data. */
static int st_write_rank(modelc_rt_dtype d) {
  static const int rank[] = {
      [MODELC_RT_I64] = 7,  [MODELC_RT_F64] = 6, [MODELC_RT_F32] = 5, [MODELC_RT_I32] = 4,
      [MODELC_RT_BF16] = 3, [MODELC_RT_F16] = 2, [MODELC_RT_U8] = 1};
  return rank[d];
}

static int st_compare_entries(const void *a, const void *b) {
  const modelc_rt_st_entry *x = *(const modelc_rt_st_entry *const *)a;
  const modelc_rt_st_entry *y = *(const modelc_rt_st_entry *const *)b;
  int rx = st_write_rank(x->dtype), ry = st_write_rank(y->dtype);
  if (rx != ry) return ry - rx;
  return strcmp(x->name, y->name);
}

static int st_compare_entry_names(const void *a, const void *b) {
  const modelc_rt_st_entry *x = *(const modelc_rt_st_entry *const *)a;
  const modelc_rt_st_entry *y = *(const modelc_rt_st_entry *const *)b;
  return strcmp(x->name, y->name);
}

static int st_valid_utf8(const char *s) {
  size_t n = strlen(s);
  for (size_t i = 0; i < n;) {
    size_t k = st_utf8_length((const unsigned char *)s + i, n - i);
    if (!k) return 0;
    i += k;
  }
  return 1;
}

static int st_check_entry(const char *path, const modelc_rt_st_entry *e, int index, uint64_t *bytes,
                          char *err, size_t errlen) {
  if (!e->name) return modelc_rt_fail(err, errlen, "cannot write '%s': entry %d has no name", path, index);
  if (strcmp(e->name, "__metadata__") == 0 || !st_valid_utf8(e->name))
    return modelc_rt_fail(err, errlen, "cannot write '%s': '%s' is not a valid tensor name", path,
                   e->name);
  if ((unsigned)e->dtype > MODELC_RT_U8)
    return modelc_rt_fail(err, errlen, "cannot write '%s': tensor '%s' has an invalid dtype (%d)", path,
                   e->name, (int)e->dtype);
  if (e->rank < 0 || e->rank > MODELC_RT_MAX_RANK || (e->rank > 0 && !e->shape))
    return modelc_rt_fail(err, errlen, "cannot write '%s': tensor '%s' has rank %d (0 to %d allowed)",
                   path, e->name, e->rank, MODELC_RT_MAX_RANK);
  for (int i = 0; i < e->rank; i++)
    if (e->shape[i] < 0)
      return modelc_rt_fail(err, errlen, "cannot write '%s': tensor '%s' has a negative dimension", path,
                     e->name);
  if (st_byte_count(e->dtype, e->shape, e->rank, bytes) != 0 || *bytes > SIZE_MAX / 2)
    return modelc_rt_fail(err, errlen, "cannot write '%s': tensor '%s' is too large", path, e->name);
  if (*bytes && !e->data)
    return modelc_rt_fail(err, errlen, "cannot write '%s': tensor '%s' has no data", path, e->name);
  return 0;
}

/* The header JSON, padded with spaces to a multiple of 8, for entries in
 * data order; NULL when out of memory. */
static char *st_build_header(const modelc_rt_st_entry *const *order, const uint64_t *bytes,
                             int count, size_t *len) {
  st_text b = {0};
  uint64_t at = 0;
  st_append_str(&b, "{");
  for (int i = 0; i < count; i++) {
    const modelc_rt_st_entry *e = order[i];
    if (i) st_append_str(&b, ",");
    st_append_json_string(&b, e->name);
    st_append_str(&b, ":{\"dtype\":\"");
    st_append_str(&b, modelc_rt_dtype_name(e->dtype));
    st_append_str(&b, "\",\"shape\":[");
    for (int d = 0; d < e->rank; d++) {
      if (d) st_append_str(&b, ",");
      st_append_u64(&b, (uint64_t)e->shape[d]);
    }
    st_append_str(&b, "],\"data_offsets\":[");
    st_append_u64(&b, at);
    st_append_str(&b, ",");
    st_append_u64(&b, at + bytes[i]);
    st_append_str(&b, "]}");
    at += bytes[i];
  }
  st_append_str(&b, "}");
  while (!b.failed && b.len % 8) st_append_str(&b, " ");
  if (b.failed) {
    free(b.buf);
    return NULL;
  }
  *len = b.len;
  return b.buf;
}

int modelc_rt_st_write(const char *path, const modelc_rt_st_entry *entries, int count, char *err,
                       size_t errlen) {
  if (count < 0 || (count > 0 && !entries))
    return modelc_rt_fail(err, errlen, "cannot write '%s': invalid tensor list", path);
  size_t n = (size_t)count;
  const modelc_rt_st_entry **order = malloc((n ? n : 1) * sizeof *order);
  uint64_t *bytes = malloc((n ? n : 1) * sizeof *bytes);
  const void **parts = malloc((n + 2) * sizeof *parts);
  size_t *sizes = malloc((n + 2) * sizeof *sizes);
  char *header = NULL;
  int rc = -1;
  if (!order || !bytes || !parts || !sizes) {
    modelc_rt_fail(err, errlen, "cannot write '%s': out of memory", path);
    goto done;
  }
  for (int i = 0; i < count; i++) {
    uint64_t unused;
    if (st_check_entry(path, &entries[i], i, &unused, err, errlen) != 0) goto done;
    order[i] = &entries[i];
  }
  qsort(order, n, sizeof *order, st_compare_entry_names);
  for (size_t i = 1; i < n; i++) {
    if (strcmp(order[i - 1]->name, order[i]->name) == 0) {
      modelc_rt_fail(err, errlen, "cannot write '%s': duplicate tensor '%s'", path, order[i]->name);
      goto done;
    }
  }
  qsort(order, n, sizeof *order, st_compare_entries);
  uint64_t total = 0;
  for (size_t i = 0; i < n; i++) {
    st_byte_count(order[i]->dtype, order[i]->shape, order[i]->rank, &bytes[i]);
    total += bytes[i];
    if (total < bytes[i] || total > SIZE_MAX / 2) {
      modelc_rt_fail(err, errlen, "cannot write '%s': the tensors are too large", path);
      goto done;
    }
  }
  size_t header_len;
  header = st_build_header(order, bytes, count, &header_len);
  if (!header) {
    modelc_rt_fail(err, errlen, "cannot write '%s': out of memory", path);
    goto done;
  }
  unsigned char len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)header_len >> (8 * i));
  parts[0] = len8;
  sizes[0] = 8;
  parts[1] = header;
  sizes[1] = header_len;
  for (size_t i = 0; i < n; i++) {
    parts[i + 2] = order[i]->data;
    sizes[i + 2] = (size_t)bytes[i];
  }
  rc = modelc_rt_write_file_atomic(path, parts, sizes, count + 2, err, errlen);
done:
  free(header);
  free(order);
  free(bytes);
  free(parts);
  free(sizes);
  return rc;
}
