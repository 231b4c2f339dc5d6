import QoptIR
import QoptPasses
import QoptPluginHost
import Testing

/// `calibration_stats`, `view_release` and weight enumeration through a plugin compiled out
/// of tree: what the plugin reads must be what `calibrate` measured, and the rows it keeps
/// must reproduce the per-channel statistics.
@Suite(.serialized) struct CalibrationStatsTests {
  static let library: Result<String, any Error> = Result {
    try Fixtures.compilePlugin(probeSource, name: "probe")
  }

  private func run(_ pipeline: String) throws -> Module {
    let registry = try Fixtures.registry(loading: [try Self.library.get()])
    let m = try ModuleIO.load(path: Fixtures.repoRoot + "/IR/examples/tiny-llama.ir")
    try Fixtures.runPipeline(pipeline, on: m, registry: registry)
    return m
  }

  private func attr(_ m: Module, _ weight: String, _ key: String) -> Attribute? {
    m.allOps.lazy.filter { $0.paramName == weight }.compactMap { $0.attributes[key] }.first
  }

  @Test func statisticsMatchTheKeptRows() throws {
    let m = try run("calibrate<samples=2;seqlen=8;keep-inputs=re:.*q_proj.*>,calib-probe")
    for layer in 0..<2 {
      let q = "model.layers.\(layer).self_attn.q_proj.weight"
      #expect(attr(m, q, "probe.tokens") == .int(16))
      #expect(attr(m, q, "probe.rows") == .int(16))
      #expect(attr(m, q, "probe.width") == .int(64))
      // mean x² and max |x| recomputed from the rows agree with the host's statistics.
      let relMs = try #require(attr(m, q, "probe.err_mean_sq")?.doubleValue)
      let relAbs = try #require(attr(m, q, "probe.err_absmax")?.doubleValue)
      #expect(relMs < 1e-5 && relAbs == 0, "\(q): \(relMs) \(relAbs)")
      // Releasing a view twice is refused, not a double free.
      #expect(attr(m, q, "probe.release") == .int(Int(0)))
      #expect(attr(m, q, "probe.release_again") == .int(2))  // QOPT_ERR_NOT_FOUND
      // Not kept: statistics yes, rows no.
      let k = "model.layers.\(layer).self_attn.k_proj.weight"
      #expect(attr(m, k, "probe.tokens") == .int(16))
      #expect(attr(m, k, "probe.rows") == .int(-3))  // QOPT_ERR_NOT_AVAILABLE
    }
    // The output head is outside the blocks calibrate runs: no statistics.
    #expect(attr(m, "model.embed_tokens.weight", "probe.tokens") == .int(-3))
    // Enumeration walks the weight store itself.
    #expect(m.attributes["probe.weights"] == .int(m.weights.count))
    #expect(m.attributes["probe.first_weight"] == .string(m.weights.names[0]))
    #expect(m.attributes["probe.unknown_stat"] == .int(2))  // QOPT_ERR_NOT_FOUND
  }

  @Test func nothingIsAvailableWithoutCalibrate() throws {
    let m = try run("calib-probe")
    #expect(attr(m, "model.layers.0.self_attn.q_proj.weight", "probe.tokens") == .int(-3))
    #expect(attr(m, "model.layers.0.self_attn.q_proj.weight", "probe.rows") == .int(-3))
  }

