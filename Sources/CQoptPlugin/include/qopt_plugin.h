/*
 * qopt_plugin.h — the entire qopt pass-plugin ABI (plain C99, no other qopt header needed).
 *
 * A plugin is a shared library exporting one symbol:
 *
 *     const qopt_plugin_info *qoptGetPassPluginInfo(void);
 *
 * qopt (`qopt -load-pass-plugin=PATH`) opens the library with dlopen(RTLD_NOW | RTLD_LOCAL),
 * never unloads it, calls the entry point once, checks `api_version` and `struct_size` of the
 * returned struct BEFORE calling anything else, then calls `register_passes` once. There the
 * plugin registers its passes and the external kernels its ops call. Each pass
 * the plugin registers joins the same registry as the built-in passes: `-print-passes` lists
 * it with its options, and `-passes='my-pass<k=2.5>'` parses its options exactly as it does
 * for built-ins (`key=value` separated by `;`, bools also as `key` / `no-key`).
 *
 * Rules of the boundary (why they exist: the host is Swift, which has no stable ABI on Linux):
 *
 *  - Opaque handles only. `qopt_module`, `qopt_function`, `qopt_op`, `qopt_value`,
 *    `qopt_options` and `qopt_registry` are tokens chosen by the host; never dereference them,
 *    never compare handles from different pass runs. A handle is valid only during the call
 *    that provided it (`register_passes` for the registry; one `run` for everything else).
 *  - Ownership. Every `const char *` and every buffer the host returns is BORROWED: it stays
 *    valid until the current `run` (or `register_passes`) returns, and the plugin never frees
 *    it. Everything the plugin passes in (strings, arrays, option declarations, tensor data)
 *    is COPIED by the host before the call returns, so the plugin may free or reuse it right
 *    after. Nothing crosses the boundary that one side allocates and the other frees.
 *  - Errors. Host functions return `int32_t` status codes (`QOPT_OK` = 0) or NULL / -1 for
 *    "none"; they never abort on bad handles or arguments. A plugin callback must not let a
 *    C++ exception or a Swift error unwind into the host: it returns a status code and
 *    reports the reason with `host->diagnose`.
 *  - Strings are UTF-8 and NUL-terminated. Integers are fixed width; enums are `int32_t`
 *    with the explicit values below.
 *  - Threads. The host runs one pass at a time on one thread; a plugin keeps no mutable
 *    global state between runs (use `user_data` if it must).
 *  - Versioning. `QOPT_PLUGIN_API_VERSION` changes when any struct in this header changes in
 *    a way an old plugin or host would misread (a field removed, reordered or retyped). Within
 *    one version, fields are only ever APPENDED to the structs that carry `struct_size`; a
 *    plugin checks for an appended host function with `QOPT_HOST_HAS(host, field)`.
 */
#ifndef QOPT_PLUGIN_H
#define QOPT_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * The ABI version this header describes; the host requires an exact match.
 * Version 2: `register_kernel` follows `register_pass` in `qopt_host_api` (every later host
 * function moved by one slot) and `qopt_kernel_decl` is new; `qopt.extern` ops call only
 * registered kernels (version 1 resolved their `symbol` with dlsym, which no longer happens).
 * Later in version 2, `view_release`, `weight_count` and `weight_name` were appended to
 * `qopt_host_api` and `calibration_stats` started answering: a plugin built against the
 * first version-2 header loads and runs unchanged, and a plugin using the appended functions
 * checks `QOPT_HOST_HAS(host, view_release)` to run on a host that predates them.
 */
#define QOPT_PLUGIN_API_VERSION 2u

/** Highest tensor rank the type accessors describe. */
#define QOPT_MAX_RANK 8

/* ---------------------------------------------------------------------------------------- */
/* Status codes (int32_t).                                                                   */

#define QOPT_OK 0
/** A handle, index, key or pointer argument was invalid. */
#define QOPT_ERR_INVALID_ARGUMENT 1
/** The named weight, attribute, option or symbol does not exist. */
#define QOPT_ERR_NOT_FOUND 2
/** The host has no such data yet (for example calibration statistics before `calibrate`). */
#define QOPT_ERR_NOT_AVAILABLE 3
/** The value exists but has another kind or type than asked for. */
#define QOPT_ERR_TYPE_MISMATCH 4
/** Anything else; `diagnose` has (or should have) said why. */
#define QOPT_ERR_FAILED 5

