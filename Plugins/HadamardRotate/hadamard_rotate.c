/*
 * HadamardRotate — a sample qopt pass plugin that introduces an op AND gives the runtime
 * its kernel (an external kernel called through libffi).
 *
 *   hadamard-rotate<mode=hadamard>: for each `linear` whose input width n is a power of two,
 *   rotates the input by the normalized Walsh–Hadamard matrix H (H = Hᵀ, H·H = I) and the
 *   weight rows by the same H, so the product is unchanged — x·Wᵀ = (x·H)·(W·H)ᵀ — while
 *   outliers are spread across the row (the QuaRot idea: rotated weights quantize better).
 *   The input rotation is a generic op the runtime runs through this plugin's kernel, which
 *   `register_passes` registers by name (the runtime calls nothing else a model names):
 *
 *     %x.rot = "qopt.extern"(%x) {operand_types = [tensor<?x64xf32>],
 *                                 result_type = tensor<?x64xf32>, symbol = "qopt_hadamard_f32"}
 *     %y = linear %x.rot, %w.rotated
 *
 *   mode=identity inserts the same op with the identity kernel `qopt_identity_f32` and leaves
 *   the weights alone: the model computes exactly what it did before.
 *
 * Weights also read by something other than a linear (a tied embedding table) are skipped.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qopt_plugin.h"

/* In-place normalized fast Walsh–Hadamard transform of `n` (a power of two) values. */
static void fwht(float *v, int64_t n) {
  for (int64_t h = 1; h < n; h *= 2)
    for (int64_t i = 0; i < n; i += 2 * h)
      for (int64_t j = i; j < i + h; j++) {
        float a = v[j], b = v[j + h];
        v[j] = a + b;
        v[j + h] = a - b;
      }
  float s = (float)(1.0 / sqrt((double)n));
  for (int64_t i = 0; i < n; i++) v[i] *= s;
}

static int is_pow2(int64_t n) { return n >= 2 && (n & (n - 1)) == 0; }

/* -- External kernels (registered below; the runtime calls them through libffi) ------------ */
/* They need not be exported: the host reaches them through the registered pointer only. */

/* out = x · H along the last dimension. */
static int32_t qopt_hadamard_f32(const float *x, const int64_t *x_dims, int64_t x_rank,
                                 float *out, const int64_t *out_dims, int64_t out_rank) {
  if (x_rank < 1 || x_rank != out_rank) return 1;
  int64_t count = 1;
  for (int64_t i = 0; i < x_rank; i++) {
    if (x_dims[i] != out_dims[i]) return 2;
    count *= x_dims[i];
  }
  int64_t n = x_dims[x_rank - 1];
  if (!is_pow2(n)) return 3;
  memcpy(out, x, sizeof(float) * (size_t)count);
  for (int64_t r = 0; r < count / n; r++) fwht(out + r * n, n);
  return 0;
}

/* out = x. */
static int32_t qopt_identity_f32(const float *x, const int64_t *x_dims, int64_t x_rank,
                                 float *out, const int64_t *out_dims, int64_t out_rank) {
  if (x_rank != out_rank) return 1;
  int64_t count = 1;
  for (int64_t i = 0; i < x_rank; i++) {
    if (x_dims[i] != out_dims[i]) return 2;
    count *= x_dims[i];
  }
  memcpy(out, x, sizeof(float) * (size_t)count);
  return 0;
}

/* -- The pass ----------------------------------------------------------------------------- */

/* Whether weight `p`'s result is read only as operand 1 of linear ops (in any function). */
static int only_linear_weight(const qopt_host_api *h, qopt_module *m, const char *name) {
  for (int64_t fi = 0; fi < h->function_count(m); fi++) {
    qopt_function *f = h->function_at(m, fi);
    for (int64_t i = 0; i < h->function_op_count(m, f); i++) {
      qopt_op *op = h->function_op_at(m, f, i);
      int is_linear = strcmp(h->op_name(m, op), "linear") == 0;
      for (int64_t k = 0; k < h->op_operand_count(m, op); k++) {
        qopt_op *d = h->value_defining_op(m, h->op_operand(m, op, k));
        const char *pn = d ? h->op_param_name(m, d) : NULL;
        if (pn && strcmp(pn, name) == 0 && !(is_linear && k == 1)) return 0;
      }
    }
  }
  return 1;
}

typedef struct { qopt_value *from, *to; } rotated_value;

