/// C sources of the plugins the tests compile from a temp directory outside the package.
enum PluginSources {
  /// A minimal plugin whose info struct and pass name are parameters, for the loading
  /// failure cases (wrong ABI version, short struct, name clash, failing registration).
  /// `kernels` lists (name, operand count, function) for `register_kernel`; the function is
  /// `kernel` (a valid one-operand kernel) or `NULL`.
  static func minimal(
    apiVersion: String = "QOPT_PLUGIN_API_VERSION", structSize: String = "sizeof(qopt_plugin_info)",
    passName: String = "minimal-noop", registerStatus: String = "rc",
    kernels: [(name: String, operands: Int, fn: String)] = []
  ) -> String {
    let registerKernels = kernels.map { k in
      "  { qopt_kernel_decl k = {sizeof k, \(k.operands), \"\(k.name)\", (qopt_kernel_fn)\(k.fn)}; if (rc == QOPT_OK) rc = host->register_kernel(r, &k); }\n"
    }.joined()
    return """
    #include "qopt_plugin.h"

    static int32_t run(void *u, const qopt_host_api *host, qopt_module *m, const qopt_options *o) {
      (void)u; (void)host; (void)m; (void)o;
      return QOPT_OK;
    }

    static int32_t kernel(const float *x, const int64_t *x_dims, int64_t x_rank,
                          float *out, const int64_t *out_dims, int64_t out_rank) {
      (void)x; (void)x_dims; (void)x_rank; (void)out; (void)out_dims; (void)out_rank;
      return 0;
    }

    static int32_t reg(const qopt_host_api *host, qopt_registry *r) {
      qopt_pass_decl d = {0};
      d.struct_size = sizeof d;
      d.name = "\(passName)";
      d.summary = "does nothing";
      d.run = run;
      int32_t rc = host->register_pass(r, &d);
      (void)kernel;
    \(registerKernels)  (void)rc;
      return \(registerStatus);
    }

    static const qopt_plugin_info info = {\(apiVersion), \(structSize), "Minimal", "0.1", reg};
    const qopt_plugin_info *qoptGetPassPluginInfo(void) { return &info; }
    """
  }

  /// The out-of-tree plugin of docs/writing-a-plugin.md: passes over most of the host table,
  /// plus three external kernels it registers for the runtime to call through libffi
  /// (`demo_identity_f32`, `demo_axpy2_f32` with two operands, `demo_fail_f32`).
  ///
  /// - `demo-scale<factor=2.0;only=…>` multiplies linear weights (all, or one by name) and
  ///   tags each param with `demo.scaled = true`.
  /// - `demo-quant` replaces each linear weight by per-row symmetric 8-bit codes.
  /// - `demo-rotate<kernel=…>` puts an identity `"qopt.extern"` before each linear, calling
  ///   the registered `demo_identity_f32` (or the kernel named by `kernel`).
  /// - `demo-fail` reports an error at the first linear op.
  /// - `demo-abuse` hands the host bad handles and arguments, `demo-hostile` hostile sizes.
  static let outOfTree = #"""
    #include <math.h>
    #include <stdio.h>
    #include <stdlib.h>
    #include <string.h>
    #include "qopt_plugin.h"

    /* External kernel: out = x (the identity rotation). */
    static int32_t demo_identity_f32(const float *x, const int64_t *x_dims, int64_t x_rank,
                              float *out, const int64_t *out_dims, int64_t out_rank) {
      if (x_rank != 2 || out_rank != 2) return 2;
      int64_t n = out_dims[0] * out_dims[1];
      if (x_dims[0] != out_dims[0] || x_dims[1] != out_dims[1]) return 1;
      memcpy(out, x, sizeof(float) * (size_t)n);
      return 0;
    }

    /* External kernel: out = a + 2 * b, to check argument order. */
    static int32_t demo_axpy2_f32(const float *a, const int64_t *a_dims, int64_t a_rank,
                           const float *b, const int64_t *b_dims, int64_t b_rank,
                           float *out, const int64_t *out_dims, int64_t out_rank) {
      (void)b_dims;
      if (a_rank != 2 || b_rank != 2 || out_rank != 2) return 6;
      int64_t n = 1;
      for (int i = 0; i < out_rank; i++) n *= out_dims[i];
      if (a_dims[0] != out_dims[0]) return 7;
      for (int64_t i = 0; i < n; i++) out[i] = a[i] + 2 * b[i];
      return 0;
    }

