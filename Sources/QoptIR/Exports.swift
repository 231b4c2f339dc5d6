// Every IR user also speaks diagnostics, JSON, name patterns and mapped files; re-exporting the
// support module keeps those one `import QoptIR` away, as they were before it was split out.
@_exported import QoptSupport