static int32_t run_rotate(void *user, const qopt_host_api *h, qopt_module *m, const qopt_options *o) {
  (void)user;
  int hadamard = strcmp(h->option_string(o, "mode"), "hadamard") == 0;
  const char *symbol = hadamard ? "qopt_hadamard_f32" : "qopt_identity_f32";
  int64_t inserted = 0, weights = 0;
  const char **done = NULL; /* weight names already rotated (borrowed host strings) */
  int64_t done_count = 0;

  for (int64_t fi = 0; fi < h->function_count(m); fi++) {
    qopt_function *f = h->function_at(m, fi);
    rotated_value *rot = NULL;
    int64_t rot_count = 0;
    for (int64_t i = 0; i < h->function_op_count(m, f); i++) {
      qopt_op *lin = h->function_op_at(m, f, i);
      if (strcmp(h->op_name(m, lin), "linear") != 0) continue;
      qopt_value *x = h->op_operand(m, lin, 0);
      qopt_op *p = h->value_defining_op(m, h->op_operand(m, lin, 1));
      const char *name = p ? h->op_param_name(m, p) : NULL;
      int32_t rank = h->value_rank(m, x);
      int64_t n = rank > 0 ? h->value_dim(m, x, rank - 1) : -1;
      if (!name || h->value_dtype(m, x) != QOPT_DTYPE_F32 || !is_pow2(n)) continue;
      if (hadamard && (h->value_dtype(m, h->op_result(m, p)) == QOPT_DTYPE_QUANTIZED ||
                       !only_linear_weight(h, m, name)))
        continue;

      /* One rotation per input value, created before its first linear. */
      qopt_value *rx = NULL;
      for (int64_t k = 0; k < rot_count; k++)
        if (rot[k].from == x) rx = rot[k].to;
      if (!rx) {
        int64_t dims[QOPT_MAX_RANK];
        for (int32_t d = 0; d < rank && d < QOPT_MAX_RANK; d++) dims[d] = h->value_dim(m, x, d);
        qopt_type_desc t = {QOPT_DTYPE_F32, rank, dims};
        char hint[96];
        snprintf(hint, sizeof hint, "%s.rot", h->value_name(m, x));
        qopt_op *ext = h->op_create(m, f, lin, QOPT_INSERT_BEFORE, "qopt.extern", &x, 1, &t, hint);
        if (!ext) { free(rot); free(done); return QOPT_ERR_FAILED; }
        char sig[160];
        snprintf(sig, sizeof sig, "[%s]", h->value_type_text(m, x));
        h->attr_set_string(m, ext, "symbol", symbol);
        h->attr_set_text(m, ext, "operand_types", sig);
        h->attr_set_text(m, ext, "result_type", h->value_type_text(m, x));
        rx = h->op_result(m, ext);
        rotated_value *grown = realloc(rot, sizeof(rotated_value) * (size_t)(rot_count + 1));
        if (!grown) { free(rot); free(done); return QOPT_ERR_FAILED; }
        rot = grown;
        rot[rot_count].from = x;
        rot[rot_count].to = rx;
        rot_count++;
        inserted++;
        i++; /* the linear moved one down */
      }
      if (h->op_set_operand(m, lin, 0, rx) != QOPT_OK) {
        h->diagnose(m, QOPT_SEVERITY_ERROR, lin, "cannot redirect the linear's input");
        free(rot); free(done);
        return QOPT_ERR_FAILED;
      }
      if (!hadamard) continue;

      int seen = 0;
      for (int64_t k = 0; k < done_count; k++) seen |= strcmp(done[k], name) == 0;
      if (seen) continue;
      qopt_f32_view w;
      if (h->weight_read_f32(m, name, &w) != QOPT_OK || w.rank != 2 || w.dims[1] != n) {
        h->diagnose(m, QOPT_SEVERITY_ERROR, p, "the weight is not a 2-D tensor matching the input width");
        free(rot); free(done);
        return QOPT_ERR_FAILED;
      }
      float *buf = malloc(sizeof(float) * (size_t)w.count);
      const char **grown = realloc(done, sizeof(char *) * (size_t)(done_count + 1));
      if (!buf || !grown) { free(buf); free(rot); free(grown ? grown : done); return QOPT_ERR_FAILED; }
      done = grown;
      done[done_count++] = name;
      memcpy(buf, w.data, sizeof(float) * (size_t)w.count);
      for (int64_t r = 0; r < w.dims[0]; r++) fwht(buf + r * n, n);
      int32_t rc = h->weight_write_f32(m, name, buf, w.count, w.rank, w.dims, QOPT_DTYPE_KEEP);
      free(buf);
      if (rc != QOPT_OK) { free(rot); free(done); return rc; }
      weights++;
    }
    free(rot);
  }
  free(done);
  char msg[128];
  snprintf(msg, sizeof msg, "inserted %lld rotations (%s), rotated %lld weights", (long long)inserted, symbol,
           (long long)weights);
  h->diagnose(m, QOPT_SEVERITY_REMARK, NULL, msg);
  return QOPT_OK;
}

static const char *const modes[] = {"hadamard", "identity"};
static const qopt_option_decl rotate_options[] = {
    {.key = "mode", .kind = QOPT_OPTION_CHOICE,
     .help = "hadamard: rotate inputs and weights; identity: insert the identity kernel only",
     .default_string = "hadamard", .choices = modes, .choice_count = 2},
};

static int32_t register_passes(const qopt_host_api *host, qopt_registry *registry) {
  if (host->api_version != QOPT_PLUGIN_API_VERSION || !QOPT_HOST_HAS(host, option_string))
    return QOPT_ERR_FAILED;
  const qopt_kernel_decl kernels[] = {
      {.struct_size = sizeof(qopt_kernel_decl), .operand_count = 1, .name = "qopt_hadamard_f32",
       .fn = (qopt_kernel_fn)qopt_hadamard_f32},
      {.struct_size = sizeof(qopt_kernel_decl), .operand_count = 1, .name = "qopt_identity_f32",
       .fn = (qopt_kernel_fn)qopt_identity_f32},
  };
  for (int i = 0; i < 2; i++) {
    int32_t rc = host->register_kernel(registry, &kernels[i]);
    if (rc != QOPT_OK) return rc;
  }
  qopt_pass_decl pass = {
      .struct_size = sizeof(qopt_pass_decl),
      .name = "hadamard-rotate",
      .summary = "rotate linear inputs and weights by a Walsh-Hadamard matrix (external kernel)",
      .options = rotate_options,
      .option_count = 1,
      .run = run_rotate,
  };
  return host->register_pass(registry, &pass);
}

static const qopt_plugin_info info = {
    .api_version = QOPT_PLUGIN_API_VERSION,
    .struct_size = sizeof(qopt_plugin_info),
    .name = "HadamardRotate",
    .version = "1.0",
    .register_passes = register_passes,
};

QOPT_PLUGIN_EXPORT const qopt_plugin_info *qoptGetPassPluginInfo(void) { return &info; }
