/*
 * ClipOutliers — a sample qopt pass plugin in C.
 *
 *   clip-outliers<k=3.0>: clips each row of every `linear` weight to mean ± k·σ of that row
 *   (population σ), so that a few outliers do not stretch the quantization range. Run it
 *   before a quantization pass:
 *
 *     qopt -load-pass-plugin=libClipOutliers.so -passes='clip-outliers<k=2.5>,rtn' in.ir
 *
 * The weights keep their dtype; a remark reports how many values were clipped.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qopt_plugin.h"

/* Clips one row in place; returns how many values changed. */
static int64_t clip_row(float *row, int64_t n, double k) {
  double sum = 0, sq = 0;
  for (int64_t i = 0; i < n; i++) sum += row[i];
  double mean = sum / (double)n;
  for (int64_t i = 0; i < n; i++) sq += (row[i] - mean) * (row[i] - mean);
  double sigma = sqrt(sq / (double)n);
  float lo = (float)(mean - k * sigma), hi = (float)(mean + k * sigma);
  int64_t clipped = 0;
  for (int64_t i = 0; i < n; i++) {
    if (row[i] < lo) { row[i] = lo; clipped++; }
    else if (row[i] > hi) { row[i] = hi; clipped++; }
  }
  return clipped;
}

/* Whether `name` is among the first `count` entries of `seen` (a weight shared by several
 * linear ops is clipped once). */
static int seen_before(const char **seen, int64_t count, const char *name) {
  for (int64_t i = 0; i < count; i++)
    if (strcmp(seen[i], name) == 0) return 1;
  return 0;
}

static int32_t run_clip_outliers(void *user_data, const qopt_host_api *host, qopt_module *m,
                                 const qopt_options *options) {
  (void)user_data;
  double k = host->option_float(options, "k");
  int64_t total = 0, rows_touched = 0, weights = 0;
  int64_t seen_cap = 64, seen_count = 0;
  const char **seen = malloc(sizeof(char *) * (size_t)seen_cap);
  if (!seen) return QOPT_ERR_FAILED;
  int32_t status = QOPT_OK;

  for (int64_t fi = 0; fi < host->function_count(m) && status == QOPT_OK; fi++) {
    qopt_function *f = host->function_at(m, fi);
    for (int64_t oi = 0; oi < host->function_op_count(m, f); oi++) {
      qopt_op *op = host->function_op_at(m, f, oi);
      if (strcmp(host->op_name(m, op), "linear") != 0) continue;
      qopt_op *param = host->value_defining_op(m, host->op_operand(m, op, 1));
      const char *name = param ? host->op_param_name(m, param) : NULL;
      if (!name || seen_before(seen, seen_count, name)) continue;
      if (seen_count == seen_cap) {
        seen_cap *= 2;
        const char **grown = realloc(seen, sizeof(char *) * (size_t)seen_cap);
        if (!grown) { status = QOPT_ERR_FAILED; break; }
        seen = grown;
      }
      seen[seen_count++] = name; /* borrowed from the host until the run returns */

      /* A weight quantized by an earlier pass is left alone. */
      if (host->value_dtype(m, host->op_result(m, param)) == QOPT_DTYPE_QUANTIZED) continue;
      qopt_f32_view w;
      int32_t rc = host->weight_read_f32(m, name, &w);
      if (rc != QOPT_OK || w.rank != 2) {
        host->diagnose(m, QOPT_SEVERITY_ERROR, param, "cannot read the weight as a 2-D f32 tensor");
        status = QOPT_ERR_FAILED;
        break;
      }
      /* The view is read-only; clip a copy and write it back. */
      float *copy = malloc(sizeof(float) * (size_t)w.count);
      if (!copy) { status = QOPT_ERR_FAILED; break; }
      memcpy(copy, w.data, sizeof(float) * (size_t)w.count);
      int64_t clipped = 0;
      for (int64_t r = 0; r < w.dims[0]; r++) {
        int64_t c = clip_row(copy + r * w.dims[1], w.dims[1], k);
        clipped += c;
        rows_touched += c > 0;
      }
      if (clipped > 0) {
        rc = host->weight_write_f32(m, name, copy, w.count, w.rank, w.dims, QOPT_DTYPE_KEEP);
        if (rc != QOPT_OK) {
          host->diagnose(m, QOPT_SEVERITY_ERROR, param, "cannot write the clipped weight back");
          status = QOPT_ERR_FAILED;
        }
      }
      free(copy);
      total += clipped;
      weights++;
    }
  }
  free(seen);
  if (status == QOPT_OK) {
    char msg[160];
    snprintf(msg, sizeof msg, "clipped %lld values in %lld rows of %lld linear weights at k=%g",
             (long long)total, (long long)rows_touched, (long long)weights, k);
    host->diagnose(m, QOPT_SEVERITY_REMARK, NULL, msg);
  }
  return status;
}

static const qopt_option_decl clip_options[] = {
    {.key = "k", .kind = QOPT_OPTION_FLOAT, .help = "clip each row at mean ± k·σ",
     .default_float = 3.0, .has_range = 1, .min = 0.1, .max = 100.0},
};

static int32_t register_passes(const qopt_host_api *host, qopt_registry *registry) {
  if (host->api_version != QOPT_PLUGIN_API_VERSION || !QOPT_HOST_HAS(host, option_string))
    return QOPT_ERR_FAILED;
  qopt_pass_decl pass = {
      .struct_size = sizeof(qopt_pass_decl),
      .name = "clip-outliers",
      .summary = "clip each linear weight row at mean ± k·σ before quantization",
      .options = clip_options,
      .option_count = 1,
      .run = run_clip_outliers,
  };
  return host->register_pass(registry, &pass);
}

static const qopt_plugin_info info = {
    .api_version = QOPT_PLUGIN_API_VERSION,
    .struct_size = sizeof(qopt_plugin_info),
    .name = "ClipOutliers",
    .version = "1.0",
    .register_passes = register_passes,
};

QOPT_PLUGIN_EXPORT const qopt_plugin_info *qoptGetPassPluginInfo(void) { return &info; }
