#include <ffi.h>

/* Addresses of libffi's type descriptors, so Swift never touches the mutable C globals. */
static inline ffi_type *qopt_ffi_type_pointer(void) { return &ffi_type_pointer; }
static inline ffi_type *qopt_ffi_type_sint32(void) { return &ffi_type_sint32; }
static inline ffi_type *qopt_ffi_type_sint64(void) { return &ffi_type_sint64; }