/* ---------------------------------------------------------------------------------------- */
/* Element types (int32_t), in the order of qopt's DType.                                    */

#define QOPT_DTYPE_F32 0
#define QOPT_DTYPE_F16 1
#define QOPT_DTYPE_BF16 2
#define QOPT_DTYPE_F8E4M3 3
#define QOPT_DTYPE_I64 4
#define QOPT_DTYPE_I32 5
#define QOPT_DTYPE_I8 6
#define QOPT_DTYPE_U8 7
/** A quantized element type (`!q.int<…>`, `!q.nvfp4<…>`, `!q.fp8<…>`). */
#define QOPT_DTYPE_QUANTIZED 100
/** For `weight_write_f32`: keep the dtype the weight already has (f32 for a new weight). */
#define QOPT_DTYPE_KEEP (-1)

/* ---------------------------------------------------------------------------------------- */
/* Attribute kinds (int32_t), as returned by `op_attr_kind`.                                 */

#define QOPT_ATTR_NONE 0
#define QOPT_ATTR_INT 1
#define QOPT_ATTR_FLOAT 2
#define QOPT_ATTR_BOOL 3
#define QOPT_ATTR_STRING 4
#define QOPT_ATTR_SYMBOL 5
#define QOPT_ATTR_ARRAY 6
#define QOPT_ATTR_TYPE 7

/* ---------------------------------------------------------------------------------------- */
/* Diagnostic severities (int32_t).                                                          */

/** Fails the pass (as if `run` returned non-zero); the message is shown with its location. */
#define QOPT_SEVERITY_ERROR 0
#define QOPT_SEVERITY_WARNING 1
#define QOPT_SEVERITY_REMARK 2

/* ---------------------------------------------------------------------------------------- */
/* Option kinds (int32_t) for `qopt_option_decl.kind`.                                       */

/** `key=12`; `default_int`, range `min`/`max` when `has_range`. */
#define QOPT_OPTION_INT 0
/** `key=2.5`; `default_float`, range `min`/`max` when `has_range`. */
#define QOPT_OPTION_FLOAT 1
/** `key`, `no-key`, `key=true|false`; `default_bool`. */
#define QOPT_OPTION_BOOL 2
/** `key=text` (no `;` or `>` inside); `default_string`. */
#define QOPT_OPTION_STRING 3
/** `key=word` where word is one of `choices`; `default_string` must be one of them. */
#define QOPT_OPTION_CHOICE 4

/* Where `op_create` puts the new op relative to its anchor. */
#define QOPT_INSERT_BEFORE 0
#define QOPT_INSERT_AFTER 1
/** Append at the end of the function (the anchor is ignored and may be NULL). */
#define QOPT_INSERT_AT_END 2

/* ---------------------------------------------------------------------------------------- */
/* Opaque handles.                                                                           */

typedef struct qopt_module qopt_module;
typedef struct qopt_function qopt_function;
typedef struct qopt_op qopt_op;
typedef struct qopt_value qopt_value;
typedef struct qopt_options qopt_options;
typedef struct qopt_registry qopt_registry;

/* ---------------------------------------------------------------------------------------- */
/* Plain data crossing the boundary.                                                         */

/**
 * A read-only f32 view of a tensor. `data` and `dims` are host-owned and valid until the
 * current pass run returns; `count` is the product of `dims[0..rank)`.
 */
typedef struct qopt_f32_view {
  const float *data;
  int64_t count;
  int32_t rank;
  int64_t dims[QOPT_MAX_RANK];
} qopt_f32_view;

/**
 * A plain tensor type for `op_create` results: `rank` dims, -1 for a dynamic dimension.
 * `dims` is read (copied) during the call only.
 */
typedef struct qopt_type_desc {
  int32_t dtype; /* QOPT_DTYPE_F32 … QOPT_DTYPE_U8 */
  int32_t rank;
  const int64_t *dims;
} qopt_type_desc;

