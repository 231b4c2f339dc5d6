/* A plugin built against a future ABI version (load-errors.ir); its callback must never run. */
#include <stdlib.h>
#include "qopt_plugin.h"

static int32_t reg(const qopt_host_api *host, qopt_registry *r) {
  (void)host; (void)r;
  abort();
}

static const qopt_plugin_info info = {QOPT_PLUGIN_API_VERSION + 1, sizeof(qopt_plugin_info), "Future", "9", reg};
const qopt_plugin_info *qoptGetPassPluginInfo(void) { return &info; }
