// swift-tools-version: 6.0
import PackageDescription

let package = Package(
  name: "qopt",
  products: [
    .executable(name: "qopt", targets: ["qopt"]),
    .library(name: "QoptSupport", targets: ["QoptSupport"]),
    .library(name: "QoptIR", targets: ["QoptIR"]),
    .library(name: "QoptFormats", targets: ["QoptFormats"]),
    .library(name: "QoptPasses", targets: ["QoptPasses"]),
    .library(name: "QoptFrontends", targets: ["QoptFrontends"]),
    .library(name: "QoptRuntime", targets: ["QoptRuntime"]),
    .library(name: "QoptBackends", targets: ["QoptBackends"]),
    .library(name: "QoptPluginHost", targets: ["QoptPluginHost"]),
    // Sample plugins, loaded with -load-pass-plugin (lit: %plugin(ClipOutliers)).
    .library(name: "ClipOutliers", type: .dynamic, targets: ["ClipOutliers"]),
    .library(name: "BitWidthRule", type: .dynamic, targets: ["BitWidthRule"]),
    .library(name: "HadamardRotate", type: .dynamic, targets: ["HadamardRotate"]),
    .library(name: "ActClip", type: .dynamic, targets: ["ActClip"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0")
  ],
  targets: [
    // Support: diagnostics, JSON, name patterns, mapped files, progress (no qopt dependencies).
    .target(name: "QoptSupport"),

    // IR
    .target(name: "QoptIR", dependencies: ["QoptSupport", "CQoptCodecs", "CQoptSystem"]),

    // Formats: one home per file format (GGUF, compressed-tensors, tokenizer.json), read and
    // written here; frontends lower them into IR, backends raise IR into them.
    .target(name: "QoptFormats", dependencies: ["QoptIR", "CQoptCodecs"]),

    // I/O
    .target(name: "QoptFrontends", dependencies: ["QoptIR", "QoptFormats"]),

    // Runtime
    .systemLibrary(
      name: "COpenBLAS", pkgConfig: "openblas",
      providers: [.apt(["libopenblas-dev"])]),
    // AVX2+FMA vector kernels chosen at run time (Swift itself builds for baseline x86-64).
    .target(name: "CQoptKernels"),
    .target(
      name: "QoptRuntime",
      dependencies: ["QoptIR", "COpenBLAS", "CQoptKernels", "QoptExternKernels"]),

    // Passes
    .target(
      name: "QoptPasses",
      dependencies: ["QoptIR", "QoptRuntime", "QoptFormats", "CQoptCodecs", "CQoptKernels"]),

    // Plugins
    .target(name: "CQoptPlugin"),
    .systemLibrary(name: "CFFI", pkgConfig: "libffi", providers: [.apt(["libffi-dev"])]),
    .target(
      name: "QoptPluginHost",
      dependencies: ["QoptIR", "QoptPasses", "CQoptPlugin", "QoptExternKernels"]),
    .target(name: "QoptExternKernels", dependencies: ["QoptIR", "CFFI"]),
    .target(
      name: "ClipOutliers", dependencies: ["CQoptPlugin"], path: "Plugins/ClipOutliers",
      publicHeadersPath: ".",
      linkerSettings: [.linkedLibrary("m")]),
    .target(name: "BitWidthRule", dependencies: ["CQoptPlugin"], path: "Plugins/BitWidthRule"),
    .target(
      name: "HadamardRotate", dependencies: ["CQoptPlugin"], path: "Plugins/HadamardRotate",
      publicHeadersPath: ".",
      linkerSettings: [.linkedLibrary("m")]),
    .target(
      name: "ActClip", dependencies: ["CQoptPlugin"], path: "Plugins/ActClip",
      publicHeadersPath: ".",
      linkerSettings: [.linkedLibrary("m")]),

    // I/O
    // GGUF block encoders with AVX2 bodies chosen at run time (Swift builds for baseline x86-64).
    .target(name: "CQoptCodecs"),
    // Linux calls Swift's Glibc module leaves out (fallocate).
    .target(name: "CQoptSystem"),
    .target(name: "QoptBackends", dependencies: ["QoptIR", "QoptFormats", "CQoptCodecs"]),

    // CLI
    .executableTarget(
      name: "qopt",
      dependencies: [
        "QoptIR", "QoptPasses", "QoptPluginHost", "QoptFormats", "QoptFrontends", "QoptRuntime",
        "QoptBackends", "QoptExternKernels",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ]),
    .executableTarget(
      name: "qopt-bench",
      dependencies: [
        "QoptIR", "QoptPasses", "QoptRuntime", "QoptFormats", "QoptFrontends", "QoptBackends",
        "CQoptKernels", "QoptTestSupport",
      ]),

    // Tests
    .target(name: "QoptTestSupport", dependencies: ["QoptSupport", "QoptIR"]),
    .executableTarget(
      name: "qopt-gen-example", dependencies: ["QoptTestSupport", "QoptFrontends", "QoptFormats"]),
    .testTarget(name: "QoptIRTests", dependencies: ["QoptIR", "QoptTestSupport"]),
    .testTarget(
      name: "QoptPassesTests", dependencies: ["QoptPasses", "QoptTestSupport", "CQoptCodecs"]),
    .testTarget(
      name: "QoptRuntimeTests",
      dependencies: [
        "QoptRuntime", "QoptFormats", "QoptFrontends", "QoptBackends", "QoptPasses",
        "QoptTestSupport",
      ]),
    .testTarget(
      name: "QoptFrontendsTests", dependencies: ["QoptFrontends", "QoptFormats", "QoptTestSupport"]),
    .testTarget(
      name: "QoptPluginHostTests",
      dependencies: ["QoptPluginHost", "QoptExternKernels", "QoptPasses"]),
    .testTarget(
      name: "QoptBackendsTests",
      dependencies: ["QoptBackends", "QoptFormats", "CQoptCodecs", "QoptPasses", "QoptTestSupport"]),
    .testTarget(
      name: "QoptLitTests",
      dependencies: [
        "QoptTestSupport", "QoptFormats", "QoptFrontends", "QoptBackends", "CQoptCodecs", "qopt",
        "qopt-gen-example",
      ]),
  ],
  swiftLanguageModes: [.v6]
)