    /* External kernel that always fails, to check status reporting. */
    static int32_t demo_fail_f32(const float *x, const int64_t *x_dims, int64_t x_rank,
                          float *out, const int64_t *out_dims, int64_t out_rank) {
      (void)x; (void)x_dims; (void)x_rank; (void)out; (void)out_dims; (void)out_rank;
      return 3;
    }

    static qopt_op *linear_weight(const qopt_host_api *h, qopt_module *m, qopt_op *op) {
      if (strcmp(h->op_name(m, op), "linear") != 0) return NULL;
      return h->value_defining_op(m, h->op_operand(m, op, 1));
    }

    static int32_t run_scale(void *u, const qopt_host_api *h, qopt_module *m, const qopt_options *o) {
      (void)u;
      double factor = h->option_float(o, "factor");
      const char *only = h->option_string(o, "only");
      for (int64_t fi = 0; fi < h->function_count(m); fi++) {
        qopt_function *f = h->function_at(m, fi);
        for (int64_t i = 0; i < h->function_op_count(m, f); i++) {
          qopt_op *p = linear_weight(h, m, h->function_op_at(m, f, i));
          if (!p) continue;
          const char *name = h->op_param_name(m, p);
          if (only[0] && strcmp(only, name) != 0) continue;
          qopt_f32_view w;
          if (h->weight_read_f32(m, name, &w) != QOPT_OK) return QOPT_ERR_FAILED;
          float *buf = malloc(sizeof(float) * (size_t)w.count);
          for (int64_t k = 0; k < w.count; k++) buf[k] = (float)(w.data[k] * factor);
          int32_t rc = h->weight_write_f32(m, name, buf, w.count, w.rank, w.dims, QOPT_DTYPE_KEEP);
          free(buf);
          if (rc != QOPT_OK) return rc;
          if (h->option_bool(o, "tag")) h->attr_set_bool(m, p, "demo.scaled", 1);
        }
      }
      h->attr_set_string(m, NULL, "demo.note", "scaled");
      return QOPT_OK;
    }

    static int32_t run_quant(void *u, const qopt_host_api *h, qopt_module *m, const qopt_options *o) {
      (void)u; (void)o;
      qopt_f32_view stats;
      for (int64_t fi = 0; fi < h->function_count(m); fi++) {
        qopt_function *f = h->function_at(m, fi);
        for (int64_t i = 0; i < h->function_op_count(m, f); i++) {
          qopt_op *lin = h->function_op_at(m, f, i);
          qopt_op *p = linear_weight(h, m, lin);
          if (!p || h->value_dtype(m, h->op_result(m, p)) == QOPT_DTYPE_QUANTIZED) continue;
          if (h->calibration_stats(m, lin, "absmax", &stats) == QOPT_ERR_NOT_AVAILABLE)
            h->diagnose(m, QOPT_SEVERITY_REMARK, lin, "no calibration statistics; using weights only");
          const char *name = h->op_param_name(m, p);
          qopt_f32_view w;
          if (h->weight_read_f32(m, name, &w) != QOPT_OK || w.rank != 2) return QOPT_ERR_FAILED;
          int64_t rows = w.dims[0], cols = w.dims[1];
          int8_t *codes = malloc((size_t)(rows * cols));
          float *scales = malloc(sizeof(float) * (size_t)rows);
          for (int64_t r = 0; r < rows; r++) {
            float amax = 0;
            for (int64_t c = 0; c < cols; c++) amax = fmaxf(amax, fabsf(w.data[r * cols + c]));
            float s = amax > 0 ? amax / 127.0f : 1.0f;
            scales[r] = s;
            for (int64_t c = 0; c < cols; c++) {
              float q = roundf(w.data[r * cols + c] / s);
              codes[r * cols + c] = (int8_t)fmaxf(-128.0f, fminf(127.0f, q));
            }
          }
          qopt_int_quant q = {0};
          q.struct_size = sizeof q;
          q.bits = 8; q.symmetric = 1; q.group_size = -1; q.scale_dtype = QOPT_DTYPE_F32;
          q.rows = rows; q.cols = cols; q.codes = codes; q.scales = scales;
          int32_t rc = h->weight_set_quantized_int(m, name, &q);
          free(codes);
          free(scales);
          if (rc != QOPT_OK) {
            h->diagnose(m, QOPT_SEVERITY_ERROR, p, "weight_set_quantized_int refused the codes");
            return rc;
          }
        }
      }
      return QOPT_OK;
    }