/**
 * An integer-quantized 2-D weight `[rows, cols]` for `weight_set_quantized_int`, in qopt's
 * convention: value = scale[r, g] * (code - zero_point[r, g]) with g = col / group_size.
 * Codes are signed, in [-2^(bits-1), 2^(bits-1) - 1]. Every array is copied by the host.
 */
typedef struct qopt_int_quant {
  /** sizeof(qopt_int_quant) as the plugin was compiled (fields may be appended later). */
  uint32_t struct_size;
  int32_t bits;      /* 2 … 8 */
  int32_t symmetric; /* non-zero: no zero points */
  /** > 0: groups of that many weights along a row; -1: one scale per row; 0: per tensor. */
  int32_t group_size;
  /** The dtype scales are stored in: QOPT_DTYPE_F32, _F16 or _BF16 (scales are rounded). */
  int32_t scale_dtype;
  int64_t rows;
  int64_t cols;
  /** rows * cols codes, row-major. */
  const int8_t *codes;
  /** rows * ceil(cols / group_size) scales (rows for per-row, 1 for per-tensor). */
  const float *scales;
  /** As many zero points as scales; NULL when `symmetric`. */
  const int8_t *zero_points;
} qopt_int_quant;

/**
 * One option of a plugin pass. Read (and copied) during `register_pass` only.
 */
typedef struct qopt_option_decl {
  const char *key;  /* kebab-case, e.g. "group-size" */
  int32_t kind;     /* QOPT_OPTION_* */
  const char *help; /* one line shown by -print-passes */
  int64_t default_int;
  double default_float;
  int32_t default_bool;
  const char *default_string; /* STRING and CHOICE; NULL reads as "" */
  /** Non-zero: INT and FLOAT values must lie in [min, max]. */
  int32_t has_range;
  double min;
  double max;
  const char *const *choices; /* CHOICE: `choice_count` words */
  int32_t choice_count;
} qopt_option_decl;

struct qopt_host_api;

/**
 * Runs a pass on `module`. `options` holds the parsed values (defaults for the keys the
 * pipeline did not set). Returns QOPT_OK, or non-zero to fail the pass (report why with
 * `host->diagnose` first; otherwise the host reports a generic failure).
 */
typedef int32_t (*qopt_run_fn)(void *user_data, const struct qopt_host_api *host,
                               qopt_module *module, const qopt_options *options);

/** One pass to register. Read (and copied) during `register_pass` only. */
typedef struct qopt_pass_decl {
  /** sizeof(qopt_pass_decl) as the plugin was compiled. */
  uint32_t struct_size;
  const char *name;    /* the pipeline name, e.g. "clip-outliers"; must not clash */
  const char *summary; /* one line for -print-passes */
  const qopt_option_decl *options;
  int32_t option_count;
  qopt_run_fn run;
  /** Handed back to `run` unchanged; the host never reads it. */
  void *user_data;
  /**
   * Analyses the pass keeps valid when it changes the module: NULL-terminated names, or
   * NULL for none. `"*"` means all.
   */
  const char *const *preserves;
} qopt_pass_decl;

/**
 * An external kernel, as the runtime calls it (see "External kernels" below). The real
 * signature has `operand_count` (data, dims, rank) triples, then the output's; register it
 * cast to this type, e.g. `(qopt_kernel_fn)my_kernel_f32`.
 */
typedef void (*qopt_kernel_fn)(void);

/** One external kernel to register. Read (and copied) during `register_kernel` only. */
typedef struct qopt_kernel_decl {
  /** sizeof(qopt_kernel_decl) as the plugin was compiled. */
  uint32_t struct_size;
  /** The number of tensor operands (0 … 16); an op passing another number is refused. */
  int32_t operand_count;
  /** The name `qopt.extern` ops give as `symbol`: letters, digits, `_`, `.`; unique. */
  const char *name;
  qopt_kernel_fn fn;
} qopt_kernel_decl;

/* ---------------------------------------------------------------------------------------- */
/* The host function table.                                                                  */

