// swift-tools-version:6.0
import PackageDescription

// Numeric targets are built with unchecked arithmetic and exclusivity in release; debug
// builds keep every check so the test suite catches out-of-bounds and overflow bugs.
let numeric: [SwiftSetting] = [
    .unsafeFlags(["-Ounchecked", "-enforce-exclusivity=unchecked"], .when(configuration: .release))
]

let package = Package(
    name: "distill",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "distill", targets: ["DistillCLI"]),
        .library(name: "DistillCore", targets: ["Core"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0")
    ],
    targets: [
        .systemLibrary(
            name: "CBLAS", pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(
            name: "CHDF5", pkgConfig: "hdf5",
            providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(
            name: "CSQLite", pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]),
        .target(name: "Core", dependencies: ["CBLAS"], swiftSettings: numeric),
        .target(name: "TextData", dependencies: ["Core"], swiftSettings: numeric),
        .target(name: "NN", dependencies: ["Core"], swiftSettings: numeric),
        .target(name: "Formats", dependencies: ["Core", "NN", "TextData", "CHDF5"], swiftSettings: numeric),
        .target(name: "Training", dependencies: ["Core", "NN", "TextData"], swiftSettings: numeric),
        .target(name: "Teacher", dependencies: ["Core", "NN", "TextData", "CSQLite"]),
        .target(name: "Recipe", dependencies: ["Core", "NN", "TextData", "Formats", "Training", "Teacher"]),
        .executableTarget(
            name: "DistillCLI",
            dependencies: [
                "Core", "NN", "TextData", "Formats", "Training", "Teacher", "Recipe",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .testTarget(name: "CoreTests", dependencies: ["Core"], resources: [.copy("Fixtures")]),
        .testTarget(name: "TextDataTests", dependencies: ["TextData"], resources: [.copy("Fixtures")]),
        .testTarget(name: "FormatsTests", dependencies: ["Formats"], resources: [.copy("Fixtures")]),
        .testTarget(name: "NNTests", dependencies: ["NN"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training"], resources: [.copy("Fixtures")]),
        // DistillCLI: the cache crash test SIGKILLs `distill _stress-teacher`.
        .testTarget(name: "TeacherTests", dependencies: ["Teacher", "DistillCLI"]),
        .testTarget(name: "RecipeTests", dependencies: ["Recipe"]),
        .testTarget(name: "CLITests", dependencies: ["DistillCLI", "Formats"]),
    ]
)
