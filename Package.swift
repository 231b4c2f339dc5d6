// swift-tools-version: 6.0
import PackageDescription

let package = Package(
  name: "qopt",
  products: [
    .executable(name: "qopt", targets: ["qopt"]),
    .library(name: "QoptIR", targets: ["QoptIR"]),
    .library(name: "QoptPasses", targets: ["QoptPasses"]),
    .library(name: "QoptFrontends", targets: ["QoptFrontends"]),
    .library(name: "QoptRuntime", targets: ["QoptRuntime"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
  ],
  targets: [
    // IR
    .target(name: "QoptIR"),

    // I/O
    .target(name: "QoptFrontends", dependencies: ["QoptIR"]),

    // Runtime
    .systemLibrary(
      name: "COpenBLAS", pkgConfig: "openblas",
      providers: [.apt(["libopenblas-dev"])]),
    .target(name: "QoptRuntime", dependencies: ["QoptIR", "COpenBLAS"]),

    // Passes
    .target(
      name: "QoptPasses", dependencies: ["QoptIR", "QoptRuntime", "QoptFrontends"],
      swiftSettings: [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))]),

    // CLI
    .executableTarget(
      name: "qopt",
      dependencies: [
        "QoptIR", "QoptPasses", "QoptFrontends", "QoptRuntime",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ]),
    .executableTarget(
      name: "qopt-bench", dependencies: ["QoptIR", "QoptPasses", "QoptRuntime", "QoptFrontends"]),

    // Tests
    .target(name: "QoptTestSupport", dependencies: ["QoptIR"]),
    .executableTarget(name: "qopt-gen-example", dependencies: ["QoptTestSupport"]),
    .testTarget(name: "QoptIRTests", dependencies: ["QoptIR", "QoptTestSupport"]),
    .testTarget(name: "QoptPassesTests", dependencies: ["QoptPasses", "QoptTestSupport"]),
    .testTarget(
      name: "QoptRuntimeTests", dependencies: ["QoptRuntime", "QoptFrontends", "QoptTestSupport"]),
    .testTarget(name: "QoptFrontendsTests", dependencies: ["QoptFrontends", "QoptTestSupport"]),
    .testTarget(
      name: "QoptLitTests",
      dependencies: ["QoptTestSupport", "qopt", "qopt-gen-example"]),
  ],
  swiftLanguageModes: [.v6]
)
