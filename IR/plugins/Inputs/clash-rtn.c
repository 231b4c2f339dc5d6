/* A plugin whose pass is named like the built-in `rtn` (load-errors.ir). */
#include "qopt_plugin.h"

static int32_t run(void *u, const qopt_host_api *h, qopt_module *m, const qopt_options *o) {
  (void)u; (void)h; (void)m; (void)o;
  return QOPT_OK;
}

static int32_t reg(const qopt_host_api *host, qopt_registry *r) {
  qopt_pass_decl d = {sizeof(qopt_pass_decl), "rtn", "clashes with the built-in", NULL, 0, run, NULL, NULL};
  return host->register_pass(r, &d);
}

static const qopt_plugin_info info = {QOPT_PLUGIN_API_VERSION, sizeof(qopt_plugin_info), "Clash", "0", reg};
const qopt_plugin_info *qoptGetPassPluginInfo(void) { return &info; }
