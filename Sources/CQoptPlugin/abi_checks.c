/*
 * Compile-time checks of the plugin ABI's layout on this platform (LP64 Linux/macOS). The
 * host (Swift) and every plugin read these structs with the same offsets; a change that
 * moves a field must bump QOPT_PLUGIN_API_VERSION, and this file makes such a change loud.
 */
#include "qopt_plugin.h"

_Static_assert(offsetof(qopt_plugin_info, api_version) == 0, "api_version first");
_Static_assert(offsetof(qopt_plugin_info, struct_size) == 4, "struct_size second");
_Static_assert(sizeof(qopt_plugin_info) == 32, "qopt_plugin_info size (v1 and v2)");
_Static_assert(offsetof(qopt_host_api, struct_size) == 4, "host struct_size second");
_Static_assert(offsetof(qopt_host_api, register_pass) == 8, "host functions start at 8");
_Static_assert(offsetof(qopt_host_api, register_kernel) == 16, "v2: register_kernel second");
_Static_assert(offsetof(qopt_pass_decl, name) == 8, "qopt_pass_decl layout");
_Static_assert(sizeof(qopt_kernel_decl) == 24, "qopt_kernel_decl v2 size");
_Static_assert(sizeof(qopt_int_quant) == 64, "qopt_int_quant v1 size");

/* Appended within version 2 (view_release, weight_count, weight_name): the slots before them
 * stay where the first version-2 header put them. */
_Static_assert(offsetof(qopt_host_api, option_string) == 400, "v2: option_string slot");
_Static_assert(offsetof(qopt_host_api, view_release) == 408, "v2: view_release appended");
_Static_assert(sizeof(qopt_host_api) == 432, "v2: qopt_host_api size");