/**
 * Services the host offers, passed to `register_passes` and to every `run`. Every function
 * taking a `qopt_module *` works only during the `run` that received that module.
 *
 * Ops and values are walked by index; the index of an op changes when ops are inserted
 * before it, its handle does not.
 */
typedef struct qopt_host_api {
  /** QOPT_PLUGIN_API_VERSION of the host. */
  uint32_t api_version;
  /** sizeof(qopt_host_api) as the host was compiled; see QOPT_HOST_HAS. */
  uint32_t struct_size;

  /* -- registration (only inside register_passes) ------------------------------------- */

  /**
   * Registers a pass. Fails with QOPT_ERR_INVALID_ARGUMENT on a malformed declaration and
   * QOPT_ERR_FAILED when the name is taken; the host then refuses the whole plugin.
   */
  int32_t (*register_pass)(qopt_registry *registry, const qopt_pass_decl *pass);
  /**
   * Registers an external kernel: the only way a `qopt.extern` op can reach code. Fails with
   * QOPT_ERR_INVALID_ARGUMENT on a malformed declaration and QOPT_ERR_FAILED when another
   * function already has the name; the host then refuses the whole plugin. (New in version 2.)
   */
  int32_t (*register_kernel)(qopt_registry *registry, const qopt_kernel_decl *kernel);

  /* -- walking the module ------------------------------------------------------------ */

  int64_t (*function_count)(qopt_module *m);
  /** NULL when `index` is out of range. */
  qopt_function *(*function_at)(qopt_module *m, int64_t index);
  const char *(*function_name)(qopt_module *m, qopt_function *f);
  int64_t (*function_op_count)(qopt_module *m, qopt_function *f);
  qopt_op *(*function_op_at)(qopt_module *m, qopt_function *f, int64_t index);
  int64_t (*function_argument_count)(qopt_module *m, qopt_function *f);
  qopt_value *(*function_argument)(qopt_module *m, qopt_function *f, int64_t index);

  /* -- ops --------------------------------------------------------------------------- */

  /** The op name: `linear`, `param`, … or a generic op's `"plugin.op"` name. */
  const char *(*op_name)(qopt_module *m, qopt_op *op);
  int64_t (*op_operand_count)(qopt_module *m, qopt_op *op);
  qopt_value *(*op_operand)(qopt_module *m, qopt_op *op, int64_t index);
  /** NULL when the op has no result (`return`). */
  qopt_value *(*op_result)(qopt_module *m, qopt_op *op);
  /** The weight name of a `param` op; NULL for other ops. */
  const char *(*op_param_name)(qopt_module *m, qopt_op *op);
  /** The function holding the op (NULL once erased). */
  qopt_function *(*op_function)(qopt_module *m, qopt_op *op);
  /**
   * The op's location as text, `file:line:col` when parsed from a file, else a path such as
   * `@block.0 op #3 'linear'`.
   */
  const char *(*op_location)(qopt_module *m, qopt_op *op);

  /* -- values and their types --------------------------------------------------------- */

  /** The value's name without `%`. */
  const char *(*value_name)(qopt_module *m, qopt_value *v);
  /** The op defining `v`; NULL for a function argument. */
  qopt_op *(*value_defining_op)(qopt_module *m, qopt_value *v);
  /** QOPT_DTYPE_* of the element type (QOPT_DTYPE_QUANTIZED for quantized), -1 if invalid. */
  int32_t (*value_dtype)(qopt_module *m, qopt_value *v);
  /** The rank, -1 if `v` is invalid. */
  int32_t (*value_rank)(qopt_module *m, qopt_value *v);
  /** Dimension `index`; -1 when dynamic (`?`) or out of range. */
  int64_t (*value_dim)(qopt_module *m, qopt_value *v, int32_t index);
  /** The type in the IR text form, e.g. `tensor<?x64xf32>`. */
  const char *(*value_type_text)(qopt_module *m, qopt_value *v);

  /* -- attributes (op == NULL addresses the module's attributes) ------------------------ */

  int64_t (*attr_count)(qopt_module *m, qopt_op *op);
  /** The key of attribute `index` (keys are kept sorted); NULL out of range. */
  const char *(*attr_key)(qopt_module *m, qopt_op *op, int64_t index);
  /** QOPT_ATTR_* of `key`, QOPT_ATTR_NONE when absent. */
  int32_t (*attr_kind)(qopt_module *m, qopt_op *op, const char *key);
  int32_t (*attr_get_int)(qopt_module *m, qopt_op *op, const char *key, int64_t *out);
  /** Accepts FLOAT and INT attributes. */
  int32_t (*attr_get_float)(qopt_module *m, qopt_op *op, const char *key, double *out);
  int32_t (*attr_get_bool)(qopt_module *m, qopt_op *op, const char *key, int32_t *out);
  /** A STRING or SYMBOL attribute's text; NULL when absent or of another kind. */
  const char *(*attr_get_string)(qopt_module *m, qopt_op *op, const char *key);
  /** Any attribute in its IR text form (`[1, 2]`, `tensor<4xf32>`, `"s"`); NULL if absent. */
  const char *(*attr_get_text)(qopt_module *m, qopt_op *op, const char *key);
  int32_t (*attr_set_int)(qopt_module *m, qopt_op *op, const char *key, int64_t value);
  int32_t (*attr_set_float)(qopt_module *m, qopt_op *op, const char *key, double value);
  int32_t (*attr_set_bool)(qopt_module *m, qopt_op *op, const char *key, int32_t value);
  int32_t (*attr_set_string)(qopt_module *m, qopt_op *op, const char *key, const char *value);
  int32_t (*attr_set_symbol)(qopt_module *m, qopt_op *op, const char *key, const char *value);
  /**
   * Sets `key` to an attribute written in the IR text form — the way to set arrays and types,
   * e.g. `[tensor<?x64xf32>]`, `tensor<64xf32>`, `[1, 2]`. QOPT_ERR_INVALID_ARGUMENT when the
   * text does not parse (the parser's message is reported as a warning).
   */
  int32_t (*attr_set_text)(qopt_module *m, qopt_op *op, const char *key, const char *text);
  /** Removes `key`; QOPT_ERR_NOT_FOUND when it was absent. */
  int32_t (*attr_remove)(qopt_module *m, qopt_op *op, const char *key);

  /* -- weights --------------------------------------------------------------------------- */

  /**
   * Reads weight `name` converted to f32 into `*out` (a quantized weight reads dequantized).
   * The buffer is host-owned and valid until the run returns; writing through it is
   * undefined — use `weight_write_f32`.
   */
  int32_t (*weight_read_f32)(qopt_module *m, const char *name, qopt_f32_view *out);
  /**
   * Stores `count` f32 values as the dense weight `name`, rounded to `dtype`
   * (QOPT_DTYPE_F32/_F16/_BF16 or QOPT_DTYPE_KEEP). An existing weight keeps its shape:
   * `rank`/`dims` must match it (QOPT_ERR_TYPE_MISMATCH otherwise); a new weight takes them.
   * Replacing a quantized weight by dense data is refused (QOPT_ERR_TYPE_MISMATCH). Negative
   * dims, or dims whose product overflows int64, are QOPT_ERR_INVALID_ARGUMENT and an error
   * that fails the pass (the host never traps on a plugin's sizes).
   */
  int32_t (*weight_write_f32)(qopt_module *m, const char *name, const float *data, int64_t count,
                              int32_t rank, const int64_t *dims, int32_t dtype);
  /**
   * Replaces the dense 2-D weight `name` by integer codes, scales and zero points, and
   * retypes every `param` op of that weight to the matching `!q.int<…>` type. The shapes
   * must match the weight and every code must lie in the scheme's range.
   */
  int32_t (*weight_set_quantized_int)(qopt_module *m, const char *name, const qopt_int_quant *q);

  /**
   * Calibration statistics of the input of the linear `op` (or of the linear reading the
   * weight of the `param` op `op`), as `calibrate` measured them on the float model:
   *
   *   "absmax"      per input channel max |x|        rank 1, [in_features]
   *   "mean_sq"     per input channel mean x²        rank 1, [in_features]
   *   "tokens"      token rows observed (exact below 2^24)  rank 1, [1]
   *   "input_rows"  the input rows themselves        rank 2, [tokens, in_features]
   *
   * "input_rows" exists only for the linears `calibrate<keep-inputs=NAMES>` named (weight
   * names, `re:` patterns or `Linear`); they share calibrate's `memory-budget` and spill past
   * it. The view is lent like a weight view (free it early with `view_release`).
   * QOPT_ERR_NOT_AVAILABLE when no `calibrate` ran earlier in the pipeline, it ran with
   * `no-stats`, a pass in between dropped its results, or (for "input_rows") the linear was
   * not kept; QOPT_ERR_NOT_FOUND for an unknown `stat`; QOPT_ERR_INVALID_ARGUMENT when `op` is
   * neither a linear nor a param. A plugin handles NOT_AVAILABLE (fall back to weight-only
   * rules, or fail with a diagnostic that says to run `calibrate` first).
   */
  int32_t (*calibration_stats)(qopt_module *m, qopt_op *op, const char *stat, qopt_f32_view *out);

  /* -- diagnostics ----------------------------------------------------------------------- */

  /**
   * Reports a message at `op`'s location (op == NULL: no location). QOPT_SEVERITY_ERROR fails
   * the pass when it returns; warnings and remarks are printed and the run goes on.
   */
  void (*diagnose)(qopt_module *m, int32_t severity, qopt_op *op, const char *message);

  /* -- creating and rewriting ops -------------------------------------------------------- */

  /**
   * Creates an op `name` (a generic op such as "myplugin.rotate"; it prints as
   * `"myplugin.rotate"(%a) {…} : (T) -> T` and round-trips) with `operand_count` operands and
   * an optional result of type `result` (NULL: no result), named after `result_name_hint`
   * (NULL: "v"). It goes before or after `anchor`, or at the end of `f` (QOPT_INSERT_*).
   * Returns the new op, or NULL on invalid arguments (a result shape whose element count
   * overflows is also reported as an error that fails the pass). Attributes are set
   * afterwards with `attr_set_*`.
   */
  qopt_op *(*op_create)(qopt_module *m, qopt_function *f, qopt_op *anchor, int32_t where,
                        const char *name, qopt_value *const *operands, int64_t operand_count,
                        const qopt_type_desc *result, const char *result_name_hint);
  /**
   * Replaces the uses of `old_value` by `new_value` (same type) in `old_value`'s function:
   * every use after the op that defines `new_value` (all uses when it is an argument), so
   * `y = f(x); replace(x, y)` keeps `f` and the ops before it reading `x`.
   */
  int32_t (*value_replace_uses)(qopt_module *m, qopt_value *old_value, qopt_value *new_value);
  /** Makes operand `index` of `op` read `value` (same type, defined earlier in the function). */
  int32_t (*op_set_operand)(qopt_module *m, qopt_op *op, int64_t index, qopt_value *value);
  /** Erases an op whose result has no uses (QOPT_ERR_FAILED otherwise); its handle dies. */
  int32_t (*op_erase)(qopt_module *m, qopt_op *op);

  /* -- options of the current run ------------------------------------------------------- */

  /** INT option `key` (its default when the pipeline did not set it); 0 if unknown. */
  int64_t (*option_int)(const qopt_options *o, const char *key);
  /** FLOAT (or INT) option `key`; 0 if unknown. */
  double (*option_float)(const qopt_options *o, const char *key);
  /** BOOL option `key`, 0 or 1; 0 if unknown. */
  int32_t (*option_bool)(const qopt_options *o, const char *key);
  /** STRING or CHOICE option `key`; NULL if unknown. Borrowed until the run returns. */
  const char *(*option_string)(const qopt_options *o, const char *key);

  /* -- appended in version 2 (check with QOPT_HOST_HAS) --------------------------------- */

  /**
   * Frees the buffer behind a view the host lent during this run (`weight_read_f32`,
   * `calibration_stats`), before the run ends: `data` is the view's `data`. A pass that reads
   * every weight once keeps one weight in memory at a time instead of all of them.
   * QOPT_ERR_NOT_FOUND when `data` is not a live lent buffer (already released, or never
   * lent); nothing is freed then. The view must not be read afterwards.
   */
  int32_t (*view_release)(qopt_module *m, const float *data);
  /** The number of weights in the module's weight store, -1 for a bad handle. */
  int64_t (*weight_count)(qopt_module *m);
  /**
   * The name of weight `index` (0 ≤ index < weight_count, in store order), for
   * `weight_read_f32`; NULL out of range. Enumerates weights without walking `param` ops.
   */
  const char *(*weight_name)(qopt_module *m, int64_t index);
} qopt_host_api;

