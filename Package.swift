// swift-tools-version:6.0
import Foundation
import PackageDescription

// Native code generation. Swift compiles for baseline x86-64 (SSE2) unless told otherwise,
// which splits every SIMD8<Float> kernel into SSE halves without FMA. When the machine that
// builds distill has AVX2 and FMA (the Haswell feature set), the Swift targets are compiled
// for it, as llama.cpp builds natively by default; CHost then refuses, at start-up and with
// a message, to run such a binary on a CPU without those features. DISTILL_PORTABLE=1 at
// build time (after `swift package clean`) builds for baseline x86-64 instead.
let haswellFlags = ["avx2", "fma", "bmi1", "bmi2", "f16c", "movbe", "abm", "popcnt"]
let native: Bool = {
    #if arch(x86_64) && os(Linux)
    if ProcessInfo.processInfo.environment["DISTILL_PORTABLE"] == "1" { return false }
    guard let cpuinfo = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
        let line = cpuinfo.split(separator: "\n").first(where: { $0.hasPrefix("flags") })
    else { return false }
    let flags = Set(line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == ":" }).map(String.init))
    return haswellFlags.allSatisfy(flags.contains)
    #else
    return false
    #endif
}()
let codegen: [SwiftSetting] = native ? [.unsafeFlags(["-target-cpu", "haswell"])] : []
let hostCheck: [CSetting] = native ? [.define("DISTILL_NATIVE_HASWELL", to: "1")] : []

// Numeric targets (Core, NN, Training: the kernels and the loop) are built with unchecked
// arithmetic and exclusivity in release; debug builds keep every check so the test suite
// catches out-of-bounds and overflow bugs. Everything that parses or validates untrusted
// input (JSON, TextData, Formats, ModelIO, ...) keeps its checks in release too: measured,
// tokenizing 8.5 MB of text and reading a checkpoint take the same time either way
// (0.65 s against 0.65 s, medians of 3 alternating runs).
let numeric: [SwiftSetting] = codegen + [
    .unsafeFlags(["-Ounchecked", "-enforce-exclusivity=unchecked"], .when(configuration: .release))
]

let argumentParser: Target.Dependency = .product(name: "ArgumentParser", package: "swift-argument-parser")