    static int32_t run_rotate(void *u, const qopt_host_api *h, qopt_module *m, const qopt_options *o) {
      (void)u;
      const char *kernel = h->option_string(o, "kernel");
      for (int64_t fi = 0; fi < h->function_count(m); fi++) {
        qopt_function *f = h->function_at(m, fi);
        for (int64_t i = 0; i < h->function_op_count(m, f); i++) {
          qopt_op *lin = h->function_op_at(m, f, i);
          if (strcmp(h->op_name(m, lin), "linear") != 0) continue;
          qopt_value *x = h->op_operand(m, lin, 0);
          int64_t dims[QOPT_MAX_RANK];
          int32_t rank = h->value_rank(m, x);
          for (int32_t d = 0; d < rank; d++) dims[d] = h->value_dim(m, x, d);
          qopt_type_desc t = {QOPT_DTYPE_F32, rank, dims};
          qopt_value *ops[1] = {x};
          qopt_op *ext = h->op_create(m, f, lin, QOPT_INSERT_BEFORE, "qopt.extern", ops, 1, &t, "rot");
          if (!ext) return QOPT_ERR_FAILED;
          char sig[128];
          snprintf(sig, sizeof sig, "[%s]", h->value_type_text(m, x));
          h->attr_set_string(m, ext, "symbol", kernel);
          h->attr_set_text(m, ext, "operand_types", sig);
          h->attr_set_text(m, ext, "result_type", h->value_type_text(m, x));
          /* Every later op now reads the rotated value. */
          if (h->value_replace_uses(m, x, h->op_result(m, ext)) != QOPT_OK) return QOPT_ERR_FAILED;
          i++; /* skip the linear the new op was put before */
        }
      }
      return QOPT_OK;
    }

    static int32_t run_fail(void *u, const qopt_host_api *h, qopt_module *m, const qopt_options *o) {
      (void)u; (void)o;
      qopt_function *f = h->function_at(m, 0);
      for (int64_t i = 0; i < h->function_op_count(m, f); i++) {
        qopt_op *op = h->function_op_at(m, f, i);
        if (strcmp(h->op_name(m, op), "linear") == 0) {
          h->diagnose(m, QOPT_SEVERITY_WARNING, op, "about to fail");
          h->diagnose(m, QOPT_SEVERITY_ERROR, op, "demo failure on this linear");
          return QOPT_ERR_FAILED;
        }
      }
      return QOPT_OK;
    }

    /* Hands the host bad handles and arguments; every call must fail cleanly. Counts the
     * calls that answered "invalid" into the module attribute demo.refused. */
    static int32_t run_abuse(void *u, const qopt_host_api *h, qopt_module *m, const qopt_options *o) {
      (void)u; (void)o;
      int64_t refused = 0;
      qopt_function *f = h->function_at(m, 0);
      qopt_op *op = h->function_op_at(m, f, 0);
      qopt_op *bogus_op = (qopt_op *)(uintptr_t)0x12340;
      qopt_value *as_value = (qopt_value *)op; /* a handle of the wrong kind */
      qopt_f32_view v;
      refused += h->function_at(m, 99) == NULL;
      refused += h->function_op_at(m, f, -1) == NULL;
      refused += h->op_name(m, bogus_op) == NULL;
      refused += h->op_name(m, (qopt_op *)f) == NULL;
      refused += h->value_rank(m, as_value) == -1;
      refused += h->attr_set_int(m, bogus_op, "k", 1) == QOPT_ERR_INVALID_ARGUMENT;
      refused += h->attr_set_int(m, op, NULL, 1) == QOPT_ERR_INVALID_ARGUMENT;
      refused += h->attr_set_text(m, op, "k", "[1, ") == QOPT_ERR_INVALID_ARGUMENT;
      refused += h->attr_set_symbol(m, op, "name", "other") == QOPT_ERR_INVALID_ARGUMENT; /* a param's name */
      refused += h->weight_read_f32(m, "no.such.weight", &v) == QOPT_ERR_NOT_FOUND;
      refused += h->weight_read_f32(m, NULL, &v) == QOPT_ERR_INVALID_ARGUMENT;
      float one = 1;
      int64_t dims[2] = {1, 1};
      refused += h->weight_write_f32(m, h->op_param_name(m, op), &one, 1, 2, dims, QOPT_DTYPE_KEEP) == QOPT_ERR_TYPE_MISMATCH;
      qopt_int_quant q = {0};
      q.struct_size = sizeof q;
      q.bits = 12;
      refused += h->weight_set_quantized_int(m, h->op_param_name(m, op), &q) != QOPT_OK;
      refused += h->op_create(m, f, bogus_op, QOPT_INSERT_BEFORE, "x.y", NULL, 0, NULL, NULL) == NULL;
      refused += h->op_create(m, f, op, QOPT_INSERT_BEFORE, "linear", NULL, 0, NULL, NULL) == NULL; /* built-in name */
      refused += h->op_erase(m, op) == QOPT_ERR_FAILED; /* its result is used */
      refused += h->op_set_operand(m, op, 0, NULL) == QOPT_ERR_INVALID_ARGUMENT;
      refused += h->calibration_stats(m, op, "absmax", &v) == QOPT_ERR_NOT_AVAILABLE;
      refused += h->option_string((const qopt_options *)bogus_op, "x") == NULL;
      refused += h->function_count((qopt_module *)bogus_op) == -1;
      h->attr_set_int(m, NULL, "demo.refused", refused);
      return QOPT_OK;
    }