/** Whether the host table provides `field` (it may be older than this header). */
#define QOPT_HOST_HAS(host, field) \
  ((host)->struct_size >= offsetof(qopt_host_api, field) + sizeof((host)->field))

/* ---------------------------------------------------------------------------------------- */
/* External kernels.                                                                         */
/*
 * A plugin that introduces an op can give the runtime its kernel: register the C function
 * with `host->register_kernel` inside `register_passes`, and emit a generic op naming it with
 * its signature,
 *
 *   %y = "qopt.extern"(%x) {symbol = "hadamard_f32", operand_types = [tensor<?x64xf32>],
 *                           result_type = tensor<?x64xf32>} : (tensor<?x64xf32>) -> tensor<?x64xf32>
 *
 * `symbol` is a name in the host's kernel registry, never looked up with dlsym: a model file
 * can call only what a plugin named on the command line registered, and names no library.
 * An op naming an unregistered kernel (or carrying the version-1 `library` attribute) is an
 * error when the model is loaded, before anything runs. The runtime checks the declared types
 * against the op and against the runtime shapes, and the operand count against the registered
 * one, then calls the function through libffi with (data, dims, rank) for each operand and
 * for the output:
 *
 *   int32_t hadamard_f32(const float *x, const int64_t *x_dims, int64_t x_rank,
 *                        float *out, const int64_t *out_dims, int64_t out_rank);
 *
 * Tensors are dense row-major f32. The input buffers are read-only copies and the output
 * buffer is pre-sized; both are valid during the call only. A dynamic result dimension takes
 * the size of operand 0's dimension at the same index. Return 0 on success; any other value
 * is reported as an error located at the op.
 */