  @Test func keepInputsNeedsStatsAndAMatch() throws {
    #expect(throws: PassError.self) {
      try run("calibrate<samples=2;seqlen=8;keep-inputs=Linear;no-stats>")
    }
    #expect(throws: PassError.self) {
      try run("calibrate<samples=2;seqlen=8;keep-inputs=re:nothing.*>")
    }
  }

  static let probeSource = #"""
    #include <math.h>
    #include <stdlib.h>
    #include <string.h>
    #include "qopt_plugin.h"

    /* For each linear: reads the statistics and the kept rows, writes what it found as attributes
     * of the weight's param (negative status codes when a call failed). */
    static int32_t run(void *u, const qopt_host_api *h, qopt_module *m, const qopt_options *o) {
      (void)u; (void)o;
      h->attr_set_int(m, NULL, "probe.weights", h->weight_count(m));
      h->attr_set_string(m, NULL, "probe.first_weight", h->weight_name(m, 0));
      for (int64_t fi = 0; fi < h->function_count(m); fi++) {
        qopt_function *f = h->function_at(m, fi);
        for (int64_t i = 0; i < h->function_op_count(m, f); i++) {
          qopt_op *op = h->function_op_at(m, f, i);
          if (strcmp(h->op_name(m, op), "linear") != 0) continue;
          qopt_op *p = h->value_defining_op(m, h->op_operand(m, op, 1));
          qopt_f32_view ms, am, tok, rows;
          int32_t rc = h->calibration_stats(m, op, "tokens", &tok);
          h->attr_set_int(m, p, "probe.tokens", rc == QOPT_OK ? (int64_t)tok.data[0] : -rc);
          h->attr_set_int(m, NULL, "probe.unknown_stat", h->calibration_stats(m, op, "median", &tok));
          rc = h->calibration_stats(m, op, "input_rows", &rows);
          if (rc != QOPT_OK) { h->attr_set_int(m, p, "probe.rows", -rc); continue; }
          h->attr_set_int(m, p, "probe.rows", rows.dims[0]);
          h->attr_set_int(m, p, "probe.width", rows.dims[1]);
          if (h->calibration_stats(m, op, "mean_sq", &ms) != QOPT_OK) return QOPT_ERR_FAILED;
          if (h->calibration_stats(m, op, "absmax", &am) != QOPT_OK) return QOPT_ERR_FAILED;
          double err_ms = 0, err_abs = 0;
          for (int64_t j = 0; j < rows.dims[1]; j++) {
            double s = 0, a = 0;
            for (int64_t r = 0; r < rows.dims[0]; r++) {
              double x = rows.data[r * rows.dims[1] + j];
              s += x * x;
              a = fmax(a, fabs(x));
            }
            s /= (double)rows.dims[0];
            err_ms = fmax(err_ms, fabs(s - ms.data[j]) / fmax(s, 1e-12));
            err_abs = fmax(err_abs, fabs(a - am.data[j]));
          }
          h->attr_set_float(m, p, "probe.err_mean_sq", err_ms);
          h->attr_set_float(m, p, "probe.err_absmax", err_abs);
          h->attr_set_int(m, p, "probe.release", h->view_release(m, rows.data));
          h->attr_set_int(m, p, "probe.release_again", h->view_release(m, rows.data));
        }
      }
      return QOPT_OK;
    }

    static int32_t reg(const qopt_host_api *h, qopt_registry *r) {
      if (!QOPT_HOST_HAS(h, weight_name)) return QOPT_ERR_NOT_AVAILABLE;
      qopt_pass_decl d = {sizeof(qopt_pass_decl), "calib-probe", "reads calibration statistics", NULL, 0, run, NULL, NULL};
      return h->register_pass(r, &d);
    }

    static const qopt_plugin_info info = {QOPT_PLUGIN_API_VERSION, sizeof(qopt_plugin_info), "Probe", "1.0", reg};
    QOPT_PLUGIN_EXPORT const qopt_plugin_info *qoptGetPassPluginInfo(void) { return &info; }
    """#
}

/// `qopt -print-plugin-include-dir`: the header is found relative to the binary, installed
/// or in a build tree, and a binary with neither says where it looked.
@Suite struct PluginHeadersTests {
  @Test func findsTheInstalledLayout() throws {
    let prefix = try Fixtures.tempDir()
    _ = try Fixtures.run(
      "/bin/mkdir", ["-p", prefix + "/bin", prefix + "/include/qopt"], in: prefix)
    try "/* header */\n".write(
      toFile: prefix + "/include/qopt/qopt_plugin.h", atomically: true, encoding: .utf8)
    #expect(
      try PluginHeaders.directory(forExecutable: prefix + "/bin/qopt") == prefix + "/include/qopt")
  }

  @Test func findsTheSourceTreeOfABuildTreeBinary() throws {
    for exe in ["/.build/x86_64-unknown-linux-gnu/release/qopt", "/.build/release/qopt"] {
      #expect(
        try PluginHeaders.directory(forExecutable: Fixtures.repoRoot + exe) == Fixtures.repoRoot
          + "/Sources/CQoptPlugin/include")
    }
    // Only a SwiftPM build folder counts: a binary elsewhere under the checkout finds nothing.
    #expect(
      PluginHeaders.candidates(forExecutable: Fixtures.repoRoot + "/.build/tmp/x/bin/qopt") == [
        Fixtures.repoRoot + "/.build/tmp/x/include/qopt"
      ])
  }

  @Test func saysWhereItLookedWhenThereIsNone() throws {
    let dir = try Fixtures.tempDir()
    let error = #expect(throws: PluginHeadersError.self) {
      try PluginHeaders.directory(forExecutable: dir + "/bin/qopt")
    }
    let text = error?.description ?? ""
    #expect(
      text
        == "error: cannot find qopt_plugin.h for \(dir)/bin/qopt; looked in \(dir)/include/qopt (install with scripts/install PREFIX)"
    )
  }
}
