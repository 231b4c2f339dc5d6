/* A plugin built against another ABI version (load-errors.ir): a future one, or with
 * -DPLUGIN_VERSION=1u the version before external kernels were registered. Its callback must
 * never run. */
#include <stdlib.h>
#include "qopt_plugin.h"

#ifndef PLUGIN_VERSION
#define PLUGIN_VERSION (QOPT_PLUGIN_API_VERSION + 1)
#endif

static int32_t reg(const qopt_host_api *host, qopt_registry *r) {
  (void)host; (void)r;
  abort();
}

static const qopt_plugin_info info = {PLUGIN_VERSION, sizeof(qopt_plugin_info), "Other", "9", reg};
const qopt_plugin_info *qoptGetPassPluginInfo(void) { return &info; }
