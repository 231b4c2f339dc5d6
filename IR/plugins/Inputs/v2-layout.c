/* A plugin written against the first version-2 header (before view_release, weight_count
 * and weight_name were appended): the asserts pin that header's layout, so compiling this
 * against the current header proves the prefix an old binary reads is unchanged, and
 * running it proves such a plugin still loads and runs. */
#include <stddef.h>
#include "qopt_plugin.h"

_Static_assert(offsetof(qopt_host_api, calibration_stats) == 328, "v2.0 slot of calibration_stats moved");
_Static_assert(offsetof(qopt_host_api, option_string) == 400, "v2.0 slot of option_string moved");
_Static_assert(sizeof(qopt_plugin_info) == 32, "qopt_plugin_info changed");
_Static_assert(sizeof(qopt_pass_decl) == 64, "qopt_pass_decl changed");
_Static_assert(sizeof(qopt_option_decl) == 96, "qopt_option_decl changed");
_Static_assert(sizeof(qopt_f32_view) == 88, "qopt_f32_view changed");
_Static_assert(sizeof(qopt_int_quant) == 64, "qopt_int_quant changed");

static int32_t run(void *u, const qopt_host_api *h, qopt_module *m, const qopt_options *o) {
  (void)u; (void)o;
  /* Only v2.0 functions; the host is newer, which QOPT_HOST_HAS reports. */
  h->attr_set_int(m, NULL, "v2.functions", h->function_count(m));
  h->attr_set_bool(m, NULL, "v2.host_has_view_release", QOPT_HOST_HAS(h, view_release));
  return QOPT_OK;
}

static int32_t reg(const qopt_host_api *h, qopt_registry *r) {
  qopt_pass_decl d = {sizeof(qopt_pass_decl), "v2-probe", "a plugin built for the first version-2 layout", NULL, 0, run, NULL, NULL};
  return h->register_pass(r, &d);
}

static const qopt_plugin_info info = {2u, sizeof(qopt_plugin_info), "V2Layout", "2.0", reg};
QOPT_PLUGIN_EXPORT const qopt_plugin_info *qoptGetPassPluginInfo(void) { return &info; }