    /* Hands weight_write_f32 and op_create sizes no tensor can have: negative dims, products
     * past 2^63 and one that wraps to 0 (2^32 * 2^32). The host must refuse each with an error,
     * never trap; the number refused goes into the module attribute demo.hostile. */
    static int32_t run_hostile(void *u, const qopt_host_api *h, qopt_module *m, const qopt_options *o) {
      (void)u; (void)o;
      int64_t refused = 0;
      float one = 1;
      const int64_t huge[2] = {(int64_t)1 << 40, (int64_t)1 << 40};
      const int64_t wraps[2] = {(int64_t)1 << 32, (int64_t)1 << 32};
      const int64_t negative[2] = {-2, -3};
      const int64_t max[3] = {INT64_MAX, INT64_MAX, 2};
      refused += h->weight_write_f32(m, "demo.hostile.a", &one, 1, 2, huge, QOPT_DTYPE_F32) == QOPT_ERR_INVALID_ARGUMENT;
      refused += h->weight_write_f32(m, "demo.hostile.b", &one, 0, 2, wraps, QOPT_DTYPE_F32) == QOPT_ERR_INVALID_ARGUMENT;
      refused += h->weight_write_f32(m, "demo.hostile.c", &one, 6, 2, negative, QOPT_DTYPE_F32) == QOPT_ERR_INVALID_ARGUMENT;
      refused += h->weight_write_f32(m, "demo.hostile.d", &one, 1, 3, max, QOPT_DTYPE_F32) == QOPT_ERR_INVALID_ARGUMENT;
      qopt_function *f = h->function_at(m, 0);
      qopt_type_desc t = {QOPT_DTYPE_F32, 2, huge};
      refused += h->op_create(m, f, NULL, QOPT_INSERT_AT_END, "demo.big", NULL, 0, &t, NULL) == NULL;
      h->attr_set_int(m, NULL, "demo.hostile", refused);
      return QOPT_OK;
    }

    static const qopt_option_decl scale_opts[] = {
      {.key = "factor", .kind = QOPT_OPTION_FLOAT, .help = "multiplier", .default_float = 2.0,
       .has_range = 1, .min = -10, .max = 10},
      {.key = "only", .kind = QOPT_OPTION_STRING, .help = "one weight name, or all", .default_string = ""},
      {.key = "tag", .kind = QOPT_OPTION_BOOL, .help = "mark scaled params", .default_bool = 1},
      {.key = "steps", .kind = QOPT_OPTION_INT, .help = "unused", .default_int = 3, .has_range = 1, .min = 1, .max = 9},
    };
    static const char *const kernel_choices[] = {"demo_identity_f32", "demo_missing_f32"};
    static const qopt_option_decl rotate_opts[] = {
      {.key = "kernel", .kind = QOPT_OPTION_CHOICE, .help = "symbol to call",
       .default_string = "demo_identity_f32", .choices = kernel_choices, .choice_count = 2},
    };
    static const char *const preserves_all[] = {"*", NULL};