/** The one-operand kernel form, for reference (kernels with more operands add triples). */
typedef int32_t (*qopt_kernel1_fn)(const float *x, const int64_t *x_dims, int64_t x_rank,
                                   float *out, const int64_t *out_dims, int64_t out_rank);

/* ---------------------------------------------------------------------------------------- */
/* The plugin's entry point.                                                                 */

/**
 * What `qoptGetPassPluginInfo` returns. The struct lives in the plugin (static storage) and
 * must stay valid for the life of the process (the host never unloads a plugin).
 */
typedef struct qopt_plugin_info {
  /** QOPT_PLUGIN_API_VERSION the plugin was built against; must equal the host's. */
  uint32_t api_version;
  /** sizeof(qopt_plugin_info) as the plugin was compiled; at least the host's. */
  uint32_t struct_size;
  const char *name;    /* shown in errors and -print-passes */
  const char *version; /* free-form, e.g. "1.0" */
  /**
   * Called once after the checks; registers the plugin's passes with `host->register_pass`.
   * Returns QOPT_OK, or non-zero to refuse loading: the host then reports the plugin's path
   * with the first problem `register_pass` found (a malformed declaration, a name clash), or
   * the returned status. Nothing the plugin registered is kept when loading fails.
   */
  int32_t (*register_passes)(const qopt_host_api *host, qopt_registry *registry);
} qopt_plugin_info;

/**
 * The one symbol a plugin exports. Returned by pointer, not by value, so that the host can
 * read `api_version` and `struct_size` before it touches any other field, whatever size the
 * plugin's struct has.
 */
typedef const qopt_plugin_info *(*qopt_get_plugin_info_fn)(void);

#if defined(__GNUC__) || defined(__clang__)
#define QOPT_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define QOPT_PLUGIN_EXPORT
#endif

/** Declared here so a C plugin's definition is checked against this signature. */
QOPT_PLUGIN_EXPORT const qopt_plugin_info *qoptGetPassPluginInfo(void);

#ifdef __cplusplus
}
#endif

#endif /* QOPT_PLUGIN_H */
