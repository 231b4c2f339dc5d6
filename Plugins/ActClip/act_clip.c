/*
 * ActClip — a sample qopt pass plugin that uses calibration statistics.
 *
 *   act-clip<bits=4;group-size=32;grid=20;weighting=mean-sq>: activation-aware weight
 *   clipping (AWQ's auto_clip with a diagonal input model). For each group of a linear
 *   weight row it tries clip ratios α = 1, 1 − 0.5/grid, …, 0.5 and keeps the one whose
 *   symmetric `bits`-bit round-to-nearest error, weighted per input channel by the
 *   calibration statistic `weighting` (mean x², absmax², or none: 1), is smallest; the
 *   weight is clipped to ±α·max|w| of its group. Run it after `calibrate` and before the
 *   quantization pass whose scheme it models (linears calibrate did not see, such as the
 *   output head, are left alone; weighting=none still needs calibrate for that reason):
 *
 *     qopt -load-pass-plugin=libActClip.so \
 *          -passes='calibrate,act-clip<bits=4;group-size=32>,rtn<bits=4;group-size=32>' in.ir
 *
 *   Each weight it clipped gets `act_clip.mean_ratio` (the mean chosen α); a remark counts
 *   the groups clipped.
 *
 *   weight-stats<release>: a read-only pass: enumerates every weight (weight_count,
 *   weight_name), reads it, and reports the count, absmax and rms of all values. With
 *   `release` (the default) each view is freed before the next is read (view_release), so
 *   the pass holds one weight at a time.
 *
 * Build out of tree with nothing but the installed header:
 *
 *     cc -std=c99 -shared -fPIC -I"$(qopt -print-plugin-include-dir)" -o libActClip.so act_clip.c -lm
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qopt_plugin.h"

/* The weighted error of quantizing w[0..n) symmetrically at `bits` with the range clipped to
 * ±amax: Σ imp[j]·(w[j] − s·clamp(round(w[j]/s)))², s = amax / qmax. */
static double group_error(const float *w, const float *imp, int64_t n, double amax, int32_t bits) {
  double qmax = (double)((1 << (bits - 1)) - 1);
  double s = amax / qmax;
  if (s <= 0) return 0;
  double err = 0;
  for (int64_t j = 0; j < n; j++) {
    double q = round((double)w[j] / s);
    if (q > qmax) q = qmax;
    if (q < -qmax - 1) q = -qmax - 1;
    double d = (double)w[j] - s * q;
    err += (imp ? (double)imp[j] : 1.0) * d * d;
  }
  return err;
}

/* Clips one linear's weight in place (`w` is a copy, rows × cols); returns the groups
 * clipped and adds the chosen ratios to *ratio_sum. */
static int64_t clip_weight(float *w, int64_t rows, int64_t cols, const float *imp, int32_t bits,
                           int64_t group, int32_t grid, double *ratio_sum, int64_t *groups) {
  int64_t clipped = 0;
  if (group <= 0 || group > cols) group = cols;
  for (int64_t r = 0; r < rows; r++) {
    for (int64_t g0 = 0; g0 < cols; g0 += group) {
      int64_t n = cols - g0 < group ? cols - g0 : group;
      float *x = w + r * cols + g0;
      const float *ix = imp ? imp + g0 : NULL;
      double amax = 0;
      for (int64_t j = 0; j < n; j++) amax = fmax(amax, fabs((double)x[j]));
      double best = 1.0, best_err = group_error(x, ix, n, amax, bits);
      for (int32_t k = 1; k < grid; k++) {
        double ratio = 1.0 - 0.5 * (double)k / (double)grid;
        double e = group_error(x, ix, n, amax * ratio, bits);
        if (e < best_err) { best_err = e; best = ratio; }
      }
      *ratio_sum += best;
      *groups += 1;
      if (best < 1.0) {
        float lim = (float)(amax * best);
        for (int64_t j = 0; j < n; j++) x[j] = fminf(lim, fmaxf(-lim, x[j]));
        clipped++;
      }
    }
  }
  return clipped;
}