    static int32_t reg(const qopt_host_api *h, qopt_registry *r) {
      if (h->api_version != QOPT_PLUGIN_API_VERSION || !QOPT_HOST_HAS(h, option_string)) return QOPT_ERR_FAILED;
      qopt_pass_decl d[6] = {
        {sizeof(qopt_pass_decl), "demo-scale", "scale linear weights", scale_opts, 4, run_scale, NULL, NULL},
        {sizeof(qopt_pass_decl), "demo-quant", "per-row int8 through weight_set_quantized_int", NULL, 0, run_quant, NULL, NULL},
        {sizeof(qopt_pass_decl), "demo-rotate", "identity rotation through an external kernel", rotate_opts, 1, run_rotate, NULL, NULL},
        {sizeof(qopt_pass_decl), "demo-fail", "reports an error", NULL, 0, run_fail, NULL, preserves_all},
        {sizeof(qopt_pass_decl), "demo-abuse", "calls the host with bad arguments", NULL, 0, run_abuse, NULL, NULL},
        {sizeof(qopt_pass_decl), "demo-hostile", "calls the host with hostile sizes", NULL, 0, run_hostile, NULL, NULL},
      };
      for (int i = 0; i < 6; i++) {
        int32_t rc = h->register_pass(r, &d[i]);
        if (rc != QOPT_OK) return rc;
      }
      qopt_kernel_decl k[3] = {
        {sizeof(qopt_kernel_decl), 1, "demo_identity_f32", (qopt_kernel_fn)demo_identity_f32},
        {sizeof(qopt_kernel_decl), 2, "demo_axpy2_f32", (qopt_kernel_fn)demo_axpy2_f32},
        {sizeof(qopt_kernel_decl), 1, "demo_fail_f32", (qopt_kernel_fn)demo_fail_f32},
      };
      for (int i = 0; i < 3; i++) {
        int32_t rc = h->register_kernel(r, &k[i]);
        if (rc != QOPT_OK) return rc;
      }
      return QOPT_OK;
    }

    static const qopt_plugin_info info = {
      QOPT_PLUGIN_API_VERSION, sizeof(qopt_plugin_info), "Demo", "0.1", reg,
    };
    QOPT_PLUGIN_EXPORT const qopt_plugin_info *qoptGetPassPluginInfo(void) { return &info; }
    """#

  /// The out-of-tree Swift plugin of docs/writing-a-plugin.md: `count-linears<attr=…>` sets a
  /// module attribute to the number of `linear` ops.
  static let swiftOutOfTree = #"""
    import CQoptPlugin

    private func run(
      _ user: UnsafeMutableRawPointer?, _ hostPtr: UnsafePointer<qopt_host_api>?,
      _ m: OpaquePointer?, _ options: OpaquePointer?
    ) -> Int32 {
      guard let host = hostPtr?.pointee else { return QOPT_ERR_INVALID_ARGUMENT }
      var count: Int64 = 0
      for fi in 0..<host.function_count(m) {
        let f = host.function_at(m, fi)
        for oi in 0..<host.function_op_count(m, f) {
          let op = host.function_op_at(m, f, oi)
          if let name = host.op_name(m, op), String(cString: name) == "linear" { count += 1 }
        }
      }
      guard let key = host.option_string(options, "attr") else { return QOPT_ERR_FAILED }
      return host.attr_set_int(m, nil, key, count)  // nil: the module's attributes
    }

    private func registerPasses(_ hostPtr: UnsafePointer<qopt_host_api>?, _ registry: OpaquePointer?) -> Int32 {
      guard let host = hostPtr?.pointee, host.api_version == QOPT_PLUGIN_API_VERSION else { return QOPT_ERR_FAILED }
      return "attr".withCString { key in
        "module attribute to set".withCString { help in
          "linear_count".withCString { def in
            var option = qopt_option_decl()
            option.key = key
            option.kind = QOPT_OPTION_STRING
            option.help = help
            option.default_string = def
            return withUnsafePointer(to: &option) { options in
              "count-linears".withCString { name in
                "count linear ops into a module attribute".withCString { summary in
                  var pass = qopt_pass_decl()
                  pass.struct_size = UInt32(MemoryLayout<qopt_pass_decl>.stride)
                  pass.name = name
                  pass.summary = summary
                  pass.options = options
                  pass.option_count = 1
                  pass.run = { run($0, $1, $2, $3) }
                  // The host copies every string and the option array before returning.
                  return host.register_pass(registry, &pass)
                }
              }
            }
          }
        }
      }
    }

    nonisolated(unsafe) private let info: UnsafeMutablePointer<qopt_plugin_info> = {
      let p = UnsafeMutablePointer<qopt_plugin_info>.allocate(capacity: 1)
      var i = qopt_plugin_info()
      i.api_version = QOPT_PLUGIN_API_VERSION
      i.struct_size = UInt32(MemoryLayout<qopt_plugin_info>.stride)
      i.name = UnsafeRawPointer(("CountLinears" as StaticString).utf8Start).assumingMemoryBound(to: CChar.self)
      i.version = UnsafeRawPointer(("1.0" as StaticString).utf8Start).assumingMemoryBound(to: CChar.self)
      i.register_passes = { registerPasses($0, $1) }
      p.initialize(to: i)
      return p
    }()

    @_cdecl("qoptGetPassPluginInfo")
    public func countLinearsPluginInfo() -> UnsafePointer<qopt_plugin_info> { UnsafePointer(info) }
    """#
}