let package = Package(
    name: "distill",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "distill", targets: ["DistillCLI"]),
        .executable(name: "distill-test-helper", targets: ["DistillTestHelper"]),
        .library(name: "DistillCore", targets: ["Core"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        // Layers, bottom to top; a module imports only modules above it here (docs/architecture.md).
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5", providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .target(name: "CHost", cSettings: hostCheck),
        // The decode kernels: portable C with AVX2 and AVX-512 VNNI versions chosen at run time.
        .target(name: "CKernels"),
        .target(name: "Platform", dependencies: ["CHost"], swiftSettings: codegen),
        .target(name: "JSON", dependencies: ["Platform"], swiftSettings: codegen),
        .target(name: "Charts", swiftSettings: codegen),
        .target(name: "Core", dependencies: ["CBLAS", "CHost", "CKernels"], swiftSettings: numeric),
        .target(name: "TextData", dependencies: ["Platform", "JSON", "Core"], swiftSettings: codegen),
        .target(name: "NN", dependencies: ["Platform", "Core"], swiftSettings: numeric),
        .target(name: "Formats", dependencies: ["Platform", "JSON", "Core", "CHDF5"], swiftSettings: codegen),
        .target(
            name: "ModelIO", dependencies: ["Platform", "JSON", "Core", "NN", "TextData", "Formats"],
            swiftSettings: codegen),
        .target(
            name: "Training", dependencies: ["Platform", "JSON", "Core", "NN", "TextData", "ModelIO"],
            swiftSettings: numeric),
        .target(name: "Verify", dependencies: ["Platform", "JSON", "Core", "TextData"], swiftSettings: codegen),
        .target(
            name: "Teacher", dependencies: ["Platform", "JSON", "Core", "NN", "TextData", "Verify", "CSQLite"],
            swiftSettings: codegen),
        .target(
            name: "Route", dependencies: ["Platform", "JSON", "Charts", "Core", "Formats", "Verify"],
            swiftSettings: codegen),
        .target(
            name: "Recipe", dependencies: ["Platform", "JSON", "NN", "TextData", "Training", "Verify", "Teacher"],
            swiftSettings: codegen),
        .target(
            name: "Sweep",
            dependencies: [
                "Platform", "JSON", "Charts", "Core", "NN", "TextData", "ModelIO", "Training", "Verify", "Teacher", "Recipe",
            ],
            swiftSettings: codegen),
        .target(
            name: "Pipeline",
            dependencies: [
                "Platform", "JSON", "Charts", "Core", "NN", "TextData", "ModelIO", "Training", "Verify", "Teacher", "Route",
                "Recipe", "Sweep",
            ],
            swiftSettings: codegen),
        // `distill serve`: the OpenAI-compatible HTTP server and its continuous-batching scheduler.
        .target(
            name: "Serve",
            dependencies: [
                "Platform", "JSON", "Core", "NN", "TextData", "ModelIO", "Verify", "Teacher", "Route",
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: codegen),
        .target(name: "CLISupport", dependencies: ["Platform", "CHost", argumentParser], swiftSettings: codegen),
        .executableTarget(
            name: "DistillCLI",
            dependencies: [
                "Platform", "JSON", "Core", "NN", "Formats", "ModelIO", "Training", "Verify", "Teacher", "Route", "Recipe",
                "Sweep", "Pipeline", "Serve", "CLISupport", argumentParser,
            ],
            swiftSettings: codegen),
        // Commands the crash tests launch and kill; kept out of the distill executable.
        .executableTarget(
            name: "DistillTestHelper",
            dependencies: ["Platform", "Core", "NN", "ModelIO", "Verify", "Teacher", "CLISupport", argumentParser],
            swiftSettings: codegen),

        .testTarget(name: "PlatformTests", dependencies: ["Platform"]),
        .testTarget(name: "JSONTests", dependencies: ["JSON"]),
        .testTarget(name: "CoreTests", dependencies: ["Core"], resources: [.copy("Fixtures")]),
        .testTarget(name: "TextDataTests", dependencies: ["Platform", "JSON", "TextData"], resources: [.copy("Fixtures")]),
        .testTarget(
            name: "FormatsTests", dependencies: ["Platform", "JSON", "Core", "NN", "TextData", "Formats", "ModelIO"],
            resources: [.copy("Fixtures")]),
        .testTarget(name: "NNTests", dependencies: ["Core", "NN"]),
        .testTarget(
            name: "TrainingTests", dependencies: ["Core", "NN", "TextData", "Training"], resources: [.copy("Fixtures")]),
        // The executables the crash tests SIGKILL: `distill sample` and `distill-test-helper stress-teacher`.
        .testTarget(
            name: "TeacherTests",
            dependencies: ["Platform", "JSON", "Core", "NN", "TextData", "Verify", "Teacher", "DistillCLI", "DistillTestHelper"]),
        .testTarget(
            name: "RecipeTests",
            dependencies: [
                "Platform", "JSON", "Charts", "Core", "NN", "TextData", "Formats", "ModelIO", "Training", "Verify", "Teacher",
                "Recipe", "Sweep", "Pipeline",
            ]),
        .testTarget(name: "RouteTests", dependencies: ["Platform", "JSON", "Core", "Verify", "Route"]),
        // The loopback HTTP client the serve tests (in process and as a process) share.
        .target(name: "LoopbackClient", path: "Tests/LoopbackClient"),
        .testTarget(
            name: "ServeTests",
            dependencies: ["Platform", "Core", "JSON", "NN", "TextData", "ModelIO", "Verify", "Teacher", "Route", "Serve", "LoopbackClient"]),
        .testTarget(
            name: "CLITests",
            dependencies: [
                "Platform", "JSON", "Core", "TextData", "Formats", "ModelIO", "Recipe", "DistillCLI", "DistillTestHelper",
                "LoopbackClient",
            ]),
    ]
)