static int32_t run_act_clip(void *user_data, const qopt_host_api *host, qopt_module *m,
                            const qopt_options *options) {
  (void)user_data;
  int32_t bits = (int32_t)host->option_int(options, "bits");
  int64_t group = host->option_int(options, "group-size");
  int32_t grid = (int32_t)host->option_int(options, "grid");
  const char *weighting = host->option_string(options, "weighting");
  int use_absmax = weighting && strcmp(weighting, "absmax") == 0;
  int use_none = weighting && strcmp(weighting, "none") == 0;
  int64_t clipped = 0, groups = 0, linears = 0;
  qopt_op *first_missing = NULL;

  for (int64_t fi = 0; fi < host->function_count(m); fi++) {
    qopt_function *f = host->function_at(m, fi);
    for (int64_t oi = 0; oi < host->function_op_count(m, f); oi++) {
      qopt_op *op = host->function_op_at(m, f, oi);
      if (strcmp(host->op_name(m, op), "linear") != 0) continue;
      qopt_op *param = host->value_defining_op(m, host->op_operand(m, op, 1));
      const char *name = param ? host->op_param_name(m, param) : NULL;
      if (!name || host->attr_kind(m, param, "act_clip.mean_ratio") != QOPT_ATTR_NONE) continue;
      if (host->value_dtype(m, host->op_result(m, param)) == QOPT_DTYPE_QUANTIZED) continue;

      /* The per-input-channel importance: what calibrate measured on this linear's input.
       * A linear calibrate did not see (the output head) is left alone. */
      qopt_f32_view stat;
      int32_t rc = host->calibration_stats(m, op, use_absmax ? "absmax" : "mean_sq", &stat);
      if (rc == QOPT_ERR_NOT_AVAILABLE) {
        if (!first_missing) first_missing = op;
        continue;
      }
      if (rc != QOPT_OK) return rc;
      const float *imp = use_none ? NULL : stat.data;
      qopt_f32_view w;
      if (host->weight_read_f32(m, name, &w) != QOPT_OK || w.rank != 2 || stat.count != w.dims[1]) {
        host->diagnose(m, QOPT_SEVERITY_ERROR, param, "cannot read the weight as a 2-D f32 tensor matching its input");
        return QOPT_ERR_FAILED;
      }
      float *copy = malloc(sizeof(float) * (size_t)w.count);
      float *sq = NULL;
      if (!copy) return QOPT_ERR_FAILED;
      memcpy(copy, w.data, sizeof(float) * (size_t)w.count);
      if (imp && use_absmax) {
        /* absmax weighs by its square, as mean_sq weighs by a squared magnitude. */
        sq = malloc(sizeof(float) * (size_t)stat.count);
        if (!sq) { free(copy); return QOPT_ERR_FAILED; }
        for (int64_t j = 0; j < stat.count; j++) sq[j] = imp[j] * imp[j];
        imp = sq;
      }
      double ratio_sum = 0;
      int64_t weight_groups = 0;
      clipped += clip_weight(copy, w.dims[0], w.dims[1], imp, bits, group, grid, &ratio_sum, &weight_groups);
      groups += weight_groups;
      linears++;
      rc = host->weight_write_f32(m, name, copy, w.count, w.rank, w.dims, QOPT_DTYPE_KEEP);
      free(copy);
      free(sq);
      if (rc != QOPT_OK) return rc;
      /* Done with both views: give their memory back now (hosts before view_release keep it
       * until the run returns). */
      if (QOPT_HOST_HAS(host, view_release)) {
        host->view_release(m, w.data);
        host->view_release(m, stat.data);
      }
      host->attr_set_float(m, param, "act_clip.mean_ratio", weight_groups ? ratio_sum / (double)weight_groups : 1.0);
    }
  }
  if (linears == 0 && first_missing) {
    host->diagnose(m, QOPT_SEVERITY_ERROR, first_missing,
                   "no calibration statistics for any linear; put 'calibrate' before act-clip");
    return QOPT_ERR_NOT_AVAILABLE;
  }
  char msg[200];
  snprintf(msg, sizeof msg, "clipped %lld of %lld groups in %lld linear weights (%s)",
           (long long)clipped, (long long)groups, (long long)linears, weighting ? weighting : "mean-sq");
  host->diagnose(m, QOPT_SEVERITY_REMARK, NULL, msg);
  return QOPT_OK;
}

static int32_t run_weight_stats(void *user_data, const qopt_host_api *host, qopt_module *m,
                                const qopt_options *options) {
  (void)user_data;
  if (!QOPT_HOST_HAS(host, weight_name)) {
    host->diagnose(m, QOPT_SEVERITY_ERROR, NULL, "this qopt predates weight enumeration (weight_count, weight_name)");
    return QOPT_ERR_NOT_AVAILABLE;
  }
  int release = host->option_bool(options, "release");
  int64_t n = host->weight_count(m), values = 0, read = 0;
  double absmax = 0, sq = 0;
  for (int64_t i = 0; i < n; i++) {
    qopt_f32_view w;
    if (host->weight_read_f32(m, host->weight_name(m, i), &w) != QOPT_OK) continue; /* e.g. a rank-3 quantized weight */
    for (int64_t j = 0; j < w.count; j++) {
      double v = (double)w.data[j];
      absmax = fmax(absmax, fabs(v));
      sq += v * v;
    }
    values += w.count;
    read++;
    if (release) host->view_release(m, w.data);
  }
  char msg[200];
  snprintf(msg, sizeof msg, "%lld of %lld weights, %lld values, absmax %.6g, rms %.6g", (long long)read,
           (long long)n, (long long)values, absmax, values ? sqrt(sq / (double)values) : 0.0);
  host->diagnose(m, QOPT_SEVERITY_REMARK, NULL, msg);
  return QOPT_OK;
}

static const char *const weightings[] = {"mean-sq", "absmax", "none"};

static const qopt_option_decl act_clip_options[] = {
    {"bits", QOPT_OPTION_INT, "bits of the quantization the clipping is chosen for", 4, 0, 0, NULL, 1, 2, 8, NULL, 0},
    {"group-size", QOPT_OPTION_INT, "weights per group along a row (-1: the whole row)", 32, 0, 0, NULL, 1, -1, 65536, NULL, 0},
    {"grid", QOPT_OPTION_INT, "clip ratios tried between 1 and 0.5", 20, 0, 0, NULL, 1, 1, 1000, NULL, 0},
    {"weighting", QOPT_OPTION_CHOICE, "per-input-channel error weight: calibrate's mean x², absmax², or none",
     0, 0, 0, "mean-sq", 0, 0, 0, weightings, 3},
};

static const qopt_option_decl weight_stats_options[] = {
    {"release", QOPT_OPTION_BOOL, "free each weight view before reading the next", 0, 0, 1, NULL, 0, 0, 0, NULL, 0},
};

static const char *const preserves_all[] = {"*", NULL};

static int32_t register_passes(const qopt_host_api *host, qopt_registry *registry) {
  qopt_pass_decl clip = {sizeof(qopt_pass_decl), "act-clip",
                         "clip linear weight groups where calibrated activations say it lowers the quantization error",
                         act_clip_options, 4, run_act_clip, NULL, NULL};
  qopt_pass_decl stats = {sizeof(qopt_pass_decl), "weight-stats",
                          "report the count, absmax and rms of every weight (read-only)",
                          weight_stats_options, 1, run_weight_stats, NULL, preserves_all};
  int32_t rc = host->register_pass(registry, &clip);
  return rc != QOPT_OK ? rc : host->register_pass(registry, &stats);
}

static const qopt_plugin_info info = {QOPT_PLUGIN_API_VERSION, sizeof(qopt_plugin_info), "ActClip", "1.0",
                                      register_passes};

QOPT_PLUGIN_EXPORT const qopt_plugin_info *qoptGetPassPluginInfo(void) { return &info; }
